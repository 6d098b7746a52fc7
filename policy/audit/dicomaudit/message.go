package dicomaudit

import (
	"cmp"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/nirproxy/nirproxy/policy/audit"
)

// The code systems the messages use, as codeSystemName.
const (
	// CodeSystemDCM is DICOM's controlled terminology (PS3.16).
	CodeSystemDCM = "DCM"
	// CodeSystemRFC3881 holds the participant object ID types A.5.1.2.4 took from RFC 3881.
	CodeSystemRFC3881 = "RFC-3881"
	// CodeSystemActReason is HL7 v3 ActReason, the purposes of use (TREAT, ETREAT, BTG), by OID.
	CodeSystemActReason = "2.16.840.1.113883.5.8"
	// CodeSystemJobRole is the code system of national RBAC job roles (R8000, ...).
	CodeSystemJobRole = "https://fhir.nhs.uk/CodeSystem/NHSDigital-SDS-JobRoleCode"
	// CodeSystemBALP is IHE BALP's, whose XrequestId names a request by its X-Request-Id.
	CodeSystemBALP = "IHE BALP"
	// CodeSystemNHSIdentifiers holds the identifier type of ODS organisation codes.
	CodeSystemNHSIdentifiers = "https://fhir.nhs.uk/Id"
)

// The event IDs (DICOM CID 400) of the messages built.
const (
	EventAuditLogUsed      = "110101"
	EventBeginTransferring = "110102"
	EventInstancesAccessed = "110103"
	EventQuery             = "110112"
)

// The EventOutcomeIndicator values (A.5.1).
const (
	OutcomeSuccess        = "0"
	OutcomeMinorFailure   = "4"
	OutcomeSeriousFailure = "8"
)

// ErrIncomplete is an event that lacks what every message needs (a time, a request id, a
// known action and outcome); the error says what. ErrNoPatient is an event that names no
// patient, whose message A.5 defines with exactly one.
var (
	ErrIncomplete = errors.New("audit event incomplete for a DICOM audit message")
	ErrNoPatient  = errors.New("audit event names no patient")
)

// Options are what the messages take from configuration rather than from the event.
type Options struct {
	// SourceID identifies this nirproxy as the audit source (AuditSourceID) and as a
	// participant (its UserID), e.g. "nirproxy@imaging-proxy.example.nhs.uk". Required.
	SourceID string
	// SiteID is AuditEnterpriseSiteID, e.g. the ODS code of the organisation that runs
	// nirproxy. Optional.
	SiteID string
	// AETitle is nirproxy's DICOM AE title, written as its AlternativeUserID "AETITLES=...".
	// Optional.
	AETitle string
	// NetworkAddress is the host name or IP address clients reach nirproxy at, its
	// NetworkAccessPointID. Optional.
	NetworkAddress string
}

// Validate reports the first option that is missing or malformed, naming the field.
func (o Options) Validate() error {
	if strings.TrimSpace(o.SourceID) == "" {
		return errors.New("dicomaudit options: SourceID is empty: name this nirproxy as the audit source (AuditSourceID)")
	}
	return nil
}

// AuditMessage is a DICOM PS3.15 A.5 audit message. Its fields are in the order the schema
// (A.5.1) sets for their elements.
type AuditMessage struct {
	XMLName                   xml.Name                  `xml:"AuditMessage"`
	EventIdentification       EventIdentification       `xml:"EventIdentification"`
	ActiveParticipants        []ActiveParticipant       `xml:"ActiveParticipant"`
	AuditSourceIdentification AuditSourceIdentification `xml:"AuditSourceIdentification"`
	ParticipantObjects        []ParticipantObject       `xml:"ParticipantObjectIdentification"`
}

// CodedValue is the schema's CodedValueType: a code, its code system, and its meaning
// (originalText, DICOM's Code Meaning, which the schema requires).
type CodedValue struct {
	Code           string `xml:"csd-code,attr"`
	CodeSystemName string `xml:"codeSystemName,attr"`
	DisplayName    string `xml:"displayName,attr,omitempty"`
	OriginalText   string `xml:"originalText,attr"`
}

// EventIdentification says what happened, when, and how it ended.
type EventIdentification struct {
	EventActionCode       string       `xml:"EventActionCode,attr,omitempty"`
	EventDateTime         string       `xml:"EventDateTime,attr"`
	EventOutcomeIndicator string       `xml:"EventOutcomeIndicator,attr"`
	EventID               CodedValue   `xml:"EventID"`
	EventTypeCodes        []CodedValue `xml:"EventTypeCode"`
	// EventOutcomeDescription says why a request was refused or failed, and what a partial
	// answer lacked.
	EventOutcomeDescription string       `xml:"EventOutcomeDescription,omitempty"`
	PurposesOfUse           []CodedValue `xml:"PurposeOfUse"`
}

// ActiveParticipant is a user or process that took part.
type ActiveParticipant struct {
	UserID                     string       `xml:"UserID,attr"`
	AlternativeUserID          string       `xml:"AlternativeUserID,attr,omitempty"`
	UserName                   string       `xml:"UserName,attr,omitempty"`
	UserIsRequestor            bool         `xml:"UserIsRequestor,attr"`
	NetworkAccessPointID       string       `xml:"NetworkAccessPointID,attr,omitempty"`
	NetworkAccessPointTypeCode string       `xml:"NetworkAccessPointTypeCode,attr,omitempty"`
	RoleIDCodes                []CodedValue `xml:"RoleIDCode"`
}

// AuditSourceIdentification is the system that saw the event and wrote the message.
type AuditSourceIdentification struct {
	AuditEnterpriseSiteID string       `xml:"AuditEnterpriseSiteID,attr,omitempty"`
	AuditSourceID         string       `xml:"AuditSourceID,attr"`
	AuditSourceTypeCodes  []CodedValue `xml:"AuditSourceTypeCode"`
}

// ParticipantObject is a thing the event concerned: a patient, a study, a query, the request.
type ParticipantObject struct {
	ParticipantObjectID            string              `xml:"ParticipantObjectID,attr"`
	ParticipantObjectTypeCode      string              `xml:"ParticipantObjectTypeCode,attr,omitempty"`
	ParticipantObjectTypeCodeRole  string              `xml:"ParticipantObjectTypeCodeRole,attr,omitempty"`
	ParticipantObjectDataLifeCycle string              `xml:"ParticipantObjectDataLifeCycle,attr,omitempty"`
	ParticipantObjectIDTypeCode    CodedValue          `xml:"ParticipantObjectIDTypeCode"`
	ParticipantObjectName          string              `xml:"ParticipantObjectName,omitempty"`
	ParticipantObjectQuery         Base64              `xml:"ParticipantObjectQuery,omitempty"`
	ParticipantObjectDetails       []Detail            `xml:"ParticipantObjectDetail"`
	ParticipantObjectDescriptions  []ObjectDescription `xml:"ParticipantObjectDescription"`
}

// Detail is a ParticipantObjectDetail: an implementation-defined type and a value, which the
// schema has in base64.
type Detail struct {
	Type  string `xml:"type,attr"`
	Value Base64 `xml:"value,attr"`
}

// ObjectDescription is a ParticipantObjectDescription; only the SOP classes and instances of a
// study are written here.
type ObjectDescription struct {
	SOPClasses []SOPClass `xml:"SOPClass"`
}

// SOPClass lists instances of one SOP class in a study; UID is empty when the class is not
// known, as the proxy does not know it when a request names an instance.
type SOPClass struct {
	Instances         []Instance `xml:"Instance"`
	UID               string     `xml:"UID,attr,omitempty"`
	NumberOfInstances int        `xml:"NumberOfInstances,attr"`
}

// Instance is one SOP instance, by UID.
type Instance struct {
	UID string `xml:"UID,attr"`
}

// Base64 is binary data written in base64, as the schema's xsd:base64Binary fields are.
type Base64 []byte

// MarshalText implements encoding.TextMarshaler.
func (b Base64) MarshalText() ([]byte, error) {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(b)))
	base64.StdEncoding.Encode(out, b)
	return out, nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *Base64) UnmarshalText(text []byte) error {
	out := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(out, text)
	if err != nil {
		return fmt.Errorf("decode base64: %w", err)
	}
	*b = out[:n]
	return nil
}

// Marshal is m as a UTF-8 XML document, with its declaration and without indentation.
func (m *AuditMessage) Marshal() ([]byte, error) {
	b, err := xml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode DICOM audit message: %w", err)
	}
	return append([]byte(xml.Header[:len(xml.Header)-1]), b...), nil
}

// Message is the DICOM audit message of the event e; the package doc gives the mapping. It
// refuses an event that lacks what every message needs (ErrIncomplete), and a read that names
// no patient (ErrNoPatient); errors name fields, never their values.
func Message(e audit.Event, opts Options) (*AuditMessage, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	kind, err := kindOf(e)
	if err != nil {
		return nil, fmt.Errorf("map audit event to a DICOM audit message: %w", err)
	}
	m := &AuditMessage{
		EventIdentification: EventIdentification{
			EventActionCode:         kind.action,
			EventDateTime:           e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
			EventOutcomeIndicator:   outcomeIndicator(e.Outcome),
			EventID:                 kind.event,
			EventOutcomeDescription: outcomeDescription(e),
			PurposesOfUse:           purposesOfUse(e),
		},
		ActiveParticipants: participants(e, opts, kind.query),
		AuditSourceIdentification: AuditSourceIdentification{
			AuditEnterpriseSiteID: opts.SiteID,
			AuditSourceID:         opts.SourceID,
			AuditSourceTypeCodes:  []CodedValue{dcm("4", "Application Server Process or Thread")},
		},
	}
	if e.PatientID != "" {
		m.ParticipantObjects = append(m.ParticipantObjects, ParticipantObject{
			ParticipantObjectID:           e.PatientID,
			ParticipantObjectTypeCode:     "1",
			ParticipantObjectTypeCodeRole: "1",
			ParticipantObjectIDTypeCode:   CodedValue{Code: "2", CodeSystemName: CodeSystemRFC3881, OriginalText: "Patient Number"},
		})
	}
	m.ParticipantObjects = append(m.ParticipantObjects, studies(e)...)
	switch e.Action {
	case audit.ActionSearch:
		m.ParticipantObjects = append(m.ParticipantObjects, ParticipantObject{
			ParticipantObjectID:           e.Resource,
			ParticipantObjectTypeCode:     "2",
			ParticipantObjectTypeCodeRole: "3",
			ParticipantObjectIDTypeCode:   uriType(),
			ParticipantObjectQuery:        Base64(e.Query),
		})
	case audit.ActionAuditRead:
		m.ParticipantObjects = append(m.ParticipantObjects, ParticipantObject{
			ParticipantObjectID:           e.Resource,
			ParticipantObjectTypeCode:     "2",
			ParticipantObjectTypeCodeRole: "13",
			ParticipantObjectIDTypeCode:   uriType(),
			ParticipantObjectName:         "Security Audit Log",
		})
	}
	if e.Organisation != "" {
		m.ParticipantObjects = append(m.ParticipantObjects, ParticipantObject{
			ParticipantObjectID:         e.Organisation,
			ParticipantObjectTypeCode:   "3",
			ParticipantObjectIDTypeCode: CodedValue{Code: "ods-organization-code", CodeSystemName: CodeSystemNHSIdentifiers, OriginalText: "ODS Organisation Code"},
		})
	}
	m.ParticipantObjects = append(m.ParticipantObjects, transaction(e))
	return m, nil
}

// kind is the message an event maps to.
type kind struct {
	event  CodedValue
	action string
	query  bool // the client issues a query that nirproxy answers
}

// kindOf is the message of e's action, after checking that e has what every message needs. A
// search is a Query whether or not it names a patient: A.5.3.10 has no patient object, so
// the patient is an addition there; the reads' messages need exactly one.
func kindOf(e audit.Event) (kind, error) {
	missing := func(what string) error { return fmt.Errorf("%w: %s", ErrIncomplete, what) }
	switch {
	case e.Time.IsZero():
		return kind{}, missing("no time (EventDateTime is mandatory)")
	case e.RequestID == "":
		return kind{}, missing("no request id")
	case outcomeIndicator(e.Outcome) == "":
		return kind{}, missing(fmt.Sprintf("unknown outcome %q", e.Outcome))
	}
	var k kind
	switch e.Action {
	case audit.ActionSearch:
		return kind{event: dcm(EventQuery, "Query"), action: "E", query: true}, nil
	case audit.ActionRetrieve, audit.ActionBulkData:
		k = kind{event: dcm(EventBeginTransferring, "Begin Transferring DICOM Instances"), action: "E"}
	case audit.ActionMetadata, audit.ActionRendered:
		k = kind{event: dcm(EventInstancesAccessed, "DICOM Instances Accessed"), action: "R"}
	case audit.ActionAuditRead:
		k = kind{event: dcm(EventAuditLogUsed, "Audit Log Used"), action: "R"}
	default:
		return kind{}, missing(fmt.Sprintf("unknown action %q", e.Action))
	}
	if e.PatientID == "" {
		return kind{}, ErrNoPatient
	}
	return k, nil
}

// outcomeIndicator is the EventOutcomeIndicator of an audit outcome; "" for an unknown one.
func outcomeIndicator(outcome string) string {
	switch outcome {
	case audit.OutcomeSuccess, audit.OutcomePartial:
		return OutcomeSuccess
	case audit.OutcomeFailed:
		return OutcomeMinorFailure
	case audit.OutcomeRefused:
		return OutcomeSeriousFailure
	}
	return ""
}

// outcomeDescription names the rule that refused a request, the trusts a partial answer
// lacked or answered from stale copies, and the HTTP status; "" for a whole answer.
func outcomeDescription(e audit.Event) string {
	var parts []string
	if e.Outcome != audit.OutcomeSuccess {
		parts = append(parts, e.Outcome)
	}
	if e.Rule != "" {
		parts = append(parts, "rule "+e.Rule)
	}
	if len(e.Missing) > 0 {
		parts = append(parts, "no answer from "+strings.Join(e.Missing, ", "))
	}
	if len(e.Stale) > 0 {
		parts = append(parts, "stale copies for "+strings.Join(e.Stale, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("%s (HTTP %d)", strings.Join(parts, "; "), e.Status)
}

// purposesOfUse are the purpose judged, and BTG and ETREAT when access broke the glass or was
// an emergency, each once.
func purposesOfUse(e audit.Event) []CodedValue {
	var codes []string
	add := func(code string, on bool) {
		if on && code != "" && !slices.Contains(codes, code) {
			codes = append(codes, code)
		}
	}
	add(e.Purpose, true)
	add("BTG", e.BreakGlass)
	add("ETREAT", e.Emergency)
	out := make([]CodedValue, 0, len(codes))
	for _, c := range codes {
		out = append(out, CodedValue{Code: c, CodeSystemName: CodeSystemActReason, OriginalText: purposeMeaning(c)})
	}
	return out
}

// purposeMeaning is the meaning of a purpose of use code, or the code when it is not known.
func purposeMeaning(code string) string {
	switch code {
	case "TREAT":
		return "treatment"
	case "ETREAT":
		return "emergency treatment"
	case "BTG":
		return "break the glass"
	}
	return code
}

// participants are the user (a token's), the calling system and nirproxy. The user, or else
// the calling system, is the requestor. On a query the client is the source (110153) and
// nirproxy the destination (110152) that answers; on a read nirproxy is the source of the
// data and the client its destination.
func participants(e audit.Event, opts Options, query bool) []ActiveParticipant {
	clientRole, proxyRole := dcm("110152", "Destination Role ID"), dcm("110153", "Source Role ID")
	if query {
		clientRole, proxyRole = proxyRole, clientRole
	}
	client := ActiveParticipant{
		UserID:      cmp.Or(e.System, e.User, e.ClientAddress, "unknown"),
		RoleIDCodes: []CodedValue{clientRole},
	}
	if e.ClientAddress != "" {
		client.NetworkAccessPointID, client.NetworkAccessPointTypeCode = e.ClientAddress, addressType(e.ClientAddress)
	}
	proxy := ActiveParticipant{UserID: opts.SourceID, RoleIDCodes: []CodedValue{proxyRole}}
	if opts.AETitle != "" {
		proxy.AlternativeUserID = "AETITLES=" + opts.AETitle
	}
	if opts.NetworkAddress != "" {
		proxy.NetworkAccessPointID, proxy.NetworkAccessPointTypeCode = opts.NetworkAddress, addressType(opts.NetworkAddress)
	}

	if e.Issuer == "" || e.User == "" {
		client.UserIsRequestor = true
		client.RoleIDCodes = append(client.RoleIDCodes, jobRole(e.Role)...)
		return []ActiveParticipant{client, proxy}
	}
	user := ActiveParticipant{
		// IHE's form for a user named by a token: alias<user@issuer>, where the alias is
		// optional and the proxy has none.
		UserID:          "<" + e.User + "@" + e.Issuer + ">",
		UserIsRequestor: true,
		RoleIDCodes:     jobRole(e.Role),
	}
	if e.ClientAddress != "" {
		user.NetworkAccessPointID, user.NetworkAccessPointTypeCode = e.ClientAddress, addressType(e.ClientAddress)
	}
	return []ActiveParticipant{user, client, proxy}
}

// jobRole is the role code of a national RBAC job role, or none.
func jobRole(role string) []CodedValue {
	if role == "" {
		return nil
	}
	return []CodedValue{{Code: role, CodeSystemName: CodeSystemJobRole, OriginalText: role}}
}

// addressType is the NetworkAccessPointTypeCode of an address: 2 for an IP address, 1 for a
// machine name.
func addressType(addr string) string {
	if net.ParseIP(addr) != nil {
		return "2"
	}
	return "1"
}

// studies are the study objects of e, one per study. The instance a request named is listed
// under its study when it named one study; its SOP class is not known. The series it named
// is a detail, as the schema has no element for it.
func studies(e audit.Event) []ParticipantObject {
	var out []ParticipantObject
	for _, uid := range e.StudyUIDs {
		if uid == "" {
			continue
		}
		out = append(out, ParticipantObject{
			ParticipantObjectID:           uid,
			ParticipantObjectTypeCode:     "2",
			ParticipantObjectTypeCodeRole: "3",
			ParticipantObjectIDTypeCode:   dcm("110180", "Study Instance UID"),
		})
	}
	if len(out) != 1 {
		return out
	}
	if e.SeriesUID != "" {
		out[0].ParticipantObjectDetails = []Detail{{Type: "SeriesInstanceUID", Value: Base64(e.SeriesUID)}}
	}
	if e.InstanceUID != "" {
		out[0].ParticipantObjectDescriptions = []ObjectDescription{{SOPClasses: []SOPClass{
			{NumberOfInstances: 1, Instances: []Instance{{UID: e.InstanceUID}}},
		}}}
	}
	return out
}

// transaction is the request as an object, by its X-Request-Id (BALP's XrequestId), which
// ties the message to the spool record and the client's logs. Its details carry the token's
// id and the reason given for break-glass or emergency access, which have no element of
// their own.
func transaction(e audit.Event) ParticipantObject {
	po := ParticipantObject{
		ParticipantObjectID:         e.RequestID,
		ParticipantObjectTypeCode:   "2",
		ParticipantObjectIDTypeCode: CodedValue{Code: "XrequestId", CodeSystemName: CodeSystemBALP, OriginalText: "X-Request-Id"},
	}
	if e.TokenID != "" {
		po.ParticipantObjectDetails = append(po.ParticipantObjectDetails, Detail{Type: "TokenID", Value: Base64(e.TokenID)})
	}
	if e.Reason != "" {
		po.ParticipantObjectDetails = append(po.ParticipantObjectDetails, Detail{Type: "PurposeOfUseReason", Value: Base64(e.Reason)})
	}
	return po
}

// dcm is a code of DICOM's controlled terminology.
func dcm(code, meaning string) CodedValue {
	return CodedValue{Code: code, CodeSystemName: CodeSystemDCM, OriginalText: meaning}
}

// uriType is the participant object ID type of a URI.
func uriType() CodedValue {
	return CodedValue{Code: "12", CodeSystemName: CodeSystemRFC3881, OriginalText: "URI"}
}

// isStudy reports whether po is a study object.
func (po ParticipantObject) isStudy() bool {
	return po.ParticipantObjectIDTypeCode.Code == "110180" && po.ParticipantObjectIDTypeCode.CodeSystemName == CodeSystemDCM
}

// splitStudies is m as two messages that share its studies between them, each with
// everything else m has, in m's order; ok is false when m has fewer than two studies.
func (m *AuditMessage) splitStudies() (first, second *AuditMessage, ok bool) {
	var studies []int
	for i, po := range m.ParticipantObjects {
		if po.isStudy() {
			studies = append(studies, i)
		}
	}
	if len(studies) < 2 {
		return nil, nil, false
	}
	without := func(drop []int) *AuditMessage {
		c := *m
		c.ParticipantObjects = nil
		for i, po := range m.ParticipantObjects {
			if !slices.Contains(drop, i) {
				c.ParticipantObjects = append(c.ParticipantObjects, po)
			}
		}
		return &c
	}
	half := len(studies) / 2
	return without(studies[half:]), without(studies[:half]), true
}

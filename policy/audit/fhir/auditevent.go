package fhir

import (
	"cmp"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// The profile, identifier systems and code systems the resources use.
const (
	// ProfilePARS is the PARS AuditEvent profile every resource claims in meta.profile.
	ProfilePARS = "https://fhir.nhs.uk/England/StructureDefinition/England-AuditEvent-PARS"
	// SystemODS identifies organisations by ODS code.
	SystemODS = "https://fhir.nhs.uk/Id/ods-organization-code"
	// SystemSDSUser identifies CIS2 (NHS care identity) users by their SDS user id.
	SystemSDSUser = "https://fhir.nhs.uk/Id/sds-user-id"
	// SystemNHSNumber identifies patients by NHS number.
	SystemNHSNumber = "https://fhir.nhs.uk/Id/nhs-number"
	// SystemTransaction identifies a request by its X-Request-Id.
	SystemTransaction = "https://fhir.nhs.uk/Id/transaction"
	// SystemDICOMUID identifies a study by its UID, written urn:oid:UID.
	SystemDICOMUID = "urn:dicom:uid"
	// SystemJobRole is the code system of national RBAC job roles (R8000, ...).
	SystemJobRole = "https://fhir.nhs.uk/CodeSystem/NHSDigital-SDS-JobRoleCode"
	// DefaultReasonExtension is the extension that carries the reason given for break-glass
	// or emergency access on the requesting agent, unless Options.ReasonExtension names
	// another.
	DefaultReasonExtension = "https://github.com/nirproxy/nirproxy/fhir/StructureDefinition/purpose-of-use-reason"

	csAuditEventType = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	csRestful        = "http://hl7.org/fhir/restful-interaction"
	csEntityType     = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	csObjectRole     = "http://terminology.hl7.org/CodeSystem/object-role"
	csBALPEntityType = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
	csDCM            = "http://dicom.nema.org/resources/ontology/DCM"
	csParticipation  = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	csActReason      = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	csSourceType     = "http://terminology.hl7.org/CodeSystem/security-source-type"

	// idNamespace is the UUID namespace of record ids (RFC 9562's URL namespace): an id is
	// the version 5 UUID of "nirproxy:audit:" and the record's hash in hex.
	idNamespace = "\x6b\xa7\xb8\x11\x9d\xad\x11\xd1\x80\xb4\x00\xc0\x4f\xd4\x30\xc8"
)

// ErrIncomplete is an event that lacks something the PARS profile makes mandatory; the error
// says what. ErrNoPatient is an event that names no patient: PARS records access to patients'
// records, and its entity:patient is 1..1.
var (
	ErrIncomplete = errors.New("audit event incomplete for PARS")
	ErrNoPatient  = errors.New("audit event names no patient")
)

// Identifier is a FHIR identifier: a value in a namespace (system).
type Identifier struct {
	System string
	Value  string
}

// Options are what the mapping takes from configuration rather than from the event.
type Options struct {
	// Observer identifies this nirproxy as the audit source (source.observer.identifier) and
	// the server the request reached, e.g. https://fhir.nhs.uk/Id/accredited-system and its
	// ASID. Required.
	Observer Identifier
	// ObserverName is source.observer.display, e.g. "nirproxy, Leeds". Optional.
	ObserverName string
	// Site is source.site, the system's code. Optional.
	Site string
	// ServerAddress is the URL clients call nirproxy at: the server agent's network address.
	// Optional; without it the server agent has no network.
	ServerAddress string
	// SystemIDSystem is the identifier system of calling systems' ids (a registered system's
	// id or a token's client id), e.g. https://fhir.nhs.uk/Id/product-id. Required.
	SystemIDSystem string
	// UserIDSystem gives the identifier system of a token user's id from the token's issuer.
	// Nil, or "" from it, is the issuer itself, as BALP has it; [SDSUserIDs] makes one that
	// names CIS2's users by SDS user id.
	UserIDSystem func(issuer string) string
	// ReasonExtension is the URL of the extension that carries a break-glass or emergency
	// reason; "" is DefaultReasonExtension.
	ReasonExtension string
}

// SDSUserIDs is an Options.UserIDSystem for which the users of the given issuers (CIS2's) are
// SDS user ids (SystemSDSUser), and any other issuer's users are identified in the issuer's
// namespace.
func SDSUserIDs(cis2Issuers ...string) func(issuer string) string {
	return func(issuer string) string {
		if slices.Contains(cis2Issuers, issuer) {
			return SystemSDSUser
		}
		return issuer
	}
}

// Validate reports the first option that is missing, naming the field.
func (o Options) Validate() error {
	switch {
	case o.Observer.System == "" || o.Observer.Value == "":
		return errors.New("fhir options: Observer needs a system and a value (source.observer.identifier is required)")
	case o.SystemIDSystem == "":
		return errors.New("fhir options: SystemIDSystem is empty: name the identifier system of calling systems' ids")
	}
	return nil
}

// AuditEvent is the PARS AuditEvent of the event e, spooled as rec. It refuses an event that
// lacks what the profile makes mandatory (the package doc lists it) with an error that wraps
// ErrIncomplete or ErrNoPatient, and refuses invalid options.
func AuditEvent(rec spool.Record, e audit.Event, opts Options) (*r4.AuditEvent, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := complete(rec, e); err != nil {
		return nil, fmt.Errorf("map audit record %d to an AuditEvent: %w", rec.Seq, err)
	}
	read := e.Action != audit.ActionSearch
	ae := &r4.AuditEvent{
		Id:             ptr(RecordID(rec)),
		Meta:           &r4.Meta{Profile: []string{ProfilePARS}},
		Type:           coding(csAuditEventType, "rest", "Restful Operation"),
		Subtype:        []r4.Coding{coding(csRestful, "read", "read")},
		Action:         ptr(r4.AuditEventActionR),
		Recorded:       e.Time.UTC().Format(time.RFC3339Nano),
		Outcome:        ptr(r4.AuditEventOutcome0),
		OutcomeDesc:    outcomeDesc(e),
		PurposeOfEvent: purposes(e),
		Agent:          agents(e, opts, read),
		Source: r4.AuditEventSource{
			Site:     optional(opts.Site),
			Observer: *reference("Device", opts.Observer.System, opts.Observer.Value, opts.ObserverName),
			Type:     []r4.Coding{coding(csSourceType, "4", "Application Server")},
		},
		Entity: entities(e),
	}
	if !read {
		ae.Subtype = []r4.Coding{coding(csRestful, "search", "search")}
		ae.Action = ptr(r4.AuditEventActionE)
	}
	if e.Outcome == audit.OutcomeRefused || e.Outcome == audit.OutcomeFailed {
		ae.Outcome = ptr(r4.AuditEventOutcome4)
	}
	return ae, nil
}

// RecordID is the AuditEvent id of the spool record rec: the version 5 UUID of its hash, the
// same on every re-send.
func RecordID(rec spool.Record) string {
	h := sha1.New() // version 5 UUIDs are SHA-1 by definition; the id is a name, not a check
	h.Write([]byte(idNamespace))
	fmt.Fprintf(h, "nirproxy:audit:%x", rec.Hash)
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// complete checks that e and rec have what a PARS AuditEvent cannot be made without. Its
// errors name fields, never their values. No patient comes first: a request refused before
// anyone was authenticated names neither patient nor organisation, and is not PARS's.
func complete(rec spool.Record, e audit.Event) error {
	missing := func(what string) error { return fmt.Errorf("%w: %s", ErrIncomplete, what) }
	switch {
	case rec.Hash == [32]byte{}:
		return missing("the record has no hash to derive the id from")
	case e.PatientID == "":
		return ErrNoPatient
	case e.Time.IsZero():
		return missing("no time (recorded is 1..1)")
	case e.RequestID == "":
		return missing("no request id (entity:transaction is 1..1)")
	case e.Organisation == "":
		return missing("no organisation (agent:organisation is 1..2)")
	case !slices.Contains([]string{audit.ActionSearch, audit.ActionRetrieve, audit.ActionMetadata,
		audit.ActionRendered, audit.ActionBulkData, audit.ActionAuditRead}, e.Action):
		return missing(fmt.Sprintf("unknown action %q", e.Action))
	case !slices.Contains([]string{audit.OutcomeSuccess, audit.OutcomePartial, audit.OutcomeRefused,
		audit.OutcomeFailed}, e.Outcome):
		return missing(fmt.Sprintf("unknown outcome %q", e.Outcome))
	}
	return nil
}

// outcomeDesc says why a request was refused or failed, and what a partial answer lacked.
func outcomeDesc(e audit.Event) *string {
	var parts []string
	switch e.Outcome {
	case audit.OutcomeRefused:
		parts = append(parts, cmp.Or(prefix("refused by rule ", e.Rule), "refused"))
	case audit.OutcomeFailed:
		parts = append(parts, "failed")
	case audit.OutcomePartial:
		parts = append(parts, "partial")
	}
	if len(e.Missing) > 0 {
		parts = append(parts, "no answer from "+strings.Join(e.Missing, ", "))
	}
	if len(e.Stale) > 0 {
		parts = append(parts, "stale copies for "+strings.Join(e.Stale, ", "))
	}
	if len(parts) == 0 {
		return nil
	}
	desc := strings.Join(parts, "; ")
	if e.Status != 0 {
		desc += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	return &desc
}

// purposes are the purposes of use of e: the one judged, and BTG and ETREAT when access broke
// the glass or was an emergency.
func purposes(e audit.Event) []r4.CodeableConcept {
	var codes []string
	for _, c := range []struct {
		code string
		on   bool
	}{{e.Purpose, e.Purpose != ""}, {"BTG", e.BreakGlass}, {"ETREAT", e.Emergency}} {
		if c.on && !slices.Contains(codes, c.code) {
			codes = append(codes, c.code)
		}
	}
	var out []r4.CodeableConcept
	for _, c := range codes {
		out = append(out, r4.CodeableConcept{Coding: []r4.Coding{{System: ptr(csActReason), Code: ptr(c)}}})
	}
	return out
}

// agents are the organisation, the user (a token's), the calling system (BALP's client) and
// nirproxy (BALP's server). The requestor, the user or else the calling system, carries the
// token, role, purposes and reason.
func agents(e audit.Event, opts Options, read bool) []r4.AuditEventAgent {
	clientType, serverType := dcm("110152", "Destination Role ID"), dcm("110153", "Source Role ID")
	if !read {
		clientType, serverType = serverType, clientType
	}
	org := r4.AuditEventAgent{Who: reference("Organization", SystemODS, e.Organisation, "")}
	// The calling system is named by its id, or else by its address, as BALP's examples do.
	client := r4.AuditEventAgent{Type: clientType, Who: reference("Endpoint", "", "", e.ClientAddress)}
	if system := cmp.Or(e.System, e.User); system != "" {
		client.Who = reference("Endpoint", opts.SystemIDSystem, system, "")
	}
	if e.ClientAddress != "" {
		client.Network = &r4.AuditEventAgentNetwork{Address: ptr(e.ClientAddress), Type: ptr(r4.AuditEventAgentNetworkType2)}
	}
	server := r4.AuditEventAgent{Type: serverType,
		Who: reference("Endpoint", opts.Observer.System, opts.Observer.Value, opts.ObserverName)}
	if opts.ServerAddress != "" {
		server.Network = &r4.AuditEventAgentNetwork{Address: ptr(opts.ServerAddress), Type: ptr(r4.AuditEventAgentNetworkType5)}
	}

	out := []r4.AuditEventAgent{org}
	requestor := &client
	if e.Issuer != "" && e.User != "" {
		system := e.Issuer
		if opts.UserIDSystem != nil {
			system = cmp.Or(opts.UserIDSystem(e.Issuer), e.Issuer)
		}
		out = append(out, r4.AuditEventAgent{
			Type: &r4.CodeableConcept{Coding: []r4.Coding{coding(csParticipation, "IRCP", "information recipient")}},
			Who:  reference("Practitioner", system, e.User, ""),
		})
		requestor = &out[len(out)-1]
	}
	requestor.Requestor = true
	if e.TokenID != "" {
		requestor.Policy = []string{e.TokenID}
	}
	if e.Role != "" {
		requestor.Role = []r4.CodeableConcept{{Coding: []r4.Coding{{System: ptr(SystemJobRole), Code: ptr(e.Role)}}}}
	}
	requestor.PurposeOfUse = purposes(e)
	if e.Reason != "" {
		requestor.Extension = []r4.Extension{{Url: cmp.Or(opts.ReasonExtension, DefaultReasonExtension), ValueString: ptr(e.Reason)}}
	}
	return append(out, client, server)
}

// entities are the patient, the transaction, a search's query and the studies.
func entities(e audit.Event) []r4.AuditEventEntity {
	out := []r4.AuditEventEntity{
		{
			What: reference("Patient", SystemNHSNumber, e.PatientID, ""),
			Type: ptr(coding(csEntityType, "1", "Person")),
			Role: ptr(coding(csObjectRole, "1", "Patient")),
		},
		{
			What: reference("", SystemTransaction, e.RequestID, ""),
			Type: ptr(coding(csBALPEntityType, "XrequestId", "")),
		},
	}
	if e.Action == audit.ActionSearch {
		// A search nested in a study or series may have no query string (its path says it
		// all): its query is then left out, as FHIR has no empty values.
		out = append(out, r4.AuditEventEntity{
			Type:  ptr(coding(csEntityType, "2", "System Object")),
			Role:  ptr(coding(csObjectRole, "24", "Query")),
			Query: optional(base64.StdEncoding.EncodeToString([]byte(e.Query))),
		})
	}
	for _, uid := range e.StudyUIDs {
		if uid == "" {
			continue
		}
		out = append(out, r4.AuditEventEntity{
			What: reference("ImagingStudy", SystemDICOMUID, "urn:oid:"+uid, ""),
			Type: ptr(coding(csEntityType, "2", "System Object")),
			Role: ptr(coding(csObjectRole, "3", "Report")),
		})
	}
	return out
}

// reference is a logical reference to a resource of type typ by identifier, with a display;
// an empty part is left out.
func reference(typ, system, value, display string) *r4.Reference {
	ref := &r4.Reference{Type: optional(typ), Display: optional(display)}
	if value != "" {
		ref.Identifier = &r4.Identifier{System: optional(system), Value: &value}
	}
	return ref
}

// coding is a code in a code system, with its display when given.
func coding(system, code, display string) r4.Coding {
	return r4.Coding{System: ptr(system), Code: ptr(code), Display: optional(display)}
}

// dcm is an agent type from DICOM's controlled terminology.
func dcm(code, display string) *r4.CodeableConcept {
	return &r4.CodeableConcept{Coding: []r4.Coding{coding(csDCM, code, display)}}
}

// prefix is p and s, or "" when s is.
func prefix(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

// optional is a pointer to s, or nil when s is empty: FHIR has no empty strings.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func ptr[T any](v T) *T { return &v }

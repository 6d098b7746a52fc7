// Package audit records every access to patient data, the answers sent and the requests
// refused alike: who asked (the user, their token, role, organisation, calling system and
// purpose of use), for which patient and which studies, through which route, with what
// outcome, and from which trusts. An event of an answer is recorded, durably, before the
// answer's status line is sent; a failure to record refuses the request. The events feed the
// patient's right to know who looked at their imaging, the national Patient Audit Record
// Service (FHIR AuditEvent) and IHE ATNA (DICOM audit messages).
package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// EventVersion is the version of Event's encoding; Encode writes it and Decode refuses others.
const EventVersion = 1

// The actions an event records, by the route that served it.
const (
	ActionSearch    = "search"
	ActionRetrieve  = "retrieve"
	ActionMetadata  = "metadata"
	ActionRendered  = "rendered"
	ActionBulkData  = "bulkdata"
	ActionAuditRead = "auditRead"
)

// The outcomes an event records.
const (
	// OutcomeSuccess is an answer with everything asked for.
	OutcomeSuccess = "success"
	// OutcomePartial is an answer without some trusts (Missing names them) or with stale
	// copies standing in for some (Stale).
	OutcomePartial = "partial"
	// OutcomeRefused is a request access control refused (Rule names the rule).
	OutcomeRefused = "refused"
	// OutcomeFailed is a request answered with an error: a bad request, nothing found, no
	// trust able to answer.
	OutcomeFailed = "failed"
)

// Event is one access to patient data, or one refused attempt.
type Event struct {
	// Version is EventVersion.
	Version int `json:"v"`
	// Time is when the answer started, or the request was refused.
	Time time.Time `json:"time"`
	// RequestID is the request's X-Request-Id (given or made), which the client also saw.
	RequestID string `json:"requestId"`

	// User is the user's id (CIS2 UUID, token subject) or a system caller's id; "" for a
	// request refused before anyone was authenticated.
	User string `json:"user,omitempty"`
	// Issuer is the token's issuer; "" for a system caller.
	Issuer string `json:"issuer,omitempty"`
	// TokenID is the token's jti.
	TokenID string `json:"tokenId,omitempty"`
	// Role is the national RBAC job role the user acted in.
	Role string `json:"role,omitempty"`
	// Organisation is the ODS code of the organisation the caller acted for.
	Organisation string `json:"organisation,omitempty"`
	// System is the calling system (registered id, or the token's client id).
	System string `json:"system,omitempty"`
	// Purpose is the purpose of use judged (TREAT, ETREAT, BTG); PurposeSource is where it
	// came from (token, registration, request).
	Purpose       string `json:"purpose,omitempty"`
	PurposeSource string `json:"purposeSource,omitempty"`
	// Reason is the reason given for emergency or break-glass access.
	Reason string `json:"reason,omitempty"`
	// BreakGlass and Emergency flag BTG and ETREAT access.
	BreakGlass bool `json:"breakGlass,omitempty"`
	Emergency  bool `json:"emergency,omitempty"`
	// ClientAddress is the address the request came from (the connection's peer).
	ClientAddress string `json:"clientAddress,omitempty"`

	// Action is one of the Action... constants.
	Action string `json:"action"`
	// Resource is the route template, e.g. /dicom-web/studies/{study}/metadata.
	Resource string `json:"resource"`
	// Query is a search's query string, as sent (BALP PatientQuery keeps it).
	Query string `json:"query,omitempty"`
	// PatientID is the NHS number of the patient the access concerns; "" when it concerns
	// none (an empty search by study) or none was established (a refusal before).
	PatientID string `json:"patient,omitempty"`
	// StudyUIDs, SeriesUID and InstanceUID are the studies answered or asked for, and the
	// series and instance a request named.
	StudyUIDs   []string `json:"studies,omitempty"`
	SeriesUID   string   `json:"series,omitempty"`
	InstanceUID string   `json:"instance,omitempty"`

	// Outcome is one of the Outcome... constants.
	Outcome string `json:"outcome"`
	// Status is the HTTP status answered.
	Status int `json:"status"`
	// Rule is the rule that refused a request, for OutcomeRefused.
	Rule string `json:"rule,omitempty"`
	// Sources are the trusts whose answers were used.
	Sources []string `json:"sources,omitempty"`
	// Missing are the trusts left out of a partial answer; Stale those answered from a stale
	// cached copy.
	Missing []string `json:"missing,omitempty"`
	Stale   []string `json:"stale,omitempty"`
}

// Encode is e as one line of JSON, with Version set.
func Encode(e Event) ([]byte, error) {
	e.Version = EventVersion
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode audit event: %w", err)
	}
	return b, nil
}

// Decode reads an event Encode wrote.
func Decode(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("decode audit event: %w", err)
	}
	if e.Version != EventVersion {
		return Event{}, fmt.Errorf("decode audit event: version %d, want %d", e.Version, EventVersion)
	}
	return e, nil
}

// MayConcern reports whether the encoded event b can name the patient with NHS number nhs (10
// digits): false only when Decode(b) cannot have PatientID nhs, since Encode writes the number's
// digits as they are. Readers looking for one patient's accesses use it to skip decoding every
// other patient's records.
func MayConcern(b []byte, nhs string) bool {
	return nhs != "" && bytes.Contains(b, []byte(nhs))
}

// patientMember is how Encode writes the start of an event's patient: the member's name and
// the opening quote of its value. encoding/json escapes every quote inside a string, so these
// bytes occur only where a member named "patient" begins, and Event holds no nested object
// that could have one.
var patientMember = []byte(`"patient":"`)

// PatientKeys calls add with the patient the encoded event b names, if any: the spool's
// Options.Keys, which lets the patient access report (Spooled.Accesses) read only the
// segments that may hold a patient's records. It gives the PatientID Decode(b) reads, without
// decoding the rest of b: Encode writes the member once, and its bytes (patientMember) cannot
// occur before it inside another member's string.
func PatientKeys(b []byte, add func(key []byte)) {
	i := bytes.Index(b, patientMember)
	if i < 0 {
		return
	}
	rest := b[i+len(patientMember):]
	end, escaped := 0, false
	for end < len(rest) && rest[end] != '"' {
		if rest[end] == '\\' {
			escaped = true
			end++ // the escaped byte cannot end the string
		}
		end++
	}
	if end >= len(rest) {
		return
	}
	value := rest[:end]
	if escaped { // not an NHS number, but the key must still be the string Decode reads
		var v string
		if err := json.Unmarshal(b[i+len(patientMember)-1:i+len(patientMember)+end+1], &v); err == nil {
			value = []byte(v)
		}
	}
	add(value)
}

// Recorder stores audit events durably. Record returns only once e is stored as durably as the
// Recorder can (on disk, for the spool), and returns an error rather than lose it. Healthy is
// nil when a Record could succeed now; /readyz says not ready otherwise.
type Recorder interface {
	Record(ctx context.Context, e Event) error
	Healthy() error
}

// Log answers the patient's question of the record: who accessed my imaging?
type Log interface {
	// Accesses is every access to the imaging of the patient with NHS number nhs that was
	// answered (success or partial), oldest first; reads of the audit itself are left out.
	Accesses(ctx context.Context, nhs string) ([]Event, error)
}

// Discard drops events. It is for tests of the request path that are not about the audit.
type Discard struct{}

// Record implements Recorder.
func (Discard) Record(context.Context, Event) error { return nil }

// Healthy implements Recorder.
func (Discard) Healthy() error { return nil }

package fhir

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/test/auditevents"
)

// The sinks' tests map the same access (test/auditevents).
var (
	record            = auditevents.Record
	clinicianRetrieve = auditevents.ClinicianRetrieve
)

const (
	nhsNumber = auditevents.NHSNumber
	cis2      = auditevents.CIS2
	asid      = "https://fhir.nhs.uk/Id/accredited-system"
	productID = "https://fhir.nhs.uk/Id/product-id"
)

// testOptions are the options of a nirproxy accredited as ASID 200000001234, whose CIS2 users
// are named by SDS user id.
func testOptions() Options {
	return Options{
		Observer:       Identifier{System: asid, Value: "200000001234"},
		ObserverName:   "nirproxy test",
		ServerAddress:  "https://nirproxy.test/dicom-web",
		SystemIDSystem: productID,
		UserIDSystem:   SDSUserIDs(cis2),
	}
}

// parse marshals ae as JSON and reads it back with both FHIR libraries: Google's, which
// checks it as R4 (required elements, primitives' formats, codes of required bindings, no
// unknown elements, one value of a choice), and samply's, whose resource is returned.
func parse(t *testing.T, ae *r4.AuditEvent) (r4.AuditEvent, []byte) {
	t.Helper()
	b, err := json.Marshal(ae)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkR4(b); err != nil {
		t.Fatalf("not a valid R4 AuditEvent: %v\n%s", err, b)
	}
	back, err := r4.UnmarshalAuditEvent(b)
	if err != nil {
		t.Fatalf("read back: %v\n%s", err, b)
	}
	return back, b
}

// mapped is the AuditEvent of e, spooled as record seq with payload name, made with opts,
// read back by parse and checked by checkPARS; with its JSON.
func mapped(t *testing.T, seq uint64, name string, e audit.Event, opts Options) (r4.AuditEvent, []byte) {
	t.Helper()
	made, err := AuditEvent(record(seq, name), e, opts)
	if err != nil {
		t.Fatal(err)
	}
	ae, b := parse(t, made)
	checkPARS(t, ae, e, opts)
	return ae, b
}

// checkR4 reads a resource in JSON with Google's FHIR library, which checks it as R4.
func checkR4(b []byte) error {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return err
	}
	_, err = u.Unmarshal(b)
	return err
}

// checkPARS checks ae against the PARS profile's slices, as GOVERNANCE.md section 5 records
// them, and against the event it was made from.
func checkPARS(t *testing.T, ae r4.AuditEvent, e audit.Event, opts Options) {
	t.Helper()
	if !slices.Contains(ae.Meta.Profile, ProfilePARS) {
		t.Errorf("meta.profile = %v, want the PARS profile", ae.Meta.Profile)
	}
	if code(ae.Type) != csAuditEventType+"#rest" {
		t.Errorf("type = %s, want audit-event-type#rest", code(ae.Type))
	}
	if ae.Recorded == "" || ae.Id == nil {
		t.Errorf("recorded %q, id %v: both are required", ae.Recorded, ae.Id)
	}

	// Agents are sliced, closed, by who.type.
	slice := map[string][]r4.AuditEventAgent{}
	for _, a := range ae.Agent {
		if a.Who == nil || a.Who.Type == nil {
			t.Errorf("an agent has no who.type, which PARS slices agents by: %+v", a)
			continue
		}
		slice[*a.Who.Type] = append(slice[*a.Who.Type], a)
	}
	for typ := range slice {
		if !slices.Contains([]string{"Organization", "Patient", "Practitioner", "PractitionerRole", "Endpoint"}, typ) {
			t.Errorf("an agent's who.type is %s, which no PARS agent slice takes", typ)
		}
	}
	if orgs := slice["Organization"]; len(orgs) < 1 || len(orgs) > 2 {
		t.Errorf("%d organisation agents, want 1..2", len(orgs))
	}
	for _, a := range slice["Organization"] {
		checkIdentifier(t, "organisation", a.Who.Identifier, SystemODS, e.Organisation)
	}
	if users := slice["Practitioner"]; len(users) > 1 {
		t.Errorf("%d user agents, want at most 1", len(users))
	}
	for _, a := range slice["PractitionerRole"] {
		if a.Who.Identifier == nil || a.Who.Identifier.System == nil || *a.Who.Identifier.System != "https://fhir.nhs.uk/Id/sds-role-profile-id" {
			t.Errorf("a userRole agent is not identified by SDS role profile id")
		}
	}
	if ae.Source.Observer.Identifier == nil {
		t.Fatal("source.observer.identifier is missing; PARS requires it")
	}
	checkIdentifier(t, "observer", ae.Source.Observer.Identifier, opts.Observer.System, opts.Observer.Value)

	// Entities: patient and transaction 1..1 each.
	var patients, transactions []r4.AuditEventEntity
	for _, en := range ae.Entity {
		switch code(*en.Type) {
		case csEntityType + "#1":
			patients = append(patients, en)
		case csBALPEntityType + "#XrequestId":
			transactions = append(transactions, en)
		}
	}
	if len(patients) != 1 {
		t.Fatalf("%d patient entities, want 1", len(patients))
	}
	checkIdentifier(t, "patient", patients[0].What.Identifier, SystemNHSNumber, e.PatientID)
	if patients[0].Role == nil || code(*patients[0].Role) != csObjectRole+"#1" {
		t.Errorf("the patient entity's role is not object-role#1")
	}
	if len(transactions) != 1 {
		t.Fatalf("%d transaction entities, want 1", len(transactions))
	}
	checkIdentifier(t, "transaction", transactions[0].What.Identifier, SystemTransaction, e.RequestID)
}

// checkIdentifier checks that id is exactly system|value.
func checkIdentifier(t *testing.T, what string, id *r4.Identifier, system, value string) {
	t.Helper()
	if id == nil || id.System == nil || id.Value == nil {
		t.Errorf("the %s has no identifier system and value", what)
		return
	}
	if *id.System != system || *id.Value != value {
		t.Errorf("the %s is %s|%s, want %s|%s", what, *id.System, *id.Value, system, value)
	}
}

// code is a coding as system#code.
func code(c r4.Coding) string {
	var s strings.Builder
	if c.System != nil {
		s.WriteString(*c.System)
	}
	s.WriteString("#")
	if c.Code != nil {
		s.WriteString(*c.Code)
	}
	return s.String()
}

// codes are the first codings of some concepts, as system#code.
func codes(ccs []r4.CodeableConcept) []string {
	var out []string
	for _, cc := range ccs {
		out = append(out, code(cc.Coding[0]))
	}
	return out
}

// requestor is the agent that asked.
func requestor(t *testing.T, ae r4.AuditEvent) r4.AuditEventAgent {
	t.Helper()
	var found []r4.AuditEventAgent
	for _, a := range ae.Agent {
		if a.Requestor {
			found = append(found, a)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d requestors, want 1", len(found))
	}
	return found[0]
}

// agentOfType is the agent of the given BALP type (system#code), if there is one.
func agentOfType(ae r4.AuditEvent, typ string) (r4.AuditEventAgent, bool) {
	for _, a := range ae.Agent {
		if a.Type != nil && code(a.Type.Coding[0]) == typ {
			return a, true
		}
	}
	return r4.AuditEventAgent{}, false
}

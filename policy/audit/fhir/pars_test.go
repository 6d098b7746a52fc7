package fhir

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/nirproxy/nirproxy/policy/audit"
)

// TestPARSSlices: the AuditEvent of every kind of event keeps each rule of the PARS profile's
// slices that GOVERNANCE.md section 5 lists, and BALP's PatientRead and PatientQuery: agent
// slices by who.type with their identifier systems (organisation by ODS code 1..2, user by SDS
// user id 0..1, userRole by SDS role profile id), source.observer's identifier, the patient
// entity (1..1, NHS number, audit-entity-type#1, object-role#1), the transaction entity (1..1,
// the request id, BALP XrequestId), BALP's query entity on a search only, the examples' codes
// (audit-event-type#rest, restful-interaction read or search, action R or E), the token's jti
// as the requestor's policy, and no empty value anywhere (FHIR has no empty strings).
func TestPARSSlices(t *testing.T) {
	with := func(f func(*audit.Event)) audit.Event { e := clinicianRetrieve(); f(&e); return e }
	search := func(e *audit.Event) {
		e.Action, e.Resource, e.Query = audit.ActionSearch, "/dicom-web/studies", "PatientID="+nhsNumber
		e.StudyUIDs = []string{"1.2.3.4", "1.2.3.5"}
	}
	cases := []struct {
		name  string
		event audit.Event
	}{
		{"retrieve", clinicianRetrieve()},
		{"metadata", with(func(e *audit.Event) {
			e.Action, e.Resource = audit.ActionMetadata, "/dicom-web/studies/:study/metadata"
		})},
		{"search", with(search)},
		// A search nested in a study or series has all its query in its path: no query string.
		{"search within a study", with(func(e *audit.Event) {
			e.Action, e.Resource, e.Query = audit.ActionSearch, "/dicom-web/studies/:study/series", ""
		})},
		{"refused", with(func(e *audit.Event) {
			e.Outcome, e.Rule, e.Status, e.Sources, e.StudyUIDs = audit.OutcomeRefused, "distinct-patients", 429, nil, nil
		})},
		{"failed", with(func(e *audit.Event) { e.Outcome, e.Status, e.Sources = audit.OutcomeFailed, 503, nil })},
		{"partial", with(func(e *audit.Event) {
			search(e)
			e.Outcome, e.Missing, e.Sources = audit.OutcomePartial, []string{"RXB"}, []string{"RXA", "RXC"}
		})},
		{"stale", with(func(e *audit.Event) { e.Outcome, e.Stale = audit.OutcomePartial, []string{"RXA"} })},
		{"break-glass", with(func(e *audit.Event) {
			e.Purpose, e.PurposeSource, e.BreakGlass, e.Reason = "BTG", "token", true, "unconscious in ED"
		})},
		{"audit read", with(func(e *audit.Event) {
			e.Action, e.Resource, e.StudyUIDs, e.Purpose, e.PurposeSource = audit.ActionAuditRead, "/audit/patients/:nhs", nil, "", ""
			e.Role = "R0001"
		})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ae, b := mapped(t, 3, tc.name, tc.event, testOptions())
			checkSlices(t, ae, tc.event)
			checkNoEmpty(t, b)
		})
	}
}

// checkSlices checks what checkPARS leaves: the codes of the event's kind, the user slice's
// identifier, the entities' codes and cardinalities beyond patient and transaction, and BALP's
// token details.
func checkSlices(t *testing.T, ae r4.AuditEvent, e audit.Event) {
	t.Helper()
	subtype, action := "read", "R"
	if e.Action == audit.ActionSearch {
		subtype, action = "search", "E"
	}
	if len(ae.Subtype) != 1 || code(ae.Subtype[0]) != csRestful+"#"+subtype || ae.Action == nil || ae.Action.Code() != action {
		t.Errorf("subtype %v, action %v; want restful-interaction#%s and %s", ae.Subtype, ae.Action, subtype, action)
	}
	wantOutcome := "0"
	if e.Outcome == audit.OutcomeRefused || e.Outcome == audit.OutcomeFailed {
		wantOutcome = "4"
	}
	if ae.Outcome == nil || ae.Outcome.Code() != wantOutcome {
		t.Errorf("outcome %v; want %s", ae.Outcome, wantOutcome)
	}

	// The user slice: the CIS2 user by SDS user id, with the token's jti as its policy.
	var users []r4.AuditEventAgent
	for _, a := range ae.Agent {
		if a.Who != nil && a.Who.Type != nil && *a.Who.Type == "Practitioner" {
			users = append(users, a)
		}
	}
	if len(users) != 1 {
		t.Fatalf("%d user agents; want the user's one", len(users))
	}
	checkIdentifier(t, "user", users[0].Who.Identifier, SystemSDSUser, e.User)
	if !users[0].Requestor || !slices.Equal(users[0].Policy, []string{e.TokenID}) {
		t.Errorf("the user agent is requestor %v with policy %v; want the requestor, with the token's jti", users[0].Requestor, users[0].Policy)
	}

	// Entities: the patient and the transaction with their codes, one query on a search only
	// (BALP PatientQuery), each study as asked; nothing else.
	kinds := map[string]int{}
	for _, en := range ae.Entity {
		if en.Type == nil {
			t.Errorf("an entity has no type: %+v", en)
			continue
		}
		role := ""
		if en.Role != nil {
			role = code(*en.Role)
		}
		kinds[code(*en.Type)+" "+role]++
	}
	want := map[string]int{
		csEntityType + "#1 " + csObjectRole + "#1":  1,
		csBALPEntityType + "#XrequestId ":           1,
		csEntityType + "#2 " + csObjectRole + "#3":  len(e.StudyUIDs),
		csEntityType + "#2 " + csObjectRole + "#24": 0,
	}
	if e.Action == audit.ActionSearch {
		want[csEntityType+"#2 "+csObjectRole+"#24"] = 1
	}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d entities %s; want %d", kinds[k], k, n)
		}
		delete(kinds, k)
	}
	if len(kinds) > 0 {
		t.Errorf("entities of no slice: %v", kinds)
	}
	for _, en := range ae.Entity {
		if en.Query != nil {
			if raw, err := base64.StdEncoding.DecodeString(*en.Query); err != nil || string(raw) != e.Query {
				t.Errorf("the query entity holds %q (%v); want the query %q in base64", raw, err, e.Query)
			}
		}
	}
}

// checkNoEmpty fails on any empty string, array or object in the resource's JSON: FHIR R4's
// JSON has none (a primitive's value is never empty, and empty elements are left out).
func checkNoEmpty(t *testing.T, b []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case string:
			if strings.TrimSpace(x) == "" {
				t.Errorf("%s is an empty string", path)
			}
		case []any:
			if len(x) == 0 {
				t.Errorf("%s is an empty array", path)
			}
			for i, el := range x {
				walk(path+"["+strconv.Itoa(i)+"]", el)
			}
		case map[string]any:
			if len(x) == 0 {
				t.Errorf("%s is an empty object", path)
			}
			for k, el := range x {
				walk(path+"."+k, el)
			}
		}
	}
	walk("AuditEvent", v)
}

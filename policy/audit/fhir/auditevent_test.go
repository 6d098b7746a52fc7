package fhir

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/nirproxy/nirproxy/policy/audit"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestAuditEvent: every kind of event becomes an AuditEvent that is valid R4, keeps the PARS
// profile's slices, and says what happened: BALP's read or search, the outcome and why, who
// asked, for what purpose, and from where.
func TestAuditEvent(t *testing.T) {
	type want struct {
		subtype, action, outcome string
		desc                     string   // "" for none
		requestor, requestorID   string   // who.type, identifier system|value
		purposes                 []string // v3-ActReason codes
		reason                   string   // "" for no reason extension
	}
	read := want{subtype: "read", action: "R", outcome: "0", requestor: "Practitioner",
		requestorID: SystemSDSUser + "|555021935107", purposes: []string{"TREAT"}}
	with := func(f func(*audit.Event)) audit.Event { e := clinicianRetrieve(); f(&e); return e }
	but := func(w want, f func(*want)) want { f(&w); return w }

	cases := []struct {
		name  string
		event audit.Event
		want  want
	}{
		{"retrieve", clinicianRetrieve(), read},
		{"search", with(func(e *audit.Event) {
			e.Action, e.Resource, e.Query = audit.ActionSearch, "/dicom-web/studies", "PatientID="+nhsNumber+"&ModalitiesInStudy=CT"
			e.StudyUIDs = []string{"1.2.3.4", "1.2.3.5"}
		}), but(read, func(w *want) { w.subtype, w.action = "search", "E" })},
		{"metadata", with(func(e *audit.Event) { e.Action = audit.ActionMetadata }), read},
		{"rendered", with(func(e *audit.Event) { e.Action = audit.ActionRendered }), read},
		{"bulk data", with(func(e *audit.Event) { e.Action = audit.ActionBulkData }), read},
		{"audit read", with(func(e *audit.Event) { e.Action, e.StudyUIDs = audit.ActionAuditRead, nil }), read},
		{"refused", with(func(e *audit.Event) {
			e.Outcome, e.Rule, e.Status, e.Sources = audit.OutcomeRefused, "patient-limit", 403, nil
		}), but(read, func(w *want) { w.outcome, w.desc = "4", "refused by rule patient-limit (HTTP 403)" })},
		{"failed", with(func(e *audit.Event) { e.Outcome, e.Status, e.Sources = audit.OutcomeFailed, 404, nil }),
			but(read, func(w *want) { w.outcome, w.desc = "4", "failed (HTTP 404)" })},
		{"partial", with(func(e *audit.Event) {
			e.Outcome, e.Missing, e.Stale = audit.OutcomePartial, []string{"RXB", "RXD"}, []string{"RXC"}
		}), but(read, func(w *want) { w.desc = "partial; no answer from RXB, RXD; stale copies for RXC (HTTP 200)" })},
		{"break-glass", with(func(e *audit.Event) {
			e.Purpose, e.BreakGlass, e.Reason = "BTG", true, "unconscious in ED, no consent possible"
		}), but(read, func(w *want) { w.purposes, w.reason = []string{"BTG"}, "unconscious in ED, no consent possible" })},
		{"emergency with treatment", with(func(e *audit.Event) {
			e.Emergency, e.Reason = true, "stroke call"
		}), but(read, func(w *want) { w.purposes, w.reason = []string{"TREAT", "ETREAT"}, "stroke call" })},
		{"system caller without user", with(func(e *audit.Event) {
			e.User, e.Issuer, e.TokenID, e.System = "results-feed", "", "", "results-feed"
		}), but(read, func(w *want) { w.requestor, w.requestorID = "Endpoint", productID+"|results-feed" })},
		{"user of another issuer", with(func(e *audit.Event) { e.Issuer = "https://idp.example" }),
			but(read, func(w *want) { w.requestorID = "https://idp.example|555021935107" })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions()
			ae, _ := mapped(t, 7, tc.name, tc.event, opts)
			w := tc.want

			if got := code(ae.Subtype[0]); got != csRestful+"#"+w.subtype {
				t.Errorf("subtype = %s, want %s", got, w.subtype)
			}
			if ae.Action.Code() != w.action || ae.Outcome.Code() != w.outcome {
				t.Errorf("action %s outcome %s, want %s and %s", ae.Action.Code(), ae.Outcome.Code(), w.action, w.outcome)
			}
			if got := deref(ae.OutcomeDesc); got != w.desc {
				t.Errorf("outcomeDesc = %q, want %q", got, w.desc)
			}
			if ae.Recorded != "2026-12-03T09:30:00.123Z" {
				t.Errorf("recorded = %s, want the event's time", ae.Recorded)
			}

			req := requestor(t, ae)
			if got := *req.Who.Type + " " + deref(req.Who.Identifier.System) + "|" + deref(req.Who.Identifier.Value); got != w.requestor+" "+w.requestorID {
				t.Errorf("requestor = %s, want %s %s", got, w.requestor, w.requestorID)
			}
			if tc.event.TokenID != "" && !slices.Equal(req.Policy, []string{tc.event.TokenID}) {
				t.Errorf("requestor's policy = %v, want the token's jti", req.Policy)
			}
			if got := codes(req.Role); !slices.Equal(got, []string{SystemJobRole + "#R8000"}) {
				t.Errorf("requestor's role = %v, want the job role", got)
			}
			var purposes []string
			for _, p := range w.purposes {
				purposes = append(purposes, csActReason+"#"+p)
			}
			if got := codes(req.PurposeOfUse); !slices.Equal(got, purposes) {
				t.Errorf("purposeOfUse = %v, want %v", got, purposes)
			}
			if got := codes(ae.PurposeOfEvent); !slices.Equal(got, purposes) {
				t.Errorf("purposeOfEvent = %v, want %v", got, purposes)
			}
			var reason string
			for _, x := range req.Extension {
				if x.Url == DefaultReasonExtension {
					reason = deref(x.ValueString)
				}
			}
			if reason != w.reason {
				t.Errorf("reason = %q, want %q", reason, w.reason)
			}

			checkNetworkAgents(t, ae, w.subtype == "read", opts)
			checkStudies(t, ae, tc.event)
			checkQuery(t, ae, tc.event)
		})
	}
}

// checkNetworkAgents checks BALP's client and server agents: types by the pattern (client
// 110152 on a read, 110153 on a search; the server the other), the client's IP address, the
// server's URL, and the calling system's identifier.
func checkNetworkAgents(t *testing.T, ae r4.AuditEvent, read bool, opts Options) {
	t.Helper()
	clientType, serverType := csDCM+"#110152", csDCM+"#110153"
	if !read {
		clientType, serverType = serverType, clientType
	}
	client, ok := agentOfType(ae, clientType)
	if !ok || client.Network == nil || deref(client.Network.Address) != "192.0.2.7" || client.Network.Type.Code() != "2" {
		t.Errorf("no client agent %s with the client's IP address: %+v", clientType, client)
	} else if deref(client.Who.Identifier.System) != productID {
		t.Errorf("the client agent's identifier system is %s, want %s", deref(client.Who.Identifier.System), productID)
	}
	server, ok := agentOfType(ae, serverType)
	if !ok || server.Network == nil || deref(server.Network.Address) != opts.ServerAddress || server.Network.Type.Code() != "5" {
		t.Errorf("no server agent %s at nirproxy's URL: %+v", serverType, server)
	} else {
		checkIdentifier(t, "server agent", server.Who.Identifier, opts.Observer.System, opts.Observer.Value)
	}
}

// checkStudies checks one entity a study: urn:dicom:uid|urn:oid:UID, audit-entity-type#2,
// object-role#3.
func checkStudies(t *testing.T, ae r4.AuditEvent, e audit.Event) {
	t.Helper()
	var got []string
	for _, en := range ae.Entity {
		if en.Role != nil && code(*en.Role) == csObjectRole+"#3" {
			if code(*en.Type) != csEntityType+"#2" || deref(en.What.Identifier.System) != SystemDICOMUID {
				t.Errorf("a study entity is not a system object identified by DICOM UID: %+v", en)
			}
			got = append(got, deref(en.What.Identifier.Value))
		}
	}
	var want []string
	for _, uid := range e.StudyUIDs {
		want = append(want, "urn:oid:"+uid)
	}
	if !slices.Equal(got, want) {
		t.Errorf("study entities %v, want %v", got, want)
	}
}

// checkQuery checks BALP's query entity: on a search only, holding the raw query in base64.
func checkQuery(t *testing.T, ae r4.AuditEvent, e audit.Event) {
	t.Helper()
	var queries []string
	for _, en := range ae.Entity {
		if en.Role != nil && code(*en.Role) == csObjectRole+"#24" {
			raw, err := base64.StdEncoding.DecodeString(deref(en.Query))
			if err != nil {
				t.Errorf("the query entity's query is not base64: %v", err)
			}
			queries = append(queries, string(raw))
		}
	}
	switch {
	case e.Action == audit.ActionSearch && !slices.Equal(queries, []string{e.Query}):
		t.Errorf("query entities %q, want one with %q", queries, e.Query)
	case e.Action != audit.ActionSearch && len(queries) > 0:
		t.Errorf("a %s has query entities %q", e.Action, queries)
	}
}

// TestAuditEventRefuses: an event without what PARS makes mandatory is refused, with an error
// that says what is missing and names no patient; so are options without an observer.
func TestAuditEventRefuses(t *testing.T) {
	with := func(f func(*audit.Event)) audit.Event { e := clinicianRetrieve(); f(&e); return e }
	cases := []struct {
		name  string
		event audit.Event
		opts  func(*Options)
		want  error // nil: any error
		says  string
	}{
		{"no patient", with(func(e *audit.Event) { e.PatientID = "" }), nil, ErrNoPatient, "no patient"},
		{"refused before authentication", with(func(e *audit.Event) {
			e.PatientID, e.User, e.Issuer, e.Organisation, e.Outcome, e.Status = "", "", "", "", audit.OutcomeRefused, 401
		}), nil, ErrNoPatient, "no patient"},
		{"no request id", with(func(e *audit.Event) { e.RequestID = "" }), nil, ErrIncomplete, "entity:transaction"},
		{"no organisation", with(func(e *audit.Event) { e.Organisation = "" }), nil, ErrIncomplete, "agent:organisation"},
		{"no time", with(func(e *audit.Event) { e.Time = time.Time{} }), nil, ErrIncomplete, "recorded"},
		{"unknown action", with(func(e *audit.Event) { e.Action = "delete" }), nil, ErrIncomplete, "action"},
		{"unknown outcome", with(func(e *audit.Event) { e.Outcome = "" }), nil, ErrIncomplete, "outcome"},
		{"no observer", clinicianRetrieve(), func(o *Options) { o.Observer.Value = "" }, nil, "Observer"},
		{"no system id system", clinicianRetrieve(), func(o *Options) { o.SystemIDSystem = "" }, nil, "SystemIDSystem"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			ae, err := AuditEvent(record(1, tc.name), tc.event, opts)
			if err == nil || ae != nil {
				t.Fatalf("AuditEvent = %v, %v; want a refusal", ae, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v is not %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), nhsNumber) {
				t.Errorf("error %q should say %q and not name the patient", err, tc.says)
			}
		})
	}
	unhashed := record(1, "x")
	unhashed.Hash = [32]byte{}
	if _, err := AuditEvent(unhashed, clinicianRetrieve(), testOptions()); !errors.Is(err, ErrIncomplete) {
		t.Errorf("a record without a hash: %v, want ErrIncomplete", err)
	}
}

// TestRecordID: the id is a version 5 UUID of the record's hash: the same for the same record
// whenever it is made, different for another record.
func TestRecordID(t *testing.T) {
	uuid5 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, again, b := RecordID(record(1, "a")), RecordID(record(1, "a")), RecordID(record(1, "b"))
	if !uuid5.MatchString(a) || a != again || a == b {
		t.Errorf("ids %s, %s, %s: want one stable version 5 UUID a record", a, again, b)
	}
	ae, err := AuditEvent(record(1, "a"), clinicianRetrieve(), testOptions())
	if err != nil || *ae.Id != a {
		t.Errorf("AuditEvent's id = %v (%v), want %s", ae, err, a)
	}
}

// TestGolden: a search's AuditEvent, as JSON, is exactly testdata/search.json (go test -update
// rewrites it).
func TestGolden(t *testing.T) {
	e := clinicianRetrieve()
	e.Action, e.Resource, e.Query = audit.ActionSearch, "/dicom-web/studies", "PatientID="+nhsNumber+"&ModalitiesInStudy=CT"
	e.Purpose, e.BreakGlass, e.Reason = "BTG", true, "unconscious in ED"
	e.Outcome, e.Missing = audit.OutcomePartial, []string{"RXB"}
	ae, err := AuditEvent(record(42, "golden"), e, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(ae, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "search.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the AuditEvent differs from %s (go test -update rewrites it):\n%s", path, got)
	}
	parse(t, ae)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

package audit

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEncode: an event is one line of JSON under stable field names, with its version, and
// reads back the same; another version is refused rather than misread.
func TestEncode(t *testing.T) {
	e := Event{
		Time: time.Date(2026, 12, 3, 9, 30, 0, 0, time.UTC), RequestID: "r1",
		User: "910000000001", Issuer: "https://idp", TokenID: "j1", Role: "R8000", Organisation: "RR8", System: "viewer",
		Purpose: "BTG", PurposeSource: "token", Reason: "stroke call", BreakGlass: true, ClientAddress: "10.0.0.7",
		Action: ActionMetadata, Resource: "/dicom-web/studies/:study/metadata", PatientID: "9434765919",
		StudyUIDs: []string{"1.2.3"}, Outcome: OutcomePartial, Status: 200, Sources: []string{"RXA"}, Missing: []string{"RXB"},
	}
	b, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "\n") {
		t.Errorf("an encoded event spans lines: %s", b)
	}
	for _, field := range []string{`"v":1`, `"requestId":"r1"`, `"user":"910000000001"`, `"tokenId":"j1"`, `"organisation":"RR8"`,
		`"purpose":"BTG"`, `"reason":"stroke call"`, `"breakGlass":true`, `"action":"metadata"`, `"patient":"9434765919"`,
		`"studies":["1.2.3"]`, `"outcome":"partial"`, `"missing":["RXB"]`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("encoded event lacks %s: %s", field, b)
		}
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	e.Version = EventVersion
	if got.PatientID != e.PatientID || got.Reason != e.Reason || !got.Time.Equal(e.Time) || got.Missing[0] != "RXB" || got.Version != EventVersion {
		t.Errorf("Decode = %+v, want %+v", got, e)
	}
	if _, err := Decode([]byte(strings.Replace(string(b), `"v":1`, `"v":2`, 1))); err == nil {
		t.Error("an event of another version was read")
	}
	if _, err := Decode([]byte(`{"v":1,`)); err == nil {
		t.Error("a torn event was read")
	}
}

// TestMayConcern: the pre-filter of readers looking for one patient never drops that patient's
// events, and passes over events that cannot name them.
func TestMayConcern(t *testing.T) {
	for _, tt := range []struct {
		name    string
		patient string
		nhs     string
		want    bool
	}{
		{"the patient's event", "9434765919", "9434765919", true},
		{"another patient's event", "9434765870", "9434765919", false},
		{"an event naming no patient", "", "9434765919", false},
		{"no patient asked for", "9434765919", "", false},
	} {
		b, err := Encode(Event{RequestID: "r1", Action: ActionSearch, Query: "PatientID=" + tt.patient, PatientID: tt.patient, Outcome: OutcomeSuccess})
		if err != nil {
			t.Fatal(err)
		}
		if got := MayConcern(b, tt.nhs); got != tt.want {
			t.Errorf("%s: MayConcern = %v; want %v (%s)", tt.name, got, tt.want, b)
		}
	}
}

// keysOf is what PatientKeys gives for b.
func keysOf(b []byte) []string {
	var keys []string
	PatientKeys(b, func(k []byte) { keys = append(keys, string(k)) })
	return keys
}

// TestPatientKeys: the patient access report's index key of an event is the patient Decode
// reads from it, whatever the other fields hold (hazard H21: a key left out hides the event
// from its patient's report), and an event naming no patient has none.
func TestPatientKeys(t *testing.T) {
	for _, tt := range []struct {
		name  string
		event Event
		want  []string
	}{
		{"a patient", Event{PatientID: "9434765919"}, []string{"9434765919"}},
		{"no patient", Event{Query: "PatientID=9434765919"}, nil},
		{"a reason that looks like a patient member", Event{Reason: `x","patient":"9434765870`, PatientID: "9434765919"}, []string{"9434765919"}},
		{"a query with a quote and a backslash", Event{Query: `PatientID="\`, PatientID: "9434765919"}, []string{"9434765919"}},
		{"a patient that JSON escapes", Event{PatientID: `a"<b>\&`}, []string{`a"<b>\&`}},
		{"a patient that is not UTF-8", Event{PatientID: "94\xff34"}, []string{"94\uFFFD34"}},
	} {
		tt.event.Action, tt.event.Outcome = ActionSearch, OutcomeSuccess
		b, err := Encode(tt.event)
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(b); !slices.Equal(got, tt.want) {
			t.Errorf("%s: PatientKeys = %q; want %q (%s)", tt.name, got, tt.want, b)
		}
	}
}

// FuzzPatientKeys: for any event, PatientKeys gives the patient Decode reads, and no key when
// it reads none.
func FuzzPatientKeys(f *testing.F) {
	f.Add("9434765919", `x","patient":"1`, "PatientID=9434765919", "u")
	f.Add(`"\`, `\"patient\":\"`, `"patient":"`, `\u0022`)
	f.Fuzz(func(t *testing.T, patient, reason, query, user string) {
		b, err := Encode(Event{PatientID: patient, Reason: reason, Query: query, User: user, Action: ActionSearch, Outcome: OutcomeSuccess})
		if err != nil { // strings always encode: a failure is a defect, not an input to pass over
			t.Fatalf("encode: %v", err)
		}
		e, err := Decode(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		keys := keysOf(b)
		if e.PatientID == "" && len(keys) != 0 || e.PatientID != "" && !slices.Contains(keys, e.PatientID) {
			t.Errorf("PatientKeys = %q; Decode reads patient %q (%s)", keys, e.PatientID, b)
		}
	})
}

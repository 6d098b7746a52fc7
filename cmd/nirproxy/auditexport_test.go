package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/fhir"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// The patients of the export tests: two with records, and one without.
const (
	alice    = "9434765919"
	bob      = "9449306052"
	nobody   = "9990012342"
	observer = "200000001234"
)

// exportRig is a configuration naming an audit spool, open and written as serve would write
// it, with the records of each event appended by name.
type exportRig struct {
	config string
	dir    string // the spool's
	sp     *spool.Spool
	recs   map[string]spool.Record
}

// newExportRig writes a valid configuration into a new directory, with pars (lines under
// audit:) added, and opens the spool it names, in small segments so that the events span
// several.
func newExportRig(t *testing.T, pars string) *exportRig {
	t.Helper()
	dir := t.TempDir()
	cfg := "listen: 127.0.0.1:8080\nsources:\n  - id: RXA\n    name: Example Hospitals NHS Trust\n    url: http://127.0.0.1:8042/dicom-web\n    insecure: true\n" +
		accessConfig(t, dir) + pars // accessConfig ends in the audit section
	r := &exportRig{config: filepath.Join(dir, "nirproxy.yaml"), dir: filepath.Join(dir, "audit"), recs: map[string]spool.Record{}}
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(spool.Options{Dir: r.dir, SegmentBytes: 2048, MaxBytes: 1 << 30, Clock: time.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	r.sp = sp
	return r
}

// record appends the event named name: patient's action at the RFC 3339 time at, with outcome.
func (r *exportRig) record(t *testing.T, name, at, patient, action, outcome string) {
	t.Helper()
	when, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		t.Fatal(err)
	}
	b, err := audit.Encode(audit.Event{Time: when, RequestID: "req-" + name,
		User: "555021935107", Issuer: "https://issuer.example.nhs.uk", TokenID: "jti-" + name, Role: "R8000",
		Organisation: "RR8", System: "leeds-viewer", Purpose: "TREAT", ClientAddress: "192.0.2.7",
		Action: action, Resource: "/dicom-web/studies", PatientID: patient,
		StudyUIDs: []string{"1.2.826.0.1.3680043.8.498.1"}, Outcome: outcome, Status: 200})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.sp.Append(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	r.recs[name] = rec
}

// export runs `nirproxy audit export --config` the rig's configuration with args.
func (r *exportRig) export(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"audit", "export", "--config", r.config}, args...), nil, &out, &errOut)
	return code, out.String(), errOut.String()
}

// exportedEntry is what a test checks of a Bundle entry.
type exportedEntry struct {
	id, fullURL, patient string
	recorded             time.Time
}

// parseBundle reads an export with Google's FHIR library, which checks it as R4 (the Bundle and
// every AuditEvent in it), and returns its type and its entries.
func parseBundle(t *testing.T, out string) (string, []exportedEntry) {
	t.Helper()
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := u.Unmarshal([]byte(out))
	if err != nil {
		t.Fatalf("the export is not a valid R4 resource: %v\n%s", err, out)
	}
	bundle := msg.(*bcrpb.ContainedResource).GetBundle()
	if bundle == nil {
		t.Fatalf("the export is not a Bundle:\n%s", out)
	}
	var entries []exportedEntry
	for _, e := range bundle.GetEntry() {
		ae := e.GetResource().GetAuditEvent()
		if ae == nil {
			t.Fatalf("an entry is not an AuditEvent: %v", e)
		}
		entries = append(entries, exportedEntry{
			id:       ae.GetId().GetValue(),
			fullURL:  e.GetFullUrl().GetValue(),
			patient:  ae.GetEntity()[0].GetWhat().GetIdentifier().GetValue().GetValue(),
			recorded: time.UnixMicro(ae.GetRecorded().GetValueUs()).UTC(),
		})
	}
	return bundle.GetType().GetValue().String(), entries
}

// TestAuditExport: the export of a patient is a valid R4 Bundle of type collection holding
// exactly that patient's access events, answered, refused and failed alike but not the reads of
// their audit record, as the AuditEvents PARS gets (the same ids), in time order, bounded by
// --from and --to; it reads the spool while it is open for appending.
func TestAuditExport(t *testing.T) {
	r := newExportRig(t, "  pars:\n    observer: \""+observer+"\"\n")
	// Appended in this order; "failed" is recorded after "refused" with an earlier time, as
	// concurrent requests may be.
	for _, e := range []struct{ name, at, patient, action, outcome string }{
		{"search", "2026-03-01T23:59:59.999Z", alice, audit.ActionSearch, audit.OutcomeSuccess},
		{"bob", "2026-03-02T08:00:00Z", bob, audit.ActionRetrieve, audit.OutcomeSuccess},
		{"partial", "2026-03-02T09:00:00.5Z", alice, audit.ActionRetrieve, audit.OutcomePartial},
		{"no patient", "2026-03-02T09:10:00Z", "", audit.ActionSearch, audit.OutcomeFailed},
		{"audit read", "2026-03-02T09:20:00Z", alice, audit.ActionAuditRead, audit.OutcomeSuccess},
		{"refused", "2026-03-02T23:59:59.999Z", alice, audit.ActionMetadata, audit.OutcomeRefused},
		{"failed", "2026-03-02T09:05:00Z", alice, audit.ActionRetrieve, audit.OutcomeFailed},
		{"rendered", "2026-03-03T00:00:00Z", alice, audit.ActionRendered, audit.OutcomeSuccess},
	} {
		r.record(t, e.name, e.at, e.patient, e.action, e.outcome)
	}
	tests := []struct {
		name    string
		args    []string
		patient string
		want    []string // the events exported, in order
	}{
		{"every access", []string{"--patient", alice}, alice, []string{"search", "partial", "failed", "refused", "rendered"}},
		{"the number as it is often written", []string{"--patient", "943 476 5919"}, alice, []string{"search", "partial", "failed", "refused", "rendered"}},
		{"another patient", []string{"--patient", bob}, bob, []string{"bob"}},
		{"a patient never accessed", []string{"--patient", nobody}, nobody, nil},
		{"one day, whole", []string{"--patient", alice, "--from", "2026-03-02", "--to", "2026-03-02"}, alice, []string{"partial", "failed", "refused"}},
		{"from a day on", []string{"--patient", alice, "--from", "2026-03-02"}, alice, []string{"partial", "failed", "refused", "rendered"}},
		{"up to a day", []string{"--patient", alice, "--to", "2026-03-01"}, alice, []string{"search"}},
		{"times, inclusive", []string{"--patient", alice, "--from", "2026-03-02T09:00:00.5Z", "--to", "2026-03-03T00:00:00Z"}, alice, []string{"partial", "failed", "refused", "rendered"}},
		{"times with an offset", []string{"--patient", alice, "--from", "2026-03-02T10:00:00+01:00", "--to", "2026-03-02T10:05:00+01:00"}, alice, []string{"partial", "failed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := r.export(tc.args...)
			if code != 0 {
				t.Fatalf("exit %d; stderr %q", code, errOut)
			}
			if strings.Contains(errOut, tc.patient) {
				t.Errorf("stderr names the patient: %q", errOut)
			}
			typ, entries := parseBundle(t, out)
			if typ != "COLLECTION" {
				t.Errorf("Bundle type %s; want collection", typ)
			}
			var got []string
			for i, e := range entries {
				name := "?"
				for n, rec := range r.recs {
					if fhir.RecordID(rec) == e.id {
						name = n
					}
				}
				got = append(got, name)
				if e.fullURL != "urn:uuid:"+e.id || e.patient != tc.patient {
					t.Errorf("entry %d (%s): fullUrl %s, patient %s; want urn:uuid:%s and the patient", i, name, e.fullURL, e.patient, e.id)
				}
				if i > 0 && e.recorded.Before(entries[i-1].recorded) {
					t.Errorf("entry %d (%s) recorded %s, before the entry ahead of it (%s)", i, name, e.recorded, entries[i-1].recorded)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("exported %q; want %q", got, tc.want)
			}
		})
	}
}

// TestAuditExportRefuses: what the export refuses, with exit status 1, nothing on stdout, and
// never the patient's number (or what may be one) on stderr.
func TestAuditExportRefuses(t *testing.T) {
	sound := newExportRig(t, "  pars:\n    observer: \""+observer+"\"\n")
	sound.record(t, "search", "2026-03-02T09:00:00Z", alice, audit.ActionSearch, audit.OutcomeSuccess)
	noObserver := newExportRig(t, "")
	noObserver.record(t, "search", "2026-03-02T09:00:00Z", alice, audit.ActionSearch, audit.OutcomeSuccess)
	broken := newExportRig(t, "  pars:\n    observer: \""+observer+"\"\n")
	for i := range 3 {
		broken.record(t, string(rune('a'+i)), "2026-03-02T09:00:00Z", alice, audit.ActionSearch, audit.OutcomeSuccess)
	}
	segment := filepath.Join(broken.dir, "seg-00000000000000000001.log")
	b, err := os.ReadFile(segment)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1 // inside the second record: an edit
	if err := os.WriteFile(segment, b, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		rig  *exportRig
		args []string
		want string
	}{
		{"an NHS number with a wrong check digit", sound, []string{"--patient", "9434765918"}, "--patient is not a valid NHS number"},
		{"no patient", sound, nil, "usage: nirproxy audit export"},
		{"the number as an argument", sound, []string{alice}, "usage: nirproxy audit export"},
		{"a number for a date", sound, []string{"--patient", alice, "--from", alice}, "--from is neither a date"},
		{"the end before the start", sound, []string{"--patient", alice, "--from", "2026-03-02", "--to", "2026-03-01"}, "--to is before --from"},
		{"no observer configured", noObserver, []string{"--patient", alice}, "audit.pars.observer is empty"},
		{"a broken chain", broken, []string{"--patient", alice}, "does not verify, so nothing is exported: audit chain broken in segment seg-00000000000000000001.log"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := tc.rig.export(tc.args...)
			if code != 1 || out != "" || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 1, nothing, and %q", code, out, errOut, tc.want)
			}
			for _, nhs := range []string{alice, "9434765918"} {
				if strings.Contains(errOut, nhs) {
					t.Errorf("stderr names the patient: %q", errOut)
				}
			}
		})
	}
}

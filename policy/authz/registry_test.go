package authz

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseRegistry(t *testing.T) {
	r := mustRegistry(t, testRegistry)
	if orgs, systems := r.Len(); orgs != 12 || systems != 6 {
		t.Fatalf("Len = %d organisations, %d systems; want 12, 6", orgs, systems)
	}
	o, ok := r.Organisation("rr8")
	want := Organisation{ODS: "RR8", Name: "onboarded", DSASigned: time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC),
		DSPTStatus: StandardsMet, DSPTYear: 2025, DPIA: time.Date(2024, 3, 15, 0, 0, 0, 0, time.UTC)}
	if !ok || o != want {
		t.Fatalf("Organisation(rr8) = %+v, %v; want %+v", o, ok, want)
	}
	if s, ok := r.SystemByClientID("viewer-client"); !ok || s.ID != "viewer" || s.Organisation != "RR8" || s.Purpose != "TREAT" {
		t.Errorf("SystemByClientID(viewer-client) = %+v, %v", s, ok)
	}
	if s, ok := r.SystemByClientID(""); ok {
		t.Errorf("SystemByClientID(\"\") = %+v, want none", s)
	}
	fp := "aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899"
	if s, ok := r.SystemByCertificate(strings.ToUpper(fp)); !ok || s.ID != "pacs-feed" || s.CertificateSHA256 != fp || s.Role != "R8000" {
		t.Errorf("SystemByCertificate = %+v, %v; want pacs-feed with %s, acting as R8000", s, ok, fp)
	}
	if s, ok := r.SystemByCertificate("not a fingerprint"); ok {
		t.Errorf("SystemByCertificate(junk) = %+v, want none", s)
	}
	if s, ok := r.System("viewer-client"); ok {
		t.Errorf("System(a client id) = %+v, want none: systems are named by their id", s)
	}
}

func TestParseRegistryProblems(t *testing.T) {
	const org = "  - {ods: RR8, dsaSigned: 2024-04-01, dsptStatus: Standards Met, dsptYear: 2025/26, dpia: 2024-03-15}\n"
	for _, tc := range []struct {
		name string
		yaml string
		want []string // the problems, in order
	}{
		{"empty file", "", []string{"the file is empty; it needs organisations and systems"}},
		{"not YAML", "organisations: [", []string{"yaml: line 1: did not find expected node content"}},
		{"two documents", "organisations: []\n---\nsystems: []\n", []string{"more than one YAML document"}},
		{"unknown top-level key", "organisation: []\n",
			[]string{"line 1: key organisation not found at the top level (organisations, systems)"}},
		{"unknown organisation key", "organisations:\n  - {ods: RR8, dspt: x}\n",
			[]string{"line 2: key dspt not found in an organisation (ods, name, dsaSigned, dsptStatus, dsptYear, dpia, suspended)"}},
		{"unknown system key", "organisations:\n" + org + "systems:\n  - {id: a, clientId: b, organisation: RR8, roles: [R8000]}\n",
			[]string{"line 4: key roles not found in a system (id, clientId, certificateSHA256, organisation, role, purpose)"}},
		{"suspended is not a boolean", "organisations:\n  - {ods: RR8, suspended: maybe}\n",
			[]string{"cannot unmarshal !!str `maybe` into bool"}},
		{"bad ODS code", "organisations:\n  - {ods: R-8}\n  - {}\n", []string{
			`organisations[0].ods: "R-8" is not an ODS code (3 to 10 letters and digits, like RR8 or A81001)`,
			`organisations[1].ods: "" is not an ODS code`,
		}},
		{"bad organisation fields", "organisations:\n  - {ods: RR8, dsaSigned: 1/4/2024, dpia: 2024-13-01, dsptStatus: Met, dsptYear: 2025-26}\n", []string{
			`organisations[0] (RR8).dsaSigned: "1/4/2024" is not a date written like 2025-07-01`,
			`organisations[0] (RR8).dpia: "2024-13-01" is not a date written like 2025-07-01`,
			`organisations[0] (RR8).dsptStatus: "Met" is not a DSPT status: use "Standards Exceeded", "Standards Met", "Approaching Standards" or "Standards Not Met"`,
			`organisations[0] (RR8).dsptYear: "2025-26" is not an assessment year written like 2025/26`,
		}},
		{"assessment year that does not follow on", "organisations:\n  - {ods: RR8, dsptStatus: Standards Met, dsptYear: 2025/27}\n",
			[]string{`organisations[0] (RR8).dsptYear: "2025/27" is not an assessment year`}},
		{"DSPT status without a year", "organisations:\n  - {ods: RR8, dsptStatus: Standards Met}\n",
			[]string{"organisations[0] (RR8): dsptStatus and dsptYear go together"}},
		{"DSPT year without a status", "organisations:\n  - {ods: RR8, dsptYear: 2025/26}\n",
			[]string{"organisations[0] (RR8): dsptStatus and dsptYear go together"}},
		{"organisation listed twice", "organisations:\n" + org + "  - {ods: rr8}\n",
			[]string{"organisations[1] (RR8).ods: RR8 is also organisations[0] (RR8); each organisation is listed once"}},
		{"bad systems", "organisations:\n" + org + "systems:\n" +
			"  - {clientId: a, organisation: RR8}\n" +
			"  - {id: ' b', clientId: b, organisation: RR8}\n" +
			"  - {id: c, organisation: RR8}\n" +
			"  - {id: d, certificateSHA256: 'ab:cd', organisation: RR8, role: R8000}\n" +
			"  - {id: e, clientId: e, organisation: X26}\n" +
			"  - {id: f, clientId: f, organisation: RR8, purpose: treat}\n", []string{
			`systems[0].id: "" is not a name`,
			`systems[1] ( b).id: " b" is not a name`,
			"systems[2] (c): a system needs a clientId, a certificateSHA256 or both",
			`systems[3] (d).certificateSHA256: "ab:cd" is not a SHA-256 fingerprint`,
			`systems[4] (e).organisation: "X26" is not an organisation of this registry`,
			`systems[5] (f).purpose: "treat" is not a purpose of use code like TREAT`,
		}},
		{"system roles", "organisations:\n" + org + "systems:\n" +
			"  - {id: a, certificateSHA256: '" + strings.Repeat("ab", 32) + "', organisation: RR8, role: r8000}\n" +
			"  - {id: b, clientId: b, organisation: RR8, role: R8000}\n" +
			"  - {id: c, certificateSHA256: '" + strings.Repeat("cd", 32) + "', organisation: RR8, purpose: TREAT}\n", []string{
			`systems[0] (a).role: "r8000" is not a national RBAC job role code; write R and four digits, like R8000`,
			"systems[1] (b).role: is the role a system acts in when it calls with its client certificate, and this system has no certificateSHA256",
			"systems[2] (c).role: is missing; a system calling with its client certificate acts in a national RBAC job role",
		}},
		{"systems sharing an id, client id or certificate", "organisations:\n" + org + "systems:\n" +
			"  - {id: a, clientId: x, certificateSHA256: '" + strings.Repeat("ab", 32) + "', organisation: RR8, role: R8000}\n" +
			"  - {id: a, clientId: y, organisation: RR8}\n" +
			"  - {id: b, clientId: x, organisation: RR8}\n" +
			"  - {id: c, certificateSHA256: '" + strings.Repeat("AB", 32) + "', organisation: RR8, role: R8000}\n", []string{
			`systems[1] (a).id: "a" is also systems[0] (a)'s; each system has its own`,
			`systems[2] (b).clientId: "x" is also systems[0] (a)'s`,
			`systems[3] (c).certificateSHA256: "` + strings.Repeat("ab", 32) + `" is also systems[0] (a)'s`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRegistry([]byte(tc.yaml))
			var re *RegistryError
			if !errors.As(err, &re) {
				t.Fatalf("ParseRegistry = %v, %v; want a *RegistryError", r, err)
			}
			if r != nil {
				t.Errorf("ParseRegistry gave a registry with its error")
			}
			if len(re.Problems) != len(tc.want) {
				t.Fatalf("ParseRegistry problems:\n%s\nwant %d:\n%s", err, len(tc.want), strings.Join(tc.want, "\n"))
			}
			for i, w := range tc.want {
				if got := re.Problems[i].String(); !strings.Contains(got, w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "read onboarding registry: ") {
				t.Errorf("Error() = %q, want it to start with what failed", err)
			}
		})
	}
}

func TestParseRegistryEmptyLists(t *testing.T) {
	r := mustRegistry(t, "organisations: []\nsystems: []\n")
	if orgs, systems := r.Len(); orgs != 0 || systems != 0 {
		t.Fatalf("Len = %d, %d; want an empty registry", orgs, systems)
	}
}

// TestParseRegistryTypeErrors shows that each of yaml's complaints is its own problem.
func TestParseRegistryTypeErrors(t *testing.T) {
	_, err := ParseRegistry([]byte("organisations:\n  - {ods: RR8, suspended: maybe, dspt: 1}\n"))
	var re *RegistryError
	if !errors.As(err, &re) || len(re.Problems) != 2 ||
		re.Problems[0].String() != "line 2: cannot unmarshal !!str `maybe` into bool" ||
		!strings.HasPrefix(re.Problems[1].String(), "line 2: key dspt not found in an organisation") {
		t.Fatalf("ParseRegistry = %v; want two problems of line 2", err)
	}
}

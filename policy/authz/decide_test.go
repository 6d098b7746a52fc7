package authz

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

// testRegistry is an organisation in each onboarding state and the systems the tests call with.
// It is judged at testNow, in the 2025/26 DSPT year.
const testRegistry = `
organisations:
  - {ods: RR8, name: onboarded, dsaSigned: 2024-04-01, dsptStatus: Standards Met, dsptYear: 2025/26, dpia: 2024-03-15}
  - {ods: EXCEEDS, dsaSigned: 2024-04-01, dsptStatus: Standards Exceeded, dsptYear: 2025/26, dpia: 2024-03-15}
  - {ods: NODSA, dsptStatus: Standards Met, dsptYear: 2025/26, dpia: 2024-03-15}
  - {ods: LATEDSA, dsaSigned: 2026-02-01, dsptStatus: Standards Met, dsptYear: 2025/26, dpia: 2024-03-15}
  - {ods: LAPSED, dsaSigned: 2024-04-01, dsptStatus: Standards Met, dsptYear: 2024/25, dpia: 2024-03-15}
  - {ods: APPROACH, dsaSigned: 2024-04-01, dsptStatus: Approaching Standards, dsptYear: 2025/26, dpia: 2024-03-15}
  - {ods: NOTMET, dsaSigned: 2024-04-01, dsptStatus: Standards Not Met, dsptYear: 2025/26, dpia: 2024-03-15}
  - {ods: NODSPT, dsaSigned: 2024-04-01, dpia: 2024-03-15}
  - {ods: NODPIA, dsaSigned: 2024-04-01, dsptStatus: Standards Met, dsptYear: 2025/26}
  - {ods: LATEDPIA, dsaSigned: 2024-04-01, dsptStatus: Standards Met, dsptYear: 2025/26, dpia: 2026-01-16}
  - {ods: SUSPENDED, dsaSigned: 2024-04-01, dsptStatus: Standards Met, dsptYear: 2025/26, dpia: 2024-03-15, suspended: true}
  - {ods: NOTHING}
systems:
  - {id: viewer, clientId: viewer-client, organisation: RR8, purpose: TREAT}
  - {id: plain-viewer, clientId: plain-client, organisation: RR8}
  - {id: research-viewer, clientId: research-client, organisation: RR8, purpose: HRESCH}
  - {id: pacs-feed, certificateSHA256: "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99", organisation: RR8, role: R8000, purpose: TREAT}
  - {id: lapsed-feed, certificateSHA256: 1111111111111111111111111111111111111111111111111111111111111111, organisation: LAPSED, role: R8000, purpose: TREAT}
  - {id: plain-feed, certificateSHA256: 2222222222222222222222222222222222222222222222222222222222222222, organisation: RR8, role: R8000}
`

// testNow is when the tests' decisions are made.
var testNow = time.Date(2026, time.January, 15, 12, 0, 0, 0, time.UTC)

// mustRegistry parses a registry the test needs.
func mustRegistry(t *testing.T, yaml string) *Registry {
	t.Helper()
	r, err := ParseRegistry([]byte(yaml))
	if err != nil {
		t.Fatalf("ParseRegistry: %v", err)
	}
	return r
}

// testRules are the default rules, as config.Default will give them.
func testRules() Rules {
	return Rules{RoleActions: DefaultRoleActions(), DSPTYear: DefaultDSPTYear()}
}

// clinician is an onboarded clinician's token: R8000 at RR8 for treatment.
func clinician() policy.Principal {
	return policy.Principal{Subject: "555012345678", Issuer: "https://auth.example", Role: "R8000",
		Organisation: "RR8", System: "some-client", Purpose: PurposeTreatment, Expires: testNow.Add(time.Hour)}
}

// feed is a system caller (a client certificate) registered as id.
func feed(id string) policy.Principal {
	return policy.Principal{Subject: id, System: id, Role: "R8000"}
}

// with returns p changed by f.
func with(p policy.Principal, f func(*policy.Principal)) policy.Principal {
	f(&p)
	return p
}

var (
	search   = policy.Action{Kind: "search", Resource: "/studies", PatientID: "9434765919"}
	retrieve = policy.Action{Kind: "retrieve", Resource: "/studies/{study}", StudyUID: "1.2.3"}
)

// kind is an action of another kind.
func kind(k string) policy.Action { return policy.Action{Kind: k, Resource: "/x"} }

// stating is a with the request's own purpose of use and reason.
func stating(a policy.Action, purpose, reason string) policy.Action {
	a.Purpose, a.PurposeReason = purpose, reason
	return a
}

// want is a case's expected Decision; allowed cases have no rule.
type want struct {
	rule    string // "" for allowed
	status  int    // for refusals; 403 unless set
	message string // a part of the refusal's message
	source  PurposeSource
	purpose string
	org     string
	system  string
	// emergency, breakGlass: the flags; either also means a security event.
	emergency, breakGlass bool
}

func TestDecide(t *testing.T) {
	reg := mustRegistry(t, testRegistry)
	fromRequest := testRules()
	fromRequest.AcceptRequestPurpose = true
	operators := testRules()
	operators.RoleActions["R8000"] = append(operators.RoleActions["R8000"], PermOperate)

	cases := []struct {
		name  string
		p     policy.Principal
		a     policy.Action
		rules Rules // testRules() when zero
		// noRegistry decides with a nil registry.
		noRegistry bool
		want       want
	}{
		// Roles to actions.
		{name: "clinician R8000 searches", p: clinician(), a: search,
			want: want{source: PurposeFromToken, purpose: "TREAT", org: "RR8"}},
		{name: "clinician R8000 retrieves images", p: clinician(), a: retrieve, want: want{source: PurposeFromToken, purpose: "TREAT", org: "RR8"}},
		{name: "nurse R8001 retrieves", p: with(clinician(), func(p *policy.Principal) { p.Role = "R8001" }), a: retrieve,
			want: want{source: PurposeFromToken, purpose: "TREAT", org: "RR8"}},
		{name: "health professional R8003 retrieves reports", p: with(clinician(), func(p *policy.Principal) { p.Role = "R8003" }),
			a: kind("retrieveReports"), want: want{source: PurposeFromToken, purpose: "TREAT", org: "RR8"}},
		{name: "clinician may not read the audit", p: clinician(), a: kind("readAudit"),
			want: want{rule: RuleRoleActions, message: "the job role R8000 may not read the audit"}},
		{name: "clinician may not operate by default", p: clinician(), a: kind("operate"),
			want: want{rule: RuleRoleActions, message: "may not operate"}},
		{name: "clinician given operate operates without a purpose", rules: operators,
			p: with(clinician(), func(p *policy.Principal) { p.Purpose = "" }), a: kind("operate"), want: want{org: "RR8"}},
		{name: "privacy officer R0001 reads the audit without a purpose",
			p: with(clinician(), func(p *policy.Principal) { p.Role, p.Purpose = "R0001", "" }), a: kind("readAudit"), want: want{org: "RR8"}},
		{name: "privacy officer may not search", p: with(clinician(), func(p *policy.Principal) { p.Role = "R0001" }), a: search,
			want: want{rule: RuleRoleActions, message: "the job role R0001 may not search"}},
		{name: "admin R8008 may not search", p: with(clinician(), func(p *policy.Principal) { p.Role = "R8008" }), a: search,
			want: want{rule: RuleRoleActions}},
		{name: "student R8004 may not retrieve", p: with(clinician(), func(p *policy.Principal) { p.Role = "R8004" }), a: retrieve,
			want: want{rule: RuleRoleActions}},
		{name: "unknown role may do nothing", p: with(clinician(), func(p *policy.Principal) { p.Role = "R9999" }), a: search,
			want: want{rule: RuleRoleActions}},
		{name: "no role may do nothing", p: with(clinician(), func(p *policy.Principal) { p.Role = "" }), a: search,
			want: want{rule: RuleRoleActions, message: "no job role"}},
		{name: "unknown action kind", p: clinician(), a: kind("delete"), want: want{rule: RuleRoleActions, message: `"delete"`}},
		{name: "empty action kind", p: clinician(), a: kind(""), want: want{rule: RuleRoleActions}},

		// Authentication.
		{name: "no subject", p: with(clinician(), func(p *policy.Principal) { p.Subject = "" }), a: search,
			want: want{rule: RuleAuthenticated, status: http.StatusUnauthorized}},
		{name: "credential expired", p: with(clinician(), func(p *policy.Principal) { p.Expires = testNow.Add(-time.Second) }), a: search,
			want: want{rule: RuleAuthenticated, status: http.StatusUnauthorized, message: "expired at 2026-01-15T11:59:59Z"}},
		{name: "credential expiring now", p: with(clinician(), func(p *policy.Principal) { p.Expires = testNow }), a: search,
			want: want{rule: RuleAuthenticated, status: http.StatusUnauthorized}},
		{name: "credential without expiry", p: with(clinician(), func(p *policy.Principal) { p.Expires = time.Time{} }), a: search,
			want: want{source: PurposeFromToken, purpose: "TREAT", org: "RR8"}},

		// Organisation onboarded.
		{name: "organisation with DSPT Standards Exceeded", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "EXCEEDS" }),
			a: search, want: want{source: PurposeFromToken, purpose: "TREAT", org: "EXCEEDS"}},
		{name: "organisation code in lower case", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "rr8" }),
			a: search, want: want{source: PurposeFromToken, purpose: "TREAT", org: "RR8"}},
		{name: "organisation not in the registry", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "X26" }), a: search,
			want: want{rule: RuleOnboarded, message: "the organisation X26 is not onboarded: it is not in the onboarding registry"}},
		{name: "no organisation", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "" }), a: search,
			want: want{rule: RuleOnboarded, message: "states no organisation"}},
		{name: "no data sharing agreement", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "NODSA" }), a: search,
			want: want{rule: RuleOnboarded, message: "NODSA is not onboarded: no signed data sharing agreement"}},
		{name: "data sharing agreement signed later", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "LATEDSA" }), a: search,
			want: want{rule: RuleOnboarded, message: "no signed data sharing agreement"}},
		{name: "DSPT of last year", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "LAPSED" }), a: search,
			want: want{rule: RuleOnboarded, message: "no in-year DSPT assessment: its latest is 2024/25, 2025/26 is needed"}},
		{name: "DSPT approaching standards", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "APPROACH" }), a: search,
			want: want{rule: RuleOnboarded, message: "its 2025/26 DSPT assessment is Approaching Standards, not Standards Met or Exceeded"}},
		{name: "DSPT standards not met", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "NOTMET" }), a: retrieve,
			want: want{rule: RuleOnboarded, message: "Standards Not Met"}},
		{name: "no DSPT", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "NODSPT" }), a: search,
			want: want{rule: RuleOnboarded, message: "no DSPT assessment (2025/26, Standards Met or Exceeded, is needed)"}},
		{name: "no DPIA", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "NODPIA" }), a: search,
			want: want{rule: RuleOnboarded, message: "NODPIA is not onboarded: no data protection impact assessment"}},
		{name: "DPIA completed later", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "LATEDPIA" }), a: search,
			want: want{rule: RuleOnboarded, message: "LATEDPIA is not onboarded: no data protection impact assessment"}},
		{name: "suspended", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "SUSPENDED" }), a: search,
			want: want{rule: RuleOnboarded, message: "SUSPENDED is not onboarded: its access is suspended"}},
		{name: "everything missing is named", p: with(clinician(), func(p *policy.Principal) { p.Organisation = "NOTHING" }), a: search,
			want: want{rule: RuleOnboarded, message: "no signed data sharing agreement; no DSPT assessment (2025/26, Standards Met or Exceeded, is needed); no data protection impact assessment"}},
		{name: "privacy officer of a suspended organisation", p: with(clinician(), func(p *policy.Principal) {
			p.Role, p.Organisation = "R0001", "SUSPENDED"
		}), a: kind("readAudit"), want: want{rule: RuleOnboarded}},
		{name: "no registry", noRegistry: true, p: clinician(), a: search, want: want{rule: RuleOnboarded, message: "no onboarding registry"}},

		// Purpose of use.
		{name: "research purpose in the token", p: with(clinician(), func(p *policy.Principal) { p.Purpose = "HRESCH" }), a: search,
			want: want{rule: RulePurposeOfUse, message: `the purpose of use "HRESCH" is not direct patient care: nirproxy may only be used for direct patient care`}},
		{name: "payment purpose on a retrieve", p: with(clinician(), func(p *policy.Principal) { p.Purpose = "HPAYMT" }), a: retrieve,
			want: want{rule: RulePurposeOfUse, message: "nirproxy may only be used for direct patient care"}},
		{name: "purpose codes are case sensitive", p: with(clinician(), func(p *policy.Principal) { p.Purpose = "treat" }), a: search,
			want: want{rule: RulePurposeOfUse}},
		{name: "no purpose anywhere", p: with(clinician(), func(p *policy.Principal) { p.Purpose = "" }), a: search,
			want: want{rule: RulePurposeOfUse, message: "no purpose of use is stated: nirproxy may only be used for direct patient care"}},
		{name: "purpose from the client's registration",
			p: with(clinician(), func(p *policy.Principal) { p.Purpose, p.System = "", "viewer-client" }), a: search,
			want: want{source: PurposeFromRegistration, purpose: "TREAT", org: "RR8", system: "viewer"}},
		{name: "client registered for research",
			p: with(clinician(), func(p *policy.Principal) { p.Purpose, p.System = "", "research-client" }), a: search,
			want: want{rule: RulePurposeOfUse, message: "HRESCH"}},
		{name: "the token's purpose before the registration's",
			p: with(clinician(), func(p *policy.Principal) { p.System = "research-client" }), a: search,
			want: want{source: PurposeFromToken, purpose: "TREAT", org: "RR8", system: "research-viewer"}},
		{name: "the registration's purpose before the request's", rules: fromRequest,
			p: with(clinician(), func(p *policy.Principal) { p.Purpose, p.System = "", "viewer-client" }), a: stating(search, "HRESCH", ""),
			want: want{source: PurposeFromRegistration, purpose: "TREAT", org: "RR8", system: "viewer"}},
		{name: "the request's purpose where the deployment accepts it", rules: fromRequest,
			p: with(clinician(), func(p *policy.Principal) { p.Purpose, p.System = "", "plain-client" }), a: stating(search, "TREAT", ""),
			want: want{source: PurposeFromRequest, purpose: "TREAT", org: "RR8", system: "plain-viewer"}},
		{name: "the request's purpose where the deployment does not accept it",
			p: with(clinician(), func(p *policy.Principal) { p.Purpose = "" }), a: stating(search, "TREAT", ""),
			want: want{rule: RulePurposeOfUse, message: "does not accept a purpose of use stated by the request (X-Purpose-Of-Use)"}},
		{name: "the request's research purpose", rules: fromRequest,
			p: with(clinician(), func(p *policy.Principal) { p.Purpose = "" }), a: stating(search, "PUBHLTH", ""),
			want: want{rule: RulePurposeOfUse, message: "PUBHLTH"}},
		{name: "emergency treatment with the token's reason",
			p: with(clinician(), func(p *policy.Principal) { p.Purpose, p.PurposeReason = "ETREAT", "unconscious patient in ED" }), a: retrieve,
			want: want{source: PurposeFromToken, purpose: "ETREAT", org: "RR8", emergency: true}},
		{name: "break glass with the request's reason",
			p: with(clinician(), func(p *policy.Principal) { p.Purpose = "BTG" }), a: stating(search, "", "  stroke call  "),
			want: want{source: PurposeFromToken, purpose: "BTG", org: "RR8", breakGlass: true}},
		{name: "break glass stated by the request", rules: fromRequest,
			p: with(clinician(), func(p *policy.Principal) { p.Purpose = "" }), a: stating(retrieve, "BTG", "stroke call"),
			want: want{source: PurposeFromRequest, purpose: "BTG", org: "RR8", breakGlass: true}},
		{name: "break glass without a reason",
			p: with(clinician(), func(p *policy.Principal) { p.Purpose = "BTG" }), a: stating(search, "", "   "),
			want: want{rule: RulePurposeOfUse, message: "the purpose of use BTG needs a reason", breakGlass: true}},
		{name: "emergency treatment without a reason",
			p: with(clinician(), func(p *policy.Principal) { p.Purpose = "ETREAT" }), a: search,
			want: want{rule: RulePurposeOfUse, message: "ETREAT needs a reason", emergency: true}},
		{name: "break glass by a role that may not search",
			p: with(clinician(), func(p *policy.Principal) { p.Role, p.Purpose, p.PurposeReason = "R8008", "BTG", "why" }), a: search,
			want: want{rule: RuleRoleActions, breakGlass: true}},

		// System callers: a client certificate, no issuer.
		{name: "system caller", p: feed("pacs-feed"), a: retrieve,
			want: want{source: PurposeFromRegistration, purpose: "TREAT", org: "RR8", system: "pacs-feed"}},
		{name: "system caller stating its registration's organisation",
			p: with(feed("pacs-feed"), func(p *policy.Principal) { p.Organisation = "RR8" }), a: search,
			want: want{source: PurposeFromRegistration, purpose: "TREAT", org: "RR8", system: "pacs-feed"}},
		{name: "system caller stating another organisation",
			p: with(feed("pacs-feed"), func(p *policy.Principal) { p.Organisation = "EXCEEDS" }), a: search,
			want: want{rule: RuleOnboarded, message: `the system "pacs-feed" is registered to RR8, not EXCEEDS`}},
		{name: "system caller not registered", p: feed("ghost"), a: search,
			want: want{rule: RuleOnboarded, message: `the system "ghost" is not registered`}},
		{name: "system caller named by a client id", p: feed("viewer-client"), a: search,
			want: want{rule: RuleOnboarded, message: "is not registered"}},
		{name: "system caller of an organisation whose DSPT lapsed", p: feed("lapsed-feed"), a: search,
			want: want{rule: RuleOnboarded, message: "LAPSED is not onboarded: no in-year DSPT"}},
		{name: "system caller registered without a purpose", p: feed("plain-feed"), a: search,
			want: want{rule: RulePurposeOfUse, message: "no purpose of use"}},
		{name: "system caller's own purpose", p: with(feed("plain-feed"), func(p *policy.Principal) { p.Purpose = "TREAT" }), a: search,
			want: want{source: PurposeFromToken, purpose: "TREAT", org: "RR8", system: "plain-feed"}},
		{name: "system caller in a role that may not retrieve", p: with(feed("pacs-feed"), func(p *policy.Principal) { p.Role = "R8008" }),
			a: retrieve, want: want{rule: RuleRoleActions}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rules := tc.rules
			if rules.RoleActions == nil {
				rules = testRules()
			}
			r := reg
			if tc.noRegistry {
				r = nil
			}
			d := Decide(r, rules, tc.p, tc.a, testNow)
			checkDecision(t, d, tc.want)
		})
	}
}

// checkDecision compares d with w.
func checkDecision(t *testing.T, d Decision, w want) {
	t.Helper()
	if w.rule == "" {
		if !d.Allowed || d.Rule != "" || d.Status != 0 || d.Message != "" || d.Err() != nil {
			t.Fatalf("Decide = %+v, want allowed", d)
		}
	} else {
		status := w.status
		if status == 0 {
			status = http.StatusForbidden
		}
		if d.Allowed || d.Rule != w.rule || d.Status != status || !strings.Contains(d.Message, w.message) {
			t.Fatalf("Decide = %+v, want refused by %s with %d and a message containing %q", d, w.rule, status, w.message)
		}
		return
	}
	if d.PurposeSource != w.source || d.Purpose != w.purpose || d.Organisation != w.org || d.System != w.system {
		t.Errorf("Decide = purpose %q from %q, organisation %q, system %q; want %q from %q, %q, %q",
			d.Purpose, d.PurposeSource, d.Organisation, d.System, w.purpose, w.source, w.org, w.system)
	}
	if d.Emergency != w.emergency || d.BreakGlass != w.breakGlass || d.SecurityEvent != (w.emergency || w.breakGlass) {
		t.Errorf("Decide flags emergency %v, break glass %v, security event %v; want %v, %v",
			d.Emergency, d.BreakGlass, d.SecurityEvent, w.emergency, w.breakGlass)
	}
	if d.SecurityEvent && d.Reason == "" {
		t.Errorf("Decide allowed %s with no reason", d.Purpose)
	}
}

// TestDecideFlagsRefusedEmergencies shows that a refused emergency or break-glass request is
// still flagged: the security log sees attempts, not only accesses.
func TestDecideFlagsRefusedEmergencies(t *testing.T) {
	reg := mustRegistry(t, testRegistry)
	for _, tc := range []struct {
		name                  string
		p                     policy.Principal
		emergency, breakGlass bool
	}{
		{"break glass without a reason", with(clinician(), func(p *policy.Principal) { p.Purpose = "BTG" }), false, true},
		{"emergency by a role that may not search", with(clinician(), func(p *policy.Principal) {
			p.Role, p.Purpose, p.PurposeReason = "R8008", "ETREAT", "why"
		}), true, false},
		{"break glass for an organisation not onboarded", with(clinician(), func(p *policy.Principal) {
			p.Organisation, p.Purpose, p.PurposeReason = "LAPSED", "BTG", "why"
		}), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(reg, testRules(), tc.p, search, testNow)
			if d.Allowed || d.Emergency != tc.emergency || d.BreakGlass != tc.breakGlass || !d.SecurityEvent {
				t.Fatalf("Decide = %+v, want refused with emergency %v, break glass %v and a security event", d, tc.emergency, tc.breakGlass)
			}
		})
	}
}

// TestDecideDSPTYearBoundary judges an organisation with a 2025/26 assessment on each side of
// the year's end: 30 June is its last day, 1 July the next year's first.
func TestDecideDSPTYearBoundary(t *testing.T) {
	reg := mustRegistry(t, testRegistry)
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatalf("load Europe/London from the embedded time-zone database: %v", err)
	}
	inLondon := testRules()
	inLondon.DSPTYear.Location = london
	p := with(clinician(), func(p *policy.Principal) { p.Expires = time.Time{} })
	for _, tc := range []struct {
		name    string
		rules   Rules
		now     time.Time
		allowed bool
	}{
		{"first day of 2025/26", testRules(), time.Date(2025, time.July, 1, 0, 0, 0, 0, time.UTC), true},
		{"last moment of 2024/25", testRules(), time.Date(2025, time.June, 30, 23, 59, 59, 0, time.UTC), false},
		{"last moment of 2025/26", testRules(), time.Date(2026, time.June, 30, 23, 59, 59, 999999999, time.UTC), true},
		{"first moment of 2026/27", testRules(), time.Date(2026, time.July, 1, 0, 0, 0, 0, time.UTC), false},
		{"1 July in London is 30 June in UTC", inLondon, time.Date(2026, time.June, 30, 23, 30, 0, 0, time.UTC), false},
		{"30 June in London", inLondon, time.Date(2026, time.June, 30, 22, 59, 0, 0, time.UTC), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(reg, tc.rules, p, search, tc.now)
			if d.Allowed != tc.allowed || (!tc.allowed && d.Rule != RuleOnboarded) {
				t.Fatalf("Decide at %s = %+v, want allowed %v", tc.now, d, tc.allowed)
			}
		})
	}
}

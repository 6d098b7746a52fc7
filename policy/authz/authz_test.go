package authz

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

// Authorizer is the policy step the request path uses.
var _ policy.Authorizer = (*Authorizer)(nil)

func TestAuthorize(t *testing.T) {
	var log logBuffer
	z, err := NewAuthorizer(mustRegistry(t, testRegistry), testRules(), func() time.Time { return testNow }, log.logger())
	if err != nil {
		t.Fatal(err)
	}
	// A refusal's Grant is what the rules had judged when they refused, for its audit record:
	// the organisation, and the purpose asked for once the caller is known.
	treat := func(org string) policy.Grant {
		return policy.Grant{Purpose: "TREAT", PurposeSource: "token", Organisation: org}
	}
	for _, tc := range []struct {
		name     string
		p        policy.Principal
		sentinel error // nil when allowed
		rule     string
		status   int
		grant    policy.Grant
	}{
		{"allowed", clinician(), nil, "", 0, treat("RR8")},
		{"no caller", policy.Principal{}, policy.ErrUnauthenticated, RuleAuthenticated, http.StatusUnauthorized, policy.Grant{}},
		{"research", with(clinician(), func(p *policy.Principal) { p.Purpose = "HRESCH" }), policy.ErrForbidden, RulePurposeOfUse, http.StatusForbidden,
			policy.Grant{Purpose: "HRESCH", PurposeSource: "token", Organisation: "RR8"}},
		{"lapsed DSPT", with(clinician(), func(p *policy.Principal) { p.Organisation = "LAPSED" }), policy.ErrForbidden, RuleOnboarded, http.StatusForbidden, treat("LAPSED")},
		{"student", with(clinician(), func(p *policy.Principal) { p.Role = "R8004" }), policy.ErrForbidden, RuleRoleActions, http.StatusForbidden, treat("RR8")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			grant, err := z.Authorize(t.Context(), tc.p, search)
			if grant != tc.grant {
				t.Errorf("grant %+v, want %+v", grant, tc.grant)
			}
			if tc.sentinel == nil {
				if err != nil {
					t.Fatalf("Authorize = %v, want allowed", err)
				}
				return
			}
			var r *Refusal
			if !errors.Is(err, tc.sentinel) || !errors.As(err, &r) || r.Rule != tc.rule || r.Status != tc.status || r.Message == "" {
				t.Fatalf("Authorize = %v, want a *Refusal by %s (%d) wrapping %v", err, tc.rule, tc.status, tc.sentinel)
			}
			other := policy.ErrForbidden
			if tc.sentinel == policy.ErrForbidden {
				other = policy.ErrUnauthenticated
			}
			if errors.Is(err, other) {
				t.Errorf("Authorize = %v, which is also %v", err, other)
			}
			if want := "refused by rule " + tc.rule + ": " + r.Message; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err, want)
			}
		})
	}
	if log.String() != "" {
		t.Errorf("ordinary decisions were logged:\n%s", log.String())
	}
}

// TestAuthorizeRefusedBreakGlass: a break-glass request refused, by its role or by its
// organisation, returns the purpose asked for and the reason given with the refusal, for the
// audit record, and is logged as a security event.
func TestAuthorizeRefusedBreakGlass(t *testing.T) {
	var log logBuffer
	z, err := NewAuthorizer(mustRegistry(t, testRegistry), testRules(), func() time.Time { return testNow }, log.logger())
	if err != nil {
		t.Fatal(err)
	}
	btg := func(role, org string) policy.Principal {
		return with(clinician(), func(p *policy.Principal) {
			p.Role, p.Organisation, p.Purpose, p.PurposeReason = role, org, "BTG", "stroke call"
		})
	}
	for _, tc := range []struct {
		name string
		p    policy.Principal
		rule string
	}{
		{"by a student", btg("R8004", "RR8"), RuleRoleActions},
		{"for a lapsed organisation", btg("R8000", "LAPSED"), RuleOnboarded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			grant, err := z.Authorize(t.Context(), tc.p, retrieve)
			var r *Refusal
			if !errors.As(err, &r) || r.Rule != tc.rule {
				t.Fatalf("Authorize = %v, want refused by %s", err, tc.rule)
			}
			want := policy.Grant{Purpose: "BTG", PurposeSource: "token", Reason: "stroke call", BreakGlass: true, Organisation: tc.p.Organisation}
			if grant != want {
				t.Errorf("grant %+v, want %+v", grant, want)
			}
		})
	}
	if n := strings.Count(log.String(), "security event"); n != 2 || strings.Count(log.String(), "allowed=false") != 2 {
		t.Errorf("logged:\n%s\nwant both refused break-glass attempts as security events", log.String())
	}
}

func TestAuthorizeLogsSecurityEvents(t *testing.T) {
	var log logBuffer
	z, err := NewAuthorizer(mustRegistry(t, testRegistry), testRules(), func() time.Time { return testNow }, log.logger())
	if err != nil {
		t.Fatal(err)
	}
	btg := with(clinician(), func(p *policy.Principal) { p.Purpose, p.PurposeReason = "BTG", "stroke call" })
	grant, err := z.Authorize(t.Context(), btg, retrieve)
	if err != nil {
		t.Fatalf("Authorize(break glass) = %v, want allowed", err)
	}
	if !grant.BreakGlass || grant.Purpose != "BTG" || grant.Reason != "stroke call" {
		t.Errorf("break glass granted %+v; want BTG flagged with its reason, for the audit", grant)
	}
	if _, err := z.Authorize(t.Context(), with(btg, func(p *policy.Principal) { p.PurposeReason = "" }), retrieve); err == nil {
		t.Fatal("Authorize(break glass without a reason) allowed")
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %d lines, want one for each break-glass request:\n%s", len(lines), log.String())
	}
	for i, want := range []string{"allowed=true", "allowed=false rule=purpose-of-use"} {
		for _, part := range []string{"level=WARN", "security event", want, "purpose=BTG", "subject=555012345678", "organisation=RR8"} {
			if !strings.Contains(lines[i], part) {
				t.Errorf("log line %d = %s, want %q in it", i, lines[i], part)
			}
		}
	}
	// The reason is a clinician's free text, which may name the patient: it goes to the
	// audit record, never to the log.
	if strings.Contains(log.String(), "stroke call") || !strings.Contains(lines[0], "reasonGiven=true") || !strings.Contains(lines[1], "reasonGiven=false") {
		t.Errorf("log = %s; want whether a reason was given, never its text", log.String())
	}
}

func TestNewAuthorizerRefuses(t *testing.T) {
	reg := mustRegistry(t, testRegistry)
	if _, err := NewAuthorizer(reg, Rules{}, time.Now, nil); err == nil || !strings.Contains(err.Error(), "dsptYear") {
		t.Errorf("NewAuthorizer(zero rules) = %v, want the DSPT year refused", err)
	}
	if _, err := NewAuthorizer(nil, testRules(), time.Now, nil); err == nil {
		t.Error("NewAuthorizer(no registry source) made an authorizer")
	}
	if _, err := NewAuthorizer(reg, testRules(), nil, nil); err == nil {
		t.Error("NewAuthorizer(no clock) made an authorizer")
	}
}

// TestAuthorizerDecide shows the whole decision, flags included, for a caller that needs it.
func TestAuthorizerDecide(t *testing.T) {
	z, err := NewAuthorizer(mustRegistry(t, testRegistry), testRules(), func() time.Time { return testNow }, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := z.Decide(with(clinician(), func(p *policy.Principal) { p.Purpose, p.PurposeReason = "ETREAT", "RTC" }), retrieve)
	if !d.Allowed || !d.Emergency || !d.SecurityEvent || d.Reason != "RTC" || d.Permission != PermRetrieveImages {
		t.Fatalf("Decide = %+v, want an allowed emergency retrieve of images", d)
	}
}

// TestNewAuthorizerCopiesRoles shows that changing the rules' map after the authorizer is made
// changes nothing.
func TestNewAuthorizerCopiesRoles(t *testing.T) {
	rules := testRules()
	z, err := NewAuthorizer(mustRegistry(t, testRegistry), rules, func() time.Time { return testNow }, nil)
	if err != nil {
		t.Fatal(err)
	}
	rules.RoleActions["R8000"][0] = PermOperate
	rules.RoleActions["R8008"] = []Permission{PermSearch}
	if d := z.Decide(clinician(), search); !d.Allowed {
		t.Errorf("Decide(clinician) = %+v after the caller changed its map, want allowed", d)
	}
	if d := z.Decide(with(clinician(), func(p *policy.Principal) { p.Role = "R8008" }), search); d.Allowed {
		t.Error("Decide(R8008) allowed after the caller changed its map")
	}
}

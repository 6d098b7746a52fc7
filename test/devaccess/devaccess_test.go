package devaccess

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/authz"
)

// TestRegistry: the registry Start writes is one authz accepts, in which Onboarded is onboarded
// and Lapsed is refused for its DSPT alone, in any assessment year, at its boundaries too.
func TestRegistry(t *testing.T) {
	rules := authz.Rules{RoleActions: authz.DefaultRoleActions(), DSPTYear: authz.DefaultDSPTYear()}
	for _, now := range []time.Time{
		time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC),
		time.Date(2027, 6, 30, 23, 59, 0, 0, time.UTC),
		time.Date(2027, 7, 1, 0, 0, 0, 0, time.UTC),
	} {
		reg, err := authz.ParseRegistry(Registry(now))
		if err != nil {
			t.Fatalf("at %s: %v", now, err)
		}
		ask := func(org string) authz.Decision {
			p := policy.Principal{Subject: "u", Issuer: "https://i", Organisation: org, Role: "R8000", Purpose: "TREAT", System: ViewerClientID}
			return authz.Decide(reg, rules, p, policy.Action{Kind: "search"}, now)
		}
		if d := ask(Onboarded); !d.Allowed || d.System != "dev-viewer" {
			t.Errorf("at %s, %s: %+v; want allowed through the registered viewer", now, Onboarded, d)
		}
		if d := ask(Lapsed); d.Allowed || d.Rule != authz.RuleOnboarded {
			t.Errorf("at %s, %s: %+v; want refused as not onboarded", now, Lapsed, d)
		}
	}
}

// TestTransport: a client of Transport sends the persona's token and headers, and leaves a
// request's own Authorization alone.
func TestTransport(t *testing.T) {
	acc, err := Start(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer acc.Close()
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer srv.Close()
	want, err := acc.Token(BreakGlass)
	if err != nil {
		t.Fatal(err)
	}
	client := acc.Client(BreakGlass)
	if _, err := client.Get(srv.URL); err != nil {
		t.Fatal(err)
	}
	if got.Get("Authorization") != "Bearer "+want || got.Get("X-Purpose-Of-Use-Reason") == "" {
		t.Errorf("headers %v; want the persona's token and reason", got)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Authorization", "Bearer other")
	if _, err := client.Do(req); err != nil {
		t.Fatal(err)
	}
	if got.Get("Authorization") != "Bearer other" {
		t.Errorf("Authorization %q; want the request's own kept", got.Get("Authorization"))
	}
}

package devissuer_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/nirproxy/nirproxy/test/devissuer"
)

// get GETs u, with the bearer token when one is given, and returns the status.
func get(t *testing.T, u, bearer string) int {
	t.Helper()
	status, _ := getBody(t, u, bearer)
	return status
}

// getBody GETs u, with the bearer token when one is given, and returns the status and body.
func getBody(t *testing.T, u, bearer string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read %s: %v", u, err)
	}
	return res.StatusCode, body
}

func TestDiscoveryAndKeys(t *testing.T) {
	for _, alg := range []string{devissuer.ES256, devissuer.RS256} {
		t.Run(alg, func(t *testing.T) {
			iss := startIssuer(t, alg, newClock())
			if !strings.HasPrefix(iss.URL(), "http://127.0.0.1:") || strings.HasSuffix(iss.URL(), "/") {
				t.Errorf("URL = %q, want http://127.0.0.1:port", iss.URL())
			}
			status, body := getBody(t, iss.URL()+devissuer.DiscoveryPath, "")
			var doc map[string]any
			if status != http.StatusOK || json.Unmarshal(body, &doc) != nil {
				t.Fatalf("discovery: %d %s", status, body)
			}
			for name, want := range map[string]string{
				"issuer":            iss.URL(),
				"jwks_uri":          iss.URL() + "/jwks",
				"userinfo_endpoint": iss.URL() + "/userinfo",
			} {
				if doc[name] != want {
					t.Errorf("discovery %s = %v, want %q", name, doc[name], want)
				}
			}

			status, body = getBody(t, iss.JWKSURL(), "")
			var set struct {
				Keys []map[string]any `json:"keys"`
			}
			if status != http.StatusOK || json.Unmarshal(body, &set) != nil {
				t.Fatalf("jwks: %d %s", status, body)
			}
			if len(set.Keys) != 1 {
				t.Fatalf("jwks has %d keys, want 1: %s", len(set.Keys), body)
			}
			k := set.Keys[0]
			if k["kid"] != iss.KeyID() || k["alg"] != alg || k["use"] != "sig" || iss.KeyID() == "" {
				t.Errorf("published key kid %v alg %v use %v; want kid %q alg %s use sig", k["kid"], k["alg"], k["use"], iss.KeyID(), alg)
			}
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if _, ok := k[private]; ok {
					t.Errorf("published key holds the private parameter %q", private)
				}
			}
		})
	}
}

func TestUserinfo(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, devissuer.ES256, clk)
	c := devissuer.Claims{Subject: "user-2", CIS2: &devissuer.CIS2{
		UserUID: "910000000001", SelectedRoleID: "555254242106", Roles: cis2Roles,
		IDAssuranceLevel: 3, ACR: "AAL3_ANY", RolesFromUserinfo: true,
	}}
	token := mint(t, iss, c)
	forged, err := iss.MintForged(c)
	if err != nil {
		t.Fatal(err)
	}

	status, body := getBody(t, iss.UserinfoURL(), token)
	var info struct {
		Sub            string                `json:"sub"`
		UserUID        string                `json:"nhsid_useruid"`
		SelectedRoleID string                `json:"selected_roleid"`
		Roles          []devissuer.NRBACRole `json:"nhsid_nrbac_roles"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &info) != nil {
		t.Fatalf("userinfo: %d %s", status, body)
	}
	if info.Sub != "user-2" || info.UserUID != "910000000001" || info.SelectedRoleID != "555254242106" || len(info.Roles) != 2 || info.Roles[1] != cis2Roles[1] {
		t.Errorf("userinfo = %s", body)
	}

	for name, bearer := range map[string]string{"no token": "", "a forged token": forged, "another string": "not-a-token"} {
		if status := get(t, iss.UserinfoURL(), bearer); status != http.StatusUnauthorized {
			t.Errorf("userinfo with %s: %d, want 401", name, status)
		}
	}
	clk.Advance(devissuer.DefaultLifetime)
	if status := get(t, iss.UserinfoURL(), token); status != http.StatusUnauthorized {
		t.Errorf("userinfo once the token expired: %d, want 401", status)
	}
}

func TestTokenClaims(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, devissuer.ES256, clk)
	now := clk.Now()
	c := devissuer.Claims{
		Subject:   "user-1",
		Audience:  []string{"other"},
		NotBefore: now.Add(-devissuer.DefaultLifetime),
		Expires:   now.Add(5 * devissuer.DefaultLifetime),
		CIS2:      &devissuer.CIS2{UserUID: "u", Roles: cis2Roles, SelectedRoleID: "r", IDAssuranceLevel: 3, RolesFromUserinfo: true},
	}
	claims := payloadOf(t, mint(t, iss, c))
	for name, want := range map[string]any{
		"iss":                iss.URL(),
		"sub":                "user-1",
		"aud":                []any{"other"},
		"iat":                float64(now.Unix()),
		"nbf":                float64(now.Add(-devissuer.DefaultLifetime).Unix()),
		"exp":                float64(now.Add(5 * devissuer.DefaultLifetime).Unix()),
		"selected_roleid":    "r",
		"id_assurance_level": "3",
	} {
		if got, _ := json.Marshal(claims[name]); string(got) != string(mustJSON(t, want)) {
			t.Errorf("claim %s = %s, want %s", name, got, mustJSON(t, want))
		}
	}
	for _, absent := range []string{"nhsid_nrbac_roles", "nhsid_useruid", "acr", "client_id", "extensions"} {
		if _, ok := claims[absent]; ok {
			t.Errorf("claim %s present, want it left out", absent)
		}
	}
	if jti, _ := claims["jti"].(string); jti == "" {
		t.Error("no random jti")
	}

	if _, err := iss.Mint(devissuer.Claims{Subject: "x", Extra: map[string]any{"iss": "elsewhere"}}); err == nil {
		t.Error("Mint with Extra naming iss: no error")
	}
}

// payloadOf decodes a compact JWS's claims without verifying it.
func payloadOf(t *testing.T, token string) map[string]any {
	t.Helper()
	msg, err := jws.Parse([]byte(token), jws.WithCompact())
	if err != nil {
		t.Fatalf("parse the token: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(msg.Payload(), &claims); err != nil {
		t.Fatalf("decode the token's claims: %v", err)
	}
	return claims
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStartRefuses(t *testing.T) {
	for name, tt := range map[string]struct {
		addr string
		opts devissuer.Options
	}{
		"all interfaces":       {addr: ":0"},
		"an unknown algorithm": {addr: "127.0.0.1:0", opts: devissuer.Options{Algorithm: "HS256"}},
		"a negative lifetime":  {addr: "127.0.0.1:0", opts: devissuer.Options{Lifetime: -1}},
	} {
		if iss, err := devissuer.Start(tt.addr, tt.opts); err == nil {
			_ = iss.Close()
			t.Errorf("Start with %s: no error", name)
		}
	}
}

package authn

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/nirproxy/nirproxy/policy"
)

// TestRefusals checks every kind of bad request or token is refused as unauthenticated,
// with a reason that repeats neither the token nor a claim value.
func TestRefusals(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIssuer(t)
	ti.addKey("rsa-1", "rsa", "", true)
	ti.addKey("rsa-alg", "rsa", "RS256", true)
	ti.addKey("ec-1", "ec", "", true)
	ti.addKey("hidden", "rsa", "", false)
	other := newTestIssuer(t) // trusted by nobody
	other.addKey("rsa-1", "rsa", "", true)

	a := newAuthenticator(t, clock, time.Minute, ti.claimsOptions())
	now := clock.Now()
	valid := func(changes map[string]any) map[string]any {
		all := map[string]any{"sub": testPatient, "role": "R8000", "org": "A1B2C"}
		for k, v := range changes {
			all[k] = v
		}
		return ti.claims(now, all)
	}
	good := ti.sign("rsa-1", "RS256", valid(nil), nil)
	parts := strings.Split(good, ".")

	// A token signed with HMAC, using the issuer's public RSA key as the secret.
	pub := ti.publicKey("rsa-1")
	pubJSON, err := json.Marshal(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := jwk.EncodePEM(pub)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		header func(r *http.Request)
		token  string
		reason string
	}{
		{name: "no authorization header", header: func(*http.Request) {}, reason: reasonNoBearer},
		{name: "basic scheme", header: func(r *http.Request) { r.Header.Set("Authorization", "Basic dXNlcjpwdw==") }, reason: reasonNoBearer},
		{name: "empty bearer", header: func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }, reason: reasonNoBearer},
		{name: "scheme only", header: func(r *http.Request) { r.Header.Set("Authorization", "Bearer") }, reason: reasonNoBearer},
		{name: "two authorization headers", header: func(r *http.Request) {
			r.Header.Add("Authorization", "Bearer "+good)
			r.Header.Add("Authorization", "Bearer "+good)
		}, reason: reasonNoBearer},
		{name: "two tokens", header: func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+good+" "+good) }, reason: reasonNoBearer},
		{name: "too long", token: strings.Repeat("a", maxTokenBytes+1), reason: "too long"},
		{name: "not a JWS", token: "not-a-token", reason: "not a signed JWT"},
		{name: "claims not JSON", token: ti.signRaw("rsa-1", "RS256", []byte("[1,2]")), reason: "not a JSON object"},
		{name: "forged: another key under a published kid", token: other.sign("rsa-1", "RS256", valid(nil), map[string]any{"kid": "rsa-1"}), reason: "signature does not verify"},
		{name: "tampered claims", token: parts[0] + "." + ti.encodeClaims(valid(map[string]any{"role": "R0001"})) + "." + parts[2], reason: "signature does not verify"},
		{name: "signature stripped", token: parts[0] + "." + parts[1] + ".", reason: "not a signed JWT|signature does not verify"},
		{name: "expired beyond the skew", token: ti.sign("rsa-1", "RS256", valid(map[string]any{"exp": now.Add(-31 * time.Second).Unix(), "iat": now.Add(-time.Hour).Unix(), "nbf": now.Add(-time.Hour).Unix()}), nil), reason: "expired"},
		{name: "not yet valid beyond the skew", token: ti.sign("rsa-1", "RS256", valid(map[string]any{"nbf": now.Add(time.Minute).Unix()}), nil), reason: "not valid yet"},
		{name: "issued in the future beyond the skew", token: ti.sign("rsa-1", "RS256", valid(map[string]any{"iat": now.Add(time.Minute).Unix()}), nil), reason: "issued in the future"},
		{name: "no expiry", token: ti.sign("rsa-1", "RS256", valid(map[string]any{"exp": nil}), nil), reason: "no expiry"},
		{name: "wrong audience", token: ti.sign("rsa-1", "RS256", valid(map[string]any{"aud": []string{"someone-else"}}), nil), reason: "not meant for this service"},
		{name: "no audience", token: ti.sign("rsa-1", "RS256", valid(map[string]any{"aud": nil}), nil), reason: "not meant for this service"},
		{name: "untrusted issuer", token: other.sign("rsa-1", "RS256", other.claims(now, nil), nil), reason: "issuer is not trusted"},
		{name: "issuer without its port", token: ti.sign("rsa-1", "RS256", valid(map[string]any{"iss": strings.Replace(ti.issuer, ":"+portOf(ti.srv.URL), "", 1)}), nil), reason: "issuer is not trusted"},
		{name: "issuer with a trailing slash", token: ti.sign("rsa-1", "RS256", valid(map[string]any{"iss": ti.issuer + "/"}), nil), reason: "issuer is not trusted"},
		{name: "no issuer", token: ti.sign("rsa-1", "RS256", valid(map[string]any{"iss": nil}), nil), reason: "issuer is not trusted"},
		{name: "alg none", token: unsigned(t, "rsa-1", valid(nil)), reason: "not a signed JWT|algorithm is not allowed"},
		{name: "HMAC with the public JWK as secret", token: signWith(t, pubJSON, "rsa-1", "HS256", valid(nil), nil), reason: "algorithm is not allowed"},
		{name: "HMAC with the public PEM as secret", token: signWith(t, pubPEM, "rsa-1", "HS256", valid(nil), nil), reason: "algorithm is not allowed"},
		{name: "algorithm off the issuer's list", token: ti.sign("rsa-1", "RS512", valid(nil), nil), reason: "algorithm is not allowed"},
		{name: "EC algorithm on an RSA kid", token: signWith(t, ti.private["ec-1"], "rsa-1", "ES256", valid(nil), nil), reason: "does not fit its signing key"},
		{name: "header alg differs from the key's alg", token: ti.sign("rsa-alg", "PS256", valid(nil), nil), reason: "does not fit its signing key"},
		{name: "no kid", token: signWith(t, ti.private["rsa-1"], "", "RS256", valid(nil), nil), reason: "names no signing key"},
		{name: "unknown kid", token: ti.sign("hidden", "RS256", valid(nil), nil), reason: "not among its issuer's keys"},
		{name: "unknown critical header", token: ti.sign("rsa-1", "RS256", valid(nil), map[string]any{"crit": []string{"x-nirproxy"}, "x-nirproxy": true}), reason: "signature does not verify"},
		{name: "no subject", token: ti.sign("rsa-1", "RS256", valid(map[string]any{"sub": nil}), nil), reason: "names no subject"},
		{name: "claim of the wrong type", token: ti.sign("rsa-1", "RS256", valid(map[string]any{"role": []string{"R8000"}}), nil), reason: `claim "role" is not a string`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/studies?PatientID="+testPatient, nil)
			if tc.header != nil {
				tc.header(r)
			} else {
				r.Header.Set("Authorization", "Bearer "+tc.token)
			}
			p, err := a.Authenticate(r)
			if !errors.Is(err, policy.ErrUnauthenticated) || errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("Authenticate = %+v, %v; want policy.ErrUnauthenticated", p, err)
			}
			if !matchesAny(err.Error(), tc.reason) {
				t.Errorf("reason %q does not say %q", err, tc.reason)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) || strings.Contains(err.Error(), testPatient) {
				t.Errorf("reason %q repeats the token or a claim value", err)
			}
		})
	}
	// The good token itself passes: the refusals above are for their own reasons.
	if _, err := authenticate(a, good); err != nil {
		t.Fatalf("good token refused: %v", err)
	}
}

// TestAccepted checks each allowed algorithm and the clock skew tolerance.
func TestAccepted(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIssuer(t)
	ti.addKey("rsa-1", "rsa", "", true)
	ti.addKey("rsa-512", "rsa", "RS512", true)
	ti.addKey("ec-1", "ec", "ES256", true)
	o := ti.claimsOptions()
	o.Algorithms = []string{"RS256", "RS512", "PS256", "ES256"}
	a := newAuthenticator(t, clock, time.Minute, o)
	now := clock.Now()

	tests := []struct {
		name    string
		kid     string
		alg     string
		changes map[string]any
	}{
		{name: "RS256", kid: "rsa-1", alg: "RS256"},
		{name: "RS512 on a key that says RS512", kid: "rsa-512", alg: "RS512"},
		{name: "PS256", kid: "rsa-1", alg: "PS256"},
		{name: "ES256", kid: "ec-1", alg: "ES256"},
		{name: "expired within the skew", kid: "rsa-1", alg: "RS256", changes: map[string]any{"exp": now.Add(-20 * time.Second).Unix(), "iat": now.Add(-time.Hour).Unix(), "nbf": nil}},
		{name: "not yet valid within the skew", kid: "rsa-1", alg: "RS256", changes: map[string]any{"nbf": now.Add(20 * time.Second).Unix(), "iat": now.Add(20 * time.Second).Unix()}},
		{name: "audience among several", kid: "rsa-1", alg: "RS256", changes: map[string]any{"aud": []string{"x", "nirproxy-admin"}}},
		{name: "audience as a string", kid: "rsa-1", alg: "RS256", changes: map[string]any{"aud": "nirproxy"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			changes := map[string]any{"jti": tc.name}
			for k, v := range tc.changes {
				changes[k] = v
			}
			p, err := authenticate(a, ti.sign(tc.kid, tc.alg, ti.claims(now, changes), nil))
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if p.Subject != "user-1" || p.TokenID != tc.name || p.Issuer != ti.issuer {
				t.Errorf("principal = %+v", p)
			}
		})
	}
}

// matchesAny reports whether s contains one of the |-separated alternatives.
func matchesAny(s, alternatives string) bool {
	for _, alt := range strings.Split(alternatives, "|") {
		if strings.Contains(s, alt) {
			return true
		}
	}
	return false
}

func portOf(u string) string {
	return u[strings.LastIndex(u, ":")+1:]
}

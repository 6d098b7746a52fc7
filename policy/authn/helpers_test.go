package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/nirproxy/nirproxy/policy"
)

// testPatient is an NHS-number-shaped value the tests put in tokens; no refusal may repeat it.
const testPatient = "9990001234"

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testIssuer is an OIDC issuer on httptest: discovery, JWKS and userinfo, with keys made in
// the test. It counts the requests each endpoint gets.
type testIssuer struct {
	t   *testing.T
	srv *httptest.Server
	// issuer is the iss its tokens carry: the server's URL, with its port, and a path.
	issuer string

	mu        sync.Mutex
	private   map[string]jwk.Key // signing keys by kid
	published []jwk.Key          // the public keys the JWKS serves
	discovery map[string]any     // the discovery document
	userinfo  func(r *http.Request) (int, any)

	jwksDown      atomic.Bool
	jwksHits      atomic.Int64
	discoveryHits atomic.Int64
	userinfoHits  atomic.Int64
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	ti := &testIssuer{t: t, private: map[string]jwk.Key{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /realms/test/jwks", func(w http.ResponseWriter, _ *http.Request) {
		ti.jwksHits.Add(1)
		if ti.jwksDown.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		set := jwk.NewSet()
		ti.mu.Lock()
		for _, k := range ti.published {
			_ = set.AddKey(k)
		}
		ti.mu.Unlock()
		writeJSON(w, http.StatusOK, set)
	})
	mux.HandleFunc("GET /realms/test/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		ti.discoveryHits.Add(1)
		ti.mu.Lock()
		doc := ti.discovery
		ti.mu.Unlock()
		writeJSON(w, http.StatusOK, doc)
	})
	mux.HandleFunc("GET /realms/test/userinfo", func(w http.ResponseWriter, r *http.Request) {
		ti.userinfoHits.Add(1)
		ti.mu.Lock()
		answer := ti.userinfo
		ti.mu.Unlock()
		if answer == nil {
			http.Error(w, "no userinfo", http.StatusNotFound)
			return
		}
		status, body := answer(r)
		writeJSON(w, status, body)
	})
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	ti.issuer = ti.srv.URL + "/realms/test"
	ti.discovery = map[string]any{"issuer": ti.issuer, "jwks_uri": ti.srv.URL + "/realms/test/jwks"}
	return ti
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// addKey makes a key of kind "rsa" or "ec" named kid; it is published unless hidden.
// A non-empty alg is written into the published key.
func (ti *testIssuer) addKey(kid, kind, alg string, publish bool) {
	ti.t.Helper()
	var raw any
	var err error
	switch kind {
	case "rsa":
		raw, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ec":
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		ti.t.Fatalf("generate %s key: %v", kind, err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		ti.t.Fatal(err)
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		ti.t.Fatal(err)
	}
	for _, k := range []jwk.Key{priv, pub} {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			ti.t.Fatal(err)
		}
	}
	if alg != "" {
		if err := pub.Set(jwk.AlgorithmKey, alg); err != nil {
			ti.t.Fatal(err)
		}
	}
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.private[kid] = priv
	if publish {
		ti.published = append(ti.published, pub)
	}
}

// setUserinfo sets how the userinfo endpoint answers.
func (ti *testIssuer) setUserinfo(answer func(r *http.Request) (int, any)) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.userinfo = answer
}

// publishOnly replaces the published keys with those named.
func (ti *testIssuer) publishOnly(kids ...string) {
	ti.t.Helper()
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.published = nil
	for _, kid := range kids {
		pub, err := jwk.PublicKeyOf(ti.private[kid])
		if err != nil {
			ti.t.Fatal(err)
		}
		ti.published = append(ti.published, pub)
	}
}

// publicKey returns the raw public key of kid, for key-confusion tokens.
func (ti *testIssuer) publicKey(kid string) jwk.Key {
	ti.t.Helper()
	ti.mu.Lock()
	defer ti.mu.Unlock()
	pub, err := jwk.PublicKeyOf(ti.private[kid])
	if err != nil {
		ti.t.Fatal(err)
	}
	return pub
}

// claims returns a valid claim set for this issuer at now, with the given changes (a nil
// value removes the claim).
func (ti *testIssuer) claims(now time.Time, changes map[string]any) map[string]any {
	c := map[string]any{
		"iss": ti.issuer,
		"aud": []string{"nirproxy"},
		"sub": "user-1",
		"jti": "token-1",
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// sign returns a compact JWS of claims signed by the private key kid with alg, naming kid
// in its header (unless kid is "") and any extra header fields.
func (ti *testIssuer) sign(kid, alg string, claims map[string]any, extra map[string]any) string {
	ti.t.Helper()
	ti.mu.Lock()
	key := ti.private[kid]
	ti.mu.Unlock()
	return signWith(ti.t, key, kid, alg, claims, extra)
}

// signRaw is sign for a payload that need not be a claim set.
func (ti *testIssuer) signRaw(kid, alg string, payload []byte) string {
	ti.t.Helper()
	ti.mu.Lock()
	key := ti.private[kid]
	ti.mu.Unlock()
	return signPayload(ti.t, key, kid, alg, payload, nil)
}

// encodeClaims returns claims as a token's middle part.
func (ti *testIssuer) encodeClaims(claims map[string]any) string {
	ti.t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		ti.t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(payload)
}

func signWith(t *testing.T, key any, kid, alg string, claims map[string]any, extra map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return signPayload(t, key, kid, alg, payload, extra)
}

func signPayload(t *testing.T, key any, kid, alg string, payload []byte, extra map[string]any) string {
	t.Helper()
	a, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		t.Fatalf("unknown algorithm %s", alg)
	}
	hdr := jws.NewHeaders()
	for k, v := range extra {
		if err := hdr.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if k, ok := key.(jwk.Key); ok {
		var raw any // a raw key, so that only the kid given reaches the header
		if err := jwk.Export(k, &raw); err != nil {
			t.Fatal(err)
		}
		key = raw
	}
	if kid != "" {
		if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	token, err := jws.Sign(payload, jws.WithKey(a, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return string(token)
}

// unsigned returns an alg "none" token naming kid.
func unsigned(t *testing.T, kid string, claims map[string]any) string {
	t.Helper()
	hdr, _ := json.Marshal(map[string]any{"alg": "none", "kid": kid, "typ": "JWT"})
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(hdr) + "." + enc.EncodeToString(payload) + "."
}

// claimsOptions returns Options for ti with the claims profile.
func (ti *testIssuer) claimsOptions() Options {
	return Options{
		Issuer:     ti.issuer,
		JWKSURL:    ti.srv.URL + "/realms/test/jwks",
		Audiences:  []string{"nirproxy", "nirproxy-admin"},
		Algorithms: []string{"RS256", "PS256", "ES256"},
		ClockSkew:  30 * time.Second,
		KeyRefresh: time.Minute,
		KeyMaxAge:  time.Hour,
		Profile:    ProfileClaims,
		Claims: ClaimNames{
			Subject:      "sub",
			Role:         "role",
			Organisation: "org",
			Purpose:      "pou",
			System:       "azp",
		},
	}
}

// newAuthenticator returns an Authenticator over the given issuers on clock, closed when
// the test ends.
func newAuthenticator(t *testing.T, clock *fakeClock, ttl time.Duration, issuers ...Options) *Authenticator {
	t.Helper()
	a, err := New(t.Context(), Config{
		Issuers:    issuers,
		CacheTTL:   ttl,
		CacheSize:  100,
		Clock:      clock.Now,
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return a
}

// authenticate runs a request with "Authorization: Bearer token" through a.
func authenticate(a *Authenticator, token string) (policy.Principal, error) {
	r := httptest.NewRequest(http.MethodGet, "/studies", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return a.Authenticate(r)
}

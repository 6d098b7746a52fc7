package devissuer_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/authn"
	"github.com/nirproxy/nirproxy/test/devissuer"
)

// clock is a settable clock, shared by an issuer and the authenticator verifying its tokens.
type clock struct{ nanos atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.nanos.Store(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.nanos.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.nanos.Add(int64(d)) }

// keyRefresh and keyMaxAge are the authenticator's key timings in these tests.
const (
	keyRefresh = time.Minute
	keyMaxAge  = 10 * time.Minute
)

// startIssuer starts an issuer signing with alg on clk, closed when the test ends.
func startIssuer(t *testing.T, alg string, clk *clock) *devissuer.Issuer {
	t.Helper()
	iss, err := devissuer.Start("127.0.0.1:0", devissuer.Options{Algorithm: alg, Clock: clk.Now})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := iss.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return iss
}

// authnOptions returns authn.Options trusting iss by discovery with the given profile.
func authnOptions(iss *devissuer.Issuer, profile string) authn.Options {
	o := authn.Options{
		Issuer:     iss.URL(),
		Discovery:  true,
		Audiences:  []string{devissuer.DefaultAudience},
		Algorithms: []string{iss.Algorithm()},
		ClockSkew:  30 * time.Second,
		KeyRefresh: keyRefresh,
		KeyMaxAge:  keyMaxAge,
		Profile:    profile,
	}
	switch profile {
	case authn.ProfileCIS2:
		o.CIS2 = authn.CIS2Options{MinIDAssuranceLevel: 3, ACRPrefix: "AAL3_", UserinfoURL: iss.UserinfoURL()}
	case authn.ProfileClaims:
		o.Claims = authn.ClaimNames{Subject: "sub", Role: "role", Organisation: "org", Purpose: "pou", System: "azp"}
	}
	return o
}

// newAuthenticator returns an authenticator over o on clk, closed when the test ends.
func newAuthenticator(t *testing.T, clk *clock, o authn.Options) *authn.Authenticator {
	t.Helper()
	a, err := authn.New(t.Context(), authn.Config{
		Issuers:    []authn.Options{o},
		CacheTTL:   time.Minute,
		CacheSize:  100,
		Clock:      clk.Now,
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatalf("authn.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Errorf("authn Close: %v", err)
		}
	})
	return a
}

// authenticate runs a request bearing token through a.
func authenticate(a *authn.Authenticator, token string) (policy.Principal, error) {
	r := httptest.NewRequest(http.MethodGet, "/studies", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return a.Authenticate(r)
}

// mint mints c with iss, failing the test if it cannot.
func mint(t *testing.T, iss *devissuer.Issuer, c devissuer.Claims) string {
	t.Helper()
	token, err := iss.Mint(c)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return token
}

// iuaClinician returns the claims of an IUA clinician (R8000 at RYJ, TREAT), naming the token.
func iuaClinician(jti string) devissuer.Claims {
	return devissuer.Claims{
		Subject:  "user-1",
		TokenID:  jti,
		ClientID: "pacs-viewer",
		Scope:    "user/ImagingStudy.read",
		IUA: &devissuer.IUA{
			SubjectName:           "Dr A Example",
			SubjectOrganizationID: "RYJ",
			SubjectRole:           []devissuer.Coding{{System: "https://fhir.nhs.uk/CodeSystem/job-role", Code: "R8000"}},
			PurposeOfUse:          []devissuer.Coding{devissuer.PurposeOfUse("TREAT")},
		},
	}
}

package authn

import (
	"errors"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

// TestVerifiedTokenCache checks a verified token is served from the cache without another
// signature check until the cache bound or the token's exp, whichever is sooner.
func TestVerifiedTokenCache(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIssuer(t)
	ti.addKey("rsa-1", "rsa", "", true)
	a := newAuthenticator(t, clock, 5*time.Minute, ti.claimsOptions()) // skew 30s
	start := clock.Now()
	long := ti.sign("rsa-1", "RS256", ti.claims(start, map[string]any{"jti": "long", "role": "R8000"}), nil)
	short := ti.sign("rsa-1", "RS256", ti.claims(start, map[string]any{"jti": "short", "exp": start.Add(2 * time.Minute).Unix()}), nil)

	steps := []struct {
		name       string
		at         time.Duration
		token      string
		refused    bool
		wantChecks int64
	}{
		{name: "first request verifies", token: long, wantChecks: 1},
		{name: "second request is served from the cache", at: time.Second, token: long, wantChecks: 1},
		{name: "and the next", at: 4 * time.Minute, token: long, wantChecks: 1},
		{name: "past the cache bound: verified again", at: 5 * time.Minute, token: long, wantChecks: 2},
		{name: "cached again", at: 6 * time.Minute, token: long, wantChecks: 2},
		{name: "short-lived token verifies", at: 6 * time.Minute, token: short, refused: true, wantChecks: 3},
	}
	var first policy.Principal
	for i, s := range steps {
		clock.Advance(start.Add(s.at).Sub(clock.Now()))
		p, err := authenticate(a, s.token)
		switch {
		case s.refused && !errors.Is(err, policy.ErrUnauthenticated):
			t.Fatalf("%s: Authenticate = %+v, %v; want refused", s.name, p, err)
		case !s.refused && err != nil:
			t.Fatalf("%s: Authenticate: %v", s.name, err)
		case i == 0:
			first = p
		case !s.refused && p != first:
			t.Errorf("%s: cached principal %+v differs from %+v", s.name, p, first)
		}
		if got := a.signatureChecks.Load(); got != s.wantChecks {
			t.Errorf("%s: %d signature checks, want %d", s.name, got, s.wantChecks)
		}
	}

	// A token cached shortly before its exp is not served after it.
	clock.Advance(start.Sub(clock.Now()))
	if _, err := authenticate(a, short); err != nil {
		t.Fatalf("short-lived token: %v", err)
	}
	checks := a.signatureChecks.Load()
	clock.Advance(time.Minute)
	if _, err := authenticate(a, short); err != nil || a.signatureChecks.Load() != checks {
		t.Fatalf("short-lived token before exp: err %v, %d checks, want cached", err, a.signatureChecks.Load()-checks)
	}
	clock.Advance(time.Minute + 31*time.Second)
	if _, err := authenticate(a, short); !errors.Is(err, policy.ErrUnauthenticated) || a.signatureChecks.Load() != checks+1 {
		t.Fatalf("short-lived token after exp: err %v, %d checks; want verified again and refused", err, a.signatureChecks.Load()-checks)
	}
}

// TestTTLCacheBounded checks the cache never holds more than its limit and drops expired
// entries first.
func TestTTLCacheBounded(t *testing.T) {
	now := newFakeClock().Now()
	c := newTTLCache[int](3)
	c.put(hashToken("expiring"), 0, now.Add(time.Second), now)
	for i := range 10 {
		c.put(hashToken(string(rune('a'+i))), i, now.Add(time.Hour), now)
		if len(c.entries) > 3 {
			t.Fatalf("after %d puts the cache holds %d entries, limit 3", i+2, len(c.entries))
		}
	}
	if v, ok := c.get(hashToken("j"), now); !ok || v != 9 {
		t.Errorf("latest entry = %d, %t; want 9, true", v, ok)
	}
	later := now.Add(2 * time.Second)
	c.put(hashToken("fresh"), 1, later.Add(time.Hour), later)
	if _, ok := c.get(hashToken("expiring"), later); ok {
		t.Error("expired entry still served")
	}
	c.put(hashToken("past"), 1, later, later)
	if _, ok := c.get(hashToken("past"), later); ok {
		t.Error("entry stored with a deadline not after now")
	}
}

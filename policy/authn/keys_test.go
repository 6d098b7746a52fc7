package authn

import (
	"errors"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

// outcome is what a step of a key test expects from Authenticate.
type outcome int

const (
	accepted outcome = iota
	unauthenticated
	keysUnavailable
)

func (o outcome) check(t *testing.T, step string, p policy.Principal, err error) {
	t.Helper()
	switch o {
	case accepted:
		if err != nil {
			t.Fatalf("%s: Authenticate: %v; want accepted", step, err)
		}
	case unauthenticated:
		if !errors.Is(err, policy.ErrUnauthenticated) || errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("%s: Authenticate = %+v, %v; want policy.ErrUnauthenticated", step, p, err)
		}
	case keysUnavailable:
		if !errors.Is(err, ErrKeysUnavailable) || !errors.Is(err, policy.ErrUnavailable) || errors.Is(err, policy.ErrUnauthenticated) {
			t.Fatalf("%s: Authenticate = %+v, %v; want ErrKeysUnavailable only", step, p, err)
		}
	}
}

// TestKeyRotation checks a token signed by a newly published key is accepted once the
// refresh interval allows a fetch, and that unknown kids cause at most one fetch per
// interval.
func TestKeyRotation(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIssuer(t)
	ti.addKey("old", "rsa", "", true)
	ti.addKey("new", "rsa", "", false)
	a := newAuthenticator(t, clock, time.Minute, ti.claimsOptions()) // KeyRefresh 1m, KeyMaxAge 1h

	steps := []struct {
		name     string
		advance  time.Duration
		rotate   bool
		kid      string
		want     outcome
		wantHits int64 // JWKS fetches so far
	}{
		{name: "first token fetches the keys", kid: "old", want: accepted, wantHits: 1},
		{name: "unknown kid within the interval: no fetch", kid: "new", want: unauthenticated, wantHits: 1},
		{name: "unknown kid after the interval: one fetch", advance: time.Minute, kid: "new", want: unauthenticated, wantHits: 2},
		{name: "again within the interval: no fetch", advance: 30 * time.Second, kid: "new", want: unauthenticated, wantHits: 2},
		{name: "issuer rotates; still within the interval", rotate: true, kid: "new", want: unauthenticated, wantHits: 2},
		{name: "new kid after the interval: picked up", advance: 30 * time.Second, kid: "new", want: accepted, wantHits: 3},
		{name: "old kid no longer published", advance: 2 * time.Minute, kid: "old", want: unauthenticated, wantHits: 4},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		if s.rotate {
			ti.publishOnly("new")
		}
		claims := ti.claims(clock.Now(), map[string]any{"jti": s.name})
		p, err := authenticate(a, ti.sign(s.kid, "RS256", claims, nil))
		s.want.check(t, s.name, p, err)
		if got := ti.jwksHits.Load(); got != s.wantHits {
			t.Errorf("step %d (%s): %d JWKS fetches, want %d", i, s.name, got, s.wantHits)
		}
	}
}

// TestKeyOutage is hazard H16's test: while the issuer's JWKS cannot be fetched, cached
// keys verify tokens until they are older than KeyMaxAge; then every token of the issuer,
// cached or not, is refused with ErrKeysUnavailable, until a fetch succeeds again.
func TestKeyOutage(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIssuer(t)
	ti.addKey("rsa-1", "rsa", "", true)
	o := ti.claimsOptions()
	o.KeyRefresh, o.KeyMaxAge = time.Minute, 10*time.Minute
	a := newAuthenticator(t, clock, 24*time.Hour, o)
	start := clock.Now()
	// A long-lived token, verified once while the keys are fresh and cached from then on.
	cached := ti.sign("rsa-1", "RS256", ti.claims(start, map[string]any{"jti": "cached", "exp": start.Add(2 * time.Hour).Unix()}), nil)

	steps := []struct {
		name    string
		at      time.Duration // since start
		down    bool
		cached  bool // send the cached token rather than a new one
		want    outcome
		fetches bool // whether this step tries a JWKS fetch
	}{
		{name: "keys fetched", at: 0, cached: true, want: accepted, fetches: true},
		{name: "outage begins; fresh keys serve", at: time.Minute, down: true, want: accepted},
		{name: "keys just under the max age serve", at: 10 * time.Minute, down: true, want: accepted},
		{name: "cached principal under the max age served", at: 10 * time.Minute, down: true, cached: true, want: accepted},
		{name: "keys past the max age: refused", at: 10*time.Minute + time.Second, down: true, want: keysUnavailable, fetches: true},
		{name: "cached principal past the max age: refused", at: 10*time.Minute + 2*time.Second, down: true, cached: true, want: keysUnavailable},
		{name: "still refused later", at: 30 * time.Minute, down: true, want: keysUnavailable, fetches: true},
		{name: "issuer back: fresh keys serve again", at: 31 * time.Minute, want: accepted, fetches: true},
		{name: "cached principal served again", at: 31 * time.Minute, cached: true, want: accepted},
	}
	for _, s := range steps {
		clock.Advance(start.Add(s.at).Sub(clock.Now()))
		ti.jwksDown.Store(s.down)
		before := ti.jwksHits.Load()
		token := cached
		if !s.cached {
			token = ti.sign("rsa-1", "RS256", ti.claims(clock.Now(), map[string]any{"jti": s.name}), nil)
		}
		p, err := authenticate(a, token)
		s.want.check(t, s.name, p, err)
		if fetched := ti.jwksHits.Load() > before; fetched != s.fetches {
			t.Errorf("%s: fetched the JWKS = %t, want %t", s.name, fetched, s.fetches)
		}
	}
}

// TestKeysNeverFetched checks an issuer whose JWKS never answered refuses with
// ErrKeysUnavailable, and that a discovery document speaking for another issuer is not
// followed.
func TestKeysNeverFetched(t *testing.T) {
	tests := []struct {
		name  string
		setup func(ti *testIssuer, o *Options)
	}{
		{name: "JWKS down", setup: func(ti *testIssuer, _ *Options) { ti.jwksDown.Store(true) }},
		{name: "JWKS not found", setup: func(ti *testIssuer, o *Options) { o.JWKSURL = ti.srv.URL + "/nowhere" }},
		{name: "JWKS unreachable", setup: func(_ *testIssuer, o *Options) { o.JWKSURL = "http://127.0.0.1:1/jwks" }},
		{name: "discovery names another issuer", setup: func(ti *testIssuer, o *Options) {
			o.JWKSURL, o.Discovery = "", true
			ti.mu.Lock()
			ti.discovery = map[string]any{"issuer": ti.issuer + "/other", "jwks_uri": ti.srv.URL + "/realms/test/jwks"}
			ti.mu.Unlock()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			ti := newTestIssuer(t)
			ti.addKey("rsa-1", "rsa", "", true)
			o := ti.claimsOptions()
			tc.setup(ti, &o)
			a := newAuthenticator(t, clock, time.Minute, o)
			p, err := authenticate(a, ti.sign("rsa-1", "RS256", ti.claims(clock.Now(), nil), nil))
			keysUnavailable.check(t, tc.name, p, err)
		})
	}
}

// TestDiscovery checks the JWKS URL is read once from the issuer's discovery document.
func TestDiscovery(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIssuer(t)
	ti.addKey("rsa-1", "rsa", "", true)
	o := ti.claimsOptions()
	o.JWKSURL, o.Discovery = "", true
	a := newAuthenticator(t, clock, time.Minute, o)
	for i := range 3 {
		clock.Advance(2 * time.Minute) // past the principal cache and the refresh interval
		p, err := authenticate(a, ti.sign("rsa-1", "RS256", ti.claims(clock.Now(), nil), nil))
		accepted.check(t, "discovered keys", p, err)
		if ti.discoveryHits.Load() != 1 || ti.jwksHits.Load() != 1 {
			t.Errorf("request %d: %d discovery and %d JWKS fetches, want 1 and 1", i, ti.discoveryHits.Load(), ti.jwksHits.Load())
		}
	}
}

// TestBackgroundRefresh checks keys are refreshed without any request once KeyRefresh has
// passed on the wall clock.
func TestBackgroundRefresh(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIssuer(t)
	ti.addKey("rsa-1", "rsa", "", true)
	o := ti.claimsOptions()
	o.KeyRefresh = MinKeyRefresh
	a := newAuthenticator(t, clock, time.Minute, o)
	p, err := authenticate(a, ti.sign("rsa-1", "RS256", ti.claims(clock.Now(), nil), nil))
	accepted.check(t, "first token", p, err)
	clock.Advance(30 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for ti.jwksHits.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no background refresh within 10s of a %s interval", o.KeyRefresh)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The background fetch, 30 minutes after the first, renewed the keys' age: in an
	// outage they serve until KeyMaxAge after it, longer than the first fetch would allow.
	ti.jwksDown.Store(true)
	clock.Advance(o.KeyMaxAge - time.Second)
	p, err = authenticate(a, ti.sign("rsa-1", "RS256", ti.claims(clock.Now(), map[string]any{"jti": "later"}), nil))
	accepted.check(t, "after the background refresh", p, err)
}

// TestClosed checks a closed Authenticator fetches no keys and, once its keys pass
// KeyMaxAge, refuses at once rather than waiting for its stopped refresher.
func TestClosed(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIssuer(t)
	ti.addKey("rsa-1", "rsa", "", true)
	o := ti.claimsOptions()
	a := newAuthenticator(t, clock, time.Minute, o)
	p, err := authenticate(a, ti.sign("rsa-1", "RS256", ti.claims(clock.Now(), nil), nil))
	accepted.check(t, "before Close", p, err)
	if err := a.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	clock.Advance(2 * time.Minute)
	p, err = authenticate(a, ti.sign("rsa-1", "RS256", ti.claims(clock.Now(), map[string]any{"jti": "2"}), nil))
	accepted.check(t, "fresh keys after Close", p, err)
	clock.Advance(o.KeyMaxAge)
	p, err = authenticate(a, ti.sign("rsa-1", "RS256", ti.claims(clock.Now(), map[string]any{"jti": "3"}), nil))
	keysUnavailable.check(t, "stale keys after Close", p, err)
	if got := ti.jwksHits.Load(); got != 1 {
		t.Errorf("%d JWKS fetches, want 1", got)
	}
}

// Package authn authenticates callers by OAuth 2.0 bearer JWTs from configured issuers: it
// verifies each token's signature against its issuer's published keys and its registered
// claims, then maps the claims to a policy.Principal by the issuer's profile (cis2, iua or
// claims).
//
// # Refusals
//
// A token that is missing, malformed, forged, expired, not yet valid, for another audience
// or issuer, signed with an algorithm outside the issuer's allow-list, or whose profile
// claims do not establish who is calling, is refused with an error wrapping
// policy.ErrUnauthenticated and a reason. Reasons never contain the token or a claim value.
// When an issuer's keys cannot be had (never fetched, or older than its KeyMaxAge), its
// tokens are refused with ErrKeysUnavailable instead (hazard H16): the proxy cannot tell,
// so it never lets the request through.
//
// # Caching
//
// A verified principal is cached by the SHA-256 of its token until the token expires or
// Config.CacheTTL passes, whichever is sooner, so a viewer's many requests do not repeat
// signature checks; a cached principal is still refused while its issuer's keys are
// unavailable. CIS2 userinfo answers are cached by the same hash until the token expires.
package authn

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/httprc/v3"

	"github.com/nirproxy/nirproxy/policy"
)

// maxTokenBytes bounds a bearer token: larger ones are refused before any parsing.
const maxTokenBytes = 64 << 10

// reasonNoBearer is the refusal of a request without exactly one well-formed bearer token.
const reasonNoBearer = "a bearer token is required"

// Authenticator verifies bearer JWTs and maps them to principals. It implements
// policy.Authenticator and is safe for concurrent use. Close stops its background key
// refresh.
type Authenticator struct {
	issuers    map[string]*issuer
	clock      func() time.Time
	cacheTTL   time.Duration
	principals *ttlCache[cachedPrincipal]
	ctrl       httprc.Controller
	stop       context.CancelFunc // ends the issuers' life context

	// signatureChecks counts signature verifications, so tests can tell a cache hit.
	signatureChecks atomic.Int64
}

// cachedPrincipal is a verified principal with the issuer whose keys must stay fresh for
// it to be served.
type cachedPrincipal struct {
	principal policy.Principal
	issuer    *issuer
}

var _ policy.Authenticator = (*Authenticator)(nil)

// New validates cfg and returns an Authenticator. It does not contact any issuer: each
// issuer's keys (and discovery document) are fetched when a token first needs them, then
// refreshed in the background until ctx ends or Close is called.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configure authentication: %w", err)
	}
	life, stop := context.WithCancel(ctx)
	ctrl, err := httprc.NewClient(httprc.WithHTTPClient(cfg.HTTPClient)).Start(life)
	if err != nil {
		stop()
		return nil, fmt.Errorf("start key refresh: %w", err)
	}
	a := &Authenticator{
		issuers:    make(map[string]*issuer, len(cfg.Issuers)),
		clock:      cfg.Clock,
		cacheTTL:   cfg.CacheTTL,
		principals: newTTLCache[cachedPrincipal](cfg.CacheSize),
		ctrl:       ctrl,
		stop:       stop,
	}
	for _, o := range cfg.Issuers {
		a.issuers[o.Issuer] = newIssuer(life, o, cfg, ctrl)
	}
	return a, nil
}

// Close stops the background key refresh, waiting for it until ctx ends. Afterwards no key
// is fetched: Authenticate goes on with the keys it holds until they pass KeyMaxAge, then
// refuses with ErrKeysUnavailable.
func (a *Authenticator) Close(ctx context.Context) error {
	a.stop()
	if err := a.ctrl.ShutdownContext(ctx); err != nil {
		return fmt.Errorf("stop key refresh: %w", err)
	}
	return nil
}

// Authenticate implements policy.Authenticator: it takes the request's
// "Authorization: Bearer <token>", chooses the configured issuer the token's (unverified)
// iss names, verifies the token against that issuer and maps it by the issuer's profile.
// Errors wrap policy.ErrUnauthenticated with a reason, or wrap ErrKeysUnavailable.
func (a *Authenticator) Authenticate(r *http.Request) (policy.Principal, error) {
	raw, err := bearerToken(r)
	if err != nil {
		return policy.Principal{}, err
	}
	ctx := r.Context()
	hash := hashToken(raw)
	now := a.clock()
	if c, ok := a.principals.get(hash, now); ok {
		if _, err := c.issuer.keys.usable(ctx); err != nil {
			return policy.Principal{}, err
		}
		return c.principal, nil
	}
	iss, tok, err := a.verify(ctx, raw)
	if err != nil {
		return policy.Principal{}, err
	}
	tok.hash = hash
	p, err := iss.principal(ctx, tok)
	if err != nil {
		return policy.Principal{}, err
	}
	until := now.Add(a.cacheTTL)
	if p.Expires.Before(until) {
		until = p.Expires
	}
	a.principals.put(hash, cachedPrincipal{principal: p, issuer: iss}, until, now)
	return p, nil
}

// bearerToken returns the token of the request's only Authorization header, which must use
// the Bearer scheme (in any case).
func bearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return "", refuse(reasonNoBearer)
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", refuse(reasonNoBearer)
	}
	if len(token) > maxTokenBytes {
		return "", refuse("the bearer token is too long")
	}
	return token, nil
}

// refuse returns policy.ErrUnauthenticated with a reason, which must hold no token or
// claim value.
func refuse(reason string) error {
	return fmt.Errorf("%w: %s", policy.ErrUnauthenticated, reason)
}

package authn

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/nirproxy/nirproxy/policy"
)

// maxDocumentBytes bounds a discovery document or userinfo answer read into memory.
const maxDocumentBytes = 1 << 20

// ErrKeysUnavailable refuses a token because its issuer's signing keys cannot be had: never
// fetched, or last fetched longer ago than the issuer's KeyMaxAge. It is not
// policy.ErrUnauthenticated: the caller may be fine, the proxy cannot tell. It wraps
// policy.ErrUnavailable, which the HTTP layer answers with 503, never letting the request
// through (hazard H16).
var ErrKeysUnavailable = fmt.Errorf("signing keys unavailable: %w", policy.ErrUnavailable)

// keySet holds one issuer's signing keys. They are fetched through an httprc controller,
// the scheduler jwk.Cache is built on, with jwk.Transformer parsing each answer; the
// transformer is wrapped so that every successful fetch is stamped with Config.Clock,
// which jwk.Cache does not expose and the key age check needs.
//
// The first fetch happens on demand, when a token first needs the keys; the background
// refresh (on the wall clock, as httprc schedules) follows every KeyRefresh. A token with
// an unknown kid, or keys older than KeyMaxAge, cause an on-demand fetch, at most one per
// KeyRefresh counted from the last fetch or attempt.
type keySet struct {
	life       context.Context // ends when the Authenticator closes
	issuer     string
	configured string // Options.JWKSURL; "" when the URL comes from discovery
	refresh    time.Duration
	maxAge     time.Duration
	clock      func() time.Time
	client     *http.Client
	ctrl       httprc.Controller

	fetching sync.Mutex // held through an on-demand fetch: one at a time

	mu      sync.Mutex
	url     string    // the key set's URL once registered with ctrl
	set     jwk.Set   // the last key set fetched
	fetched time.Time // when set was fetched, by clock
	tried   time.Time // when an on-demand fetch last started, by clock
}

func newKeySet(life context.Context, o Options, cfg Config, ctrl httprc.Controller) *keySet {
	return &keySet{
		life:       life,
		issuer:     o.Issuer,
		configured: o.JWKSURL,
		refresh:    o.KeyRefresh,
		maxAge:     o.KeyMaxAge,
		clock:      cfg.Clock,
		client:     cfg.HTTPClient,
		ctrl:       ctrl,
	}
}

// key returns the issuer's key named kid. It fails with ErrKeysUnavailable when the keys
// are too old or were never fetched, and with policy.ErrUnauthenticated when kid is not
// among fresh keys even after a refresh.
func (k *keySet) key(ctx context.Context, kid string) (jwk.Key, error) {
	set, err := k.usable(ctx)
	if err != nil {
		return nil, err
	}
	if key, ok := set.LookupKeyID(kid); ok {
		return key, nil
	}
	_ = k.fetch(ctx) // a failed refresh leaves the keys in place while they are fresh
	if set, err = k.usable(ctx); err != nil {
		return nil, err
	}
	if key, ok := set.LookupKeyID(kid); ok {
		return key, nil
	}
	return nil, refuse("the token's signing key is not among its issuer's keys")
}

// usable returns the key set while it is no older than KeyMaxAge, trying one on-demand
// fetch when it is; otherwise it fails with ErrKeysUnavailable. This is hazard H16's
// control: stale keys never verify a token.
func (k *keySet) usable(ctx context.Context) (jwk.Set, error) {
	if set, ok := k.fresh(); ok {
		return set, nil
	}
	cause := k.fetch(ctx)
	if set, ok := k.fresh(); ok {
		return set, nil
	}
	if cause != nil {
		return nil, fmt.Errorf("%w: keys of %s are older than %s or were never fetched: %w", ErrKeysUnavailable, k.issuer, k.maxAge, cause)
	}
	return nil, fmt.Errorf("%w: keys of %s are older than %s or were never fetched", ErrKeysUnavailable, k.issuer, k.maxAge)
}

// fresh returns the key set and whether it was fetched no longer than KeyMaxAge ago.
func (k *keySet) fresh() (jwk.Set, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.set == nil || k.clock().Sub(k.fetched) > k.maxAge {
		return nil, false
	}
	return k.set, true
}

// fetch refreshes the key set now unless a fetch succeeded or was tried less than
// KeyRefresh ago, registering the key set's URL (after discovery, where configured) the
// first time. It returns why the fetch failed; nil when it succeeded or was not due.
func (k *keySet) fetch(ctx context.Context) error {
	k.fetching.Lock()
	defer k.fetching.Unlock()
	now := k.clock()
	k.mu.Lock()
	last := k.tried
	if k.fetched.After(last) {
		last = k.fetched
	}
	if !last.IsZero() && now.Sub(last) < k.refresh {
		k.mu.Unlock()
		return nil
	}
	k.tried = now
	u := k.url
	k.mu.Unlock()
	// Give up when the Authenticator closes: its refresher no longer answers.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(k.life, cancel)()
	if u == "" {
		var err error
		if u, err = k.register(ctx); err != nil {
			return err
		}
	}
	if err := k.ctrl.Refresh(ctx, u); err != nil {
		return fmt.Errorf("fetch keys of %s: %w", k.issuer, err)
	}
	return nil
}

// register finds the key set's URL and adds it to the background refresher, whose first
// run is due one KeyRefresh from now: the caller fetches at once itself.
func (k *keySet) register(ctx context.Context) (string, error) {
	u := k.configured
	if u == "" {
		var err error
		if u, err = discoverKeys(ctx, k.client, k.issuer); err != nil {
			return "", err
		}
	}
	r, err := httprc.NewResource[jwk.Set](u, httprc.TransformFunc[jwk.Set](k.transform),
		httprc.WithHTTPClient(k.client),
		httprc.WithConstantInterval(k.refresh),
		httprc.WithMinInterval(k.refresh))
	if err != nil {
		return "", fmt.Errorf("register keys of %s: %w", k.issuer, err)
	}
	r.SetNext(time.Now().Add(k.refresh)) // httprc schedules on the wall clock
	if err := k.ctrl.Add(ctx, r, httprc.WithWaitReady(false)); err != nil {
		return "", fmt.Errorf("register keys of %s: %w", k.issuer, err)
	}
	k.mu.Lock()
	k.url = u
	k.mu.Unlock()
	return u, nil
}

// transform parses a fetched key set with jwk.Transformer and, when it parses, keeps it
// with the time it arrived.
func (k *keySet) transform(ctx context.Context, res *http.Response) (jwk.Set, error) {
	set, err := jwk.Transformer{}.Transform(ctx, res)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.set, k.fetched = set, k.clock()
	k.mu.Unlock()
	return set, nil
}

// discoverKeys reads jwks_uri from the issuer's OpenID discovery document, after checking
// that the document speaks for exactly this issuer.
func discoverKeys(ctx context.Context, client *http.Client, issuer string) (string, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, client, u, "", &doc); err != nil {
		return "", fmt.Errorf("discover keys of %s: %w", issuer, err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("discover keys of %s: the discovery document names another issuer", issuer)
	}
	if err := checkURL("jwks_uri", doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discover keys of %s: %w", issuer, err)
	}
	return doc.JWKSURI, nil
}

// statusError is a non-200 answer from an issuer's endpoint.
type statusError struct {
	url    string
	status int
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s answered %d", e.url, e.status)
}

// getJSON GETs u, with the bearer token when one is given, and decodes a 200 answer of at
// most maxDocumentBytes into v.
func getJSON(ctx context.Context, client *http.Client, u, bearer string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("ask %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("ask %s: %w", u, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxDocumentBytes))
		return &statusError{url: u, status: res.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxDocumentBytes+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", u, err)
	}
	if len(body) > maxDocumentBytes {
		return fmt.Errorf("read %s: the answer exceeds %d bytes", u, maxDocumentBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode %s: %w", u, err)
	}
	return nil
}

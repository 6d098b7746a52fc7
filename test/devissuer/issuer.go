package devissuer

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Paths an Issuer serves, under its URL.
const (
	// DiscoveryPath is the OpenID discovery document's path.
	DiscoveryPath = "/.well-known/openid-configuration"
	// JWKSPath is the published key set's path.
	JWKSPath = "/jwks"
	// UserinfoPath is the userinfo endpoint's path.
	UserinfoPath = "/userinfo"
)

// Defaults of Options.
const (
	// DefaultAudience is the aud of tokens when neither Options nor Claims name one.
	DefaultAudience = "nirproxy"
	// DefaultLifetime is how long tokens are valid when neither Options nor Claims say.
	DefaultLifetime = time.Hour
)

// Options configures an Issuer. Every field has a default.
type Options struct {
	// Algorithm is what tokens are signed with: ES256 (the default when empty) or RS256.
	Algorithm string
	// Audience is the aud of tokens whose Claims name none; DefaultAudience when empty.
	Audience string
	// Lifetime is how long after its iat a token expires when its Claims set no exp;
	// DefaultLifetime when zero.
	Lifetime time.Duration
	// Clock dates tokens and tells when a token's userinfo is no longer answered; time.Now
	// when nil.
	Clock func() time.Time
}

// withDefaults returns o with its defaults filled in, or why it cannot be used.
func (o Options) withDefaults() (Options, error) {
	if o.Algorithm == "" {
		o.Algorithm = ES256
	}
	if o.Algorithm != ES256 && o.Algorithm != RS256 {
		return Options{}, fmt.Errorf("Options.Algorithm is %q: give %s or %s", o.Algorithm, ES256, RS256)
	}
	if o.Audience == "" {
		o.Audience = DefaultAudience
	}
	switch {
	case o.Lifetime < 0:
		return Options{}, fmt.Errorf("Options.Lifetime is %s: give a positive duration, or 0 for %s", o.Lifetime, DefaultLifetime)
	case o.Lifetime == 0:
		o.Lifetime = DefaultLifetime
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return o, nil
}

// OldKey says what Rotate does with the signing key it replaces.
type OldKey int

const (
	// KeepOldKey keeps the replaced key published, so tokens it signed still verify.
	KeepOldKey OldKey = iota
	// DropOldKey publishes only the new key, so tokens signed before no longer verify.
	DropOldKey
)

// Issuer is a running development token issuer. Its methods are safe for concurrent use.
type Issuer struct {
	opts     Options
	url      string
	srv      *http.Server
	served   chan error // Serve's result
	down     atomic.Bool
	requests map[string]*atomic.Int64 // by path; the map is fixed at Start

	closeOnce sync.Once
	closeErr  error

	mu        sync.Mutex
	key       *signingKey   // what tokens are signed with
	published []*signingKey // what the JWKS serves, key among them
	stranger  *signingKey   // never published; made when a bad token first needs it
	userinfo  map[[sha256.Size]byte]userinfoAnswer
}

// userinfoAnswer is what /userinfo answers for a minted token until it expires.
type userinfoAnswer struct {
	body    []byte // JSON
	expires time.Time
}

// Start makes a signing key and serves the issuer on addr, which must be a loopback address
// such as "127.0.0.1:0" (port 0 picks a free port). Close stops it.
func Start(addr string, opts Options) (*Issuer, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("start the development issuer: %w", err)
	}
	key, err := newSigningKey(o.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("start the development issuer: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start the development issuer: %w", err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		_ = ln.Close()
		return nil, fmt.Errorf("start the development issuer: %q is not a loopback address, and a development issuer must not be reachable from other machines", addr)
	}
	iss := &Issuer{
		opts:      o,
		url:       "http://" + ln.Addr().String(),
		served:    make(chan error, 1),
		requests:  map[string]*atomic.Int64{},
		key:       key,
		published: []*signingKey{key},
		userinfo:  map[[sha256.Size]byte]userinfoAnswer{},
	}
	mux := http.NewServeMux()
	for path, h := range map[string]http.HandlerFunc{
		DiscoveryPath: iss.serveDiscovery,
		JWKSPath:      iss.serveJWKS,
		UserinfoPath:  iss.serveUserinfo,
	} {
		n := &atomic.Int64{}
		iss.requests[path] = n
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			h(w, r)
		})
	}
	iss.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { iss.served <- iss.srv.Serve(ln) }()
	return iss, nil
}

// URL returns the issuer's base URL, "http://127.0.0.1:port": exactly its issuer string
// (iss), with no trailing slash.
func (iss *Issuer) URL() string { return iss.url }

// JWKSURL returns the URL of the published key set.
func (iss *Issuer) JWKSURL() string { return iss.url + JWKSPath }

// UserinfoURL returns the URL of the userinfo endpoint.
func (iss *Issuer) UserinfoURL() string { return iss.url + UserinfoPath }

// Algorithm returns the algorithm tokens are signed with, ES256 or RS256.
func (iss *Issuer) Algorithm() string { return iss.opts.Algorithm }

// KeyID returns the kid of the key tokens are signed with now.
func (iss *Issuer) KeyID() string {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.key.kid
}

// Close stops serving at once, closing open connections. Calling it again returns the
// first call's result.
func (iss *Issuer) Close() error {
	iss.closeOnce.Do(func() {
		err := iss.srv.Close()
		if serr := <-iss.served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		if err != nil {
			iss.closeErr = fmt.Errorf("stop the development issuer: %w", err)
		}
	})
	return iss.closeErr
}

// Rotate makes a new signing key with a new kid, which signs every token minted from now
// on, and publishes it; old says whether the replaced key stays published. It returns the
// new kid.
func (iss *Issuer) Rotate(old OldKey) (string, error) {
	key, err := newSigningKey(iss.opts.Algorithm)
	if err != nil {
		return "", fmt.Errorf("rotate the development issuer's key: %w", err)
	}
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if old == DropOldKey {
		iss.published = nil
	}
	iss.published = append(iss.published, key)
	iss.key = key
	return key.kid, nil
}

// SetDown makes the JWKS and discovery endpoints answer 503 while down is true, as an
// unreachable issuer would be to a verifier; userinfo goes on answering.
func (iss *Issuer) SetDown(down bool) { iss.down.Store(down) }

// Requests returns how many GET requests the endpoint at path (DiscoveryPath, JWKSPath or
// UserinfoPath) has had, whatever they were answered; 0 for any other path.
func (iss *Issuer) Requests(path string) int64 {
	if n, ok := iss.requests[path]; ok {
		return n.Load()
	}
	return 0
}

// answerDown answers 503 and reports true while the issuer is set down.
func (iss *Issuer) answerDown(w http.ResponseWriter) bool {
	if !iss.down.Load() {
		return false
	}
	http.Error(w, "the development issuer is down", http.StatusServiceUnavailable)
	return true
}

// serveDiscovery answers the OpenID discovery document.
func (iss *Issuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	if iss.answerDown(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss.url,
		"jwks_uri":                              iss.JWKSURL(),
		"userinfo_endpoint":                     iss.UserinfoURL(),
		"id_token_signing_alg_values_supported": []string{iss.opts.Algorithm},
		"subject_types_supported":               []string{"public"},
	})
}

// serveJWKS answers the published public keys.
func (iss *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	if iss.answerDown(w) {
		return
	}
	set := jwk.NewSet()
	iss.mu.Lock()
	for _, k := range iss.published {
		if err := set.AddKey(k.public); err != nil {
			iss.mu.Unlock()
			http.Error(w, "publish the keys: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	iss.mu.Unlock()
	writeJSON(w, http.StatusOK, set)
}

// serveUserinfo answers the userinfo of the bearer token, which must be one this issuer
// minted, signed with its own key, and not expired; otherwise 401.
func (iss *Issuer) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "a bearer token is required", http.StatusUnauthorized)
		return
	}
	iss.mu.Lock()
	answer, ok := iss.userinfo[sha256.Sum256([]byte(token))]
	iss.mu.Unlock()
	if !ok || !iss.opts.Clock().Before(answer.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "the token is not one this issuer minted, or it has expired", http.StatusUnauthorized)
		return
	}
	writeBody(w, http.StatusOK, answer.body)
}

// remember keeps the userinfo answer of a minted token until it expires, dropping those of
// tokens already expired.
func (iss *Issuer) remember(token string, body []byte, expires time.Time) {
	now := iss.opts.Clock()
	iss.mu.Lock()
	defer iss.mu.Unlock()
	for h, a := range iss.userinfo {
		if !now.Before(a.expires) {
			delete(iss.userinfo, h)
		}
	}
	if now.Before(expires) {
		iss.userinfo[sha256.Sum256([]byte(token))] = userinfoAnswer{body: body, expires: expires}
	}
}

// writeJSON answers v as JSON, never to be cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode the answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	writeBody(w, status, body)
}

// writeBody answers a JSON body, never to be cached.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

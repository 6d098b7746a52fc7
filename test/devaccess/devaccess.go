// Package devaccess gives a nirproxy under test or in its demo the access control it cannot run
// without: a development token issuer (test/devissuer) on loopback, an onboarding registry file
// naming the organisations its callers act for, the configuration that points nirproxy at both,
// and tokens for a set of personas, each with the outcome nirproxy must give it. It is never for
// production: the issuer's key lives in memory and it mints whatever it is asked.
package devaccess

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nirproxy/nirproxy/policy/authz"
	"github.com/nirproxy/nirproxy/test/devissuer"
)

// The organisations of the registry, by ODS code. They are fictitious trusts' codes.
const (
	// Onboarded has signed the data sharing agreement, holds an in-year Standards Met DSPT
	// assessment and a DPIA.
	Onboarded = "RR8"
	// Lapsed has everything but an in-year DSPT assessment: its latest is last year's.
	Lapsed = "RAE"
)

// ViewerClientID is the client id of the registered viewer system personas call through; it is
// onboarded for direct care (TREAT).
const ViewerClientID = "nirproxy-dev-viewer"

// Access is a running development issuer with its registry.
type Access struct {
	issuer   *devissuer.Issuer
	registry string

	mu     sync.Mutex
	tokens map[string]string
}

// Options configures Start.
type Options struct {
	// Dir is where the registry file is written. Required.
	Dir string
	// Lifetime is how long minted tokens are valid; devissuer's default (an hour) when zero.
	Lifetime time.Duration
	// Now is the time the registry's DSPT years are judged at; time.Now when zero.
	Now time.Time
}

// Start starts the issuer on a loopback port and writes the registry into opts.Dir.
func Start(opts Options) (*Access, error) {
	if opts.Dir == "" {
		return nil, errors.New("start development access: Options.Dir is required")
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	iss, err := devissuer.Start("127.0.0.1:0", devissuer.Options{Lifetime: opts.Lifetime})
	if err != nil {
		return nil, fmt.Errorf("start development access: %w", err)
	}
	a := &Access{issuer: iss, registry: filepath.Join(opts.Dir, "registry.yaml"), tokens: map[string]string{}}
	if err := os.WriteFile(a.registry, Registry(opts.Now), 0o644); err != nil {
		iss.Close()
		return nil, fmt.Errorf("start development access: write registry: %w", err)
	}
	return a, nil
}

// Close stops the issuer.
func (a *Access) Close() error { return a.issuer.Close() }

// Issuer is the development issuer, for tests that mint tokens of their own.
func (a *Access) Issuer() *devissuer.Issuer { return a.issuer }

// RegistryPath is the registry file's path.
func (a *Access) RegistryPath() string { return a.registry }

// Registry is the onboarding registry's YAML, with DSPT years judged at now by the default
// assessment year (1 July to 30 June).
func Registry(now time.Time) []byte {
	year := authz.DefaultDSPTYear().Covering(now)
	return fmt.Appendf(nil, `# Development onboarding registry written by nirproxy's test/devaccess: fictitious
# organisations, never for production.
organisations:
  - ods: %[1]s
    name: Development Teaching Hospitals (onboarded)
    dsaSigned: 2024-04-01
    dsptStatus: Standards Met
    dsptYear: %[3]s
    dpia: 2024-03-15
  - ods: %[2]s
    name: Development General Hospital (DSPT lapsed)
    dsaSigned: 2024-04-01
    dsptStatus: Standards Met
    dsptYear: %[4]s
    dpia: 2024-03-15
systems:
  - id: dev-viewer
    clientId: %[5]s
    organisation: %[1]s
    purpose: TREAT
`, Onboarded, Lapsed, year, year-1, ViewerClientID)
}

// Config is the auth and onboarding sections of a nirproxy configuration that trusts this
// issuer and reads this registry, as a YAML mapping to merge into a configuration's top level.
func (a *Access) Config() map[string]any {
	return map[string]any{
		"auth": map[string]any{"issuers": []map[string]any{{
			"issuer":     a.issuer.URL(),
			"discovery":  true,
			"audiences":  []string{devissuer.DefaultAudience},
			"algorithms": []string{a.issuer.Algorithm()},
			"profile":    "iua",
		}}},
		"onboarding": map[string]any{"registryFile": a.registry},
	}
}

// Token is persona p's token, minted on first use and kept.
func (a *Access) Token(p Persona) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.tokens[p.Name]; ok {
		return t, nil
	}
	t, err := a.issuer.Mint(p.Claims())
	if err != nil {
		return "", fmt.Errorf("mint %s's token: %w", p.Name, err)
	}
	a.tokens[p.Name] = t
	return t, nil
}

// Authorize sets the Authorization header of req to persona p's bearer token.
func (a *Access) Authorize(req *http.Request, p Persona) error {
	t, err := a.Token(p)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t)
	for k, v := range p.Headers {
		req.Header.Set(k, v)
	}
	return nil
}

// Transport is base (http.DefaultTransport when nil) sending every request as persona p, for
// clients of a nirproxy under test that are not about access control. A request that already
// has an Authorization header keeps it.
func (a *Access) Transport(base http.RoundTripper, p Persona) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		if req.Header.Get("Authorization") != "" {
			return base.RoundTrip(req)
		}
		req = req.Clone(req.Context())
		if err := a.Authorize(req, p); err != nil {
			return nil, err
		}
		return base.RoundTrip(req)
	})
}

// Client is an HTTP client sending every request as persona p (see Transport).
func (a *Access) Client(p Persona) *http.Client {
	return &http.Client{Transport: a.Transport(nil, p)}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Get is an authorised GET of url as persona p, for tests.
func (a *Access) Get(ctx context.Context, url string, p Persona) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return a.Client(p).Do(req)
}

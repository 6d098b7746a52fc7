package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/authz"
	"github.com/nirproxy/nirproxy/test/testpki"
)

// registry is a RegistrySource whose registry the test replaces, as a reload does.
type registry struct {
	current atomic.Pointer[authz.Registry]
}

func (r *registry) Registry() *authz.Registry { return r.current.Load() }

// withSystem is an onboarding registry with one organisation and, when fingerprint is not "",
// a system calling with that certificate.
func withSystem(t *testing.T, fingerprint string) *authz.Registry {
	t.Helper()
	yaml := "organisations:\n  - {ods: RR8, dsaSigned: 2024-04-01, dsptStatus: Standards Met, dsptYear: 2025/26, dpia: 2024-03-15}\n" +
		"systems:\n  - {id: viewer, clientId: viewer-client, organisation: RR8}\n"
	if fingerprint != "" {
		yaml += "  - {id: results-feed, certificateSHA256: '" + fingerprint + "', organisation: rr8, role: R8000, purpose: TREAT}\n"
	}
	reg, err := authz.ParseRegistry([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// certificate is a client certificate whose subject names a person, valid until notAfter,
// from a CA of its own.
func certificate(t *testing.T, notAfter time.Time) *testpki.Cert {
	t.Helper()
	return testpki.NewCA(t, "Test Client CA").Client(t, "Dr Jane Example", testpki.ValidUntil(notAfter))
}

// fingerprint is the certificate's SHA-256, as the registry writes it (with colons, in upper
// case, to show that either form matches).
func fingerprint(c *testpki.Cert) string {
	h := strings.ToUpper(c.Fingerprint())
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

// request is a request over TLS presenting cert; verified says the listener verified it.
func request(cert *x509.Certificate, verified bool) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://nirproxy.test/dicom-web/studies", nil)
	r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true}
	if cert != nil {
		r.TLS.PeerCertificates = []*x509.Certificate{cert}
		if verified {
			r.TLS.VerifiedChains = [][]*x509.Certificate{{cert}}
		}
	}
	return r
}

func TestAuthenticate(t *testing.T) {
	expires := time.Date(2027, time.March, 1, 0, 0, 0, 0, time.UTC)
	registered, other := certificate(t, expires), certificate(t, expires)
	src := &registry{}
	src.current.Store(withSystem(t, fingerprint(registered)))
	a, err := New(src)
	if err != nil {
		t.Fatal(err)
	}
	plain := httptest.NewRequest(http.MethodGet, "http://nirproxy.test/dicom-web/studies", nil)
	tests := []struct {
		name    string
		r       *http.Request
		want    policy.Principal
		refusal string // the refusal's message, when refused
	}{
		{name: "registered and verified", r: request(registered.Leaf, true), want: policy.Principal{
			Subject: "results-feed", System: "results-feed", Organisation: "RR8", Role: "R8000", Purpose: "TREAT", Expires: expires}},
		{name: "verified but not registered", r: request(other.Leaf, true), refusal: "the client certificate is not registered to any system"},
		{name: "registered but not verified by the listener", r: request(registered.Leaf, false), refusal: "a verified client certificate is required"},
		{name: "TLS without a certificate", r: request(nil, false), refusal: "a verified client certificate is required"},
		{name: "plain HTTP", r: plain, refusal: "a verified client certificate is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Verified(tc.r); got != (tc.refusal == "" || strings.Contains(tc.refusal, "not registered")) {
				t.Errorf("Verified = %v", got)
			}
			p, err := a.Authenticate(tc.r)
			if tc.refusal == "" {
				if err != nil || p != tc.want {
					t.Fatalf("Authenticate = %+v, %v; want %+v", p, err, tc.want)
				}
				return
			}
			var refusal *policy.Refusal
			if !errors.As(err, &refusal) || refusal.Status != http.StatusUnauthorized || refusal.Message != tc.refusal ||
				!errors.Is(err, policy.ErrUnauthenticated) || p != (policy.Principal{}) {
				t.Fatalf("Authenticate = %+v, %v; want a 401 refusal saying %q", p, err, tc.refusal)
			}
			fp := other.Fingerprint()
			if strings.Contains(err.Error(), "Jane") || strings.Contains(strings.ToLower(err.Error()), fp[:16]) {
				t.Errorf("the refusal %q names the certificate", err)
			}
		})
	}
}

// TestAuthenticateFollowsReloads: the registry in force is asked on every request, so a system
// removed from the registry is refused at once, and one added is let in at once.
func TestAuthenticateFollowsReloads(t *testing.T) {
	cert := certificate(t, time.Now().Add(time.Hour))
	src := &registry{}
	src.current.Store(withSystem(t, ""))
	a, err := New(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(request(cert.Leaf, true)); err == nil {
		t.Fatal("a certificate registered to no system was let in")
	}
	src.current.Store(withSystem(t, fingerprint(cert)))
	if p, err := a.Authenticate(request(cert.Leaf, true)); err != nil || p.System != "results-feed" {
		t.Fatalf("after the system was registered: %+v, %v", p, err)
	}
	src.current.Store(withSystem(t, ""))
	if _, err := a.Authenticate(request(cert.Leaf, true)); err == nil {
		t.Fatal("a system removed from the registry was still let in")
	}
}

func TestNewNeedsARegistry(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Fatal("New(nil) made an authenticator")
	}
}

package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/authz"
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

// certificate is a self-signed client certificate whose subject names a person, valid until
// notAfter.
func certificate(t *testing.T, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "Dr Jane Example"},
		NotBefore:    notAfter.Add(-48 * time.Hour),
		NotAfter:     notAfter,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// fingerprint is the certificate's SHA-256, as the registry writes it (with colons, in upper
// case, to show that either form matches).
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
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
		{name: "registered and verified", r: request(registered, true), want: policy.Principal{
			Subject: "results-feed", System: "results-feed", Organisation: "RR8", Role: "R8000", Purpose: "TREAT", Expires: expires}},
		{name: "verified but not registered", r: request(other, true), refusal: "the client certificate is not registered to any system"},
		{name: "registered but not verified by the listener", r: request(registered, false), refusal: "a verified client certificate is required"},
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
			fp := strings.ToLower(strings.ReplaceAll(fingerprint(other), ":", ""))
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
	if _, err := a.Authenticate(request(cert, true)); err == nil {
		t.Fatal("a certificate registered to no system was let in")
	}
	src.current.Store(withSystem(t, fingerprint(cert)))
	if p, err := a.Authenticate(request(cert, true)); err != nil || p.System != "results-feed" {
		t.Fatalf("after the system was registered: %+v, %v", p, err)
	}
	src.current.Store(withSystem(t, ""))
	if _, err := a.Authenticate(request(cert, true)); err == nil {
		t.Fatal("a system removed from the registry was still let in")
	}
}

func TestNewNeedsARegistry(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Fatal("New(nil) made an authenticator")
	}
}

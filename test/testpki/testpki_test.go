package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

// TestIssued: what a CA issues verifies against its pool for the use and hosts asked for, until
// it expires, and not against another CA's; the files written load as the same pair; the fingerprint is lower-case
// hex of the DER's SHA-256.
func TestIssued(t *testing.T) {
	ca, other := NewCA(t, "Test CA"), NewCA(t, "Other CA")
	server := ca.Server(t, "localhost", "127.0.0.1")
	client := ca.Client(t, "Dr Jane Example")
	expires := time.Now().Add(-time.Minute).Truncate(time.Second).UTC()
	expired := ca.Client(t, "Dr Jane Example", ValidUntil(expires))
	clientAuth := x509.VerifyOptions{KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	tests := []struct {
		name  string
		cert  *Cert
		roots *x509.CertPool
		opts  x509.VerifyOptions
		ok    bool
	}{
		{name: "server by name", cert: server, roots: ca.Pool(), opts: x509.VerifyOptions{DNSName: "localhost"}, ok: true},
		{name: "server by address", cert: server, roots: ca.Pool(), opts: x509.VerifyOptions{DNSName: "127.0.0.1"}, ok: true},
		{name: "server by another name", cert: server, roots: ca.Pool(), opts: x509.VerifyOptions{DNSName: "pacs.example.nhs.uk"}},
		{name: "server by another CA", cert: server, roots: other.Pool(), opts: x509.VerifyOptions{DNSName: "localhost"}},
		{name: "client", cert: client, roots: ca.Pool(), opts: clientAuth, ok: true},
		{name: "client as a server", cert: client, roots: ca.Pool()},
		{name: "client expired", cert: expired, roots: ca.Pool(), opts: clientAuth},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Roots = tc.roots
			if _, err := tc.cert.Leaf.Verify(tc.opts); (err == nil) != tc.ok {
				t.Errorf("Verify: %v; want it to succeed: %v", err, tc.ok)
			}
		})
	}
	if !expired.Leaf.NotAfter.Equal(expires) || expired.Leaf.Subject.CommonName != "Dr Jane Example" {
		t.Errorf("client certificate %v until %v; want Dr Jane Example until %v", expired.Leaf.Subject, expired.Leaf.NotAfter, expires)
	}
	certFile, keyFile := server.WriteFiles(t, t.TempDir(), "server")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil || !pair.Leaf.Equal(server.Pair().Leaf) {
		t.Fatalf("LoadX509KeyPair(%s, %s) = %v; want the server's pair", certFile, keyFile, err)
	}
	if fp := server.Fingerprint(); len(fp) != 64 || strings.ToLower(fp) != fp {
		t.Errorf("Fingerprint = %q; want 64 lower-case hex digits", fp)
	}
}

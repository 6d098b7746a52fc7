package config

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/nirproxy/nirproxy/test/testpki"
)

// testCA is a testpki CA whose certificates, those of a test PACS and of the proxy, are written
// as PEM files into one directory of the test's.
type testCA struct {
	ca  *testpki.CA
	dir string
	// File is the CA certificate's PEM file: a tls.caFile.
	File string
	// Pool holds the CA certificate: what a test PACS verifies client certificates with.
	Pool *x509.CertPool
}

// issued is a certificate a testCA issued: its PEM files and the pair crypto/tls takes.
type issued struct {
	CertFile, KeyFile string
	Pair              tls.Certificate
}

// newTestCA makes a CA named name, its files in a new directory of t's.
func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca, dir := testpki.NewCA(t, name), t.TempDir()
	return &testCA{ca: ca, dir: dir, File: fileWriter(t, dir)(name+"-ca.pem", string(ca.CertPEM)), Pool: ca.Pool()}
}

// Server issues the certificate of a test PACS at 127.0.0.1 and localhost, as server.pem and
// server-key.pem.
func (ca *testCA) Server(t *testing.T) issued {
	t.Helper()
	return ca.write(t, "server", ca.ca.Server(t, "localhost", "127.0.0.1"))
}

// Client issues a client certificate of the proxy's, as client.pem and client-key.pem.
func (ca *testCA) Client(t *testing.T) issued {
	t.Helper()
	return ca.write(t, "client", ca.ca.Client(t, "nirproxy"))
}

// write writes c's files as name.pem and name-key.pem into the CA's directory.
func (ca *testCA) write(t *testing.T, name string, c *testpki.Cert) issued {
	t.Helper()
	out := issued{Pair: c.Pair()}
	out.CertFile, out.KeyFile = c.WriteFiles(t, ca.dir, name)
	return out
}

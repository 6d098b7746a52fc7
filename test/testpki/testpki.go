// Package testpki makes the certificates tests need: a certificate authority made for one test,
// and the server and client certificates it issues, each with its key in PEM, as a pair
// crypto/tls takes, as files in a directory, and by the fingerprint an onboarding registry
// names it by.
//
// Keys are ECDSA P-256, made with crypto/rand: quick to make, and accepted by every TLS version
// the proxy speaks. Certificates are valid from an hour ago for a day unless ValidUntil says
// otherwise, and have random serial numbers. A failure to make one fails the test at once.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Cert is a certificate and its private key.
type Cert struct {
	// Leaf is the certificate, parsed.
	Leaf *x509.Certificate
	// Key is the certificate's private key.
	Key *ecdsa.PrivateKey
	// CertPEM is the certificate as a PEM CERTIFICATE block.
	CertPEM []byte
	// KeyPEM is the key in PKCS #8 as a PEM PRIVATE KEY block.
	KeyPEM []byte
}

// CA is a certificate authority made for one test. Its own certificate, the embedded Cert, is
// self-signed, so a CA also serves where a test wants a self-signed pair.
type CA struct {
	Cert
}

// Option changes a certificate before it is signed.
type Option func(*x509.Certificate)

// ValidUntil makes a certificate expire at notAfter, valid for the two days before it, so that a
// test can have one that has expired, or one whose expiry it knows to the second.
func ValidUntil(notAfter time.Time) Option {
	return func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = notAfter.Add(-48*time.Hour), notAfter
	}
}

// NewCA makes a CA whose certificate's common name is name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	tmpl := template(t, name)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	return &CA{Cert: *sign(t, tmpl, nil)}
}

// Server issues a certificate for a server reached at hosts, each a DNS name or an IP address
// (like "localhost" and "127.0.0.1"); its common name is the first of them.
func (ca *CA) Server(t testing.TB, hosts ...string) *Cert {
	t.Helper()
	if len(hosts) == 0 {
		t.Fatal("issue a server certificate: name at least one host")
	}
	tmpl := template(t, hosts[0])
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	return ca.issue(t, tmpl)
}

// Client issues a client certificate whose subject's common name is cn, changed by opts.
func (ca *CA) Client(t testing.TB, cn string, opts ...Option) *Cert {
	t.Helper()
	tmpl := template(t, cn)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	for _, o := range opts {
		o(tmpl)
	}
	return ca.issue(t, tmpl)
}

// Pool is a certificate pool holding c's certificate alone: for a CA, the roots or client CAs
// that trust what it issues.
func (c *Cert) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.Leaf)
	return pool
}

// Pair is the certificate and its key as crypto/tls takes them, Leaf set.
func (c *Cert) Pair() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Leaf.Raw}, PrivateKey: c.Key, Leaf: c.Leaf}
}

// Fingerprint is the SHA-256 of the certificate's DER encoding in lower-case hex, as an
// onboarding registry's certificateSHA256 names it.
func (c *Cert) Fingerprint() string {
	sum := sha256.Sum256(c.Leaf.Raw)
	return hex.EncodeToString(sum[:])
}

// WriteFiles writes the certificate and its key as PEM files name.pem and name-key.pem into
// dir, readable by the owner alone, and returns their paths.
func (c *Cert) WriteFiles(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	for path, data := range map[string][]byte{certFile: c.CertPEM, keyFile: c.KeyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// issue signs tmpl, a certificate for an end entity, with the CA's key.
func (ca *CA) issue(t testing.TB, tmpl *x509.Certificate) *Cert {
	t.Helper()
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	return sign(t, tmpl, &ca.Cert)
}

// sign makes a key for tmpl and signs the certificate with issuer's key, or with its own key
// when issuer is nil.
func sign(t testing.TB, tmpl *x509.Certificate, issuer *Cert) *Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("make a key for %s: %v", tmpl.Subject.CommonName, err)
	}
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.Leaf, issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatalf("sign the certificate of %s: %v", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse the certificate of %s: %v", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("encode the key of %s: %v", tmpl.Subject.CommonName, err)
	}
	return &Cert{
		Leaf:    leaf,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

// template is a certificate for cn, valid from an hour ago for a day, with a random serial
// number.
func template(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("draw a serial number: %v", err)
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

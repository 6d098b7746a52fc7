package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"strings"
)

// clientTLS is t as the connections to its source use it: TLS 1.2 or later, the roots of CAFile
// (nil, the system's, without it), the client certificate of CertFile and KeyFile, and
// ServerName. It reads the files t names; each problem names its key under p (like
// sources[0].tls), and says what is wrong and how to fix it.
func (t SourceTLS) clientTLS(p string) (*tls.Config, Problems) {
	var ps Problems
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		c.RootCAs = loadRoots(&ps, p+".caFile", t.CAFile)
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		if cert, ok := loadKeyPair(&ps, p, t.CertFile, t.KeyFile); ok {
			c.Certificates = []tls.Certificate{cert}
		}
	case t.CertFile != "":
		ps.add(p+".keyFile", "is missing; certFile needs the PEM file of its private key here, or remove certFile")
	case t.KeyFile != "":
		ps.add(p+".certFile", "is missing; keyFile needs the PEM file of its client certificate here, or remove keyFile")
	}
	if t.ServerName != "" && !validServerName(t.ServerName) {
		ps.add(p+".serverName", "%q is not a host name; write the name on the PACS's certificate, like pacs.example.nhs.uk, or leave it empty to verify the url's host",
			t.ServerName)
	}
	return c, ps
}

// loadRoots reads the PEM file of CA certificates that key names: at least one, each parsing.
// Blocks of other types are passed over.
func loadRoots(ps *Problems, key, file string) *x509.CertPool {
	data, unreadable := readFile(file)
	if unreadable != "" {
		ps.add(key, "%s", unreadable)
		return nil
	}
	roots := x509.NewCertPool()
	n := 0
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		n++
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			ps.add(key, "certificate %d of %s does not parse (%v); give the PEM file of the CA certificates that sign the PACS's certificate", n, file, err)
			return nil
		}
		roots.AddCert(cert)
	}
	if n == 0 {
		ps.add(key, "%s holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the PEM file of the CA certificates that sign the PACS's certificate", file)
		return nil
	}
	return roots
}

// loadKeyPair reads a client certificate and its private key from the PEM files that p's
// certFile and keyFile name.
func loadKeyPair(ps *Problems, p, certFile, keyFile string) (tls.Certificate, bool) {
	certPEM, unreadableCert := readFile(certFile)
	keyPEM, unreadableKey := readFile(keyFile)
	if unreadableCert != "" {
		ps.add(p+".certFile", "%s", unreadableCert)
	}
	if unreadableKey != "" {
		ps.add(p+".keyFile", "%s", unreadableKey)
	}
	if unreadableCert != "" || unreadableKey != "" {
		return tls.Certificate{}, false
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls's errors name what is wrong, never the key's bytes.
		ps.add(p+".certFile", "%s and %s are not a client certificate and its private key (%s); give the certificate's PEM file as certFile and its key's as keyFile",
			certFile, keyFile, strings.TrimPrefix(err.Error(), "tls: "))
		return tls.Certificate{}, false
	}
	return cert, true
}

// validServerName reports whether s can be the name a certificate is verified for: an IP address,
// or a host name (no scheme, port, path or spaces).
func validServerName(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("/:@?#[]\\", r) })
}

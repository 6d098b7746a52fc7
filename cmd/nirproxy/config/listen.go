package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
)

// This file holds what the proxy listens with: the main listener's own TLS (tls) and the admin
// listener (adminListen), with their validation.

// Values of [ListenTLS.ClientAuth].
const (
	// ClientAuthNone asks no client for a certificate.
	ClientAuthNone = "none"
	// ClientAuthRequest asks every client for a certificate; one that sends none is served (a
	// viewer with a bearer token), one that sends a certificate clientCAFile does not verify
	// fails the handshake.
	ClientAuthRequest = "request"
	// ClientAuthRequire refuses the handshake of a client without a certificate clientCAFile
	// verifies.
	ClientAuthRequire = "require"
)

// DefaultAdminListen is where /status and /metrics are served by default: loopback only.
const DefaultAdminListen = "127.0.0.1:9090"

// ListenTLS is the TLS the proxy terminates itself on its main listener, when CertFile and
// KeyFile are set: TLS 1.2 or later, and client certificates as ClientAuth says. A client
// certificate the listener verifies and the onboarding registry registers to a system (its
// certificateSHA256) makes that system the caller, when the request has no bearer token.
type ListenTLS struct {
	// CertFile names the server's certificate chain (PEM, the leaf first). A relative path is
	// taken from the config file's directory. Default none: plain HTTP, for a deployment whose
	// load balancer terminates TLS.
	CertFile string `yaml:"certFile"`
	// KeyFile names the certificate's private key (PEM). A relative path is taken from the
	// config file's directory.
	KeyFile string `yaml:"keyFile"`
	// ClientCAFile names the PEM bundle of CA certificates that client certificates are
	// verified against; request and require need it. A relative path is taken from the config
	// file's directory.
	ClientCAFile string `yaml:"clientCAFile"`
	// ClientAuth is none, request or require (see the ClientAuth constants). Default none.
	ClientAuth string `yaml:"clientAuth"`
}

// Enabled reports whether the main listener terminates TLS.
func (t ListenTLS) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// Describe says what TLS the listener terminates, in a few words: "TLS 1.2+ with FILE; client
// certificates required, verified against FILE". It is meant for when TLS is on.
func (t ListenTLS) Describe() string {
	d := "TLS 1.2+ with " + t.CertFile + "; client certificates "
	switch t.ClientAuth {
	case ClientAuthRequest:
		d += "requested"
	case ClientAuthRequire:
		d += "required"
	default:
		return d + "not asked for"
	}
	return d + ", verified against " + t.ClientCAFile
}

// ServerConfig is the main listener's TLS configuration, read from the files t names; nil when
// TLS is off. Load has checked the files once; they are read again here, so an error says what
// changed since.
func (t ListenTLS) ServerConfig() (*tls.Config, error) {
	c, ps := t.read()
	if err := ps.errOrNil(); err != nil {
		return nil, fmt.Errorf("load the listener's TLS: %w", err)
	}
	return c, nil
}

// read reads the files t names into the listener's TLS configuration (nil when TLS is off),
// with a problem for each file that cannot be read or does not hold what its key says.
func (t ListenTLS) read() (*tls.Config, Problems) {
	var ps Problems
	var pool *x509.CertPool
	if t.ClientCAFile != "" {
		data, unreadable := readFile(t.ClientCAFile)
		pool = x509.NewCertPool()
		switch {
		case unreadable != "":
			ps.add("tls.clientCAFile", "%s", unreadable)
		case !pool.AppendCertsFromPEM(data):
			ps.add("tls.clientCAFile", "%s holds no PEM certificate; put in it the certificates of the CAs that issue the client systems' certificates", t.ClientCAFile)
		}
	}
	if !t.Enabled() {
		return nil, ps
	}
	certPEM, unreadableCert := readFile(t.CertFile)
	keyPEM, unreadableKey := readFile(t.KeyFile)
	if unreadableCert != "" {
		ps.add("tls.certFile", "%s", unreadableCert)
	}
	if unreadableKey != "" {
		ps.add("tls.keyFile", "%s", unreadableKey)
	}
	if len(ps) > 0 {
		return nil, ps
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The error says what is wrong with the PEM, never the key itself.
		ps.add("tls.certFile", "%s and tls.keyFile %s are not a PEM certificate and its private key (%v)", t.CertFile, t.KeyFile, err)
		return nil, ps
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   t.clientAuthType(),
	}, nil
}

// clientAuthType is ClientAuth as crypto/tls names it. A certificate a client sends is
// verified in both request and require: a client whose certificate does not verify is refused
// at the handshake rather than served as if it had sent none.
func (t ListenTLS) clientAuthType() tls.ClientAuthType {
	switch t.ClientAuth {
	case ClientAuthRequest:
		return tls.VerifyClientCertIfGiven
	case ClientAuthRequire:
		return tls.RequireAndVerifyClientCert
	}
	return tls.NoClientCert
}

// resolve takes t's relative paths from the config file's directory dir.
func (t *ListenTLS) resolve(dir string) {
	t.CertFile, t.KeyFile, t.ClientCAFile = fromDir(dir, t.CertFile), fromDir(dir, t.KeyFile), fromDir(dir, t.ClientCAFile)
}

// checkListeners checks the main listener's TLS and the admin listener's address. The files
// themselves are Load's to read.
func (c Config) checkListeners(ps *Problems) {
	t := c.TLS
	switch t.ClientAuth {
	case ClientAuthNone, ClientAuthRequest, ClientAuthRequire:
	default:
		ps.add("tls.clientAuth", "%q is not known; write none, request (ask clients for a certificate) or require (refuse clients without one)", t.ClientAuth)
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		ps.add("tls.keyFile", "is missing; tls.certFile needs the file of its private key")
	case t.CertFile == "" && t.KeyFile != "":
		ps.add("tls.certFile", "is missing; tls.keyFile needs the file of its certificate")
	case !t.Enabled() && (t.ClientCAFile != "" || t.ClientAuth == ClientAuthRequest || t.ClientAuth == ClientAuthRequire):
		ps.add("tls", "client certificates need the proxy to terminate TLS: set tls.certFile and tls.keyFile, or remove tls.clientCAFile and tls.clientAuth")
	}
	if (t.ClientAuth == ClientAuthRequest || t.ClientAuth == ClientAuthRequire) && t.ClientCAFile == "" {
		ps.add("tls.clientCAFile", "is missing; tls.clientAuth %s verifies client certificates against it: name the PEM bundle of the CAs that issue them", t.ClientAuth)
	}
	if u, err := url.Parse(c.PublicURL); t.Enabled() && err == nil && u.Scheme == "http" {
		ps.add("publicURL", "%q is http, but the proxy terminates TLS (tls.certFile): clients reach it at https://; write it like https://imaging.example.nhs.uk", showURL(c.PublicURL))
	}
	if c.AdminListen == "" {
		return
	}
	checkAddress(ps, "adminListen", c.AdminListen, DefaultAdminListen+" (or \"\" for no admin listener)")
	if c.AdminListen == c.Listen {
		ps.add("adminListen", "%q is also listen's address; give the admin listener its own port, like %s", c.AdminListen, DefaultAdminListen)
	}
}

// listenerWarnings are the listeners' valid but risky settings.
func (c Config) listenerWarnings(ps *Problems) {
	if host, _, err := net.SplitHostPort(c.AdminListen); err == nil && !isLoopback(host) {
		ps.add("adminListen", "%q is not a loopback address: /status and /metrics are served there in plain HTTP, with no authentication, "+
			"and tell anyone who reaches them each trust's state; keep it on 127.0.0.1 unless a firewall guards it", c.AdminListen)
	}
}

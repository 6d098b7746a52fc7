package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/pacssim"
	"github.com/nirproxy/nirproxy/test/testpki"
)

// tlsRig is `nirproxy serve` (serve, in process) terminating TLS over the demo's trusts, with
// client certificates as clientAuth says, and the certificates its clients present.
type tlsRig struct {
	// base is the proxy's https:// root; admin is its admin listener's http:// root.
	base, admin string
	addr        string
	roots       *x509.CertPool
	trusts      []*pacssim.Trust
	acc         *devaccess.Access
	// system is registered to the results-feed system (R8000 at devaccess.Onboarded, for
	// TREAT); stranger is from the same CA but registered to no system; foreign is from a CA
	// the proxy does not trust.
	system, stranger, foreign tls.Certificate
	logs                      *syncBuffer
}

// startTLSRig serves the proxy over trusts (already started, as sources) with TLS and client
// certificates as clientAuth says, until the test ends.
func startTLSRig(t *testing.T, sources []config.Source, trusts []*pacssim.Trust, clientAuth string) *tlsRig {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	serverCA, clientCA, otherCA := testpki.NewCA(t, "Test Server CA"), testpki.NewCA(t, "Test Client CA"), testpki.NewCA(t, "Someone Else's CA")
	server := serverCA.Server(t, "127.0.0.1")
	system := clientCA.Client(t, "results-feed.example.nhs.uk")
	r := &tlsRig{trusts: trusts, logs: &syncBuffer{}, roots: serverCA.Pool(), system: system.Pair(),
		stranger: clientCA.Client(t, "Dr Jane Example").Pair(), foreign: otherCA.Client(t, "results-feed.example.nhs.uk").Pair()}

	cfg := config.Default()
	cfg.Cache.Enabled = false // every allowed request reaches the trusts, so counts tell
	cfg.Sources = sources
	acc, err := startDemoAccess(&cfg, dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acc.Close() })
	r.acc = acc
	registry := fmt.Appendf(devaccess.Registry(time.Now()), `  - id: results-feed
    certificateSHA256: %s
    organisation: %s
    role: R8000
    purpose: TREAT
`, system.Fingerprint(), devaccess.Onboarded)
	cfg.Onboarding.RegistryFile = write("registry.yaml", registry)
	cfg.TLS = config.ListenTLS{ClientCAFile: write("clients.pem", clientCA.CertPEM), ClientAuth: clientAuth}
	cfg.TLS.CertFile, cfg.TLS.KeyFile = server.WriteFiles(t, dir, "server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.AdminListen = ln.Addr().String(), adminLn.Addr().String()
	if problems := cfg.Validate(); len(problems) > 0 {
		t.Fatalf("configuration: %v", problems)
	}
	r.addr, r.base, r.admin = cfg.Listen, "https://"+cfg.Listen, "http://"+cfg.AdminListen
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, ln, adminLn, slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if strings.Contains(r.logs.String(), "Jane") {
			t.Errorf("the log names the person a client certificate's subject names")
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", r.logs.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := r.client(&r.system).Get(r.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy did not answer over TLS: %v", err)
		}
	}
	return r
}

// client is an HTTPS client trusting the rig's server CA and presenting cert (none when nil)
// whatever CAs the server says it accepts, as curl --cert does.
func (r *tlsRig) client(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: r.roots}
	if cert != nil {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return r.clientWith(tc)
}

// clientWith is an HTTPS client with TLS configuration tc, each request on a new connection.
func (r *tlsRig) clientWith(tc *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, DisableKeepAlives: true}, Timeout: 30 * time.Second}
}

// requestsOf is how many requests trusts have had in all.
func requestsOf(trusts []*pacssim.Trust) int64 {
	var n int64
	for _, tr := range trusts {
		n += tr.Requests()
	}
	return n
}

// answer is a request's outcome, read whole.
type answer struct {
	status int
	body   string
	err    error
}

// search asks for patient 9434765919's studies with cert and, unless persona is nil, the
// persona's token; it reports how many requests reached the trusts.
func (r *tlsRig) search(t *testing.T, cert *tls.Certificate, persona *devaccess.Persona) (answer, int64) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.base+"/dicom-web/studies?PatientID="+pacssim.DemoPatientNHSNumber, nil)
	if err != nil {
		t.Fatal(err)
	}
	if persona != nil {
		if err := r.acc.Authorize(req, *persona); err != nil {
			t.Fatal(err)
		}
	}
	return r.do(r.client(cert), req)
}

// do does req with c, and reports how many requests reached the trusts.
func (r *tlsRig) do(c *http.Client, req *http.Request) (answer, int64) {
	before := requestsOf(r.trusts)
	a := get(c, req)
	return a, requestsOf(r.trusts) - before
}

// get does req and reads the answer whole.
func get(c *http.Client, req *http.Request) answer {
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(body), err: err}
}

// refusal is the message of a DICOMweb error body.
func refusal(t *testing.T, a answer) string {
	t.Helper()
	var b struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(a.body), &b); err != nil {
		t.Fatalf("error body %q: %v", a.body, err)
	}
	return b.Message
}

// startDemoTrusts serves the demo's trusts on loopback until the test ends, each changed by
// edit (when not nil) with its source, and returns them and their sources.
func startDemoTrusts(t *testing.T, edit func(*pacssim.Trust, *config.Source)) ([]*pacssim.Trust, []config.Source) {
	t.Helper()
	trusts, err := pacssim.DemoTrusts()
	if err != nil {
		t.Fatal(err)
	}
	var sources []config.Source
	for i, tr := range trusts {
		src, stop, err := startDemoTrust(tr, i+1, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stop() })
		if edit != nil {
			edit(tr, &src)
		}
		sources = append(sources, src)
	}
	return trusts, sources
}

// TestServeTLS runs serve terminating TLS, with client certificates required and requested: a
// system's registered certificate is that system calling (its search answers 200); a
// certificate registered to no system is refused with 401, one from a CA the proxy does not
// trust at the handshake, and TLS below 1.2 at the handshake; a bearer token still decides who
// calls, whatever certificate the connection carries. No refused request reaches a trust.
// /status and /metrics are served on the admin listener only, and /readyz names no trust.
func TestServeTLS(t *testing.T) {
	trusts, sources := startDemoTrusts(t, nil)
	clinician, researcher := devaccess.Clinician, devaccess.Researcher
	for _, mode := range []string{config.ClientAuthRequire, config.ClientAuthRequest} {
		t.Run(mode, func(t *testing.T) {
			r := startTLSRig(t, sources, trusts, mode)
			// withoutCertificate checks the answer to a search with neither a token nor a
			// certificate sent: refused at the handshake when certificates are required, else
			// 401 asking for authentication, as without TLS; reaching no trust either way.
			withoutCertificate := func(t *testing.T, a answer, reached int64) {
				t.Helper()
				switch {
				case reached != 0:
					t.Errorf("the refused request reached the trusts %d times", reached)
				case mode == config.ClientAuthRequire && a.err == nil:
					t.Fatalf("search answered %d %.300s; want the handshake to fail", a.status, a.body)
				case mode == config.ClientAuthRequest && (a.err != nil || a.status != http.StatusUnauthorized || refusal(t, a) != "Authentication is required."):
					t.Fatalf("search: %d %.300s (%v); want 401 asking for authentication, as without TLS", a.status, a.body, a.err)
				}
			}

			t.Run("TLS 1.1 is refused", func(t *testing.T) {
				for _, v := range []struct {
					max uint16
					ok  bool
				}{{tls.VersionTLS11, false}, {tls.VersionTLS12, true}} {
					conn, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: r.roots, Certificates: []tls.Certificate{r.system},
						MinVersion: tls.VersionTLS10, MaxVersion: v.max})
					if err == nil {
						conn.Close()
					}
					if (err == nil) != v.ok {
						t.Errorf("handshake at most %s: %v; want it to succeed: %v", tls.VersionName(v.max), err, v.ok)
					}
				}
			})

			t.Run("the registered system searches", func(t *testing.T) {
				a, reached := r.search(t, &r.system, nil)
				if a.err != nil || a.status != http.StatusOK || reached == 0 {
					t.Fatalf("search: %d %.300s (%v), %d requests to the trusts; want 200 from the trusts", a.status, a.body, a.err, reached)
				}
				// Links are built from the https:// public URL serve derives on loopback.
				var studies []map[string]struct {
					Value []any `json:"Value"`
				}
				if err := json.Unmarshal([]byte(a.body), &studies); err != nil || len(studies) == 0 {
					t.Fatalf("search answered %.300s (%v); want studies", a.body, err)
				}
				if u, _ := studies[0]["00081190"].Value[0].(string); !strings.HasPrefix(u, r.base+"/dicom-web/studies/") {
					t.Errorf("RetrieveURL %q; want it to start with %s", u, r.base)
				}
			})

			t.Run("a certificate registered to no system is refused", func(t *testing.T) {
				a, reached := r.search(t, &r.stranger, nil)
				if a.err != nil || a.status != http.StatusUnauthorized || refusal(t, a) != "the client certificate is not registered to any system" {
					t.Fatalf("search: %d %.300s (%v); want 401 saying the certificate is registered to no system", a.status, a.body, a.err)
				}
				if reached != 0 {
					t.Errorf("the refused request reached the trusts %d times", reached)
				}
			})

			t.Run("a certificate from another CA fails the handshake", func(t *testing.T) {
				a, reached := r.search(t, &r.foreign, nil)
				if a.err == nil {
					t.Fatalf("search answered %d %.300s; want the handshake to fail", a.status, a.body)
				}
				if reached != 0 {
					t.Errorf("the refused request reached the trusts %d times", reached)
				}
				// A client that offers only certificates from the CAs the server names (as
				// browsers and Go do) sends none: refused at the handshake when certificates
				// are required, else taken as a caller without one.
				req, _ := http.NewRequest(http.MethodGet, r.base+"/dicom-web/studies?PatientID="+pacssim.DemoPatientNHSNumber, nil)
				a, reached = r.do(r.clientWith(&tls.Config{RootCAs: r.roots, Certificates: []tls.Certificate{r.foreign}}), req)
				withoutCertificate(t, a, reached)
			})

			t.Run("no certificate and no token", func(t *testing.T) {
				a, reached := r.search(t, nil, nil)
				withoutCertificate(t, a, reached)
			})

			t.Run("a bearer token decides who calls", func(t *testing.T) {
				// A clinician's token on a connection whose certificate is registered to no
				// system: the token's caller, allowed.
				a, reached := r.search(t, &r.stranger, &clinician)
				if a.err != nil || a.status != http.StatusOK || reached == 0 {
					t.Fatalf("clinician's search: %d %.300s (%v); want 200", a.status, a.body, a.err)
				}
				// A researcher's token on the registered system's connection: the researcher,
				// refused, never the system.
				a, reached = r.search(t, &r.system, &researcher)
				if a.err != nil || a.status != http.StatusForbidden || !strings.Contains(refusal(t, a), researcher.Refusal) || reached != 0 {
					t.Fatalf("researcher's search: %d %.300s (%v), %d requests to the trusts; want 403 naming %q, none",
						a.status, a.body, a.err, reached, researcher.Refusal)
				}
				if mode == config.ClientAuthRequest {
					if a, _ := r.search(t, nil, &clinician); a.err != nil || a.status != http.StatusOK {
						t.Fatalf("clinician's search without a certificate: %d %.300s (%v); want 200", a.status, a.body, a.err)
					}
				}
			})

			t.Run("operations endpoints are on the admin listener only", func(t *testing.T) {
				for _, path := range []string{"/status", "/metrics"} {
					req, _ := http.NewRequest(http.MethodGet, r.base+path, nil)
					if a := get(r.client(&r.system), req); a.err != nil || a.status != http.StatusNotFound {
						t.Errorf("GET %s on the main listener: %d (%v); want 404", path, a.status, a.err)
					}
					req, _ = http.NewRequest(http.MethodGet, r.admin+path, nil)
					if a := get(http.DefaultClient, req); a.err != nil || a.status != http.StatusOK || !strings.Contains(a.body, pacssim.DemoTrustA) {
						t.Errorf("GET %s on the admin listener: %d %.200s (%v); want 200 naming the trusts", path, a.status, a.body, a.err)
					}
				}
				for path, want := range map[string]string{"/healthz": "ok\n", "/readyz": "ready\n"} {
					req, _ := http.NewRequest(http.MethodGet, r.base+path, nil)
					if a := get(r.client(&r.system), req); a.err != nil || a.status != http.StatusOK || a.body != want {
						t.Errorf("GET %s: %d %q (%v); want 200 %q and nothing else", path, a.status, a.body, a.err, want)
					}
					req, _ = http.NewRequest(http.MethodGet, r.admin+path, nil)
					if a := get(http.DefaultClient, req); a.err != nil || a.status != http.StatusNotFound {
						t.Errorf("GET %s on the admin listener: %d (%v); want 404", path, a.status, a.err)
					}
				}
			})
		})
	}
}

// TestServeTLSReadyzNamesNoTrust: when every trust's breaker is open, /readyz answers 503
// without naming any trust.
func TestServeTLSReadyzNamesNoTrust(t *testing.T) {
	trusts, sources := startDemoTrusts(t, func(tr *pacssim.Trust, src *config.Source) {
		src.Breaker.MinRequests, src.Breaker.ConsecutiveUnreachable = 1, 1
		tr.SetFaults(pacssim.Status(http.StatusInternalServerError))
		t.Cleanup(func() { _ = tr.ClearFaults() })
	})
	r := startTLSRig(t, sources, trusts, config.ClientAuthRequire)
	if a, _ := r.search(t, &r.system, nil); a.err != nil {
		t.Fatalf("search: %v", a.err)
	}
	req, _ := http.NewRequest(http.MethodGet, r.base+"/readyz", nil)
	a := get(r.client(&r.system), req)
	if a.err != nil || a.status != http.StatusServiceUnavailable {
		t.Fatalf("GET /readyz with every breaker open: %d %q (%v); want 503", a.status, a.body, a.err)
	}
	for _, tr := range trusts {
		if strings.Contains(a.body, tr.ID) || strings.Contains(a.body, tr.Name) {
			t.Errorf("GET /readyz names trust %s: %q", tr.ID, a.body)
		}
	}
}

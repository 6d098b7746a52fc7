package config

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nirproxy/nirproxy/upstream"
)

// TestValidateTransport checks what Validate says of a source's transport: plain http only with
// insecure, and tls files that can be read and parse, each problem under its key.
func TestValidateTransport(t *testing.T) {
	ca := newTestCA(t, "trust")
	client := ca.Client(t)
	other := newTestCA(t, "other").Client(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name   string
		modify func(s *Source) // of sources[1], an https source
		want   []Problem       // Message is a substring of the problem's message
	}{
		{"https", func(s *Source) {}, nil},
		{"plain http", func(s *Source) { s.URL = "http://pacs.example.nhs.uk/dicom-web" },
			[]Problem{{"sources[1].url", `"http://pacs.example.nhs.uk/dicom-web" is plain HTTP, which sends patients' data unencrypted; use https, or set insecure: true for a demo or test`}}},
		{"plain HTTP in capitals", func(s *Source) { s.URL = "HTTP://pacs.example.nhs.uk/dicom-web" },
			[]Problem{{"sources[1].url", "is plain HTTP"}}},
		{"plain http, insecure", func(s *Source) { s.URL, s.Insecure = "http://127.0.0.1:8042/dicom-web", true }, nil},
		{"https, insecure", func(s *Source) { s.Insecure = true }, nil},
		{"an invalid url is reported once", func(s *Source) { s.URL = "http://pacs/dicom-web?x=1" },
			[]Problem{{"sources[1].url", "must have no query"}}},
		{"tls with plain http", func(s *Source) {
			s.URL, s.Insecure, s.TLS.CAFile = "http://127.0.0.1:8042/dicom-web", true, ca.File
		}, []Problem{{"sources[1].tls", "is set, but url is plain http, which does not use it; use an https url, or remove tls"}}},
		{"a CA and a client certificate", func(s *Source) {
			s.TLS = SourceTLS{CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "pacs.example.nhs.uk"}
		}, nil},
		{"a server name that is an IP address", func(s *Source) { s.TLS.ServerName = "10.0.0.5" }, nil},
		{"a CA file that cannot be read", func(s *Source) { s.TLS.CAFile = missing },
			[]Problem{{"sources[1].tls.caFile", "cannot read " + missing + ": no such file or directory; check the path and the file's permissions"}}},
		{"a CA file without a certificate", func(s *Source) { s.TLS.CAFile = client.KeyFile },
			[]Problem{{"sources[1].tls.caFile", client.KeyFile + " holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the PEM file of the CA certificates"}}},
		{"a CA file whose certificate does not parse", func(s *Source) { s.TLS.CAFile = garbage },
			[]Problem{{"sources[1].tls.caFile", "certificate 1 of " + garbage + " does not parse"}}},
		{"a client certificate without its key", func(s *Source) { s.TLS.CertFile = client.CertFile },
			[]Problem{{"sources[1].tls.keyFile", "is missing; certFile needs the PEM file of its private key here, or remove certFile"}}},
		{"a key without its certificate", func(s *Source) { s.TLS.KeyFile = client.KeyFile },
			[]Problem{{"sources[1].tls.certFile", "is missing; keyFile needs the PEM file of its client certificate here, or remove keyFile"}}},
		{"a certificate with another's key", func(s *Source) { s.TLS.CertFile, s.TLS.KeyFile = client.CertFile, other.KeyFile },
			[]Problem{{"sources[1].tls.certFile", client.CertFile + " and " + other.KeyFile + " are not a client certificate and its private key (private key does not match public key)"}}},
		{"certificate and key swapped", func(s *Source) { s.TLS.CertFile, s.TLS.KeyFile = client.KeyFile, client.CertFile },
			[]Problem{{"sources[1].tls.certFile", "are not a client certificate and its private key"}}},
		{"client files that cannot be read", func(s *Source) { s.TLS.CertFile, s.TLS.KeyFile = missing, missing+"-key" },
			[]Problem{{"sources[1].tls.certFile", "cannot read " + missing}, {"sources[1].tls.keyFile", "cannot read " + missing + "-key"}}},
		{"a server name with a port", func(s *Source) { s.TLS.ServerName = "pacs.example.nhs.uk:443" },
			[]Problem{{"sources[1].tls.serverName", `"pacs.example.nhs.uk:443" is not a host name; write the name on the PACS's certificate, like pacs.example.nhs.uk`}}},
		{"a server name that is a URL", func(s *Source) { s.TLS.ServerName = "https://pacs" },
			[]Problem{{"sources[1].tls.serverName", "is not a host name"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(&c.Sources[1])
			matchProblems(t, c.Validate(), tc.want)
		})
	}
}

func TestSourceWarnings(t *testing.T) {
	checkWarnings(t, []warningCase{
		{"no source is insecure", func(c *Config) {}, nil},
		{"insecure over plain http", func(c *Config) { c.Sources[1].URL, c.Sources[1].Insecure = "http://127.0.0.1:8043/dicom-web", true },
			[]Problem{{"sources[1].insecure", "is true: RXB is reached over plain HTTP, which sends patients' data unencrypted; for a demo or test only"}}},
		{"insecure over https", func(c *Config) { c.Sources[0].Insecure = true },
			[]Problem{{"sources[0].insecure", "is true, but RXA's url is https, which is verified all the same; remove insecure"}}},
	})
}

// TestTLSPaths checks that the tls files' relative paths, from the file or from the
// environment, are taken from the config file's directory, as the secret files' are.
func TestTLSPaths(t *testing.T) {
	ca := newTestCA(t, "trust")
	client := ca.Client(t)
	dir := filepath.Dir(ca.File)
	path := fileWriter(t, dir)("nirproxy.yaml", minimalYAML+
		"    tls: {caFile: "+filepath.Base(ca.File)+", certFile: "+filepath.Base(client.CertFile)+"}\n"+minimalAccessYAML)
	cfg, err := LoadValid(path, []string{"NIRPROXY_SOURCES_RXA_TLS_KEY_FILE=" + filepath.Base(client.KeyFile)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Sources[0].TLS, (SourceTLS{CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile}); got != want {
		t.Errorf("tls = %+v, want %+v", got, want)
	}
}

// TestUpstreamSourceTLS checks the TLS configuration a source's keys give its connections.
func TestUpstreamSourceTLS(t *testing.T) {
	ca := newTestCA(t, "trust")
	client := ca.Client(t)
	s := DefaultSource()
	s.ID, s.Name, s.URL = "RXA", "A", "https://pacs.example.nhs.uk/dicom-web"
	got, err := s.UpstreamSource()
	if err != nil {
		t.Fatal(err)
	}
	if c := got.TLS; c == nil || c.MinVersion != tls.VersionTLS12 || c.RootCAs != nil || c.Certificates != nil || c.ServerName != "" {
		t.Errorf("TLS without tls keys = %+v; want TLS 1.2 or later, the system's roots, no client certificate", c)
	}
	s.TLS = SourceTLS{CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "pacs.internal"}
	if got, err = s.UpstreamSource(); err != nil {
		t.Fatal(err)
	}
	c := got.TLS
	if c.MinVersion != tls.VersionTLS12 || c.RootCAs == nil || !c.RootCAs.Equal(ca.Pool) || c.ServerName != "pacs.internal" {
		t.Errorf("TLS = %+v; want TLS 1.2 or later, the CA's roots, server name pacs.internal", c)
	}
	if len(c.Certificates) != 1 || !c.Certificates[0].Leaf.Equal(client.Pair.Leaf) {
		t.Errorf("TLS client certificates = %d; want the one of %s", len(c.Certificates), client.CertFile)
	}
	s.TLS.CAFile = filepath.Join(t.TempDir(), "gone.pem")
	if _, err := s.UpstreamSource(); err == nil || !strings.Contains(err.Error(), "source RXA: load its tls files: tls.caFile: cannot read") {
		t.Errorf("UpstreamSource with an unreadable CA file: %v; want it named", err)
	}
}

// TestMutualTLS goes the whole way a configuration goes, from the file to a search of a PACS
// that requires a client certificate: only a source with the PACS's CA and a client certificate
// the PACS trusts gets an answer; any other is a transport failure, never a trust's 4xx.
func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "trust")
	server, client := ca.Server(t), ca.Client(t)
	stranger := newTestCA(t, "stranger").Client(t)
	var answered atomic.Int32
	pacs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answered.Add(1)
		w.Header().Set("Content-Type", "application/dicom+json")
		_, _ = io.WriteString(w, `[{"0020000D":{"vr":"UI","Value":["1.2.3"]},"00100020":{"vr":"LO","Value":["9434765919"]}}]`)
	}))
	pacs.TLS = &tls.Config{Certificates: []tls.Certificate{server.Pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool, MinVersion: tls.VersionTLS12}
	pacs.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	pacs.StartTLS()
	t.Cleanup(pacs.Close)

	tests := []struct {
		name    string
		tls     string // the source's tls section
		wantErr string // "" for an answer; else in the error
	}{
		{"the trust's CA and a client certificate it issued", "{caFile: CA, certFile: CERT, keyFile: KEY}", ""},
		{"the system's roots, which do not know the trust's CA", "{certFile: CERT, keyFile: KEY}", "certificate signed by unknown authority"},
		{"no client certificate", "{caFile: CA}", "certificate required"},
		{"a client certificate of another CA", "{caFile: CA, certFile: STRANGER, keyFile: STRANGERKEY}", "remote error: tls: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			answered.Store(0)
			section := strings.NewReplacer("STRANGERKEY", stranger.KeyFile, "STRANGER", stranger.CertFile,
				"CA", ca.File, "CERT", client.CertFile, "KEY", client.KeyFile).Replace(tc.tls)
			path := fileWriter(t, t.TempDir())("nirproxy.yaml", "sources:\n  - {id: RXA, name: A, url: '"+pacs.URL+"/dicom-web', retries: 0, tls: "+section+"}\n"+minimalAccessYAML)
			cfg, err := LoadValid(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := cfg.Sources[0].UpstreamSource()
			if err != nil {
				t.Fatal(err)
			}
			src := upstream.NewSource(sc, cfg.Sources[0].UpstreamOptions(), slog.New(slog.DiscardHandler))
			got, err := src.Search(context.Background(), "studies", url.Values{"PatientID": {"9434765919"}})
			if tc.wantErr == "" {
				if err != nil || len(got) != 1 || answered.Load() != 1 {
					t.Fatalf("Search = %d results, %v; want the PACS's one answer", len(got), err)
				}
				return
			}
			var te *upstream.TransportError
			if !errors.As(err, &te) || upstream.Classify(err).Class != upstream.ClassUnreachable || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Search error = %v (%T); want a transport failure mentioning %q", err, err, tc.wantErr)
			}
			if n := answered.Load(); n != 0 {
				t.Errorf("the PACS answered %d requests; want none", n)
			}
		})
	}
}

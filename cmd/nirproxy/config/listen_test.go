package config

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/test/testpki"
)

// writeTLSFiles writes a server's certificate and key (tls.crt, tls.key) and a client CA bundle
// (clients.pem, whose key is other.key) with write, and returns the server's key. Both
// certificates are self-signed.
func writeTLSFiles(t *testing.T, write func(name, content string) string) (key string) {
	t.Helper()
	server, clients := testpki.NewCA(t, "imaging.example.nhs.uk"), testpki.NewCA(t, "clients.example.nhs.uk")
	write("tls.crt", string(server.CertPEM))
	write("tls.key", string(server.KeyPEM))
	write("clients.pem", string(clients.CertPEM))
	write("other.key", string(clients.KeyPEM))
	return string(server.KeyPEM)
}

// TestListenTLSFiles: Load takes the tls section's paths from the file's directory and reads
// them, reporting a file it cannot read or use under its key; ServerConfig makes the listener's
// TLS from them: TLS 1.2 at least, client certificates as clientAuth says.
func TestListenTLSFiles(t *testing.T) {
	dir := t.TempDir()
	write := fileWriter(t, dir)
	key := writeTLSFiles(t, write)
	write("empty.pem", "# no certificate here\n")
	tests := []struct {
		name       string
		tls        string // the tls section's keys, in flow style
		environ    []string
		want       []Problem
		clientAuth tls.ClientAuthType // when there is no problem
	}{
		{name: "off", tls: "{}", clientAuth: -1},
		{name: "server only", tls: "{certFile: tls.crt, keyFile: tls.key}", clientAuth: tls.NoClientCert},
		{name: "client certificates requested", tls: "{certFile: tls.crt, keyFile: tls.key, clientCAFile: clients.pem, clientAuth: request}",
			clientAuth: tls.VerifyClientCertIfGiven},
		{name: "client certificates required", tls: "{certFile: " + filepath.Join(dir, "tls.crt") + ", keyFile: tls.key, clientCAFile: clients.pem, clientAuth: require}",
			clientAuth: tls.RequireAndVerifyClientCert},
		{name: "files named by the environment", tls: "{clientAuth: require}", clientAuth: tls.RequireAndVerifyClientCert,
			environ: []string{"NIRPROXY_TLS_CERT_FILE=tls.crt", "NIRPROXY_TLS_KEY_FILE=tls.key", "NIRPROXY_TLS_CLIENT_CA_FILE=clients.pem"}},
		{name: "files that are not there", tls: "{certFile: missing.crt, keyFile: missing.key, clientCAFile: missing.pem}", want: []Problem{
			{"tls.clientCAFile", "cannot read " + filepath.Join(dir, "missing.pem") + ": no such file or directory; check the path"},
			{"tls.certFile", "cannot read " + filepath.Join(dir, "missing.crt")},
			{"tls.keyFile", "cannot read " + filepath.Join(dir, "missing.key")},
		}},
		{name: "a key of another certificate", tls: "{certFile: tls.crt, keyFile: other.key}", want: []Problem{
			{"tls.certFile", filepath.Join(dir, "tls.crt") + " and tls.keyFile " + filepath.Join(dir, "other.key") + " are not a PEM certificate and its private key (tls: private key does not match public key)"},
		}},
		{name: "a certificate where the key should be", tls: "{certFile: tls.crt, keyFile: tls.crt}", want: []Problem{
			{"tls.certFile", "are not a PEM certificate and its private key"},
		}},
		{name: "a CA bundle without a certificate", tls: "{certFile: tls.crt, keyFile: tls.key, clientCAFile: empty.pem, clientAuth: require}", want: []Problem{
			{"tls.clientCAFile", filepath.Join(dir, "empty.pem") + " holds no PEM certificate; put in it the certificates of the CAs that issue the client systems' certificates"},
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := write("config"+string(rune('a'+i))+".yaml", minimalYAML+"tls: "+tc.tls+"\n")
			cfg, err := Load(path, tc.environ)
			if tc.want != nil {
				assertProblems(t, err, tc.want)
				if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), strings.Split(key, "\n")[1]) {
					t.Errorf("a problem shows the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			sc, err := cfg.TLS.ServerConfig()
			if err != nil {
				t.Fatalf("ServerConfig: %v", err)
			}
			if tc.clientAuth < 0 {
				if sc != nil || cfg.TLS.Enabled() {
					t.Fatalf("ServerConfig = %+v with no tls section; want nil", sc)
				}
				return
			}
			if sc == nil || sc.MinVersion != tls.VersionTLS12 || len(sc.Certificates) != 1 || sc.ClientAuth != tc.clientAuth {
				t.Fatalf("ServerConfig = %+v; want TLS 1.2 at least, the one certificate, client auth %v", sc, tc.clientAuth)
			}
			if (cfg.TLS.ClientCAFile != "") != (sc.ClientCAs != nil) {
				t.Errorf("ClientCAs = %v for clientCAFile %q", sc.ClientCAs, cfg.TLS.ClientCAFile)
			}
			if cfg.TLS.CertFile != filepath.Join(dir, "tls.crt") {
				t.Errorf("tls.certFile = %q; want it taken from the file's directory", cfg.TLS.CertFile)
			}
		})
	}
}

// TestServerConfigRereadsFiles: serve reads the files when it starts; one that changed since
// Load is refused with an error naming it.
func TestServerConfigRereadsFiles(t *testing.T) {
	dir := t.TempDir()
	server := testpki.NewCA(t, "imaging.example.nhs.uk")
	write := fileWriter(t, dir)
	tl := ListenTLS{CertFile: write("tls.crt", string(server.CertPEM)), KeyFile: write("tls.key", string(server.KeyPEM)), ClientAuth: ClientAuthNone}
	if _, err := tl.ServerConfig(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tl.KeyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := tl.ServerConfig(); err == nil || !strings.Contains(err.Error(), "load the listener's TLS: tls.keyFile: cannot read "+tl.KeyFile) {
		t.Fatalf("ServerConfig without its key file: %v", err)
	}
}

// TestListenerDefaultsAndOverrides: the admin listener is on loopback and TLS off by default;
// both are overridden from the environment like any key.
func TestListenerDefaultsAndOverrides(t *testing.T) {
	cfg, err := Parse([]byte(minimalYAML+minimalAccessYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminListen != "127.0.0.1:9090" || cfg.TLS != (ListenTLS{ClientAuth: "none"}) || cfg.TLS.Enabled() {
		t.Fatalf("adminListen %q, tls %+v; want 127.0.0.1:9090 and TLS off", cfg.AdminListen, cfg.TLS)
	}
	cfg, err = Parse([]byte(minimalYAML+minimalAccessYAML), []string{"NIRPROXY_ADMIN_LISTEN=", "NIRPROXY_TLS_CLIENT_AUTH=request"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminListen != "" || cfg.TLS.ClientAuth != ClientAuthRequest {
		t.Fatalf("adminListen %q, tls.clientAuth %q; want the overrides", cfg.AdminListen, cfg.TLS.ClientAuth)
	}
}

// TestCheckFileListeners: check-config says what TLS the listener terminates, and that there is
// no admin listener when adminListen is empty; a non-loopback admin listener is a warning.
func TestCheckFileListeners(t *testing.T) {
	dir := t.TempDir()
	writeMinimalRegistry(t, dir)
	write := fileWriter(t, dir)
	writeTLSFiles(t, write)
	const signing = "signingKey: kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\n"
	tests := []struct {
		name string
		yaml string
		want []string // the lines between the first and the cache's
	}{
		{name: "tls with client certificates required, no admin listener",
			yaml: "tls: {certFile: tls.crt, keyFile: tls.key, clientCAFile: clients.pem, clientAuth: require}\nadminListen: \"\"\n",
			want: []string{"tls: TLS 1.2+ with DIR/tls.crt; client certificates required, verified against DIR/clients.pem",
				"admin listener: off (adminListen is empty): /status and /metrics are served nowhere"}},
		{name: "tls without client certificates",
			yaml: "tls: {certFile: tls.crt, keyFile: tls.key}\n",
			want: []string{"tls: TLS 1.2+ with DIR/tls.crt; client certificates not asked for"}},
		{name: "tls with client certificates requested",
			yaml: "tls: {certFile: tls.crt, keyFile: tls.key, clientCAFile: clients.pem, clientAuth: request}\n",
			want: []string{"tls: TLS 1.2+ with DIR/tls.crt; client certificates requested, verified against DIR/clients.pem"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := write("listeners"+string(rune('a'+i))+".yaml", minimalYAML+minimalAccessYAML+signing+tc.yaml)
			var out bytes.Buffer
			if !CheckFile(path, nil, &out) {
				t.Fatalf("CheckFile = false:\n%s", out.String())
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			want := strings.ReplaceAll(strings.Join(tc.want, "\n"), "DIR", dir)
			if len(lines) < len(tc.want)+2 || strings.Join(lines[1:1+len(tc.want)], "\n") != want || !strings.HasPrefix(lines[1+len(tc.want)], "cache: ") {
				t.Fatalf("CheckFile printed\n%s\nwant after its first line\n%s\nthen the cache's line", out.String(), want)
			}
		})
	}
	path := write("open-admin.yaml", minimalYAML+minimalAccessYAML+signing+"adminListen: 0.0.0.0:9090\n")
	var out bytes.Buffer
	if !CheckFile(path, nil, &out) || !strings.HasSuffix(out.String(), "warning: adminListen: \"0.0.0.0:9090\" is not a loopback address: /status and /metrics are served there in plain HTTP, with no authentication, "+
		"and tell anyone who reaches them each trust's state; keep it on 127.0.0.1 unless a firewall guards it\n") {
		t.Fatalf("CheckFile printed\n%s\nwant a warning about the admin listener", out.String())
	}
}

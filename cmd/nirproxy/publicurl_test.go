package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
)

// TestPublicURL: links come from the configured publicURL, else from the address listened on
// (localhost for an unspecified address; https when the proxy terminates TLS), never from
// anything a request carries.
func TestPublicURL(t *testing.T) {
	tests := []struct {
		name, configured, addr, want string
		tls                          bool
	}{
		{name: "configured wins", configured: "https://imaging.example.nhs.uk", addr: "127.0.0.1:8080", want: "https://imaging.example.nhs.uk"},
		{name: "loopback", addr: "127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{name: "IPv6 loopback", addr: "[::1]:9000", want: "http://[::1]:9000"},
		{name: "every interface (the demo only)", addr: "0.0.0.0:8080", want: "http://localhost:8080"},
		{name: "loopback with TLS", addr: "127.0.0.1:8443", tls: true, want: "https://127.0.0.1:8443"},
		{name: "configured wins with TLS", configured: "https://imaging.example.nhs.uk", addr: "127.0.0.1:8443", tls: true, want: "https://imaging.example.nhs.uk"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.PublicURL = tc.configured
			if tc.tls {
				cfg.TLS.CertFile, cfg.TLS.KeyFile = "tls.crt", "tls.key"
			}
			addr, err := net.ResolveTCPAddr("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			if got := publicURL(cfg, addr); got != tc.want {
				t.Fatalf("publicURL = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestServeNeedsPublicURL: serve refuses to start on an address other machines can reach
// without publicURL, naming the key and the fix, before it listens.
func TestServeNeedsPublicURL(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	yaml := "listen: \":0\"\nsources:\n  - id: RXA\n    name: Example Hospitals NHS Trust\n    url: http://127.0.0.1:8042/dicom-web\n    insecure: true\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	// A cancelled context: were serve to start, it would stop at once and return nil.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := serveCommand(ctx, []string{"--config", path}, nil, &stderr)
	if err == nil {
		t.Fatal("serve started without publicURL on every interface")
	}
	if !strings.Contains(stderr.String(), "publicURL: is required when listen (\":0\") is not a loopback address") ||
		!strings.Contains(stderr.String(), "set it to the URL clients reach the proxy at") {
		t.Fatalf("stderr %q does not name publicURL and the fix", stderr.String())
	}
}

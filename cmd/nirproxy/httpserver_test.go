package main

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPServerBoundsSlowAndLargeHeaders: the listener cuts off a client that never finishes
// its request headers, and refuses headers larger than its bound, before any handler (and so
// any trust) is reached.
func TestHTTPServerBoundsSlowAndLargeHeaders(t *testing.T) {
	hs := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a handler was reached for %s", r.URL.Path)
	}), slog.New(slog.DiscardHandler))
	if hs.ReadHeaderTimeout <= 0 || hs.ReadHeaderTimeout > 30*time.Second {
		t.Fatalf("ReadHeaderTimeout %v; want a bound of at most 30 s", hs.ReadHeaderTimeout)
	}
	if hs.MaxHeaderBytes <= 0 || hs.MaxHeaderBytes > 1<<20 {
		t.Fatalf("MaxHeaderBytes %d; want a bound of at most 1 MiB", hs.MaxHeaderBytes)
	}
	// The bound is shortened here so the test waits on the server closing the connection, not
	// on the production value.
	hs.ReadHeaderTimeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	slow, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "GET /dicom-web/studies HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	// The server closes the connection (EOF, perhaps after a 408) once the bound passes; the
	// deadline is only a backstop sized for a busy machine.
	slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("the slow client was not cut off: %v", err)
	}

	big, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	io.WriteString(big, "GET /dicom-web/studies HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 2<<20)+"\r\n\r\n")
	big.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(big), nil)
	if err != nil {
		t.Fatalf("read the answer to oversized headers: %v", err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d for 2 MiB of headers, want 431", resp.StatusCode)
	}
}

package media

import (
	"bytes"
	"errors"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// onlyReader and onlyWriter hide WriterTo and ReaderFrom, as a network body and an
// http.ResponseWriter under chunked encoding do, so copies go through a buffer.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

type failingWriter struct {
	n   int // bytes accepted before failing
	err error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) <= w.n {
		w.n -= len(p)
		return len(p), nil
	}
	n := w.n
	w.n = 0
	return n, w.err
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

// TestCopyErrors checks that Copy tells a failing upstream from a client that went away: read
// errors are wrapped as they are, write errors become *WriteError.
func TestCopyErrors(t *testing.T) {
	boom := errors.New("connection reset by peer")
	hangup := errors.New("broken pipe")
	body := strings.Repeat("x", 100_000)
	tests := []struct {
		name        string
		src         io.Reader
		dst         io.Writer
		wantIs      []error
		wantNotIs   []error
		wantWriteEr bool
	}{
		{
			name:      "upstream read error",
			src:       io.MultiReader(strings.NewReader(body[:5000]), iotest.ErrReader(boom)),
			dst:       io.Discard,
			wantIs:    []error{boom},
			wantNotIs: []error{io.ErrUnexpectedEOF},
		},
		{
			name:   "upstream body shorter than its length",
			src:    io.MultiReader(strings.NewReader(body[:5000]), iotest.ErrReader(io.ErrUnexpectedEOF)),
			dst:    io.Discard,
			wantIs: []error{io.ErrUnexpectedEOF},
		},
		{
			name:        "client gone",
			src:         strings.NewReader(body),
			dst:         &failingWriter{n: 40_000, err: hangup},
			wantIs:      []error{hangup},
			wantWriteEr: true,
		},
		{
			name:        "short write",
			src:         strings.NewReader(body),
			dst:         shortWriter{},
			wantIs:      []error{io.ErrShortWrite},
			wantWriteEr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Copy(tc.dst, tc.src)
			if err == nil {
				t.Fatal("no error")
			}
			for _, e := range tc.wantIs {
				if !errors.Is(err, e) {
					t.Errorf("error %q is not %q", err, e)
				}
			}
			for _, e := range tc.wantNotIs {
				if errors.Is(err, e) {
					t.Errorf("error %q is %q", err, e)
				}
			}
			var we *WriteError
			if errors.As(err, &we) != tc.wantWriteEr {
				t.Errorf("error %q: WriteError %v, want %v", err, !tc.wantWriteEr, tc.wantWriteEr)
			}
		})
	}
}

type flushCounter struct {
	io.Writer
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++ }

// fullReader fills every read, as a source with data always waiting does.
type fullReader struct{ n int }

func (r *fullReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n)
	clear(p[:n])
	r.n -= n
	return n, nil
}

func TestCopyFlushPolicy(t *testing.T) {
	tests := []struct {
		name        string
		src         io.Reader
		wantFlushes int
	}{
		{name: "data always waiting: no flush but the last", src: &fullReader{n: 10 * copyBufferSize}, wantFlushes: 0},
		{name: "trickling source: flush every read", src: iotest.OneByteReader(strings.NewReader("abcde")), wantFlushes: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := &flushCounter{Writer: io.Discard}
			if _, err := Copy(dst, tc.src); err != nil {
				t.Fatal(err)
			}
			if dst.flushes != tc.wantFlushes {
				t.Fatalf("flushes = %d, want %d", dst.flushes, tc.wantFlushes)
			}
		})
	}
}

// TestCopyThroughHTTP passes a body from an upstream to a client through a proxy handler that
// uses Copy, and checks that an upstream body cut short of its Content-Length reaches the client
// as a broken response, never as a complete one.
func TestCopyThroughHTTP(t *testing.T) {
	body := syntheticMultipart(3<<20, "bnd")
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", `multipart/related; type=application/dicom; boundary=bnd`)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		switch r.URL.Path {
		case "/whole":
			io.WriteString(w, body)
		case "/cut":
			io.WriteString(w, body[:len(body)/2])
		}
	}))
	defer upstream.Close()
	upstream.Config.ErrorLog = log.New(io.Discard, "", 0)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(upstream.URL + r.URL.Path)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		if _, err := Copy(w, resp.Body); err != nil {
			panic(http.ErrAbortHandler)
		}
	}))
	defer proxy.Close()

	resp, err := http.Get(proxy.URL + "/whole")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(got) != body {
		t.Fatalf("whole: %d bytes, %v", len(got), err)
	}

	resp, err = http.Get(proxy.URL + "/cut")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("a truncated upstream body reached the client as a complete response")
	}
}

func TestCopyAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers")
	}
	body := []byte(syntheticMultipart(1<<20, "bnd"))
	src := bytes.NewReader(body)
	var r io.Reader = onlyReader{src}
	var w io.Writer = onlyWriter{io.Discard}
	Copy(w, r) // warm the pool
	allocs := testing.AllocsPerRun(20, func() {
		src.Reset(body)
		if _, err := Copy(w, r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("Copy of 1 MiB made %.0f allocations, want none", allocs)
	}
}

// syntheticMultipart returns a multipart body of about size bytes: parts of 512 KiB of
// pseudo-random bytes, like the instances of a study.
func syntheticMultipart(size int, boundary string) string {
	rng := rand.New(rand.NewPCG(7, 7))
	var b strings.Builder
	b.Grow(size + 4096)
	part := make([]byte, 512<<10)
	for b.Len() < size {
		for i := range part {
			part[i] = byte(rng.UintN(256))
		}
		n := min(len(part), size-b.Len())
		b.WriteString("--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n")
		b.Write(part[:max(n, 1)])
		b.WriteString("\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.String()
}

var benchBody = sync.OnceValue(func() []byte { return []byte(syntheticMultipart(50<<20, "nirproxy-BENCH")) })

// BenchmarkPassThrough compares the pass-through copies with plain io.Copy on a 50 MB body
// in memory, with the fast paths io.Copy would take on a bytes.Reader hidden.
func BenchmarkPassThrough(b *testing.B) {
	body := benchBody()
	copies := []struct {
		name string
		fn   func(io.Writer, io.Reader) (int64, error)
	}{
		{name: "io.Copy", fn: io.Copy},
		{name: "Copy", fn: Copy},
	}
	for _, c := range copies {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			src := bytes.NewReader(body)
			for b.Loop() {
				src.Reset(body)
				if _, err := c.fn(onlyWriter{io.Discard}, onlyReader{src}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPassThroughHTTP measures a 50 MB whole-study retrieve over loopback: an upstream
// that streams without a Content-Length (as Orthanc does), a proxy that copies its body, and
// a client that reads it. "direct" is the client reading the upstream itself.
func BenchmarkPassThroughHTTP(b *testing.B) {
	body := benchBody()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=nirproxy-BENCH`)
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 64<<10)
			w.Write(rest[:n])
			rest = rest[n:]
		}
	}))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	proxyWith := func(copyFn func(w http.ResponseWriter, r io.Reader) error) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			resp, err := client.Get(upstream.URL)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
			if err := copyFn(w, resp.Body); err != nil {
				panic(http.ErrAbortHandler)
			}
		})
	}
	handlers := []struct {
		name string
		h    http.Handler
	}{
		{name: "direct"},
		{name: "io.Copy", h: proxyWith(func(w http.ResponseWriter, r io.Reader) error { _, err := io.Copy(w, r); return err })},
		{name: "Copy", h: proxyWith(func(w http.ResponseWriter, r io.Reader) error {
			_, err := Copy(w, r)
			return err
		})},
		{name: "httputil.ReverseProxy", h: httputil.NewSingleHostReverseProxy(target)},
	}
	for _, hc := range handlers {
		b.Run(hc.name, func(b *testing.B) {
			u := upstream.URL
			if hc.h != nil {
				srv := httptest.NewServer(hc.h)
				defer srv.Close()
				u = srv.URL
			}
			c := &http.Client{Transport: &http.Transport{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Get(u)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != int64(len(body)) {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
		})
	}
}

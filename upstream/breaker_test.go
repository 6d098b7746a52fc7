package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// headerTimeout is the error net/http gives when a source sends no headers in time.
type headerTimeout struct{}

func (headerTimeout) Error() string   { return "net/http: timeout awaiting response headers" }
func (headerTimeout) Timeout() bool   { return true }
func (headerTimeout) Temporary() bool { return true }

// failingReader returns some bytes and then err.
type failingReader struct {
	data string
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// okResponse is a 200 answer with the given body.
func okResponse(body io.ReadCloser) *http.Response {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: body}
}

// newBreakerSource is source RXA over f, its breaker tuned by edit.
func newBreakerSource(f *fakeClient, edit func(*BreakerOptions)) *Source {
	return newTunedBreakerSource(f, with(testBreakerOptions(), edit))
}

// newTunedBreakerSource is source RXA over f with breaker opts.
func newTunedBreakerSource(f *fakeClient, opts BreakerOptions) *Source {
	cfg := SourceConfig{ID: "RXA", Name: "Example Hospitals NHS Trust", Timeout: testTimeout}
	return NewSourceWithClient(cfg, f, with(testOptions(), func(o *Options) { o.Breaker = opts }), discard())
}

func TestBreakerOpens(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		fetch bool
	}{
		{name: "503", err: &StatusError{Source: "RXA", Status: 503}},
		{name: "500", err: &StatusError{Source: "RXA", Status: 500}},
		{name: "429", err: &StatusError{Source: "RXA", Status: 429}},
		{name: "header time-out", err: &TransportError{Source: "RXA", Err: headerTimeout{}}},
		{name: "deadline", err: &TransportError{Source: "RXA", Err: context.DeadlineExceeded}},
		{name: "connection refused", err: &TransportError{Source: "RXA", Err: syscall.ECONNREFUSED}},
		{name: "garbage", err: &InvalidResponseError{Source: "RXA", Err: errors.New("decode DICOM JSON")}},
		{name: "fetch 502", err: &StatusError{Source: "RXA", Status: 502}, fetch: true},
		{name: "fetch refused", err: &TransportError{Source: "RXA", Err: syscall.ECONNREFUSED}, fetch: true},
	}
	const threshold = 3
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeClient{
				search: func(context.Context, string, url.Values) ([]dcmjson.Dataset, error) { return nil, tc.err },
				fetch: func(context.Context, string, url.Values, string) (*http.Response, error) {
					return nil, tc.err
				},
			}
			s := newBreakerSource(f, func(b *BreakerOptions) {
				b.MinRequests, b.FailureRatio, b.ConsecutiveUnreachable, b.OpenFor = threshold, 1, 1000, time.Hour
			})
			call := func() error {
				if tc.fetch {
					_, err := s.Fetch(context.Background(), "studies/1.2", nil, "application/dicom")
					return err
				}
				_, err := s.Search(context.Background(), "studies", nil)
				return err
			}
			for i := range threshold {
				if s.State() != "closed" {
					t.Fatalf("state %q after %d failures; want closed", s.State(), i)
				}
				if err := call(); !errors.Is(err, tc.err) {
					t.Fatalf("call %d: err = %v; want the source's error", i+1, err)
				}
			}
			if s.State() != "open" {
				t.Fatalf("state %q after %d failures; want open", s.State(), threshold)
			}
			for _, fetch := range []bool{false, true} {
				var err error
				if fetch {
					_, err = s.Fetch(context.Background(), "studies/1.2", nil, "application/dicom")
				} else {
					_, err = s.Search(context.Background(), "studies", nil)
				}
				if !errors.Is(err, ErrCircuitOpen) {
					t.Fatalf("open breaker: err = %v; want ErrCircuitOpen", err)
				}
				if got := Classify(err).Class; got != ClassCircuitOpen {
					t.Errorf("class = %v; want circuit open", got)
				}
			}
			if n := f.calls.Load(); n != threshold {
				t.Fatalf("source called %d times; want %d (none while open)", n, threshold)
			}
		})
	}
}

func TestBreakerIgnores(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{name: "404", err: &StatusError{Source: "RXA", Status: 404}},
		{name: "400", err: &StatusError{Source: "RXA", Status: 400}},
		{name: "406", err: &StatusError{Source: "RXA", Status: 406}},
		{name: "413", err: &StatusError{Source: "RXA", Status: 413}},
		{name: "422", err: &StatusError{Source: "RXA", Status: 422}},
		{name: "client cancelled", err: context.Canceled},
		{name: "client cancelled in transport", err: &TransportError{Source: "RXA", Err: context.Canceled}},
		{name: "client cancelled, wrapped", err: fmt.Errorf("search studies: %w", &TransportError{Source: "RXA", Err: context.Canceled})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeClient{search: func(context.Context, string, url.Values) ([]dcmjson.Dataset, error) { return nil, tc.err }}
			s := newBreakerSource(f, func(b *BreakerOptions) { b.MinRequests, b.ConsecutiveUnreachable, b.OpenFor = 1, 1, time.Hour })
			for range 10 {
				if _, err := s.Search(context.Background(), "studies", nil); !errors.Is(err, tc.err) {
					t.Fatalf("err = %v; want the source's error", err)
				}
			}
			if s.State() != "closed" || f.calls.Load() != 10 {
				t.Fatalf("state %q, %d calls; want closed and 10", s.State(), f.calls.Load())
			}
		})
	}
}

// TestBreakerTrips drives a source through scripts of outcomes and checks the rule that opens
// its breaker: a failure ratio over a minimum of calls, or a run of calls that could not connect;
// never a few failures that one client's queries can provoke.
func TestBreakerTrips(t *testing.T) {
	var (
		ok        error
		fail500   = &StatusError{Source: "RXA", Status: 500}
		fail503   = &StatusError{Source: "RXA", Status: 503}
		timedOut  = &TransportError{Source: "RXA", Err: headerTimeout{}}
		reset     = &TransportError{Source: "RXA", Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}
		refused   = &TransportError{Source: "RXA", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
		noHost    = &TransportError{Source: "RXA", Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "pacs.example", IsNotFound: true}}}
		dialSlow  = &TransportError{Source: "RXA", Err: &net.OpError{Op: "dial", Net: "tcp", Err: headerTimeout{}}}
		cancelled = &TransportError{Source: "RXA", Err: context.Canceled}
	)
	defaults := with(testBreakerOptions(), func(b *BreakerOptions) { b.OpenFor = time.Hour })
	tests := []struct {
		name   string
		opts   BreakerOptions
		script [][2]any // (error, times) pairs, in order
		want   string
	}{
		{name: "five client-triggered 500s do not open it", opts: defaults, script: [][2]any{{fail500, 5}}, want: "closed"},
		{name: "19 500s, one fewer than minRequests, do not open it", opts: defaults, script: [][2]any{{fail500, 19}}, want: "closed"},
		{name: "20 500s and nothing else within the window open it", opts: defaults, script: [][2]any{{fail500, 20}}, want: "open"},
		{name: "500s among others' successes, under the ratio", opts: defaults, script: [][2]any{{ok, 30}, {fail500, 29}}, want: "closed"},
		{name: "failures reaching the ratio over minRequests", opts: defaults, script: [][2]any{{ok, 30}, {fail503, 30}}, want: "open"},
		{name: "a tuned ratio", opts: with(defaults, func(b *BreakerOptions) { b.MinRequests, b.FailureRatio = 10, 0.25 }), script: [][2]any{{ok, 7}, {fail503, 3}}, want: "open"},
		{name: "a tuned ratio, not reached", opts: with(defaults, func(b *BreakerOptions) { b.MinRequests, b.FailureRatio = 10, 0.25 }), script: [][2]any{{ok, 9}, {fail503, 2}}, want: "closed"},
		{name: "five time-outs are no run of unreachable calls", opts: defaults, script: [][2]any{{timedOut, 5}}, want: "closed"},
		{name: "five resets once connected are no run of unreachable calls", opts: defaults, script: [][2]any{{reset, 5}}, want: "closed"},
		{name: "five refused connections in a row open it", opts: defaults, script: [][2]any{{refused, 5}}, want: "open"},
		{name: "five unknown hosts in a row open it", opts: defaults, script: [][2]any{{noHost, 5}}, want: "open"},
		{name: "five connection attempts timed out open it", opts: defaults, script: [][2]any{{dialSlow, 5}}, want: "open"},
		{name: "an answer ends the run of refused connections", opts: defaults, script: [][2]any{{refused, 4}, {fail500, 1}, {refused, 4}}, want: "closed"},
		{name: "a client hanging up does not end the run", opts: defaults, script: [][2]any{{refused, 3}, {cancelled, 1}, {refused, 2}}, want: "open"},
		{name: "a tuned run", opts: with(defaults, func(b *BreakerOptions) { b.ConsecutiveUnreachable = 2 }), script: [][2]any{{refused, 2}}, want: "open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var next error
			f := &fakeClient{search: func(context.Context, string, url.Values) ([]dcmjson.Dataset, error) { return nil, next }}
			s := newTunedBreakerSource(f, tc.opts)
			for _, step := range tc.script {
				next, _ = step[0].(error)
				for range step[1].(int) {
					if _, err := s.Search(context.Background(), "studies", nil); errors.Is(err, ErrCircuitOpen) {
						t.Fatalf("breaker opened before the script's end (at %v)", next)
					}
				}
			}
			if s.State() != tc.want {
				t.Fatalf("state %q after the script; want %s", s.State(), tc.want)
			}
		})
	}
}

// TestBreakerWindowForgets checks that failures older than the window no longer count: two
// failures, then the window passes, then one more, are not the three that open the breaker.
func TestBreakerWindowForgets(t *testing.T) {
	const window = time.Second
	fail := &StatusError{Source: "RXA", Status: 500}
	f := &fakeClient{search: func(context.Context, string, url.Values) ([]dcmjson.Dataset, error) { return nil, fail }}
	s := newBreakerSource(f, func(b *BreakerOptions) { b.Window, b.MinRequests, b.FailureRatio, b.OpenFor = window, 3, 1, time.Hour })
	search := func() { s.Search(context.Background(), "studies", nil) }
	search()
	search()
	counted := func() uint32 {
		s.health.cb.State() // rolls the window forward
		return s.health.cb.Counts().TotalFailures
	}
	if n := counted(); n != 2 {
		t.Fatalf("%d failures counted; want 2", n)
	}
	deadline := time.Now().Add(5 * window)
	for counted() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("failures still counted %v after the window of %v", 5*window, window)
		}
		time.Sleep(window / 20)
	}
	search()
	if s.State() != "closed" {
		t.Fatalf("state %q; the first two failures left the window, want closed", s.State())
	}
	search()
	search()
	if s.State() != "open" {
		t.Fatalf("state %q after three failures within the window; want open", s.State())
	}
}

// TestSourceUnreachableOpens checks, end to end over a closed port, that a source nothing
// can connect to opens its breaker on the run of refused connections, with the default
// minimum of calls far away.
func TestSourceUnreachableOpens(t *testing.T) {
	cfg := SourceConfig{ID: "RXA", Name: "Example", BaseURL: closedURL(t), Timeout: testTimeout}
	s := NewSource(cfg, with(testOptions(), func(o *Options) { o.Breaker.OpenFor = time.Hour }), discard())
	for i := range 5 {
		_, err := s.Search(context.Background(), "studies", nil)
		if err == nil || errors.Is(err, ErrCircuitOpen) || !IsUnreachable(err) {
			t.Fatalf("call %d: err = %v; want an unreachable source", i+1, err)
		}
	}
	if _, err := s.Search(context.Background(), "studies", nil); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("sixth call: err = %v; want ErrCircuitOpen", err)
	}
}

func TestBreakerHalfOpen(t *testing.T) {
	const openFor = 50 * time.Millisecond
	fail := &StatusError{Source: "RXA", Status: 503}
	tests := []struct {
		name      string
		probeErr  error
		wantState string
	}{
		{name: "probe succeeds, breaker closes", wantState: "closed"},
		{name: "probe fails, breaker opens again", probeErr: fail, wantState: "open"},
		{name: "probe gets a 404, breaker closes", probeErr: &StatusError{Source: "RXA", Status: 404}, wantState: "closed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next := error(fail)
			f := &fakeClient{search: func(context.Context, string, url.Values) ([]dcmjson.Dataset, error) { return nil, next }}
			s := newBreakerSource(f, func(b *BreakerOptions) { b.MinRequests, b.OpenFor = 1, openFor })
			s.Search(context.Background(), "studies", nil)
			if _, err := s.Search(context.Background(), "studies", nil); !errors.Is(err, ErrCircuitOpen) {
				t.Fatalf("err = %v; want ErrCircuitOpen", err)
			}
			time.Sleep(openFor + 20*time.Millisecond)
			if s.State() != "half-open" {
				t.Fatalf("state %q after OpenFor; want half-open", s.State())
			}
			next = tc.probeErr
			if _, err := s.Search(context.Background(), "studies", nil); err != tc.probeErr {
				t.Fatalf("probe err = %v; want %v", err, tc.probeErr)
			}
			if s.State() != tc.wantState {
				t.Fatalf("state %q after probe; want %s", s.State(), tc.wantState)
			}
			if n := f.calls.Load(); n != 2 {
				t.Fatalf("source called %d times; want 2 (failure and probe)", n)
			}
		})
	}
}

// TestBreakerHalfOpenFetch checks that a fetch probe holds the half-open slot until its body
// is closed, and that a body read to its end closes the breaker.
func TestBreakerHalfOpenFetch(t *testing.T) {
	fail := &StatusError{Source: "RXA", Status: 503}
	failing := true
	f := &fakeClient{fetch: func(context.Context, string, url.Values, string) (*http.Response, error) {
		if failing {
			return nil, fail
		}
		return okResponse(io.NopCloser(strings.NewReader("DICM"))), nil
	}}
	f.search = func(context.Context, string, url.Values) ([]dcmjson.Dataset, error) { return nil, nil }
	s := newBreakerSource(f, func(b *BreakerOptions) { b.MinRequests, b.OpenFor = 1, 50*time.Millisecond })
	s.Fetch(context.Background(), "studies/1.2", nil, "application/dicom")
	time.Sleep(70 * time.Millisecond)
	failing = false
	resp, err := s.Fetch(context.Background(), "studies/1.2", nil, "application/dicom")
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if _, err := s.Search(context.Background(), "studies", nil); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("second request while the probe streams: err = %v; want ErrCircuitOpen", err)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if s.State() != "half-open" {
		t.Fatalf("state %q before Close; the outcome is reported at Close", s.State())
	}
	resp.Body.Close()
	if s.State() != "closed" {
		t.Fatalf("state %q after a probe read to its end; want closed", s.State())
	}
}

func TestBreakerFetchReportsAtClose(t *testing.T) {
	tests := []struct {
		name      string
		body      func() io.ReadCloser
		ctxDone   bool // the client hangs up before reading
		read      bool // read to the end (or failure) before Close
		wantState string
	}{
		{
			name:      "body read fully",
			body:      func() io.ReadCloser { return io.NopCloser(strings.NewReader("--boundary--")) },
			read:      true,
			wantState: "closed",
		},
		{
			name:      "body read fails",
			body:      func() io.ReadCloser { return io.NopCloser(&failingReader{data: "half", err: io.ErrUnexpectedEOF}) },
			read:      true,
			wantState: "open",
		},
		{
			name:      "body read fails because the client hung up",
			body:      func() io.ReadCloser { return io.NopCloser(&failingReader{data: "half", err: context.Canceled}) },
			ctxDone:   true,
			read:      true,
			wantState: "closed",
		},
		{
			name:      "caller stops early",
			body:      func() io.ReadCloser { return io.NopCloser(strings.NewReader("more than we need")) },
			wantState: "closed",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeClient{fetch: func(context.Context, string, url.Values, string) (*http.Response, error) {
				return okResponse(tc.body()), nil
			}}
			s := newBreakerSource(f, func(b *BreakerOptions) { b.MinRequests, b.OpenFor = 1, time.Hour })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			resp, err := s.Fetch(ctx, "studies/1.2", nil, "application/dicom")
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if tc.ctxDone {
				cancel()
			}
			if tc.read {
				io.Copy(io.Discard, resp.Body)
			}
			if s.State() != "closed" {
				t.Fatalf("state %q before Close; want closed", s.State())
			}
			resp.Body.Close()
			resp.Body.Close() // a second Close reports nothing more
			if s.State() != tc.wantState {
				t.Fatalf("state %q after Close; want %s", s.State(), tc.wantState)
			}
		})
	}
}

func TestBreakerFetchReportsOnce(t *testing.T) {
	f := &fakeClient{fetch: func(context.Context, string, url.Values, string) (*http.Response, error) {
		return okResponse(io.NopCloser(&failingReader{err: io.ErrUnexpectedEOF})), nil
	}}
	s := newBreakerSource(f, func(b *BreakerOptions) { b.MinRequests, b.OpenFor = 2, time.Hour })
	resp, err := s.Fetch(context.Background(), "studies/1.2", nil, "application/dicom")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body.Close()
	if s.State() != "closed" {
		t.Fatalf("state %q; one broken stream closed twice counts once, want closed", s.State())
	}
}

// TestSourceEndToEnd drives NewSource against real HTTP upstreams: the breaker counts what the
// HTTP client classifies, retries stay under it, and an open breaker keeps calls away.
func TestSourceEndToEnd(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		handler func(w http.ResponseWriter, r *http.Request)
		fetch   bool
	}{
		{name: "garbage JSON", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/dicom+json")
			io.WriteString(w, "<html>not json</html>")
		}},
		{name: "502", handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }},
		{name: "slow headers", timeout: 30 * time.Millisecond, handler: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		}},
		{name: "stream breaks", fetch: true, handler: func(w http.ResponseWriter, _ *http.Request) {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/dicom\r\nContent-Length: 1000\r\n\r\nDICM")
			brw.Flush()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, calls := countingServer(t, func(_ int32, w http.ResponseWriter, r *http.Request) { tc.handler(w, r) })
			cfg := SourceConfig{ID: "RXA", Name: "Example", BaseURL: mustParse(t, srv.URL), Timeout: cmp.Or(tc.timeout, testTimeout)}
			s := NewSource(cfg, with(testOptions(), func(o *Options) {
				o.HTTP.HeaderTimeout, o.HTTP.RetryMax, o.HTTP.RetryWaitMin, o.HTTP.RetryWaitMax = cfg.Timeout, 1, time.Millisecond, time.Millisecond
				o.Breaker.MinRequests, o.Breaker.OpenFor = 2, time.Hour
			}), discard())
			call := func() error {
				if !tc.fetch {
					_, err := s.Search(context.Background(), "studies", nil)
					return err
				}
				resp, err := s.Fetch(context.Background(), "studies/1.2", nil, "application/dicom")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, err = io.ReadAll(resp.Body)
				return err
			}
			for i := range 2 {
				if err := call(); err == nil || errors.Is(err, ErrCircuitOpen) {
					t.Fatalf("call %d: err = %v; want the source's failure", i+1, err)
				}
			}
			before := calls.Load()
			if err := call(); !errors.Is(err, ErrCircuitOpen) {
				t.Fatalf("third call: err = %v; want ErrCircuitOpen", err)
			}
			if calls.Load() != before {
				t.Fatalf("upstream called while the breaker was open")
			}
			if s.State() != "open" {
				t.Fatalf("State() = %q; want open", s.State())
			}
		})
	}
}

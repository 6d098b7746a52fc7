package upstream

import (
	"net/url"

	"context"
	"encoding/json"
	"errors"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestIdleTimeoutCutsStalledStream: a PACS that sends part of an answer and then nothing is
// cut off after the idle timeout with a time-out error, never read as a short complete body.
func TestIdleTimeoutCutsStalledStream(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/related; type=\"application/dicom\"; boundary=b")
		io.WriteString(w, "--b\r\nContent-Type: application/dicom\r\n\r\nDICM")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	src := NewSource(SourceConfig{ID: "RXA", Name: "A", BaseURL: mustParse(t, srv.URL+"/dicom-web"), Timeout: time.Second},
		with(testOptions(), func(o *Options) { o.HTTP.HeaderTimeout, o.HTTP.IdleTimeout = time.Second, 100*time.Millisecond }), discard())
	resp, err := src.Fetch(context.Background(), "studies/1.2", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("a stalled stream ended without an error")
	}
	if !errors.Is(err, ErrStalled) || !IsTimeout(err) || Classify(err).Class != ClassStalled {
		t.Fatalf("err = %v (timeout %v, class %v); want ErrStalled", err, IsTimeout(err), Classify(err).Class)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("the stall was noticed after %v", waited)
	}
	if st := src.Status(); st.Failures != 1 || st.LastFailure == nil || st.LastFailure.Class != ClassStalled {
		t.Fatalf("status %+v; want the stall counted as a failure", st)
	}
}

// TestConcurrencyLimit: with one slot, a second call waits; when its deadline passes it fails
// with ErrBusy without reaching the PACS or its breaker, and a closed body frees the slot.
func TestConcurrencyLimit(t *testing.T) {
	f := &fakeClient{fetch: func(ctx context.Context, path string, q url.Values, accept string) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("x"))}, nil
	}}
	oneSlot := with(testOptions(), func(o *Options) { o.MaxConcurrent = 1 })
	src := NewSourceWithClient(SourceConfig{ID: "RXA", Name: "A", Timeout: testTimeout}, f, oneSlot, discard())
	first, err := src.Fetch(context.Background(), "studies/1", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = src.Fetch(ctx, "studies/2", nil, "")
	cancel()
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("second call: %v; want ErrBusy while the only slot is held", err)
	}
	if got := f.calls.Load(); got != 1 {
		t.Fatalf("%d calls reached the PACS; want 1", got)
	}
	if src.State() != "closed" {
		t.Fatal("waiting for a slot counted against the breaker")
	}
	first.Body.Close()
	second, err := src.Fetch(context.Background(), "studies/2", nil, "")
	if err != nil {
		t.Fatalf("after the first body was closed: %v", err)
	}
	second.Body.Close()

	// A retrieve's context has no deadline; its wait for a slot is still bounded (by the
	// source's header timeout).
	bounded := NewSourceWithClient(SourceConfig{ID: "RXB", Name: "B", Timeout: 50 * time.Millisecond}, f, oneSlot, discard())
	hold, err := bounded.Fetch(context.Background(), "studies/1", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := bounded.Fetch(context.Background(), "studies/2", nil, ""); !errors.Is(err, ErrBusy) {
		t.Fatalf("wait without a deadline: %v; want ErrBusy after the source's timeout", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("waited %v for a slot", waited)
	}
	hold.Body.Close()

	// A cancelled client is not "busy": it is neutral.
	held, _ := src.Fetch(context.Background(), "studies/3", nil, "")
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := src.Fetch(ctx, "studies/4", nil, ""); !IsClientGone(err) {
		t.Fatalf("cancelled wait: %v; want context.Canceled", err)
	}
	held.Body.Close()
}

// TestStatusAndMetrics: every outcome is counted for /status and the metrics, including calls
// the open breaker refused.
func TestStatusAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	fail := atomic.Bool{}
	f := &fakeClient{search: func(ctx context.Context, path string, q url.Values) ([]dcmjson.Dataset, error) {
		time.Sleep(2 * time.Millisecond)
		if fail.Load() {
			return nil, &StatusError{Source: "RXA", Status: 503}
		}
		return nil, nil
	}}
	var incidents []Incident
	var mu sync.Mutex
	notify := notifierFunc(func(in Incident) { mu.Lock(); incidents = append(incidents, in); mu.Unlock() })
	src := NewSourceWithClient(SourceConfig{ID: "RXA", Name: "Example Hospitals NHS Trust", Timeout: testTimeout}, f, with(testOptions(), func(o *Options) {
		o.Metrics, o.Incidents = m, notify
		o.Breaker.MinRequests, o.Breaker.FailureRatio, o.Breaker.OpenFor = 2, 0.4, time.Hour
	}), discard())
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		src.Search(ctx, "studies", nil)
	}
	fail.Store(true)
	for i := 0; i < 3; i++ { // two failures of five calls (0.4) open the breaker; the third is refused
		src.Search(ctx, "studies", nil)
	}
	st := src.Status()
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"breaker", st.Breaker, "open"},
		{"recent calls", st.Calls, 6},
		{"recent failures", st.Failures, 3},
		{"error rate", st.ErrorRate, 0.5},
		{"last failure is the PACS's, not the breaker's refusal", *st.LastFailure, Failure{Class: ClassServerError, Status: 503}},
		{"latency measured", st.LatencyP50ms > 0, true},
		{"ok calls metric", testutil.ToFloat64(m.calls.WithLabelValues("RXA", "ok")), 3.0},
		{"server errors metric", testutil.ToFloat64(m.calls.WithLabelValues("RXA", "server_error")), 2.0},
		{"refused by breaker metric", testutil.ToFloat64(m.calls.WithLabelValues("RXA", "circuit_open")), 1.0},
		{"breaker gauge", testutil.ToFloat64(m.breaker.WithLabelValues("RXA")), 2.0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(incidents) != 1 || incidents[0].Event != "circuit_open" || incidents[0].Source != "RXA" || incidents[0].Failure == nil || *incidents[0].Failure != (Failure{Class: ClassServerError, Status: 503}) {
		t.Fatalf("incidents %+v; want one circuit_open for RXA naming the last failure", incidents)
	}
}

type notifierFunc func(Incident)

func (f notifierFunc) Notify(in Incident) { f(in) }

// TestWebhook: incidents are POSTed as JSON, failed deliveries are retried, and Notify never
// blocks even when the receiver hangs.
func TestWebhook(t *testing.T) {
	var got []Incident
	var mu sync.Mutex
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if attempts.Add(1) == 1 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		var in Incident
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, in)
		mu.Unlock()
	}))
	defer srv.Close()
	w := NewWebhook(srv.URL, time.Second, 3, func(f Failure) string { return "words for " + f.Label() }, discard())
	w.backoff = time.Millisecond
	w.Notify(Incident{Event: "circuit_open", Source: "RXA", From: "closed", To: "open", Failure: &Failure{Class: ClassTimeout}, Time: time.Now()})
	w.Notify(Incident{Event: "circuit_closed", Source: "RXA", From: "half-open", To: "closed", Time: time.Now()})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.Close(ctx)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].Event != "circuit_open" || got[1].Event != "circuit_closed" || got[0].Reason != "words for timeout" || got[1].Reason != "" {
		t.Fatalf("delivered %+v; want both incidents in order, the first after a retry and with its failure worded", got)
	}

	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hang.Close()
	defer close(release) // runs first: no handler outlives the test
	slow := NewWebhook(hang.URL, 200*time.Millisecond, 0, nil, discard())
	start := time.Now()
	for i := 0; i < 1000; i++ {
		slow.Notify(Incident{Event: "circuit_open", Source: "RXB"})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Notify blocked for %v behind a hanging receiver", d)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	slow.Close(ctx2)
}

package upstream

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// Metrics are the per-source instruments, registered once on the registry the process injects.
// A nil *Metrics records nothing.
type Metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	breaker  *prometheus.GaugeVec
}

// NewMetrics registers the upstream instruments on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nirproxy_upstream_calls_total",
			Help: "Calls to a trust's PACS by outcome: ok, not_found, client_error, server_error, timeout, unreachable, invalid, circuit_open, busy, cancelled.",
		}, []string{"source", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nirproxy_upstream_call_seconds",
			Help:    "Time from sending a request to a trust's PACS until its outcome is known (a stream's end).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"source"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nirproxy_upstream_breaker_state",
			Help: "A trust's circuit breaker: 0 closed, 1 half-open, 2 open.",
		}, []string{"source"}),
	}
	reg.MustRegister(m.calls, m.duration, m.breaker)
	return m
}

func (m *Metrics) setBreaker(id, state string) {
	if m == nil {
		return
	}
	v := map[string]float64{"closed": 0, "half-open": 1, "open": 2}[state]
	m.breaker.WithLabelValues(id).Set(v)
}

// statsWindow is how far back /status looks.
const statsWindow = 5 * time.Minute

// stats keeps the recent outcomes of one source for GET /status: a ring of the last calls.
type stats struct {
	mu       sync.Mutex
	ring     [256]sample
	n, next  int
	inFlight int
	last     *Failure
	lastAt   time.Time
}

type sample struct {
	at      time.Time
	failed  bool
	reached bool // the call reached the PACS (not refused by the breaker or the limiter)
	d       time.Duration
}

func (s *stats) record(at time.Time, err error, d time.Duration) {
	f := Classify(err)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring[s.next] = sample{at: at, failed: f.Failed(), reached: f.Reached(), d: d}
	s.next = (s.next + 1) % len(s.ring)
	if s.n < len(s.ring) {
		s.n++
	}
	// The last failure shown is the last the PACS itself caused, not the breaker's refusals
	// that followed it.
	if f.Failed() && f.Reached() {
		s.last, s.lastAt = &f, at
	}
}

func (s *stats) begin() { s.mu.Lock(); s.inFlight++; s.mu.Unlock() }
func (s *stats) end()   { s.mu.Lock(); s.inFlight--; s.mu.Unlock() }

// Status is what GET /status shows of one source.
type Status struct {
	ID            string  `json:"id"`
	Name          string  `json:"name"`
	Breaker       string  `json:"breaker"`
	Calls         int     `json:"recentCalls"`
	Failures      int     `json:"recentFailures"`
	ErrorRate     float64 `json:"recentErrorRate"`
	LatencyP50ms  float64 `json:"latencyP50ms"`
	LatencyP95ms  float64 `json:"latencyP95ms"`
	InFlight      int     `json:"inFlight"`
	MaxConcurrent int     `json:"maxConcurrent"`
	// LastFailure is the class of the last failure the PACS itself caused (not the breaker's
	// refusals that followed it), nil when there was none; fallback words it for operators.
	LastFailure   *Failure   `json:"-"`
	LastFailureAt *time.Time `json:"lastFailureAt,omitempty"`
}

func (s *stats) snapshot(now time.Time) (calls, failures, inFlight int, p50, p95 time.Duration, last *Failure, lastAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ds []time.Duration
	for i := 0; i < s.n; i++ {
		smp := s.ring[i]
		if now.Sub(smp.at) > statsWindow {
			continue
		}
		calls++
		if smp.failed {
			failures++
		}
		if smp.reached {
			ds = append(ds, smp.d)
		}
	}
	if len(ds) > 0 {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		p50 = ds[len(ds)/2]
		p95 = ds[min(len(ds)-1, len(ds)*95/100)]
	}
	return calls, failures, s.inFlight, p50, p95, s.last, s.lastAt
}

// observedClient is the outermost wrapper: it records every call's outcome and duration, for
// /status and the metrics, including calls refused by the breaker or the concurrency limit.
type observedClient struct {
	next    Client
	id      string
	stats   *stats
	metrics *Metrics
	now     func() time.Time
}

func (o *observedClient) done(start time.Time, err error) {
	d := o.now().Sub(start)
	o.stats.record(o.now(), err, d)
	if o.metrics != nil {
		o.metrics.calls.WithLabelValues(o.id, Classify(err).Label()).Inc()
		if Classify(err).Reached() {
			o.metrics.duration.WithLabelValues(o.id).Observe(d.Seconds())
		}
	}
}

func (o *observedClient) Search(ctx context.Context, path string, query url.Values) ([]dcmjson.Dataset, error) {
	start := o.now()
	o.stats.begin()
	defer o.stats.end()
	out, err := o.next.Search(ctx, path, query)
	o.done(start, err)
	return out, err
}

func (o *observedClient) Fetch(ctx context.Context, path string, query url.Values, accept string) (*http.Response, error) {
	start := o.now()
	o.stats.begin()
	resp, err := o.next.Fetch(ctx, path, query, accept)
	if err != nil {
		o.stats.end()
		o.done(start, err)
		return nil, err
	}
	resp.Body = &closeHook{ReadCloser: resp.Body, ctx: ctx, onClose: func(readErr error) {
		o.stats.end()
		o.done(start, readErr)
	}}
	return resp, nil
}

// closeHook calls onClose once, at Close, with the first read error other than io.EOF (or the
// context's error, when the read failed because the request was cancelled).
//
// Close may be called while a Read is in flight on another goroutine (a read-ahead being
// abandoned, see ReadAhead): the read's error, caused by the Close itself, is not the source's
// failure and is ignored.
type closeHook struct {
	io.ReadCloser
	ctx     context.Context
	onClose func(readErr error)
	once    sync.Once
	mu      sync.Mutex
	closing bool
	readErr error
}

func (c *closeHook) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		c.mu.Lock()
		if c.readErr == nil && !c.closing {
			c.readErr = err
			if ctxErr := c.ctx.Err(); ctxErr != nil && !IsTimeout(err) {
				c.readErr = ctxErr
			}
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *closeHook) Close() error {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	err := c.ReadCloser.Close()
	c.once.Do(func() {
		c.mu.Lock()
		readErr := c.readErr
		c.mu.Unlock()
		c.onClose(readErr)
	})
	return err
}

// markFailed records a failure the caller found in the body's content (a multipart body that
// ends without its closing delimiter, JSON that stops half way), which reading alone cannot
// see, and passes it to the wrappers inside.
func (c *closeHook) markFailed(err error) {
	c.mu.Lock()
	if c.readErr == nil {
		c.readErr = err
	}
	c.mu.Unlock()
	if inner, ok := c.ReadCloser.(interface{ markFailed(error) }); ok {
		inner.markFailed(err)
	}
}

// MarkFailed tells the source that a fetched body was broken in a way only its reader could
// see (bad framing, invalid JSON), so that the call counts as a failure for the breaker,
// /status and the metrics when the body is closed. Call it before Close; it does nothing for a
// body that did not come from a Source.
func MarkFailed(body io.ReadCloser, err error) {
	if h, ok := body.(interface{ markFailed(error) }); ok {
		h.markFailed(err)
	}
}

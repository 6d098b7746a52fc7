package cache

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the cache's instruments. A nil *Metrics records nothing.
type Metrics struct {
	lookups   *prometheus.CounterVec
	coalesced *prometheus.CounterVec
	errors    *prometheus.CounterVec
	backend   prometheus.Gauge
}

// NewMetrics registers the cache instruments on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nirproxy_cache_lookups_total",
			Help: "Cache lookups by kind (search, metadata, rendered, locator) and result: hit (fresh), stale (kept for fallback only), miss, error (the cache failed; counted as a miss).",
		}, []string{"kind", "result"}),
		coalesced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nirproxy_cache_coalesced_total",
			Help: "Requests that waited for an identical request's upstream call instead of making their own.",
		}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nirproxy_cache_backend_errors_total",
			Help: "Failed cache operations by operation and reason (unavailable: breaker open; unsealable: a value that does not decrypt; error: anything else). None fails a request.",
		}, []string{"op", "reason"}),
		backend: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nirproxy_cache_backend_up",
			Help: "1 while the cache backend is in use, 0 while its breaker is open (requests go straight to the trusts).",
		}),
	}
	m.backend.Set(1)
	reg.MustRegister(m.lookups, m.coalesced, m.errors, m.backend)
	return m
}

func (m *Metrics) lookup(kind, result string) {
	if m != nil {
		m.lookups.WithLabelValues(kind, result).Inc()
	}
}

// Coalesced counts a request of the given kind that shared another's upstream call.
func (m *Metrics) Coalesced(kind string) {
	if m != nil {
		m.coalesced.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) backendError(op string, err error) {
	if m == nil {
		return
	}
	reason := "error"
	switch {
	case errors.Is(err, ErrUnavailable):
		reason = "unavailable"
	case errors.Is(err, ErrUnsealable):
		reason = "unsealable"
	}
	m.errors.WithLabelValues(op, reason).Inc()
}

// BackendState records the Redis breaker's state ("closed" is up); pass it as
// RedisOptions.StateChanged.
func (m *Metrics) BackendState(state string) {
	if m == nil {
		return
	}
	if state == "closed" {
		m.backend.Set(1)
	} else {
		m.backend.Set(0)
	}
}

// Metrics returns the Store's metrics (nil when it records none).
func (s *Store) Metrics() *Metrics { return s.metrics }

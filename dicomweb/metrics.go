package dicomweb

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the DICOMweb front's instruments, registered on the registry the process
// injects. A nil *Metrics records nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	partial  *prometheus.CounterVec
	aborts   *prometheus.CounterVec
	stale    *prometheus.CounterVec
}

// NewMetrics registers the front's instruments on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nirproxy_http_requests_total",
			Help: "Client requests by route template and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nirproxy_http_request_seconds",
			Help:    "Time to answer a client request, to the end of its body.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"route"}),
		partial: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nirproxy_incomplete_answers_total",
			Help: "Answers that could not include every trust: refused (503), warned (200 with Warning) or partial (206).",
		}, []string{"kind", "decision"}),
		aborts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nirproxy_stream_aborts_total",
			Help: "Responses cut off mid-stream, by trust and cause: upstream (the trust's stream broke), client (our client left) or client_timeout (our client stopped reading for clientWriteTimeout).",
		}, []string{"source", "cause"}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nirproxy_stale_answers_total",
			Help: "Answers in which a trust that could not answer was stood in for by its stale cached copy (marked with Warning 110), by kind: search or metadata.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.requests, m.duration, m.partial, m.aborts, m.stale)
	return m
}

func (m *Metrics) request(route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

func (m *Metrics) incompleteAnswer(kind string, status int) {
	if m == nil {
		return
	}
	decision := "warned"
	switch status {
	case http.StatusServiceUnavailable:
		decision = "refused"
	case http.StatusPartialContent:
		decision = "partial"
	}
	m.partial.WithLabelValues(kind, decision).Inc()
}

func (m *Metrics) staleAnswer(kind string) {
	if m != nil {
		m.stale.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) abort(source, cause string) {
	if m == nil {
		return
	}
	m.aborts.WithLabelValues(source, cause).Inc()
}

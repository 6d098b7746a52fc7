package forward

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the audit forwarding instruments, registered once on the registry the process
// injects and given to New in Options.Metrics. A nil *Metrics records nothing. The gauges are
// read from the Forwarder's sinks when scraped, so a sink that is down or stopped still shows
// its lag growing; one Forwarder at a time may use a Metrics (a closed one leaves it).
type Metrics struct {
	deliveries *prometheus.CounterVec
	failures   *prometheus.CounterVec
	gauges     *sinkGauges
}

// NewMetrics registers the audit forwarding instruments on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nirproxy_audit_forward_deliveries_total",
			Help: "Audit records a sink took (Send succeeded); a record sent again after a restart counts again.",
		}, []string{"sink"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nirproxy_audit_forward_failures_total",
			Help: "Failed attempts to forward an audit record, by sink and class: rejected, timeout, retryable, undecodable, spool (reading the spool), ack (acknowledging a delivered record).",
		}, []string{"sink", "class"}),
		gauges: &sinkGauges{
			feeds: map[*feed]bool{},
			lag: prometheus.NewDesc("nirproxy_audit_forward_lag_records",
				"Audit records on disk that a sink has not acknowledged.", []string{"sink"}, nil),
			age: prometheus.NewDesc("nirproxy_audit_forward_oldest_age_seconds",
				"How long ago the oldest audit record a sink has not acknowledged was appended (0 when it has all).", []string{"sink"}, nil),
			lagging: prometheus.NewDesc("nirproxy_audit_forward_lagging",
				"1 while a sink is lagging (past MaxLag or MaxLagAge, until back within half of both), else 0.", []string{"sink"}, nil),
			stopped: prometheus.NewDesc("nirproxy_audit_forward_stopped",
				"1 while a sink is stopped at a record it rejected or that does not decode, else 0.", []string{"sink"}, nil),
		},
	}
	reg.MustRegister(m.deliveries, m.failures, m.gauges)
	return m
}

func (m *Metrics) delivery(sink string) {
	if m != nil {
		m.deliveries.WithLabelValues(sink).Inc()
	}
}

func (m *Metrics) failure(sink, class string) {
	if m != nil {
		m.failures.WithLabelValues(sink, class).Inc()
	}
}

// track exports the gauges of fd until untrack.
func (m *Metrics) track(fd *feed) {
	if m != nil {
		m.gauges.mu.Lock()
		m.gauges.feeds[fd] = true
		m.gauges.mu.Unlock()
	}
}

func (m *Metrics) untrack(fd *feed) {
	if m != nil {
		m.gauges.mu.Lock()
		delete(m.gauges.feeds, fd)
		m.gauges.mu.Unlock()
	}
}

// sinkGauges collects each tracked sink's gauges from its status when scraped.
type sinkGauges struct {
	mu                         sync.Mutex
	feeds                      map[*feed]bool
	lag, age, lagging, stopped *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (g *sinkGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.lag
	ch <- g.age
	ch <- g.lagging
	ch <- g.stopped
}

// Collect implements prometheus.Collector.
func (g *sinkGauges) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for fd := range g.feeds {
		st := fd.status()
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, fd.name)
		}
		gauge(g.lag, float64(st.Lag))
		gauge(g.age, st.age(fd.opts.Clock()).Seconds())
		gauge(g.lagging, flag(st.Lagging))
		gauge(g.stopped, flag(st.State == StateStopped))
	}
}

// flag is 1 for true and 0 for false.
func flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

package upstream

import (
	"log/slog"
	"time"
)

// Options are the per-source protections applied by NewSource, and what they report to.
type Options struct {
	HTTP    HTTPOptions
	Breaker BreakerOptions
	// MaxConcurrent bounds the requests in flight to the source (default 32).
	MaxConcurrent int
	// Metrics receives per-source instruments; nil records none.
	Metrics *Metrics
	// Incidents receives breaker state changes; nil logs them only.
	Incidents Notifier
	// Cache, when its Store is set, keeps copies of the source's answers (see CacheOptions).
	Cache CacheOptions
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// NewSource assembles a source's client, innermost first, in this visible order:
//
//  1. HTTP with retries (retries stay under the breaker, so one logical call counts once) and
//     the header and idle time-outs;
//  2. the circuit breaker, which sees only calls that reach the PACS;
//  3. the concurrency limit, so calls waiting for a slot do not count against the breaker;
//  4. observation (stats for /status, metrics), which sees every call that reaches for the
//     PACS and its outcome;
//  5. the cache (when configured), outermost: a fresh copy answers without touching the
//     breaker or the statistics, identical concurrent searches share one call, and a failure
//     can be answered with a stale copy for callers that accept one (AcceptStale).
func NewSource(cfg SourceConfig, opts Options, log *slog.Logger) *Source {
	if opts.HTTP.HeaderTimeout == 0 {
		opts.HTTP.HeaderTimeout = cfg.Timeout
	}
	return assemble(cfg, newHTTPClient(cfg, opts.HTTP, log), opts, log)
}

// NewSourceWithClient wraps an already built Client (a fake in tests, or a client assembled
// elsewhere) with the same protections as NewSource.
func NewSourceWithClient(cfg SourceConfig, c Client, opts Options, log *slog.Logger) *Source {
	return assemble(cfg, c, opts, log)
}

func assemble(cfg SourceConfig, c Client, opts Options, log *slog.Logger) *Source {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 32
	}
	src := &Source{SourceConfig: cfg, stats: &stats{}, maxConcurrent: opts.MaxConcurrent}
	onChange := func(from, to string) {
		opts.Metrics.setBreaker(cfg.ID, to)
		if opts.Incidents != nil {
			_, _, _, _, _, last, _ := src.stats.snapshot(opts.Now())
			opts.Incidents.Notify(Incident{Event: incidentEvent(to), Source: cfg.ID, SourceName: cfg.Name, From: from, To: to, Failure: last, Time: opts.Now()})
		}
	}
	src.health = newHealth(cfg.ID, opts.Breaker, log, onChange)
	opts.Metrics.setBreaker(cfg.ID, "closed")
	c = &breakerClient{next: c, health: src.health}
	// Waiting for a slot is bounded like waiting for headers.
	maxWait := cfg.Timeout
	if maxWait <= 0 {
		maxWait = 10 * time.Second
	}
	c = &limitClient{next: c, id: cfg.ID, slots: make(chan struct{}, opts.MaxConcurrent), maxWait: maxWait}
	c = &observedClient{next: c, id: cfg.ID, stats: src.stats, metrics: opts.Metrics, now: opts.Now}
	if opts.Cache.Store != nil {
		c = newCachedClient(c, cfg, opts.Cache)
	}
	src.Client = c
	src.now = opts.Now
	return src
}

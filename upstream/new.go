package upstream

import (
	"fmt"
	"log/slog"
	"time"
)

// Options are the per-source protections applied by NewSource, and what they report to. HTTP,
// Breaker and MaxConcurrent are required: the package has no defaults of its own, cmd/nirproxy's
// configuration holds them.
type Options struct {
	HTTP    HTTPOptions
	Breaker BreakerOptions
	// MaxConcurrent bounds the requests in flight to the source.
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
//
// It panics, naming the field, if cfg.Timeout or a required option is missing or out of range:
// that is a wiring mistake, since every value comes from a validated configuration.
func NewSource(cfg SourceConfig, opts Options, log *slog.Logger) *Source {
	mustBeComplete(cfg, opts.HTTP.check())
	return assemble(cfg, newHTTPClient(cfg, opts.HTTP, log), opts, log)
}

// NewSourceWithClient wraps an already built Client (a fake in tests, or a client assembled
// elsewhere) with the same protections as NewSource; opts.HTTP is not used. It panics like
// NewSource.
func NewSourceWithClient(cfg SourceConfig, c Client, opts Options, log *slog.Logger) *Source {
	return assemble(cfg, c, opts, log)
}

// mustBeComplete panics with err, naming the source, unless err is nil.
func mustBeComplete(cfg SourceConfig, err error) {
	if err != nil {
		panic(fmt.Sprintf("upstream: new source %s: %v", cfg.ID, err))
	}
}

// check names the first of cfg's time-out and o's settings (but o.HTTP) that is missing or out
// of range.
func (o Options) check(cfg SourceConfig) error {
	switch {
	case cfg.Timeout <= 0:
		return fmt.Errorf("SourceConfig.Timeout is %v; it must be positive", cfg.Timeout)
	case o.MaxConcurrent <= 0:
		return fmt.Errorf("Options.MaxConcurrent is %d; it must be positive", o.MaxConcurrent)
	}
	if err := o.Breaker.check(); err != nil {
		return err
	}
	return o.Cache.check()
}

// assemble wraps c in the protections of opts (see NewSource).
func assemble(cfg SourceConfig, c Client, opts Options, log *slog.Logger) *Source {
	mustBeComplete(cfg, opts.check(cfg))
	if opts.Now == nil {
		opts.Now = time.Now
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
	c = &limitClient{next: c, id: cfg.ID, slots: make(chan struct{}, opts.MaxConcurrent), maxWait: cfg.Timeout}
	c = &observedClient{next: c, id: cfg.ID, stats: src.stats, metrics: opts.Metrics, now: opts.Now}
	if opts.Cache.Store != nil {
		c = newCachedClient(c, cfg, opts.Cache)
	}
	src.Client = c
	src.now = opts.Now
	return src
}

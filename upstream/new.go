package upstream

import (
	"log/slog"
)

// Options are the per-source protections applied by NewSource.
type Options struct {
	HTTP    HTTPOptions
	Breaker BreakerOptions
}

// NewSource assembles a source's client, innermost first: HTTP with retries (retries stay
// under the breaker, so one logical call counts once), then the circuit breaker.
func NewSource(cfg SourceConfig, opts Options, log *slog.Logger) *Source {
	if opts.HTTP.HeaderTimeout == 0 {
		opts.HTTP.HeaderTimeout = cfg.Timeout
	}
	h := newHealth(cfg.ID, opts.Breaker, log)
	var c Client = newHTTPClient(cfg, opts.HTTP, log)
	c = &breakerClient{next: c, health: h}
	return &Source{SourceConfig: cfg, Client: c, health: h}
}

// NewSourceWithClient wraps an already built Client (a fake in tests, or a client assembled
// elsewhere) with the source's breaker.
func NewSourceWithClient(cfg SourceConfig, c Client, opts Options, log *slog.Logger) *Source {
	h := newHealth(cfg.ID, opts.Breaker, log)
	return &Source{SourceConfig: cfg, Client: &breakerClient{next: c, health: h}, health: h}
}

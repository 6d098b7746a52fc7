package upstream

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// BreakerOptions tunes a source's circuit breaker.
type BreakerOptions struct {
	// ConsecutiveFailures opens the breaker (default 5).
	ConsecutiveFailures uint32
	// OpenFor is how long the breaker stays open before a half-open probe (default 30 s).
	OpenFor time.Duration
	// HalfOpenProbes is how many requests are let through while half-open (default 1).
	HalfOpenProbes uint32
}

func (o BreakerOptions) withDefaults() BreakerOptions {
	if o.ConsecutiveFailures == 0 {
		o.ConsecutiveFailures = 5
	}
	if o.OpenFor <= 0 {
		o.OpenFor = 30 * time.Second
	}
	if o.HalfOpenProbes == 0 {
		o.HalfOpenProbes = 1
	}
	return o
}

// health is the breaker shared by a source's searches and fetches.
type health struct {
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
}

func (h *health) state() string { return h.cb.State().String() }

// breakerClient wraps a Client with the source's breaker. Searches are reported when their
// answer is decoded; fetches when the caller closes the body, so a stream that breaks half
// way counts as a failure and a client hanging up counts as nothing.
type breakerClient struct {
	next   Client
	health *health
}

func newHealth(id string, opts BreakerOptions, log *slog.Logger, onChange func(from, to string)) *health {
	opts = opts.withDefaults()
	st := gobreaker.Settings{
		Name:        id,
		MaxRequests: opts.HalfOpenProbes,
		Timeout:     opts.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= opts.ConsecutiveFailures },
		// OnStateChange runs under the breaker's lock: log and return.
		OnStateChange: func(name string, from, to gobreaker.State) {
			log.Warn("source circuit breaker changed state", "source", name, "from", from.String(), "to", to.String())
			if onChange != nil {
				onChange(from.String(), to.String())
			}
		},
		IsSuccessful: func(err error) bool { return !countsAsFailure(err) },
		IsExcluded:   IsClientGone,
	}
	return &health{cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](st)}
}

func (b *breakerClient) allow() (func(error), error) {
	done, err := b.health.cb.Allow()
	if err != nil {
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			return nil, ErrCircuitOpen
		}
		return nil, err
	}
	return done, nil
}

func (b *breakerClient) Search(ctx context.Context, path string, query url.Values) ([]dcmjson.Dataset, error) {
	done, err := b.allow()
	if err != nil {
		return nil, err
	}
	out, err := b.next.Search(ctx, path, query)
	done(err)
	return out, err
}

func (b *breakerClient) Fetch(ctx context.Context, path string, query url.Values, accept string) (*http.Response, error) {
	done, err := b.allow()
	if err != nil {
		return nil, err
	}
	resp, err := b.next.Fetch(ctx, path, query, accept)
	if err != nil {
		done(err)
		return nil, err
	}
	// The outcome is reported after the copy: a stream that breaks half way is a failure, a
	// caller that stops reading early for its own reasons is not.
	resp.Body = &closeHook{ReadCloser: resp.Body, ctx: ctx, onClose: done}
	return resp, nil
}

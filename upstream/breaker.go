package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// BreakerOptions tunes a source's circuit breaker. Every field is required (cmd/nirproxy's
// configuration holds the defaults); NewSource refuses options with one missing.
//
// The breaker opens on a failure ratio, never on a short run of failures: at least MinRequests
// calls must have ended within the last Window, and at least FailureRatio of them failed. So a
// few failures a client provokes (a query the trust answers with 500) cannot open it while the
// trust serves others. A trust that cannot be reached at all opens it sooner, whatever the
// traffic: ConsecutiveUnreachable calls in a row that could not connect (see IsUnreachable),
// which no client can provoke, since nothing of its request reached the trust.
type BreakerOptions struct {
	// Window is how far back outcomes count, as a rolling window of ten buckets.
	Window time.Duration
	// MinRequests is the fewest calls ended within Window before the ratio may open the
	// breaker.
	MinRequests uint32
	// FailureRatio is the share of failed calls within Window that opens the breaker, in
	// (0, 1].
	FailureRatio float64
	// ConsecutiveUnreachable is how many calls in a row that could not connect to the source
	// open the breaker, however few calls the window holds.
	ConsecutiveUnreachable uint32
	// OpenFor is how long the breaker stays open before a half-open probe.
	OpenFor time.Duration
}

// breakerBuckets is how many buckets the rolling window is cut into: outcomes leave the window
// a tenth of it at a time.
const breakerBuckets = 10

// halfOpenProbes is how many calls a half-open breaker lets through: one probe decides.
const halfOpenProbes = 1

// check names the first field of o that is missing or out of range.
func (o BreakerOptions) check() error {
	switch {
	case o.Window <= 0:
		return fmt.Errorf("BreakerOptions.Window is %v; it must be positive", o.Window)
	case o.MinRequests == 0:
		return errors.New("BreakerOptions.MinRequests is 0; it must be at least 1")
	case !(o.FailureRatio > 0 && o.FailureRatio <= 1):
		return fmt.Errorf("BreakerOptions.FailureRatio is %v; it must be above 0 and at most 1", o.FailureRatio)
	case o.ConsecutiveUnreachable == 0:
		return errors.New("BreakerOptions.ConsecutiveUnreachable is 0; it must be at least 1")
	case o.OpenFor <= 0:
		return fmt.Errorf("BreakerOptions.OpenFor is %v; it must be positive", o.OpenFor)
	}
	return nil
}

// readyToTrip is the rule that opens a closed breaker, given the window's counts and the
// current run of calls that could not connect. The ratio is of calls that ended (successes and
// failures), not of calls started: calls still in flight neither dilute nor count.
func (o BreakerOptions) readyToTrip(c gobreaker.Counts, unreachable uint32) bool {
	if unreachable >= o.ConsecutiveUnreachable {
		return true
	}
	ended := c.TotalSuccesses + c.TotalFailures
	return ended >= o.MinRequests && float64(c.TotalFailures) >= o.FailureRatio*float64(ended)
}

// health is the breaker shared by a source's searches and fetches.
type health struct {
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
	// unreachable is the current run of calls that could not connect, ended by any call that
	// reached the source (whatever it answered).
	unreachable atomic.Uint32
}

func (h *health) state() string { return h.cb.State().String() }

// observe updates the run of calls that could not connect with one call's outcome. It runs
// before the breaker hears of the outcome, so that readyToTrip sees the run including it.
func (h *health) observe(err error) {
	switch {
	case IsClientGone(err):
		// Neutral: says nothing of the source.
	case IsUnreachable(err):
		h.unreachable.Add(1)
	default:
		h.unreachable.Store(0)
	}
}

// breakerClient wraps a Client with the source's breaker. Searches are reported when their
// answer is decoded; fetches when the caller closes the body, so a stream that breaks half
// way counts as a failure and a client hanging up counts as nothing.
type breakerClient struct {
	next   Client
	health *health
}

// newHealth is the breaker of source id; opts must be complete (see check).
func newHealth(id string, opts BreakerOptions, log *slog.Logger, onChange func(from, to string)) *health {
	h := &health{}
	st := gobreaker.Settings{
		Name:         id,
		MaxRequests:  halfOpenProbes,
		Interval:     opts.Window,
		BucketPeriod: max(opts.Window/breakerBuckets, time.Millisecond),
		Timeout:      opts.OpenFor,
		ReadyToTrip:  func(c gobreaker.Counts) bool { return opts.readyToTrip(c, h.unreachable.Load()) },
		// OnStateChange runs under the breaker's lock: log and return.
		OnStateChange: func(name string, from, to gobreaker.State) {
			log.Warn("source circuit breaker changed state", "source", name, "from", from.String(), "to", to.String())
			if onChange != nil {
				onChange(from.String(), to.String())
			}
		},
		IsSuccessful: func(err error) bool { return !Classify(err).CountsAgainstBreaker() },
		IsExcluded:   IsClientGone,
	}
	h.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
	return h
}

// allow asks the breaker for a call; done reports the call's outcome, once.
func (b *breakerClient) allow() (done func(error), err error) {
	report, err := b.health.cb.Allow()
	if err != nil {
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			return nil, ErrCircuitOpen
		}
		return nil, err
	}
	return func(err error) {
		b.health.observe(err)
		report(err)
	}, nil
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

package cache

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Flight coalesces concurrent calls with the same key into one: the first caller starts fn,
// and every caller that arrives before it returns waits for the same result. It is
// golang.org/x/sync/singleflight with contexts:
//
//   - fn runs under a context detached from the first caller's cancellation (but with its
//     deadline), so one clinician closing a tab does not fail the others waiting on the call;
//   - each caller stops waiting when its own context ends, with its context's error;
//   - fn's context is cancelled once every waiter has gone, so an abandoned call stops;
//   - a first caller without a deadline gives fn one of maxFlight (5 minutes), so no call
//     outlives every request for ever;
//   - a panic in fn is every waiter's error, not the end of the process.
//
// Values are shared between callers: T must be safe to share (bytes that each caller decodes
// on its own, for example). The zero Flight is ready to use and safe for concurrent use.
type Flight[T any] struct {
	mu    sync.Mutex
	calls map[string]*flightCall[T]
}

// maxFlight bounds a coalesced call whose first caller has no deadline.
const maxFlight = 5 * time.Minute

type flightCall[T any] struct {
	done    chan struct{}
	val     T
	err     error
	waiters int
	cancel  context.CancelFunc
}

// Do runs fn once for all concurrent callers with key. shared reports whether the result came
// from another caller's call.
func (f *Flight[T]) Do(ctx context.Context, key string, fn func(ctx context.Context) (T, error)) (v T, shared bool, err error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flightCall[T]{}
	}
	c, ok := f.calls[key]
	if ok {
		c.waiters++
		f.mu.Unlock()
		return f.wait(ctx, key, c, true)
	}
	fctx := context.WithoutCancel(ctx)
	var cancel context.CancelFunc
	if dl, ok := ctx.Deadline(); ok {
		fctx, cancel = context.WithDeadline(fctx, dl)
	} else {
		fctx, cancel = context.WithTimeout(fctx, maxFlight)
	}
	c = &flightCall[T]{done: make(chan struct{}), waiters: 1, cancel: cancel}
	f.calls[key] = c
	f.mu.Unlock()
	go func() {
		defer cancel()
		func() {
			// fn runs on its own goroutine, beyond the HTTP server's recovery: a panic
			// would end the process, so it becomes every waiter's error instead.
			defer func() {
				if p := recover(); p != nil {
					c.err = fmt.Errorf("coalesced call panicked: %v", p)
				}
			}()
			c.val, c.err = fn(fctx)
		}()
		f.mu.Lock()
		if f.calls[key] == c {
			delete(f.calls, key)
		}
		f.mu.Unlock()
		close(c.done)
	}()
	return f.wait(ctx, key, c, false)
}

func (f *Flight[T]) wait(ctx context.Context, key string, c *flightCall[T], shared bool) (T, bool, error) {
	select {
	case <-c.done:
		return c.val, shared, c.err
	case <-ctx.Done():
		f.mu.Lock()
		c.waiters--
		if c.waiters == 0 {
			// Nobody wants the answer any more: stop the call, and let the next caller
			// start a new one rather than join a cancelled one.
			c.cancel()
			if f.calls[key] == c {
				delete(f.calls, key)
			}
		}
		f.mu.Unlock()
		var zero T
		return zero, shared, ctx.Err()
	}
}

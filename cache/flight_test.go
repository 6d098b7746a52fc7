package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitTimeout bounds every wait in these tests; a call that should return promptly returns
// well within it.
const waitTimeout = 5 * time.Second

// flightProbe is an fn for Flight.Do that counts its calls, hands its context to the test and
// returns what it is told once released.
type flightProbe struct {
	calls   atomic.Int32
	started chan context.Context
	release chan struct{}
	val     string
	err     error
}

func newFlightProbe(val string, err error) *flightProbe {
	return &flightProbe{started: make(chan context.Context, 16), release: make(chan struct{}), val: val, err: err}
}

func (p *flightProbe) fn(ctx context.Context) (string, error) {
	p.calls.Add(1)
	p.started <- ctx
	<-p.release
	return p.val, p.err
}

// fnContext waits for the probe's next call to start and returns its context.
func (p *flightProbe) fnContext(t *testing.T) context.Context {
	t.Helper()
	select {
	case ctx := <-p.started:
		return ctx
	case <-time.After(waitTimeout):
		t.Fatal("fn did not start")
		return nil
	}
}

type flightResult struct {
	val    string
	shared bool
	err    error
}

// doAsync calls f.Do in a goroutine and returns where its result will arrive.
func doAsync(ctx context.Context, f *Flight[string], key string, fn func(context.Context) (string, error)) <-chan flightResult {
	out := make(chan flightResult, 1)
	go func() {
		v, shared, err := f.Do(ctx, key, fn)
		out <- flightResult{v, shared, err}
	}()
	return out
}

func receive(t *testing.T, ch <-chan flightResult) flightResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitTimeout):
		t.Fatal("Do did not return")
		return flightResult{}
	}
}

// waitWaiters waits until n callers wait on the call under key.
func waitWaiters(t *testing.T, f *Flight[string], key string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		f.mu.Lock()
		got := 0
		if c := f.calls[key]; c != nil {
			got = c.waiters
		}
		f.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait on %q; want %d", got, key, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFlight(t *testing.T) {
	bg := context.Background()
	errBoom := errors.New("upstream refused")
	tests := []struct {
		name string
		run  func(t *testing.T, f *Flight[string])
	}{
		{name: "concurrent callers with one key share one call", run: func(t *testing.T, f *Flight[string]) {
			const n = 20
			p := newFlightProbe("answer", nil)
			var results []<-chan flightResult
			for range n {
				results = append(results, doAsync(bg, f, "k", p.fn))
			}
			p.fnContext(t)
			waitWaiters(t, f, "k", n)
			close(p.release)
			unshared := 0
			for _, ch := range results {
				r := receive(t, ch)
				if r.err != nil || r.val != "answer" {
					t.Errorf("Do = %q, %v; want answer, nil", r.val, r.err)
				}
				if !r.shared {
					unshared++
				}
			}
			if unshared != 1 {
				t.Errorf("%d callers got shared = false; want exactly 1 (the one whose call ran)", unshared)
			}
			if c := p.calls.Load(); c != 1 {
				t.Errorf("fn ran %d times; want 1", c)
			}
		}},
		{name: "errors are shared too", run: func(t *testing.T, f *Flight[string]) {
			const n = 5
			p := newFlightProbe("", errBoom)
			var results []<-chan flightResult
			for range n {
				results = append(results, doAsync(bg, f, "k", p.fn))
			}
			p.fnContext(t)
			waitWaiters(t, f, "k", n)
			close(p.release)
			for _, ch := range results {
				if r := receive(t, ch); !errors.Is(r.err, errBoom) {
					t.Errorf("Do error = %v; want %v", r.err, errBoom)
				}
			}
			if c := p.calls.Load(); c != 1 {
				t.Errorf("fn ran %d times; want 1", c)
			}
		}},
		{name: "different keys run separately", run: func(t *testing.T, f *Flight[string]) {
			a, b := newFlightProbe("a", nil), newFlightProbe("b", nil)
			ra, rb := doAsync(bg, f, "a", a.fn), doAsync(bg, f, "b", b.fn)
			// Both calls are under way at once: neither waits for the other.
			a.fnContext(t)
			b.fnContext(t)
			close(a.release)
			close(b.release)
			if r := receive(t, ra); r.val != "a" || r.shared || r.err != nil {
				t.Errorf("Do(a) = %+v; want a, unshared", r)
			}
			if r := receive(t, rb); r.val != "b" || r.shared || r.err != nil {
				t.Errorf("Do(b) = %+v; want b, unshared", r)
			}
		}},
		{name: "a waiter that leaves returns at once while others get the value", run: func(t *testing.T, f *Flight[string]) {
			p := newFlightProbe("answer", nil)
			first := doAsync(bg, f, "k", p.fn)
			fnCtx := p.fnContext(t)
			lctx, leave := context.WithCancel(bg)
			leaver := doAsync(lctx, f, "k", p.fn)
			waitWaiters(t, f, "k", 2)
			leave()
			if r := receive(t, leaver); !errors.Is(r.err, context.Canceled) || r.val != "" || !r.shared {
				t.Errorf("Do of the leaver = %+v; want its context's error, shared", r)
			}
			if err := fnCtx.Err(); err != nil {
				t.Errorf("fn's context ended (%v) while a caller still waits", err)
			}
			close(p.release)
			if r := receive(t, first); r.val != "answer" || r.err != nil {
				t.Errorf("Do of the remaining caller = %+v; want answer", r)
			}
		}},
		{name: "a waiter whose deadline passes returns its context's error", run: func(t *testing.T, f *Flight[string]) {
			p := newFlightProbe("answer", nil)
			first := doAsync(bg, f, "k", p.fn)
			p.fnContext(t)
			dctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
			defer cancel()
			if r := receive(t, doAsync(dctx, f, "k", p.fn)); !errors.Is(r.err, context.DeadlineExceeded) {
				t.Errorf("Do with a short deadline = %+v; want DeadlineExceeded", r)
			}
			close(p.release)
			if r := receive(t, first); r.val != "answer" || r.err != nil {
				t.Errorf("Do of the first caller = %+v; want answer", r)
			}
		}},
		{name: "fn's context outlives the first caller", run: func(t *testing.T, f *Flight[string]) {
			p := newFlightProbe("answer", nil)
			fctx, leave := context.WithCancel(bg)
			first := doAsync(fctx, f, "k", p.fn)
			fnCtx := p.fnContext(t)
			second := doAsync(bg, f, "k", p.fn)
			waitWaiters(t, f, "k", 2)
			leave()
			if r := receive(t, first); !errors.Is(r.err, context.Canceled) || r.shared {
				t.Errorf("Do of the first caller = %+v; want context.Canceled, unshared", r)
			}
			if err := fnCtx.Err(); err != nil {
				t.Errorf("fn's context ended (%v) when only the first caller left", err)
			}
			close(p.release)
			if r := receive(t, second); r.val != "answer" || r.err != nil || !r.shared {
				t.Errorf("Do of the second caller = %+v; want answer, shared", r)
			}
		}},
		{name: "fn's context is cancelled when every waiter has left", run: func(t *testing.T, f *Flight[string]) {
			p := newFlightProbe("answer", nil)
			defer close(p.release)
			c1, leave1 := context.WithCancel(bg)
			c2, leave2 := context.WithCancel(bg)
			r1 := doAsync(c1, f, "k", p.fn)
			fnCtx := p.fnContext(t)
			r2 := doAsync(c2, f, "k", p.fn)
			waitWaiters(t, f, "k", 2)
			leave1()
			receive(t, r1)
			leave2()
			receive(t, r2)
			select {
			case <-fnCtx.Done():
				if !errors.Is(fnCtx.Err(), context.Canceled) {
					t.Errorf("fn's context error = %v; want context.Canceled", fnCtx.Err())
				}
			case <-time.After(waitTimeout):
				t.Fatal("fn's context not cancelled after every waiter left")
			}
		}},
		{name: "a caller after every waiter left starts a new call", run: func(t *testing.T, f *Flight[string]) {
			old := newFlightProbe("old", nil)
			cctx, leave := context.WithCancel(bg)
			r := doAsync(cctx, f, "k", old.fn)
			old.fnContext(t)
			f.mu.Lock()
			abandoned := f.calls["k"]
			f.mu.Unlock()
			leave()
			receive(t, r)
			fresh := newFlightProbe("new", nil)
			next := doAsync(bg, f, "k", fresh.fn)
			fresh.fnContext(t)
			close(fresh.release)
			if got := receive(t, next); got.val != "new" || got.shared || got.err != nil {
				t.Errorf("Do after the abandoned call = %+v; want new, unshared", got)
			}
			// The abandoned call finishing must not remove a newer call under the same key.
			newer := newFlightProbe("newer", nil)
			pending := doAsync(bg, f, "k", newer.fn)
			newer.fnContext(t)
			close(old.release)
			<-abandoned.done
			joined := doAsync(bg, f, "k", newer.fn)
			waitWaiters(t, f, "k", 2)
			close(newer.release)
			for _, ch := range []<-chan flightResult{pending, joined} {
				if got := receive(t, ch); got.val != "newer" {
					t.Errorf("Do = %+v; want newer", got)
				}
			}
			if c := newer.calls.Load(); c != 1 {
				t.Errorf("newest fn ran %d times; want 1", c)
			}
		}},
		{name: "a call after completion runs fn again", run: func(t *testing.T, f *Flight[string]) {
			var calls atomic.Int32
			fn := func(context.Context) (string, error) { calls.Add(1); return "v", nil }
			for i := range 3 {
				v, shared, err := f.Do(bg, "k", fn)
				if v != "v" || shared || err != nil {
					t.Fatalf("Do #%d = %q, %v, %v; want v, false, nil", i+1, v, shared, err)
				}
			}
			if c := calls.Load(); c != 3 {
				t.Fatalf("fn ran %d times for 3 sequential calls; want 3", c)
			}
		}},
		{name: "fn's context carries the first caller's deadline and values", run: func(t *testing.T, f *Flight[string]) {
			type ctxKey struct{}
			deadline := time.Now().Add(time.Hour)
			dctx, cancel := context.WithDeadline(context.WithValue(bg, ctxKey{}, "request-id"), deadline)
			defer cancel()
			var (
				got   time.Time
				ok    bool
				value any
			)
			_, _, err := f.Do(dctx, "k", func(ctx context.Context) (string, error) {
				got, ok = ctx.Deadline()
				value = ctx.Value(ctxKey{})
				return "", nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !ok || !got.Equal(deadline) {
				t.Errorf("fn's deadline = %v, %v; want %v", got, ok, deadline)
			}
			if value != "request-id" {
				t.Errorf("fn's context value = %v; want the caller's request-id", value)
			}
		}},
		{name: "fn's context ends at the first caller's deadline", run: func(t *testing.T, f *Flight[string]) {
			dctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
			defer cancel()
			_, _, err := f.Do(dctx, "k", func(ctx context.Context) (string, error) {
				<-ctx.Done()
				return "", ctx.Err()
			})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Do = %v; want DeadlineExceeded", err)
			}
		}},
		{name: "fn's context has a deadline when the caller's has none", run: func(t *testing.T, f *Flight[string]) {
			var ok bool
			f.Do(bg, "k", func(ctx context.Context) (string, error) {
				_, ok = ctx.Deadline()
				return "", nil
			})
			if !ok {
				t.Fatal("fn's context has no deadline; an abandoned-by-nobody call could run forever")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, &Flight[string]{})
		})
	}
}

// TestFlightStress runs many callers over few keys, for the race detector.
func TestFlightStress(t *testing.T) {
	var f Flight[int]
	var wg sync.WaitGroup
	keys := []string{"a", "b", "c"}
	for i := range 200 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if i%5 == 0 {
				cancel()
			}
			v, _, err := f.Do(ctx, keys[i%len(keys)], func(ctx context.Context) (int, error) {
				time.Sleep(time.Millisecond)
				return len(keys), ctx.Err()
			})
			if err == nil && v != len(keys) {
				t.Errorf("Do = %d; want %d", v, len(keys))
			}
		})
	}
	wg.Wait()
}

func TestFlightPanicIsAnError(t *testing.T) {
	var f Flight[int]
	_, _, err := f.Do(context.Background(), "k", func(context.Context) (int, error) { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Fatalf("err = %v; want the panic as an error", err)
	}
	v, _, err := f.Do(context.Background(), "k", func(context.Context) (int, error) { return 7, nil })
	if err != nil || v != 7 {
		t.Fatalf("after a panic: %d, %v; want a new call to run", v, err)
	}
}

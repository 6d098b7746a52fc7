package forward

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// waitLimit bounds every wait for an event; reaching it fails the test.
const waitLimit = 10 * time.Second

// fakeClock is a clock that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// openSpool opens a spool in a new directory, closed when the test ends.
func openSpool(t *testing.T, now func() time.Time) *spool.Spool {
	t.Helper()
	return openSpoolIn(t, filepath.Join(t.TempDir(), "spool"), now)
}

// openSpoolIn opens the spool in dir, closed when the test ends.
func openSpoolIn(t *testing.T, dir string, now func() time.Time) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 1 << 20, MaxBytes: 1 << 30, Clock: now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// requestID is the request id of the test event i.
func requestID(i int) string { return fmt.Sprintf("req-%03d", i) }

// requestIDs are the request ids of the test events from to to-1.
func requestIDs(from, to int) []string {
	var ids []string
	for i := from; i < to; i++ {
		ids = append(ids, requestID(i))
	}
	return ids
}

// appendEvents appends the test events from to to-1.
func appendEvents(t *testing.T, sp *spool.Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		b, err := audit.Encode(audit.Event{
			RequestID: requestID(i), Action: audit.ActionSearch, Resource: "/dicom-web/studies",
			PatientID: "9434765919", Outcome: audit.OutcomeSuccess, Status: 200,
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sp.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeSink stores the request ids of the events sent to it.
type fakeSink struct {
	name string
	// before, when set, fails a Send before the sink stores the record.
	before func(ctx context.Context, e audit.Event) error
	// after, when set, fails a Send after the sink stored the record: its answer is lost.
	after func(ctx context.Context, e audit.Event) error

	mu       sync.Mutex
	attempts []string // every Send's request id
	got      []string // every stored request id, in the order stored
	stored   chan struct{}
}

func newSink(name string) *fakeSink {
	return &fakeSink{name: name, stored: make(chan struct{}, 1000)}
}

func (s *fakeSink) Name() string { return s.name }

func (s *fakeSink) Send(ctx context.Context, rec spool.Record, e audit.Event) error {
	s.mu.Lock()
	s.attempts = append(s.attempts, e.RequestID)
	s.mu.Unlock()
	if s.before != nil {
		if err := s.before(ctx, e); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.got = append(s.got, e.RequestID)
	s.mu.Unlock()
	s.stored <- struct{}{}
	if s.after != nil {
		return s.after(ctx, e)
	}
	return nil
}

// waitStored waits until the sink has stored n records, counting each time a record is
// stored again.
func (s *fakeSink) waitStored(t *testing.T, n int) {
	t.Helper()
	for {
		s.mu.Lock()
		have := len(s.got)
		s.mu.Unlock()
		if have >= n {
			return
		}
		receive(t, s.stored, fmt.Sprintf("%s storing record %d", s.name, have+1))
	}
}

// concurrentSink is a fakeSink the forwarder may send several records at once.
type concurrentSink struct{ *fakeSink }

func (concurrentSink) Concurrent() bool { return true }

// waitAttempted waits until the sink has been sent a record.
func (s *fakeSink) waitAttempted(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
		if _, attempts := s.received(); len(attempts) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s to be sent a record", s.name)
		}
	}
}

// received is what the sink stored, in order, and every Send's request id.
func (s *fakeSink) received() (got, attempts []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...), append([]string(nil), s.attempts...)
}

// noSleep is a sleeper that returns at once.
func noSleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// stepSleeper is a sleeper the test steps: each Sleep reports its duration on slept and
// returns once the test sends on wake.
type stepSleeper struct {
	slept chan time.Duration
	wake  chan struct{}
}

func newStepSleeper() *stepSleeper {
	return &stepSleeper{slept: make(chan time.Duration), wake: make(chan struct{})}
}

func (s *stepSleeper) Sleep(ctx context.Context, d time.Duration) error {
	select {
	case s.slept <- d:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-s.wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// collect is an Options.Notify that hands the incidents to a channel.
func collect(incidents chan<- Incident) func(context.Context, Incident) {
	return func(_ context.Context, in Incident) { incidents <- in }
}

// start creates a Forwarder and runs it in the background; it is closed when the test ends.
// stop closes it and checks Run's result.
func start(t *testing.T, sp *spool.Spool, sinks []Sink, opts Options) (fw *Forwarder, stop func()) {
	t.Helper()
	fw, err := New(sp, sinks, complete(opts), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.Run(context.Background()) }()
	t.Cleanup(func() { fw.Close() })
	return fw, func() {
		t.Helper()
		if err := fw.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		if err := receive(t, done, "Run to return"); err != nil {
			t.Errorf("Run() = %v after Close", err)
		}
	}
}

// receive waits for a value on ch, failing the test after waitLimit.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// metric is the value of the gauge or counter name in reg whose labels include the given
// name-value pairs, or -1 when there is none.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			match := true
			for i := 0; i+1 < len(labels); i += 2 {
				match = match && have[labels[i]] == labels[i+1]
			}
			if match {
				return m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// complete is o with each required field it leaves zero set as nirproxy's configuration sets it
// by default, for tests about something else.
func complete(o Options) Options {
	o.MinBackoff = cmp.Or(o.MinBackoff, time.Second)
	o.MaxBackoff = cmp.Or(o.MaxBackoff, time.Minute)
	o.SendTimeout = cmp.Or(o.SendTimeout, 30*time.Second)
	o.RejectAttempts = cmp.Or(o.RejectAttempts, 3)
	o.MaxLag = cmp.Or(o.MaxLag, 10000)
	o.MaxLagAge = cmp.Or(o.MaxLagAge, 15*time.Minute)
	o.AckEvery = cmp.Or(o.AckEvery, 1000)
	o.AckInterval = cmp.Or(o.AckInterval, time.Second)
	o.MaxInFlight = cmp.Or(o.MaxInFlight, 8)
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return o
}

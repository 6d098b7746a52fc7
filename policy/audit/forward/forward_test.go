package forward

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

func TestDeliversEveryRecordOnceInOrderToEachSink(t *testing.T) {
	sp := openSpool(t, time.Now)
	appendEvents(t, sp, 0, 10)
	pars, atna := newSink("pars"), newSink("atna")
	fw, stop := start(t, sp, []Sink{pars, atna}, Options{Sleep: noSleep})
	appendEvents(t, sp, 10, 20) // while the sinks are being fed
	pars.waitStored(t, 20)
	atna.waitStored(t, 20)
	stop()

	for i, s := range []*fakeSink{pars, atna} {
		got, attempts := s.received()
		if want := requestIDs(0, 20); !slices.Equal(got, want) || !slices.Equal(attempts, want) {
			t.Errorf("%s stored %v after sends %v; want each of %v once, in order", s.name, got, attempts, want)
		}
		if lag := sp.Lag(s.name); lag != 0 {
			t.Errorf("%s lag = %d after delivering everything; want 0", s.name, lag)
		}
		st := fw.Status()[i]
		if st.Sink != s.name || st.State != StateDelivering || st.LastErrorClass != "" || st.LastSuccess.IsZero() {
			t.Errorf("Status()[%d] = %+v; want %s delivering, a last success and no error", i, st, s.name)
		}
	}
}

func TestSinkDownThenBackGetsEveryRecordAcrossARestart(t *testing.T) {
	sp := openSpool(t, time.Now)
	appendEvents(t, sp, 0, 10)
	healthy, flaky := newSink("atna"), newSink("pars")
	var down atomic.Bool
	down.Store(true)
	flaky.before = func(context.Context, audit.Event) error {
		if down.Load() {
			return errors.New("post AuditEvent: connection refused")
		}
		return nil
	}
	// The sink stores req-005, but its answer is lost until the Forwarder is closed: a crash
	// between Send and Ack.
	var lostOnce atomic.Bool
	lost := make(chan struct{})
	flaky.after = func(ctx context.Context, e audit.Event) error {
		if e.RequestID == requestID(5) && lostOnce.CompareAndSwap(false, true) {
			close(lost)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	fw, stop := start(t, sp, []Sink{flaky, healthy}, Options{Sleep: noSleep})
	healthy.waitStored(t, 10) // one sink down holds back no other
	flaky.waitAttempted(t)    // and has failed at least once before it comes back
	if got, _ := flaky.received(); len(got) != 0 {
		t.Fatalf("the sink that is down stored %v", got)
	}
	down.Store(false)
	receive(t, lost, "req-005 to be stored")
	stop()
	if st := fw.Status()[0]; st.LastErrorClass != classRetryable {
		t.Errorf("the flaky sink's last error class = %q; want %q", st.LastErrorClass, classRetryable)
	}

	appendEvents(t, sp, 10, 20)
	_, stop = start(t, sp, []Sink{flaky, healthy}, Options{Sleep: noSleep})
	flaky.waitStored(t, 21)
	healthy.waitStored(t, 20)
	stop()

	want := requestIDs(0, 20)
	got, _ := flaky.received()
	if byID := slices.Compact(slices.Clone(got)); !slices.Equal(byID, want) {
		t.Errorf("the sink that was down stored %v; want every record at least once, in order", got)
	}
	if wantAgain := slices.Insert(slices.Clone(want), 6, requestID(5)); !slices.Equal(got, wantAgain) {
		t.Errorf("the sink that was down stored %v; want only the unacknowledged req-005 twice", got)
	}
	if got, _ := healthy.received(); !slices.Equal(got, want) {
		t.Errorf("the healthy sink stored %v; want %v once each", got, want)
	}
}

func TestBackoffGrowsAndIsBounded(t *testing.T) {
	opts, err := complete(Options{MinBackoff: time.Second, MaxBackoff: 10 * time.Second}).check()
	if err != nil {
		t.Fatal(err)
	}
	bases := []time.Duration{1, 2, 4, 8, 10, 10, 10, 10}
	for i := range bases {
		bases[i] *= time.Second
	}
	// base is the wait after failure n before jitter takes up to half of it.
	base := func(n int) time.Duration { return bases[min(n-1, len(bases)-1)] }
	inBounds := func(n int, d time.Duration) bool { return d >= base(n)/2 && d <= base(n) }

	t.Run("formula", func(t *testing.T) {
		for _, n := range []int{1, 2, 3, 4, 5, 63, 64, 65, 1000} {
			seen := map[time.Duration]bool{}
			for range 100 {
				d := opts.backoff(n)
				seen[d] = true
				if !inBounds(n, d) {
					t.Fatalf("backoff(%d) = %v; want within [%v, %v]", n, d, base(n)/2, base(n))
				}
			}
			if len(seen) < 2 {
				t.Errorf("backoff(%d) gave %v in 100 draws; want jitter", n, seen)
			}
		}
	})

	t.Run("forwarder", func(t *testing.T) {
		sp := openSpool(t, time.Now)
		appendEvents(t, sp, 0, 1)
		s := newSink("pars")
		s.before = func(context.Context, audit.Event) error { return errors.New("answered 503") }
		sleeper := newStepSleeper()
		opts := complete(Options{MinBackoff: time.Second, MaxBackoff: 10 * time.Second, Sleep: sleeper.Sleep})
		_, stop := start(t, sp, []Sink{s}, opts)
		for n := 1; n <= len(bases)+2; n++ {
			if d := receive(t, sleeper.slept, "a sleep"); !inBounds(n, d) {
				t.Errorf("wait after failure %d = %v; want within [%v, %v]", n, d, base(n)/2, base(n))
			}
			sleeper.wake <- struct{}{}
		}
		stop()
	})
}

func TestLagAlertRaisedOnceAndClearedOnce(t *testing.T) {
	tests := []struct {
		name      string
		maxLag    uint64
		maxLagAge time.Duration
		records   int
		tick      time.Duration // the clock moves this far during each wait
	}{
		{name: "records", maxLag: 3, maxLagAge: time.Hour, records: 5},
		{name: "age", maxLag: 100, maxLagAge: time.Minute, records: 2, tick: 45 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			sp := openSpool(t, clock.Now)
			appendEvents(t, sp, 0, tt.records)
			var down atomic.Bool
			down.Store(true)
			s := newSink("pars")
			s.before = func(context.Context, audit.Event) error {
				if down.Load() {
					return errors.New("answered 503")
				}
				return nil
			}
			sleeper := newStepSleeper()
			incidents := make(chan Incident, 10)
			reg := prometheus.NewRegistry()
			_, stop := start(t, sp, []Sink{s}, Options{
				MaxLag: tt.maxLag, MaxLagAge: tt.maxLagAge, Clock: clock.Now, Sleep: sleeper.Sleep,
				Notify: collect(incidents), Metrics: NewMetrics(reg),
			})

			for range 4 { // four failed attempts at the first record
				receive(t, sleeper.slept, "a sleep")
				clock.Add(tt.tick)
				sleeper.wake <- struct{}{}
			}
			receive(t, sleeper.slept, "the fifth sleep")
			if n := len(incidents); n != 1 {
				t.Fatalf("%d incidents while lagging; want 1", n)
			}
			in := <-incidents
			if in.Event != IncidentLagging || in.Sink != "pars" || in.Lag != uint64(tt.records) || in.Oldest.IsZero() {
				t.Errorf("incident = %+v; want %s for pars with lag %d", in, IncidentLagging, tt.records)
			}
			if v := metric(t, reg, "nirproxy_audit_forward_lagging", "sink", "pars"); v != 1 {
				t.Errorf("lagging gauge = %v while lagging; want 1", v)
			}
			if v := metric(t, reg, "nirproxy_audit_forward_lag_records", "sink", "pars"); v != float64(tt.records) {
				t.Errorf("lag gauge = %v; want %d", v, tt.records)
			}

			down.Store(false)
			sleeper.wake <- struct{}{}
			in = receive(t, incidents, "the caught-up incident")
			if in.Event != IncidentCaughtUp || in.Lag > tt.maxLag/2 {
				t.Errorf("incident = %+v; want %s with lag at most %d", in, IncidentCaughtUp, tt.maxLag/2)
			}
			if v := metric(t, reg, "nirproxy_audit_forward_lagging", "sink", "pars"); v != 0 {
				t.Errorf("lagging gauge = %v after catching up; want 0", v)
			}
			s.waitStored(t, tt.records)
			stop()
			if n := len(incidents); n != 0 {
				t.Errorf("%d more incidents after catching up; want none", n)
			}
			if v := metric(t, reg, "nirproxy_audit_forward_deliveries_total", "sink", "pars"); v != float64(tt.records) {
				t.Errorf("deliveries = %v; want %d", v, tt.records)
			}
			if v := metric(t, reg, "nirproxy_audit_forward_failures_total", "sink", "pars", "class", classRetryable); v != 5 {
				t.Errorf("retryable failures = %v; want 5", v)
			}
		})
	}
}

func TestRejectedRecordStopsItsSinkUntilRestarted(t *testing.T) {
	sp := openSpool(t, time.Now)
	appendEvents(t, sp, 0, 5)
	rejecting, healthy := newSink("pars"), newSink("atna")
	rejecting.before = func(_ context.Context, e audit.Event) error {
		if e.RequestID == requestID(2) {
			return fmt.Errorf("post AuditEvent: answered 422: %w", ErrRejected)
		}
		return nil
	}
	incidents := make(chan Incident, 10)
	reg := prometheus.NewRegistry()
	opts := Options{RejectAttempts: 3, Sleep: noSleep, Notify: collect(incidents), Metrics: NewMetrics(reg)}
	fw, stop := start(t, sp, []Sink{rejecting, healthy}, opts)

	in := receive(t, incidents, "the stopped incident")
	if in.Event != IncidentStopped || in.Sink != "pars" || in.Seq != 3 || in.Lag != 3 ||
		!strings.Contains(in.Reason, "rejected 3 times") {
		t.Errorf("incident = %+v; want %s for pars at record 3, lag 3, rejected 3 times", in, IncidentStopped)
	}
	appendEvents(t, sp, 5, 7) // the other sink goes on
	healthy.waitStored(t, 7)
	st := fw.Status()[0]
	if st.State != StateStopped || st.StoppedAt != 3 || st.LastErrorClass != classRejected || st.Lag != 5 || st.Oldest.IsZero() {
		t.Errorf("Status() = %+v; want stopped at 3 with class rejected, lag 5 and the record's time", st)
	}
	for _, c := range []struct {
		sink string
		want float64
	}{{"pars", 1}, {"atna", 0}} {
		if v := metric(t, reg, "nirproxy_audit_forward_stopped", "sink", c.sink); v != c.want {
			t.Errorf("stopped gauge of %s = %v; want %v", c.sink, v, c.want)
		}
	}
	stop()
	got, attempts := rejecting.received()
	if want := requestIDs(0, 2); !slices.Equal(got, want) {
		t.Errorf("the rejecting sink stored %v; want %v and nothing after the rejected record", got, want)
	}
	if want := append(requestIDs(0, 2), requestID(2), requestID(2), requestID(2)); !slices.Equal(attempts, want) {
		t.Errorf("the rejecting sink was sent %v; want %v", attempts, want)
	}
	if lag := sp.Lag("pars"); lag != 5 {
		t.Errorf("spool lag of the stopped sink = %d; want 5 (the spool keeps the rejected record)", lag)
	}

	// Once the sink takes the record, starting again resumes at it.
	rejecting.before = nil
	_, stop = start(t, sp, []Sink{rejecting, healthy}, opts)
	rejecting.waitStored(t, 7)
	stop()
	if got, _ := rejecting.received(); !slices.Equal(got, requestIDs(0, 7)) {
		t.Errorf("after restarting, the sink stored %v; want %v", got, requestIDs(0, 7))
	}
	if n := len(incidents); n != 0 {
		t.Errorf("%d more incidents; want none", n)
	}
}

func TestUndecodableRecordStopsEverySink(t *testing.T) {
	sp := openSpool(t, time.Now)
	appendEvents(t, sp, 0, 1)
	if _, err := sp.Append(context.Background(), []byte(`{"v":99}`)); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, sp, 2, 3)
	pars, atna := newSink("pars"), newSink("atna")
	incidents := make(chan Incident, 10)
	fw, stop := start(t, sp, []Sink{pars, atna}, Options{Sleep: noSleep, Notify: collect(incidents)})
	stopped := map[string]Incident{}
	for range 2 {
		in := receive(t, incidents, "a stopped incident")
		stopped[in.Sink] = in
	}
	stop()
	for i, s := range []*fakeSink{pars, atna} {
		if in := stopped[s.name]; in.Event != IncidentStopped || in.Seq != 2 || in.Reason != "record 2 cannot be decoded" {
			t.Errorf("incident of %s = %+v; want %s at record 2, cannot be decoded", s.name, in, IncidentStopped)
		}
		if got, attempts := s.received(); !slices.Equal(attempts, requestIDs(0, 1)) {
			t.Errorf("%s was sent %v and stored %v; want only %s", s.name, attempts, got, requestID(0))
		}
		if st := fw.Status()[i]; st.State != StateStopped || st.StoppedAt != 2 || st.LastErrorClass != classUndecodable {
			t.Errorf("Status()[%d] = %+v; want stopped at 2 with class undecodable", i, st)
		}
	}
}

func TestSendTimeoutIsRetried(t *testing.T) {
	sp := openSpool(t, time.Now)
	appendEvents(t, sp, 0, 1)
	var calls atomic.Int32
	s := newSink("pars")
	s.before = func(ctx context.Context, _ audit.Event) error {
		if calls.Add(1) == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	fw, stop := start(t, sp, []Sink{s}, Options{SendTimeout: time.Millisecond, Sleep: noSleep})
	s.waitStored(t, 1)
	stop()
	if st := fw.Status()[0]; st.LastErrorClass != classTimeout || st.State != StateDelivering {
		t.Errorf("Status() = %+v; want delivering after a timeout", st)
	}
}

func TestCloseStopsEverySinkWithoutLeaks(t *testing.T) {
	// synctest fails the test if a goroutine started in the bubble outlives it.
	synctest.Test(t, func(t *testing.T) {
		sp := openSpool(t, time.Now)
		appendEvents(t, sp, 0, 2)
		idle, hanging, failing := newSink("idle"), newSink("hanging"), newSink("failing")
		hanging.before = func(ctx context.Context, _ audit.Event) error {
			<-ctx.Done()
			return ctx.Err()
		}
		failing.before = func(context.Context, audit.Event) error { return errors.New("answered 503") }
		// AckEvery 1 persists each acknowledgement at once: the idle sink has lag 0 as it waits.
		fw, err := New(sp, []Sink{idle, hanging, failing}, complete(Options{MinBackoff: time.Hour, MaxBackoff: time.Hour, SendTimeout: 2 * time.Hour, AckEvery: 1}), nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- fw.Run(context.Background()) }()
		synctest.Wait() // idle waits for a record, hanging in Send, failing in its backoff
		if st := fw.Status(); st[0].Lag != 0 || st[2].State != StateRetrying {
			t.Fatalf("Status() = %+v; want idle caught up and failing retrying", st)
		}
		if err := fw.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Run() = %v after Close; want nil", err)
		}
		if err := fw.Close(); err != nil {
			t.Errorf("second Close() = %v", err)
		}
		if err := fw.Run(context.Background()); err == nil {
			t.Error("Run() after Close = nil; want an error")
		}
		if lag := sp.Lag("hanging"); lag != 2 {
			t.Errorf("lag of the sink whose Send was cancelled = %d; want 2", lag)
		}
	})
}

func TestRunEndsWhenTheSpoolCloses(t *testing.T) {
	sp := openSpool(t, time.Now)
	fw, err := New(sp, []Sink{newSink("pars")}, complete(Options{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	done := make(chan error, 1)
	go func() { done <- fw.Run(context.Background()) }()
	sp.Close()
	if err := receive(t, done, "Run to return"); !errors.Is(err, spool.ErrClosed) {
		t.Errorf("Run() = %v after the spool closed; want spool.ErrClosed", err)
	}
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name  string
		sinks []Sink
		opts  Options
		want  string
	}{
		{"two sinks of one name", []Sink{newSink("pars"), newSink("pars")}, complete(Options{}), `two sinks are named "pars"`},
		{"a name no cursor may have", []Sink{newSink("PARS")}, complete(Options{}), "a name is 1 to 64"},
		{"no options: the package has no defaults", nil, Options{}, "Options.MinBackoff"},
		{"max backoff below min", nil, complete(Options{MinBackoff: time.Minute, MaxBackoff: time.Second}), "Options.MaxBackoff"},
		{"negative timeout", nil, complete(Options{SendTimeout: -time.Second}), "Options.SendTimeout"},
		{"negative attempts", nil, complete(Options{RejectAttempts: -1}), "Options.RejectAttempts"},
		{"no clock", nil, func() Options { o := complete(Options{}); o.Clock = nil; return o }(), "Options.Clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := openSpool(t, time.Now)
			if _, err := New(sp, tt.sinks, tt.opts, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() = %v; want an error saying %q", err, tt.want)
			}
		})
	}
}

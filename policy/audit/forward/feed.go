package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// The classes of failure, in Status.LastErrorClass and the failures metric.
const (
	classRejected    = "rejected"
	classTimeout     = "timeout"
	classRetryable   = "retryable"
	classUndecodable = "undecodable"
	classSpool       = "spool"
	classAck         = "ack"
	// classCancelled is a delivery ended by the forwarder (closing, or the sink stopping at an
	// earlier record), which is no failure of the sink's.
	classCancelled = "cancelled"
)

// feed delivers the spool's records to one sink: one goroutine reads the spool and
// acknowledges, and each record in flight has a goroutine of its own (see pipeline).
type feed struct {
	sink     Sink
	name     string
	sp       *spool.Spool
	cur      *spool.Cursor
	opts     Options
	log      *slog.Logger
	inFlight int // how many records may be in flight at once: 1 unless the sink is concurrent

	lagMu sync.Mutex // serialises judgeLag, which the records' goroutines call

	mu          sync.Mutex // guards what follows, which status reads
	state       string
	lagging     bool
	oldest      time.Time // when the oldest record in flight was appended; zero when none is
	stoppedAt   uint64
	lastClass   string
	lastErrorAt time.Time
	lastSuccess time.Time
}

// run delivers records until ctx ends (it returns nil) or the spool closes, and persists on
// the way out what the sink was found to have.
func (f *feed) run(ctx context.Context) error {
	p := &pipeline{f: f, out: make(chan outcome, f.inFlight)}
	err := p.loop(ctx)
	p.finish()
	return err
}

// deliver sends rec until the sink takes it (class ""), refuses it for good (classRejected,
// or classUndecodable for a record that does not decode; reason then says why, identifier-free)
// or ctx ends (classCancelled). It runs on the record's own goroutine.
func (f *feed) deliver(ctx context.Context, rec spool.Record) (class, reason string, err error) {
	e, err := audit.Decode(rec.Payload)
	if err != nil {
		return classUndecodable, fmt.Sprintf("record %d cannot be decoded", rec.Seq), err
	}
	rejections := 0
	for attempt := 1; ; attempt++ {
		f.judgeLag(ctx)
		class, err := f.send(ctx, rec, e)
		if err == nil {
			return "", "", nil
		}
		if ctx.Err() != nil {
			return classCancelled, "", err
		}
		if class == classRejected {
			if rejections++; rejections >= f.opts.RejectAttempts {
				return class, fmt.Sprintf("record %d rejected %d times", rec.Seq, rejections), err
			}
		}
		f.failed(ctx, class, rec.Seq, attempt, err)
		if f.opts.Sleep(ctx, f.opts.backoff(attempt)) != nil {
			return classCancelled, "", ctx.Err()
		}
	}
}

// send calls the sink within Options.SendTimeout, and classes its error.
func (f *feed) send(ctx context.Context, rec spool.Record, e audit.Event) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.SendTimeout)
	defer cancel()
	err := f.sink.Send(ctx, rec, e)
	switch {
	case err == nil:
		return "", nil
	case errors.Is(err, ErrRejected):
		return classRejected, err
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return classTimeout, err
	}
	return classRetryable, err
}

// delivered notes that the sink took a record.
func (f *feed) delivered() {
	f.opts.Metrics.delivery(f.name)
	f.mu.Lock()
	f.state, f.lastSuccess = StateDelivering, f.opts.Clock()
	f.mu.Unlock()
}

// failed records a failed attempt of the given class at the record seq (0: reading the
// spool), which will be tried again.
func (f *feed) failed(ctx context.Context, class string, seq uint64, attempt int, err error) {
	f.noteFailure(class, StateRetrying)
	level := slog.LevelWarn
	if class == classRejected || class == classSpool {
		level = slog.LevelError
	}
	f.log.Log(ctx, level, "audit sink: deliver a record; trying again", "seq", seq, "class", class,
		"attempt", attempt, "err", err)
}

// stop stops the sink at rec, which it will not take or which does not decode, and raises
// IncidentStopped; reason says why, identifier-free.
func (f *feed) stop(ctx context.Context, rec spool.Record, class string, err error, reason string) {
	now := f.noteFailure(class, StateStopped)
	f.mu.Lock()
	f.stoppedAt = rec.Seq
	f.mu.Unlock()
	f.log.Error("audit sink stopped at a record: it gets nothing more until the forwarder starts "+
		"again, and the spool keeps the record", "seq", rec.Seq, "class", class, "err", err)
	f.notify(ctx, Incident{Event: IncidentStopped, Sink: f.name, Lag: f.sp.Lag(f.name),
		Oldest: rec.Time, Seq: rec.Seq, Reason: reason, Time: now})
}

// noteFailure counts a failure of class, remembers it for the status with the new state ("":
// unchanged), and returns its time.
func (f *feed) noteFailure(class, state string) time.Time {
	f.opts.Metrics.failure(f.name, class)
	now := f.opts.Clock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastClass, f.lastErrorAt = class, now
	if state != "" {
		f.state = state
	}
	return now
}

// hold records when the oldest record in flight was appended (zero: none is).
func (f *feed) hold(appended time.Time) {
	f.mu.Lock()
	f.oldest = appended
	f.mu.Unlock()
}

// judgeLag raises IncidentLagging when the sink passes a lag limit, and IncidentCaughtUp when
// a lagging sink is back within half of both.
func (f *feed) judgeLag(ctx context.Context) {
	f.lagMu.Lock()
	defer f.lagMu.Unlock()
	st := f.status()
	now := f.opts.Clock()
	age := st.age(now)
	lagging := st.Lagging
	switch {
	case !lagging && (st.Lag > f.opts.MaxLag || age > f.opts.MaxLagAge):
		lagging = true
	case lagging && st.Lag <= f.opts.MaxLag/2 && age <= f.opts.MaxLagAge/2:
		lagging = false
	default:
		return
	}
	f.mu.Lock()
	f.lagging = lagging
	f.mu.Unlock()
	in := Incident{Event: IncidentCaughtUp, Sink: f.name, Lag: st.Lag, Oldest: st.Oldest, Time: now}
	if lagging {
		in.Event = IncidentLagging
		in.Reason = fmt.Sprintf("%d records wait for the sink, the oldest for %v (limits %d records, %v)",
			st.Lag, age.Truncate(time.Second), f.opts.MaxLag, f.opts.MaxLagAge)
		f.log.Warn("audit sink is lagging", "lag", st.Lag, "oldest_age", age,
			"max_lag", f.opts.MaxLag, "max_lag_age", f.opts.MaxLagAge)
	} else {
		in.Reason = fmt.Sprintf("%d records wait for the sink", st.Lag)
		f.log.Info("audit sink has caught up", "lag", st.Lag)
	}
	f.notify(ctx, in)
}

// notify hands in to Options.Notify, when set.
func (f *feed) notify(ctx context.Context, in Incident) {
	if f.opts.Notify != nil {
		f.opts.Notify(ctx, in)
	}
}

// status is the sink's Status now.
func (f *feed) status() Status {
	lag := f.sp.Lag(f.name)
	f.mu.Lock()
	defer f.mu.Unlock()
	return Status{
		Sink: f.name, State: f.state, Lag: lag, Lagging: f.lagging, Oldest: f.oldest,
		StoppedAt: f.stoppedAt, LastErrorClass: f.lastClass, LastErrorAt: f.lastErrorAt,
		LastSuccess: f.lastSuccess,
	}
}

// age is how long ago the oldest record in flight was appended, at now; 0 when none is.
func (s Status) age(now time.Time) time.Duration {
	if s.Oldest.IsZero() {
		return 0
	}
	return now.Sub(s.Oldest)
}

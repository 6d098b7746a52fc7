// Package forward sends the audit spool's records to their sinks (the national Patient Audit
// Record Service as FHIR AuditEvents, an IHE ATNA repository over syslog), at least once and in
// order, without ever holding up a request: requests only append to the spool, and each sink
// reads it at its own pace through its own [spool.Cursor], named by [Sink.Name].
//
// # Delivery
//
// For each sink a goroutine takes the next record (waiting on the spool, without polling) and
// hands it to a goroutine of its own, which decodes it ([audit.Decode]) and calls [Sink.Send]
// until the sink takes it. A sink has one record in flight at a time, so it receives the
// records in spool order, unless it is a [ConcurrentSink], which may have up to
// Options.MaxInFlight. Records are acknowledged in order: the acknowledgement covers the
// highest record that the sink has, with every record before it, so a slow early record holds
// back the acknowledgement of the later ones it overtook.
//
// The acknowledgement is persisted in the cursor file (two fsyncs) in batches: once
// Options.AckEvery records wait for it or Options.AckInterval after the first of them was
// delivered, whichever comes first, and always when the sink stops or the Forwarder closes.
// [spool.Spool.Lag], the status and retention see only what is persisted. A record is
// acknowledged only after its Send succeeded, so a crash (or a Close) sends again the records
// whose Send had not returned and, after a crash, those whose acknowledgement was not yet
// persisted (at most AckEvery, and at most AckInterval's worth): delivery is at least once, and
// a sink makes it exactly once by the record's identity (its sequence number, or the event's
// request id), as the FHIR sink does with stable resource ids. A failed Send is tried again,
// without end, after a wait that doubles from Options.MinBackoff to at most Options.MaxBackoff,
// less a random part of up to half (jitter); records behind it wait.
//
// # A record a sink refuses
//
// A Send error that wraps [ErrRejected] says the sink will never accept this record (a FHIR
// 400 or 422, say). After Options.RejectAttempts such answers for one record, or at once for a
// record that does not decode, the sink stops at that record (for a ConcurrentSink, once the
// records before it in flight are settled; those after it are cancelled, and sent again when
// the sink resumes): nothing more goes to it, its
// status says stopped (with the record's sequence number), an error is logged and the
// audit_sink_stopped incident raised. Its cursor stays before the record, so the spool keeps
// the record and everything after it (retention deletes only what every sink acknowledged);
// the other sinks go on. The sink resumes at that record when the Forwarder is started again (after the sink or
// its configuration is fixed). To give up on the record for that sink, an operator stops
// nirproxy, writes the record's sequence number into the spool's cursor-NAME file, and starts
// it again; the record stays in the spool's chain, where `nirproxy audit verify` still finds
// it (until retention).
//
// Stopping was chosen over parking the record (writing it to a dead-letter file, acknowledging
// it and going on) because an audit record must not go missing quietly: a parked record is
// out of the hash chain, counts as delivered, and would let retention delete the only checked
// copy; and a sink that rejects everything (a wrong profile, a changed validator) would park
// the whole stream. A stopped sink costs its timeliness, never a record, and says so loudly;
// should it stay stopped until the spool is full, data requests are refused (503) rather than
// records lost.
//
// # Lag
//
// A sink is lagging when more than Options.MaxLag records wait for it ([spool.Spool.Lag]) or
// the oldest of them was appended more than Options.MaxLagAge ago. Crossing into lag logs a
// warning, sets the lagging gauge and raises the audit_sink_lagging incident; it has caught up
// again (logged, gauge cleared, audit_sink_caught_up raised) once it is back within half of
// each limit, so that a sink hovering at a limit does not raise an incident per record.
// Lag counts the records whose acknowledgement is not persisted. It is judged before each
// attempt to send a record and whenever a persisted acknowledgement leaves a sink caught up, so
// while a sink is down it is judged at least every Options.MaxBackoff plus Options.SendTimeout.
// A stopped sink raises no lag incidents (its stop was the alert), but its lag gauges, read
// when scraped, go on growing.
// Logs and incidents name the sink and counts, never a patient, user or request.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// Sink is a destination of the audit record.
//
// Name names the sink's cursor in the spool (1 to 64 of a-z, 0-9, '-' and '_'); it must be
// stable across restarts, since the cursor remembers what the sink has acknowledged.
//
// Send delivers one record, whose event e was decoded from rec.Payload, and returns nil only
// once the sink holds it. It may be called again for a record it already took (at least once),
// so it should be idempotent by rec.Seq or e.RequestID. It must return when ctx ends. An error
// wrapping ErrRejected says the sink refuses this record for good; any other error is tried
// again. Send's errors are logged, so they must not name patients or users.
type Sink interface {
	Name() string
	Send(ctx context.Context, rec spool.Record, e audit.Event) error
}

// ConcurrentSink is a Sink that may be sent several records at once: its Send is safe for
// concurrent use and it takes records in any order, each by its own identity (the FHIR sink,
// whose AuditEvents are independent resources). When Concurrent reports true the forwarder
// keeps up to Options.MaxInFlight of its records in flight; a Sink that is not a
// ConcurrentSink is sent one record at a time, in spool order.
type ConcurrentSink interface {
	Sink
	Concurrent() bool
}

// ErrRejected is wrapped by a Sink's error when the sink refuses a record for good (it is not
// worth trying again unchanged); see the package doc for what follows.
var ErrRejected = errors.New("audit sink rejected the record")

// The incidents a Forwarder raises, in Incident.Event.
const (
	// IncidentLagging is a sink passing Options.MaxLag or Options.MaxLagAge.
	IncidentLagging = "audit_sink_lagging"
	// IncidentCaughtUp is a lagging sink back within half of both limits.
	IncidentCaughtUp = "audit_sink_caught_up"
	// IncidentStopped is a sink stopped at a record it rejected or that does not decode.
	IncidentStopped = "audit_sink_stopped"
)

// Incident is an event of a sink that operators must hear about. It names no patient, user
// or request.
type Incident struct {
	// Event is IncidentLagging, IncidentCaughtUp or IncidentStopped.
	Event string `json:"event"`
	// Sink is the sink's name.
	Sink string `json:"sink"`
	// Lag is how many records the sink had not acknowledged.
	Lag uint64 `json:"lag"`
	// Oldest is when the oldest record the sink had not acknowledged was appended; zero when
	// none was known.
	Oldest time.Time `json:"oldest,omitzero"`
	// Seq is the sequence number of the record a stopped sink stopped at.
	Seq uint64 `json:"seq,omitempty"`
	// Reason says what happened in words for operators, identifier-free.
	Reason string `json:"reason"`
	// Time is when the incident was raised.
	Time time.Time `json:"time"`
}

// Options configures a Forwarder. Every field but Notify, Metrics and Sleep is required: the
// package has no defaults of its own (the configuration holds them), and New refuses a zero
// field, naming it.
type Options struct {
	// MinBackoff is the wait after a first failed attempt; it doubles with each failure after
	// that, up to MaxBackoff, less a random part of up to half.
	MinBackoff time.Duration
	// MaxBackoff bounds the wait between attempts; at least MinBackoff.
	MaxBackoff time.Duration
	// SendTimeout bounds one call of Sink.Send.
	SendTimeout time.Duration
	// RejectAttempts is how many times a record is offered to a sink that rejects it
	// (ErrRejected) before the sink stops at it.
	RejectAttempts int
	// MaxLag is how many unacknowledged records make a sink lagging.
	MaxLag uint64
	// MaxLagAge is how old a sink's oldest unacknowledged record may be before it is lagging.
	MaxLagAge time.Duration
	// AckEvery is how many delivered records a sink's acknowledgement may run ahead of its
	// cursor file: the cursor is persisted once that many wait, or AckInterval after the first
	// of them was delivered, whichever comes first, and when the sink stops or the Forwarder
	// closes. A crash re-sends at most these records. 1 persists after every record.
	AckEvery int
	// AckInterval bounds how long a delivered record's acknowledgement waits to be persisted.
	AckInterval time.Duration
	// MaxInFlight is how many records a ConcurrentSink may have in flight at once; 1 sends
	// one at a time. Other sinks always have one.
	MaxInFlight int
	// Notify, when set, is told of each Incident. It runs on the sink's goroutine and holds up
	// only that sink, so it should hand the incident on (to the incident webhook's queue)
	// rather than deliver it.
	Notify func(ctx context.Context, in Incident)
	// Metrics, when set, counts deliveries and failures and exports lag.
	Metrics *Metrics
	// Clock tells the time of deliveries and the age of records.
	Clock func() time.Time
	// Sleep waits d or until ctx ends, returning ctx's error then; nil waits on a timer. Tests
	// replace it.
	Sleep func(ctx context.Context, d time.Duration) error
}

// check is o with Sleep set, or an error naming the first field that is missing or wrong.
func (o Options) check() (Options, error) {
	switch {
	case o.MinBackoff <= 0:
		return o, fmt.Errorf("Options.MinBackoff is %v; it must be positive", o.MinBackoff)
	case o.MaxBackoff < o.MinBackoff:
		return o, fmt.Errorf("Options.MaxBackoff is %v; it must be at least Options.MinBackoff (%v)", o.MaxBackoff, o.MinBackoff)
	case o.SendTimeout <= 0:
		return o, fmt.Errorf("Options.SendTimeout is %v; it must be positive", o.SendTimeout)
	case o.RejectAttempts < 1:
		return o, fmt.Errorf("Options.RejectAttempts is %d; it must be at least 1", o.RejectAttempts)
	case o.MaxLag < 1:
		return o, fmt.Errorf("Options.MaxLag is %d; it must be at least 1", o.MaxLag)
	case o.MaxLagAge <= 0:
		return o, fmt.Errorf("Options.MaxLagAge is %v; it must be positive", o.MaxLagAge)
	case o.AckEvery < 1:
		return o, fmt.Errorf("Options.AckEvery is %d; it must be at least 1", o.AckEvery)
	case o.AckInterval <= 0:
		return o, fmt.Errorf("Options.AckInterval is %v; it must be positive", o.AckInterval)
	case o.MaxInFlight < 1:
		return o, fmt.Errorf("Options.MaxInFlight is %d; it must be at least 1", o.MaxInFlight)
	case o.Clock == nil:
		return o, errors.New("Options.Clock is not set")
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	return o, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff is the wait after the nth failed attempt at a record (n >= 1): MinBackoff doubled
// n-1 times, at most MaxBackoff, less a random part of up to half of it.
func (o Options) backoff(n int) time.Duration {
	d := o.MaxBackoff
	if shift := n - 1; shift < 63 && o.MinBackoff <= o.MaxBackoff>>shift {
		d = o.MinBackoff << shift
	}
	return d - rand.N(d/2+1)
}

// Forwarder delivers the spool's records to each of its sinks; see the package doc.
type Forwarder struct {
	feeds   []*feed
	metrics *Metrics

	mu      sync.Mutex
	running bool
	closed  bool
	cancel  context.CancelFunc // stops Run; set while running
	done    chan struct{}      // closed when Run returns
}

// New opens a cursor on sp for each sink and returns a Forwarder that delivers to them once
// Run is called. It fails when the options are wrong, two sinks share a name, or a cursor
// cannot be opened. sp must stay open until the Forwarder is closed; log may be nil.
func New(sp *spool.Spool, sinks []Sink, opts Options, log *slog.Logger) (*Forwarder, error) {
	opts, err := opts.check()
	if err != nil {
		return nil, fmt.Errorf("start audit forwarding: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{metrics: opts.Metrics, done: make(chan struct{})}
	seen := map[string]bool{}
	for _, s := range sinks {
		name := s.Name()
		if seen[name] {
			f.closeCursors()
			return nil, fmt.Errorf("start audit forwarding: two sinks are named %q", name)
		}
		seen[name] = true
		cur, err := sp.Cursor(name)
		if err != nil {
			f.closeCursors()
			return nil, fmt.Errorf("start audit forwarding to %s: %w", name, err)
		}
		inFlight := 1
		if c, ok := s.(ConcurrentSink); ok && c.Concurrent() {
			inFlight = opts.MaxInFlight
		}
		f.feeds = append(f.feeds, &feed{
			sink: s, name: name, sp: sp, cur: cur, opts: opts, inFlight: inFlight,
			log: log.With("sink", name), state: StateDelivering,
		})
	}
	for _, fd := range f.feeds {
		opts.Metrics.track(fd)
	}
	return f, nil
}

// Run delivers records until ctx ends or Close is called, and returns once every sink's
// goroutine has stopped: nil then, or an error when the spool was closed under it. Run may be
// called once.
func (f *Forwarder) Run(ctx context.Context) error {
	f.mu.Lock()
	switch {
	case f.closed:
		f.mu.Unlock()
		return errors.New("forward audit records: the forwarder is closed")
	case f.running:
		f.mu.Unlock()
		return errors.New("forward audit records: Run was called before")
	}
	ctx, cancel := context.WithCancel(ctx)
	f.running, f.cancel = true, cancel
	f.mu.Unlock()
	defer close(f.done)
	defer cancel()

	errs := make([]error, len(f.feeds))
	var wg sync.WaitGroup
	for i, fd := range f.feeds {
		wg.Go(func() { errs[i] = fd.run(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("forward audit records: %w", err)
	}
	return nil
}

// Close stops Run, waits for it to return, and releases the cursors. A Send in progress is
// cancelled, and its record is sent again by the next Forwarder. Close may be called more than
// once, and without Run.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	running, cancel := f.running, f.cancel
	f.mu.Unlock()
	if running {
		cancel()
		<-f.done
	}
	f.closeCursors()
	for _, fd := range f.feeds {
		f.metrics.untrack(fd)
	}
	return nil
}

// closeCursors closes every feed's cursor; no feed may be running.
func (f *Forwarder) closeCursors() {
	for _, fd := range f.feeds {
		fd.cur.Close()
	}
}

// The states of a sink, in Status.State.
const (
	// StateDelivering is a sink taking records, or waiting for the next.
	StateDelivering = "delivering"
	// StateRetrying is a sink whose last attempt failed and is being tried again.
	StateRetrying = "retrying"
	// StateStopped is a sink stopped at a record it rejected or that does not decode, until
	// the Forwarder is started again.
	StateStopped = "stopped"
)

// Status is what GET /status shows of one sink.
type Status struct {
	// Sink is the sink's name.
	Sink string `json:"sink"`
	// State is StateDelivering, StateRetrying or StateStopped.
	State string `json:"state"`
	// Lag is how many records the sink has not acknowledged, as persisted: it may count up to
	// Options.AckEvery records the sink has.
	Lag uint64 `json:"lag"`
	// Lagging is true from an IncidentLagging until its IncidentCaughtUp.
	Lagging bool `json:"lagging"`
	// Oldest is when the oldest record being sent was appended; zero when none is.
	Oldest time.Time `json:"oldest,omitzero"`
	// StoppedAt is the sequence number of the record a stopped sink stopped at.
	StoppedAt uint64 `json:"stoppedAt,omitempty"`
	// LastErrorClass is the class of the last failure: rejected, timeout, retryable (any other
	// Send error), undecodable, spool (the spool could not be read) or ack (a delivered record
	// could not be acknowledged); "" when there was none.
	LastErrorClass string `json:"lastErrorClass,omitempty"`
	// LastErrorAt is when that failure happened.
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	// LastSuccess is when a record was last delivered.
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
}

// Status is each sink's status, in the order the sinks were given to New.
func (f *Forwarder) Status() []Status {
	out := make([]Status, 0, len(f.feeds))
	for _, fd := range f.feeds {
		out = append(out, fd.status())
	}
	return out
}

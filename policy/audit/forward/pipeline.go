package forward

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// errWoken is a wait for the next record cut short, to settle a delivery or persist the
// acknowledgement; it is no failure.
var errWoken = errors.New("woken")

// flight is a record being delivered on its own goroutine.
type flight struct {
	rec    spool.Record
	cancel context.CancelFunc // ends its delivery
	done   bool               // the sink has it
}

// outcome is how a flight's delivery ended: class "" when the sink took the record, see
// feed.deliver for the others.
type outcome struct {
	fl     *flight
	class  string
	reason string
	err    error
}

// pipeline is one run of a feed. Its goroutine (the feed's) reads the spool, starts a
// goroutine per record, up to feed.inFlight at once, and settles their outcomes in sequence
// order: the cursor is acknowledged up to the highest record that the sink has, with every
// record before it, so a slow early record holds back the acknowledgement of later ones. The
// acknowledgement is persisted (spool.Cursor.Ack) once Options.AckEvery records wait for it or
// Options.AckInterval after the first of them, whichever comes first, and when the run ends.
// A record the sink refuses for good stops it there: the records after it in flight are
// cancelled, those before it are let finish, and the sink stops at the lowest refused record.
type pipeline struct {
	f       *feed
	out     chan outcome // the flights' outcomes, with room for every flight
	wg      sync.WaitGroup
	flights []*flight // in sequence order, none of them settled
	stopAt  *outcome  // the lowest record refused for good, once there is one

	acked   uint64    // the highest record the sink has, with every record before it
	pending int       // the records up to acked whose acknowledgement is not persisted
	ackDue  time.Time // when the pending acknowledgement must be persisted; zero with none

	mu   sync.Mutex
	wake context.CancelFunc // cuts short the wait for the next record; nil when none waits
}

// loop delivers records until ctx ends (nil), or the spool closes (its error).
func (p *pipeline) loop(ctx context.Context) error {
	f := p.f
	for failures := 0; ; {
		p.settleReady(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if p.stopAt != nil && p.flights[0] == p.stopAt.fl {
			p.stop(ctx)
			<-ctx.Done()
			return nil
		}
		if p.stopAt != nil || len(p.flights) >= f.inFlight {
			p.await(ctx)
			continue
		}
		rec, err := p.next(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errWoken):
			continue
		case errors.Is(err, spool.ErrClosed):
			return err
		case err != nil:
			// The spool could not be read here (a file that will not open, a damaged
			// record): try again, loudly, without acknowledging anything.
			failures++
			f.failed(ctx, classSpool, 0, failures, err)
			if f.opts.Sleep(ctx, f.opts.backoff(failures)) != nil {
				return nil
			}
			continue
		}
		failures = 0
		p.launch(ctx, rec)
	}
}

// next is the next record, once it is on disk; errWoken when a flight ends or the
// acknowledgement falls due first.
func (p *pipeline) next(ctx context.Context) (spool.Record, error) {
	if len(p.flights) == 0 && p.ackDue.IsZero() {
		return p.f.cur.Next(ctx)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !p.ackDue.IsZero() {
		var cancelDue context.CancelFunc
		wctx, cancelDue = context.WithDeadline(wctx, p.ackDue)
		defer cancelDue()
	}
	p.mu.Lock()
	p.wake = cancel
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.wake = nil
		p.mu.Unlock()
	}()
	if len(p.out) > 0 {
		return spool.Record{}, errWoken
	}
	rec, err := p.f.cur.Next(wctx)
	if err != nil && wctx.Err() != nil && ctx.Err() == nil {
		return spool.Record{}, errWoken
	}
	return rec, err
}

// launch starts the delivery of rec on a goroutine of its own.
func (p *pipeline) launch(ctx context.Context, rec spool.Record) {
	fctx, cancel := context.WithCancel(ctx)
	fl := &flight{rec: rec, cancel: cancel}
	p.flights = append(p.flights, fl)
	p.hold()
	p.wg.Go(func() {
		class, reason, err := p.f.deliver(fctx, rec)
		p.out <- outcome{fl: fl, class: class, reason: reason, err: err}
		p.mu.Lock()
		if p.wake != nil {
			p.wake()
		}
		p.mu.Unlock()
	})
}

// await waits for a flight to end, the acknowledgement to fall due, or ctx to end.
func (p *pipeline) await(ctx context.Context) {
	var due <-chan time.Time
	if !p.ackDue.IsZero() {
		t := time.NewTimer(time.Until(p.ackDue))
		defer t.Stop()
		due = t.C
	}
	select {
	case o := <-p.out:
		p.settle(ctx, o)
	case <-due:
	case <-ctx.Done():
	}
}

// settleReady settles the outcomes that are in, and persists the acknowledgement if it is due.
func (p *pipeline) settleReady(ctx context.Context) {
	for len(p.out) > 0 { // only this goroutine receives
		p.settle(ctx, <-p.out)
	}
	if !p.ackDue.IsZero() && !time.Now().Before(p.ackDue) {
		p.persist(ctx)
	}
}

// settle takes in the outcome of a flight.
func (p *pipeline) settle(ctx context.Context, o outcome) {
	o.fl.cancel()
	switch o.class {
	case "":
		o.fl.done = true
		p.f.delivered()
		p.advance(ctx)
	case classRejected, classUndecodable:
		if p.stopAt != nil && p.stopAt.fl.rec.Seq < o.fl.rec.Seq {
			return
		}
		p.stopAt = &o
		for _, fl := range p.flights {
			if fl.rec.Seq > o.fl.rec.Seq {
				fl.cancel()
			}
		}
	}
}

// advance moves the acknowledgement past the flights at the front that the sink has, and
// persists it when Options.AckEvery records wait for that.
func (p *pipeline) advance(ctx context.Context) {
	n := 0
	for n < len(p.flights) && p.flights[n].done {
		p.acked = p.flights[n].rec.Seq
		n++
	}
	if n == 0 {
		return
	}
	p.flights = append(p.flights[:0], p.flights[n:]...)
	p.hold()
	if p.pending == 0 {
		p.ackDue = time.Now().Add(p.f.opts.AckInterval)
	}
	if p.pending += n; p.pending >= p.f.opts.AckEvery {
		p.persist(ctx)
	}
}

// persist writes the acknowledgement to the cursor, and judges the lag once the sink has caught
// up. ctx is nil when the run has ended: nothing is judged then.
func (p *pipeline) persist(ctx context.Context) {
	if p.pending == 0 {
		return
	}
	f := p.f
	if err := f.cur.Ack(p.acked); err != nil {
		// The sink has the records: the next Ack covers them, or the next Forwarder sends them
		// again.
		f.noteFailure(classAck, "")
		f.log.Error("audit sink: acknowledge delivered records", "seq", p.acked, "class", classAck, "err", err)
		p.ackDue = time.Now().Add(f.opts.AckInterval)
		return
	}
	p.pending, p.ackDue = 0, time.Time{}
	if ctx != nil && f.sp.Lag(f.name) == 0 {
		f.judgeLag(ctx)
	}
}

// hold tells the feed when the oldest record in flight was appended.
func (p *pipeline) hold() {
	if len(p.flights) == 0 {
		p.f.hold(time.Time{})
		return
	}
	p.f.hold(p.flights[0].rec.Time)
}

// stop persists the acknowledgement of the records before the one refused for good, and stops
// the sink at it.
func (p *pipeline) stop(ctx context.Context) {
	p.persist(ctx)
	o := p.stopAt
	p.f.stop(ctx, o.fl.rec, o.class, o.err, o.reason)
}

// finish ends every flight, settles what the sink took meanwhile, and persists the
// acknowledgement.
func (p *pipeline) finish() {
	for _, fl := range p.flights {
		fl.cancel()
	}
	p.wg.Wait()
	close(p.out)
	for o := range p.out {
		// A record after the one the sink stopped at can never be acknowledged.
		if o.class == "" && (p.stopAt == nil || o.fl.rec.Seq < p.stopAt.fl.rec.Seq) {
			o.fl.done = true
			p.f.delivered()
		}
	}
	p.advance(nil)
	p.persist(nil)
	p.f.hold(time.Time{})
}

package spool

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Spool is an open spool directory. Its methods are safe for concurrent use.
type Spool struct {
	opts Options
	fsys fileSystem
	log  *slog.Logger

	mu          sync.Mutex
	wake        chan struct{} // closed and replaced whenever the state below changes
	seg         file          // the segment being written; nil after a failed probe
	segs        []uint64      // the first sequence number of each segment, oldest first
	off         int64         // the current segment's length
	size        int64         // the length of all segments
	written     uint64        // the last sequence number written (to pending or the segment)
	pending     []byte        // records written after the segment's file ends: the next sync writes them
	spare       []byte        // a buffer for pending, reused
	lastHash    [32]byte      // its hash
	durable     uint64        // the last sequence number known to be on disk
	durableOff  int64         // the current segment's length up to that record
	durableHash [32]byte      // its hash
	syncing     bool          // a sync of the current segment is under way, without mu
	epoch       uint64        // advanced by each repair; earlier unsynced records are lost
	broken      error         // why the spool cannot be written, wrapping ErrUnwritable
	lastProbe   time.Time     // when the spool broke or was last probed
	full        bool          // the last Append was refused with ErrFull
	fullSignal  chan struct{} // has a value after an Append is refused with ErrFull (Filled)
	closed      bool
	acked       map[string]uint64     // each cursor's last acknowledged sequence number
	cp          *Checkpoint           // the records retention deleted; nil when none
	filters     map[uint64]*keyFilter // each segment's key filter, by its first record (keys.go)
	keySeed     maphash.Seed
	waitHook    func() // tests: called when a cursor is about to wait
	queuedHook  func() // tests: called when an Append has queued its record

	// appends queues Append's records for the flusher, which alone writes and syncs them
	// (flush.go); quit is closed by Close, and flushed once the flusher has gone.
	appends chan *appendRequest
	quit    chan struct{}
	flushed chan struct{}

	ackMu    sync.Mutex // serialises the writing of cursor files
	pruneMu  sync.Mutex // serialises Prune
	healthMu sync.Mutex // serialises directory probes
}

// Open opens the spool in opts.Dir, creating the directory and a first segment when there
// are none. It checks every record's chain, cuts away a torn final record (and logs it), and
// fails with a *Break (wrapped) at any other damage. Open reads every segment, so it takes
// about as long as Verify.
func Open(opts Options, log *slog.Logger) (*Spool, error) {
	return open(opts, log, osFS{})
}

// open is Open through a given file layer.
func open(opts Options, log *slog.Logger, fsys fileSystem) (*Spool, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("open audit spool: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Spool{opts: opts, fsys: fsys, log: log, wake: make(chan struct{}), acked: map[string]uint64{},
		appends: make(chan *appendRequest, maxBatch), quit: make(chan struct{}), flushed: make(chan struct{}),
		fullSignal: make(chan struct{}, 1), filters: map[uint64]*keyFilter{}, keySeed: maphash.MakeSeed()}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("open audit spool %s: %w", opts.Dir, err)
	}
	go s.flush()
	return s, nil
}

// load creates the directory if need be, recovers the segments and reads the cursors.
func (s *Spool) load() error {
	if err := makeDir(s.fsys, s.opts.Dir); err != nil {
		return err
	}
	var visit func(Record) bool
	if s.opts.Keys != nil {
		segs, err := listSegments(s.fsys, s.opts.Dir)
		if err != nil {
			return err
		}
		firsts := make([]uint64, len(segs))
		for i, seg := range segs {
			firsts[i] = seg.first
		}
		visit = s.indexer(firsts)
	}
	c, err := scanDir(s.fsys, s.opts.Dir, visit)
	if err != nil {
		return err
	}
	if c.report.Break != nil {
		return c.report.Break
	}
	if err := s.finishPrune(c); err != nil {
		return err
	}
	if err := s.recoverSegments(c); err != nil {
		return err
	}
	return s.loadCursors()
}

// recoverSegments cuts a torn tail away, opens (or creates) the last segment for appending,
// and sets the state from the chain's end.
func (s *Spool) recoverSegments(c *chain) error {
	if len(c.segs) == 0 {
		f, err := createSegment(s.fsys, s.opts.Dir, 1)
		if err != nil {
			return err
		}
		s.seg, s.segs = f, []uint64{1}
		return nil
	}
	last := c.segs[len(c.segs)-1]
	if c.report.Torn > 0 {
		if err := truncateSegment(s.fsys, s.opts.Dir, last.name, c.end); err != nil {
			return err
		}
		s.log.Warn("audit spool: cut away a torn record at the end of the last segment (a write cut short by a crash)",
			"segment", last.name, "offset", c.end, "bytes", c.report.Torn)
	}
	f, err := s.fsys.OpenFile(filepath.Join(s.opts.Dir, last.name), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open segment for appending: %w", err)
	}
	if err := f.Sync(); err != nil { // what a crashed process left may be in memory only
		f.Close()
		return fmt.Errorf("fsync segment %s: %w", last.name, err)
	}
	s.seg, s.off, s.size = f, c.end, c.report.Bytes-c.report.Torn
	for _, seg := range c.segs {
		s.segs = append(s.segs, seg.first)
	}
	s.written, s.durable, s.durableOff = c.next-1, c.next-1, c.end
	s.lastHash, s.durableHash = c.prev, c.prev
	return nil
}

// Append adds a record holding payload and returns it once it is on disk: written and its
// segment synced (with the directory, when the record starts a segment). Concurrent Appends
// share writes and syncs: one goroutine, the flusher, takes every record waiting, writes them
// in one write and syncs them with one fsync (group commit). It returns ErrFull, ErrTooLarge,
// ErrClosed, or an error wrapping ErrUnwritable (see the package doc), and never returns a nil
// error for a record that is not on disk.
//
// ctx is checked before the record is written and while waiting for its sync; an Append that
// gives up waiting returns ctx's error, though its record may yet reach disk.
func (s *Spool) Append(ctx context.Context, payload []byte) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, fmt.Errorf("append audit record: %w", err)
	}
	if need := int64(overhead + len(payload)); need > s.opts.SegmentBytes {
		return Record{}, fmt.Errorf("append audit record: %w: %d bytes with framing, and segments hold %d",
			ErrTooLarge, need, s.opts.SegmentBytes)
	}
	req := &appendRequest{ctx: ctx, payload: payload, done: make(chan appendResult, 1)}
	select {
	case s.appends <- req:
		if s.queuedHook != nil {
			s.queuedHook()
		}
	case <-s.quit:
		return Record{}, fmt.Errorf("append audit record: %w", ErrClosed)
	case <-ctx.Done():
		return Record{}, fmt.Errorf("append audit record: %w", ctx.Err())
	}
	var r appendResult
	select {
	case r = <-req.done:
	case <-ctx.Done():
		return Record{}, fmt.Errorf("append audit record: %w", ctx.Err())
	case <-s.flushed: // the flusher has gone; it answered req if it took it
		select {
		case r = <-req.done:
		default:
			r.err = ErrClosed
		}
	}
	if r.err != nil {
		if r.rec.Seq != 0 {
			return Record{}, fmt.Errorf("append audit record %d: %w", r.rec.Seq, r.err)
		}
		return Record{}, fmt.Errorf("append audit record: %w", r.err)
	}
	return r.rec, nil
}

// write adds payload's record to pending, with mu held, rotating first when it would not fit
// the current segment; it returns the record and the epoch it was written in. The flusher's
// next sync writes it to the segment, with every other record pending, in one write.
func (s *Spool) write(payload []byte) (Record, uint64, error) {
	need := int64(overhead + len(payload))
	if err := s.makeRoom(need); err != nil {
		return Record{}, 0, err
	}
	seq, now := s.written+1, time.UnixMilli(s.opts.Clock().UnixMilli()).UTC()
	var sum [32]byte
	s.pending, sum = appendRecord(s.pending, kindEvent, seq, now, s.lastHash, payload)
	s.off += need
	s.size += need
	rec := Record{Seq: seq, Time: now, Prev: s.lastHash, Hash: sum, Payload: payload}
	s.written, s.lastHash, s.full = seq, sum, false
	s.index(s.segs[len(s.segs)-1], payload)
	return rec, s.epoch, nil
}

// makeRoom makes sure, with mu held and no sync under way, that a record of need bytes can be
// written now: the spool usable and not full, and the current segment with room (after
// rotating if need be).
func (s *Spool) makeRoom(need int64) error {
	if err := s.usable(); err != nil {
		return err
	}
	if s.size+need > s.opts.MaxBytes {
		s.full = true
		select {
		case s.fullSignal <- struct{}{}:
		default: // one is waiting already
		}
		return fmt.Errorf("%w: %d of %d bytes used, and the record needs %d",
			ErrFull, s.size, s.opts.MaxBytes, need)
	}
	if s.off == 0 || s.off+need <= s.opts.SegmentBytes {
		return nil
	}
	return s.rotate()
}

// rotate writes pending, syncs and closes the current segment and starts the next, with mu
// held and no sync under way.
func (s *Spool) rotate() error {
	if err := s.flushPending(s.seg); err != nil {
		return s.fail(err)
	}
	if err := s.seg.Sync(); err != nil {
		return s.fail(fmt.Errorf("fsync segment %s: %w", s.segName(), err))
	}
	s.markDurable(s.written, s.off, s.lastHash)
	first := s.written + 1
	f, err := createSegment(s.fsys, s.opts.Dir, first)
	if err != nil {
		return s.fail(err)
	}
	if err := s.seg.Close(); err != nil { // synced already: nothing is lost
		s.log.Warn("audit spool: close segment", "segment", s.segName(), "err", err)
	}
	s.seg, s.segs, s.off, s.durableOff = f, append(s.segs, first), 0, 0
	return nil
}

// sync writes pending to the current segment and syncs it: with mu held on entry and exit,
// but not while it writes and syncs. The flusher calls it, and Close once the flusher has
// gone.
func (s *Spool) sync() {
	s.syncing = true
	f, target, off, sum, buf := s.seg, s.written, s.off, s.lastHash, s.pending
	s.pending, s.spare = s.spare[:0], nil
	s.mu.Unlock()
	err := writeAll(f, buf)
	if err == nil {
		if err = f.Sync(); err != nil {
			err = fmt.Errorf("fsync segment: %w", err)
		}
	}
	s.mu.Lock()
	s.syncing = false
	if cap(buf) <= maxSpare {
		s.spare = buf[:0]
	}
	if err != nil {
		s.fail(fmt.Errorf("segment %s: %w", s.segName(), err))
		return
	}
	if target > s.durable {
		s.markDurable(target, off, sum)
	}
	s.notify()
}

// maxSpare bounds the buffer kept for pending between syncs.
const maxSpare = 1 << 20

// flushPending writes pending to f, with mu held and no sync under way.
func (s *Spool) flushPending(f file) error {
	err := writeAll(f, s.pending)
	s.pending = s.pending[:0]
	if err != nil {
		return fmt.Errorf("segment %s: %w", s.segName(), err)
	}
	return nil
}

// writeAll writes buf to f: nothing when it is empty.
func writeAll(f file, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	if _, err := f.Write(buf); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// markDurable records that the records up to seq, ending at off in the current segment, are
// on disk.
func (s *Spool) markDurable(seq uint64, off int64, sum [32]byte) {
	s.durable, s.durableOff, s.durableHash = seq, off, sum
	s.notify()
}

// notify wakes everyone waiting for a change, with mu held.
func (s *Spool) notify() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// waitLocked waits, with mu held on entry and exit, for the next change or for ctx to end.
func (s *Spool) waitLocked(ctx context.Context) error {
	wake := s.wake
	s.mu.Unlock()
	defer s.mu.Lock()
	select {
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// segName is the current segment's file name.
func (s *Spool) segName() string { return segmentName(s.segs[len(s.segs)-1]) }

// Filled has a value once an Append has been refused with ErrFull since it was last
// received from, so that retention can run at once rather than at its next interval.
func (s *Spool) Filled() <-chan struct{} { return s.fullSignal }

// Size is the bytes of all segments, which Options.MaxBytes bounds.
func (s *Spool) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Close stops taking records, lets the flusher finish the records it took (so the Appends
// waiting for them return), answers queued Appends with ErrClosed, closes the current segment
// and wakes waiting cursors with ErrClosed. Appends after Close return ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.flushed
		return nil
	}
	s.closed = true
	s.notify()
	s.mu.Unlock()
	close(s.quit)
	<-s.flushed
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken == nil && s.written > s.durable {
		s.sync()
	}
	if s.seg == nil {
		return nil
	}
	err := s.seg.Close()
	s.seg = nil
	if err != nil {
		return fmt.Errorf("close audit spool %s: %w", s.opts.Dir, err)
	}
	return nil
}

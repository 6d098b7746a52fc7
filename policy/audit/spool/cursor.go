package spool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Cursor reads a spool's records in order for one sink, and remembers durably (in the file
// cursor-NAME) which the sink has acknowledged. Delivery is at least once: after a crash, or
// a new Cursor of the same name, the records after the last acknowledged one are delivered
// again. A Cursor is for one goroutine; its Spool must stay open while it is used.
type Cursor struct {
	s     *Spool
	name  string
	next  uint64 // the sequence number Next returns next
	f     file   // the segment being read, or nil
	first uint64 // that segment's first sequence number
	off   int64  // where the next record starts in it
}

// Cursor returns a reader for the sink name (1 to 64 of a-z, 0-9, '-' and '_') that starts
// after the last record acknowledged under that name, or, for a name that has acknowledged
// nothing, at the first record the spool holds (after the checkpoint, when retention has
// deleted records). A name that acknowledged less than the checkpoint covers gets ErrPruned
// from Next: its sink lacks records that are gone.
func (s *Spool) Cursor(name string) (*Cursor, error) {
	if !validCursorName(name) {
		return nil, fmt.Errorf("open audit cursor %q: a name is 1 to 64 of a-z, 0-9, '-' and '_'", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("open audit cursor %s: %w", name, ErrClosed)
	}
	next, ok := s.acked[name]
	if !ok {
		next = base(s.cp)
	}
	return &Cursor{s: s, name: name, next: next + 1}, nil
}

// validCursorName reports whether name can name a cursor file.
func validCursorName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return false
		}
	}
	return true
}

// Next returns the next record once it is on disk, waiting (woken by Append, without
// polling) until there is one or ctx ends. It returns ErrClosed when the Spool closes.
func (c *Cursor) Next(ctx context.Context) (Record, error) {
	if err := c.s.waitDurable(ctx, c.next); err != nil {
		return Record{}, fmt.Errorf("read audit record %d for %s: %w", c.next, c.name, err)
	}
	rec, err := c.read()
	if err != nil {
		return Record{}, fmt.Errorf("read audit record %d for %s: %w", c.next, c.name, err)
	}
	c.next = rec.Seq + 1
	return rec, nil
}

// waitDurable waits until the record seq is on disk.
func (s *Spool) waitDurable(ctx context.Context, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.durable < seq {
		if s.closed {
			return ErrClosed
		}
		if s.waitHook != nil {
			s.waitHook()
		}
		if err := s.waitLocked(ctx); err != nil {
			return err
		}
	}
	return nil
}

// read reads records from the cursor's place up to the record c.next, which is on disk,
// moving to the segment that holds it when the current one ends.
func (c *Cursor) read() (Record, error) {
	if c.f == nil {
		if err := c.open(); err != nil {
			return Record{}, err
		}
	}
	for {
		fr, err := readFrame(io.NewSectionReader(c.f, c.off, headerSize+maxBody), headerSize+maxBody)
		if errors.Is(err, io.EOF) {
			if err := c.open(); err != nil {
				return Record{}, err
			}
			continue
		}
		if err == nil && (!fr.hashOK || fr.kind != kindEvent) {
			err = errors.New("the record does not match its hash")
		}
		if err != nil {
			return Record{}, fmt.Errorf("segment %s offset %d: %w", segmentName(c.first), c.off, err)
		}
		c.off += fr.size
		if fr.rec.Seq == c.next {
			return fr.rec, nil
		}
	}
}

// open opens the segment that holds the record c.next, from its start.
func (c *Cursor) open() error {
	first, kept := c.s.segmentOf(c.next)
	if c.next < kept {
		return fmt.Errorf("%w: the spool starts at record %d, after its checkpoint", ErrPruned, kept)
	}
	if c.f != nil && first == c.first {
		return fmt.Errorf("record not found in segment %s", segmentName(first))
	}
	f, err := c.s.fsys.OpenFile(filepath.Join(c.s.opts.Dir, segmentName(first)), os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open segment: %w", err)
	}
	c.Close()
	c.f, c.first, c.off = f, first, 0
	return nil
}

// segmentOf is the first sequence number of the segment that holds the record seq, and the
// first record the spool holds.
func (s *Spool) segmentOf(seq uint64) (first, kept uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first = s.segs[0]
	for _, f := range s.segs {
		if f <= seq {
			first = f
		}
	}
	return first, base(s.cp) + 1
}

// Close releases the segment the cursor reads; the next Next opens it again.
func (c *Cursor) Close() {
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
}

// Ack records durably that the sink has every record up to seq, which Next must have
// returned. Acknowledging less than before changes nothing.
func (c *Cursor) Ack(seq uint64) error {
	if seq >= c.next {
		return fmt.Errorf("acknowledge audit record %d for %s: only records up to %d were delivered",
			seq, c.name, c.next-1)
	}
	return c.s.ack(c.name, seq)
}

// ack writes the cursor file of name, unless it already holds seq or more.
func (s *Spool) ack(name string, seq uint64) error {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.mu.Lock()
	done := s.acked[name]
	s.mu.Unlock()
	if seq <= done {
		return nil
	}
	data := []byte(strconv.FormatUint(seq, 10) + "\n")
	if err := writeFileAtomic(s.fsys, s.opts.Dir, cursorPrefix+name, data); err != nil {
		return fmt.Errorf("acknowledge audit record %d for %s: %w", seq, name, err)
	}
	s.mu.Lock()
	s.acked[name] = seq
	s.mu.Unlock()
	return nil
}

// Lag is how many records on disk the sink name has not acknowledged; for a name that has
// acknowledged nothing, how many the spool holds.
func (s *Spool) Lag(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	acked, ok := s.acked[name]
	if !ok {
		acked = base(s.cp)
	}
	return s.durable - min(acked, s.durable)
}

// loadCursors reads every cursor file. A cursor that acknowledged a record the spool does not
// hold means records were lost or removed: Open refuses to go on.
func (s *Spool) loadCursors() error {
	entries, err := s.fsys.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("list cursors: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), cursorPrefix)
		if !ok || !validCursorName(name) {
			continue
		}
		data, err := readFile(s.fsys, filepath.Join(s.opts.Dir, e.Name()))
		if err != nil {
			return fmt.Errorf("read cursor %s: %w", name, err)
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(string(data), "\n"), 10, 64)
		if err != nil {
			return fmt.Errorf("read cursor %s: %q is not a sequence number", name, data)
		}
		if seq > s.durable {
			return fmt.Errorf("cursor %s acknowledged record %d, but the spool ends at record %d "+
				"(records lost or removed)", name, seq, s.durable)
		}
		s.acked[name] = seq
	}
	return nil
}

// Scan calls fn with each record on disk from the sequence number from (1 for the first) to the
// last durable when Scan began, in order, until fn returns false. It remembers nothing: no
// cursor file is written. It is for reports over the record, not for delivery.
//
// When retention has deleted records, a Scan from 0 or 1 starts at the first record kept, so a
// report covers the period retained; a Scan from a later record that was deleted returns
// ErrPruned.
func (s *Spool) Scan(ctx context.Context, from uint64, fn func(Record) bool) error {
	return s.scan(ctx, from, nil, fn)
}

// scan is Scan over the segments for which keep, called with mu held with each segment's first
// record, is true (all when keep is nil).
func (s *Spool) scan(ctx context.Context, from uint64, keep func(first uint64) bool, fn func(Record) bool) error {
	s.mu.Lock()
	end, closed, segs := s.durable, s.closed, s.segs
	// The current segment is read only up to its last durable record: bytes after it may be
	// cut away and written again by a repair (see the package doc).
	current, currentEnd := segs[len(segs)-1], s.durableOff
	if from <= 1 {
		from = base(s.cp) + 1
	}
	kept := base(s.cp) + 1
	var read []uint64
	for i, first := range segs {
		if i+1 < len(segs) && segs[i+1] <= from || first > end {
			continue // ends before from, or starts after end
		}
		if keep == nil || keep(first) {
			read = append(read, first)
		}
	}
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("scan audit records: %w", ErrClosed)
	}
	if from < kept {
		return fmt.Errorf("scan audit records: %w: the spool starts at record %d, after its checkpoint", ErrPruned, kept)
	}
	for _, first := range read {
		limit := int64(-1)
		if first == current {
			limit = currentEnd
		}
		more, err := s.scanSegment(ctx, first, limit, from, end, fn)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// scanSegment is Scan over the segment whose first record is first, read through a buffer up
// to limit bytes (-1: the whole file, which no longer grows). It reports whether Scan should
// go on to the next segment.
func (s *Spool) scanSegment(ctx context.Context, first uint64, limit int64, from, end uint64, fn func(Record) bool) (bool, error) {
	name := segmentName(first)
	f, err := s.fsys.OpenFile(filepath.Join(s.opts.Dir, name), os.O_RDONLY, 0)
	if err != nil {
		return false, fmt.Errorf("scan audit records: open segment: %w", err)
	}
	defer f.Close()
	if limit < 0 {
		info, err := f.Stat()
		if err != nil {
			return false, fmt.Errorf("scan audit records: segment %s: %w", name, err)
		}
		limit = info.Size()
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, limit), 1<<16)
	for off := int64(0); off < limit; {
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("scan audit records: %w", err)
		}
		fr, err := readFrame(r, limit-off)
		if err == nil && (!fr.hashOK || fr.kind != kindEvent) {
			err = errors.New("the record does not match its hash")
		}
		if err != nil {
			return false, fmt.Errorf("scan audit records: segment %s offset %d: %w", name, off, err)
		}
		off += fr.size
		switch seq := fr.rec.Seq; {
		case seq < from:
		case seq > end:
			return false, nil
		case !fn(fr.rec):
			return false, nil
		}
	}
	return true, nil
}

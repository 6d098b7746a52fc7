package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// chain walks a spool's records in order, checking that each links to the one before.
type chain struct {
	fsys    fileSystem
	dir     string
	segs    []segment
	cp      *Checkpoint // the checkpoint the chain starts from, or nil
	covered []segment   // segments wholly before the checkpoint, which Open deletes
	next    uint64      // the sequence number expected next
	prev    [32]byte    // the hash the next record must name as its prev
	end     int64       // the length of the last segment's sound records
	report  Report

	visit   func(Record) bool // called with each sound record, in order; nil for none
	stopped bool              // visit returned false
}

// scanDir checks every segment of dir, calling visit (when not nil) with each sound record
// until it returns false. A break in the chain is in report.Break; the error is for a
// directory or file that cannot be read.
func scanDir(fsys fileSystem, dir string, visit func(Record) bool) (*chain, error) {
	segs, err := listSegments(fsys, dir)
	if err != nil {
		return nil, err
	}
	c := &chain{fsys: fsys, dir: dir, segs: segs, next: 1, visit: visit}
	if err := c.start(); err != nil || c.report.Break != nil {
		return c, err
	}
	for i := range c.segs {
		c.report.Segments++
		if err := c.segment(i); err != nil {
			return nil, err
		}
		if c.report.Break != nil || c.stopped {
			break
		}
	}
	return c, nil
}

// start reads the checkpoint, if there is one: the chain then starts after it, and the
// segments wholly before it (left by a prune cut short) are set aside as covered. A checkpoint
// that cannot be trusted, or one with no segment after it, is a break.
func (c *chain) start() error {
	cp, problem, err := readCheckpoint(c.fsys, c.dir)
	switch {
	case err != nil:
		return err
	case problem != "":
		c.report.Break = &Break{Segment: checkpointFile, Seq: 1, Problem: problem}
		return nil
	case cp == nil:
		return nil
	}
	c.cp, c.report.Checkpoint = cp, cp
	c.next, c.prev = cp.LastSeq+1, cp.LastHash
	for len(c.segs) > 1 && c.segs[1].first <= c.next {
		c.covered, c.segs = append(c.covered, c.segs[0]), c.segs[1:]
	}
	c.report.Covered = len(c.covered)
	if len(c.segs) == 0 {
		c.fail(checkpointFile, 0, fmt.Sprintf("no segment follows the checkpoint, which covers records 1 to %d "+
			"(the segments after it deleted)", cp.LastSeq))
	}
	return nil
}

// segment checks the records of segment i.
func (c *chain) segment(i int) error {
	seg, last := c.segs[i], i == len(c.segs)-1
	f, err := c.fsys.OpenFile(filepath.Join(c.dir, seg.name), os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open segment: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat segment %s: %w", seg.name, err)
	}
	size := info.Size()
	c.report.Bytes += size
	if !c.startsAt(seg, size, last) {
		return nil
	}
	// The segment is read as it stood at Stat: one a Spool is appending to may grow meanwhile,
	// and bytes past size would read as a record the segment's end cuts short.
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<16)
	for off := int64(0); ; {
		fr, err := readFrame(r, size-off)
		var bad *frameError
		switch {
		case errors.Is(err, io.EOF):
			c.end = off
			return nil
		case errors.As(err, &bad):
			return c.badFrame(f, seg, off, size, last, bad)
		case err != nil:
			return fmt.Errorf("read segment %s at offset %d: %w", seg.name, off, err)
		}
		if !c.link(seg, off, fr) {
			return nil
		}
		off += fr.size
	}
}

// startsAt checks that a segment's name follows on from the records before it and that only
// the last segment is empty; it records a break and reports false otherwise.
func (c *chain) startsAt(seg segment, size int64, last bool) bool {
	switch {
	case seg.first > c.next:
		c.fail(seg.name, 0, c.missing(seg.first))
	case seg.first < c.next && c.atCheckpoint():
		c.fail(seg.name, 0, fmt.Sprintf("the segment starts at record %d, inside what the checkpoint "+
			"says was deleted (records 1 to %d): the chain does not continue from the checkpoint", seg.first, c.next-1))
	case seg.first < c.next:
		c.fail(seg.name, 0, fmt.Sprintf("the segment's name says it starts at record %d, "+
			"which came before (segments copied or renamed)", seg.first))
	case size == 0 && !last:
		c.fail(seg.name, 0, "the segment is empty, yet later segments exist (truncated)")
	default:
		return true
	}
	return false
}

// badFrame handles a record whose framing is broken at off: at the end of the last segment,
// with no sound record after it, it is a torn write; anywhere else it is a break.
func (c *chain) badFrame(f file, seg segment, off, size int64, last bool, bad *frameError) error {
	if last {
		rest := make([]byte, size-off-1)
		if _, err := f.ReadAt(rest, off+1); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read segment %s after offset %d: %w", seg.name, off, err)
		}
		if !frameAt(rest) {
			c.end, c.report.Torn = off, size-off
			return nil
		}
	}
	problem := bad.problem
	if !last && bad.short {
		problem += " (truncated in the middle of the spool)"
	}
	c.fail(seg.name, off, problem)
	return nil
}

// link checks that a record follows on from the one before; it records the record, or a
// break, and reports whether to read on: the chain holds and visit did not stop.
func (c *chain) link(seg segment, off int64, fr frame) bool {
	rec := fr.rec
	switch {
	case !fr.hashOK:
		c.fail(seg.name, off, "the record's hash does not match its content (edited)")
	case fr.kind != kindEvent:
		c.fail(seg.name, off, fmt.Sprintf("a record of kind %d: segments hold only events "+
			"(the checkpoint is a file of its own)", fr.kind))
	case rec.Seq > c.next:
		c.fail(seg.name, off, c.missing(rec.Seq))
	case rec.Seq < c.next:
		c.fail(seg.name, off, fmt.Sprintf("record %d stands where record %d should "+
			"(records reordered or copied)", rec.Seq, c.next))
	case rec.Prev != c.prev && c.atCheckpoint():
		c.fail(seg.name, off, fmt.Sprintf("the record does not name the hash of record %d that the "+
			"checkpoint gives as its previous: the chain does not continue from the checkpoint", c.next-1))
	case rec.Prev != c.prev:
		c.fail(seg.name, off, fmt.Sprintf("the record does not name the hash of record %d as "+
			"its previous (record %d edited, or this one replaced)", c.next-1, c.next-1))
	default:
		c.accept(rec)
		c.stopped = c.visit != nil && !c.visit(rec)
		return !c.stopped
	}
	return false
}

// atCheckpoint reports whether the chain expects the first record after its checkpoint.
func (c *chain) atCheckpoint() bool { return c.cp != nil && c.next == c.cp.LastSeq+1 }

// accept counts a sound record and moves the chain past it.
func (c *chain) accept(rec Record) {
	if c.report.Records == 0 {
		c.report.FirstSeq, c.report.FirstTime = rec.Seq, rec.Time
	}
	c.report.Records++
	c.report.LastSeq, c.report.LastTime = rec.Seq, rec.Time
	c.next, c.prev = rec.Seq+1, rec.Hash
}

// fail records the first break, at the record the chain expects next.
func (c *chain) fail(segment string, off int64, problem string) {
	c.report.Break = &Break{Segment: segment, Offset: off, Seq: c.next, Problem: problem}
}

// missing says what a jump from the expected record to found means: the expected record
// stands elsewhere (reordered) or nowhere (deleted).
func (c *chain) missing(found uint64) string {
	if seg, off, ok := c.find(c.next); ok {
		return fmt.Sprintf("record %d is missing here; it stands in segment %s at offset %d "+
			"(records reordered)", c.next, seg, off)
	}
	if found == c.next+1 {
		return fmt.Sprintf("record %d is missing (deleted)", c.next)
	}
	return fmt.Sprintf("records %d to %d are missing (deleted)", c.next, found-1)
}

// find looks through every segment for the record seq, reading each segment's records up to
// its first broken one.
func (c *chain) find(seq uint64) (string, int64, bool) {
	for _, seg := range c.segs {
		f, err := c.fsys.OpenFile(filepath.Join(c.dir, seg.name), os.O_RDONLY, 0)
		if err != nil {
			continue
		}
		off, ok := findIn(f, seq)
		f.Close()
		if ok {
			return seg.name, off, true
		}
	}
	return "", 0, false
}

// findIn returns the offset of the record seq in a segment's records.
func findIn(f file, seq uint64) (int64, bool) {
	info, err := f.Stat()
	if err != nil {
		return 0, false
	}
	r := bufio.NewReader(f)
	for off := int64(0); ; {
		fr, err := readFrame(r, info.Size()-off)
		if err != nil {
			return 0, false
		}
		if fr.rec.Seq == seq {
			return off, true
		}
		off += fr.size
	}
}

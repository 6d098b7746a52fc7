package spool

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ErrPruned means a record asked for was deleted by retention: the spool now starts after its
// checkpoint.
var ErrPruned = errors.New("audit record deleted by retention")

// Retention says which records Prune may delete. It has no defaults: every field is required.
type Retention struct {
	// Before is the cut-off: a segment is deleted only when every record in it is older.
	Before time.Time
	// Sinks are the cursors that must have acknowledged every record of a segment before it is
	// deleted: every sink the records are forwarded to. A name with no cursor yet has
	// acknowledged nothing, and so holds every record back. There must be at least one: with
	// none, the spool holds the only copy of the record, and nothing may be deleted.
	Sinks []string
	// Key signs the checkpoint.
	Key ed25519.PrivateKey
}

// validate reports the first missing or wrong field of r, by name.
func (r Retention) validate() error {
	switch {
	case r.Before.IsZero():
		return errors.New("Retention.Before is not set")
	case len(r.Sinks) == 0:
		return errors.New("Retention.Sinks is empty: with no sink the spool holds the only copy of the record, which retention never deletes")
	case len(r.Key) != ed25519.PrivateKeySize:
		return errors.New("Retention.Key is not an Ed25519 private key")
	}
	for _, name := range r.Sinks {
		if !validCursorName(name) {
			return fmt.Errorf("Retention.Sinks: %q cannot name a cursor", name)
		}
	}
	return nil
}

// Pruned is what a Prune deleted.
type Pruned struct {
	// Segments, Records and Bytes are what this Prune deleted.
	Segments int
	Records  uint64
	Bytes    int64
	// Checkpoint is the checkpoint in force after it; nil when nothing was ever deleted.
	Checkpoint *Checkpoint
}

// Prune deletes the oldest closed segments whose every record is older than r.Before and has
// been acknowledged by every cursor in r.Sinks, never the segment being written, and leaves a
// checkpoint signed with r.Key that covers every record deleted so far, so the chain still
// verifies. The checkpoint is made durable before any segment is deleted; a crash between the
// two leaves segments it covers, which Open deletes. Prune reads the segments it deletes and
// checks their chain first: it deletes nothing from a broken chain. It frees room: a spool
// that was full takes records again. Appends go on meanwhile; one Prune runs at a time.
//
// Cursors and Scan then start at the first record kept; a Cursor whose sink had acknowledged
// less than the checkpoint (one not among r.Sinks) gets ErrPruned.
func (s *Spool) Prune(ctx context.Context, r Retention) (Pruned, error) {
	if err := r.validate(); err != nil {
		return Pruned{}, fmt.Errorf("prune audit spool: %w", err)
	}
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	if _, _, err := s.removeCovered(); err != nil { // left by a Prune that failed to delete
		return Pruned{}, fmt.Errorf("prune audit spool: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Pruned{}, fmt.Errorf("prune audit spool: %w", ErrClosed)
	}
	cp, segs, acked := s.cp, append([]uint64(nil), s.segs...), s.durable
	for _, name := range r.Sinks {
		acked = min(acked, s.acked[name])
	}
	s.mu.Unlock()
	next, err := s.nextCheckpoint(ctx, cp, segs, acked, r)
	if err != nil || next == nil {
		return Pruned{Checkpoint: cp}, err
	}
	if err := writeFileAtomic(s.fsys, s.opts.Dir, checkpointFile, encodeCheckpoint(next, r.Key)); err != nil {
		return Pruned{Checkpoint: cp}, fmt.Errorf("prune audit spool: write the checkpoint: %w", err)
	}
	s.mu.Lock()
	s.cp = next
	s.mu.Unlock()
	n, bytes, err := s.removeCovered()
	done := Pruned{Segments: n, Records: next.LastSeq - base(cp), Bytes: bytes, Checkpoint: next}
	if err != nil {
		return done, fmt.Errorf("prune audit spool: the checkpoint covers records up to %d, but: %w", next.LastSeq, err)
	}
	return done, nil
}

// base is the last record a checkpoint covers; 0 for none.
func base(cp *Checkpoint) uint64 {
	if cp == nil {
		return 0
	}
	return cp.LastSeq
}

// nextCheckpoint reads, from the oldest, the closed segments of segs whose records acked
// covers, as long as each holds only records older than r.Before, checking their chain from
// cp; it returns the checkpoint that covers them, unsigned, or nil when none can go.
func (s *Spool) nextCheckpoint(ctx context.Context, cp *Checkpoint, segs []uint64, acked uint64, r Retention) (*Checkpoint, error) {
	c := &chain{fsys: s.fsys, dir: s.opts.Dir, cp: cp, next: base(cp) + 1}
	if cp != nil {
		c.prev = cp.LastHash
	}
	for _, first := range segs {
		c.segs = append(c.segs, segment{name: segmentName(first), first: first})
	}
	var firstTime time.Time
	var last, segLast Record
	old := true
	c.visit = func(rec Record) bool {
		if old = rec.Time.Before(r.Before); !old {
			return false
		}
		if firstTime.IsZero() {
			firstTime = rec.Time
		}
		segLast = rec
		return true
	}
	n := 0
	for i := 0; i+1 < len(segs) && segs[i+1]-1 <= acked; i++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("prune audit spool: %w", err)
		}
		if err := c.segment(i); err != nil {
			return nil, fmt.Errorf("prune audit spool: %w", err)
		}
		if c.report.Break != nil {
			return nil, fmt.Errorf("prune audit spool: nothing deleted: %w", c.report.Break)
		}
		if !old {
			break
		}
		if segLast.Seq != segs[i+1]-1 {
			return nil, fmt.Errorf("prune audit spool: nothing deleted: segment %s ends at record %d, and the next starts at %d",
				segmentName(segs[i]), segLast.Seq, segs[i+1])
		}
		last, n = segLast, i+1
	}
	if n == 0 {
		return nil, nil
	}
	next := &Checkpoint{LastSeq: last.Seq, LastHash: last.Hash, Records: last.Seq, Segments: uint64(n),
		FirstTime: firstTime, LastTime: last.Time, Created: time.UnixMilli(s.opts.Clock().UnixMilli()).UTC(),
		Key: r.Key.Public().(ed25519.PublicKey)}
	if cp != nil {
		next.Segments += cp.Segments
		next.FirstTime = cp.FirstTime
	}
	return next, nil
}

// removeCovered deletes, oldest first, the segments the checkpoint covers wholly, and syncs
// the directory; it returns how many it deleted and their bytes.
func (s *Spool) removeCovered() (n int, bytes int64, err error) {
	for {
		s.mu.Lock()
		if s.cp == nil || len(s.segs) < 2 || s.segs[1] > s.cp.LastSeq+1 {
			s.mu.Unlock()
			break
		}
		name := segmentName(s.segs[0])
		s.mu.Unlock()
		size, err := s.removeSegment(name)
		if err != nil {
			return n, bytes, err
		}
		s.mu.Lock()
		delete(s.filters, s.segs[0])
		s.segs = s.segs[1:]
		s.size -= size
		s.full = false // Append and Healthy measure the room afresh
		s.mu.Unlock()
		n, bytes = n+1, bytes+size
	}
	if n == 0 {
		return 0, 0, nil
	}
	return n, bytes, syncDir(s.fsys, s.opts.Dir)
}

// removeSegment deletes a segment file and returns its size.
func (s *Spool) removeSegment(name string) (int64, error) {
	path := filepath.Join(s.opts.Dir, name)
	f, err := s.fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("delete segment %s: %w", name, err)
	}
	info, err := f.Stat()
	f.Close()
	if err == nil {
		err = s.fsys.Remove(path)
	}
	if err != nil {
		return 0, fmt.Errorf("delete segment %s: %w", name, err)
	}
	return info.Size(), nil
}

// finishPrune, as Open loads the spool, takes the chain's checkpoint and deletes the segments
// it covers that a crash left between the checkpoint and their deletion.
func (s *Spool) finishPrune(c *chain) error {
	s.cp = c.cp
	for _, seg := range c.covered {
		if err := s.fsys.Remove(filepath.Join(s.opts.Dir, seg.name)); err != nil {
			return fmt.Errorf("delete segment %s, which the checkpoint covers: %w", seg.name, err)
		}
	}
	if len(c.covered) == 0 {
		return nil
	}
	s.log.Warn("audit spool: deleted segments a prune cut short left after its checkpoint",
		"segments", len(c.covered), "checkpoint", c.cp.LastSeq)
	return syncDir(s.fsys, s.opts.Dir)
}

// Checkpoint is a copy of the spool's checkpoint, nil when retention has deleted nothing. Its
// signature held for the key it names when the spool was opened or pruned; whether that key
// is the operator's is for the caller to judge (see VerifyKey).
func (s *Spool) Checkpoint() *Checkpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cp == nil {
		return nil
	}
	cp := *s.cp
	return &cp
}

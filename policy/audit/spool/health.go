package spool

import (
	"fmt"
	"os"
	"path/filepath"
)

// Healthy returns nil when an Append could succeed now: the spool open and not broken (a due
// probe is tried first), not full, and its directory writable (a file created and removed
// there). Otherwise it returns ErrClosed, ErrFull or an error wrapping ErrUnwritable; /readyz
// reports not ready on any of them. Full means the last Append was refused for room, or there
// is no room for a record with an empty payload.
func (s *Spool) Healthy() error {
	s.mu.Lock()
	err := s.usable()
	if err == nil && (s.full || s.size+overhead > s.opts.MaxBytes) {
		err = fmt.Errorf("%w: %d of %d bytes used", ErrFull, s.size, s.opts.MaxBytes)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.checkDir()
}

// checkDir tests that a file can be created in the directory.
func (s *Spool) checkDir() error {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	path := filepath.Join(s.opts.Dir, healthProbe)
	f, err := s.fsys.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err == nil {
		err = f.Close()
		if rerr := s.fsys.Remove(path); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("%w: the directory cannot be written: %w", ErrUnwritable, err)
	}
	return nil
}

// usable returns why no record can be written now, with mu held: closed, or broken. A broken
// spool whose probe is due is probed first.
func (s *Spool) usable() error {
	if s.closed {
		return ErrClosed
	}
	if s.broken != nil && !s.syncing && s.opts.Clock().Sub(s.lastProbe) >= probeInterval {
		s.probe()
	}
	return s.broken
}

// fail marks the spool broken by err, with mu held, and returns err wrapped in ErrUnwritable.
func (s *Spool) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrUnwritable, err)
	if s.broken == nil {
		s.log.Error("audit spool cannot be written: data requests will be refused", "dir", s.opts.Dir, "err", err)
	}
	s.broken, s.lastProbe = err, s.opts.Clock()
	s.notify()
	return err
}

// probe tries to repair a broken spool, with mu held and no sync under way.
func (s *Spool) probe() {
	s.lastProbe = s.opts.Clock()
	if err := s.restart(); err != nil {
		s.broken = fmt.Errorf("%w: %w", ErrUnwritable, err)
		s.log.Warn("audit spool still cannot be written", "dir", s.opts.Dir, "err", err)
		return
	}
	s.broken = nil
	s.epoch++ // commits of records written before are refused
	s.log.Info("audit spool can be written again", "dir", s.opts.Dir, "next", s.written+1)
	s.notify()
}

// restart goes back to the last record known to be on disk: it cuts the current segment to
// its end and starts the next segment after it, all synced. If the segment holds no such
// record it is emptied and started afresh instead. Each step can be tried again.
func (s *Spool) restart() error {
	if s.seg != nil {
		s.seg.Close() // its errors may hide lost writes: the file is opened anew
		s.seg = nil
	}
	cur := s.segs[len(s.segs)-1]
	if s.durableOff > 0 {
		if err := truncateSegment(s.fsys, s.opts.Dir, segmentName(cur), s.durableOff); err != nil {
			return err
		}
		s.size -= s.off - s.durableOff
		s.off, cur = s.durableOff, s.durable+1
	}
	f, err := createSegment(s.fsys, s.opts.Dir, cur)
	if err != nil {
		return err
	}
	if cur != s.segs[len(s.segs)-1] {
		s.segs = append(s.segs, cur)
		s.off = 0
	}
	s.size -= s.off
	s.seg, s.off, s.durableOff = f, 0, 0
	s.written, s.lastHash, s.pending = s.durable, s.durableHash, s.pending[:0]
	return nil
}

package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// appended collects the payloads whose Append returned success, from many goroutines.
type appended struct {
	mu  sync.Mutex
	ok  []string
	bad int
}

// try appends payload(i) and notes whether it succeeded; a failure must be ErrUnwritable.
func (a *appended) try(t *testing.T, s *Spool, i int) error {
	_, err := s.Append(context.Background(), payload(i))
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		a.ok = append(a.ok, string(payload(i)))
	} else {
		a.bad++
		if !errors.Is(err, ErrUnwritable) {
			t.Errorf("append failed with %v; want ErrUnwritable", err)
		}
	}
	return err
}

// concurrently appends from goroutines at once, each payloads in turn.
func (a *appended) concurrently(t *testing.T, s *Spool, goroutines, each int) {
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				a.try(t, s, g*each+i)
			}
		})
	}
	wg.Wait()
}

// checkAfterPowerLoss loses power, opens the spool again and checks that it holds exactly
// the payloads whose Append succeeded, in a chain that verifies.
func checkAfterPowerLoss(t *testing.T, fsys *faultFS, opts Options, a *appended) {
	t.Helper()
	fsys.powerLoss(t, opts.Dir)
	s := mustOpen(t, opts, nil)
	got := payloads(readAll(t, s))
	s.Close()
	mustVerify(t, opts.Dir)
	want := slices.Clone(a.ok)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("after power loss the spool holds %d records %v; want the %d whose Append succeeded %v",
			len(got), got, len(want), want)
	}
}

func TestUnwritableDirectory(t *testing.T) {
	clock := newClock()
	opts := testOptions(t, clock)
	opts.SegmentBytes = 2 * recordSize
	fsys := newFaultFS()
	s := mustOpen(t, opts, fsys)
	defer s.Close()
	var a appended
	a.try(t, s, 0)
	restore := denyDirectory(t, fsys, opts.Dir)
	if err := s.Healthy(); !errors.Is(err, ErrUnwritable) {
		t.Errorf("Healthy() with a read-only directory = %v; want ErrUnwritable", err)
	}
	a.try(t, s, 1) // fits the open segment
	if err := a.try(t, s, 2); !errors.Is(err, ErrUnwritable) || !errors.Is(err, os.ErrPermission) {
		t.Fatalf("append that must start a segment = %v; want ErrUnwritable for lack of permission", err)
	}
	clock.Add(probeInterval)
	if err := a.try(t, s, 3); err == nil {
		t.Fatal("append succeeded while the directory is still read-only")
	}
	restore()
	if err := a.try(t, s, 4); err == nil {
		t.Fatal("append succeeded before the next probe was due")
	}
	clock.Add(probeInterval)
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy() after the directory is writable again = %v", err)
	}
	a.try(t, s, 5)
	if len(a.ok) != 3 {
		t.Errorf("appends that succeeded: %v; want 0, 1 and 5", a.ok)
	}
	checkAfterPowerLoss(t, fsys, opts, &a)
}

// denyDirectory makes dir read-only: by its mode, or, as root (whom modes do not deny),
// through the file layer. It returns the function that makes it writable again.
func denyDirectory(t *testing.T, fsys *faultFS, dir string) (restore func()) {
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		return func() { os.Chmod(dir, 0o700) }
	}
	t.Log("running as root, where chmod cannot deny: the file layer refuses to create files instead")
	fsys.set(func(fs *faultFS) {
		fs.failCreate = func(path string) error {
			if filepath.Dir(path) == dir {
				return syscall.EACCES
			}
			return nil
		}
	})
	return func() { fsys.set(func(fs *faultFS) { fs.failCreate = nil }) }
}

// TestWriteOrSyncFailure breaks the spool with a write cut short (disk full) or a failed
// fsync. The fsync case is fsyncgate: the failure lost the unsynced bytes, though the file
// still shows them and later fsyncs succeed. Nothing written before the failure and not
// synced may be reported durable, nor anything written later on top of the lost bytes.
func TestWriteOrSyncFailure(t *testing.T) {
	tests := []struct {
		name   string
		inject func(fs *faultFS)
		cause  error
	}{
		{"write fails, disk full", func(fs *faultFS) { fs.failWrite = failOnce(syscall.ENOSPC) }, syscall.ENOSPC},
		{"fsync fails", func(fs *faultFS) { fs.failSync = failOnce(syscall.EIO) }, syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			opts := testOptions(t, clock)
			fsys := newFaultFS()
			s := mustOpen(t, opts, fsys)
			defer s.Close()
			var a appended
			a.try(t, s, 0)
			fsys.set(tt.inject)
			if err := a.try(t, s, 1); !errors.Is(err, tt.cause) {
				t.Fatalf("append = %v; want ErrUnwritable wrapping %v", err, tt.cause)
			}
			if err := s.Healthy(); !errors.Is(err, ErrUnwritable) || !errors.Is(err, tt.cause) {
				t.Errorf("Healthy() = %v; want ErrUnwritable with the cause", err)
			}
			if err := a.try(t, s, 2); err == nil {
				t.Fatal("append succeeded on a broken spool before a probe")
			}
			clock.Add(probeInterval)
			if err := s.Healthy(); err != nil {
				t.Fatalf("Healthy() after a good probe = %v", err)
			}
			if rec, err := s.Append(context.Background(), payload(3)); err != nil || rec.Seq != 2 {
				t.Fatalf("append after the probe = record %d, %v; want record 2", rec.Seq, err)
			}
			a.ok = append(a.ok, string(payload(3)))
			a.try(t, s, 4)
			checkAfterPowerLoss(t, fsys, opts, &a)
		})
	}
}

func TestSyncFailureUnderLoad(t *testing.T) {
	const goroutines, each = 8, 40
	clock := newClock()
	opts := testOptions(t, clock)
	opts.SegmentBytes = 2 << 10
	fsys := newFaultFS()
	s := mustOpen(t, opts, fsys)
	defer s.Close()
	syncs := 0
	fsys.set(func(fs *faultFS) {
		fs.failSync = func(path string) error {
			if syncs++; syncs == 12 || syncs == 30 {
				clock.Add(probeInterval) // probes due again after each failure
				return syscall.EIO
			}
			return nil
		}
	})
	var a appended
	a.concurrently(t, s, goroutines, each)
	clock.Add(time.Hour)
	a.try(t, s, goroutines*each)
	if a.bad == 0 || len(a.ok) < 2 {
		t.Fatalf("%d appends succeeded and %d failed; want both", len(a.ok), a.bad)
	}
	checkAfterPowerLoss(t, fsys, opts, &a)
}

func TestPowerLossKeepsEveryAppend(t *testing.T) {
	const goroutines, each = 8, 40
	opts := testOptions(t, newClock())
	opts.SegmentBytes = 2 << 10
	fsys := newFaultFS()
	s := mustOpen(t, opts, fsys)
	defer s.Close()
	var a appended
	a.concurrently(t, s, goroutines, each)
	checkAfterPowerLoss(t, fsys, opts, &a) // before Close: a crash
	if len(a.ok) != goroutines*each {
		t.Errorf("%d appends succeeded; want all %d", len(a.ok), goroutines*each)
	}
}

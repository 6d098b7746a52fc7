package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 9, 30, 0, 123_456_789, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testOptions are options for a spool in a new directory, with room to spare.
func testOptions(t testing.TB, clock *fakeClock) Options {
	return Options{Dir: filepath.Join(t.TempDir(), "spool"), SegmentBytes: 1 << 20, MaxBytes: 1 << 30, Clock: clock.Now}
}

// mustOpen opens a spool through fsys (nil for the operating system's files).
func mustOpen(t testing.TB, opts Options, fsys fileSystem) *Spool {
	t.Helper()
	if fsys == nil {
		fsys = osFS{}
	}
	s, err := open(opts, slog.New(slog.DiscardHandler), fsys)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

// payload is the test payload number i; all have the same length.
func payload(i int) []byte { return fmt.Appendf(nil, "event-%04d", i) }

// appendN appends payloads from..to-1 and fails the test on any error.
func appendN(t testing.TB, s *Spool, from, to int) []Record {
	t.Helper()
	var recs []Record
	for i := from; i < to; i++ {
		rec, err := s.Append(context.Background(), payload(i))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// readAll reads every record on disk through a new cursor.
func readAll(t testing.TB, s *Spool) []Record {
	t.Helper()
	c, err := s.Cursor("reader")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var recs []Record
	for c.next <= s.durable {
		rec, err := c.Next(context.Background())
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// payloads lists the records' payloads as strings.
func payloads(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Payload))
	}
	return out
}

// mustVerify verifies dir and fails the test on a break.
func mustVerify(t testing.TB, dir string) Report {
	t.Helper()
	rep, err := Verify(dir)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

// faultFS is the operating system's files with counters and injected faults. It remembers,
// for each file, how much a successful fsync made durable and which bytes a failed fsync lost,
// so powerLoss can leave the files as a disk would after losing power.
type faultFS struct {
	osFS
	mu         sync.Mutex
	writes     int
	fileSyncs  int
	dirSyncs   int
	synced     map[string]int64    // bytes on disk at the last successful fsync
	lost       map[string][2]int64 // bytes a failed fsync lost, start and end
	failCreate func(path string) error
	failWrite  func(path string) error
	failSync   func(path string) error
	onWrite    func(writes int)
	beforeSync func(path string)
}

func newFaultFS() *faultFS {
	return &faultFS{synced: map[string]int64{}, lost: map[string][2]int64{}}
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (file, error) {
	if flag&os.O_CREATE != 0 {
		if err := fs.fault(fs.failCreate, name); err != nil {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
	}
	f, err := fs.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if flag&os.O_TRUNC != 0 {
		fs.mu.Lock()
		delete(fs.lost, name) // as Truncate(0): the bytes a failed fsync lost are cut away
		fs.mu.Unlock()
	}
	return &faultFile{file: f, fs: fs, name: name}, nil
}

func (fs *faultFS) Rename(oldname, newname string) error {
	if err := fs.fault(fs.failCreate, newname); err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	return fs.osFS.Rename(oldname, newname)
}

func (fs *faultFS) Remove(name string) error {
	if err := fs.fault(fs.failCreate, name); err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	return fs.osFS.Remove(name)
}

// fault calls an injected fault function, if any, under the lock.
func (fs *faultFS) fault(f func(string) error, path string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(path)
}

// set changes the faults and hooks under the lock.
func (fs *faultFS) set(change func(fs *faultFS)) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	change(fs)
}

// counts returns the writes and the file and directory syncs so far.
func (fs *faultFS) counts() (writes, fileSyncs, dirSyncs int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.writes, fs.fileSyncs, fs.dirSyncs
}

// powerLoss leaves every segment of dir as the disk holds it: cut to what the last successful
// fsync made durable, with the bytes a failed fsync lost zeroed.
func (fs *faultFS) powerLoss(t testing.TB, dir string) {
	t.Helper()
	segs, err := listSegments(osFS{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, seg := range segs {
		path := filepath.Join(dir, seg.name)
		if err := os.Truncate(path, fs.synced[path]); err != nil {
			t.Fatal(err)
		}
		if l, ok := fs.lost[path]; ok && l[0] < fs.synced[path] {
			zeroRange(t, path, l[0], min(l[1], fs.synced[path]))
		}
	}
}

// zeroRange overwrites bytes from to end of path with zeros.
func zeroRange(t testing.TB, path string, from, end int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, end-from), from); err != nil {
		t.Fatal(err)
	}
}

// faultFile is a file of a faultFS.
type faultFile struct {
	file
	fs   *faultFS
	name string
}

func (f *faultFile) Write(b []byte) (int, error) {
	if err := f.fs.fault(f.fs.failWrite, f.name); err != nil {
		n, _ := f.file.Write(b[:len(b)/2]) // a write cut short
		return n, &os.PathError{Op: "write", Path: f.name, Err: err}
	}
	n, err := f.file.Write(b)
	f.fs.mu.Lock()
	f.fs.writes++
	hook, writes := f.fs.onWrite, f.fs.writes
	f.fs.mu.Unlock()
	if hook != nil {
		hook(writes)
	}
	return n, err
}

func (f *faultFile) Truncate(size int64) error {
	if err := f.file.Truncate(size); err != nil {
		return err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if l, ok := f.fs.lost[f.name]; ok && l[0] >= size {
		delete(f.fs.lost, f.name) // the lost bytes are cut away
	}
	return nil
}

func (f *faultFile) Sync() error {
	info, err := f.file.Stat()
	if err != nil {
		return err
	}
	if info.IsDir() {
		return f.syncDir()
	}
	f.fs.mu.Lock()
	hook := f.fs.beforeSync
	f.fs.mu.Unlock()
	if hook != nil {
		hook(f.name)
	}
	if err := f.fs.fault(f.fs.failSync, f.name); err != nil {
		f.fs.loseUnsynced(f.name, info.Size())
		return &os.PathError{Op: "sync", Path: f.name, Err: err}
	}
	if err := f.file.Sync(); err != nil {
		return err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.fs.fileSyncs++
	f.fs.synced[f.name] = info.Size()
	return nil
}

// syncDir counts and syncs a directory.
func (f *faultFile) syncDir() error {
	if err := f.fs.fault(f.fs.failSync, f.name); err != nil {
		return &os.PathError{Op: "sync", Path: f.name, Err: err}
	}
	f.fs.mu.Lock()
	f.fs.dirSyncs++
	f.fs.mu.Unlock()
	return f.file.Sync()
}

// loseUnsynced records that a failed fsync lost the bytes written since the last good one,
// though the file still shows them, as Linux does after a writeback error.
func (fs *faultFS) loseUnsynced(path string, size int64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if size > fs.synced[path] {
		fs.lost[path] = [2]int64{fs.synced[path], size}
	}
}

// failOnce returns a fault that fails the first call on a segment with err, then none.
func failOnce(err error) func(string) error {
	done := false
	return func(path string) error {
		if done || !strings.HasPrefix(filepath.Base(path), segmentPrefix) {
			return nil
		}
		done = true
		return err
	}
}

// isBreak checks that err is a *Break at the given place whose problem mentions want.
func isBreak(t testing.TB, err error, segment string, off int64, seq uint64, want string) {
	t.Helper()
	var brk *Break
	if !errors.As(err, &brk) {
		t.Fatalf("error %v is not a *Break", err)
	}
	if brk.Segment != segment || brk.Offset != off || brk.Seq != seq || !strings.Contains(brk.Problem, want) {
		t.Errorf("break = %s %d record %d %q; want %s %d record %d %q",
			brk.Segment, brk.Offset, brk.Seq, brk.Problem, segment, off, seq, want)
	}
}

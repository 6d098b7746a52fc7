package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOpenRefusesOptions(t *testing.T) {
	clock := newClock()
	good := Options{Dir: t.TempDir(), SegmentBytes: 1 << 20, MaxBytes: 1 << 30, Clock: clock.Now}
	tests := []struct {
		name   string
		change func(o *Options)
		want   string
	}{
		{"no directory", func(o *Options) { o.Dir = "" }, "Options.Dir is not set"},
		{"no segment size", func(o *Options) { o.SegmentBytes = 0 }, "Options.SegmentBytes is not set"},
		{"no size limit", func(o *Options) { o.MaxBytes = 0 }, "Options.MaxBytes is not set"},
		{"no clock", func(o *Options) { o.Clock = nil }, "Options.Clock is not set"},
		{"segment smaller than a record", func(o *Options) { o.SegmentBytes = overhead }, "Options.SegmentBytes is 97"},
		{"segment over 1 GiB", func(o *Options) { o.SegmentBytes = 2 << 30 }, "Options.SegmentBytes is"},
		{"limit under a segment", func(o *Options) { o.MaxBytes = 1 << 10 }, "Options.MaxBytes is 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := good
			tt.change(&opts)
			_, err := Open(opts, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open() error = %v; want one naming %q", err, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	clock := newClock()
	opts := testOptions(t, clock)
	s := mustOpen(t, opts, nil)
	recs := appendN(t, s, 0, 3)
	for i, rec := range recs {
		if rec.Seq != uint64(i+1) || !bytes.Equal(rec.Payload, payload(i)) {
			t.Errorf("record %d = seq %d %q", i, rec.Seq, rec.Payload)
		}
		if want := clock.Now().Truncate(time.Millisecond); !rec.Time.Equal(want) || rec.Time.Location() != time.UTC {
			t.Errorf("record %d time = %v; want %v in UTC", i, rec.Time, want)
		}
	}
	if recs[0].Prev != ([32]byte{}) || recs[1].Prev != recs[0].Hash || recs[2].Prev != recs[1].Hash {
		t.Error("records do not chain: each Prev must be the Hash before, the first all zeros")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, opts.Dir)
	if rep.Records != 3 || rep.Segments != 1 || rep.FirstSeq != 1 || rep.LastSeq != 3 || !rep.LastTime.Equal(recs[2].Time) {
		t.Errorf("report = %+v", rep)
	}

	s = mustOpen(t, opts, nil)
	defer s.Close()
	if got := readAll(t, s); !slices.EqualFunc(got, recs, recordsEqual) {
		t.Errorf("read back %v; want %v", payloads(got), payloads(recs))
	}
	if rec := appendN(t, s, 3, 4)[0]; rec.Seq != 4 || rec.Prev != recs[2].Hash {
		t.Errorf("append after reopening = seq %d; want 4, chained to record 3", rec.Seq)
	}
}

// recordsEqual compares records field by field.
func recordsEqual(a, b Record) bool {
	return a.Seq == b.Seq && a.Time.Equal(b.Time) && a.Prev == b.Prev && a.Hash == b.Hash && bytes.Equal(a.Payload, b.Payload)
}

func TestFilesAndModes(t *testing.T) {
	opts := testOptions(t, newClock())
	s := mustOpen(t, opts, nil)
	appendN(t, s, 0, 1)
	c, _ := s.Cursor("pars")
	if _, err := c.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for name, want := range map[string]os.FileMode{"": 0o700 | os.ModeDir, segmentName(1): 0o600, "cursor-pars": 0o600} {
		info, err := os.Stat(filepath.Join(opts.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode() != want {
			t.Errorf("%q mode = %v; want %v", name, info.Mode(), want)
		}
	}
}

func TestRotation(t *testing.T) {
	opts := testOptions(t, newClock())
	opts.SegmentBytes = 3*recordSize + 10 // three records a segment
	s := mustOpen(t, opts, nil)
	recs := appendN(t, s, 0, 10)
	if got := readAll(t, s); !slices.EqualFunc(got, recs, recordsEqual) {
		t.Errorf("read back %v", payloads(got))
	}
	s.Close()
	segs, _ := listSegments(osFS{}, opts.Dir)
	var names []string
	for _, seg := range segs {
		names = append(names, seg.name)
		if info, _ := os.Stat(filepath.Join(opts.Dir, seg.name)); info.Size() > opts.SegmentBytes {
			t.Errorf("segment %s holds %d bytes, over %d", seg.name, info.Size(), opts.SegmentBytes)
		}
	}
	want := []string{segmentName(1), segmentName(4), segmentName(7), segmentName(10)}
	if !slices.Equal(names, want) {
		t.Errorf("segments %v; want %v", names, want)
	}
	if rep := mustVerify(t, opts.Dir); rep.Records != 10 || rep.Segments != 4 || rep.Bytes != 10*recordSize {
		t.Errorf("report = %+v", rep)
	}
	s = mustOpen(t, opts, nil)
	defer s.Close()
	if rec := appendN(t, s, 10, 11)[0]; rec.Seq != 11 {
		t.Errorf("append after reopening = %d; want 11", rec.Seq)
	}
	if s.Size() != 11*recordSize {
		t.Errorf("Size() = %d; want %d", s.Size(), 11*recordSize)
	}
}

func TestConcurrentAppends(t *testing.T) {
	const goroutines, each = 8, 50
	opts := testOptions(t, newClock())
	opts.SegmentBytes = 4 << 10 // rotations under load
	s := mustOpen(t, opts, nil)
	var (
		mu   sync.Mutex
		seqs []uint64
		wg   sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				rec, err := s.Append(context.Background(), payload(g*each+i))
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				seqs = append(seqs, rec.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	got := readAll(t, s)
	s.Close()
	slices.Sort(seqs)
	if len(seqs) != goroutines*each || seqs[0] != 1 || seqs[len(seqs)-1] != goroutines*each {
		t.Fatalf("sequence numbers: %d from %d to %d", len(seqs), seqs[0], seqs[len(seqs)-1])
	}
	if rep := mustVerify(t, opts.Dir); rep.Records != goroutines*each || rep.Segments < 2 {
		t.Errorf("report = %+v; want every returned record, in more than one segment", rep)
	}
	gotPayloads := payloads(got)
	slices.Sort(gotPayloads)
	if len(slices.Compact(gotPayloads)) != goroutines*each {
		t.Errorf("read %d distinct payloads; want %d", len(gotPayloads), goroutines*each)
	}
}

// TestGroupCommitSharesSyncs: records queued while a write and sync are held up all go in the
// next write and sync.
func TestGroupCommitSharesSyncs(t *testing.T) {
	const appenders = 100
	fsys := newFaultFS()
	opts := testOptions(t, newClock())
	s := mustOpen(t, opts, fsys)
	defer s.Close()
	writesBefore, syncsBefore, _ := fsys.counts()
	var queued atomic.Int32
	allQueued := make(chan struct{})
	s.queuedHook = func() {
		if queued.Add(1) == appenders {
			close(allQueued)
		}
	}
	s.mu.Lock() // the flusher cannot write its first batch until every Append has queued
	var wg sync.WaitGroup
	for i := range appenders {
		wg.Go(func() {
			if _, err := s.Append(context.Background(), payload(i)); err != nil {
				t.Errorf("append: %v", err)
			}
		})
	}
	<-allQueued
	s.mu.Unlock()
	wg.Wait()
	writes, syncs, _ := fsys.counts()
	if syncs-syncsBefore > 2 || writes-writesBefore > 2 {
		t.Errorf("%d appends took %d writes and %d fsyncs; want at most 2 of each (the flusher's first batch, and one for the rest)",
			appenders, writes-writesBefore, syncs-syncsBefore)
	}
}

func TestFull(t *testing.T) {
	opts := testOptions(t, newClock())
	opts.SegmentBytes, opts.MaxBytes = 2*recordSize, 5*recordSize+overhead
	s := mustOpen(t, opts, nil)
	appendN(t, s, 0, 5)
	if err := s.Healthy(); err != nil {
		t.Errorf("Healthy() with room for an empty payload = %v; want nil (an empty payload would fit)", err)
	}
	_, err := s.Append(context.Background(), payload(5))
	if !errors.Is(err, ErrFull) {
		t.Fatalf("append past MaxBytes = %v; want ErrFull", err)
	}
	if err := s.Healthy(); !errors.Is(err, ErrFull) {
		t.Errorf("Healthy() = %v; want ErrFull", err)
	}
	if s.Size() != 5*recordSize {
		t.Errorf("Size() = %d; want %d", s.Size(), 5*recordSize)
	}
	s.Close()
	if rep := mustVerify(t, opts.Dir); rep.Records != 5 {
		t.Errorf("records = %d; want the 5 appended", rep.Records)
	}
	s = mustOpen(t, opts, nil)
	defer s.Close()
	if _, err := s.Append(context.Background(), payload(5)); !errors.Is(err, ErrFull) {
		t.Errorf("append after reopening = %v; want ErrFull", err)
	}
}

func TestTooLarge(t *testing.T) {
	opts := testOptions(t, newClock())
	opts.SegmentBytes = 1 << 10
	s := mustOpen(t, opts, nil)
	defer s.Close()
	if _, err := s.Append(context.Background(), make([]byte, 1<<10-overhead+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("append of a payload larger than a segment = %v; want ErrTooLarge", err)
	}
	if _, err := s.Append(context.Background(), make([]byte, 1<<10-overhead)); err != nil {
		t.Errorf("append of a payload that just fits = %v", err)
	}
	if err := s.Healthy(); err != nil {
		t.Errorf("Healthy() = %v", err)
	}
}

func TestClosed(t *testing.T) {
	s := mustOpen(t, testOptions(t, newClock()), nil)
	appendN(t, s, 0, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), payload(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("append after Close = %v; want ErrClosed", err)
	}
	if err := s.Healthy(); !errors.Is(err, ErrClosed) {
		t.Errorf("Healthy() after Close = %v; want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func ExampleSpool_Append() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	s, err := Open(Options{Dir: dir, SegmentBytes: 64 << 20, MaxBytes: 1 << 30, Clock: time.Now}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	rec, err := s.Append(context.Background(), []byte(`{"action":"search"}`))
	if err != nil {
		fmt.Println("refuse the request:", err) // 503: no unaudited access
		return
	}
	fmt.Println("record", rec.Seq, "is on disk")
	// Output: record 1 is on disk
}

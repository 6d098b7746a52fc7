package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// nextAsync calls Next in a goroutine once the cursor's spool reports it is waiting; it
// returns the channel the result arrives on and one closed when Next starts to wait.
func nextAsync(ctx context.Context, s *Spool, c *Cursor) (<-chan Record, <-chan error, <-chan struct{}) {
	waiting := make(chan struct{})
	once := false
	s.mu.Lock()
	s.waitHook = func() {
		if !once {
			once = true
			close(waiting)
		}
	}
	s.mu.Unlock()
	recs, errs := make(chan Record, 1), make(chan error, 1)
	go func() {
		rec, err := c.Next(ctx)
		if err != nil {
			errs <- err
			return
		}
		recs <- rec
	}()
	return recs, errs, waiting
}

func TestCursorWaitsForAppend(t *testing.T) {
	s := mustOpen(t, testOptions(t, newClock()), nil)
	defer s.Close()
	c, err := s.Cursor("pars")
	if err != nil {
		t.Fatal(err)
	}
	recs, errs, waiting := nextAsync(context.Background(), s, c)
	<-waiting
	appendN(t, s, 0, 1)
	select {
	case rec := <-recs:
		if rec.Seq != 1 || string(rec.Payload) != string(payload(0)) {
			t.Errorf("Next() = record %d %q", rec.Seq, rec.Payload)
		}
	case err := <-errs:
		t.Fatalf("Next() = %v", err)
	}
}

func TestCursorStopsWhenContextEnds(t *testing.T) {
	s := mustOpen(t, testOptions(t, newClock()), nil)
	defer s.Close()
	c, _ := s.Cursor("pars")
	ctx, cancel := context.WithCancel(context.Background())
	_, errs, waiting := nextAsync(ctx, s, c)
	<-waiting
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("Next() after cancel = %v; want context.Canceled", err)
	}
}

func TestCursorStopsWhenSpoolCloses(t *testing.T) {
	s := mustOpen(t, testOptions(t, newClock()), nil)
	c, _ := s.Cursor("pars")
	_, errs, waiting := nextAsync(context.Background(), s, c)
	<-waiting
	s.Close()
	if err := <-errs; !errors.Is(err, ErrClosed) {
		t.Errorf("Next() after Close = %v; want ErrClosed", err)
	}
	if _, err := s.Cursor("pars"); !errors.Is(err, ErrClosed) {
		t.Errorf("Cursor() after Close = %v; want ErrClosed", err)
	}
}

// next reads n records from c and returns their sequence numbers.
func next(t *testing.T, c *Cursor, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for range n {
		rec, err := c.Next(context.Background())
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		seqs = append(seqs, rec.Seq)
	}
	return seqs
}

func TestCursorAckAndRedelivery(t *testing.T) {
	opts := testOptions(t, newClock())
	opts.SegmentBytes = 2 * recordSize
	s := mustOpen(t, opts, nil)
	appendN(t, s, 0, 5)
	pars, _ := s.Cursor("pars")
	atna, _ := s.Cursor("atna")
	if got := next(t, pars, 4); got[3] != 4 {
		t.Fatalf("pars read %v", got)
	}
	if err := pars.Ack(2); err != nil {
		t.Fatal(err)
	}
	if err := pars.Ack(5); err == nil {
		t.Error("Ack of a record not yet delivered succeeded")
	}
	if err := pars.Ack(1); err != nil {
		t.Errorf("Ack of less than before = %v; want no change", err)
	}
	if s.Lag("pars") != 3 || s.Lag("atna") != 5 || s.Lag("never-opened") != 5 {
		t.Errorf("lags = %d, %d, %d; want 3, 5, 5", s.Lag("pars"), s.Lag("atna"), s.Lag("never-opened"))
	}
	next(t, atna, 5)
	atna.Ack(5)
	s.Close() // a crash, as far as the cursors know: records 3 and 4 were read, not acknowledged

	s = mustOpen(t, opts, nil)
	defer s.Close()
	pars, _ = s.Cursor("pars")
	if got := next(t, pars, 3); got[0] != 3 || got[2] != 5 {
		t.Errorf("pars after reopening read %v; want 3, 4 and 5 again", got)
	}
	if s.Lag("pars") != 3 || s.Lag("atna") != 0 {
		t.Errorf("lags after reopening = %d, %d; want 3, 0", s.Lag("pars"), s.Lag("atna"))
	}
}

func TestCursorAheadOfSpool(t *testing.T) {
	opts := testOptions(t, newClock())
	s := mustOpen(t, opts, nil)
	appendN(t, s, 0, 2)
	s.Close()
	if err := os.WriteFile(filepath.Join(opts.Dir, "cursor-pars"), []byte("7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(opts, nil)
	if err == nil || !strings.Contains(err.Error(), "cursor pars acknowledged record 7, but the spool ends at record 2") {
		t.Errorf("Open() = %v; want a refusal naming the cursor", err)
	}
}

func TestCursorNames(t *testing.T) {
	s := mustOpen(t, testOptions(t, newClock()), nil)
	defer s.Close()
	for _, name := range []string{"", "PARS", "../x", "a.tmp", strings.Repeat("a", 65)} {
		if _, err := s.Cursor(name); err == nil {
			t.Errorf("Cursor(%q) succeeded", name)
		}
	}
	if _, err := s.Cursor("fhir_pars-1"); err != nil {
		t.Errorf("Cursor(fhir_pars-1) = %v", err)
	}
}

// TestScan: Scan reads the durable records in order from where it is asked, stops when told,
// and leaves no cursor behind.
func TestScan(t *testing.T) {
	opts := testOptions(t, newClock())
	dir := opts.Dir
	s := mustOpen(t, opts, nil)
	for i := range 5 {
		if _, err := s.Append(t.Context(), []byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []byte
	if err := s.Scan(t.Context(), 2, func(r Record) bool { got = append(got, r.Payload...); return r.Seq < 4 }); err != nil {
		t.Fatal(err)
	}
	if string(got) != "bcd" {
		t.Errorf("Scan from 2, stopping after 4, read %q; want bcd", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "cursor-") {
			t.Errorf("Scan left %s behind", e.Name())
		}
	}
}

// TestScanAcrossSegmentsWhileAppending: a Scan reads, in order and without a gap, every record
// from where it is asked to the last durable when it began, across segments, while other
// records are being appended (and segments started) beside it; it stops where told.
func TestScanAcrossSegmentsWhileAppending(t *testing.T) {
	opts := testOptions(t, newClock())
	opts.SegmentBytes = 4 * recordSize
	s := mustOpen(t, opts, nil)
	defer s.Close()
	appendN(t, s, 0, 30)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // appends beside the scans until told to stop
		defer close(done)
		for i := 30; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Append(context.Background(), payload(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for _, from := range []uint64{1, 3, 5, 29} {
		var seqs []uint64
		if err := s.Scan(t.Context(), from, func(r Record) bool {
			if string(r.Payload) != string(payload(int(r.Seq-1))) {
				t.Errorf("record %d holds %q; want %q", r.Seq, r.Payload, payload(int(r.Seq-1)))
			}
			seqs = append(seqs, r.Seq)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if len(seqs) < int(31-from) {
			t.Fatalf("Scan from %d read %d records; want at least the %d appended before it", from, len(seqs), 31-from)
		}
		for i, seq := range seqs {
			if seq != from+uint64(i) {
				t.Fatalf("Scan from %d read records %v; want consecutive records from %d", from, seqs, from)
			}
		}
	}
	var seqs []uint64
	if err := s.Scan(t.Context(), 6, func(r Record) bool { seqs = append(seqs, r.Seq); return r.Seq < 13 }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs, []uint64{6, 7, 8, 9, 10, 11, 12, 13}) {
		t.Errorf("Scan from 6, stopping after 13, read %v", seqs)
	}
}

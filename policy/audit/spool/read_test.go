package spool

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// readRecords reads dir with ReadDir and keeps the records, stopping after the first for which
// stop is true (nil reads them all).
func readRecords(dir string, stop func(Record) bool) ([]Record, Report, error) {
	var recs []Record
	rep, err := ReadDir(dir, func(rec Record) bool {
		recs = append(recs, rec)
		return stop == nil || !stop(rec)
	})
	return recs, rep, err
}

// wantPayloads are payloads from..to-1 as strings.
func wantPayloads(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, string(payload(i)))
	}
	return out
}

// TestReadDir: ReadDir hands over every record appended, in order and across segments, with
// the hashes the spool gave them; it stops when told; and it changes nothing in the directory,
// even one it may not write.
func TestReadDir(t *testing.T) {
	opts := testOptions(t, newClock())
	opts.SegmentBytes = 3 * recordSize
	s := mustOpen(t, opts, nil)
	appended := appendN(t, s, 0, 8)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, opts.Dir)
	if err := os.Chmod(opts.Dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(opts.Dir, 0o700) })

	recs, rep, err := readRecords(opts.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := payloads(recs); !slices.Equal(got, wantPayloads(0, 8)) {
		t.Errorf("read %q; want the 8 appended", got)
	}
	for i, r := range recs {
		if a := appended[i]; r.Seq != a.Seq || r.Hash != a.Hash || r.Prev != a.Prev || !r.Time.Equal(a.Time) {
			t.Errorf("record %d read as %d %x %s; appended as %d %x %s", i, r.Seq, r.Hash, r.Time, a.Seq, a.Hash, a.Time)
		}
	}
	if rep.Records != 8 || rep.Segments != 3 || rep.LastSeq != 8 || rep.Break != nil || rep.Torn != 0 {
		t.Errorf("report %+v; want 8 records in 3 segments", rep)
	}

	recs, rep, err = readRecords(opts.Dir, func(r Record) bool { return r.Seq == 4 })
	if err != nil || !slices.Equal(payloads(recs), wantPayloads(0, 4)) || rep.Records != 4 || rep.LastSeq != 4 || rep.Segments != 2 {
		t.Errorf("stopped after record 4: read %q, report %+v, %v; want records 1 to 4 from 2 segments", payloads(recs), rep, err)
	}

	if after := snapshot(t, opts.Dir); !maps.Equal(before, after) {
		t.Errorf("ReadDir changed the directory: %v -> %v", before, after)
	}
}

// TestReadDirTornTail: a record cut short at the end is passed over, as Verify does, and left
// where it is.
func TestReadDirTornTail(t *testing.T) {
	dir := copyDir(t, buildSpool(t, 5))
	editFile(t, filepath.Join(dir, segmentName(4)), func(b []byte) []byte { return b[:len(b)-3] })
	before := snapshot(t, dir)
	recs, rep, err := readRecords(dir, nil)
	if err != nil || !slices.Equal(payloads(recs), wantPayloads(0, 4)) || rep.Torn != recordSize-3 {
		t.Fatalf("read %q, report %+v, %v; want records 1 to 4 and %d torn bytes", payloads(recs), rep, err, recordSize-3)
	}
	if after := snapshot(t, dir); !maps.Equal(before, after) {
		t.Error("ReadDir cut the torn record away; only Open may")
	}
}

// TestReadDirWhileAppending: read over and over while a Spool appends and rotates segments,
// ReadDir always finds a sound chain and hands over a prefix of what was appended; once the
// appends are done it finds them all.
func TestReadDirWhileAppending(t *testing.T) {
	const n = 300
	opts := testOptions(t, newClock())
	opts.SegmentBytes = 5 * recordSize
	s := mustOpen(t, opts, nil)
	defer s.Close()
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		for i := range n {
			if _, err := s.Append(context.Background(), payload(i)); err != nil {
				t.Errorf("append %d: %v", i, err)
				return
			}
		}
	})
	reads := 0
	for finished := false; !finished; reads++ {
		select {
		case <-done:
			finished = true
		default:
		}
		recs, _, err := readRecords(opts.Dir, nil)
		if err != nil {
			t.Fatalf("read %d while appending: %v", reads, err)
		}
		if got := payloads(recs); !slices.Equal(got, wantPayloads(0, len(got))) {
			t.Fatalf("read %d while appending: %d records, not the first ones appended in order", reads, len(got))
		}
		if finished && len(recs) != n {
			t.Fatalf("read after the appends: %d records; want %d", len(recs), n)
		}
	}
	wg.Wait()
	t.Logf("%d reads while %d records were appended", reads, n)
}

func TestReadDirNotASpool(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for name, dir := range map[string]string{"empty": t.TempDir(), "missing": missing} {
		called := false
		_, err := ReadDir(dir, func(Record) bool { called = true; return true })
		if err == nil || errors.As(err, new(*Break)) || called {
			t.Errorf("%s directory: %v, called %v; want an error that is not a break, and no record", name, err, called)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadDir created the missing directory (stat: %v)", err)
	}
}

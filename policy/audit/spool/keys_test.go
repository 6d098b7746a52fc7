package spool

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// keyedPayload is a payload whose key (testKeys) is key: "key=<key>;<n>".
func keyedPayload(key string, n int) []byte { return fmt.Appendf(nil, "key=%s;%06d", key, n) }

// testKeys is an Options.Keys for keyedPayload's payloads.
func testKeys(payload []byte, add func([]byte)) {
	if rest, ok := bytes.CutPrefix(payload, []byte("key=")); ok {
		if k, _, ok := bytes.Cut(rest, []byte(";")); ok {
			add(k)
		}
	}
}

// keyOf is the key of a keyedPayload's payload.
func keyOf(payload []byte) string {
	var k string
	testKeys(payload, func(b []byte) { k = string(b) })
	return k
}

// withKey is the sequence numbers of the records fn was given whose key is key, and how many
// records it was given in all.
func withKey(t *testing.T, key string, scan func(fn func(Record) bool) error) (seqs []uint64, read int) {
	t.Helper()
	if err := scan(func(r Record) bool {
		read++
		if keyOf(r.Payload) == key {
			seqs = append(seqs, r.Seq)
		}
		return true
	}); err != nil {
		t.Fatalf("scan for %s: %v", key, err)
	}
	return seqs, read
}

// checkScanKey fails t unless ScanKey finds, for every key, exactly the records a full Scan
// finds with it; it returns how many records ScanKey read for all keys, against Scan.
func checkScanKey(t *testing.T, s *Spool, keys []string) (keyed, full int) {
	t.Helper()
	ctx := context.Background()
	for _, k := range keys {
		want, all := withKey(t, k, func(fn func(Record) bool) error { return s.Scan(ctx, 1, fn) })
		got, read := withKey(t, k, func(fn func(Record) bool) error { return s.ScanKey(ctx, []byte(k), fn) })
		if !slices.Equal(got, want) {
			t.Errorf("ScanKey(%s) found records %v; a full Scan finds %v", k, got, want)
		}
		keyed, full = keyed+read, full+all
	}
	return keyed, full
}

// TestScanKeyFindsEveryRecordOfItsKey is the patient access report's index (hazard H21): for
// every key, ScanKey finds exactly the records a full Scan does, reading fewer; after the
// Spool is reopened (its filters rebuilt from the segments), after retention deleted the
// oldest segments, and after records were added to a reopened Spool's last segment.
func TestScanKeyFindsEveryRecordOfItsKey(t *testing.T) {
	clock := newClock()
	opts := testOptions(t, clock)
	opts.SegmentBytes = 20 * int64(overhead+len(keyedPayload("p00", 0)))
	opts.Keys = testKeys
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("p%02d", i)
	}
	// Each key's records come in runs, as one patient's searches and retrieves do, so most
	// segments hold a few keys.
	n := 0
	add := func(s *Spool, runs int) {
		for r := range runs {
			k := keys[(r*7+n)%len(keys)]
			for range 1 + r%9 {
				clock.Add(time.Minute)
				n++
				if _, err := s.Append(context.Background(), keyedPayload(k, n)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	check := func(s *Spool, when string) {
		t.Helper()
		keyed, full := checkScanKey(t, s, append(keys, "absent", ""))
		if keyed*2 > full {
			t.Errorf("%s: ScanKey read %d records for all the keys, a full Scan %d; want less than half", when, keyed, full)
		}
	}

	s := mustOpen(t, opts, nil)
	add(s, 120)
	check(s, "as written")
	s.Close()

	s = mustOpen(t, opts, nil)
	defer func() { s.Close() }()
	check(s, "reopened")
	add(s, 30) // into the last segment the reopened Spool indexed, then new ones
	check(s, "reopened and written to")

	mustAck(t, s, uint64(n/2), "pars")
	got, err := s.Prune(context.Background(), retention(clock.Now().Add(-time.Duration(n/2)*time.Minute), "pars"))
	if err != nil || got.Segments == 0 {
		t.Fatalf("prune: %+v, %v; want segments deleted", got, err)
	}
	check(s, "after retention")
	s.Close()
	s = mustOpen(t, opts, nil)
	check(s, "reopened after retention")
}

// TestScanKeyWithoutKeysReadsEverything: with no Options.Keys there is no index, and ScanKey
// reads every record, as Scan does.
func TestScanKeyWithoutKeysReadsEverything(t *testing.T) {
	opts := testOptions(t, newClock())
	opts.SegmentBytes = 5 * int64(overhead+len(keyedPayload("a", 0)))
	s := mustOpen(t, opts, nil)
	defer s.Close()
	for i := range 23 {
		if _, err := s.Append(context.Background(), keyedPayload([]string{"a", "b"}[i%2], i)); err != nil {
			t.Fatal(err)
		}
	}
	got, read := withKey(t, "a", func(fn func(Record) bool) error { return s.ScanKey(context.Background(), []byte("a"), fn) })
	if len(got) != 12 || read != 23 {
		t.Errorf("ScanKey(a) found %d records, reading %d; want 12 of all 23 read", len(got), read)
	}
}

// TestScanKeyWhileAppending: a ScanKey that runs while records are appended finds every
// record of its key that was on disk when it began.
func TestScanKeyWhileAppending(t *testing.T) {
	opts := testOptions(t, newClock())
	opts.SegmentBytes = 8 * int64(overhead+len(keyedPayload("k0", 0)))
	opts.Keys = testKeys
	s := mustOpen(t, opts, nil)
	defer s.Close()
	var mu sync.Mutex
	appended := map[string][]uint64{} // by key, the records whose Append has returned
	var wg sync.WaitGroup
	defer wg.Wait() // before Close, also when the test fails early
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				k := fmt.Sprintf("k%d", (w+i/10)%6)
				rec, err := s.Append(context.Background(), keyedPayload(k, i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				appended[k] = append(appended[k], rec.Seq)
				mu.Unlock()
			}
		})
	}
	check := func(k string) {
		mu.Lock()
		before := slices.Clone(appended[k])
		mu.Unlock()
		got, _ := withKey(t, k, func(fn func(Record) bool) error { return s.ScanKey(context.Background(), []byte(k), fn) })
		for _, seq := range before {
			if _, found := slices.BinarySearch(got, seq); !found {
				t.Fatalf("ScanKey(%s) missed record %d, appended before it began; found %v", k, seq, got)
			}
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for r := 0; ; r++ {
		select {
		case <-done:
			for k := range 6 { // and once every record is on disk
				check(fmt.Sprintf("k%d", k))
			}
			return
		default:
			check(fmt.Sprintf("k%d", r%6))
		}
	}
}

func TestFilterBits(t *testing.T) {
	for _, tc := range []struct {
		segment int64
		want    uint64
	}{{98, minFilterBits}, {1 << 20, 1 << 14}, {64 << 20, 1 << 20}, {64<<20 + 64, 1 << 21}, {1 << 30, maxFilterBits}} {
		if got := filterBits(tc.segment); got != tc.want {
			t.Errorf("filterBits(%d) = %d; want %d", tc.segment, got, tc.want)
		}
	}
}

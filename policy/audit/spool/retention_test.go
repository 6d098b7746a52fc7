package spool

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testKey and otherKey are checkpoint signing keys.
var (
	testKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	otherKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
)

// publicOf is key's public half.
func publicOf(key ed25519.PrivateKey) ed25519.PublicKey { return key.Public().(ed25519.PublicKey) }

// retentionSpool opens, through fsys (nil for the operating system's), a spool of ten records
// an hour apart, three a segment: seg-1 holds records 1-3, seg-4 4-6, seg-7 7-9, and seg-10,
// being written, record 10.
func retentionSpool(t *testing.T, fsys fileSystem) (*Spool, Options, []Record) {
	t.Helper()
	clock := newClock()
	opts := testOptions(t, clock)
	opts.SegmentBytes = 3 * recordSize
	s := mustOpen(t, opts, fsys)
	t.Cleanup(func() { s.Close() })
	var recs []Record
	for i := range 10 {
		clock.Add(time.Hour)
		recs = append(recs, appendN(t, s, i, i+1)...)
	}
	return s, opts, recs
}

// retention is a Retention with testKey.
func retention(before time.Time, sinks ...string) Retention {
	return Retention{Before: before, Sinks: sinks, Key: testKey}
}

// mustAck acknowledges up to seq for each sink.
func mustAck(t *testing.T, s *Spool, seq uint64, sinks ...string) {
	t.Helper()
	for _, name := range sinks {
		if err := s.ack(name, seq); err != nil {
			t.Fatal(err)
		}
	}
}

// segmentFiles lists the first record of each segment in dir.
func segmentFiles(t *testing.T, dir string) []uint64 {
	t.Helper()
	segs, err := listSegments(osFS{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	var firsts []uint64
	for _, seg := range segs {
		firsts = append(firsts, seg.first)
	}
	return firsts
}

func TestPruneDeletesOnlyOldAcknowledgedSegments(t *testing.T) {
	tests := []struct {
		name  string
		acked map[string]uint64 // what each sink has acknowledged; absent: no cursor
		sinks []string
		cut   int // records before recs[cut] are old; len(recs) for all
		left  []uint64
	}{
		{"old and acknowledged by both", map[string]uint64{"pars": 10, "atna": 10}, []string{"pars", "atna"}, 6, []uint64{7, 10}},
		{"all old and acknowledged: never the segment being written", map[string]uint64{"pars": 10}, []string{"pars"}, 10, []uint64{10}},
		{"a sink lagging holds back what it lacks", map[string]uint64{"pars": 10, "atna": 5}, []string{"pars", "atna"}, 10, []uint64{4, 7, 10}},
		{"a sink that never acknowledged holds back everything", map[string]uint64{"pars": 10}, []string{"pars", "atna"}, 10, []uint64{1, 4, 7, 10}},
		{"a cursor not among the sinks holds back nothing", map[string]uint64{"pars": 10, "old": 1}, []string{"pars"}, 6, []uint64{7, 10}},
		{"a segment with one record not old enough stays", map[string]uint64{"pars": 10}, []string{"pars"}, 5, []uint64{4, 7, 10}},
		{"nothing old", map[string]uint64{"pars": 10}, []string{"pars"}, 0, []uint64{1, 4, 7, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, opts, recs := retentionSpool(t, nil)
			for name, seq := range tt.acked {
				mustAck(t, s, seq, name)
			}
			before := time.Now().Add(24 * time.Hour)
			if tt.cut < len(recs) {
				before = recs[tt.cut].Time
			}
			sizeBefore := s.Size()
			got, err := s.Prune(context.Background(), retention(before, tt.sinks...))
			if err != nil {
				t.Fatalf("prune: %v", err)
			}
			if left := segmentFiles(t, opts.Dir); !slices.Equal(left, tt.left) {
				t.Fatalf("segments left %v; want %v", left, tt.left)
			}
			kept := tt.left[0]
			if got.Records != kept-1 || got.Segments != 4-len(tt.left) || s.Size() != sizeBefore-got.Bytes ||
				got.Bytes != int64(kept-1)*recordSize {
				t.Errorf("pruned %+v, size %d from %d; want records 1 to %d deleted", got, s.Size(), sizeBefore, kept-1)
			}
			rep, err := VerifyKey(opts.Dir, publicOf(testKey))
			if err != nil {
				t.Fatalf("verify after prune: %v", err)
			}
			if rep.FirstSeq != kept || rep.LastSeq != 10 || rep.Records != 11-kept {
				t.Errorf("verify reports records %d to %d (%d); want %d to 10", rep.FirstSeq, rep.LastSeq, rep.Records, kept)
			}
			if kept == 1 {
				if rep.Checkpoint != nil || got.Checkpoint != nil {
					t.Errorf("a checkpoint with nothing deleted: %+v", rep.Checkpoint)
				}
				return
			}
			cp := rep.Checkpoint
			last := recs[kept-2]
			if !rep.KeyChecked || cp.LastSeq != last.Seq || cp.LastHash != last.Hash || cp.Records != last.Seq ||
				cp.Segments != uint64(got.Segments) || !cp.FirstTime.Equal(recs[0].Time) || !cp.LastTime.Equal(last.Time) ||
				cp.KeyFingerprint() != Fingerprint(publicOf(testKey)) {
				t.Errorf("checkpoint %+v (key checked %v); want one covering records 1 to %d", cp, rep.KeyChecked, last.Seq)
			}
		})
	}
}

// TestPruneNeverDeletesWhatASinkLacks is hazard H20's control for retention: whatever the
// cut-off, no record a sink has not acknowledged is deleted.
func TestPruneNeverDeletesWhatASinkLacks(t *testing.T) {
	for lag := uint64(0); lag <= 10; lag++ {
		s, opts, _ := retentionSpool(t, nil)
		mustAck(t, s, 10, "pars")
		mustAck(t, s, lag, "atna")
		if _, err := s.Prune(context.Background(), retention(time.Now().Add(time.Hour), "pars", "atna")); err != nil {
			t.Fatal(err)
		}
		if left := segmentFiles(t, opts.Dir); left[0] > lag+1 {
			t.Errorf("atna acknowledged up to %d, yet the spool now starts at record %d", lag, left[0])
		}
		c, err := s.Cursor("atna")
		if err != nil {
			t.Fatal(err)
		}
		for seq := lag + 1; seq <= 10; seq++ {
			if rec, err := c.Next(context.Background()); err != nil || rec.Seq != seq {
				t.Fatalf("atna at %d: record %d, %v; want record %d", lag, rec.Seq, err, seq)
			}
		}
		c.Close()
	}
}

func TestPruneTwiceCheckpointCoversAll(t *testing.T) {
	s, opts, recs := retentionSpool(t, nil)
	mustAck(t, s, 10, "pars")
	if _, err := s.Prune(context.Background(), retention(recs[3].Time, "pars")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Prune(context.Background(), retention(recs[9].Time, "pars"))
	if err != nil {
		t.Fatal(err)
	}
	cp := got.Checkpoint
	if got.Records != 6 || got.Segments != 2 || cp.LastSeq != 9 || cp.Segments != 3 || !cp.FirstTime.Equal(recs[0].Time) {
		t.Errorf("second prune %+v with checkpoint %+v; want records 4 to 9 deleted, and the checkpoint to cover 1 to 9", got, cp)
	}
	s.Close()
	s2 := mustOpen(t, opts, nil) // the chain, after the checkpoint, opens and goes on
	defer s2.Close()
	if rec := appendN(t, s2, 10, 11)[0]; rec.Seq != 11 || rec.Prev != recs[9].Hash {
		t.Errorf("append after reopening: record %d; want 11 after record 10", rec.Seq)
	}
	mustVerify(t, opts.Dir)
}

// prunedSpool is a closed spool of ten records whose first six retention deleted.
func prunedSpool(t *testing.T) (Options, []Record) {
	t.Helper()
	s, opts, recs := retentionSpool(t, nil)
	mustAck(t, s, 10, "pars")
	if _, err := s.Prune(context.Background(), retention(recs[6].Time, "pars")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return opts, recs
}

func TestVerifyPrunedSpool(t *testing.T) {
	cpPath := func(dir string) string { return filepath.Join(dir, checkpointFile) }
	tests := []struct {
		name    string
		tamper  func(t *testing.T, dir string, recs []Record)
		key     ed25519.PublicKey // nil for Verify
		segment string
		want    string // in the Break's problem; "" for none
	}{
		{"with the key", nil, publicOf(testKey), "", ""},
		{"without the key", nil, nil, "", ""},
		{"with the wrong key", nil, publicOf(otherKey), checkpointFile, "not by the given key"},
		{"checkpoint edited", func(t *testing.T, dir string, _ []Record) {
			editFile(t, cpPath(dir), func(b []byte) []byte { return bytes.Replace(b, []byte(`"segments":2`), []byte(`"segments":1`), 1) })
		}, nil, checkpointFile, "signature does not hold"},
		{"checkpoint re-signed by another key", func(t *testing.T, dir string, _ []Record) {
			resign(t, dir, func(cp *Checkpoint) {}, otherKey)
		}, publicOf(testKey), checkpointFile, "not by the given key"},
		{"checkpoint covering more, signed by the key", func(t *testing.T, dir string, recs []Record) {
			resign(t, dir, func(cp *Checkpoint) { cp.LastSeq, cp.Records, cp.LastHash = 7, 7, recs[6].Hash }, testKey)
		}, publicOf(testKey), segmentName(7), "inside what the checkpoint says was deleted"},
		{"checkpoint naming the wrong hash, signed by the key", func(t *testing.T, dir string, recs []Record) {
			resign(t, dir, func(cp *Checkpoint) { cp.LastHash = recs[4].Hash }, testKey)
		}, publicOf(testKey), segmentName(7), "does not continue from the checkpoint"},
		{"a segment after the checkpoint deleted", func(t *testing.T, dir string, _ []Record) {
			must(t, os.Remove(filepath.Join(dir, segmentName(7))))
		}, publicOf(testKey), segmentName(10), "records 7 to 9 are missing (deleted)"},
		{"every segment deleted", func(t *testing.T, dir string, _ []Record) {
			must(t, os.Remove(filepath.Join(dir, segmentName(7))))
			must(t, os.Remove(filepath.Join(dir, segmentName(10))))
		}, nil, checkpointFile, "no segment follows the checkpoint"},
		{"checkpoint deleted", func(t *testing.T, dir string, _ []Record) {
			must(t, os.Remove(cpPath(dir)))
		}, publicOf(testKey), segmentName(7), "records 1 to 6 are missing (deleted)"},
		{"checkpoint cut short", func(t *testing.T, dir string, _ []Record) {
			editFile(t, cpPath(dir), func(b []byte) []byte { return b[:len(b)-10] })
		}, nil, checkpointFile, "not three lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, recs := prunedSpool(t)
			if tt.tamper != nil {
				tt.tamper(t, opts.Dir, recs)
			}
			var rep Report
			var err error
			if tt.key != nil {
				rep, err = VerifyKey(opts.Dir, tt.key)
			} else {
				rep, err = Verify(opts.Dir)
			}
			if tt.want == "" {
				if err != nil || rep.FirstSeq != 7 || rep.Checkpoint == nil || rep.KeyChecked != (tt.key != nil) {
					t.Fatalf("verify = %+v, %v; want records 7 to 10 after a checkpoint", rep, err)
				}
				return
			}
			var brk *Break
			if !errors.As(err, &brk) || brk.Segment != tt.segment || !strings.Contains(brk.Problem, tt.want) {
				t.Fatalf("verify = %v; want a break in %s: %q", err, tt.segment, tt.want)
			}
			// Open knows no key: it refuses what Verify without one refuses.
			_, keyless := Verify(opts.Dir)
			if _, err := open(opts, nil, osFS{}); (err == nil) != (keyless == nil) {
				t.Errorf("open = %v; Verify without the key = %v", err, keyless)
			}
		})
	}
}

// resign rewrites dir's checkpoint changed by edit and signed with key.
func resign(t *testing.T, dir string, edit func(cp *Checkpoint), key ed25519.PrivateKey) {
	t.Helper()
	cp, problem, err := readCheckpoint(osFS{}, dir)
	if err != nil || problem != "" {
		t.Fatalf("read checkpoint: %v %s", err, problem)
	}
	edit(cp)
	cp.Key = publicOf(key)
	must(t, os.WriteFile(filepath.Join(dir, checkpointFile), encodeCheckpoint(cp, key), 0o600))
}

// must fails the test on an error.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPruneCrashBetweenCheckpointAndDeletion fails the deletion of the n-th segment after the
// checkpoint is written: the process goes on, and a new one opening the spool after a crash
// deletes what the checkpoint covers.
func TestPruneCrashBetweenCheckpointAndDeletion(t *testing.T) {
	for _, failAt := range []uint64{1, 4} {
		t.Run(segmentName(failAt), func(t *testing.T) {
			fsys := newFaultFS()
			s, opts, recs := retentionSpool(t, fsys)
			mustAck(t, s, 10, "pars")
			fsys.set(func(fs *faultFS) {
				fs.failCreate = func(path string) error {
					if filepath.Base(path) == segmentName(failAt) {
						return syscall.EIO
					}
					return nil
				}
			})
			if _, err := s.Prune(context.Background(), retention(recs[6].Time, "pars")); !errors.Is(err, syscall.EIO) {
				t.Fatalf("prune = %v; want the deletion's failure", err)
			}
			rep := mustVerify(t, opts.Dir) // what the crash leaves verifies
			if wantCovered := int(7-failAt) / 3; rep.Covered != wantCovered || rep.FirstSeq != 7 {
				t.Fatalf("verify = %+v; want %d covered segments left and records from 7", rep, wantCovered)
			}
			s.Close()
			fsys.set(func(fs *faultFS) { fs.failCreate = nil })
			s2 := mustOpen(t, opts, fsys) // a new process, after the crash
			defer s2.Close()
			if left := segmentFiles(t, opts.Dir); !slices.Equal(left, []uint64{7, 10}) {
				t.Errorf("after reopening, segments %v; want 7 and 10", left)
			}
			if got := payloads(readAll(t, s2)); !slices.Equal(got, []string{"event-0006", "event-0007", "event-0008", "event-0009"}) {
				t.Errorf("records after reopening: %v", got)
			}
			if s2.Size() != 4*recordSize {
				t.Errorf("size %d; want the 4 records kept", s2.Size())
			}
		})
	}
}

func TestPruneInProcessRetriesAFailedDeletion(t *testing.T) {
	fsys := newFaultFS()
	s, opts, recs := retentionSpool(t, fsys)
	mustAck(t, s, 10, "pars")
	fsys.set(func(fs *faultFS) { fs.failCreate = failOnce(syscall.EIO) })
	if _, err := s.Prune(context.Background(), retention(recs[0].Time, "pars")); err != nil {
		t.Fatalf("prune of nothing: %v", err)
	}
	if _, err := s.Prune(context.Background(), retention(recs[6].Time, "pars")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("prune = %v; want the deletion's failure", err)
	}
	if _, err := s.Prune(context.Background(), retention(recs[6].Time, "pars")); err != nil {
		t.Fatalf("prune again: %v", err)
	}
	if left := segmentFiles(t, opts.Dir); !slices.Equal(left, []uint64{7, 10}) || s.Size() != 4*recordSize {
		t.Errorf("segments %v, size %d; want 7 and 10, 4 records", left, s.Size())
	}
}

func TestPruneRefusesABrokenChain(t *testing.T) {
	s, opts, recs := retentionSpool(t, nil)
	mustAck(t, s, 10, "pars")
	editFile(t, filepath.Join(opts.Dir, segmentName(4)), func(b []byte) []byte { rec(b, 1)[overhead] ^= 1; return b })
	_, err := s.Prune(context.Background(), retention(recs[9].Time, "pars"))
	var brk *Break
	if !errors.As(err, &brk) || brk.Seq != 5 {
		t.Fatalf("prune = %v; want the break at record 5", err)
	}
	if left := segmentFiles(t, opts.Dir); !slices.Equal(left, []uint64{1, 4, 7, 10}) {
		t.Errorf("segments %v; want none deleted", left)
	}
	if _, err := os.Stat(filepath.Join(opts.Dir, checkpointFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a checkpoint was written: %v", err)
	}
}

func TestPruneClearsFull(t *testing.T) {
	clock := newClock()
	opts := testOptions(t, clock)
	opts.SegmentBytes, opts.MaxBytes = 3*recordSize, 9*recordSize
	s := mustOpen(t, opts, nil)
	defer s.Close()
	appendN(t, s, 0, 9)
	if _, err := s.Append(context.Background(), payload(9)); !errors.Is(err, ErrFull) {
		t.Fatalf("append to a full spool = %v; want ErrFull", err)
	}
	if err := s.Healthy(); !errors.Is(err, ErrFull) {
		t.Fatalf("Healthy() = %v; want ErrFull", err)
	}
	mustAck(t, s, 9, "pars")
	clock.Add(time.Hour)
	got, err := s.Prune(context.Background(), retention(clock.Now(), "pars"))
	if err != nil || got.Segments != 2 {
		t.Fatalf("prune = %+v, %v; want the two closed segments deleted", got, err)
	}
	if err := s.Healthy(); err != nil {
		t.Errorf("Healthy() after prune = %v", err)
	}
	if rec, err := s.Append(context.Background(), payload(9)); err != nil || rec.Seq != 10 {
		t.Errorf("append after prune = record %d, %v; want record 10", rec.Seq, err)
	}
}

func TestCursorAndScanAtTheCut(t *testing.T) {
	s, opts, recs := retentionSpool(t, nil)
	mustAck(t, s, 10, "pars")
	mustAck(t, s, 3, "removed") // a sink no longer configured, so not among the sinks
	if _, err := s.Prune(context.Background(), retention(recs[6].Time, "pars")); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, s *Spool) {
		c, err := s.Cursor("new")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if rec, err := c.Next(context.Background()); err != nil || rec.Seq != 7 {
			t.Errorf("a new cursor's first record = %d, %v; want 7, the first kept", rec.Seq, err)
		}
		if lag := s.Lag("new"); lag != 4 {
			t.Errorf("Lag(new) = %d; want the 4 records kept", lag)
		}
		old, err := s.Cursor("removed")
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		if _, err := old.Next(context.Background()); !errors.Is(err, ErrPruned) {
			t.Errorf("a cursor behind the checkpoint: Next = %v; want ErrPruned", err)
		}
		for _, sc := range []struct {
			from  uint64
			first uint64
			err   error
		}{{0, 7, nil}, {1, 7, nil}, {8, 8, nil}, {5, 0, ErrPruned}} {
			var seqs []uint64
			err := s.Scan(context.Background(), sc.from, func(r Record) bool { seqs = append(seqs, r.Seq); return true })
			if !errors.Is(err, sc.err) || sc.err == nil && (len(seqs) == 0 || seqs[0] != sc.first || seqs[len(seqs)-1] != 10) {
				t.Errorf("Scan from %d: records %v, %v; want from %d to 10 (error %v)", sc.from, seqs, err, sc.first, sc.err)
			}
		}
	}
	t.Run("open", func(t *testing.T) { check(t, s) })
	s.Close()
	s2 := mustOpen(t, opts, nil)
	defer s2.Close()
	t.Run("reopened", func(t *testing.T) { check(t, s2) })
}

func TestReadDirPrunedSpool(t *testing.T) {
	opts, recs := prunedSpool(t)
	var got []Record
	rep, err := ReadDir(opts.Dir, func(r Record) bool { got = append(got, r); return true })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Seq != 7 || got[0].Prev != recs[5].Hash || rep.Checkpoint == nil || rep.Checkpoint.LastSeq != 6 || rep.KeyChecked {
		t.Errorf("read %d records from %d, report %+v; want 7 to 10 after a checkpoint at 6", len(got), got[0].Seq, rep)
	}
}

func TestPruneRefusesRetention(t *testing.T) {
	s, _, _ := retentionSpool(t, nil)
	now := time.Now()
	for _, tt := range []struct {
		name string
		r    Retention
		want string
	}{
		{"no cut-off", Retention{Sinks: []string{"pars"}, Key: testKey}, "Retention.Before"},
		{"no sinks", Retention{Before: now, Key: testKey}, "Retention.Sinks is empty"},
		{"no key", Retention{Before: now, Sinks: []string{"pars"}}, "Retention.Key"},
		{"a sink that cannot be a cursor", Retention{Before: now, Sinks: []string{"PARS/1"}, Key: testKey}, "cannot name a cursor"},
	} {
		if _, err := s.Prune(context.Background(), tt.r); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: prune = %v; want %q", tt.name, err, tt.want)
		}
	}
}

func TestParseKeys(t *testing.T) {
	pub, err := ParsePublicKey(pemPublic(t, publicOf(testKey)))
	if err != nil || !pub.Equal(publicOf(testKey)) {
		t.Fatalf("ParsePublicKey = %v, %v", pub, err)
	}
	priv, err := ParsePrivateKey(pemPrivate(t, testKey))
	if err != nil || !priv.Equal(testKey) {
		t.Fatalf("ParsePrivateKey = %v", err)
	}
	if _, err := ParsePrivateKey(pemPublic(t, publicOf(testKey))); err == nil {
		t.Error("ParsePrivateKey took a public key")
	}
	if _, err := ParsePublicKey([]byte("not PEM")); err == nil {
		t.Error("ParsePublicKey took no PEM")
	}
}

// FuzzCheckpoint feeds any bytes to Verify as a checkpoint beside a sound segment: it must
// never panic, and a checkpoint it accepts must be signed by the key it names.
func FuzzCheckpoint(f *testing.F) {
	cp := &Checkpoint{LastSeq: 3, Records: 3, Segments: 1, Key: publicOf(testKey)}
	f.Add(encodeCheckpoint(cp, testKey))
	f.Add([]byte(checkpointHeader + "\n{}\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseCheckpoint(data)
		if err == nil && got.checkKey(got.Key) != nil {
			t.Fatalf("accepted %q with a key that does not check", data)
		}
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, checkpointFile), data, 0o600))
		must(t, os.WriteFile(filepath.Join(dir, segmentName(4)), nil, 0o600))
		if rep, err := Verify(dir); (err == nil) != (rep.Break == nil) {
			t.Fatalf("report %+v with error %v", rep, err)
		}
	})
}

// pemPublic is key in PEM, PKIX, as `openssl pkey -pubout` writes it.
func pemPublic(t *testing.T, key ed25519.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// pemPrivate is key in PEM, PKCS#8, as `openssl genpkey -algorithm ed25519` writes it.
func pemPrivate(t *testing.T, key ed25519.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

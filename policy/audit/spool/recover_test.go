package spool

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// recordSize is the size of a record holding payload(i), whose 10 bytes are "event-NNNN".
const recordSize = overhead + 10

// buildSpool makes a spool of n records, three a segment, and returns its directory.
func buildSpool(t *testing.T, n int) string {
	t.Helper()
	opts := testOptions(t, newClock())
	opts.SegmentBytes = 3 * recordSize
	s := mustOpen(t, opts, nil)
	appendN(t, s, 0, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return opts.Dir
}

// copyDir copies a spool directory to a new one.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "spool")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// editFile replaces a file's bytes with what edit returns.
func editFile(t *testing.T, path string, edit func(b []byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// reopen opens a copied spool directory with the options buildSpool used.
func reopen(t *testing.T, dir string) (*Spool, error) {
	opts := Options{Dir: dir, SegmentBytes: 3 * recordSize, MaxBytes: 1 << 30, Clock: newClock().Now}
	return Open(opts, nil)
}

func TestTornTail(t *testing.T) {
	for _, n := range []int{4, 5} { // the last record alone in its segment, or after another
		built := buildSpool(t, n)
		start := int64(n-4) * recordSize // where the last record starts in its segment
		for cut := start; cut < start+recordSize; cut++ {
			for _, zeroed := range []bool{false, true} {
				if zeroed && cut == start {
					continue
				}
				dir := copyDir(t, built)
				path := filepath.Join(dir, segmentName(4))
				if zeroed { // power lost after the file grew, before its data was written
					zeroRange(t, path, cut, start+recordSize)
				} else if err := os.Truncate(path, cut); err != nil {
					t.Fatal(err)
				}
				checkRecovers(t, dir, n, cut-start, zeroed)
			}
		}
	}
}

// checkRecovers checks that a spool of n records whose last record was torn (torn bytes of
// it left) verifies without a break, opens back to record n-1, and goes on from there.
func checkRecovers(t *testing.T, dir string, n int, torn int64, zeroed bool) {
	t.Helper()
	rep := mustVerify(t, dir)
	wantTorn := torn
	if zeroed {
		wantTorn = recordSize
	}
	if rep.Records != uint64(n-1) || rep.Torn != wantTorn {
		t.Fatalf("cut %d (zeroed %v): verify before opening = %d records, %d torn bytes; want %d, %d",
			torn, zeroed, rep.Records, rep.Torn, n-1, wantTorn)
	}
	s, err := reopen(t, dir)
	if err != nil {
		t.Fatalf("cut %d (zeroed %v): open: %v", torn, zeroed, err)
	}
	rec, err := s.Append(context.Background(), payload(99))
	s.Close()
	if err != nil || rec.Seq != uint64(n) {
		t.Fatalf("cut %d: append after recovery = %d, %v; want record %d", torn, rec.Seq, err, n)
	}
	if rep := mustVerify(t, dir); rep.Records != uint64(n) || rep.Torn != 0 {
		t.Errorf("cut %d: verify after recovery = %+v", torn, rep)
	}
}

func TestDamageIsNotTruncated(t *testing.T) {
	built := buildSpool(t, 5) // seg-1: records 1-3; seg-4: records 4-5
	garbage := func(at int64) func(b []byte) []byte {
		return func(b []byte) []byte { copy(b[at:], "garbage!"); return b }
	}
	tests := []struct {
		name    string
		segment string
		edit    func(b []byte) []byte
		off     int64
		seq     uint64
		want    string
	}{
		{"in the last segment, before its last record", segmentName(4), garbage(headerSize + 40), 0, 4, "checksum"},
		{"in an older segment", segmentName(1), garbage(recordSize + 20), recordSize, 2, "checksum"},
		{"over a length field", segmentName(4), garbage(4), 0, 4, "header is damaged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, built)
			path := filepath.Join(dir, tt.segment)
			editFile(t, path, tt.edit)
			before, _ := os.ReadFile(path)
			_, err := reopen(t, dir)
			isBreak(t, err, tt.segment, tt.off, tt.seq, tt.want)
			_, err = Verify(dir)
			isBreak(t, err, tt.segment, tt.off, tt.seq, tt.want)
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Error("Open changed the damaged segment; it must leave it for a person to look at")
			}
		})
	}
}

func TestVerifyIsReadOnly(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Log("running as root, where modes do not deny: Verify is checked to write nothing instead")
	}
	dir := copyDir(t, buildSpool(t, 5))
	editFile(t, filepath.Join(dir, segmentName(4)), func(b []byte) []byte { return b[:len(b)-3] }) // torn
	before := snapshot(t, dir)
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	rep, err := Verify(dir)
	if err != nil || rep.Records != 4 || rep.Torn != recordSize-3 {
		t.Fatalf("verify = %+v, %v", rep, err)
	}
	if after := snapshot(t, dir); !maps.Equal(before, after) {
		t.Errorf("Verify changed the directory: %v -> %v", before, after)
	}
}

// snapshot maps each file of dir to its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := fs.WalkDir(os.DirFS(dir), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(filepath.Join(dir, path))
		files[path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestVerifyNotASpool(t *testing.T) {
	if _, err := Verify(t.TempDir()); err == nil || errors.As(err, new(*Break)) {
		t.Errorf("Verify of an empty directory = %v; want an error that is not a break", err)
	}
	if _, err := Verify(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Verify of a missing directory succeeded")
	}
}

package spool

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// rec returns the bytes of the i-th record (from 0) of a segment.
func rec(b []byte, i int) []byte { return b[i*recordSize : (i+1)*recordSize] }

// resum recomputes a record's body checksum, as a careful editor would.
func resum(r []byte) {
	binary.BigEndian.PutUint32(r[12:16], checksum(r[headerSize:]))
}

// rehash recomputes a record's hash and then its checksum.
func rehash(r []byte) {
	body := r[headerSize:]
	sum := recordHash(body[:49], body[fixedBody:])
	copy(body[49:81], sum[:])
	resum(r)
}

// tamperCase is a change to a spool and the break Verify must report for it.
type tamperCase struct {
	name    string
	tamper  func(dir string)
	segment string
	off     int64
	seq     uint64
	want    string
}

// tamperCases are changes to a spool of nine records, three a segment (seg-1: records 1-3,
// seg-4: 4-6, seg-7: 7-9).
func tamperCases(t *testing.T) []tamperCase {
	seg4, seg7 := segmentName(4), segmentName(7)
	inSeg4 := func(edit func(b []byte) []byte) func(dir string) {
		return func(dir string) { editFile(t, filepath.Join(dir, seg4), edit) }
	}
	return []tamperCase{
		{"payload byte edited", inSeg4(func(b []byte) []byte { rec(b, 1)[overhead] ^= 1; return b }),
			seg4, recordSize, 5, "checksum does not match (damaged or edited)"},
		{"payload edited, checksum recomputed", inSeg4(func(b []byte) []byte {
			r := rec(b, 1)
			r[overhead] ^= 1
			resum(r)
			return b
		}), seg4, recordSize, 5, "hash does not match its content (edited)"},
		{"record rewritten with its hash", inSeg4(func(b []byte) []byte {
			r := rec(b, 1)
			r[overhead] ^= 1
			rehash(r)
			return b
		}), seg4, 2 * recordSize, 6, "does not name the hash of record 5 as its previous (record 5 edited"},
		{"record deleted", inSeg4(func(b []byte) []byte { return slices.Delete(b, recordSize, 2*recordSize) }),
			seg4, recordSize, 5, "record 5 is missing (deleted)"},
		{"records swapped", inSeg4(func(b []byte) []byte {
			return slices.Concat(rec(b, 0), rec(b, 2), rec(b, 1))
		}), seg4, recordSize, 5, "record 5 is missing here; it stands in segment " + seg4 + " at offset 214 (records reordered)"},
		{"record copied", inSeg4(func(b []byte) []byte { return slices.Concat(rec(b, 0), rec(b, 1), rec(b, 1), rec(b, 2)) }),
			seg4, 2 * recordSize, 6, "record 5 stands where record 6 should (records reordered or copied)"},
		{"segment truncated in the middle", inSeg4(func(b []byte) []byte { return b[:recordSize+50] }),
			seg4, recordSize, 5, "ends inside a record (truncated in the middle of the spool)"},
		{"middle segment deleted", func(dir string) { os.Remove(filepath.Join(dir, seg4)) },
			seg7, 0, 4, "records 4 to 6 are missing (deleted)"},
		{"middle segment emptied", inSeg4(func([]byte) []byte { return nil }),
			seg4, 0, 4, "the segment is empty, yet later segments exist"},
		{"segment renamed", func(dir string) { os.Rename(filepath.Join(dir, seg7), filepath.Join(dir, segmentName(8))) },
			segmentName(8), 0, 7, "record 7 is missing here; it stands in segment " + segmentName(8) + " at offset 0"},
		{"a record of the last segment edited", func(dir string) {
			editFile(t, filepath.Join(dir, seg7), func(b []byte) []byte { rec(b, 1)[overhead+3] ^= 1; return b })
		}, seg7, recordSize, 8, "checksum does not match"},
		{"an event turned into a checkpoint", inSeg4(func(b []byte) []byte {
			r := rec(b, 1)
			r[headerSize] = kindCheckpoint
			rehash(r)
			return b
		}), seg4, recordSize, 5, "a record of kind 2"},
	}
}

// TestTamperDetection: Verify, Open and ReadDir find each change at the same place.
func TestTamperDetection(t *testing.T) {
	built := buildSpool(t, 9)
	for _, tt := range tamperCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, built)
			tt.tamper(dir)
			rep, err := Verify(dir)
			isBreak(t, err, tt.segment, tt.off, tt.seq, tt.want)
			if rep.Break == nil || rep.LastSeq != tt.seq-1 || rep.Records != tt.seq-1 {
				t.Errorf("report = %d records up to %d; want the %d before the break", rep.Records, rep.LastSeq, tt.seq-1)
			}
			_, err = reopen(t, dir)
			isBreak(t, err, tt.segment, tt.off, tt.seq, tt.want)
			readBreak(t, dir, tt)
		})
	}
}

// readBreak checks that ReadDir reports the break Verify does, having handed over the records
// before it and no other, though the last of them may be the edited one: a record rewritten
// with its own hash shows only at the next.
func readBreak(t *testing.T, dir string, tt tamperCase) {
	t.Helper()
	var seqs []uint64
	rep, err := ReadDir(dir, func(r Record) bool {
		seqs = append(seqs, r.Seq)
		return true
	})
	isBreak(t, err, tt.segment, tt.off, tt.seq, tt.want)
	want := make([]uint64, tt.seq-1)
	for i := range want {
		want[i] = uint64(i) + 1
	}
	if !slices.Equal(seqs, want) || rep.Break == nil || rep.Records != tt.seq-1 {
		t.Errorf("ReadDir handed over records %v, report %+v; want the %d before the break", seqs, rep, tt.seq-1)
	}
}

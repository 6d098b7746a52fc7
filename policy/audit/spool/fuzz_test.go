package spool

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzVerify feeds any bytes to Verify as a spool's only segment, as someone who can write
// the spool's disk might: it must never panic, and what it reports must add up.
func FuzzVerify(f *testing.F) {
	var seg []byte
	var prev [32]byte
	for i := range 3 {
		rec, sum := encode(kindEvent, uint64(i+1), time.UnixMilli(1_700_000_000_000), prev, payload(i))
		seg, prev = append(seg, rec...), sum
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-5])
	f.Add(append(seg[:recordSize:recordSize], seg[2*recordSize:]...))
	f.Add([]byte(magic + "\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(dir)
		if (err == nil) != (rep.Break == nil) || rep.Bytes != int64(len(data)) || rep.Torn > rep.Bytes {
			t.Fatalf("report %+v with error %v for %d bytes", rep, err, len(data))
		}
		if rep.Records > 0 && (rep.FirstSeq != 1 || rep.LastSeq != rep.Records) {
			t.Fatalf("report %+v: sound records must run from 1", rep)
		}
		if err == nil && rep.Torn == 0 && rep.Records*overhead > uint64(len(data)) {
			t.Fatalf("report %+v: more records than %d bytes hold", rep, len(data))
		}
	})
}

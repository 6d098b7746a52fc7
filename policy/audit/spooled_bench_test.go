package audit

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// BenchmarkAccesses is the patient access report (Spooled.Accesses) over a spool of 200 000
// records of 50 000 patients in segments of 4 MiB (about 7000 records each), each patient's
// records in one run of 4 (one patient's searches and retrieves), written by 32 clients at
// once, for one patient: with the spool's index by patient
// (Options.Keys = PatientKeys, as serve opens it) and without (every segment read). Each
// reports the records the report found, which must be the same, and the time spool.Open took
// (reading and verifying every record, and with the index building it).
func BenchmarkAccesses(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "spool")
	opts := spool.Options{Dir: dir, SegmentBytes: 4 << 20, MaxBytes: 1 << 30, Clock: time.Now}
	s, err := spool.Open(opts, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	const records, patients = 200_000, 50_000
	base := Event{Time: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC), User: "910000000001", Issuer: "https://idp.example",
		TokenID: "jti", Role: "R8000", Organisation: "RR8", System: "viewer", Purpose: "DIRECT", PurposeSource: "token",
		ClientAddress: "10.0.0.7", Action: ActionMetadata, Resource: "/dicom-web/studies/:study/metadata",
		StudyUIDs: []string{"1.2.826.0.1.3680043.8.498.12345678901234567890"}, Outcome: OutcomeSuccess, Status: 200, Sources: []string{"RXA"}}
	ctx := context.Background()
	const writers = 32
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for n := w * 4; n < records; n += writers * 4 {
				e := base
				e.PatientID = fmt.Sprintf("9%09d", n/4%patients)
				for i := range 4 {
					e.RequestID = fmt.Sprintf("r%d", n+i)
					p, err := Encode(e)
					if err == nil {
						_, err = s.Append(ctx, p)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	want := -1
	for _, index := range []bool{false, true} {
		b.Run(fmt.Sprintf("index=%v", index), func(b *testing.B) {
			o := opts
			if index {
				o.Keys = PatientKeys
			}
			start := time.Now()
			s, err := spool.Open(o, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			opened := time.Since(start)
			defer s.Close()
			r := NewSpooled(s)
			found := 0
			for b.Loop() {
				got, err := r.Accesses(ctx, "9000000042")
				if err != nil {
					b.Fatal(err)
				}
				found = len(got)
			}
			if want < 0 {
				want = found
			} else if found != want {
				b.Errorf("found %d accesses; without the index %d", found, want)
			}
			b.ReportMetric(float64(found), "accesses")
			b.ReportMetric(float64(opened.Microseconds())/1000, "open-ms")
		})
	}
}

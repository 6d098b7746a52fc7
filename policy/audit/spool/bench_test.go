package spool

import (
	"context"
	"sync"
	"testing"
)

// BenchmarkAppend measures Append with a 512-byte payload, one appender after another and 16
// at once, and reports records a second and fsyncs a record (segment and directory syncs
// together). Every Append waits for its fsync, so the numbers are the disk's: on tmpfs, or a
// /tmp whose fsync returns at once, they are far better than a real disk gives; measure on
// the disk the spool will use.
func BenchmarkAppend(b *testing.B) {
	for _, appenders := range []int{1, 16} {
		name := "sequential"
		if appenders > 1 {
			name = "concurrent-16"
		}
		b.Run(name, func(b *testing.B) { benchAppend(b, appenders) })
	}
}

// benchAppend runs b.N appends spread over the given number of goroutines.
func benchAppend(b *testing.B, appenders int) {
	opts := testOptions(b, newClock())
	opts.SegmentBytes = 64 << 20
	fsys := newFaultFS()
	s := mustOpen(b, opts, fsys)
	defer s.Close()
	data := make([]byte, 512)
	_, files0, dirs0 := fsys.counts()
	work := make(chan struct{})
	var wg sync.WaitGroup
	b.ResetTimer()
	for range appenders {
		wg.Go(func() {
			for range work {
				if _, err := s.Append(context.Background(), data); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	b.StopTimer()
	_, files, dirs := fsys.counts()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(files-files0+dirs-dirs0)/float64(b.N), "fsyncs/record")
}

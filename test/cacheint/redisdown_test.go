package cacheint

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/test/orthanc"
	"github.com/nirproxy/nirproxy/test/redisserver"
)

// loadResult is one request of the Redis outage test's load.
type loadResult struct {
	at   time.Duration // since the load began
	a    answer
	want []string
}

// TestCacheRedisDown kills the Redis under load and restarts it: no request may fail, the
// breaker must say Redis went and came back, and the cache must be used again afterwards
// without restarting nirproxy.
func TestCacheRedisDown(t *testing.T) {
	needRedis(t)
	const (
		fresh     = 3 * time.Second
		loadFor   = 6 * time.Second
		killAt    = time.Second
		restartAt = 3 * time.Second
		workers   = 4
	)
	srv := redisserver.StartT(t, redisserver.Options{})
	r := startRig(t, cacheConfig{
		redisAddrs:      []string{srv.Addr()},
		search:          freshness{fresh, 10 * time.Minute},
		breakerCooldown: 500 * time.Millisecond,
		opTimeout:       100 * time.Millisecond,
	})
	alpha, bravo := studiesOf(orthanc.PatientAlpha, ""), studiesOf(orthanc.PatientBravo, "")

	// Distinct searches differ by the end of a StudyDate range that every study matches, so
	// each is a new cache key with the same answer.
	var distinct atomic.Int64
	nextDate := func() string {
		day := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(distinct.Add(1)))
		return "20000101-" + day.Format("20060102")
	}

	var mu sync.Mutex
	var results []loadResult
	begin := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Since(begin) < loadFor; i++ {
				var path string
				want := alpha
				switch (i + w) % 3 {
				case 0:
					path = searchPath(orthanc.PatientAlpha, "")
				case 1:
					path, want = searchPath(orthanc.PatientBravo, ""), bravo
				default:
					path = searchPath(orthanc.PatientAlpha, nextDate())
				}
				a := r.get(path)
				mu.Lock()
				results = append(results, loadResult{at: time.Since(begin), a: a, want: want})
				mu.Unlock()
			}
		})
	}
	var killedAt, restartedAt time.Duration
	var outageErr error
	wg.Go(func() {
		time.Sleep(time.Until(begin.Add(killAt)))
		if outageErr = srv.Kill(); outageErr != nil {
			return
		}
		killedAt = time.Since(begin)
		time.Sleep(time.Until(begin.Add(restartAt)))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if outageErr = srv.Restart(ctx); outageErr != nil {
			return
		}
		restartedAt = time.Since(begin)
	})
	wg.Wait()
	if outageErr != nil {
		t.Fatalf("kill and restart redis-server: %v", outageErr)
	}

	during, failed := 0, 0
	for _, res := range results {
		a := res.a
		if res.at > killedAt && res.at < restartedAt {
			during++
		}
		if a.err != nil || a.status != http.StatusOK {
			failed++
			t.Errorf("at %v: %s: status %d, %v; Warning %q; body %.300s", res.at.Round(time.Millisecond), a.what, a.status, a.err, a.header.Values("Warning"), a.body)
			continue
		}
		if got := decodeStudyUIDs(t, a.what, a.body); !slices.Equal(got, res.want) {
			failed++
			t.Errorf("at %v: %s: studies %q, want %q", res.at.Round(time.Millisecond), a.what, got, res.want)
		}
		if w := a.header.Values("Warning"); len(w) > 0 {
			t.Errorf("at %v: %s: Warning %q, though every trust was up", res.at.Round(time.Millisecond), a.what, w)
		}
	}
	t.Logf("%d requests in %v (redis killed at %v, back at %v; %d requests while it was down), %d failed",
		len(results), loadFor, killedAt.Round(time.Millisecond), restartedAt.Round(time.Millisecond), during, failed)
	if during == 0 {
		t.Errorf("no request was answered while Redis was down: the outage was not exercised")
	}

	off, err := r.waitLog("redis cache unavailable", 0, 5*time.Second)
	if err != nil {
		t.Errorf("the breaker did not report Redis gone: %v", err)
	} else if _, err := r.waitLog("redis cache available again", off, 5*time.Second); err != nil {
		// The breaker closes on the first call after its cooldown; make one.
		r.search(orthanc.PatientBravo)
		if _, err := r.waitLog("redis cache available again", off, 3*time.Second); err != nil {
			t.Errorf("the breaker did not report Redis back: %v", err)
		}
	}
	if up := r.metric("nirproxy_cache_backend_up"); up != 1 {
		t.Errorf("nirproxy_cache_backend_up is %v after Redis came back, want 1", up)
	}

	// The cache is in use again: a new search reaches each trust once, and its repeat, within
	// the fresh period, none.
	date := nextDate()
	path := searchPath(orthanc.PatientAlpha, date)
	stored := time.Now()
	wantStudies(t, r.get(path), alpha)
	totals := map[string]int{}
	for id, tp := range r.taps {
		if n := tp.count(studySearch(orthanc.PatientAlpha, date)); n != 1 {
			t.Errorf("a new search after the restart reached %s %d times, want 1", id, n)
		}
		totals[id] = tp.total()
	}
	wantStudies(t, r.get(path), alpha)
	if time.Since(stored) >= fresh {
		t.Fatalf("the repeat came %v after the first search, past the fresh period %v; cannot judge", time.Since(stored), fresh)
	}
	for id, tp := range r.taps {
		if n := tp.total(); n != totals[id] {
			t.Errorf("after Redis came back a repeated search within the fresh period reached %s (%d requests, %d before): the cache is not used again", id, n, totals[id])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := redisserver.ScanAll(ctx, srv.Client())
	if err != nil {
		t.Fatalf("scan redis: %v", err)
	}
	if len(kv) == 0 {
		t.Errorf("the restarted Redis holds no key: the proxy did not write to it again")
	}
	t.Logf("the restarted Redis holds %d keys", len(kv))
}

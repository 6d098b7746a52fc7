package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/test/bench"
)

// fakeSources is a sourcesResult as a run of the phase might leave it, every target met;
// change modifies it before the verdicts are read.
func fakeSources(change func(s *sourcesResult)) *sourcesResult {
	lat := func(d time.Duration, n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = d
		}
		return out
	}
	res := func(name string, p50 time.Duration) *bench.Result {
		return &bench.Result{Name: name, Connections: 1, Requests: 10, Elapsed: time.Second, Latencies: lat(p50, 10)}
	}
	g := &group{Conns: 1, Results: map[string]*bench.Result{}}
	for _, n := range sourceCounts() {
		g.Results[nameSources(n)] = res(nameSources(n), 50*time.Millisecond+time.Duration(n)*100*time.Microsecond)
	}
	for _, n := range smallCounts() {
		g.Results[nameSmall(n)] = res(nameSmall(n), 50*time.Millisecond)
	}
	g.Results[nameHangOpen] = res(nameHangOpen, 51*time.Millisecond)
	settings := sourceSettings{Timeout: time.Second, RequestTimeout: 2 * time.Second, BreakerMinRequests: 50, BreakerOpenFor: time.Hour}
	reqSettings := settings
	reqSettings.Timeout, reqSettings.RequestTimeout = 10*time.Second, time.Second
	s := &sourcesResult{Delay: 50 * time.Millisecond, Studies: 10, Settings: settings, Fan: g,
		Header:  &deadlineRun{Settings: settings, Conns: 8, Obs: bench.Observations{Latencies: lat(1010*time.Millisecond, 50)}, Opened: true, OpenedAfter: 7 * time.Second},
		Request: &deadlineRun{Settings: reqSettings, Conns: 8, Obs: bench.Observations{Latencies: lat(1005*time.Millisecond, 40)}},
		Open:    bench.Observations{Latencies: lat(55*time.Millisecond, 100)},
	}
	if change != nil {
		change(s)
	}
	return s
}

func TestSourcesVerdicts(t *testing.T) {
	tests := []struct {
		name string
		// change spoils the run; unmet lists words of the targets that must then be unmet.
		change func(s *sourcesResult)
		unmet  []string
	}{
		{name: "everything met"},
		{name: "20 origins much slower than one", change: func(s *sourcesResult) {
			s.Fan.Results[nameSources(20)].Latencies = []time.Duration{90 * time.Millisecond}
		}, unmet: []string{"20 origins / 1 origin"}},
		{name: "an answer past the header timeout", change: func(s *sourcesResult) {
			s.Header.Obs.Latencies = append(s.Header.Obs.Latencies, 1200*time.Millisecond)
		}, unmet: []string{"its header `timeout`"}},
		{name: "an answer past the request deadline", change: func(s *sourcesResult) {
			s.Request.Obs.Latencies = append(s.Request.Obs.Latencies, 1101*time.Millisecond)
		}, unmet: []string{"`requestTimeout` (1s) the deadline"}},
		{name: "a slow answer while the breaker is open counts too", change: func(s *sourcesResult) {
			s.Open.Latencies = append(s.Open.Latencies, 2*time.Second)
		}, unmet: []string{"its header `timeout`"}},
		{name: "a failed answer", change: func(s *sourcesResult) {
			s.Request.Obs.Failed, s.Request.Obs.FirstProblem = 1, "get: unexpected status 503"
		}, unmet: []string{"`requestTimeout` (1s) the deadline", "Warning: 299"}},
		{name: "an answer without the warning", change: func(s *sourcesResult) { s.Open.Rejected = 1 },
			unmet: []string{"Warning: 299"}},
		{name: "the breaker never opened", change: func(s *sourcesResult) {
			s.Header.Opened = false
			delete(s.Fan.Results, nameHangOpen)
		}, unmet: []string{"breaker is open"}},
		{name: "slow with the breaker open", change: func(s *sourcesResult) {
			s.Fan.Results[nameHangOpen].Latencies = []time.Duration{80 * time.Millisecond}
		}, unmet: []string{"breaker is open"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := fakeSources(tc.change).verdicts()
			if len(vs) != 8 {
				t.Fatalf("got %d verdicts, want 8: %+v", len(vs), vs)
			}
			for _, v := range vs {
				wantUnmet := false
				for _, w := range tc.unmet {
					if strings.Contains(v.Target, w) {
						wantUnmet = true
					}
				}
				if v.Met == wantUnmet {
					t.Errorf("%q: met = %v (%s)", v.Target, v.Met, v.Measured)
				}
			}
		})
	}
}

func TestSourcesMarkdown(t *testing.T) {
	s := fakeSources(func(s *sourcesResult) {
		s.Answer = map[string]fanTarget{nameSources(20): {Studies: 200, Proc: "nirproxy (20 origins)"}}
		s.Fan.Targets = []string{nameSources(1), nameSources(20), nameHangOpen}
		s.Open.Notes = map[string]int{`"Results from HANG (x) are missing: its PACS has an open circuit breaker"`: 100}
	})
	b := &strings.Builder{}
	s.markdown(b, 2)
	out := b.String()
	for _, want := range []string{
		"### 5–6.",
		"| nirproxy, 20 origins | 1 | 10 | 10.0 | 52.0 | 52.0 | 0 | 200 |",
		"breaker: {minRequests: 50, failureRatio: 0.5, openFor: 1h}",
		"| header timeout 1s, breaker closed (until /status said open) | 8 | 50 | 1010 | 1010 | 1010 | 1100 ms | 0 | 0 | 0 |",
		"open circuit breaker\"`: 100",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the section lacks %q:\n%s", want, out)
		}
	}
}

func TestShortDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{time.Hour, "1h"}, {90 * time.Minute, "1h30m"}, {time.Minute, "1m"}, {1500 * time.Millisecond, "1.5s"}, {2 * time.Second, "2s"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := shortDuration(tc.in); got != tc.want {
				t.Fatalf("shortDuration(%v) = %q", tc.in, got)
			}
		})
	}
}

// fakeCache is a cacheResult as a run of point 7 might leave it, every target met; change
// modifies it before the verdicts are read.
func fakeCache(change func(c *cacheResult)) *cacheResult {
	res := func(name string, rps int, p50 time.Duration) *bench.Result {
		lat := make([]time.Duration, rps)
		for i := range lat {
			lat[i] = p50
		}
		return &bench.Result{Name: name, Connections: 16, Requests: rps, Bytes: int64(rps) * 8716, Elapsed: time.Second, Latencies: lat}
	}
	g := &group{Conns: 16, Targets: []string{nameCacheRedis, nameCacheMemory, nameDirect, nameCacheNginx}, Results: map[string]*bench.Result{
		nameCacheRedis:  res(nameCacheRedis, 2000, 8*time.Millisecond),
		nameCacheMemory: res(nameCacheMemory, 3000, 5*time.Millisecond),
		nameDirect:      res(nameDirect, 150, 100*time.Millisecond),
		nameCacheNginx:  res(nameCacheNginx, 4000, 400*time.Microsecond),
	}, CPU: map[string]map[string]time.Duration{
		nameCacheRedis: {procCacheRedis: 900 * time.Millisecond, procRedis: 300 * time.Millisecond, procWrk: 100 * time.Millisecond},
	}}
	c := &cacheResult{Conns: 16, Threads: 2, Rounds: 3, Time: 9 * time.Second, Warm: time.Second, WrkVersion: "wrk 4.1.0",
		RedisVersion: "7.0.15", NginxVersion: "nginx/1.22.1", Fresh: time.Hour, Studies: 10, AnswerBytes: 8516, ContentType: "application/dicom+json", G: g,
		Checks:        []cacheCheck{{Target: nameCacheRedis, Phase: "warm-up", Answered: 561, Runs: 1, Hits: 575}},
		RedisCommands: map[string]float64{"GET": 1, "SET": 10}}
	if change != nil {
		change(c)
	}
	return c
}

func TestCacheVerdicts(t *testing.T) {
	tests := []struct {
		name string
		// change spoils the run; unmet lists words of the targets that must then be unmet.
		change func(c *cacheResult)
		unmet  []string
	}{
		{name: "everything met"},
		{name: "Redis under 10× a faster Orthanc", change: func(c *cacheResult) {
			c.G.Results[nameDirect].Requests = 250
		}, unmet: []string{"Repeated study search, proxy with the cache in Redis"}},
		{name: "in-process under half of nginx", change: func(c *cacheResult) {
			c.G.Results[nameCacheMemory].Requests = 1900
		}, unmet: []string{"the in-process cache / nginx"}},
		{name: "errors from Orthanc spoil every speed-up", change: func(c *cacheResult) {
			c.G.Results[nameDirect].Errors = 1
		}, unmet: []string{"/ Orthanc"}},
		{name: "errors from the proxy spoil its rows", change: func(c *cacheResult) {
			c.G.Results[nameCacheRedis].Errors = 3
		}, unmet: []string{"Repeated study search, proxy with the cache in Redis", "(aim) the same, proxy with the cache in Redis"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := fakeCache(tc.change).verdicts()
			if len(vs) != 4 {
				t.Fatalf("got %d verdicts, want 4: %+v", len(vs), vs)
			}
			for _, v := range vs {
				wantUnmet := false
				for _, w := range tc.unmet {
					if strings.Contains(v.Target, w) {
						wantUnmet = true
					}
				}
				if v.Met == wantUnmet {
					t.Errorf("%q: met = %v (%s)", v.Target, v.Met, v.Measured)
				}
			}
		})
	}
}

func TestCacheMarkdown(t *testing.T) {
	b := &strings.Builder{}
	fakeCache(nil).markdown(b)
	out := b.String()
	for _, want := range []string{
		"### 7.",
		"`cache.search.fresh: 1h`",
		"(8516 bytes, `Content-Type: application/dicom+json`)",
		"| nirproxy, cache in Redis | 16 | 2000 | 2000 | 8.00 | 8.00 | 0 | 8716 | 450 | 150 | – | – | 50 |",
		"| nginx, the proxy's answer as a static file | 16 | 4000 | 4000 | 0.40 | 0.40 | 0 | 8716 | – | – | – | – | – |",
		"Redis cache / Orthanc direct 13.3×",
		"| nirproxy, cache in Redis | warm-up | 1 | 561 | 575 | 0 | 0 |",
		"While the Redis row was measured, Redis ran 11.0 commands per answer (`INFO commandstats` around its slices): SET 10.0, GET 1.0.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the section lacks %q:\n%s", want, out)
		}
	}
}

func TestCacheCheckProblem(t *testing.T) {
	tests := []struct {
		name  string
		check cacheCheck
		want  string // a word of the problem; "" for none
	}{
		{name: "a hit per answer, a few more for requests cut off", check: cacheCheck{Answered: 1000, Runs: 3, Hits: 1040}},
		{name: "exactly a hit per answer", check: cacheCheck{Answered: 1000, Runs: 1, Hits: 1000}},
		{name: "fewer hits than answers", check: cacheCheck{Answered: 1000, Runs: 1, Hits: 990}, want: "fresh hits"},
		{name: "more hits than requests sent", check: cacheCheck{Answered: 1000, Runs: 1, Hits: 1017}, want: "fresh hits"},
		{name: "a miss", check: cacheCheck{Answered: 1000, Runs: 1, Hits: 1000, Others: 1}, want: "misses"},
		{name: "a request reached Orthanc", check: cacheCheck{Answered: 1000, Runs: 1, Hits: 1000, Upstream: 1}, want: "Orthanc was sent 1"},
		{name: "errors", check: cacheCheck{Answered: 1000, Errors: 2, Runs: 1, Hits: 1002}, want: "2 errors"},
		{name: "nothing answered", check: cacheCheck{Runs: 1}, want: "no answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.check.problem(16)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("problem = %q, want one saying %q", got, tc.want)
			}
		})
	}
}

func TestRedisCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_get:calls=1052,usec=2100,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_set:calls=10520,usec=40000,usec_per_call=3.80,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=4,usec=90\r\n"
	stats := parseCommandStats(info)
	if stats["GET"] != 1052 || stats["SET"] != 10520 || stats["INFO"] != 4 || len(stats) != 3 {
		t.Fatalf("parseCommandStats = %v", stats)
	}
	if got, want := commandsText(map[string]float64{"GET": 1, "SET": 10, "SADD": 10}), "SADD 10.0, SET 10.0, GET 1.0"; got != want {
		t.Fatalf("commandsText = %q, want %q", got, want)
	}
}

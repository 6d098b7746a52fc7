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
	settings := sourceSettings{Timeout: time.Second, RequestTimeout: 2 * time.Second, BreakerFailures: 50, BreakerOpenFor: time.Hour}
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
		"breaker: {failures: 50, openFor: 1h}",
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

package main

import (
	"slices"
	"strings"
	"testing"
)

// authBenchOutput is test/scripts/bench.sh's Go benchmark output with two rounds of the
// authentication benchmark among the others.
const authBenchOutput = `goos: linux
goarch: amd64
pkg: github.com/nirproxy/nirproxy/dicomweb
cpu: AMD EPYC
BenchmarkSearchAnswer/1x500-2            	      93	  13436141 ns/op	     26872 ns/study	 7065751 B/op	  107068 allocs/op
BenchmarkCachedSearchAuth/auth=off-2         	    6117	    200000 ns/op	   74225 B/op	    1412 allocs/op
BenchmarkCachedSearchAuth/auth=on-2          	    6366	    250000 ns/op	   77783 B/op	    1441 allocs/op
BenchmarkCachedSearchAuth/auth=on,token=new-2         	    2850	    700000 ns/op	  105610 B/op	    1974 allocs/op
BenchmarkCachedSearchAuth/auth=off+on-2               	    3052	    435509 ns/op	    210000 off-ns/search	    230000 on-ns/search	         0.9130 on/off	  154854 B/op	    2854 allocs/op
pkg: github.com/nirproxy/nirproxy/dicomweb
BenchmarkCachedSearchAuth/auth=off-2         	    6117	    220000 ns/op	   74225 B/op	    1412 allocs/op
BenchmarkCachedSearchAuth/auth=on-2          	    6366	    220000 ns/op	   77783 B/op	    1441 allocs/op
BenchmarkCachedSearchAuth/auth=on,token=new-2         	    2850	    600000 ns/op	  105610 B/op	    1974 allocs/op
BenchmarkCachedSearchAuth/auth=off+on-2               	    3052	    435509 ns/op	    200000 off-ns/search	    240000 on-ns/search	         0.8333 on/off	  154854 B/op	    2854 allocs/op
`

func TestParseAuthBench(t *testing.T) {
	tests := []struct {
		name, out string
		// want is figures of some cases by unit; nil when nothing is to be found.
		want map[string]map[string][]float64
	}{
		{name: "two rounds among other benchmarks", out: authBenchOutput, want: map[string]map[string][]float64{
			authOff:    {unitNs: {200000, 220000}, unitAllocs: {1412, 1412}},
			authFirst:  {unitNs: {700000, 600000}},
			authPaired: {unitOffNs: {210000, 200000}, unitOnNs: {230000, 240000}, unitOnOff: {0.913, 0.8333}},
		}},
		{name: "GOMAXPROCS 1 leaves no suffix", out: "BenchmarkCachedSearchAuth/auth=off+on \t 10\t 100 ns/op\t 1.5 on/off\n",
			want: map[string]map[string][]float64{authPaired: {unitNs: {100}, unitOnOff: {1.5}}}},
		{name: "no authentication benchmark", out: "BenchmarkSearchAnswer/1x500-2 \t 93\t 13436141 ns/op\n"},
		{name: "no side-by-side case", out: "BenchmarkCachedSearchAuth/auth=off-2 \t 10\t 100 ns/op\nBenchmarkCachedSearchAuth/auth=on-2 \t 10\t 100 ns/op\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseAuthBench(tc.out)
			if tc.want == nil {
				if got != nil {
					t.Fatalf("found %v; want nothing", got)
				}
				return
			}
			for name, units := range tc.want {
				for unit, want := range units {
					if g := got[name][unit]; !slices.Equal(g, want) {
						t.Errorf("%s %s: %v; want %v", name, unit, g, want)
					}
				}
			}
		})
	}
}

func TestAuthVerdicts(t *testing.T) {
	tests := []struct {
		name     string
		out      string
		met      bool
		measured string
	}{
		{name: "the median of the rounds is judged", out: authBenchOutput, met: false,
			measured: "0.87× (median of 2 rounds, 0.83× to 0.91×; 235 µs / 205 µs per search)"},
		{name: "met", out: "BenchmarkCachedSearchAuth/auth=off+on-2 \t 10\t 100 ns/op\t 50 off-ns/search\t 50 on-ns/search\t 0.95 on/off\n",
			met: true, measured: "0.95× (median of 1 rounds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs := parseAuthBench(tc.out).verdicts()
			if len(vs) != 1 || vs[0].Point != "8" {
				t.Fatalf("verdicts %+v; want one of point 8", vs)
			}
			if vs[0].Met != tc.met || !strings.HasPrefix(vs[0].Measured, tc.measured) {
				t.Errorf("verdict %+v; want met %v, measured starting %q", vs[0], tc.met, tc.measured)
			}
		})
	}
}

func TestAuthMarkdown(t *testing.T) {
	b := &strings.Builder{}
	parseAuthBench(authBenchOutput).markdown(b)
	for _, want := range []string{
		"| auth=off | 2 | 210.0 | 200.0 | 220.0 | 1412 |",
		"| auth=on,token=new | 2 | 650.0 | 600.0 | 700.0 | 1974 |",
		"| auth=off+on, on | 2 | 235.0 | 230.0 | 240.0 | – |",
		"each round: 0.913×, 0.833×; median 0.873×",
		"one after the other instead, the medians give 0.894×",
		"A token's first request (its signature verified) costs 415 µs more than a cached token's",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the section lacks %q:\n%s", want, b.String())
		}
	}
}

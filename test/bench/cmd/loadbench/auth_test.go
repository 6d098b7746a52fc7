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
BenchmarkCachedSearchAuth/auth=off-2         	    5206	    200000 ns/op	   74911 B/op	    1412 allocs/op
BenchmarkCachedSearchAuth/auth=on-2          	    4060	    250000 ns/op	   77375 B/op	    1441 allocs/op
BenchmarkCachedSearchAuth/auth=on,token=new-2         	    1688	    700000 ns/op	  104129 B/op	    1974 allocs/op
pkg: github.com/nirproxy/nirproxy/dicomweb
BenchmarkCachedSearchAuth/auth=off-2         	    5206	    220000 ns/op	   74911 B/op	    1412 allocs/op
BenchmarkCachedSearchAuth/auth=on-2          	    4060	    220000 ns/op	   77375 B/op	    1441 allocs/op
BenchmarkCachedSearchAuth/auth=on,token=new-2         	    1688	    600000 ns/op	  104129 B/op	    1974 allocs/op
`

func TestParseAuthBench(t *testing.T) {
	tests := []struct {
		name, out string
		// ns is each case's ns/op by round; nil when nothing is to be found.
		ns map[string][]float64
	}{
		{name: "two rounds among other benchmarks", out: authBenchOutput, ns: map[string][]float64{
			authOff: {200000, 220000}, authOn: {250000, 220000}, authFirst: {700000, 600000}}},
		{name: "GOMAXPROCS 1 leaves no suffix", out: "BenchmarkCachedSearchAuth/auth=off \t 10\t 100 ns/op\nBenchmarkCachedSearchAuth/auth=on \t 10\t 110 ns/op\n",
			ns: map[string][]float64{authOff: {100}, authOn: {110}}},
		{name: "no authentication benchmark", out: "BenchmarkSearchAnswer/1x500-2 \t 93\t 13436141 ns/op\n"},
		{name: "only one of the two cases", out: "BenchmarkCachedSearchAuth/auth=off-2 \t 10\t 100 ns/op\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseAuthBench(tc.out)
			if tc.ns == nil {
				if got != nil {
					t.Fatalf("found %v; want nothing", got)
				}
				return
			}
			if len(got) != len(tc.ns) {
				t.Fatalf("found cases %v; want %v", got, tc.ns)
			}
			for name, want := range tc.ns {
				c := got[name]
				if c == nil || !slices.Equal(c.NsPerOp, want) {
					t.Errorf("%s: %+v; want ns/op %v", name, c, want)
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
		// Rounds 0.80× and 1.00×: the median is 0.90×, at the target.
		{name: "median of the rounds at the target", out: authBenchOutput, met: true, measured: "0.90× (median of 2 rounds, 0.80× to 1.00×; 210 µs / 235 µs per search)"},
		{name: "slower with authentication", out: "BenchmarkCachedSearchAuth/auth=off-2 \t 10\t 100 ns/op\nBenchmarkCachedSearchAuth/auth=on-2 \t 10\t 200 ns/op\n",
			met: false, measured: "0.50× (median of 1 rounds"},
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
		"| auth=off | 2 | 210.0 | 200.0 | 220.0 | 1412 | 4762 |",
		"| auth=on,token=new | 2 | 650.0 | 600.0 | 700.0 | 1974 | 1538 |",
		"each round: 0.80×, 1.00×; median 0.90×",
		"A token's first request (its signature verified) costs 415 µs more than a cached token's",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the section lacks %q:\n%s", want, b.String())
		}
	}
}

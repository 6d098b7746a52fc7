package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file is issue 11's item 8: a cached search with authentication on versus off, in the
// same run. serve cannot run without authentication, so it is measured in process, by the Go
// benchmark BenchmarkCachedSearchAuth (dicomweb/auth_bench_test.go), which
// test/scripts/bench.sh runs in interleaved rounds (off, on, first request; then again) and
// hands over with the other Go benchmarks. The ratio of each round pairs figures measured
// seconds apart, so that a machine that slows down mid-run affects both alike.

// minAuthRatio is the least throughput of the cached search with authentication on over off.
const minAuthRatio = 0.9

// authBenchmark is the Go benchmark's name, and its cases.
const (
	authBenchmark = "BenchmarkCachedSearchAuth"
	authOff       = "auth=off"
	authOn        = "auth=on"
	authFirst     = "auth=on,token=new"
)

// authCase is one case's figures, one per round, in the order the rounds ran.
type authCase struct {
	NsPerOp, AllocsPerOp []float64
}

// authResult is the benchmark's figures, by case.
type authResult map[string]*authCase

// parseAuthBench reads the benchmark's lines out of `go test -bench` output, or returns nil when
// it has none of both auth=off and auth=on.
func parseAuthBench(out string) authResult {
	res := authResult{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		name, ok := strings.CutPrefix(firstOr(f), authBenchmark+"/")
		if !ok {
			continue
		}
		// The name ends in -GOMAXPROCS (none when it is 1).
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		ns, okNs := benchValue(f, "ns/op")
		allocs, _ := benchValue(f, "allocs/op")
		if !okNs {
			continue
		}
		c := res[name]
		if c == nil {
			c = &authCase{}
			res[name] = c
		}
		c.NsPerOp = append(c.NsPerOp, ns)
		c.AllocsPerOp = append(c.AllocsPerOp, allocs)
	}
	if res[authOff] == nil || res[authOn] == nil {
		return nil
	}
	return res
}

func firstOr(f []string) string {
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// benchValue is the figure before unit in a benchmark line's fields.
func benchValue(f []string, unit string) (float64, bool) {
	for i := 1; i < len(f); i++ {
		if f[i] == unit {
			v, err := strconv.ParseFloat(f[i-1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// median is the median of vs (the mean of the middle two for an even count), 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// ratios is the throughput with authentication on over off in each round: off's time per
// search over on's.
func (a authResult) ratios() []float64 {
	off, on := a[authOff].NsPerOp, a[authOn].NsPerOp
	out := make([]float64, min(len(off), len(on)))
	for i := range out {
		out[i] = ratio(off[i], on[i])
	}
	return out
}

// verdicts compares the figures with item 8's target.
func (a authResult) verdicts() []verdict {
	rs := a.ratios()
	x := median(rs)
	lo, hi := slices.Min(rs), slices.Max(rs)
	return []verdict{{"8", fmt.Sprintf("Cached study search through the whole handler, throughput with authentication on / off ≥ %.2f×", minAuthRatio),
		fmt.Sprintf("%.2f× (median of %d rounds, %.2f× to %.2f×; %.0f µs / %.0f µs per search)", x, len(rs), lo, hi,
			median(a[authOff].NsPerOp)/1e3, median(a[authOn].NsPerOp)/1e3),
		x >= minAuthRatio}}
}

// markdown is the report's section on item 8.
func (a authResult) markdown(b *strings.Builder) {
	b.WriteString("\n### 8. Cached search, authentication on versus off\n\n")
	fmt.Fprintf(b, "`nirproxy serve` has no switch to turn authentication off, so item 8 is measured in process by the Go benchmark `%s` (`dicomweb/auth_bench_test.go`): "+
		"the search of 1–2 (10 studies) answered from the in-process cache, through the whole handler as serve mounts it (middleware, routing, governance, cache, answer writing; no network, audit discarded), "+
		"one request at a time. `%s` is `policy.AllowAll`; `%s` is what serve runs: a development issuer's ES256 IUA token verified by `policy/authn` "+
		"and then taken from its verified-token cache (as a viewer's repeated requests are), the onboarding rules of `policy/authz` over a registry file, and `policy/ratelimit`'s counts in process (limits too high to refuse); "+
		"`%s` verifies the token's signature on every request (two tokens taking turns in a token cache of one), as a caller's first request does. "+
		"`test/scripts/bench.sh` runs the three in interleaved rounds (off, on, first; then again); each round's ratio pairs figures measured seconds apart.\n\n",
		authBenchmark, authOff, authOn, authFirst)
	b.WriteString("| case | rounds | µs per search, median | min | max | allocations per search | searches/s on one core |\n|---|---|---|---|---|---|---|\n")
	for _, name := range []string{authOff, authOn, authFirst} {
		c := a[name]
		if c == nil {
			continue
		}
		m := median(c.NsPerOp)
		fmt.Fprintf(b, "| %s | %d | %.1f | %.1f | %.1f | %.0f | %.0f |\n", name, len(c.NsPerOp), m/1e3,
			slices.Min(c.NsPerOp)/1e3, slices.Max(c.NsPerOp)/1e3, median(c.AllocsPerOp), ratio(1e9, m))
	}
	rs := a.ratios()
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2f×", r)
	}
	fmt.Fprintf(b, "\nThroughput with authentication on / off, each round: %s; median %.2f×.", strings.Join(parts, ", "), median(rs))
	if c := a[authFirst]; c != nil {
		on := median(a[authOn].NsPerOp)
		fmt.Fprintf(b, " A token's first request (its signature verified) costs %.0f µs more than a cached token's (%.0f µs / %.0f µs per search).",
			(median(c.NsPerOp)-on)/1e3, median(c.NsPerOp)/1e3, on/1e3)
	}
	b.WriteString("\n")
}

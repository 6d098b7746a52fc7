package main

import (
	"slices"
	"strconv"
	"strings"
)

// benchCase is one case of a Go benchmark: its figures by unit, one per round, in the order
// the rounds ran.
type benchCase map[string][]float64

// benchCases is a Go benchmark's figures, by case (the sub-benchmark's name).
type benchCases map[string]benchCase

// parseGoBench reads the lines of benchmark's cases out of `go test -bench` output.
func parseGoBench(out, benchmark string) benchCases {
	res := benchCases{}
	for _, line := range strings.Split(out, "\n") {
		// Name, iterations, then pairs of figure and unit.
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		name, ok := strings.CutPrefix(f[0], benchmark+"/")
		if !ok {
			continue
		}
		// The name ends in -GOMAXPROCS (none when it is 1).
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		c := res[name]
		if c == nil {
			c = benchCase{}
			res[name] = c
		}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				c[f[i+1]] = append(c[f[i+1]], v)
			}
		}
	}
	return res
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

// nsPerMicrosecond turns the benchmarks' nanoseconds into the report's microseconds.
const nsPerMicrosecond = 1e3

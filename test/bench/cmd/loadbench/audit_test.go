package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// auditBenchOutput is test/scripts/bench.sh's Go benchmark output with two rounds of the audit
// benchmark (the second without its 64-client case) after the authentication benchmark; the
// 16-client case of the first round comes from before the benchmark measured CPU time.
const auditBenchOutput = authBenchOutput + `pkg: github.com/nirproxy/nirproxy/dicomweb
BenchmarkAudit/search/clients=1-2         	    1579	    746750 ns/op	    183483 fsync-ns	    260000 off-ns/req	    480000 on-ns/req	         0.5400 on/off	    230000 record-ns	  163339 B/op	    3054 allocs/op
BenchmarkAudit/search/clients=16-2        	      31	  45707371 ns/op	    311000 fsync-ns	    120000 off-ns/req	    130000 on-ns/req	         0.9200 on/off	   2495366 record-ns	22380410 B/op	  390196 allocs/op
BenchmarkAudit/search/clients=64-2        	       5	 303246562 ns/op	    386666 fsync-ns	    274388 off-ns/req	    316906 on-ns/req	         0.8658 on/off	  14862139 record-ns	92294323 B/op	 1560513 allocs/op
BenchmarkAudit/search/clients=128-2       	       3	 781731511 ns/op	    311033 fsync-ns	         1.936 off-cores	    179496 off-cpu-ns/req	     92719 off-ns/req	         1.823 on-cores	    178921 on-cpu-ns/req	     98132 on-ns/req	         0.9448 on/off	  11325525 record-ns	676616954 B/op	12487558 allocs/op
BenchmarkAudit/metadata/clients=1-2       	     452	   2396724 ns/op	    217975 fsync-ns	   1070706 off-ns/req	   1325502 on-ns/req	         0.8078 on/off	    253321 record-ns	  671460 B/op	   12527 allocs/op
BenchmarkAudit/instance/clients=16-2      	       7	 159541361 ns/op	   2323580 fsync-ns	    427481 off-ns/req	    818926 on-ns/req	         0.5220 on/off	   6794054 record-ns	37814664 B/op	   97166 allocs/op
BenchmarkAudit/search/clients=1-2         	    1579	    746750 ns/op	    200000 fsync-ns	    280000 off-ns/req	    500000 on-ns/req	         0.5600 on/off	    250000 record-ns	  163339 B/op	    3054 allocs/op
BenchmarkAudit/search/clients=16-2        	      31	  45707371 ns/op	    331000 fsync-ns	    140000 off-ns/req	    170000 on-ns/req	         0.8200 on/off	   2505366 record-ns	22380410 B/op	  390196 allocs/op
BenchmarkAudit/search/clients=128-2       	       3	 781731511 ns/op	    300000 fsync-ns	         1.900 off-cores	    181000 off-cpu-ns/req	     94000 off-ns/req	         1.700 on-cores	    183000 on-cpu-ns/req	    110000 on-ns/req	         0.8600 on/off	  11000000 record-ns	676616954 B/op	12487558 allocs/op
`

func TestParseAuditBench(t *testing.T) {
	a := parseAuditBench(auditBenchOutput)
	if a == nil {
		t.Fatal("found nothing")
	}
	for name, units := range map[string]map[string][]float64{
		"search/clients=16":  {unitOnOff: {0.92, 0.82}, unitOffReq: {120000, 140000}, unitFsync: {311000, 331000}},
		"search/clients=64":  {unitOnOff: {0.8658}},
		"search/clients=128": {unitOnOff: {0.9448, 0.86}, unitOffCPU: {179496, 181000}, unitOnCores: {1.823, 1.7}},
		"metadata/clients=1": {unitRecord: {253321}},
	} {
		for unit, want := range units {
			if got := a[name][unit]; !slices.Equal(got, want) {
				t.Errorf("%s %s: %v; want %v", name, unit, got, want)
			}
		}
	}
	if _, ok := a["auth=off"]; ok {
		t.Error("the authentication benchmark's cases were taken as the audit benchmark's")
	}
	want := []string{"search/clients=1", "search/clients=16", "search/clients=64", "search/clients=128", "metadata/clients=1", "instance/clients=16"}
	if got := a.cases(); !slices.Equal(got, want) {
		t.Errorf("cases %v; want %v", got, want)
	}
	for _, out := range []string{authBenchOutput, "BenchmarkAudit/search/clients=1-2 \t 10\t 100 ns/op\t 0.5 on/off\n", "BenchmarkAudit/search/clients=16-2 \t 10\t 100 ns/op\t 0.95 on/off\n"} {
		if a := parseAuditBench(out); a != nil {
			t.Errorf("found %v without the search at %d clients", a, auditClients)
		}
	}
}

func TestAuditVerdicts(t *testing.T) {
	vs := parseAuditBench(auditBenchOutput).verdicts()
	want := []struct {
		target, measured string
		met              bool
	}{
		{"128 clients (enough to keep the cores busy in both modes), side by side ≥ 0.90×", "0.90× (median of 2 rounds, 0.86× to 0.94×; 104 µs / 93 µs per search; CPU 181 µs / 180 µs per search, cores busy 1.76 / 1.92; a record took 11163 µs, an fsync 306 µs)", true},
		{"(supplementary: what the fsync adds to a request's time where clients wait on it and the cores idle) the same, one client, alternated request by request ≥ 0.90×", "0.55× (median of 2 rounds", false},
		{") the same, 16 clients ≥ 0.90×", "0.87× (median of 2 rounds, 0.82× to 0.92×; 150 µs / 130 µs per search; CPU not measured per search, cores busy not measured;", false},
		{") the same, 64 clients ≥ 0.90×", "0.87× (median of 1 rounds", false},
	}
	if len(vs) != len(want) {
		t.Fatalf("verdicts %+v; want %d", vs, len(want))
	}
	for i, w := range want {
		v := vs[i]
		if v.Point != "9" || !strings.Contains(v.Target, w.target) || !strings.HasPrefix(v.Measured, w.measured) || v.Met != w.met {
			t.Errorf("verdict %d: %+v; want point 9, target with %q, measured starting %q, met %v", i, v, w.target, w.measured, w.met)
		}
	}
	for _, tc := range []struct {
		ratio string
		met   bool
	}{{"0.95", true}, {"0.9", true}, {"0.89", false}} {
		vs := parseAuditBench("BenchmarkAudit/search/clients=128 \t 10\t 100 ns/op\t " + tc.ratio + " on/off\n").verdicts()
		if len(vs) != 1 || vs[0].Met != tc.met {
			t.Errorf("%s on/off: verdicts %+v; want one, met %v", tc.ratio, vs, tc.met)
		}
	}
}

func TestAuditMarkdown(t *testing.T) {
	b := &strings.Builder{}
	parseAuditBench(auditBenchOutput).markdown(b)
	for _, want := range []string{
		"### 9. Audit on versus off",
		"runs the benchmark 2 times",
		"| search | 1 | 2 | 270.0 | 490.0 | 0.550× | 0.540× | 0.560× | – | – | – | – | 240 | 192 |",
		"| search | 64 | 1 | 274.4 | 316.9 | 0.866× |",
		"| search | 128 | 2 | 93.4 | 104.1 | 0.902× | 0.860× | 0.945× | 180 | 181 | 1.92 | 1.76 | 11163 | 306 |",
		"| instance | 16 | 1 | 427.5 | 818.9 | 0.522× |",
		"The target is judged at 128 clients, where both modes keep the cores busy",
		"cached search at 128 clients with the audit on / off, each round: 0.945×, 0.860×; median 0.902×.",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the section lacks %q:\n%s", want, b.String())
		}
	}
}

func TestGoBenchOnlyReport(t *testing.T) {
	if err := checkPhases(phasesGoBench); err != nil {
		t.Fatal(err)
	}
	if err := checkPhases(phasesGoBench + "," + phasesCache); err == nil {
		t.Error("gobench with another phase was accepted")
	}
	r := &report{Started: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), Options: options{phases: phasesGoBench}, GoBench: auditBenchOutput}
	md := r.markdown()
	for _, want := range []string{"| servers | none: `-phases gobench`", "| 8 | Cached study search", "| 9 | Cached study search", "### 9. Audit on versus off"} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	for _, unwanted := range []string{"| Orthanc |", "| access |", "| other load |"} {
		if strings.Contains(md, unwanted) {
			t.Errorf("the report of the Go benchmarks alone has %q:\n%s", unwanted, md)
		}
	}
}

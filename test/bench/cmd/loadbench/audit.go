package main

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file is issue 12's item 7: searches and retrieves with the patient audit record on
// versus off, in the same run. serve cannot run without its audit, so they are measured in
// process, by the Go benchmark BenchmarkAudit (dicomweb/audit_bench_test.go), which
// test/scripts/bench.sh runs in several rounds and hands over with the other Go benchmarks.
// Each of its cases is a request (search, metadata, instance) at a number of clients, off and
// on alternated request by request (one client) or turn by turn (more), and reports the ratio
// of their throughputs (on/off), each mode's CPU time per request and the cores it kept busy.
// The target is judged on the cached search at auditClients.

// minAuditRatio is the least throughput of the cached search with the audit on over off.
const minAuditRatio = 0.9

// auditBenchmark is the Go benchmark's name.
const auditBenchmark = "BenchmarkAudit"

// auditClients is the number of clients of the case the target is judged on: the throughput a
// proxy sustains is measured with enough clients to keep its cores busy in both modes. With
// the audit on a request waits about one and a half fsyncs (half of the one under way, then
// its own), so at fewer clients most of them are waiting on the disk at any moment and the
// cores idle (the report gives the cores busy): the benchmark's cases at one client and at 16
// and 64 measure that wait, what the audit adds to a request's time, as supplementary rows.
const auditClients = 128

// auditRequests are the benchmark's requests, in the report's order.
func auditRequests() []string { return []string{auditSearch, "metadata", "instance"} }

// auditSearch is the benchmark's cached search.
const auditSearch = "search"

// Units of the figures the benchmark reports, besides Go's own and on/off (unitOnOff).
const (
	unitOffReq   = "off-ns/req"
	unitOnReq    = "on-ns/req"
	unitOffCPU   = "off-cpu-ns/req"
	unitOnCPU    = "on-cpu-ns/req"
	unitOffCores = "off-cores"
	unitOnCores  = "on-cores"
	unitRecord   = "record-ns"
	unitFsync    = "fsync-ns"
)

// auditCase is the name of the benchmark's case of request at clients.
func auditCase(request string, clients int) string {
	return request + "/clients=" + strconv.Itoa(clients)
}

// auditResult is the benchmark's figures, by case.
type auditResult benchCases

// parseAuditBench reads the benchmark's lines out of `go test -bench` output, or returns nil
// when it has no on/off ratio for the cached search at auditClients.
func parseAuditBench(out string) auditResult {
	res := auditResult(parseGoBench(out, auditBenchmark))
	if len(res[auditCase(auditSearch, auditClients)][unitOnOff]) == 0 {
		return nil
	}
	return res
}

// cases are the names of a's cases with an on/off ratio: by request in auditRequests' order,
// then by clients.
func (a auditResult) cases() []string {
	var names []string
	for name, c := range a {
		if len(c[unitOnOff]) > 0 {
			names = append(names, name)
		}
	}
	order := func(name string) (int, int) {
		request, clients, _ := strings.Cut(name, "/clients=")
		n, _ := strconv.Atoi(clients)
		i := slices.Index(auditRequests(), request)
		if i < 0 {
			i = len(auditRequests())
		}
		return i, n
	}
	slices.SortFunc(names, func(x, y string) int {
		xi, xn := order(x)
		yi, yn := order(y)
		return cmp.Or(cmp.Compare(xi, yi), cmp.Compare(xn, yn), strings.Compare(x, y))
	})
	return names
}

// verdicts compares the figures with item 7's target: the cached search at auditClients, and as
// supplementary rows at one client and at any other number measured.
func (a auditResult) verdicts() []verdict {
	out := []verdict{a.verdict(auditCase(auditSearch, auditClients),
		fmt.Sprintf("Cached study search through the whole handler, throughput with the audit on (every record fsynced before the answer) / off, %d clients (enough to keep the cores busy in both modes), side by side ≥ %.2f×", auditClients, minAuditRatio))}
	for _, name := range a.cases() {
		request, clients, _ := strings.Cut(name, "/clients=")
		if request != auditSearch || clients == strconv.Itoa(auditClients) {
			continue
		}
		how := clients + " clients"
		if clients == "1" {
			how = "one client, alternated request by request"
		}
		out = append(out, a.verdict(name, fmt.Sprintf("(supplementary: what the fsync adds to a request's time where clients wait on it and the cores idle) the same, %s ≥ %.2f×", how, minAuditRatio)))
	}
	return out
}

// verdict is the row of target on the case name.
func (a auditResult) verdict(name, target string) verdict {
	c := a[name]
	rs := c[unitOnOff]
	x := median(rs)
	return verdict{"9", target,
		fmt.Sprintf("%.2f× (median of %d rounds, %.2f× to %.2f×; %.0f µs / %.0f µs per search; CPU %s per search, cores busy %s; a record took %.0f µs, an fsync %.0f µs)",
			x, len(rs), slices.Min(rs), slices.Max(rs), median(c[unitOnReq])/nsPerMicrosecond, median(c[unitOffReq])/nsPerMicrosecond,
			c.onOff(unitOnCPU, unitOffCPU, "%.0f µs", nsPerMicrosecond), c.onOff(unitOnCores, unitOffCores, "%.2f", 1),
			median(c[unitRecord])/nsPerMicrosecond, median(c[unitFsync])/nsPerMicrosecond),
		x >= minAuditRatio}
}

// figure is the median of a case's figures in unit, divided by per and written with format;
// "–" when the case lacks it.
func (c benchCase) figure(unit, format string, per float64) string {
	if len(c[unit]) == 0 {
		return "–"
	}
	return fmt.Sprintf(format, median(c[unit])/per)
}

// onOff is the medians of a case's figures in units on and off, each divided by per and
// written with format, as "on / off"; "not measured" when the case lacks either (a report
// from before the benchmark measured them).
func (c benchCase) onOff(on, off, format string, per float64) string {
	if len(c[on]) == 0 || len(c[off]) == 0 {
		return "not measured"
	}
	return fmt.Sprintf(format+" / "+format, median(c[on])/per, median(c[off])/per)
}

// markdown is the report's section on item 7.
func (a auditResult) markdown(b *strings.Builder) {
	b.WriteString("\n### 9. Audit on versus off\n\n")
	target := a[auditCase(auditSearch, auditClients)]
	fmt.Fprintf(b, "`nirproxy serve` cannot run without its audit record, so issue 12's item 7 is measured in process by the Go benchmark `%s` (`dicomweb/audit_bench_test.go`): "+
		"the whole handler as serve mounts it, with serve's governance (the clinician's token taken from the verified-token cache), and the audit off (`audit.Discard`) "+
		"or on as serve runs it (`audit.Spooled` over a spool on disk: each answer's record appended and fsynced before its status line, concurrent records sharing one fsync). "+
		"The requests, each recorded once: `search`, the search of 1–2 and 8 (10 studies) from the in-process cache; `metadata`, the study metadata of pacssim's demo CT head (13 instances) from the in-process cache; "+
		"`instance`, one whole instance of that study (about 33 KB) fetched on every request from the demo trust XA1, in process behind an httptest server. "+
		"With one client, off and on alternate request by request; with more, turn by turn (each client sending 32 requests to one, then to the other), so that each mode's throughput is its own. "+
		"µs per request is a request's time at one client and the inverse of the throughput at more. CPU per request is the process's (user and system) over the requests; cores busy is its CPU time over the wall time. "+
		"A record's time is `Spooled.Record`'s in the on requests (encoding, append, waiting for its fsync or a shared one); "+
		"an fsync's is that of a file in the spool's directory after a 1 KiB append, between the rounds. The spool is in a temporary directory on disk (a tmpfs one would be replaced by `test/.cache`). "+
		"`test/scripts/bench.sh` runs the benchmark %d times.\n\n", auditBenchmark, len(target[unitOnOff]))
	fmt.Fprintf(b, "The target is judged at %d clients, where both modes keep the cores busy: that is the throughput the proxy sustains. "+
		"With fewer clients most of the audit=on clients are waiting on the disk at any moment (a request waits about one and a half fsyncs), the cores idle, and the ratio measures what the fsync adds to a request's time, not what the proxy can sustain.\n\n", auditClients)
	b.WriteString("| request | clients | rounds | µs per request, off | on | throughput on/off, median | min | max | CPU µs per request, off | on | cores busy, off | on | µs per record | µs per fsync |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, name := range a.cases() {
		c := a[name]
		request, clients, _ := strings.Cut(name, "/clients=")
		rs := c[unitOnOff]
		fmt.Fprintf(b, "| %s | %s | %d | %.1f | %.1f | %.3f× | %.3f× | %.3f× | %s | %s | %s | %s | %.0f | %.0f |\n", request, clients, len(rs),
			median(c[unitOffReq])/nsPerMicrosecond, median(c[unitOnReq])/nsPerMicrosecond, median(rs), slices.Min(rs), slices.Max(rs),
			c.figure(unitOffCPU, "%.0f", nsPerMicrosecond), c.figure(unitOnCPU, "%.0f", nsPerMicrosecond),
			c.figure(unitOffCores, "%.2f", 1), c.figure(unitOnCores, "%.2f", 1),
			median(c[unitRecord])/nsPerMicrosecond, median(c[unitFsync])/nsPerMicrosecond)
	}
	parts := make([]string, len(target[unitOnOff]))
	for i, r := range target[unitOnOff] {
		parts[i] = fmt.Sprintf("%.3f×", r)
	}
	fmt.Fprintf(b, "\nThroughput of the cached search at %d clients with the audit on / off, each round: %s; median %.3f×.\n",
		auditClients, strings.Join(parts, ", "), median(target[unitOnOff]))
}

package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/test/bench"
)

// Targets of issue 2, point 11.
const (
	maxSearchLatencyRatio    = 1.15
	minSearchThroughputRatio = 0.9
	maxFanOutLatencyRatio    = 1.2
	maxMemoryGrowth          = 5 << 20
)

// Targets of issue 3, point 8.
const (
	maxSourcesLatencyRatio = 1.2
	// deadlineMargin is the share of the deadline an answer may take beyond it.
	deadlineMargin      = 0.1
	maxOpenBreakerRatio = 1.2
)

// report gathers one run's figures.
type report struct {
	Started time.Time
	Elapsed time.Duration
	Options options

	CPUs                           int
	CPUModel, MemTotal, Kernel, OS string
	GoVersion                      string
	OrthancVersion                 string
	DICOMwebVersion                string
	NginxVersion                   string

	// OwnCores and BackgroundCores are the cores this run's processes and all others kept
	// busy, on average, while it measured.
	OwnCores, BackgroundCores float64

	UpstreamQuery                 string
	CopiesUID, SmallUID, LargeUID string
	CopiesBytes                   int64
	SmallBytes, LargeBytes        int64
	RetrieveBytes                 int64

	Search, Retrieve []*group
	// FanOut is the search through proxies over delayed stand-ins for distant trusts.
	FanOut   *group
	Metadata *group
	// Sources is issue 3's fan-out over 1 to 20 trusts and the hanging trust.
	Sources *sourcesResult
	// Cache is issue 4's repeated search answered from the cache.
	Cache    *cacheResult
	Memory   *memoryResult
	Profiles []*profileResult
	GoBench  string
}

// collectMachine notes what the figures were measured on.
func (r *report) collectMachine() {
	r.CPUs = runtime.NumCPU()
	r.GoVersion = runtime.Version()
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				r.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && k == "MemTotal" {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
				r.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/etc/debian_version"); err == nil {
		r.OS = "Debian " + strings.TrimSpace(string(data))
	}
}

// find returns the group at conns.
func find(gs []*group, conns int) *group {
	for _, g := range gs {
		if g.Conns == conns {
			return g
		}
	}
	return nil
}

// verdict is one target's line in the summary.
type verdict struct {
	Point, Target, Measured string
	Met                     bool
}

func metText(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

// clean reports whether none of the named results had errors, and names those that did.
func clean(g *group, names ...string) (bool, string) {
	var bad []string
	for _, n := range names {
		if res := g.Results[n]; res == nil || res.Errors > 0 || res.Requests == 0 {
			bad = append(bad, n)
		}
	}
	if len(bad) > 0 {
		return false, " (errors or no answers from " + strings.Join(bad, ", ") + ")"
	}
	return true, ""
}

// verdicts compares the figures with the targets.
func (r *report) verdicts() []verdict {
	var out []verdict
	if g := find(r.Search, 16); g != nil {
		d, p := g.Results[nameDirect], g.Results[nameProxy1]
		ok, why := clean(g, nameDirect, nameProxy1)
		lat := ratio(ms(p.Percentile(50)), ms(d.Percentile(50)))
		var at1 string
		if g1 := find(r.Search, 1); g1 != nil {
			d1, p1 := g1.Results[nameDirect], g1.Results[nameProxy1]
			at1 = fmt.Sprintf("; at 1 connection %.2f× (%.1f ms / %.1f ms)", ratio(ms(p1.Percentile(50)), ms(d1.Percentile(50))), ms(p1.Percentile(50)), ms(d1.Percentile(50)))
		}
		out = append(out, verdict{"1", fmt.Sprintf("QIDO median latency, proxy (1 upstream) / Orthanc direct, 16 connections ≤ %.2f×", maxSearchLatencyRatio),
			fmt.Sprintf("%.2f× (%.1f ms / %.1f ms)%s%s", lat, ms(p.Percentile(50)), ms(d.Percentile(50)), at1, why), ok && lat <= maxSearchLatencyRatio})
		thr := ratio(p.RPS(), d.RPS())
		out = append(out, verdict{"1", fmt.Sprintf("QIDO throughput, proxy (1 upstream) / Orthanc direct, 16 connections ≥ %.2f×", minSearchThroughputRatio),
			fmt.Sprintf("%.2f× (%.0f / %.0f requests/s)%s", thr, p.RPS(), d.RPS(), why), ok && thr >= minSearchThroughputRatio})
	}
	if g := find(r.Search, 1); g != nil {
		one, three := g.Results[nameProxy1], g.Results[nameProxy3]
		d1, d3 := g.Results[nameDirect], g.Results[nameDirect3]
		ok, why := clean(g, nameProxy1, nameProxy3)
		lat := ratio(ms(three.Percentile(50)), ms(one.Percentile(50)))
		out = append(out, verdict{"2", fmt.Sprintf("QIDO median latency, 3 upstreams / 1 upstream, 1 connection ≤ %.2f×", maxFanOutLatencyRatio),
			fmt.Sprintf("%.2f× (%.1f ms / %.1f ms); for reference the load driver querying the 3 Orthancs in parallel itself: %.2f× of one (%.1f ms / %.1f ms)%s",
				lat, ms(three.Percentile(50)), ms(one.Percentile(50)),
				ratio(ms(d3.Percentile(50)), ms(d1.Percentile(50))), ms(d3.Percentile(50)), ms(d1.Percentile(50)), why), ok && lat <= maxFanOutLatencyRatio})
	}
	if g := r.FanOut; g != nil {
		one, three := g.Results[nameDelayed1], g.Results[nameDelayed3]
		ok, why := clean(g, nameDelayed1, nameDelayed3)
		lat := ratio(ms(three.Percentile(50)), ms(one.Percentile(50)))
		delay := ms(r.Options.originDelay)
		out = append(out, verdict{"2", fmt.Sprintf("(supplementary) the same over stand-ins for distant trusts answering after %.0f ms: 3 / 1, 1 connection ≤ %.2f×", delay, maxFanOutLatencyRatio),
			fmt.Sprintf("%.2f× (%.1f ms / %.1f ms; waiting serially would add %.0f ms)%s", lat, ms(three.Percentile(50)), ms(one.Percentile(50)), 2*delay, why),
			ok && lat <= maxFanOutLatencyRatio})
	}
	for _, g := range r.Retrieve {
		p, s, b := g.Results[nameProxy1], g.Results[nameNginxStream], g.Results[nameNginxBuffer]
		ok, why := clean(g, nameProxy1, nameNginxStream, nameNginxBuffer)
		best, bestName := s, "buffering off"
		if b.MBps() > s.MBps() {
			best, bestName = b, "buffering on"
		}
		out = append(out, verdict{"3", fmt.Sprintf("Study retrieve throughput, proxy ≥ nginx (the better of its two modes), %d connection(s)", g.Conns),
			fmt.Sprintf("%.2f× nginx %s (%.0f / %.0f MB/s; Orthanc direct %.0f MB/s)%s", ratio(p.MBps(), best.MBps()), bestName,
				p.MBps(), best.MBps(), g.Results[nameDirect].MBps(), why), ok && p.MBps() >= best.MBps()})
	}
	if m := r.Memory; m != nil {
		growth := m.AfterLarge.HWM - m.AfterSmall.HWM
		out = append(out, verdict{"4", fmt.Sprintf("Proxy peak memory flat: large-study peak − small-study peak ≤ %d MiB", maxMemoryGrowth>>20),
			fmt.Sprintf("%+.1f MiB (%.1f MiB after %.1f MB studies, %.1f MiB after %.0f MB studies)", mib(growth),
				mib(m.AfterSmall.HWM), float64(m.SmallRetrieved)/1e6, mib(m.AfterLarge.HWM), float64(m.LargeRetrieved)/1e6),
			growth <= maxMemoryGrowth})
	}
	if s := r.Sources; s != nil {
		out = append(out, s.verdicts()...)
	}
	if c := r.Cache; c != nil {
		out = append(out, c.verdicts()...)
	}
	if a := parseAuthBench(r.GoBench); a != nil {
		out = append(out, a.verdicts()...)
	}
	if a := parseAuditBench(r.GoBench); a != nil {
		out = append(out, a.verdicts()...)
	}
	return out
}

// verdicts compares issue 3's figures with its targets.
func (s *sourcesResult) verdicts() []verdict {
	var out []verdict
	g := s.Fan
	one := g.Results[nameSources(1)]
	for _, n := range sourceCounts()[1:] {
		res := g.Results[nameSources(n)]
		ok, why := clean(g, nameSources(1), nameSources(n))
		lat := ratio(ms(res.Percentile(50)), ms(one.Percentile(50)))
		out = append(out, verdict{"5", fmt.Sprintf("Search median latency, %d origins / 1 origin, each answering after %.0f ms, 1 connection ≤ %.2f×", n, ms(s.Delay), maxSourcesLatencyRatio),
			fmt.Sprintf("%.2f× (%.1f ms / %.1f ms; %d studies merged)%s", lat, ms(res.Percentile(50)), ms(one.Percentile(50)), n*s.Studies, why),
			ok && lat <= maxSourcesLatencyRatio})
	}
	small := smallCounts()
	if lo, hi := g.Results[nameSmall(small[0])], g.Results[nameSmall(small[len(small)-1])]; lo != nil && hi != nil {
		ok, why := clean(g, lo.Name, hi.Name)
		lat := ratio(ms(hi.Percentile(50)), ms(lo.Percentile(50)))
		out = append(out, verdict{"5", fmt.Sprintf("(supplementary) the same with each origin answering 1 study: %d origins / %d, 1 connection ≤ %.2f×", small[len(small)-1], small[0], maxSourcesLatencyRatio),
			fmt.Sprintf("%.2f× (%.1f ms / %.1f ms)%s", lat, ms(hi.Percentile(50)), ms(lo.Percentile(50)), why), ok && lat <= maxSourcesLatencyRatio})
	}
	for _, d := range []*deadlineRun{s.Header, s.Request} {
		obs := d.Obs
		extra := ""
		if d == s.Header {
			extra = fmt.Sprintf("; then %d answers with its breaker open, max %.0f ms", s.Open.Count(), ms(s.Open.Max()))
			obs.Merge(s.Open)
		}
		over := obs.Over(d.limit())
		failed := ""
		if obs.Failed > 0 {
			failed = fmt.Sprintf("; %d failed (%s)", obs.Failed, obs.FirstProblem)
		}
		out = append(out, verdict{"6", fmt.Sprintf("One of %d origins hanging, %s: every answer by the deadline + %.0f %% (≤ %.0f ms)",
			hangingSources, d.binds(), 100*deadlineMargin, ms(d.limit())),
			fmt.Sprintf("%d of %d answers past it; with every answer waiting for it (%d connections) p50 %.0f ms, p99 %.0f ms, max %.0f ms%s%s",
				over, obs.Count(), d.Conns, ms(bench.Percentile(d.Obs.Latencies, 50)), ms(bench.Percentile(d.Obs.Latencies, 99)), ms(d.Obs.Max()), extra, failed),
			obs.Count() > 0 && over == 0 && obs.Failed == 0})
	}
	if !s.Header.Opened {
		out = append(out, verdict{"6", fmt.Sprintf("Once the hanging origin's breaker is open, median / all-healthy %d origins, 1 connection ≤ %.2f×", hangingSources, maxOpenBreakerRatio),
			fmt.Sprintf("the breaker did not open: /status never said \"open\" within %s of load (%d answers, breaker.minRequests %d)",
				s.Header.Elapsed.Round(time.Second), s.Header.Obs.Count(), s.Settings.BreakerMinRequests), false})
	} else {
		open, healthy := g.Results[nameHangOpen], g.Results[nameSources(hangingSources)]
		ok, why := clean(g, nameHangOpen, nameSources(hangingSources))
		lat := ratio(ms(open.Percentile(50)), ms(healthy.Percentile(50)))
		out = append(out, verdict{"6", fmt.Sprintf("Once the hanging origin's breaker is open, median / all-healthy %d origins, 1 connection ≤ %.2f×", hangingSources, maxOpenBreakerRatio),
			fmt.Sprintf("%.2f× (%.1f ms / %.1f ms); open %.1f s after the load began; the hanging origin was sent %d requests while open%s",
				lat, ms(open.Percentile(50)), ms(healthy.Percentile(50)), s.Header.OpenedAfter.Seconds(), s.HangRequestsWhileOpen, why),
			ok && lat <= maxOpenBreakerRatio})
	}
	all := s.Header.Obs
	all.Merge(s.Open)
	all.Merge(s.Request.Obs)
	out = append(out, verdict{"6", "Every answer while an origin hangs carries `Warning: 299` naming it: answers without = 0",
		fmt.Sprintf("%d without of %d answers (%d failed)", all.Rejected, all.Count(), all.Failed),
		all.Count() > 0 && all.Rejected == 0 && all.Failed == 0})
	return out
}

// binds says which setting cuts the hanging source off.
func (d *deadlineRun) binds() string {
	if d.Settings.Timeout <= d.Settings.RequestTimeout {
		return fmt.Sprintf("breaker closed, its header `timeout` (%s) the deadline (`requestTimeout` %s)", d.Settings.Timeout, d.Settings.RequestTimeout)
	}
	return fmt.Sprintf("breaker closed, `requestTimeout` (%s) the deadline (header `timeout` %s)", d.Settings.RequestTimeout, d.Settings.Timeout)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(n int64) float64        { return float64(n) / (1 << 20) }

// targetsTable is the summary of the verdicts, as a Markdown table.
func (r *report) targetsTable() string {
	b := &strings.Builder{}
	b.WriteString("| point | target | measured | verdict |\n|---|---|---|---|\n")
	for _, v := range r.verdicts() {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", v.Point, v.Target, v.Measured, metText(v.Met))
	}
	return b.String()
}

// summary is one line for the console.
func (g *group) summary() string {
	var parts []string
	for _, n := range g.Targets {
		res := g.Results[n]
		parts = append(parts, fmt.Sprintf("%s: p50 %.1f ms, %.0f req/s, %.0f MB/s, %d errors", n,
			ms(res.Percentile(50)), res.RPS(), res.MBps(), res.Errors))
	}
	return strings.Join(parts, "; ")
}

func (m *memoryResult) summary() string {
	return fmt.Sprintf("VmHWM %.1f MiB at start, %.1f MiB after the small study, %.1f MiB after the large one",
		mib(m.Baseline.HWM), mib(m.AfterSmall.HWM), mib(m.AfterLarge.HWM))
}

// cpuPer formats the CPU milliseconds a process tree used per request, or "–".
func cpuPer(g *group, target, proc string, unit float64) string {
	used, ok := g.CPU[target][proc]
	if !ok || unit == 0 {
		return "–"
	}
	v := ms(used) / unit
	if v < 0.05 {
		return "–"
	}
	return fmt.Sprintf("%.1f", v)
}

// markdown is the generated part of docs/performance.md.
func (r *report) markdown() string {
	b := &strings.Builder{}
	o := r.Options
	fmt.Fprintf(b, "Measured %s (UTC) in %.0f s by `make bench`.\n\n", r.Started.Format("2006-01-02 15:04"), r.Elapsed.Seconds())
	b.WriteString("| | |\n|---|---|\n")
	fmt.Fprintf(b, "| machine | `nproc` = %d, %s, %s RAM, %s, Linux %s |\n", r.CPUs, r.CPUModel, r.MemTotal, r.OS, r.Kernel)
	fmt.Fprintf(b, "| Go | %s (proxy and load driver) |\n", r.GoVersion)
	if o.phases == phasesGoBench {
		b.WriteString("| servers | none: `-phases " + phasesGoBench + "` reports the Go benchmarks alone, which test/scripts/bench.sh ran in process |\n")
	} else {
		servers := "three servers on loopback"
		if o.phases != phasesAll {
			servers = "one server on loopback (`-phases " + o.phases + "`)"
		}
		fmt.Fprintf(b, "| Orthanc | %s, DICOMweb plugin %s (Debian packages), %s |\n", r.OrthancVersion, r.DICOMwebVersion, servers)
		if r.NginxVersion != "" {
			fmt.Fprintf(b, "| nginx | %s, `worker_processes auto`, %s |\n", r.NginxVersion, bench.NginxSettings)
		}
		fmt.Fprintf(b, "| other load | while measuring, this run's processes kept %.2f of %d cores busy on average; other processes on the machine %.2f |\n",
			r.OwnCores, r.CPUs, r.BackgroundCores)
		if len(r.Search) > 0 {
			fmt.Fprintf(b, "| load | closed loop, Go load driver in the same machine; each target %s per concurrency (searches) or %s (retrieves), in %d interleaved rounds after %s of warm-up |\n",
				o.searchTime, o.retrieveTime, o.rounds, o.warm)
		}
		if r.Sources != nil {
			fmt.Fprintf(b, "| load, points 5–6 | closed loop; the fan-out targets %s each at 1 connection, in %d interleaved rounds after %s of warm-up; the proxies with a hanging origin at %d connections while their answers wait for it |\n",
				o.sourcesTime, o.rounds, o.warm, o.hangConns)
		}
		if c := r.Cache; c != nil {
			fmt.Fprintf(b, "| load, point 7 | closed loop, %s (%d threads) in the same machine; each target %s at %d connections, in %d interleaved rounds after %s of warm-up; Redis %s, single node |\n",
				c.WrkVersion, c.Threads, c.Time, c.Conns, c.Rounds, c.Warm, c.RedisVersion)
		}
		fmt.Fprintf(b, "| access | every nirproxy trusts a development token issuer on loopback (`test/devaccess`, ES256) and reads its onboarding registry; "+
			"every request to a proxy's data routes carries the clinician persona's bearer token (verified once, then taken from the verified-token cache); "+
			"`rateLimit.user` and `rateLimit.organisation` %d a minute, so that the limits are counted but never refuse; requests to Orthanc and nginx carry no token |\n", benchUserRate)
	}
	b.WriteString("\n### Targets\n\n")
	b.WriteString("Points 1–4 are the targets of issue 2 (point 11), 5–6 those of issue 3 (point 8), 7 those of issue 4 (point 7), 8 that of issue 11 (item 8), 9 that of issue 12 (item 7).\n\n")
	b.WriteString(r.targetsTable())
	if len(r.Search) > 0 {
		r.searchMarkdown(b)
	}
	if len(r.Retrieve) > 0 {
		r.retrieveMarkdown(b)
	}
	r.memoryMarkdown(b)
	if r.Sources != nil {
		r.Sources.markdown(b, r.CPUs)
	}
	if r.Cache != nil {
		r.Cache.markdown(b)
	}
	if a := parseAuthBench(r.GoBench); a != nil {
		a.markdown(b)
	}
	if a := parseAuditBench(r.GoBench); a != nil {
		a.markdown(b)
	}
	r.profileMarkdown(b)
	return b.String()
}

// searchMarkdown is the section on points 1 and 2.
func (r *report) searchMarkdown(b *strings.Builder) {
	o := r.Options
	b.WriteString("\n### 1–2. QIDO-RS study search\n\n")
	fmt.Fprintf(b, "`GET /dicom-web/studies?PatientID=<NHS number>` with `Accept: application/dicom+json`; each Orthanc holds %d matching studies "+
		"(2 series each) and %d of another patient. Through one upstream the answer has %d studies, through three %d.\n",
		o.searchStudies, o.searchStudies, o.searchStudies, 3*o.searchStudies)
	fmt.Fprintf(b, "The proxy asks each upstream `studies?%s`; \"%s\" sends that query to Orthanc itself.\n\n", r.UpstreamQuery, nameDirectAsProxy)
	b.WriteString("| target | connections | requests | requests/s | p50 ms | p99 ms | errors | CPU ms/request: proxy | Orthanc (all) | load driver |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range r.Search {
		for _, n := range g.Targets {
			res := g.Results[n]
			proxy := "–"
			switch n {
			case nameProxy1:
				proxy = cpuPer(g, n, procProxy1, float64(res.Requests))
			case nameProxy3:
				proxy = cpuPer(g, n, procProxy3, float64(res.Requests))
			}
			orth := "–"
			if used := g.CPU[n][procOrthancA] + g.CPU[n][procOrthancB] + g.CPU[n][procOrthancC]; res.Requests > 0 {
				orth = fmt.Sprintf("%.1f", ms(used)/float64(res.Requests))
			}
			fmt.Fprintf(b, "| %s | %d | %d | %.0f | %.1f | %.1f | %d | %s | %s | %s |\n", n, g.Conns, res.Requests, res.RPS(),
				ms(res.Percentile(50)), ms(res.Percentile(99)), res.Errors, proxy, orth, cpuPer(g, n, procDriver, float64(res.Requests)))
		}
	}
	for _, g := range r.Search {
		d, p1, p3, dq, d3 := g.Results[nameDirect], g.Results[nameProxy1], g.Results[nameProxy3], g.Results[nameDirectAsProxy], g.Results[nameDirect3]
		fmt.Fprintf(b, "\nAt %d connection(s): proxy/direct median %.2f×, throughput %.2f×; proxy/direct-with-the-proxy's-query median %.2f×, throughput %.2f×; "+
			"proxy 3 upstreams/1 median %.2f×, throughput %.2f×; the driver's own 3-way parallel query/one Orthanc median %.2f×, throughput %.2f×.\n", g.Conns,
			ratio(ms(p1.Percentile(50)), ms(d.Percentile(50))), ratio(p1.RPS(), d.RPS()),
			ratio(ms(p1.Percentile(50)), ms(dq.Percentile(50))), ratio(p1.RPS(), dq.RPS()),
			ratio(ms(p3.Percentile(50)), ms(p1.Percentile(50))), ratio(p3.RPS(), p1.RPS()),
			ratio(ms(d3.Percentile(50)), ms(d.Percentile(50))), ratio(d3.RPS(), d.RPS()))
	}

	if g := r.FanOut; g != nil {
		fmt.Fprintf(b, "\n#### Fan-out over distant trusts\n\nThe same search through proxies over one and over three stand-ins for distant trusts: "+
			"small Go servers in the load driver that answer, after %s, what Orthancs A, B and C answered to the proxy's query. "+
			"They use no CPU while they wait, so the comparison shows whether the proxy waits for its upstreams in parallel, without three CPU-bound Orthancs competing for %d cores.\n\n",
			r.Options.originDelay, r.CPUs)
		b.WriteString("| target | connections | requests | requests/s | p50 ms | p99 ms | errors | CPU ms/request: proxy |\n|---|---|---|---|---|---|---|---|\n")
		for _, n := range g.Targets {
			res := g.Results[n]
			proc := procProxy1
			if n == nameDelayed3 {
				proc = procProxy3
			}
			fmt.Fprintf(b, "| %s | %d | %d | %.0f | %.1f | %.1f | %d | %s |\n", n, g.Conns, res.Requests, res.RPS(),
				ms(res.Percentile(50)), ms(res.Percentile(99)), res.Errors, cpuPer(g, n, proc, float64(res.Requests)))
		}
	}

}

// retrieveMarkdown is the section on point 3 and the study metadata.
func (r *report) retrieveMarkdown(b *strings.Builder) {
	o := r.Options
	b.WriteString("\n### 3. Whole-study retrieve (WADO-RS)\n\n")
	fmt.Fprintf(b, "`GET /dicom-web/studies/{uid}` with `Accept: multipart/related; type=\"application/dicom\"; transfer-syntax=*` of a study of %d copies of pydicom's "+
		"CT_small.dcm relabelled with `dcmodify -gin` (%.1f MB of files, %.1f MB of multipart answer), held by Orthanc A. nginx and the proxy both front Orthanc A.\n\n",
		o.copies, float64(r.CopiesBytes)/1e6, float64(r.RetrieveBytes)/1e6)
	b.WriteString("| target | connections | retrieves | MB/s | p50 ms | p99 ms | errors | CPU ms/MB: proxy or nginx | Orthanc | load driver |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range r.Retrieve {
		for _, n := range g.Targets {
			res := g.Results[n]
			mb := float64(res.Bytes) / 1e6
			front := "–"
			switch n {
			case nameProxy1:
				front = cpuPer(g, n, procProxy1, mb)
			case nameNginxStream, nameNginxBuffer:
				front = cpuPer(g, n, procNginx, mb)
			}
			fmt.Fprintf(b, "| %s | %d | %d | %.0f | %.1f | %.1f | %d | %s | %s | %s |\n", n, g.Conns, res.Requests, res.MBps(),
				ms(res.Percentile(50)), ms(res.Percentile(99)), res.Errors, front, cpuPer(g, n, procOrthancA, mb), cpuPer(g, n, procDriver, mb))
		}
	}
	for _, g := range r.Retrieve {
		d, p, s, bu := g.Results[nameDirect], g.Results[nameProxy1], g.Results[nameNginxStream], g.Results[nameNginxBuffer]
		fmt.Fprintf(b, "\nAt %d connection(s): proxy/direct %.2f×, nginx (buffering off)/direct %.2f×, nginx (buffering on)/direct %.2f×, proxy/nginx (off) %.2f×, proxy/nginx (on) %.2f×.\n",
			g.Conns, ratio(p.MBps(), d.MBps()), ratio(s.MBps(), d.MBps()), ratio(bu.MBps(), d.MBps()), ratio(p.MBps(), s.MBps()), ratio(p.MBps(), bu.MBps()))
	}

	if g := r.Metadata; g != nil {
		fmt.Fprintf(b, "\n#### Study metadata (no target)\n\n`GET /dicom-web/studies/{uid}/metadata` of the same %d-instance study, `Accept: application/dicom+json`; "+
			"the proxy decodes, rewrites (RetrieveURL, signed BulkDataURIs, patient identity) and re-encodes every instance.\n\n", o.copies)
		b.WriteString("| target | connections | requests | requests/s | p50 ms | p99 ms | errors | CPU ms/request: proxy | Orthanc |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, n := range g.Targets {
			res := g.Results[n]
			proxy := "–"
			if n == nameProxy1 {
				proxy = cpuPer(g, n, procProxy1, float64(res.Requests))
			}
			fmt.Fprintf(b, "| %s | %d | %d | %.1f | %.1f | %.1f | %d | %s | %s |\n", n, g.Conns, res.Requests, res.RPS(),
				ms(res.Percentile(50)), ms(res.Percentile(99)), res.Errors, proxy, cpuPer(g, n, procOrthancA, float64(res.Requests)))
		}
		d, p := g.Results[nameDirect], g.Results[nameProxy1]
		fmt.Fprintf(b, "\nProxy/direct median %.2f×, throughput %.2f×.\n", ratio(ms(p.Percentile(50)), ms(d.Percentile(50))), ratio(p.RPS(), d.RPS()))
	}
}

// memoryMarkdown is the section on point 4.
func (r *report) memoryMarkdown(b *strings.Builder) {
	o := r.Options
	if m := r.Memory; m != nil {
		b.WriteString("\n### 4. Proxy memory, small versus large study\n\n")
		fmt.Fprintf(b, "A fresh proxy over Orthanc A: one search, then the small study (%d instances of 512×256, 16 bits) retrieved %d times, "+
			"then the large study (%d instances of 2048×2048, 16 bits) retrieved %d times, one retrieve at a time. "+
			"VmHWM (peak resident set) and VmRSS from `/proc/PID/status`.\n\n", 4, m.Repeats, max(1, o.largeMB/8), m.Repeats)
		b.WriteString("| after | answer size | VmHWM MiB | VmRSS MiB |\n|---|---|---|---|\n")
		fmt.Fprintf(b, "| start and one search | – | %.1f | %.1f |\n", mib(m.Baseline.HWM), mib(m.Baseline.RSS))
		fmt.Fprintf(b, "| small study ×%d | %.2f MB | %.1f | %.1f |\n", m.Repeats, float64(m.SmallRetrieved)/1e6, mib(m.AfterSmall.HWM), mib(m.AfterSmall.RSS))
		fmt.Fprintf(b, "| large study ×%d | %.1f MB | %.1f | %.1f |\n", m.Repeats, float64(m.LargeRetrieved)/1e6, mib(m.AfterLarge.HWM), mib(m.AfterLarge.RSS))
		fmt.Fprintf(b, "\nThe large study streamed through the proxy at %.0f MB/s.\n", m.LargeMBps)
	}
}

// profileMarkdown is the CPU profiles and the Go benchmarks.
func (r *report) profileMarkdown(b *strings.Builder) {
	if len(r.Profiles) > 0 {
		b.WriteString("\n### CPU profiles of the proxy\n\n")
		b.WriteString("A build of the same code with net/http/pprof added (through `go build -overlay`; the measured binary has no pprof), " +
			"over Orthanc A alone (with point 7's cache configuration for its rows), each load run alone after the measurements of its section. `go tool pprof -top` of each:\n")
		for _, p := range r.Profiles {
			rate := fmt.Sprintf("%.0f requests/s", p.Load.RPS())
			if p.Load.Bytes/max(1, int64(p.Load.Requests)) > 1<<20 {
				rate = fmt.Sprintf("%.0f MB/s", p.Load.MBps())
			}
			fmt.Fprintf(b, "\n#### %s, %d connections (%s while profiled; `%s`)\n\n```\n%s\n```\n\n<details><summary>by cumulative time</summary>\n\n```\n%s\n```\n\n</details>\n",
				p.What, p.Conns, rate, p.Path, p.Flat, p.Cum)
		}
	}

	if r.GoBench != "" {
		b.WriteString("\n### Go benchmarks of the hot paths\n\n```\n")
		b.WriteString(strings.TrimRight(r.GoBench, "\n"))
		b.WriteString("\n```\n")
	}
}

// reportTemplate is docs/performance.md when it does not exist yet; the figures go between
// the markers.
const reportTemplate = `# Performance

` + "`make bench`" + ` measures nirproxy against real servers and writes the figures below. The
part between the markers is regenerated by every run; the rest is written by hand.

` + bench.BeginMarker + `
` + bench.EndMarker + `
`

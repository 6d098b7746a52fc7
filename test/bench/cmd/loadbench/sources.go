package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/test/bench"
	"github.com/nirproxy/nirproxy/test/orthanc"
)

// This file is issue 3's benchmark (point 8): the study search through proxies over 1, 5, 10
// and 20 stand-ins for distant trusts, each answering after o.originDelay, and through a proxy
// over 10 of which one hangs (accepts the request and never answers), before and after its
// circuit breaker opens.

// sourceCounts are the numbers of trusts the fan-out is measured over; the first is the
// reference the others are compared with.
func sourceCounts() []int { return []int{1, 5, 10, 20} }

// hangingSources is how many sources the proxies with a hanging trust have, the hanging one
// among them.
const hangingSources = 10

// Ids of the hanging stand-ins in the two proxies that have one.
const (
	hangID        = "HANG"
	hangRequestID = "HANGRQ"
)

// sourceSettings are the per-source protection keys and the request deadline of a generated
// proxy configuration.
type sourceSettings struct {
	Timeout, IdleTimeout time.Duration
	Retries              int
	MaxConcurrent        int
	BreakerMinRequests   int
	BreakerOpenFor       time.Duration
	RequestTimeout       time.Duration
}

// deadline is what bounds a search when a source never answers: its header timeout or the
// request's deadline, whichever comes first.
func (s sourceSettings) deadline() time.Duration { return min(s.Timeout, s.RequestTimeout) }

// yaml renders s as the configuration keys of one source and the top-level requestTimeout,
// for the report.
func (s sourceSettings) yaml() string {
	return fmt.Sprintf("`requestTimeout: %s`; every source `timeout: %s, idleTimeout: %s, retries: %d, maxConcurrent: %d, breaker: {minRequests: %d, failureRatio: 0.5, openFor: %s}`",
		shortDuration(s.RequestTimeout), shortDuration(s.Timeout), shortDuration(s.IdleTimeout), s.Retries, s.MaxConcurrent, s.BreakerMinRequests, shortDuration(s.BreakerOpenFor))
}

// shortDuration is d as a configuration would say it: 1h, not 1h0m0s.
func shortDuration(d time.Duration) string {
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	if strings.HasSuffix(out, "h0m") {
		out = strings.TrimSuffix(out, "0m")
	}
	return out
}

// sourceConfig is one source of a generated configuration, with the keys ProxySource lacks.
type sourceConfig struct {
	ID            string        `yaml:"id"`
	Name          string        `yaml:"name"`
	URL           string        `yaml:"url"`
	Priority      int           `yaml:"priority"`
	Insecure      bool          `yaml:"insecure"`
	Timeout       string        `yaml:"timeout"`
	IdleTimeout   string        `yaml:"idleTimeout"`
	Retries       int           `yaml:"retries"`
	MaxConcurrent int           `yaml:"maxConcurrent"`
	Breaker       breakerConfig `yaml:"breaker"`
}

// breakerConfig opens a source's breaker once MinRequests calls within the (default) 60 s
// window have ended and half of them failed: for a hanging origin, whose every call fails, after
// MinRequests answers that waited for it.
type breakerConfig struct {
	MinRequests  int     `yaml:"minRequests"`
	FailureRatio float64 `yaml:"failureRatio"`
	OpenFor      string  `yaml:"openFor"`
}

// startProxyWith starts nirproxy over srcs, every one with settings s. The sources go in
// through ProxyOptions.Extra, which replaces the generated configuration's sources. The rig
// stops the proxy at the latest when it stops.
func (r *rig) startProxyWith(ctx context.Context, srcs []orthanc.ProxySource, s sourceSettings) (*orthanc.Proxy, error) {
	cfgs := make([]sourceConfig, len(srcs))
	for i, src := range srcs {
		cfgs[i] = sourceConfig{ID: src.ID, Name: src.Name, URL: src.URL, Priority: src.Priority, Insecure: true, // origins on plain http
			Timeout: s.Timeout.String(), IdleTimeout: s.IdleTimeout.String(), Retries: s.Retries, MaxConcurrent: s.MaxConcurrent,
			Breaker: breakerConfig{MinRequests: s.BreakerMinRequests, FailureRatio: 0.5, OpenFor: s.BreakerOpenFor.String()}}
	}
	return r.startProxyExtra(ctx, r.bin, srcs, nil, map[string]any{"requestTimeout": s.RequestTimeout.String(), "sources": cfgs})
}

// deadlineRun is what one proxy with a hanging source answered while every answer waited for
// it (its breaker closed).
type deadlineRun struct {
	Settings sourceSettings
	Conns    int
	Obs      bench.Observations
	Elapsed  time.Duration
	// HangRequests is how many requests reached the hanging stand-in meanwhile.
	HangRequests int64
	// Opened says whether the breaker opened, and OpenedAfter how long after the load began
	// /status first said so.
	Opened      bool
	OpenedAfter time.Duration
}

// sourcesResult is the outcome of the phase.
type sourcesResult struct {
	Delay    time.Duration
	Studies  int
	Settings sourceSettings
	// Fan is the search at one connection through the proxies over 1, 5, 10 and 20 healthy
	// sources, the same over 1 and 20 sources answering one study each, and through the proxy
	// whose hanging source's breaker is open, interleaved.
	Fan *group
	// Answer says, per target of Fan, how many studies its answers hold and which process
	// (in Fan.CPU) is its proxy.
	Answer map[string]fanTarget
	// Header is the proxy whose hanging source is cut off by its header timeout; Request the
	// proxy whose hanging source is cut off by the request deadline.
	Header, Request *deadlineRun
	// Open is every answer of the Header proxy once its breaker was open (in Fan).
	Open bench.Observations
	// HangRequestsWhileOpen is how many requests reached the hanging stand-in meanwhile.
	HangRequestsWhileOpen int64
}

// fanTarget is what the report needs to know of a target of the fan-out.
type fanTarget struct {
	Studies int
	Proc    string
}

// Names of the phase's targets and processes.
func nameSources(n int) string {
	if n == 1 {
		return "nirproxy, 1 origin"
	}
	return fmt.Sprintf("nirproxy, %d origins", n)
}

// nameSmall names the supplementary targets whose origins answer one study each.
func nameSmall(n int) string { return nameSources(n) + ", 1 study each" }

// smallCounts are the numbers of origins of the supplementary targets.
func smallCounts() []int { return []int{1, 20} }

const (
	nameHangOpen = "nirproxy, 10 origins, one hanging, its breaker open"
	procHang     = "nirproxy (one hanging)"
)

// measureSources runs the phase: it records Orthanc A's answer to the proxy's upstream query,
// serves relabelled copies of it (and of its first study alone) from delayed stand-ins,
// starts the proxies and measures.
func measureSources(ctx context.Context, r *rig, o options, upstreamQuery, clientQuery string, logf func(string, ...any)) (*sourcesResult, error) {
	a := r.orthancs[0]
	status, _, answer, err := a.Do(ctx, http.MethodGet, "/dicom-web/studies?"+upstreamQuery, acceptJSON(), nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("record the search answer of Orthanc %s: status %d", a.Name, status)
	}
	small, err := firstStudy(answer)
	if err != nil {
		return nil, err
	}
	counts := sourceCounts()
	// Everything started here is stopped on return, proxies before origins.
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	// origins starts n stand-ins answering relabelled copies of body, with ids prefix01...
	origins := func(prefix string, body []byte, n int) ([]orthanc.ProxySource, error) {
		var srcs []orthanc.ProxySource
		for i := range n {
			id := fmt.Sprintf("%s%02d", prefix, i+1)
			relabelled, err := bench.RelabelAnswer(body, id)
			if err != nil {
				return nil, err
			}
			origin := bench.StartDelayedOrigin(relabelled, o.originDelay)
			cleanups = append(cleanups, origin.Close)
			srcs = append(srcs, orthanc.ProxySource{ID: id, Name: "Distant trust " + id, URL: origin.URL + "/dicom-web", Priority: i + 1})
		}
		return srcs, nil
	}
	srcs, err := origins("FO", answer, max(counts[len(counts)-1], hangingSources-1))
	if err != nil {
		return nil, err
	}
	smallSrcs, err := origins("FS", small, smallCounts()[len(smallCounts())-1])
	if err != nil {
		return nil, err
	}
	hang := bench.StartHangingOrigin()
	cleanups = append(cleanups, hang.Close)
	hangRq := bench.StartHangingOrigin()
	cleanups = append(cleanups, hangRq.Close)

	res := &sourcesResult{Delay: o.originDelay, Studies: o.searchStudies, Answer: map[string]fanTarget{}}
	res.Settings = sourceSettings{Timeout: o.hangTimeout, IdleTimeout: 5 * time.Second, Retries: 1, MaxConcurrent: 32,
		BreakerMinRequests: o.hangMinRequests, BreakerOpenFor: time.Hour, RequestTimeout: 2 * o.hangTimeout}
	// The request deadline binds instead: a header timeout far beyond it, and a breaker that
	// does not open during the run.
	reqSettings := res.Settings
	reqSettings.Timeout, reqSettings.RequestTimeout, reqSettings.BreakerMinRequests = 10*o.hangTimeout, o.hangTimeout, 1000

	// The healthy proxies, each checked to answer every source's studies.
	client := bench.NewClient(1)
	var targets []bench.Target
	procs := []bench.Proc{{Name: procDriver, PID: os.Getpid()}}
	healthy := func(name string, srcs []orthanc.ProxySource, studies int) error {
		p, err := r.startProxyWith(ctx, srcs, res.Settings)
		if err != nil {
			return err
		}
		cleanups = append(cleanups, func() { r.stopProxy(p) })
		t := bench.Target{Name: name, URL: p.DICOMwebURL() + "/studies?" + clientQuery, Header: r.asClinician(acceptJSON())}
		got, err := countResults(ctx, client, t)
		if err != nil {
			return err
		}
		if got != studies {
			return fmt.Errorf("check %s: the search found %d studies, want %d", name, got, studies)
		}
		proc := "nirproxy (" + strings.TrimPrefix(name, "nirproxy, ") + ")"
		targets = append(targets, t)
		procs = append(procs, bench.Proc{Name: proc, PID: p.PID()})
		res.Answer[name] = fanTarget{Studies: studies, Proc: proc}
		return nil
	}
	for _, n := range counts {
		if err := healthy(nameSources(n), srcs[:n], n*o.searchStudies); err != nil {
			return nil, err
		}
	}
	for _, n := range smallCounts() {
		if err := healthy(nameSmall(n), smallSrcs[:n], n); err != nil {
			return nil, err
		}
	}
	withHang := func(id string, h *bench.HangingOrigin) []orthanc.ProxySource {
		out := append([]orthanc.ProxySource(nil), srcs[:hangingSources-1]...)
		return append(out, orthanc.ProxySource{ID: id, Name: "Hanging trust " + id, URL: h.URL + "/dicom-web", Priority: hangingSources})
	}
	pHang, err := r.startProxyWith(ctx, withHang(hangID, hang), res.Settings)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { r.stopProxy(pHang) })
	pHangRq, err := r.startProxyWith(ctx, withHang(hangRequestID, hangRq), reqSettings)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { r.stopProxy(pHangRq) })

	// (a) With the breaker closed every answer waits for the hanging source until the header
	// timeout; load until /status says the breaker is open.
	recHang := bench.NewRecorder(bench.WarnsAbout(hangID))
	hangTarget := recHang.Target(nameHangOpen, pHang.DICOMwebURL()+"/studies?"+clientQuery, r.asClinician(acceptJSON()))
	res.Header = &deadlineRun{Settings: res.Settings, Conns: o.hangConns}
	start := time.Now()
	loadClient := bench.NewClient(o.hangConns)
	for time.Since(start) < o.hangOpenWithin && ctx.Err() == nil {
		bench.Run(ctx, loadClient, hangTarget, o.hangConns, time.Second)
		state, err := bench.BreakerState(ctx, client, pHang.AdminURL, hangID)
		if err != nil {
			return nil, err
		}
		if state == "open" {
			res.Header.Opened, res.Header.OpenedAfter = true, time.Since(start)
			break
		}
	}
	res.Header.Elapsed = time.Since(start)
	res.Header.Obs = recHang.Take()
	res.Header.HangRequests = hang.Requests()
	loadClient.CloseIdleConnections()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("measure the hanging source: %w", ctx.Err())
	}
	logf("one of %d hanging, header timeout %s: %s", hangingSources, res.Settings.Timeout, res.Header.summary())

	// The same with the request deadline binding first.
	recRq := bench.NewRecorder(bench.WarnsAbout(hangRequestID))
	res.Request = &deadlineRun{Settings: reqSettings, Conns: o.hangConns}
	rqTarget := recRq.Target("request deadline", pHangRq.DICOMwebURL()+"/studies?"+clientQuery, r.asClinician(acceptJSON()))
	start = time.Now()
	loadClient = bench.NewClient(o.hangConns)
	bench.Run(ctx, loadClient, rqTarget, o.hangConns, o.hangTime)
	loadClient.CloseIdleConnections()
	res.Request.Elapsed = time.Since(start)
	// Its answers hold what the other nine trusts hold (one more answer, not recorded).
	if got, err := countResults(ctx, client, rqTarget); err != nil || got != (hangingSources-1)*o.searchStudies {
		return nil, fmt.Errorf("check the proxy with a hanging source: %d studies, want %d (%v)", got, (hangingSources-1)*o.searchStudies, err)
	}
	res.Request.Obs = recRq.Take()
	res.Request.HangRequests = hangRq.Requests()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("measure the hanging source: %w", ctx.Err())
	}
	logf("one of %d hanging, request deadline %s: %s", hangingSources, reqSettings.RequestTimeout, res.Request.summary())

	// (b) The search over 1, 5, 10 and 20 sources, and with the breaker open, side by side.
	if res.Header.Opened {
		if got, err := countResults(ctx, client, hangTarget); err != nil || got != (hangingSources-1)*o.searchStudies {
			return nil, fmt.Errorf("check the proxy with a hanging source: %d studies, want %d (%v)", got, (hangingSources-1)*o.searchStudies, err)
		}
		targets = append(targets, hangTarget)
		procs = append(procs, bench.Proc{Name: procHang, PID: pHang.PID()})
		res.Answer[nameHangOpen] = fanTarget{Studies: (hangingSources - 1) * o.searchStudies, Proc: procHang}
	}
	before := hang.Requests()
	res.Fan = measure(ctx, targets, 1, o.rounds, o.sourcesTime, o.warm, procs)
	res.HangRequestsWhileOpen = hang.Requests() - before
	res.Open = recHang.Take()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("measure the fan-out: %w", ctx.Err())
	}
	// A breaker that never opened is reported as a target not met; the run goes on.
	return res, nil
}

// firstStudy returns a search answer holding only answer's first result.
func firstStudy(answer []byte) ([]byte, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(answer, &list); err != nil || len(list) == 0 {
		return nil, fmt.Errorf("cut the search answer to one study: %d results (%v)", len(list), err)
	}
	return json.Marshal(list[:1])
}

// summary is one line for the console.
func (d *deadlineRun) summary() string {
	var opened string
	if d.Opened {
		opened = fmt.Sprintf("; breaker open after %.1f s", d.OpenedAfter.Seconds())
	}
	return fmt.Sprintf("%d answers at %d connections, p50 %.0f ms, p99 %.0f ms, max %.0f ms, %d past the deadline + 10%%, %d failed, %d without the warning%s",
		d.Obs.Count(), d.Conns, ms(bench.Percentile(d.Obs.Latencies, 50)), ms(bench.Percentile(d.Obs.Latencies, 99)), ms(d.Obs.Max()),
		d.Obs.Over(d.limit()), d.Obs.Failed, d.Obs.Rejected, opened)
}

// limit is the deadline plus the 10 % the target allows.
func (d *deadlineRun) limit() time.Duration {
	return d.Settings.deadline() + d.Settings.deadline()/10
}

// markdown is the report's section on points 5 and 6.
func (s *sourcesResult) markdown(b *strings.Builder, cpus int) {
	b.WriteString("\n### 5–6. Fan-out over 1 to 20 trusts, and one trust hanging\n\n")
	fmt.Fprintf(b, "The study search of 1–2 through proxies over stand-ins for distant trusts: small Go servers in the load driver that answer, after %s, "+
		"what Orthanc A answered to the proxy's query (%d studies), each with its StudyInstanceUIDs relabelled, so that the proxy merges %d different studies per trust. "+
		"They use no CPU while they wait, so the latency shows whether the proxy waits for its trusts in parallel, not %d cores shared with CPU-bound servers. "+
		"The rows \"1 study each\" are the same over origins that answer only the first of those studies, to tell waiting from merging. "+
		"A hanging origin accepts the request and never answers. Every proxy here has %s.\n\n",
		s.Delay, s.Studies, s.Studies, cpus, s.Settings.yaml())
	b.WriteString("| target | connections | requests | requests/s | p50 ms | p99 ms | errors | studies in each answer | CPU ms/request: proxy |\n|---|---|---|---|---|---|---|---|---|\n")
	g := s.Fan
	for _, n := range g.Targets {
		res := g.Results[n]
		a := s.Answer[n]
		fmt.Fprintf(b, "| %s | %d | %d | %.1f | %.1f | %.1f | %d | %d | %s |\n", n, g.Conns, res.Requests, res.RPS(),
			ms(res.Percentile(50)), ms(res.Percentile(99)), res.Errors, a.Studies, cpuPer(g, n, a.Proc, float64(res.Requests)))
	}
	one := g.Results[nameSources(1)]
	var ratios []string
	for _, k := range sourceCounts()[1:] {
		res := g.Results[nameSources(k)]
		ratios = append(ratios, fmt.Sprintf("%d/1 %.2f× (throughput %.2f×)", k, ratio(ms(res.Percentile(50)), ms(one.Percentile(50))), ratio(res.RPS(), one.RPS())))
	}
	small := smallCounts()
	if lo, hi := g.Results[nameSmall(small[0])], g.Results[nameSmall(small[len(small)-1])]; lo != nil && hi != nil {
		ratios = append(ratios, fmt.Sprintf("with 1 study each, %d/%d %.2f× (throughput %.2f×)", small[len(small)-1], small[0],
			ratio(ms(hi.Percentile(50)), ms(lo.Percentile(50))), ratio(hi.RPS(), lo.RPS())))
	}
	if open := g.Results[nameHangOpen]; open != nil {
		healthy := g.Results[nameSources(hangingSources)]
		ratios = append(ratios, fmt.Sprintf("one hanging with its breaker open / %d healthy %.2f× (throughput %.2f×)", hangingSources,
			ratio(ms(open.Percentile(50)), ms(healthy.Percentile(50))), ratio(open.RPS(), healthy.RPS())))
	}
	fmt.Fprintf(b, "\nMedian latency: %s.\n", strings.Join(ratios, "; "))

	fmt.Fprintf(b, "\n#### One of %d origins hanging\n\n", hangingSources)
	fmt.Fprintf(b, "Two proxies over %d of the stand-ins above and one hanging origin. The first is the one above: its header `timeout` (%s) cuts the hanging origin off; "+
		"it is loaded at %d connections until its `GET /status` says the hanging origin's breaker is open (polled after every second of load), and then measured "+
		"at 1 connection with the fan-out above. The second has %s, so the request deadline cuts the hanging origin off; it is loaded for %s, its breaker never opening. "+
		"Latency is from sending the request to the answer's last byte, for every answer (failed ones too); the deadline is the earlier of the header timeout and the request deadline.\n\n",
		hangingSources-1, s.Header.Settings.Timeout, s.Header.Conns, s.Request.Settings.yaml(), s.Request.Elapsed.Round(100*time.Millisecond))
	b.WriteString("| proxy, phase | connections | answers | p50 ms | p99 ms | max ms | deadline + 10 % | past it | failed | without the Warning |\n|---|---|---|---|---|---|---|---|---|---|\n")
	rows := []struct {
		name  string
		conns int
		obs   bench.Observations
		limit time.Duration
	}{
		{fmt.Sprintf("header timeout %s, breaker closed (until /status said open)", s.Header.Settings.Timeout), s.Header.Conns, s.Header.Obs, s.Header.limit()},
		{fmt.Sprintf("header timeout %s, breaker open", s.Header.Settings.Timeout), 1, s.Open, s.Header.limit()},
		{fmt.Sprintf("requestTimeout %s, header timeout %s, breaker closed", s.Request.Settings.RequestTimeout, s.Request.Settings.Timeout), s.Request.Conns, s.Request.Obs, s.Request.limit()},
	}
	for _, row := range rows {
		fmt.Fprintf(b, "| %s | %d | %d | %.0f | %.0f | %.0f | %.0f ms | %d | %d | %d |\n", row.name, row.conns, row.obs.Count(),
			ms(bench.Percentile(row.obs.Latencies, 50)), ms(bench.Percentile(row.obs.Latencies, 99)), ms(row.obs.Max()), ms(row.limit),
			row.obs.Over(row.limit), row.obs.Failed, row.obs.Rejected)
	}
	if s.Header.Opened {
		fmt.Fprintf(b, "\nThe breaker (`minRequests: %d`) was open %.1f s after the load began; the hanging origin had been sent %d requests by then and %d while its breaker was open.\n",
			s.Settings.BreakerMinRequests, s.Header.OpenedAfter.Seconds(), s.Header.HangRequests, s.HangRequestsWhileOpen)
	} else {
		fmt.Fprintf(b, "\nThe breaker (`minRequests: %d`) was not open after %s of load; the hanging origin had been sent %d requests.\n",
			s.Settings.BreakerMinRequests, s.Header.Elapsed.Round(time.Second), s.Header.HangRequests)
	}
	fmt.Fprintf(b, "The second proxy's hanging origin was sent %d requests.\n", s.Request.HangRequests)
	all := s.Header.Obs
	all.Merge(s.Open)
	all.Merge(s.Request.Obs)
	if len(all.Notes) > 0 {
		b.WriteString("\nThe `Warning: 299` texts naming the hanging origin (without the warn-agent), and how many answers carried each:\n\n")
		texts := make([]string, 0, len(all.Notes))
		for t := range all.Notes {
			texts = append(texts, t)
		}
		sort.Strings(texts)
		for _, t := range texts {
			fmt.Fprintf(b, "- `%s`: %d\n", t, all.Notes[t])
		}
	}
	if all.FirstProblem != "" {
		fmt.Fprintf(b, "\nFirst answer that failed or lacked the Warning: %s\n", all.FirstProblem)
	}
}

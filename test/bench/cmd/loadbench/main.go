// Command loadbench measures nirproxy against real servers, side by side in one run: QIDO
// searches through the proxy and straight to Orthanc, over one and three upstream Orthancs;
// whole-study retrieves through the proxy, straight to Orthanc and through nginx; the proxy's
// peak memory for a small and a large study; the search over 1, 5, 10 and 20 stand-ins for
// distant trusts, and over 10 of which one hangs, before and after its circuit breaker opens;
// and a repeated search answered from the cache in Redis and in process, loaded with wrk against
// Orthanc direct and nginx serving the same answer as a static file. It writes the figures into
// docs/performance.md (between the bench markers) and prints a summary. test/scripts/bench.sh
// runs it; `-phases sources` and `-phases cache` run the last two phases alone (or together:
// `-phases sources,cache`), over one Orthanc, and `-phases gobench` starts no server and reports
// only the Go benchmarks' figures.
//
// It starts every server itself (three Orthancs, nirproxy, nginx, redis-server) on loopback
// ports and stops them before it exits, also on SIGINT or SIGTERM; each is a direct child that
// the kernel signals should this process die. Every nirproxy trusts a development token issuer
// (test/devaccess) that the run starts in process, and every request to a proxy's data routes
// carries the clinician persona's bearer token, as serve requires; requests to Orthanc and nginx
// carry none. Item 8 of issue 11 (authentication on versus off) and item 7 of issue 12 (the
// audit record on versus off) come from the Go benchmark output -gobench names (see auth.go and
// audit.go).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nirproxy/nirproxy/test/bench"
	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/orthanc"
	"github.com/nirproxy/nirproxy/test/pacssim"
	"github.com/nirproxy/nirproxy/test/redisserver"
)

// options are the command's flags.
type options struct {
	out           string
	goBench       string
	searchTime    time.Duration
	retrieveTime  time.Duration
	warm          time.Duration
	rounds        int
	searchStudies int
	copies        int
	largeMB       int
	originDelay   time.Duration
	profileTime   time.Duration
	profileDir    string
	timeout       time.Duration

	// phases is "all", or a comma-separated list of the phases that run over one Orthanc:
	// "sources" (issue 3's fan-out and hanging source) and "cache" (issue 4's cached search),
	// or "gobench": no server, only the figures of -gobench.
	phases          string
	sourcesTime     time.Duration
	hangTimeout     time.Duration
	hangMinRequests int
	hangConns       int
	hangTime        time.Duration
	hangOpenWithin  time.Duration

	cacheTime  time.Duration
	cacheConns int
	wrkThreads int
}

// Values of -phases: all, gobench, or a list of the others.
const (
	phasesAll     = "all"
	phasesGoBench = "gobench"
	phasesSources = "sources"
	phasesCache   = "cache"
)

// checkPhases says what is wrong with a -phases value, or nil.
func checkPhases(v string) error {
	if v == phasesAll || v == phasesGoBench {
		return nil
	}
	for _, p := range strings.Split(v, ",") {
		if p != phasesSources && p != phasesCache {
			return fmt.Errorf("-phases is %q; use %s, %s, or %s, %s or both separated by a comma", v, phasesAll, phasesGoBench, phasesSources, phasesCache)
		}
	}
	return nil
}

// runs reports whether phase is one the run measures.
func (o options) runs(phase string) bool {
	return o.phases == phasesAll || slices.Contains(strings.Split(o.phases, ","), phase)
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "docs/performance.md", "report to write the figures into")
	flag.StringVar(&o.goBench, "gobench", "", "file holding `go test -bench` output to include in the report")
	flag.DurationVar(&o.searchTime, "search-time", 10*time.Second, "measuring time of each search target at each concurrency")
	flag.DurationVar(&o.retrieveTime, "retrieve-time", 8*time.Second, "measuring time of each retrieve target at each concurrency")
	flag.DurationVar(&o.warm, "warm", time.Second, "unmeasured warm-up per target")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds the measuring time of each target is split into, interleaved with the others")
	flag.IntVar(&o.searchStudies, "search-studies", 10, "studies of the searched patient at each Orthanc")
	flag.IntVar(&o.copies, "copies", 200, "instances (copies of pydicom's CT_small) in the retrieved study")
	flag.IntVar(&o.largeMB, "large-mb", 256, "size of the large study of the memory test, in MiB (8 MiB instances)")
	flag.DurationVar(&o.originDelay, "origin-delay", 50*time.Millisecond, "answer delay of the stand-ins for distant trusts in the fan-out test")
	flag.DurationVar(&o.profileTime, "profile-time", 6*time.Second, "CPU profile length of the proxy under each load (0 skips profiling)")
	flag.StringVar(&o.profileDir, "profile-dir", "test/.cache/bench", "directory the CPU profiles are kept in, for `go tool pprof`")
	flag.DurationVar(&o.timeout, "timeout", 12*time.Minute, "give up after this long")
	flag.StringVar(&o.phases, "phases", phasesAll, "what to measure: all; over one Orthanc sources (the fan-out over 1 to 20 trusts and the hanging trust), cache (the search answered from the cache, with wrk) or sources,cache; or gobench (no server: only the figures of -gobench)")
	flag.DurationVar(&o.sourcesTime, "sources-time", 6*time.Second, "measuring time of each target of the fan-out over 1 to 20 trusts")
	flag.DurationVar(&o.hangTimeout, "hang-timeout", time.Second, "the sources' header timeout in the hanging-trust test (the request deadline is twice it); also the request deadline of its second proxy")
	flag.IntVar(&o.hangMinRequests, "hang-min-requests", 50, "breaker.minRequests of the sources in the hanging-trust test: answers that wait for the hanging trust (whose every call fails) before its breaker opens")
	flag.IntVar(&o.hangConns, "hang-conns", 8, "connections loading the proxies with a hanging trust while their answers wait for it")
	flag.DurationVar(&o.hangTime, "hang-time", 5*time.Second, "load time of the proxy whose hanging trust is cut off by the request deadline")
	flag.DurationVar(&o.hangOpenWithin, "hang-open-within", 30*time.Second, "give up waiting for the hanging trust's breaker to open after this long")
	flag.DurationVar(&o.cacheTime, "cache-time", 9*time.Second, "measuring time of each target of the cached search (wrk; slices of whole seconds)")
	flag.IntVar(&o.cacheConns, "cache-conns", 16, "wrk connections of every target of the cached search")
	flag.IntVar(&o.wrkThreads, "wrk-threads", 2, "wrk threads (-t) of the cached search")
	flag.Parse()
	if err := checkPhases(o.phases); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := run(ctx, o, os.Stdout); err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			fmt.Fprintf(os.Stderr, "loadbench: gave up after %s (-timeout): %v\n", o.timeout, err)
		case ctx.Err() != nil:
			fmt.Fprintln(os.Stderr, "loadbench: interrupted; every server it started has been stopped")
		default:
			fmt.Fprintln(os.Stderr, "loadbench:", err)
		}
		cancel()
		stop()
		os.Exit(1)
	}
}

// sourceIDs are the ids of the three upstream Orthancs in the proxies' configurations.
func sourceIDs() []string { return []string{"ORA", "ORB", "ORC"} }

// acceptJSON is the Accept header of searches and metadata requests.
func acceptJSON() http.Header { return http.Header{"Accept": {"application/dicom+json"}} }

// acceptMultipart is the Accept header of study retrieves: as stored, no transcoding.
func acceptMultipart() http.Header {
	return http.Header{"Accept": {`multipart/related; type="application/dicom"; transfer-syntax=*`}}
}

// rig is everything run starts, so that it can be stopped in one place.
type rig struct {
	work     string
	orthancs []*orthanc.Server
	bin      string
	profBin  string
	proxies  []*orthanc.Proxy
	nginx    *bench.Nginx
	log      io.Writer
	// access is the development token issuer every proxy trusts, with the onboarding
	// registry it reads; token is the clinician's bearer token every request to a proxy's
	// data routes sends.
	access *devaccess.Access
	token  string
}

// benchUserRate is rateLimit.user and rateLimit.organisation of every proxy: far above what
// any phase sends (one user of one organisation, thousands of requests a second), so that the
// limits are counted on every request but never refuse one.
const benchUserRate = 60_000_000

// startAccess starts the development issuer and writes the registry into r.work: serve answers
// no data route without them. The clinician's token outlives the run.
func (r *rig) startAccess(o options) error {
	acc, err := devaccess.Start(devaccess.Options{Dir: r.work, Lifetime: o.timeout + time.Hour})
	if err != nil {
		return err
	}
	r.access = acc
	r.token, err = acc.Token(devaccess.Clinician)
	return err
}

// asClinician is h with the clinician's bearer token: the headers of a request to a proxy's
// data routes. Requests to Orthanc and nginx go without it.
func (r *rig) asClinician(h http.Header) http.Header {
	h = h.Clone()
	h.Set("Authorization", "Bearer "+r.token)
	return h
}

// proxyConfig is the configuration of every proxy the rig starts, with the top-level keys of
// extra laid over it: warnings only, no search answer or metadata cached, and limits that never
// refuse (StartProxy adds the rig's development issuer and registry).
func (r *rig) proxyConfig(extra map[string]any) map[string]any {
	rate := map[string]any{"requests": benchUserRate, "period": "1m", "burst": benchUserRate / 60}
	cfg := map[string]any{"logging": map[string]any{"level": "warn"}, "cache": uncached(),
		"rateLimit": map[string]any{"user": rate, "organisation": rate}}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

// stop ends every process the rig started and removes its files.
func (r *rig) stop() {
	var wg sync.WaitGroup
	for _, p := range r.proxies {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Stop() }()
	}
	if r.nginx != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.nginx.Stop(); err != nil {
				fmt.Fprintln(r.log, "loadbench:", err)
			}
		}()
	}
	for _, s := range r.orthancs {
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Stop() }()
	}
	wg.Wait()
	if r.access != nil {
		_ = r.access.Close()
	}
	if r.work != "" {
		os.RemoveAll(r.work)
	}
}

// startProxy starts nirproxy over the first n Orthancs, logging warnings only.
func (r *rig) startProxy(ctx context.Context, n int) (*orthanc.Proxy, error) {
	return r.startProxyOver(ctx, r.bin, r.sourcesOver(n), nil)
}

// sourcesOver is the proxy configuration's sources for the first n Orthancs.
func (r *rig) sourcesOver(n int) []orthanc.ProxySource {
	srcs := make([]orthanc.ProxySource, n)
	for i := range srcs {
		srcs[i] = orthanc.ProxySource{ID: sourceIDs()[i], Name: "Bench Orthanc " + sourceIDs()[i],
			URL: r.orthancs[i].DICOMwebURL(), Priority: i + 1}
	}
	return srcs
}

// startProxyOver starts the nirproxy binary bin over srcs, with env added to this process's
// environment.
func (r *rig) startProxyOver(ctx context.Context, bin string, srcs []orthanc.ProxySource, env []string) (*orthanc.Proxy, error) {
	return r.startProxyExtra(ctx, bin, srcs, env, nil)
}

// startProxyExtra is startProxyOver with the top-level configuration keys of extra (a cache
// section, say) laid over proxyConfig's.
func (r *rig) startProxyExtra(ctx context.Context, bin string, srcs []orthanc.ProxySource, env []string, extra map[string]any) (*orthanc.Proxy, error) {
	var environ []string
	if env != nil {
		environ = append(os.Environ(), env...)
	}
	p, err := orthanc.StartProxy(ctx, orthanc.ProxyOptions{
		Binary:  bin,
		Sources: srcs,
		Extra:   r.proxyConfig(extra),
		Env:     environ,
		Access:  r.access,
	})
	if err != nil {
		return nil, fmt.Errorf("start nirproxy: %w", err)
	}
	r.proxies = append(r.proxies, p)
	return p, nil
}

// uncached is the cache section of every proxy but point 7's: no search answer or metadata is
// cached (fresh 0), so that points 1–6 measure the proxy's work over its upstreams on every
// request, as they did before the cache; the locator still remembers studies' holders in
// process, as it did then. Point 7's proxies replace it with their own.
func uncached() map[string]any {
	return map[string]any{"search": map[string]any{"fresh": "0s"}, "metadata": map[string]any{"fresh": "0s"}}
}

// stopProxy stops p and forgets it.
func (r *rig) stopProxy(p *orthanc.Proxy) {
	_ = p.Stop()
	for i, q := range r.proxies {
		if q == p {
			r.proxies = append(r.proxies[:i], r.proxies[i+1:]...)
			break
		}
	}
}

func run(ctx context.Context, o options, stdout io.Writer) error {
	if o.phases == phasesGoBench {
		started, rep, logf := beginRun(o, stdout)
		return finish(o, rep, started, stdout, logf)
	}
	if err := orthanc.MissingError(); err != nil {
		return err
	}
	if o.runs(phasesCache) {
		if err := errors.Join(bench.WrkMissing(), redisserver.Missing()); err != nil {
			return err
		}
	}
	if o.phases != phasesAll {
		return runSingle(ctx, o, stdout)
	}
	if _, err := os.Stat(bench.NginxBinary); err != nil {
		return fmt.Errorf("nginx is missing (run test/scripts/install-deps.sh): %w", err)
	}
	started, rep, logf := beginRun(o, stdout)
	r := &rig{log: stdout}
	defer r.stop()
	work, err := os.MkdirTemp("", "nirproxy-bench-")
	if err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	r.work = work
	if err := r.startAccess(o); err != nil {
		return err
	}

	// Build the proxy while the Orthancs start and are loaded.
	var buildErr, profBuildErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.bin, buildErr = orthanc.BuildProxy(ctx, work)
		if buildErr == nil && o.profileTime > 0 {
			root, err := orthanc.ModuleRoot()
			if err != nil {
				profBuildErr = err
				return
			}
			r.profBin, profBuildErr = bench.BuildProfilingProxy(ctx, root, work)
		}
	}()
	r.orthancs, err = orthanc.StartMany(ctx, orthanc.Options{}, "BENCH_A", "BENCH_B", "BENCH_C")
	if err != nil {
		wg.Wait()
		return fmt.Errorf("start Orthancs: %w", err)
	}
	logf("three Orthancs started; loading data")
	if err := loadData(ctx, r, rep, o); err != nil {
		wg.Wait()
		return err
	}
	wg.Wait()
	if err := errors.Join(buildErr, profBuildErr); err != nil {
		return err
	}
	logf("data loaded (retrieve study %.1f MB in %d instances, small %.1f MB, large %.0f MB); proxy built",
		float64(rep.CopiesBytes)/1e6, o.copies, float64(rep.SmallBytes)/1e6, float64(rep.LargeBytes)/1e6)
	if rep.OrthancVersion, rep.DICOMwebVersion, err = bench.OrthancVersions(ctx, r.orthancs[0]); err != nil {
		return err
	}

	// What the proxy asks an upstream for the client's search.
	if rep.UpstreamQuery, err = captureUpstreamQuery(ctx, r); err != nil {
		return err
	}
	proxy1, err := r.startProxy(ctx, 1)
	if err != nil {
		return err
	}
	proxy3, err := r.startProxy(ctx, 3)
	if err != nil {
		return err
	}
	if r.nginx, err = bench.StartNginx(ctx, r.orthancs[0].Port, orthanc.FreePort); err != nil {
		return err
	}
	rep.NginxVersion = r.nginx.Version

	a := r.orthancs[0]
	clientQuery := "PatientID=" + bench.SearchPatient
	searches := []bench.Target{
		{Name: nameDirect, URL: a.DICOMwebURL() + "/studies?" + clientQuery, Header: acceptJSON()},
		{Name: nameDirectAsProxy, URL: a.DICOMwebURL() + "/studies?" + rep.UpstreamQuery, Header: acceptJSON()},
		{Name: nameProxy1, URL: proxy1.DICOMwebURL() + "/studies?" + clientQuery, Header: r.asClinician(acceptJSON())},
		{Name: nameProxy3, URL: proxy3.DICOMwebURL() + "/studies?" + clientQuery, Header: r.asClinician(acceptJSON())},
	}
	var each []bench.Target
	for _, s := range r.orthancs {
		each = append(each, bench.Target{Name: s.Name, URL: s.DICOMwebURL() + "/studies?" + clientQuery, Header: acceptJSON()})
	}
	searches = append(searches, bench.Parallel(nameDirect3, each...))
	retrieves := []bench.Target{
		{Name: nameDirect, URL: a.DICOMwebURL() + "/studies/" + rep.CopiesUID, Header: acceptMultipart()},
		{Name: nameProxy1, URL: proxy1.DICOMwebURL() + "/studies/" + rep.CopiesUID, Header: r.asClinician(acceptMultipart())},
		{Name: nameNginxStream, URL: r.nginx.StreamingURL + "/dicom-web/studies/" + rep.CopiesUID, Header: acceptMultipart()},
		{Name: nameNginxBuffer, URL: r.nginx.BufferingURL + "/dicom-web/studies/" + rep.CopiesUID, Header: acceptMultipart()},
	}
	if err := checkTargets(ctx, searches, retrieves, o, rep); err != nil {
		return err
	}
	logf("every target answers; measuring searches (%s per target and concurrency, %d rounds)", o.searchTime, o.rounds)

	procs := []bench.Proc{
		{Name: procProxy1, PID: proxy1.PID()}, {Name: procProxy3, PID: proxy3.PID()},
		{Name: procNginx, PID: r.nginx.PID(), Tree: true},
		{Name: procOrthancA, PID: r.orthancs[0].PID()}, {Name: procOrthancB, PID: r.orthancs[1].PID()},
		{Name: procOrthancC, PID: r.orthancs[2].PID()}, {Name: procDriver, PID: os.Getpid()},
	}
	bg := startBackground()
	for _, conns := range []int{1, 16} {
		g := measure(ctx, searches, conns, o.rounds, o.searchTime, o.warm, procs)
		rep.Search = append(rep.Search, g)
		logf("searches at %d connection(s): %s", conns, g.summary())
	}
	if rep.FanOut, err = measureFanOut(ctx, r, o, rep.UpstreamQuery, clientQuery); err != nil {
		return err
	}
	logf("searches over delayed origins: %s", rep.FanOut.summary())
	if rep.Sources, err = measureSources(ctx, r, o, rep.UpstreamQuery, clientQuery, logf); err != nil {
		return err
	}
	logf("searches over 1 to 20 origins: %s", rep.Sources.Fan.summary())
	var cacheProfiles []*profileResult
	if rep.Cache, cacheProfiles, err = measureCache(ctx, r, o, clientQuery, logf); err != nil {
		return err
	}
	for _, conns := range []int{1, 4} {
		g := measure(ctx, retrieves, conns, o.rounds, o.retrieveTime, o.warm, procs)
		rep.Retrieve = append(rep.Retrieve, g)
		logf("retrieves at %d connection(s): %s", conns, g.summary())
	}
	metadata := []bench.Target{
		{Name: nameDirect, URL: a.DICOMwebURL() + "/studies/" + rep.CopiesUID + "/metadata", Header: acceptJSON()},
		{Name: nameProxy1, URL: proxy1.DICOMwebURL() + "/studies/" + rep.CopiesUID + "/metadata", Header: r.asClinician(acceptJSON())},
	}
	for _, t := range metadata {
		if n, err := countResults(ctx, bench.NewClient(1), t); err != nil || n != o.copies {
			return fmt.Errorf("check %s study metadata: %d instances, want %d (%v)", t.Name, n, o.copies, err)
		}
	}
	rep.Metadata = measure(ctx, metadata, 1, o.rounds, o.retrieveTime, o.warm, procs)
	logf("study metadata at 1 connection: %s", rep.Metadata.summary())
	if ctx.Err() != nil {
		return fmt.Errorf("measure: %w", ctx.Err())
	}
	// Free the CPU for the memory test.
	r.stopProxy(proxy3)
	if rep.Memory, err = measureMemory(ctx, r, rep); err != nil {
		return err
	}
	logf("memory: %s", rep.Memory.summary())
	rep.BackgroundCores, rep.OwnCores = bg.cores()
	logf("during the measurements this run used %.2f cores on average, other processes %.2f", rep.OwnCores, rep.BackgroundCores)
	if o.profileTime > 0 {
		if rep.Profiles, err = profile(ctx, r, o, clientQuery, rep.CopiesUID); err != nil {
			return err
		}
		rep.Profiles = append(rep.Profiles, cacheProfiles...)
		logf("CPU profiles of the proxy kept in %s", o.profileDir)
	}

	return finish(o, rep, started, stdout, logf)
}

// finish reads the Go benchmarks' output into rep, writes the report and prints its targets.
func finish(o options, rep *report, started time.Time, stdout io.Writer, logf func(format string, args ...any)) error {
	if o.goBench != "" {
		data, err := os.ReadFile(o.goBench)
		if err != nil {
			return fmt.Errorf("read Go benchmark output: %w", err)
		}
		rep.GoBench = string(data)
	}
	rep.Elapsed = time.Since(started)
	if err := bench.WriteReport(o.out, []byte(reportTemplate), rep.markdown()); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, rep.targetsTable())
	logf("figures written to %s", o.out)
	return nil
}

// runSingle measures the phases that need one Orthanc alone (-phases sources, cache or
// sources,cache): issue 3's, whose stand-ins serve Orthanc A's answer, and issue 4's, whose
// proxies are over it.
func runSingle(ctx context.Context, o options, stdout io.Writer) error {
	started, rep, logf := beginRun(o, stdout)
	r := &rig{log: stdout}
	defer r.stop()
	work, err := os.MkdirTemp("", "nirproxy-bench-")
	if err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	r.work = work
	if err := r.startAccess(o); err != nil {
		return err
	}
	var buildErr error
	built := make(chan struct{})
	go func() {
		defer close(built)
		r.bin, buildErr = orthanc.BuildProxy(ctx, work)
		if buildErr == nil && o.runs(phasesCache) && o.profileTime > 0 {
			var root string
			if root, buildErr = orthanc.ModuleRoot(); buildErr == nil {
				r.profBin, buildErr = bench.BuildProfilingProxy(ctx, root, work)
			}
		}
	}()
	r.orthancs, err = orthanc.StartMany(ctx, orthanc.Options{}, "BENCH_A")
	if err == nil {
		var ins []*pacssim.Instance
		if ins, err = bench.SearchStudies(sourceIDs()[0], o.searchStudies); err == nil {
			err = bench.UploadInstances(ctx, r.orthancs[0], ins)
		}
	}
	<-built
	if err := errors.Join(err, buildErr); err != nil {
		return err
	}
	if rep.OrthancVersion, rep.DICOMwebVersion, err = bench.OrthancVersions(ctx, r.orthancs[0]); err != nil {
		return err
	}
	if rep.UpstreamQuery, err = captureUpstreamQuery(ctx, r); err != nil {
		return err
	}
	clientQuery := "PatientID=" + bench.SearchPatient
	logf("Orthanc A loaded, proxy built; measuring %s", o.phases)
	bg := startBackground()
	if o.runs(phasesSources) {
		if rep.Sources, err = measureSources(ctx, r, o, rep.UpstreamQuery, clientQuery, logf); err != nil {
			return err
		}
		logf("searches over 1 to 20 origins: %s", rep.Sources.Fan.summary())
	}
	if o.runs(phasesCache) {
		if rep.Cache, rep.Profiles, err = measureCache(ctx, r, o, clientQuery, logf); err != nil {
			return err
		}
	}
	rep.BackgroundCores, rep.OwnCores = bg.cores()
	return finish(o, rep, started, stdout, logf)
}

// Target and process names used in the report.
const (
	nameDirect        = "Orthanc direct"
	nameDirectAsProxy = "Orthanc direct, the proxy's upstream query"
	nameProxy1        = "nirproxy, 1 upstream"
	nameProxy3        = "nirproxy, 3 upstreams"
	nameDirect3       = "3 Orthancs direct, in parallel from the load driver"
	nameDelayed1      = "nirproxy, 1 delayed origin"
	nameDelayed3      = "nirproxy, 3 delayed origins"
	nameNginxStream   = "nginx, proxy_buffering off"
	nameNginxBuffer   = "nginx, proxy_buffering on"

	procProxy1   = "nirproxy (1 upstream)"
	procProxy3   = "nirproxy (3 upstreams)"
	procNginx    = "nginx"
	procOrthancA = "Orthanc A"
	procOrthancB = "Orthanc B"
	procOrthancC = "Orthanc C"
	procDriver   = "load driver"
)

// loadData fills the Orthancs: search studies at each, and at the first one the retrieved
// study (copies of CT_small), the small and the large synthetic studies.
func loadData(ctx context.Context, r *rig, rep *report, o options) error {
	var wg sync.WaitGroup
	errs := make([]error, len(r.orthancs)+1)
	for i, s := range r.orthancs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ins, err := bench.SearchStudies(sourceIDs()[i], o.searchStudies)
			if err == nil {
				err = bench.UploadInstances(ctx, s, ins)
			}
			errs[i] = err
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[len(r.orthancs)] = loadRetrieveData(ctx, r, rep, o)
	}()
	wg.Wait()
	return errors.Join(errs...)
}

func loadRetrieveData(ctx context.Context, r *rig, rep *report, o options) error {
	a := r.orthancs[0]
	dir := filepath.Join(r.work, "copies")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory for copies: %w", err)
	}
	paths, uid, err := bench.RelabelledCopies(ctx, dir, "CT_small.dcm", o.copies)
	if err != nil {
		return err
	}
	if err := bench.UploadFiles(ctx, a, paths); err != nil {
		return err
	}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			rep.CopiesBytes += fi.Size()
		}
	}
	rep.CopiesUID = uid
	os.RemoveAll(dir)

	small := bench.SyntheticStudy{Key: "small", Instances: 4, Rows: 512, Column: 256}
	if rep.SmallBytes, err = small.Upload(ctx, a); err != nil {
		return err
	}
	rep.SmallUID = small.UID()
	large := bench.SyntheticStudy{Key: "large", Instances: max(1, o.largeMB/8), Rows: 2048, Column: 2048}
	if rep.LargeBytes, err = large.Upload(ctx, a); err != nil {
		return err
	}
	rep.LargeUID = large.UID()
	return nil
}

// captureUpstreamQuery runs a proxy over a recording origin and returns the query string the
// proxy sends upstream for the client's search.
func captureUpstreamQuery(ctx context.Context, r *rig) (string, error) {
	root, captured, stop := bench.CaptureQuery()
	defer stop()
	p, err := r.startProxyOver(ctx, r.bin, []orthanc.ProxySource{{ID: "CAPTURE", Name: "Query capture", URL: root}}, nil)
	if err != nil {
		return "", err
	}
	defer r.stopProxy(p)
	t := bench.Target{Name: "capture", URL: p.DICOMwebURL() + "/studies?PatientID=" + bench.SearchPatient, Header: r.asClinician(acceptJSON())}
	if _, err := bench.Fetch(ctx, bench.NewClient(1), t); err != nil {
		return "", fmt.Errorf("capture the proxy's upstream query: %w", err)
	}
	q := captured()
	if q == "" {
		return "", errors.New("capture the proxy's upstream query: the proxy sent no study search for the patient")
	}
	return q, nil
}

// checkTargets fetches each target once and checks that the answers are what the comparison
// assumes: every search finds the expected number of studies, every retrieve about the same
// bytes.
func checkTargets(ctx context.Context, searches, retrieves []bench.Target, o options, rep *report) error {
	client := bench.NewClient(1)
	want := map[string]int{nameDirect: o.searchStudies, nameDirectAsProxy: o.searchStudies,
		nameProxy1: o.searchStudies, nameProxy3: 3 * o.searchStudies}
	for _, t := range searches {
		if t.Do != nil {
			if _, err := bench.Fetch(ctx, client, t); err != nil {
				return fmt.Errorf("check %s: %w", t.Name, err)
			}
			continue
		}
		n, err := countResults(ctx, client, t)
		if err != nil {
			return err
		}
		if n != want[t.Name] {
			return fmt.Errorf("check %s: the search found %d studies, want %d", t.Name, n, want[t.Name])
		}
	}
	var direct int64
	for _, t := range retrieves {
		n, err := bench.Fetch(ctx, client, t)
		if err != nil {
			return fmt.Errorf("check retrieve: %w", err)
		}
		if direct == 0 {
			direct = n
		}
		// Boundaries differ in length between servers; a lost instance would not.
		if d := n - direct; d > 16<<10 || d < -16<<10 {
			return fmt.Errorf("check %s: the study retrieve gave %d bytes, Orthanc itself %d", t.Name, n, direct)
		}
		rep.RetrieveBytes = direct
	}
	return nil
}

// countResults runs a search and returns how many results it answered.
func countResults(ctx context.Context, client *http.Client, t bench.Target) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return 0, fmt.Errorf("check %s: %w", t.Name, err)
	}
	req.Header = t.Header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("check %s: %w", t.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return 0, fmt.Errorf("check %s: status %d: %s", t.Name, resp.StatusCode, body)
	}
	var list []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return 0, fmt.Errorf("check %s: decode the answer: %w", t.Name, err)
	}
	return len(list), nil
}

// group is one comparison: the same targets at one concurrency, interleaved.
type group struct {
	Conns   int
	Targets []string
	Results map[string]*bench.Result
	// CPU is the CPU time each process tree used while each target was measured.
	CPU map[string]map[string]time.Duration
}

// measure loads targets interleaved at conns connections and meters the processes' CPU.
func measure(ctx context.Context, targets []bench.Target, conns, rounds int, total, warm time.Duration, procs []bench.Proc) *group {
	g := &group{Conns: conns, CPU: map[string]map[string]time.Duration{}}
	meters := map[string]*bench.CPUMeter{}
	for _, t := range targets {
		g.Targets = append(g.Targets, t.Name)
		meters[t.Name] = bench.NewCPUMeter(procs)
	}
	g.Results = bench.Interleaved(ctx, targets, conns, rounds, total, warm, func(name string, before bool) {
		if before {
			meters[name].Begin()
		} else {
			meters[name].End()
		}
	})
	for name, m := range meters {
		g.CPU[name] = m.Used
	}
	return g
}

// memoryResult is the memory test's outcome, in bytes.
type memoryResult struct {
	Baseline, AfterSmall, AfterLarge bench.Memory
	SmallRetrieved, LargeRetrieved   int64
	Repeats                          int
	LargeMBps                        float64
}

// measureMemory starts a fresh proxy over the first Orthanc and reads its peak resident memory
// after a search, after retrieving the small study, and after retrieving the large one.
func measureMemory(ctx context.Context, r *rig, rep *report) (*memoryResult, error) {
	p, err := r.startProxy(ctx, 1)
	if err != nil {
		return nil, err
	}
	defer r.stopProxy(p)
	client := bench.NewClient(1)
	m := &memoryResult{Repeats: 3}
	search := bench.Target{Name: "memory search", URL: p.DICOMwebURL() + "/studies?PatientID=" + bench.RetrievePatient, Header: r.asClinician(acceptJSON())}
	if _, err := bench.Fetch(ctx, client, search); err != nil {
		return nil, err
	}
	if m.Baseline, err = bench.ReadMemory(p.PID()); err != nil {
		return nil, err
	}
	retrieve := func(uid string) (int64, time.Duration, error) {
		t := bench.Target{Name: "memory retrieve", URL: p.DICOMwebURL() + "/studies/" + uid, Header: r.asClinician(acceptMultipart())}
		var n int64
		start := time.Now()
		for i := 0; i < m.Repeats; i++ {
			got, err := bench.Fetch(ctx, client, t)
			if err != nil {
				return 0, 0, err
			}
			n = got
		}
		return n, time.Since(start), nil
	}
	if m.SmallRetrieved, _, err = retrieve(rep.SmallUID); err != nil {
		return nil, err
	}
	if m.AfterSmall, err = bench.ReadMemory(p.PID()); err != nil {
		return nil, err
	}
	var d time.Duration
	if m.LargeRetrieved, d, err = retrieve(rep.LargeUID); err != nil {
		return nil, err
	}
	m.LargeMBps = float64(m.LargeRetrieved) * float64(m.Repeats) / 1e6 / d.Seconds()
	if m.AfterLarge, err = bench.ReadMemory(p.PID()); err != nil {
		return nil, err
	}
	return m, nil
}

// profileResult is the proxy's CPU profile under one load.
type profileResult struct {
	What      string
	Conns     int
	Load      *bench.Result
	Path      string
	Flat, Cum string
}

// profile runs the profiling build of the proxy over Orthanc A under the search load at 16
// connections and the retrieve load at 4, alone, and keeps a CPU profile of each.
func profile(ctx context.Context, r *rig, o options, clientQuery, retrieveUID string) ([]*profileResult, error) {
	port, err := orthanc.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := r.startProxyOver(ctx, r.profBin, r.sourcesOver(1), []string{bench.PprofAddrEnv + "=" + addr})
	if err != nil {
		return nil, err
	}
	defer r.stopProxy(p)
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return nil, fmt.Errorf("create profile directory: %w", err)
	}
	loads := []struct {
		what, file string
		conns      int
		t          bench.Target
	}{
		{"QIDO study search, 1 upstream", "search.pprof", 16,
			bench.Target{Name: "search", URL: p.DICOMwebURL() + "/studies?" + clientQuery, Header: r.asClinician(acceptJSON())}},
		{"whole-study retrieve, 1 upstream", "retrieve.pprof", 4,
			bench.Target{Name: "retrieve", URL: p.DICOMwebURL() + "/studies/" + retrieveUID, Header: r.asClinician(acceptMultipart())}},
	}
	var out []*profileResult
	for _, l := range loads {
		client := bench.NewClient(l.conns)
		bench.Run(ctx, client, l.t, l.conns, o.warm)
		pr := &profileResult{What: l.what, Conns: l.conns, Path: filepath.Join(o.profileDir, l.file)}
		done := make(chan bench.Result, 1)
		go func() { done <- bench.Run(ctx, client, l.t, l.conns, o.profileTime+500*time.Millisecond) }()
		perr := bench.CPUProfile(ctx, addr, o.profileTime, pr.Path)
		res := <-done
		pr.Load = &res
		client.CloseIdleConnections()
		if perr != nil {
			return nil, perr
		}
		if pr.Flat, err = bench.PprofTop(ctx, r.profBin, pr.Path, 20, false); err != nil {
			return nil, err
		}
		if pr.Cum, err = bench.PprofTop(ctx, r.profBin, pr.Path, 30, true); err != nil {
			return nil, err
		}
		out = append(out, pr)
	}
	return out, nil
}

// measureFanOut runs the search through proxies over one and over three stand-ins for distant
// trusts (each answering what an Orthanc answered, after o.originDelay), at one connection.
func measureFanOut(ctx context.Context, r *rig, o options, upstreamQuery, clientQuery string) (*group, error) {
	var srcs []orthanc.ProxySource
	for i, s := range r.orthancs {
		status, _, body, err := s.Do(ctx, http.MethodGet, "/dicom-web/studies?"+upstreamQuery, acceptJSON(), nil)
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("record the search answer of Orthanc %s: status %d", s.Name, status)
		}
		origin := bench.StartDelayedOrigin(body, o.originDelay)
		defer origin.Close()
		srcs = append(srcs, orthanc.ProxySource{ID: sourceIDs()[i], Name: "Distant trust " + sourceIDs()[i],
			URL: origin.URL + "/dicom-web", Priority: i + 1})
	}
	p1, err := r.startProxyOver(ctx, r.bin, srcs[:1], nil)
	if err != nil {
		return nil, err
	}
	defer r.stopProxy(p1)
	p3, err := r.startProxyOver(ctx, r.bin, srcs, nil)
	if err != nil {
		return nil, err
	}
	defer r.stopProxy(p3)
	targets := []bench.Target{
		{Name: nameDelayed1, URL: p1.DICOMwebURL() + "/studies?" + clientQuery, Header: r.asClinician(acceptJSON())},
		{Name: nameDelayed3, URL: p3.DICOMwebURL() + "/studies?" + clientQuery, Header: r.asClinician(acceptJSON())},
	}
	client := bench.NewClient(1)
	for i, t := range targets {
		n, err := countResults(ctx, client, t)
		if err != nil {
			return nil, err
		}
		if want := []int{1, 3}[i] * o.searchStudies; n != want {
			return nil, fmt.Errorf("check %s: the search found %d studies, want %d", t.Name, n, want)
		}
	}
	procs := []bench.Proc{{Name: procProxy1, PID: p1.PID()}, {Name: procProxy3, PID: p3.PID()}, {Name: procDriver, PID: os.Getpid()}}
	return measure(ctx, targets, 1, o.rounds, o.searchTime, o.warm, procs), nil
}

// background measures how busy the machine is with processes this run did not start.
type background struct {
	wall       time.Time
	busy, ours time.Duration
}

// startBackground notes the machine's and this process tree's CPU time now.
func startBackground() background {
	busy, _ := bench.MachineBusy()
	ours, _ := bench.TreeCPUTime(os.Getpid())
	return background{wall: time.Now(), busy: busy, ours: ours}
}

// cores returns how many cores, on average since startBackground, other processes and this
// process tree kept busy.
func (b background) cores() (others, ours float64) {
	busy, err1 := bench.MachineBusy()
	own, err2 := bench.TreeCPUTime(os.Getpid())
	wall := time.Since(b.wall).Seconds()
	if err1 != nil || err2 != nil || wall <= 0 {
		return 0, 0
	}
	ours = (own - b.ours).Seconds() / wall
	others = max(0, (busy-b.busy).Seconds()/wall-ours)
	return others, ours
}

// beginRun starts a run's clock, its report (with the machine's description) and its progress
// log, for both the full run and the phases run alone.
func beginRun(o options, stdout io.Writer) (time.Time, *report, func(format string, args ...any)) {
	started := time.Now()
	rep := &report{Started: started.UTC(), Options: o}
	rep.collectMachine()
	logf := func(format string, args ...any) {
		fmt.Fprintf(stdout, "loadbench %5.1fs: %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
	}
	return started, rep, logf
}

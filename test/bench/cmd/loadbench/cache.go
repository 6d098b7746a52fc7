package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9/logging"

	"github.com/nirproxy/nirproxy/test/bench"
	"github.com/nirproxy/nirproxy/test/orthanc"
	"github.com/nirproxy/nirproxy/test/redisserver"
)

// This file is issue 4's benchmark (point 7): the same study search, repeated, answered by
// nirproxy from its cache in Redis and from its in-process cache, sent straight to the
// Orthanc that is the proxies' upstream, and answered by nginx serving the proxy's answer as a
// static file, every row loaded with wrk at the same connections for the same time. Before
// anything is measured, a load run of each cached proxy must show every answer counted as a
// fresh-cache hit and no request reaching Orthanc.

// Targets of issue 4, point 7.
const (
	// minCacheSpeedup is the least requests/s of a cached proxy over Orthanc direct.
	minCacheSpeedup = 10.0
	// minCeilingShare is the aim for a cached proxy's requests/s over nginx serving the same
	// bytes as a static file.
	minCeilingShare = 0.5
)

// cacheFresh is cache.search.fresh of the cached proxies: far beyond the phase, so that every
// measured answer is a fresh-cache hit.
const cacheFresh = time.Hour

// Names of the phase's targets and processes.
const (
	nameCacheRedis  = "nirproxy, cache in Redis"
	nameCacheMemory = "nirproxy, in-process cache"
	nameCacheNginx  = "nginx, the proxy's answer as a static file"

	procCacheRedis  = "nirproxy (Redis cache)"
	procCacheMemory = "nirproxy (in-process cache)"
	procRedis       = "redis-server"
	procNginxStatic = "nginx (static file)"
	procWrk         = "wrk"
)

// cacheResult is the outcome of the phase.
type cacheResult struct {
	Conns, Threads int
	Rounds         int
	Time, Warm     time.Duration
	WrkVersion     string
	RedisVersion   string
	NginxVersion   string
	Fresh          time.Duration
	Studies        int
	// Answer is the cached proxy's answer that nginx serves: its length and Content-Type.
	AnswerBytes int
	ContentType string
	// G is the four rows, measured in interleaved rounds.
	G *group
	// Checks are the cache-hit and Orthanc request counts of the cached proxies over their
	// warm-up run (checked before anything is measured) and over the measurement.
	Checks []cacheCheck
	// RedisCommands is how many of each command Redis ran per answer of the Redis row while it
	// was measured (INFO commandstats around its slices), by command name.
	RedisCommands map[string]float64
}

// cacheCheck is what one cached proxy's counters did over some wrk runs.
type cacheCheck struct {
	Target, Phase string
	// Answered and Errors are what wrk counted; Runs how many wrk runs there were, each of
	// which may leave up to Conns requests sent but unanswered when it stops.
	Answered, Errors, Runs int
	// Hits is the rise of nirproxy_cache_lookups_total{kind="search",result="hit"}, Others that
	// of its other results (miss, stale, error).
	Hits, Others float64
	// Upstream is how many requests reached Orthanc (through the counting front).
	Upstream int64
}

// problem says what is wrong with the counts, or "" when the answers were served from the
// cache: at least one hit per answer and at most one per request sent, no other lookup, and
// nothing sent to Orthanc.
func (c cacheCheck) problem(conns int) string {
	var bad []string
	if c.Answered == 0 {
		bad = append(bad, "wrk counted no answer")
	}
	if c.Errors > 0 {
		bad = append(bad, fmt.Sprintf("wrk counted %d errors", c.Errors))
	}
	if most := float64(c.Answered + c.Errors + conns*c.Runs); c.Hits < float64(c.Answered) || c.Hits > most {
		bad = append(bad, fmt.Sprintf("the search cache counted %.0f fresh hits for %d answers (want %d to %.0f)", c.Hits, c.Answered, c.Answered, most))
	}
	if c.Others > 0 {
		bad = append(bad, fmt.Sprintf("the search cache counted %.0f misses, stale or failed lookups", c.Others))
	}
	if c.Upstream > 0 {
		bad = append(bad, fmt.Sprintf("Orthanc was sent %d requests", c.Upstream))
	}
	return strings.Join(bad, "; ")
}

// cachedProxy is one cached proxy of the phase.
type cachedProxy struct {
	name, proc string
	p          *orthanc.Proxy
}

// cacheCounts reads the proxy's search-cache counters and the front's request count.
func cacheCounts(ctx context.Context, client *http.Client, p *orthanc.Proxy, front *bench.CountingFront) (hits, all float64, upstream int64, err error) {
	const metric = "nirproxy_cache_lookups_total"
	if hits, err = bench.MetricValue(ctx, client, p.AdminURL, metric, map[string]string{"kind": "search", "result": "hit"}); err != nil {
		return 0, 0, 0, err
	}
	if all, err = bench.MetricValue(ctx, client, p.AdminURL, metric, map[string]string{"kind": "search"}); err != nil {
		return 0, 0, 0, err
	}
	return hits, all, front.Requests(), nil
}

// cacheConfig is the cache section of the cached proxies' configuration: searches fresh for
// cacheFresh, in Redis at redisAddr or, with redisAddr empty, in process.
func cacheConfig(redisAddr, keySecret, encryptionKey string) map[string]any {
	c := map[string]any{"search": map[string]any{"fresh": shortDuration(cacheFresh), "stale": "15m"}}
	if redisAddr != "" {
		c["keySecret"] = keySecret
		c["encryptionKeys"] = []string{encryptionKey}
		c["redis"] = map[string]any{"addrs": []string{redisAddr}}
	}
	return c
}

// measureCache runs the phase over Orthanc A.
func measureCache(ctx context.Context, r *rig, o options, clientQuery string, logf func(string, ...any)) (*cacheResult, []*profileResult, error) {
	a := r.orthancs[0]
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	res := &cacheResult{Conns: o.cacheConns, Threads: o.wrkThreads, Rounds: o.rounds, Time: o.cacheTime, Warm: o.warm,
		Fresh: cacheFresh, Studies: o.searchStudies}
	w, err := bench.NewWrk(ctx, r.work, o.wrkThreads)
	if err != nil {
		return nil, nil, err
	}
	res.WrkVersion = w.Version
	// redisserver polls the new server before it listens, and go-redis logs every refused
	// dial; the driver's only Redis client is redisserver's, whose failures are returned anyway.
	logging.Disable()
	redis, err := redisserver.Start(ctx, redisserver.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("start Redis for the cache: %w", err)
	}
	cleanups = append(cleanups, func() { _ = redis.Stop() })
	if info, err := redis.Client().Info(ctx, "server").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				res.RedisVersion = v
			}
		}
	}
	front, err := bench.StartCountingFront(a.URL)
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, front.Close)

	secret, key := make([]byte, 48), make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, fmt.Errorf("make the cache key secret: %w", err)
	}
	if _, err := rand.Read(key); err != nil {
		return nil, nil, fmt.Errorf("make the cache encryption key: %w", err)
	}
	srcs := []orthanc.ProxySource{{ID: sourceIDs()[0], Name: "Bench Orthanc " + sourceIDs()[0], URL: front.URL + "/dicom-web", Priority: 1}}
	withRedis := cacheConfig(redis.Addr(), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(key))
	inProcess := cacheConfig("", "", "")
	start := func(bin string, cfg map[string]any, env []string) (*orthanc.Proxy, error) {
		p, err := r.startProxyExtra(ctx, bin, srcs, env, map[string]any{"cache": cfg})
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, func() { r.stopProxy(p) })
		return p, nil
	}
	pRedis, err := start(r.bin, withRedis, nil)
	if err != nil {
		return nil, nil, err
	}
	pMemory, err := start(r.bin, inProcess, nil)
	if err != nil {
		return nil, nil, err
	}
	cached := []cachedProxy{{name: nameCacheRedis, proc: procCacheRedis, p: pRedis}, {name: nameCacheMemory, proc: procCacheMemory, p: pMemory}}

	// One request each fills the caches from Orthanc; then the proxy's answer, as bytes, is what
	// nginx serves.
	client := bench.NewClient(1)
	var targets []bench.Target
	for _, c := range cached {
		t := bench.Target{Name: c.name, URL: c.p.DICOMwebURL() + "/studies?" + clientQuery, Header: r.asClinician(acceptJSON())}
		if n, err := countResults(ctx, client, t); err != nil || n != o.searchStudies {
			return nil, nil, fmt.Errorf("check %s: the search found %d studies, want %d (%v)", c.name, n, o.searchStudies, err)
		}
		targets = append(targets, t)
	}
	if front.Requests() == 0 {
		return nil, nil, fmt.Errorf("check the cached proxies: their first searches did not reach Orthanc through the counting front")
	}
	body, ct, err := fetchAnswer(ctx, client, targets[0])
	if err != nil {
		return nil, nil, err
	}
	res.AnswerBytes, res.ContentType = len(body), ct
	nginx, err := bench.StartStaticNginx(ctx, body, "/dicom-web/studies", ct, orthanc.FreePort)
	if err != nil {
		return nil, nil, err
	}
	cleanups = append(cleanups, func() {
		if err := nginx.Stop(); err != nil {
			fmt.Fprintln(r.log, "loadbench:", err)
		}
	})
	res.NginxVersion = nginx.Version
	static := bench.Target{Name: nameCacheNginx, URL: nginx.StaticURL + "/dicom-web/studies?" + clientQuery, Header: acceptJSON()}
	if got, gotCT, err := fetchAnswer(ctx, client, static); err != nil || !bytes.Equal(got, body) || gotCT != ct {
		return nil, nil, fmt.Errorf("check %s: %d bytes as %q, want the proxy's %d bytes as %q (%v)", nameCacheNginx, len(got), gotCT, len(body), ct, err)
	}
	direct := bench.Target{Name: nameDirect, URL: a.DICOMwebURL() + "/studies?" + clientQuery, Header: acceptJSON()}
	if n, err := countResults(ctx, client, direct); err != nil || n != o.searchStudies {
		return nil, nil, fmt.Errorf("check %s: the search found %d studies, want %d (%v)", nameDirect, n, o.searchStudies, err)
	}
	targets = append(targets, direct, static)
	rowProxy := map[string]*cachedProxy{}
	for i := range cached {
		rowProxy[cached[i].name] = &cached[i]
	}

	// The warm-up run of every row; those of the cached proxies must have been answered from
	// the cache, or nothing is measured.
	for _, t := range targets {
		c := rowProxy[t.Name]
		check, err := wrkChecked(ctx, client, t, c, front, "warm-up", func() (int, int, int, error) {
			got, err := w.Run(ctx, t, o.cacheConns, o.warm)
			return got.Requests, got.Errors, 1, err
		})
		if err != nil {
			return nil, nil, err
		}
		if c == nil {
			continue
		}
		res.Checks = append(res.Checks, check)
		if p := check.problem(o.cacheConns); p != "" {
			return nil, nil, fmt.Errorf("check that %s answers from its cache, before measuring: %s", t.Name, p)
		}
	}
	logf("the cached proxies answered their warm-up load from the cache (%s); measuring with wrk (%s per target, %d rounds, %d connections)",
		checksSummary(res.Checks), o.cacheTime, o.rounds, o.cacheConns)

	procs := []bench.Proc{
		{Name: procRedis, PID: redis.PID()}, {Name: procOrthancA, PID: a.PID()},
		{Name: procNginxStatic, PID: nginx.PID(), Tree: true}, {Name: procWrk, PID: os.Getpid(), Reaped: true},
	}
	for _, c := range cached {
		procs = append(procs, bench.Proc{Name: c.proc, PID: c.p.PID()})
	}
	// Redis's command counts around each slice of the Redis row.
	commands := map[string]int64{}
	var stats0 map[string]int64
	var statsErr error
	observe := func(name string, before bool) {
		if name != nameCacheRedis || statsErr != nil {
			return
		}
		st, err := redisCommandStats(ctx, redis)
		if err != nil {
			statsErr = err
			return
		}
		if before {
			stats0 = st
			return
		}
		for cmd, n := range st {
			commands[cmd] += n - stats0[cmd]
		}
	}
	before := make([]cacheCheck, len(cached))
	for i, c := range cached {
		hits, all, up, err := cacheCounts(ctx, client, c.p, front)
		if err != nil {
			return nil, nil, err
		}
		before[i] = cacheCheck{Target: c.name, Phase: "measured", Hits: hits, Others: all - hits, Upstream: up}
	}
	g, err := measureWrk(ctx, w, targets, o.cacheConns, o.rounds, o.cacheTime, procs, observe)
	if err != nil {
		return nil, nil, err
	}
	if statsErr != nil {
		return nil, nil, statsErr
	}
	res.G = g
	res.RedisCommands = map[string]float64{}
	for cmd, n := range commands {
		// The driver's own INFO commands, two per slice, are left out.
		if answers := g.Results[nameCacheRedis].Requests; answers > 0 && cmd != "INFO" && n > 0 {
			res.RedisCommands[cmd] = float64(n) / float64(answers)
		}
	}
	logf("measured the search from the cache: %s; Redis commands per answer of the Redis row: %s", g.summary(), commandsText(res.RedisCommands))
	for i, c := range cached {
		hits, all, up, err := cacheCounts(ctx, client, c.p, front)
		if err != nil {
			return nil, nil, err
		}
		m := g.Results[c.name]
		check := cacheCheck{Target: c.name, Phase: "measured", Answered: m.Requests, Errors: m.Errors, Runs: o.rounds,
			Hits: hits - before[i].Hits, Others: all - hits - before[i].Others, Upstream: up - before[i].Upstream}
		res.Checks = append(res.Checks, check)
		if p := check.problem(o.cacheConns); p != "" {
			return nil, nil, fmt.Errorf("check that %s answered the measured load from its cache: %s", c.name, p)
		}
	}

	var profiles []*profileResult
	if o.profileTime > 0 {
		loads := []struct {
			what, file string
			cfg        map[string]any
		}{
			{"QIDO study search answered from the cache in Redis (point 7, row a)", "cache-redis.pprof", withRedis},
			{"QIDO study search answered from the in-process cache (point 7, row b)", "cache-memory.pprof", inProcess},
		}
		for _, l := range loads {
			pr, err := profileCached(ctx, r, o, w, clientQuery, l.what, l.file, func(env []string) (*orthanc.Proxy, error) {
				return start(r.profBin, l.cfg, env)
			})
			if err != nil {
				return nil, nil, err
			}
			profiles = append(profiles, pr)
			logf("profiled %s: %.0f requests/s", l.what, pr.Load.RPS())
		}
	}
	return res, profiles, nil
}

// wrkChecked runs load (which returns what wrk answered, its errors and its runs) and, when c
// is a cached proxy, reads its counters around it.
func wrkChecked(ctx context.Context, client *http.Client, t bench.Target, c *cachedProxy, front *bench.CountingFront, phase string,
	load func() (answered, errs, runs int, err error)) (cacheCheck, error) {
	check := cacheCheck{Target: t.Name, Phase: phase}
	var hits0, all0 float64
	var up0 int64
	if c != nil {
		var err error
		if hits0, all0, up0, err = cacheCounts(ctx, client, c.p, front); err != nil {
			return check, err
		}
	}
	answered, errs, runs, err := load()
	if err != nil {
		return check, err
	}
	check.Answered, check.Errors, check.Runs = answered, errs, runs
	if c != nil {
		hits, all, up, err := cacheCounts(ctx, client, c.p, front)
		if err != nil {
			return check, err
		}
		check.Hits, check.Others, check.Upstream = hits-hits0, all-hits-(all0-hits0), up-up0
	}
	return check, nil
}

// redisCommandStats returns how many times Redis has run each command, from INFO commandstats
// ("cmdstat_get:calls=12,usec=..."), by command name in capitals.
func redisCommandStats(ctx context.Context, s *redisserver.Server) (map[string]int64, error) {
	info, err := s.Client().Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("read Redis command statistics: %w", err)
	}
	return parseCommandStats(info), nil
}

// parseCommandStats reads the calls of each command out of INFO commandstats.
func parseCommandStats(info string) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		cmd, isStat := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isStat {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				var n int64
				if _, err := fmt.Sscanf(v, "%d", &n); err == nil {
					out[strings.ToUpper(cmd)] = n
				}
			}
		}
	}
	return out
}

// commandsText is commands per answer, most first: "SET 10.0, SADD 10.0, ...".
func commandsText(perAnswer map[string]float64) string {
	names := make([]string, 0, len(perAnswer))
	for n := range perAnswer {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if perAnswer[names[i]] != perAnswer[names[j]] {
			return perAnswer[names[i]] > perAnswer[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.1f", n, perAnswer[n])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// checksSummary is the checks for the console.
func checksSummary(checks []cacheCheck) string {
	var parts []string
	for _, c := range checks {
		parts = append(parts, fmt.Sprintf("%s, %s: %d answers, %.0f hits, %.0f other lookups, %d requests to Orthanc",
			c.Target, c.Phase, c.Answered, c.Hits, c.Others, c.Upstream))
	}
	return strings.Join(parts, "; ")
}

// fetchAnswer GETs t and returns the body and its Content-Type; an answer that is not 200 is
// an error.
func fetchAnswer(ctx context.Context, client *http.Client, t bench.Target) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s: %w", t.Name, err)
	}
	req.Header = t.Header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s: %w", t.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s: %w", t.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("fetch %s: status %d: %.300s", t.Name, resp.StatusCode, body)
	}
	return body, resp.Header.Get("Content-Type"), nil
}

// measureWrk loads targets with wrk, interleaved at conns connections, and meters the
// processes' CPU; observe, when not nil, is called around each slice too.
func measureWrk(ctx context.Context, w *bench.Wrk, targets []bench.Target, conns, rounds int, total time.Duration, procs []bench.Proc,
	observe func(name string, before bool)) (*group, error) {
	g := &group{Conns: conns, CPU: map[string]map[string]time.Duration{}}
	meters := map[string]*bench.CPUMeter{}
	for _, t := range targets {
		g.Targets = append(g.Targets, t.Name)
		meters[t.Name] = bench.NewCPUMeter(procs)
	}
	results, err := bench.WrkInterleaved(ctx, w, targets, conns, rounds, total, func(name string, before bool) {
		if before {
			if observe != nil {
				observe(name, true)
			}
			meters[name].Begin()
		} else {
			meters[name].End()
			if observe != nil {
				observe(name, false)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	g.Results = results
	for name, m := range meters {
		g.CPU[name] = m.Used
	}
	return g, nil
}

// profileCached starts a profiling build of a cached proxy (start), fills and warms its cache,
// and keeps a CPU profile of it under the same wrk load as the measurement.
func profileCached(ctx context.Context, r *rig, o options, w *bench.Wrk, clientQuery, what, file string,
	start func(env []string) (*orthanc.Proxy, error)) (*profileResult, error) {
	port, err := orthanc.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := start([]string{bench.PprofAddrEnv + "=" + addr})
	if err != nil {
		return nil, err
	}
	defer r.stopProxy(p)
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return nil, fmt.Errorf("create profile directory: %w", err)
	}
	t := bench.Target{Name: what, URL: p.DICOMwebURL() + "/studies?" + clientQuery, Header: r.asClinician(acceptJSON())}
	if n, err := countResults(ctx, bench.NewClient(1), t); err != nil || n != o.searchStudies {
		return nil, fmt.Errorf("check the profiled proxy: the search found %d studies, want %d (%v)", n, o.searchStudies, err)
	}
	if _, err := w.Run(ctx, t, o.cacheConns, o.warm); err != nil {
		return nil, err
	}
	pr := &profileResult{What: what, Conns: o.cacheConns, Path: filepath.Join(o.profileDir, file)}
	type loaded struct {
		res bench.Result
		err error
	}
	done := make(chan loaded, 1)
	go func() {
		res, err := w.Run(ctx, t, o.cacheConns, o.profileTime+time.Second)
		done <- loaded{res, err}
	}()
	perr := bench.CPUProfile(ctx, addr, o.profileTime, pr.Path)
	l := <-done
	if err := errors.Join(perr, l.err); err != nil {
		return nil, err
	}
	pr.Load = &l.res
	if pr.Flat, err = bench.PprofTop(ctx, r.profBin, pr.Path, 25, false); err != nil {
		return nil, err
	}
	if pr.Cum, err = bench.PprofTop(ctx, r.profBin, pr.Path, 40, true); err != nil {
		return nil, err
	}
	return pr, nil
}

// verdicts compares issue 4's figures with its targets.
func (c *cacheResult) verdicts() []verdict {
	g := c.G
	direct, static := g.Results[nameDirect], g.Results[nameCacheNginx]
	var out []verdict
	for _, row := range []struct{ name, what string }{{nameCacheRedis, "the cache in Redis"}, {nameCacheMemory, "the in-process cache"}} {
		res := g.Results[row.name]
		ok, why := clean(g, row.name, nameDirect)
		x := ratio(res.RPS(), direct.RPS())
		out = append(out, verdict{"7", fmt.Sprintf("Repeated study search, proxy with %s / Orthanc direct, requests/s at %d connections ≥ %.0f×", row.what, g.Conns, minCacheSpeedup),
			fmt.Sprintf("%.1f× (%.0f / %.0f requests/s; p50 %.2f ms / %.1f ms)%s", x, res.RPS(), direct.RPS(), ms(res.Percentile(50)), ms(direct.Percentile(50)), why),
			ok && x >= minCacheSpeedup})
	}
	for _, row := range []struct{ name, what string }{{nameCacheRedis, "the cache in Redis"}, {nameCacheMemory, "the in-process cache"}} {
		res := g.Results[row.name]
		ok, why := clean(g, row.name, nameCacheNginx)
		x := ratio(res.RPS(), static.RPS())
		out = append(out, verdict{"7", fmt.Sprintf("(aim) the same, proxy with %s / nginx serving its answer as a static file ≥ %.1f×", row.what, minCeilingShare),
			fmt.Sprintf("%.2f× (%.0f / %.0f requests/s; p50 %.2f ms / %.2f ms)%s", x, res.RPS(), static.RPS(), ms(res.Percentile(50)), ms(static.Percentile(50)), why),
			ok && x >= minCeilingShare})
	}
	return out
}

// cpuMicros formats the CPU microseconds a process tree used per answer, or "–".
func cpuMicros(g *group, target, proc string, answers int) string {
	used, ok := g.CPU[target][proc]
	if !ok || answers == 0 {
		return "–"
	}
	v := float64(used) / float64(time.Microsecond) / float64(answers)
	if v < 0.5 {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

// markdown is the report's section on point 7.
func (c *cacheResult) markdown(b *strings.Builder) {
	b.WriteString("\n### 7. Repeated search answered from the cache\n\n")
	fmt.Fprintf(b, "The search of 1–2 (`GET /dicom-web/studies?PatientID=<NHS number>`, `Accept: application/dicom+json`, %d studies in the answer), the same request over and over, "+
		"through proxies over Orthanc A with `cache.search.fresh: %s`: one with the cache in Redis %s (a single node on loopback, started by `test/redisserver`), one with the in-process cache. "+
		"One request fills each cache; every measured answer is then a fresh-cache hit. \"%s\" sends the same search to Orthanc A itself; "+
		"\"%s\" is %s answering every request with the Redis proxy's answer (%d bytes, `Content-Type: %s`) from a file (%s): the practical ceiling of any server sending those bytes on this machine. "+
		"Every row is loaded by %s, %d threads, %d connections, %s each in %d interleaved rounds after %s of warm-up; latency is wrk's, from sending the request to the answer's end, at microsecond resolution. "+
		"CPU is per answer, in microseconds.\n\n",
		c.Studies, shortDuration(c.Fresh), c.RedisVersion, nameDirect, nameCacheNginx, c.NginxVersion, c.AnswerBytes, c.ContentType, bench.NginxStaticSettings,
		c.WrkVersion, c.Threads, c.Conns, c.Time, c.Rounds, c.Warm)
	b.WriteString("| target | connections | answers | requests/s | p50 ms | p99 ms | errors | bytes read per answer | CPU µs/answer: proxy | Redis | Orthanc | nginx | wrk |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	g := c.G
	for _, n := range g.Targets {
		res := g.Results[n]
		proxy := "–"
		switch n {
		case nameCacheRedis:
			proxy = cpuMicros(g, n, procCacheRedis, res.Requests)
		case nameCacheMemory:
			proxy = cpuMicros(g, n, procCacheMemory, res.Requests)
		}
		fmt.Fprintf(b, "| %s | %d | %d | %.0f | %.2f | %.2f | %d | %d | %s | %s | %s | %s | %s |\n", n, g.Conns, res.Requests, res.RPS(),
			ms(res.Percentile(50)), ms(res.Percentile(99)), res.Errors, res.BytesPerRequest(), proxy,
			cpuMicros(g, n, procRedis, res.Requests), cpuMicros(g, n, procOrthancA, res.Requests),
			cpuMicros(g, n, procNginxStatic, res.Requests), cpuMicros(g, n, procWrk, res.Requests))
	}
	rd, mem, d, s := g.Results[nameCacheRedis], g.Results[nameCacheMemory], g.Results[nameDirect], g.Results[nameCacheNginx]
	fmt.Fprintf(b, "\nRequests/s: Redis cache / Orthanc direct %.1f×, in-process cache / Orthanc direct %.1f×; Redis cache / nginx %.2f×, in-process cache / nginx %.2f×; "+
		"Orthanc direct / nginx %.3f×. Median latency: Redis cache %.2f ms, in-process %.2f ms, Orthanc %.1f ms, nginx %.2f ms.\n",
		ratio(rd.RPS(), d.RPS()), ratio(mem.RPS(), d.RPS()), ratio(rd.RPS(), s.RPS()), ratio(mem.RPS(), s.RPS()), ratio(d.RPS(), s.RPS()),
		ms(rd.Percentile(50)), ms(mem.Percentile(50)), ms(d.Percentile(50)), ms(s.Percentile(50)))
	if len(c.RedisCommands) > 0 {
		total := 0.0
		for _, n := range c.RedisCommands {
			total += n
		}
		fmt.Fprintf(b, "\nWhile the Redis row was measured, Redis ran %.1f commands per answer (`INFO commandstats` around its slices): %s.\n", total, commandsText(c.RedisCommands))
	}
	b.WriteString("\nServed from the cache: each cached proxy's `nirproxy_cache_lookups_total{kind=\"search\"}` and the requests Orthanc A was sent " +
		"(counted by a pass-through in the load driver that the proxies use as their upstream; Orthanc counts no requests itself), " +
		"over the warm-up runs, checked before anything was measured, and over the measurement. wrk counts answers; a run that stops leaves up to one request per connection sent but unanswered, " +
		"so a hit may exceed the answers by that much.\n\n")
	b.WriteString("| proxy | load | wrk runs | answers | fresh hits | other lookups (miss, stale, error) | requests to Orthanc |\n|---|---|---|---|---|---|---|\n")
	for _, ch := range c.Checks {
		fmt.Fprintf(b, "| %s | %s | %d | %d | %.0f | %.0f | %d |\n", ch.Target, ch.Phase, ch.Runs, ch.Answered, ch.Hits, ch.Others, ch.Upstream)
	}
}

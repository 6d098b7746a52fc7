// Package chaos_test is nirproxy's chaos test: a stream of concurrent searches and retrieves
// runs through the real nirproxy binary in front of two real Orthanc servers while one of them
// is killed (SIGKILL) and restarted, and each in turn is frozen (SIGSTOP) and thawed (SIGCONT).
//
// It checks the degraded-mode contract of DESIGN.md end to end: no request waits past the
// proxy's deadline plus a small margin; every answer is complete or says what is missing; no
// truncated study is ever closed as complete; a frozen trust's circuit breaker opens and closes
// again once it is back; the proxy survives and never logs a patient identifier.
//
// Without Orthanc, dcmtk or pydicom's files the test skips loudly, or fails when
// NIRPROXY_REQUIRE_REAL_SERVERS=1 (see orthanc.Strict).
// CHAOS_PROXY_LOG=FILE keeps a copy of the proxy's log, which is otherwise removed
// (its tail is printed when the test fails).
package chaos_test

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/test/orthanc"
)

// The proxy's settings under test, short so that faults show within seconds, and long enough
// that a healthy Orthanc in front of a race-instrumented proxy on a loaded 2-core machine is
// not taken for a failing one (any trust named missing outside its fault fails the test).
const (
	// requestTimeout is the proxy's deadline for a request's fan-out (locating a study, its
	// inventory, searches).
	requestTimeout = 5 * time.Second
	// sourceTimeout is each source's time allowed until response headers arrive.
	sourceTimeout = 2 * time.Second
	// idleTimeout is each source's longest pause allowed while a body streams.
	idleTimeout = 2 * time.Second
	// A source's breaker opens, for breakerOpenFor, once at least breakerMinRequests calls
	// ended within breakerWindow and at least breakerFailureRatio of them failed, or after
	// breakerUnreachable calls in a row could not connect. The window is short so that a frozen
	// trust's successes from before the freeze leave it within seconds and its time-outs open
	// the breaker well within openWithin (with the production window of 60 s, the successes of
	// a minute under load would hold it closed longer).
	breakerWindow       = 5 * time.Second
	breakerMinRequests  = 3
	breakerFailureRatio = 0.5
	breakerUnreachable  = 3
	breakerOpenFor      = 2 * time.Second
	// sourceRetries is each source's retry budget (refused connections, 502/503/504/429).
	sourceRetries = 1

	// maxWait is the longest any request may take through the proxy, from sending it to the
	// last byte of the answer (or the break of an aborted stream):
	//
	//	requestTimeout (5 s: locating the study and asking every holder for its inventory, or a
	//	search's whole fan-out)
	//	+ sourceTimeout (2 s: the headers of the upstream fetch a retrieve streams from)
	//	+ idleTimeout (2 s: the longest stall tolerated in a stream before it is aborted)
	//	+ 4 s margin (scheduling on a loaded 2-core machine, writing the answer)
	//	= 13 s,
	//
	// far less than frozenFor (30 s), what a request that waited for the frozen trust would take.
	maxWait = requestTimeout + sourceTimeout + idleTimeout + 4*time.Second

	// brokenWithin bounds the time from a fault in the middle of a stream to the client seeing
	// the stream break: idleTimeout (a stalled upstream) plus 10 s for the client to drain what
	// the socket buffers already held (megabytes, read by a race-instrumented client on a
	// loaded machine); a stream left stalled would last frozenFor (30 s).
	brokenWithin = idleTimeout + 10*time.Second
	// frozenFor is how long ORB stays frozen (SIGSTOP) in the phase that freezes it
	// mid-stream: long enough that a request or a stream that waited for it would overrun
	// maxWait and brokenWithin by far.
	frozenFor = 30 * time.Second

	// workers is how many clients send requests at once.
	workers = 4
	// recoveryGrace is how long after a trust's recovery was confirmed an answer may still
	// name it as missing (a request that started just before, slowed by a loaded machine).
	recoveryGrace = 5 * time.Second
	// stableClosed is how long a breaker must stay closed to count as recovered: longer than
	// sourceTimeout, so calls that were hanging when the trust came back have ended.
	stableClosed = sourceTimeout + 500*time.Millisecond
	// recoverWithin bounds the wait for a breaker to close again once its trust is back:
	// openFor, a half-open probe, stableClosed and a generous margin.
	recoverWithin = breakerOpenFor + sourceTimeout + stableClosed + 30*time.Second
	// openWithin bounds the wait for a frozen trust's breaker to open; the trust stays frozen
	// longer (frozenFor), so that the breaker opens while it is.
	openWithin = 20 * time.Second
	// statusTimeout bounds one GET /status.
	statusTimeout = 10 * time.Second
)

// chaos is the test's world: the data set, the servers, and what was seen.
type chaos struct {
	t0       time.Time
	manifest *orthanc.Manifest
	// orthancs are the trusts' servers by source id.
	orthancs map[string]*orthanc.Server
	proxy    *orthanc.Proxy
	client   *http.Client
	// instanceByHash maps the SHA-256 of each stored instance file (as each holder keeps it) to
	// its SOP Instance UID.
	instanceByHash map[[32]byte]string
	faults         *faultLog
	breakers       *breakerTimeline
	// big is the large study at ORB that faults break mid-stream.
	big *bigStudy
}

func TestChaos(t *testing.T) {
	orthanc.Require(t)
	if testing.Short() && !orthanc.Strict() {
		t.Skip("-short: the chaos test needs real servers and about a minute")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	c := setUp(ctx, t)

	ops := operations(c.manifest)
	t.Run("baseline", func(t *testing.T) { c.checkAllComplete(t, ops) })
	if t.Failed() {
		t.Fatalf("the proxy does not answer completely with every trust healthy; chaos not run")
	}

	c.t0 = time.Now()
	pollCtx, stopPolling := context.WithCancel(ctx)
	pollDone := c.breakers.record(pollCtx, c)
	load := c.startLoad(ops)
	c.runPhases(ctx, t)
	t.Run("steady", func(t *testing.T) {
		// Every trust is back; the load runs on a while so answers after recovery are judged too.
		time.Sleep(2 * time.Second)
	})
	tally := load.stop()
	stopPolling()
	<-pollDone

	t.Logf("breaker timeline (seconds from the start of the load):\n%s", c.breakers.String(c.t0))
	t.Logf("faults (seconds from the start of the load):\n%s", c.faults.String(c.t0))
	t.Run("answers", func(t *testing.T) { c.checkTally(t, tally) })
	t.Run("recovered", func(t *testing.T) { c.checkAllComplete(t, ops) })
	t.Run("proxy", func(t *testing.T) { c.checkProxy(t) })
}

// runPhases is the controller: it kills, freezes and thaws the trusts one after another,
// waiting after each until the proxy's breaker shows the trust healthy again. A phase that
// cannot bring its trust back ends the chaos early; the answers seen so far are still judged.
func (c *chaos) runPhases(ctx context.Context, t *testing.T) {
	orb, ora := c.orthancs[orthanc.SourceB], c.orthancs[orthanc.SourceA]
	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"warm up", func(t *testing.T) { time.Sleep(2 * time.Second) }},
		{"SIGKILL ORB mid-stream then restart", func(t *testing.T) {
			c.faults.begin(orthanc.SourceB)
			// ORB dies while it sends the large study: Orthanc ends a study retrieve by closing
			// the connection, so the proxy sees a clean end of a body that lacks its closing
			// delimiter, and must abort its own answer.
			ms, err := c.retrieveBroken(ctx, orb.Kill)
			if err != nil {
				t.Errorf("break the large study's retrieve: %v", err)
			} else {
				c.checkBroken(t, ms, brokenWithin)
			}
			if err := orb.Kill(); err != nil {
				t.Fatalf("kill ORB: %v", err)
			}
			time.Sleep(2 * time.Second)
			if err := orb.Restart(ctx); err != nil {
				t.Fatalf("restart ORB: %v", err)
			}
			c.checkStillLoaded(ctx, t, orb)
			c.awaitRecovery(ctx, t, orthanc.SourceB)
		}},
		{"SIGSTOP ORA for 3 s", func(t *testing.T) {
			c.faults.begin(orthanc.SourceA)
			if err := ora.Pause(); err != nil {
				t.Fatalf("pause ORA: %v", err)
			}
			time.Sleep(3 * time.Second)
			if err := ora.Resume(); err != nil {
				t.Fatalf("resume ORA: %v", err)
			}
			c.awaitRecovery(ctx, t, orthanc.SourceA)
		}},
		{"SIGSTOP ORB mid-stream for 30 s, past its breaker opening", func(t *testing.T) {
			c.faults.begin(orthanc.SourceB)
			resumed := false
			defer func() {
				if !resumed {
					_ = orb.Resume()
				}
			}()
			// ORB freezes while it sends the large study: the proxy must abort its answer once
			// the stream has stalled for idleTimeout.
			pausedAt := time.Now()
			ms, err := c.retrieveBroken(ctx, orb.Pause)
			if err != nil {
				t.Errorf("break the large study's retrieve: %v", err)
			} else {
				pausedAt = ms.fault
				c.checkBroken(t, ms, brokenWithin)
			}
			if err := orb.Pause(); err != nil {
				t.Fatalf("pause ORB: %v", err)
			}
			if _, err := c.waitBreaker(ctx, orthanc.SourceB, "open", openWithin, 0); err != nil {
				t.Errorf("the breaker of the frozen ORB did not open: %v", err)
			} else {
				t.Logf("ORB's breaker seen open %.1f s after SIGSTOP", time.Since(pausedAt).Seconds())
			}
			// Frozen a while longer: at least frozenFor in all, and long enough after the
			// breaker opened that at least one half-open probe fails too.
			time.Sleep(max(time.Until(pausedAt.Add(frozenFor)), breakerOpenFor+sourceTimeout))
			resumed = true
			if err := orb.Resume(); err != nil {
				t.Fatalf("resume ORB: %v", err)
			}
			c.awaitRecovery(ctx, t, orthanc.SourceB)
		}},
	}
	for _, ph := range phases {
		ok := t.Run(ph.name, func(t *testing.T) {
			ph.run(t)
			if !c.proxy.Running() {
				t.Fatalf("nirproxy exited during %q; log:\n%s", ph.name, tail(c.proxy.LogPath(), 4096))
			}
		})
		if !ok && (!c.proxy.Running() || !c.allRunning()) {
			t.Errorf("chaos stopped early after %q", ph.name)
			return
		}
	}
}

// awaitRecovery waits until the proxy shows id's breaker closed, and closed for stableClosed,
// then marks id's fault as over.
func (c *chaos) awaitRecovery(ctx context.Context, t *testing.T, id string) {
	t.Helper()
	took, err := c.waitBreaker(ctx, id, "closed", recoverWithin, stableClosed)
	c.faults.end(id)
	if err != nil {
		t.Fatalf("the breaker of %s did not close again after it came back: %v", id, err)
	}
	t.Logf("%s's breaker closed (and stayed closed for %v) %.1f s after it came back", id, stableClosed, took.Seconds())
}

// allRunning reports whether every Orthanc is alive.
func (c *chaos) allRunning() bool {
	for _, s := range c.orthancs {
		if !s.Running() {
			return false
		}
	}
	return true
}

// checkStillLoaded fails t now if a restarted Orthanc lost its studies: the checks that follow
// would then blame the proxy for the server's loss.
func (c *chaos) checkStillLoaded(ctx context.Context, t *testing.T, s *orthanc.Server) {
	t.Helper()
	want := c.manifest.StudiesOf(orthanc.PatientAlpha, s.Name)
	q := url.Values{"PatientID": {orthanc.PatientAlpha}}
	status, _, body, err := s.Do(ctx, http.MethodGet, "/dicom-web/studies?"+q.Encode(), nil, nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("ask the restarted Orthanc %s for its studies: status %d, %v", s.Name, status, err)
	}
	for _, st := range want {
		if !strings.Contains(string(body), st.StudyInstanceUID) {
			t.Fatalf("the restarted Orthanc %s lost study %s", s.Name, st.Key)
		}
	}
}

// setUp builds the data set and the proxy, starts and loads both Orthancs and starts the proxy
// with short time-outs. Everything started is stopped when t ends.
func setUp(ctx context.Context, t *testing.T) *chaos {
	t.Helper()
	c := &chaos{
		orthancs:       map[string]*orthanc.Server{},
		instanceByHash: map[[32]byte]string{},
		faults:         &faultLog{},
		breakers:       &breakerTimeline{},
		client: &http.Client{Transport: &http.Transport{
			Proxy: nil, MaxIdleConnsPerHost: 2 * workers, DisableCompression: true,
		}},
	}
	t.Cleanup(c.client.CloseIdleConnections)

	var bin string
	var buildErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bin, buildErr = orthanc.BuildProxy(ctx, t.TempDir())
	}()
	m, err := orthanc.BuildDataSet(ctx, "")
	if err != nil {
		wg.Wait()
		t.Fatalf("build the data set: %v", err)
	}
	c.manifest = m
	servers, err := orthanc.StartMany(ctx, orthanc.Options{}, m.Sources...)
	if err != nil {
		wg.Wait()
		t.Fatalf("start the Orthancs: %v", err)
	}
	t.Cleanup(func() { stopAll(t, servers) })
	for _, s := range servers {
		c.orthancs[s.Name] = s
		if _, err := s.UploadFiles(ctx, m.FilesFor(s.Name)...); err != nil {
			wg.Wait()
			t.Fatalf("load Orthanc %s: %v", s.Name, err)
		}
	}
	loaded := time.Now()
	if c.big, err = uploadBigStudy(ctx, c.orthancs[orthanc.SourceB]); err != nil {
		wg.Wait()
		t.Fatal(err)
	}
	t.Logf("large study of %d MB made and stored in %v", c.big.bytes>>20, time.Since(loaded).Round(time.Millisecond))
	if err := c.hashInstances(ctx); err != nil {
		wg.Wait()
		t.Fatal(err)
	}
	wg.Wait()
	if buildErr != nil {
		t.Fatal(buildErr)
	}

	var sources []orthanc.ProxySource
	var detailed []map[string]any
	for i, id := range m.Sources {
		src := orthanc.ProxySource{ID: id, Name: "Chaos Test Trust " + id, URL: c.orthancs[id].DICOMwebURL(), Priority: i + 1}
		sources = append(sources, src)
		detailed = append(detailed, map[string]any{
			"id": src.ID, "name": src.Name, "url": src.URL, "priority": src.Priority, "insecure": true, // Orthanc on plain http
			"timeout": sourceTimeout.String(), "idleTimeout": idleTimeout.String(),
			"retries": sourceRetries, "maxConcurrent": 8,
			"breaker": map[string]any{
				"window": breakerWindow.String(), "minRequests": breakerMinRequests, "failureRatio": breakerFailureRatio,
				"consecutiveUnreachable": breakerUnreachable, "openFor": breakerOpenFor.String(),
			},
		})
	}
	proxy, err := orthanc.StartProxy(ctx, orthanc.ProxyOptions{
		Binary:  bin,
		Sources: sources,
		// The proxy refuses NIRPROXY_ variables that name no key of its configuration, and the
		// test tools read some (NIRPROXY_REQUIRE_REAL_SERVERS, NIRPROXY_TESTDATA_DIR); the
		// configuration here is complete, so none is passed on.
		Env: environWithout("NIRPROXY_"),
		// ProxySource has no fields for the protections, so the sources are given in full here,
		// replacing the generated list.
		Extra: map[string]any{
			"requestTimeout":  requestTimeout.String(),
			"partialRetrieve": "fail",
			"logging":         map[string]any{"level": "info", "format": "json"},
			"sources":         detailed,
		},
	})
	if err != nil {
		t.Fatalf("start nirproxy: %v", err)
	}
	c.proxy = proxy
	// The load is a clinician's of an onboarded trust, for treatment.
	c.client.Transport = proxy.Transport(c.client.Transport)
	t.Cleanup(func() {
		if keep := os.Getenv("CHAOS_PROXY_LOG"); keep != "" {
			if data, err := proxy.Log(); err == nil {
				_ = os.WriteFile(keep, data, 0o644)
			}
		}
		if t.Failed() {
			t.Logf("nirproxy log (last 6 KB):\n%s", tail(proxy.LogPath(), 6144))
		}
		if err := proxy.Stop(); err != nil {
			t.Errorf("stop nirproxy: %v", err)
		}
	})
	if _, err := c.waitBreaker(ctx, orthanc.SourceA, "closed", 30*time.Second, 0); err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	return c
}

// hashInstances records the hash of every instance file as each of its holders stores it, so
// that each part of a retrieve can be told apart by its bytes alone.
func (c *chaos) hashInstances(ctx context.Context) error {
	for _, st := range c.manifest.Studies {
		for _, in := range st.Instances() {
			for _, h := range in.Holders {
				file, err := c.orthancs[h].InstanceFile(ctx, in.SOPInstanceUID)
				if err != nil {
					return err
				}
				c.instanceByHash[sha256.Sum256(file)] = in.SOPInstanceUID
			}
		}
	}
	return nil
}

// stopAll stops the Orthancs in parallel (each takes seconds), reporting any that had died.
func stopAll(t *testing.T, servers []*orthanc.Server) {
	var wg sync.WaitGroup
	for _, s := range servers {
		if !s.Running() {
			t.Logf("Orthanc %s was not running at the end; log:\n%s", s.Name, tail(s.LogPath(), 2000))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Stop(); err != nil {
				t.Errorf("stop Orthanc %s: %v", s.Name, err)
			}
		}()
	}
	wg.Wait()
}

// checkProxy fails t if the proxy died or logged a patient identifier of the data set.
func (c *chaos) checkProxy(t *testing.T) {
	if !c.proxy.Running() {
		t.Fatalf("nirproxy exited; log:\n%s", tail(c.proxy.LogPath(), 4096))
	}
	log, err := c.proxy.Log()
	if err != nil {
		t.Fatal(err)
	}
	// net/http logs a handler's panic (other than a deliberate abort) as "http: panic serving".
	if strings.Contains(string(log), "panic") {
		t.Errorf("the nirproxy log reports a panic:\n%s", linesWith(string(log), "panic", 5))
	}
	for _, secret := range []string{orthanc.PatientAlpha, orthanc.PatientBravo, bigPatient, "TESTPATIENT", "CHAOS^LARGE"} {
		if strings.Contains(string(log), secret) {
			t.Errorf("the nirproxy log names a patient (%q); patient identifiers must never be logged", secret)
		}
	}
	t.Logf("nirproxy log: %d lines, %d breaker state changes, %d aborted streams",
		strings.Count(string(log), "\n"),
		strings.Count(string(log), "circuit breaker changed state"),
		strings.Count(string(log), "response aborted"))
}

// environWithout returns the test's environment without the variables whose names start
// with prefix.
func environWithout(prefix string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// linesWith returns up to n lines of log that contain s.
func linesWith(log, s string, n int) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, s) && len(out) < n {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// tail returns the last n bytes of a file, for failure reports.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

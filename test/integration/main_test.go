// Package integration_test drives the nirproxy binary, black-box, in front of two real Orthanc
// servers (Debian's orthanc with the DICOMweb and GDCM plugins) loaded with pydicom's sample
// files, and checks what the proxy answers against what each Orthanc answers directly.
//
// TestMain builds the data set and the proxy, starts both Orthancs and one proxy, and stops
// them when the tests end. Without Orthanc, dcmtk or pydicom's files the tests skip loudly,
// or fail when NIRPROXY_REQUIRE_REAL_SERVERS=1 (see orthanc.Strict).
package integration_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/test/orthanc"
)

// fixture holds the servers TestMain starts. It is written only by TestMain, before and after
// m.Run, so tests may read it without locks.
type fixture struct {
	manifest *orthanc.Manifest
	// orthancs are the trusts' servers by source id (orthanc.SourceA, orthanc.SourceB).
	orthancs map[string]*orthanc.Server
	proxy    *orthanc.Proxy
	// skip is why the real-server tests cannot run here (tools missing, not in CI).
	skip error
	// setupErr is why the servers could not be started; every test fails with it.
	setupErr error
	// proxyErr is why the proxy could not be built or started; proxy tests fail with it.
	proxyErr error
	client   *http.Client
	// expected caches Orthanc's own bytes for instances, for comparison with the proxy's.
	expected expectedBytes
}

// fx is the one fixture of this package's tests.
var fx fixture

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

// runTests sets up the fixture, runs the tests and tears the fixture down.
func runTests(m *testing.M) int {
	fx.client = &http.Client{Timeout: 60 * time.Second}
	if err := orthanc.MissingError(); err != nil {
		if orthanc.Strict() {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n(%s: missing dependencies are failures)\n", err, orthanc.StrictReason())
			return 1
		}
		fmt.Fprintf(os.Stderr, "\n*** integration tests SKIPPED: %v ***\n\n", err)
		fx.skip = err
		return m.Run()
	}
	if testing.Short() && !orthanc.Strict() {
		fx.skip = errors.New("-short: real-server tests not run")
		return m.Run()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	binDir, err := os.MkdirTemp("", "nirproxy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(binDir)

	// The proxy builds while the data set is made and the Orthancs start.
	var wg sync.WaitGroup
	var bin string
	wg.Add(1)
	go func() {
		defer wg.Done()
		bin, fx.proxyErr = orthanc.BuildProxy(ctx, binDir)
	}()
	fx.setupErr = startOrthancs(ctx)
	wg.Wait()
	if fx.setupErr == nil && fx.proxyErr == nil {
		fx.proxy, fx.proxyErr = orthanc.StartProxy(ctx, orthanc.ProxyOptions{
			Binary: bin,
			Sources: []orthanc.ProxySource{
				{ID: orthanc.SourceA, Name: "Orthanc A Test Trust", URL: fx.orthancs[orthanc.SourceA].DICOMwebURL(), Priority: 1},
				{ID: orthanc.SourceB, Name: "Orthanc B Test Trust", URL: fx.orthancs[orthanc.SourceB].DICOMwebURL(), Priority: 2},
			},
		})
	}
	if fx.proxy != nil {
		// Every request of these tests is a clinician's of an onboarded trust, for treatment.
		fx.client.Transport = fx.proxy.Transport(nil)
	}
	if fx.setupErr != nil {
		fmt.Fprintf(os.Stderr, "integration setup failed: %v\n", fx.setupErr)
	}
	if fx.proxyErr != nil {
		fmt.Fprintf(os.Stderr, "nirproxy could not be started; proxy tests will fail: %v\n", fx.proxyErr)
	}

	code := m.Run()

	if fx.proxy != nil {
		if code == 0 {
			code = checkProxyLog()
		} else {
			fmt.Fprintf(os.Stderr, "nirproxy log (last 4 KB):\n%s\n", tail(fx.proxy.LogPath(), 4096))
		}
		if err := fx.proxy.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop nirproxy:", err)
		}
	}
	if code == 0 && fx.orthancs != nil {
		code = checkOrthancsAlive()
	}
	stopOrthancs()
	return code
}

// checkOrthancsAlive fails the run if an Orthanc died during the tests: a crash makes later
// answers partial, so the tests after it prove less than they seem to.
func checkOrthancsAlive() int {
	code := 0
	for id, s := range fx.orthancs {
		if !s.Running() {
			fmt.Fprintf(os.Stderr, "--- FAIL: TestMain: Orthanc %s died during the tests\n", id)
			code = 1
		}
	}
	return code
}

// startOrthancs builds the data set, starts one Orthanc per source and loads it.
func startOrthancs(ctx context.Context) error {
	m, err := orthanc.BuildDataSet(ctx, "")
	if err != nil {
		return err
	}
	fx.manifest = m
	fx.orthancs, err = orthanc.StartLoaded(ctx, m, orthanc.Options{})
	return err
}

// stopOrthancs stops every Orthanc in parallel (each takes seconds to shut down), noting any
// that crashed during the tests.
func stopOrthancs() {
	var wg sync.WaitGroup
	for id, s := range fx.orthancs {
		if !s.Running() {
			fmt.Fprintf(os.Stderr, "Orthanc %s was not running at the end of the tests; log:\n%s\n",
				id, tail(s.LogPath(), 3000))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Stop()
		}()
	}
	wg.Wait()
}

// checkProxyLog fails the run if the proxy logged a patient identifier of the data set.
func checkProxyLog() int {
	log, err := fx.proxy.Log()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: read nirproxy log:", err)
		return 1
	}
	for _, secret := range []string{orthanc.PatientAlpha, orthanc.PatientBravo, "TESTPATIENT"} {
		if bytes.Contains(log, []byte(secret)) {
			fmt.Fprintf(os.Stderr, "--- FAIL: TestMain: the nirproxy log names a patient (%q); patient identifiers must never be logged\n", secret)
			return 1
		}
	}
	return 0
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

// need fails or skips t unless the Orthancs are running, and returns the manifest.
func need(t *testing.T) *orthanc.Manifest {
	t.Helper()
	switch {
	case fx.skip != nil:
		orthanc.SkipOrFail(t, fx.skip)
	case fx.setupErr != nil:
		t.Fatalf("integration setup failed: %v", fx.setupErr)
	}
	return fx.manifest
}

// needProxy is need, and also fails t unless the proxy is running.
func needProxy(t *testing.T) *orthanc.Manifest {
	t.Helper()
	m := need(t)
	if fx.proxyErr != nil {
		t.Fatalf("nirproxy is not running: %v", fx.proxyErr)
	}
	if !fx.proxy.Running() {
		t.Fatalf("nirproxy has exited; log:\n%s", tail(fx.proxy.LogPath(), 4096))
	}
	return m
}

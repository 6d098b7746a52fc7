package cacheint

import (
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
	"github.com/nirproxy/nirproxy/test/redisserver"
)

// fixture holds what TestMain sets up for every test. It is written only by TestMain, before
// and after m.Run, so tests may read it without locks.
type fixture struct {
	manifest *orthanc.Manifest
	// orthancs are the trusts' servers by source id (orthanc.SourceA, orthanc.SourceB).
	orthancs map[string]*orthanc.Server
	// binary is the built nirproxy.
	binary string
	// skip is why the real-server tests cannot run here (Orthanc's tools missing, -short).
	skip error
	// redisSkip is why the Redis tests cannot run here (redis-server missing).
	redisSkip error
	// setupErr is why the Orthancs or the binary could not be made; every test fails with it.
	setupErr error
}

// fx is the one fixture of this package's tests.
var fx fixture

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

// runTests sets up the fixture, runs the tests and tears the fixture down.
func runTests(m *testing.M) int {
	missing := errors.Join(orthanc.MissingError(), redisserver.Missing())
	if missing != nil && orthanc.Strict() {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n(%s: missing dependencies are failures)\n", missing, orthanc.StrictReason())
		return 1
	}
	if err := orthanc.MissingError(); err != nil {
		fmt.Fprintf(os.Stderr, "\n*** cache integration tests SKIPPED: %v ***\n\n", err)
		fx.skip = err
		return m.Run()
	}
	if err := redisserver.Missing(); err != nil {
		fmt.Fprintf(os.Stderr, "\n*** Redis cache integration tests SKIPPED: %v ***\n\n", err)
		fx.redisSkip = err
	}
	if testing.Short() && !orthanc.Strict() {
		fx.skip = errors.New("-short: real-server tests not run")
		return m.Run()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	binDir, err := os.MkdirTemp("", "nirproxy-cacheint-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(binDir)

	// The proxy builds while the data set is made and the Orthancs start.
	var wg sync.WaitGroup
	var buildErr error
	wg.Go(func() { fx.binary, buildErr = orthanc.BuildProxy(ctx, binDir) })
	orthancErr := startOrthancs(ctx)
	wg.Wait()
	fx.setupErr = errors.Join(orthancErr, buildErr)
	if fx.setupErr != nil {
		fmt.Fprintf(os.Stderr, "cache integration setup failed; every test will fail: %v\n", fx.setupErr)
	}

	code := m.Run()

	if code == 0 && fx.setupErr == nil {
		for id, s := range fx.orthancs {
			if !s.Running() {
				fmt.Fprintf(os.Stderr, "--- FAIL: TestMain: Orthanc %s was not running at the end of the tests; log:\n%s\n",
					id, tail(s.LogPath(), 3000))
				code = 1
			}
		}
	}
	stopOrthancs()
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

// stopOrthancs stops every Orthanc in parallel (each takes seconds to shut down).
func stopOrthancs() { orthanc.StopAll(fx.orthancs) }

// need fails or skips t unless the Orthancs and the binary are ready, and returns the manifest.
func need(t *testing.T) *orthanc.Manifest {
	t.Helper()
	switch {
	case fx.skip != nil:
		orthanc.SkipOrFail(t, fx.skip)
	case fx.setupErr != nil:
		t.Fatalf("cache integration setup failed: %v", fx.setupErr)
	}
	return fx.manifest
}

// needRedis is need, and also skips (or, when strict, fails) t without redis-server.
func needRedis(t *testing.T) *orthanc.Manifest {
	t.Helper()
	m := need(t)
	if fx.redisSkip != nil {
		orthanc.SkipOrFail(t, fx.redisSkip)
	}
	redisserver.Require(t)
	return m
}

// restartOrthanc brings back an Orthanc a test killed, with its data on its port, and checks
// that it answers with its studies, so the tests after this one meet the data set whole.
func restartOrthanc(t *testing.T, id string) {
	t.Helper()
	s := fx.orthancs[id]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("restart Orthanc %s: %v", id, err)
	}
	want := len(fx.manifest.StudiesOf(orthanc.PatientAlpha, id))
	status, _, body, err := s.Do(ctx, http.MethodGet, "/dicom-web/studies?PatientID="+orthanc.PatientAlpha, nil, nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("restarted Orthanc %s: search: status %d, %v", id, status, err)
	}
	if got := len(decodeStudyUIDs(t, "restarted Orthanc "+id, body)); got != want {
		t.Fatalf("restarted Orthanc %s holds %d of the patient's studies, want %d", id, got, want)
	}
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

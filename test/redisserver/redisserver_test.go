package redisserver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nirproxy/nirproxy/test/redisserver"
)

// testContext returns a context that ends after d or when t ends.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// assertPortFree fails t unless nothing listens on addr any more: the server's process is gone.
func assertPortFree(t *testing.T, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s after stop: %v; a redis-server is left behind", addr, err)
	}
	l.Close()
}

// assertProcessGone fails t unless pid no longer exists.
func assertProcessGone(t *testing.T, pid int) {
	t.Helper()
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Fatalf("process %d still exists after stop", pid)
	}
}

func TestServerLifecycle(t *testing.T) {
	ctx := testContext(t, time.Minute)
	s := redisserver.StartT(t, redisserver.Options{})
	addr, pid := s.Addr(), s.PID()
	if !strings.HasPrefix(addr, "127.0.0.1:") || s.Port == 0 {
		t.Fatalf("Addr = %q, Port = %d; want a port on 127.0.0.1", addr, s.Port)
	}
	c := s.Client()

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{name: "answers PING and keeps a key", run: func(t *testing.T) {
			if got, err := c.Ping(ctx).Result(); err != nil || got != "PONG" {
				t.Fatalf("PING = %q, %v; want PONG", got, err)
			}
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
				t.Fatalf("GET k = %q, %v; want v", got, err)
			}
		}},
		{name: "runs without persistence", run: func(t *testing.T) {
			for param, want := range map[string]string{"save": "", "appendonly": "no", "bind": "127.0.0.1", "daemonize": "no"} {
				got, err := c.ConfigGet(ctx, param).Result()
				if err != nil {
					t.Fatal(err)
				}
				if got[param] != want {
					t.Errorf("CONFIG GET %s = %q; want %q", param, got[param], want)
				}
			}
		}},
		{name: "logs to its own file", run: func(t *testing.T) {
			b, err := os.ReadFile(s.LogPath())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "Ready to accept connections") {
				t.Fatalf("log %s lacks the ready line:\n%s", s.LogPath(), b)
			}
		}},
		{name: "pause stops answers, resume brings them back", run: func(t *testing.T) {
			if err := s.Pause(); err != nil {
				t.Fatal(err)
			}
			pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			err := c.Ping(pctx).Err()
			cancel()
			if err == nil {
				t.Fatal("PING answered while paused")
			}
			if !s.Running() {
				t.Fatal("Running = false while paused; want true")
			}
			if err := s.Resume(); err != nil {
				t.Fatal(err)
			}
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatalf("PING after resume: %v", err)
			}
		}},
		{name: "kill ends the process", run: func(t *testing.T) {
			if err := s.Kill(); err != nil {
				t.Fatal(err)
			}
			if s.Running() {
				t.Fatal("Running = true after Kill")
			}
			assertProcessGone(t, pid)
			kctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := c.Ping(kctx).Err(); err == nil {
				t.Fatal("PING answered after Kill")
			}
		}},
		{name: "restart comes back empty on the same port", run: func(t *testing.T) {
			if err := s.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			if s.Addr() != addr || !s.Running() {
				t.Fatalf("after Restart: Addr = %s, Running = %v; want %s, true", s.Addr(), s.Running(), addr)
			}
			if s.PID() == pid {
				t.Fatalf("PID after restart = %d, the killed one", pid)
			}
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatalf("PING after restart through the same client: %v", err)
			}
			if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
				t.Fatalf("GET k after restart = %v; want redis.Nil (no data kept)", err)
			}
		}},
		{name: "stop leaves nothing behind, twice", run: func(t *testing.T) {
			pid, dir := s.PID(), s.Dir()
			if err := s.Stop(); err != nil {
				t.Fatal(err)
			}
			if err := s.Stop(); err != nil {
				t.Fatalf("second Stop: %v", err)
			}
			if s.Running() {
				t.Fatal("Running = true after Stop")
			}
			assertProcessGone(t, pid)
			assertPortFree(t, addr)
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("directory %s still there after Stop: %v", dir, err)
			}
			if err := s.Restart(ctx); err == nil {
				t.Fatal("Restart after Stop succeeded; want an error")
			}
		}},
	}
	for _, st := range steps {
		// Each step depends on the ones before it.
		if !t.Run(st.name, st.run) {
			break
		}
	}
}

func TestServerOptions(t *testing.T) {
	ctx := testContext(t, time.Minute)
	tests := []struct {
		name  string
		opts  redisserver.Options
		check func(t *testing.T, s *redisserver.Server)
	}{
		{
			name: "password is required",
			opts: redisserver.Options{Password: "s3cret-for-tests"},
			check: func(t *testing.T, s *redisserver.Server) {
				anon := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second})
				defer anon.Close()
				if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
					t.Fatalf("PING without password = %v; want NOAUTH", err)
				}
				if err := s.Client().Ping(ctx).Err(); err != nil {
					t.Fatalf("PING with Client: %v", err)
				}
			},
		},
		{
			name: "extra arguments apply",
			opts: redisserver.Options{Args: []string{"--maxmemory", "10mb", "--maxmemory-policy", "allkeys-lru"}},
			check: func(t *testing.T, s *redisserver.Server) {
				got, err := s.Client().ConfigGet(ctx, "maxmemory*").Result()
				if err != nil {
					t.Fatal(err)
				}
				if got["maxmemory"] != "10485760" || got["maxmemory-policy"] != "allkeys-lru" {
					t.Fatalf("CONFIG GET maxmemory* = %v; want 10485760 and allkeys-lru", got)
				}
			},
		},
		{
			name: "given directory is kept",
			opts: redisserver.Options{Dir: t.TempDir() + "/mine"},
			check: func(t *testing.T, s *redisserver.Server) {
				if err := s.Stop(); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(s.LogPath()); err != nil {
					t.Fatalf("log in the given directory is gone after Stop: %v", err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, redisserver.StartT(t, tc.opts))
		})
	}
}

func TestStartFailsCleanly(t *testing.T) {
	redisserver.Require(t)
	ctx := testContext(t, 30*time.Second)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name    string
		opts    redisserver.Options
		wantErr string
	}{
		{name: "unknown directive", opts: redisserver.Options{Args: []string{"--no-such-directive", "x"}}, wantErr: "no-such-directive"},
		{name: "port taken", opts: redisserver.Options{Port: port}, wantErr: "exited before it was ready"},
		{name: "missing binary", opts: redisserver.Options{Binary: "/nonexistent/redis-server"}, wantErr: "/nonexistent/redis-server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisserver.Start(ctx, tc.opts)
			if err == nil {
				s.Stop()
				t.Fatal("Start succeeded; want an error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Start error = %v; want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

// requireRecorder is a testing.TB whose Fatalf and Skipf record what they were told. The real
// ones end the test, so only the first call counts; later ones are ignored.
type requireRecorder struct {
	testing.TB
	fatal, skip string
}

func (r *requireRecorder) Fatalf(format string, args ...any) {
	if r.fatal == "" && r.skip == "" {
		r.fatal = fmt.Sprintf(format, args...)
	}
}

func (r *requireRecorder) Skipf(format string, args ...any) {
	if r.fatal == "" && r.skip == "" {
		r.skip = fmt.Sprintf(format, args...)
	}
}

func TestMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := redisserver.Missing()
	if !errors.Is(err, redisserver.ErrMissingTools) {
		t.Fatalf("Missing with an empty PATH = %v; want ErrMissingTools", err)
	}
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if !strings.Contains(err.Error(), bin) {
			t.Errorf("Missing = %v; want it to name %s", err, bin)
		}
	}

	// The environment of each case is set in full (t.Setenv of "" counts as unset for
	// orthanc.Strict), so a run under .ci/run, which sets the switch, tests the same cases.
	tests := []struct {
		name, ci, require string
		wantFatal         bool
		// wantReason is the setting the failure message must name.
		wantReason string
	}{
		{name: "skips on a developer machine"},
		{name: "skips when the switch is not 1", require: "yes"},
		{name: "fails when real servers are required", require: "1", wantFatal: true, wantReason: "NIRPROXY_REQUIRE_REAL_SERVERS=1"},
		{name: "fails under CI=true, the alias", ci: "true", wantFatal: true, wantReason: "CI=true"},
		{name: "fails under CI=1 with the switch", ci: "1", require: "1", wantFatal: true, wantReason: "NIRPROXY_REQUIRE_REAL_SERVERS=1"},
		{name: "fails under CI=woodpecker with the switch", ci: "woodpecker", require: "1", wantFatal: true, wantReason: "NIRPROXY_REQUIRE_REAL_SERVERS=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			t.Setenv("NIRPROXY_REQUIRE_REAL_SERVERS", tc.require)
			r := &requireRecorder{TB: t}
			redisserver.Require(r)
			if tc.wantFatal && (r.fatal == "" || r.skip != "") {
				t.Fatalf("Require: fatal %q, skip %q; want a failure", r.fatal, r.skip)
			}
			if !tc.wantFatal && (r.skip == "" || r.fatal != "") {
				t.Fatalf("Require: fatal %q, skip %q; want a skip", r.fatal, r.skip)
			}
			if msg := r.fatal + r.skip; !strings.Contains(msg, "redis-server") {
				t.Errorf("Require said %q; want it to name redis-server", msg)
			}
			if tc.wantFatal && !strings.Contains(r.fatal, tc.wantReason) {
				t.Errorf("Require failed with %q; want it to name %s", r.fatal, tc.wantReason)
			}
		})
	}
}

// TestRequireStrictUnderCI1 checks the case the old rule got wrong: a CI service that sets
// CI=1 (not "true") and runs .ci/run, which sets NIRPROXY_REQUIRE_REAL_SERVERS=1, must fail a
// test whose redis-server is missing instead of skipping it.
func TestRequireStrictUnderCI1(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CI", "1")
	t.Setenv("NIRPROXY_REQUIRE_REAL_SERVERS", "1")
	r := &requireRecorder{TB: t}
	redisserver.Require(r)
	if r.fatal == "" || r.skip != "" {
		t.Fatalf("Require under CI=1 and NIRPROXY_REQUIRE_REAL_SERVERS=1: fatal %q, skip %q; want a failure", r.fatal, r.skip)
	}
}

func TestClusterWithPassword(t *testing.T) {
	ctx := testContext(t, time.Minute)
	const password = "cluster-s3cret-for-tests"
	c := redisserver.StartClusterT(t, 3, redisserver.Options{Password: password})
	for _, n := range c.Nodes() {
		anon := redis.NewClient(&redis.Options{Addr: n.Addr(), DialTimeout: time.Second})
		err := anon.Ping(ctx).Err()
		anon.Close()
		if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
			t.Fatalf("PING %s without password = %v; want NOAUTH", n.Addr(), err)
		}
	}
	cc := c.ClusterClient()
	for i := range 30 {
		k := fmt.Sprintf("k%d", i)
		if err := cc.Set(ctx, k, "v", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	all, err := redisserver.ScanAll(ctx, cc)
	if err != nil || len(all) != 30 {
		t.Fatalf("ScanAll = %d keys, %v; want 30", len(all), err)
	}
}

func TestCluster(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	c := redisserver.StartClusterT(t, 3, redisserver.Options{})
	addrs := c.Addrs()
	if len(addrs) != 3 || len(c.Nodes()) != 3 {
		t.Fatalf("Addrs = %v, %d nodes; want 3", addrs, len(c.Nodes()))
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") || seen[a] {
			t.Fatalf("Addrs = %v; want three distinct loopback addresses", addrs)
		}
		seen[a] = true
	}
	for _, n := range c.Nodes() {
		info, err := n.Client().ClusterInfo(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"cluster_state:ok", "cluster_known_nodes:3", "cluster_size:3", "cluster_slots_assigned:16384"} {
			if !strings.Contains(info, want) {
				t.Errorf("CLUSTER INFO of %s lacks %s:\n%s", n.Addr(), want, info)
			}
		}
	}

	const keys = 300
	cc := c.ClusterClient()
	for i := range keys {
		if err := cc.Set(ctx, fmt.Sprintf("spread:%d", i), fmt.Sprintf("value %d", i), time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, n := range c.Nodes() {
		held, err := redisserver.ScanAll(ctx, n.Client())
		if err != nil {
			t.Fatal(err)
		}
		if len(held) == 0 {
			t.Errorf("node %s holds no key of %d", n.Addr(), keys)
		}
		t.Logf("node %s holds %d keys", n.Addr(), len(held))
		total += len(held)
	}
	if total != keys {
		t.Errorf("nodes hold %d keys in all; want %d", total, keys)
	}
	all, err := redisserver.ScanAll(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != keys {
		t.Fatalf("ScanAll over the cluster found %d keys; want %d", len(all), keys)
	}
	for i := range keys {
		k := fmt.Sprintf("spread:%d", i)
		if got, want := string(all[k]), fmt.Sprintf("value %d", i); got != want {
			t.Fatalf("ScanAll[%s] = %q; want %q", k, got, want)
		}
	}

	t.Run("kill and restart every node", func(t *testing.T) {
		if err := c.Kill(); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Nodes() {
			if n.Running() {
				t.Fatalf("node %s runs after Kill", n.Addr())
			}
		}
		if err := c.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.Addrs(); fmt.Sprint(got) != fmt.Sprint(addrs) {
			t.Fatalf("Addrs after restart = %v; want %v", got, addrs)
		}
		left, err := redisserver.ScanAll(ctx, cc)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Fatalf("restarted cluster holds %d keys; want none", len(left))
		}
	})

	t.Run("stop leaves nothing behind", func(t *testing.T) {
		var pids []int
		for _, n := range c.Nodes() {
			pids = append(pids, n.PID())
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := c.Stop(); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		for i, a := range addrs {
			assertProcessGone(t, pids[i])
			assertPortFree(t, a)
		}
	})
}

func TestScanAllReadsEveryType(t *testing.T) {
	ctx := testContext(t, time.Minute)
	c := redisserver.StartT(t, redisserver.Options{}).Client()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Set(ctx, "str", "plain\x00bytes", 0).Err())
	must(c.SAdd(ctx, "set", "b", "a").Err())
	must(c.RPush(ctx, "list", "x", "y").Err())
	must(c.HSet(ctx, "hash", "f", "v").Err())
	must(c.ZAdd(ctx, "zset", redis.Z{Score: 1, Member: "m"}).Err())
	got, err := redisserver.ScanAll(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"str":  "plain\x00bytes",
		"set":  "a\nb",
		"list": "x\ny",
		"hash": "f=v",
		"zset": "(a zset, value not read by ScanAll)",
	}
	if len(got) != len(want) {
		t.Fatalf("ScanAll found %d keys; want %d: %q", len(got), len(want), got)
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("ScanAll[%s] = %q; want %q", k, got[k], v)
		}
	}
}

// Package rediscache tests nirproxy's cache.Redis against real redis-server (Debian's 7.0), one
// node and a 3-node Redis Cluster, started by test/redisserver: what cache/redis_test.go checks
// against miniredis, plus what only a real server shows (real expiry, PTTL, keys spread over
// cluster slots, a killed and restarted process, a frozen one).
package rediscache

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/test/redisserver"
)

// The identifiers a cached answer may hold, which Redis must never show in clear.
const (
	patientName = "ALPHA^PATIENT"
	nhsNumber   = "9434765919"
	studyUID    = "1.2.826.0.1.3680043.8.498.1"
)

// keyPrefix is the Keyer prefix the tests use.
const keyPrefix = "np:v1:"

// sealOverhead is what sealing adds to a value: key id, nonce and GCM tag.
const sealOverhead = 1 + 12 + 16

// topology is Redis as a test sees it: the addresses to give cache.Redis, a client that reads
// Redis directly (around the cache), and how to take it away and bring it back.
type topology struct {
	name  string
	addrs []string
	raw   redis.UniversalClient
	nodes []*redisserver.Server
	// kill kills every node; restart restarts them on their ports and waits until they serve.
	kill    func() error
	restart func(ctx context.Context) error
	// backgroundTraffic is true when the client dials Redis by itself (a cluster client reloads
	// its slot map in the background after failures), so connection counts prove nothing.
	backgroundTraffic bool
}

// startSingle starts one redis-server for t.
func startSingle(t *testing.T) topology {
	t.Helper()
	s := redisserver.StartT(t, redisserver.Options{})
	return topology{
		name: "single node", addrs: []string{s.Addr()}, raw: s.Client(), nodes: []*redisserver.Server{s},
		kill: s.Kill, restart: s.Restart,
	}
}

// startCluster starts a 3-node Redis Cluster for t.
func startCluster(t *testing.T) topology {
	t.Helper()
	c := redisserver.StartClusterT(t, 3, redisserver.Options{})
	return topology{
		name: "3-node cluster", addrs: c.Addrs(), raw: c.ClusterClient(), nodes: c.Nodes(),
		kill: c.Kill, restart: c.Restart, backgroundTraffic: true,
	}
}

// topologies returns the ways of running Redis that every test covers.
func topologies() []struct {
	name  string
	start func(t *testing.T) topology
} {
	return []struct {
		name  string
		start func(t *testing.T) topology
	}{
		{name: "single", start: startSingle},
		{name: "cluster", start: startCluster},
	}
}

// flush empties every node of topo.
func (topo topology) flush(t *testing.T, ctx context.Context) {
	t.Helper()
	for _, n := range topo.nodes {
		if err := n.Client().FlushAll(ctx).Err(); err != nil {
			t.Fatalf("flush %s: %v", n.Addr(), err)
		}
	}
}

// recordHandler is a slog.Handler keeping the messages it receives.
type recordHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// count returns how many messages contain substr.
func (h *recordHandler) count(substr string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// fixture is one cache.Redis over a topology, with the Keyer that names its entries.
type fixture struct {
	topo  topology
	opts  cache.RedisOptions
	r     *cache.Redis
	keyer *cache.Keyer
	log   *recordHandler
}

// newFixture builds a cache.Redis over topo, closed when t ends; tweak may change the options.
func newFixture(t *testing.T, topo topology, tweak func(*cache.RedisOptions)) *fixture {
	t.Helper()
	sealer, err := cache.NewSealer([][]byte{bytes.Repeat([]byte{7}, cache.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	keyer, err := cache.NewKeyer(bytes.Repeat([]byte{9}, cache.MinKeyerSecret), keyPrefix)
	if err != nil {
		t.Fatal(err)
	}
	opts := config.DefaultCache().RedisOptions()
	opts.Addrs, opts.MaxRetention, opts.BreakerFailures, opts.BreakerCooldown = topo.addrs, time.Hour, 3, 300*time.Millisecond
	if tweak != nil {
		tweak(&opts)
	}
	h := &recordHandler{}
	r, err := cache.NewRedis(opts, sealer, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &fixture{topo: topo, opts: opts, r: r, keyer: keyer, log: h}
}

// testContext returns a context that ends after d or when t ends.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestCacheOnRealRedis runs the cache's contract against a real single node and a real 3-node
// cluster: one server set per topology, emptied before each case.
func TestCacheOnRealRedis(t *testing.T) {
	tests := []struct {
		name  string
		tweak func(*cache.RedisOptions)
		run   func(t *testing.T, ctx context.Context, f *fixture)
	}{
		{name: "miss is nil, false, nil", run: func(t *testing.T, ctx context.Context, f *fixture) {
			v, ok, err := f.r.Get(ctx, f.keyer.Key("absent"))
			if v != nil || ok || err != nil {
				t.Fatalf("Get of an absent key = %q, %v, %v; want nil, false, nil", v, ok, err)
			}
		}},
		{name: "set, get and delete round trip", run: func(t *testing.T, ctx context.Context, f *fixture) {
			k := f.keyer.Key("qido", "studies", "PatientID="+nhsNumber)
			value := append([]byte("binary\x00answer\xff"), bytes.Repeat([]byte{0xab}, 64<<10)...)
			if err := f.r.Set(ctx, k, value, time.Minute); err != nil {
				t.Fatal(err)
			}
			if n, err := f.topo.raw.Exists(ctx, k).Result(); err != nil || n != 1 {
				t.Fatalf("EXISTS after Set = %d, %v; want 1", n, err)
			}
			v, ok, err := f.r.Get(ctx, k)
			if !ok || err != nil || !bytes.Equal(v, value) {
				t.Fatalf("Get = %d bytes, %v, %v; want the %d bytes set", len(v), ok, err, len(value))
			}
			if err := f.r.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
			if n, err := f.topo.raw.Exists(ctx, k).Result(); err != nil || n != 0 {
				t.Fatalf("EXISTS after Delete = %d, %v; want 0", n, err)
			}
			if v, ok, err := f.r.Get(ctx, k); v != nil || ok || err != nil {
				t.Fatalf("Get after Delete = %q, %v, %v; want nil, false, nil", v, ok, err)
			}
			if err := f.r.Delete(ctx, k); err != nil {
				t.Fatalf("Delete of an absent key: %v", err)
			}
		}},
		{name: "entry expires after its TTL", run: func(t *testing.T, ctx context.Context, f *fixture) {
			k := f.keyer.Key("expiring")
			start := time.Now()
			if err := f.r.Set(ctx, k, []byte("short-lived"), time.Second); err != nil {
				t.Fatal(err)
			}
			if v, ok, err := f.r.Get(ctx, k); !ok || err != nil || string(v) != "short-lived" {
				t.Fatalf("Get at once = %q, %v, %v; want a hit", v, ok, err)
			}
			deadline := start.Add(2500 * time.Millisecond)
			for {
				v, ok, err := f.r.Get(ctx, k)
				if err != nil {
					t.Fatalf("Get while waiting for expiry: %v", err)
				}
				if !ok {
					if v != nil {
						t.Fatalf("expired Get returned %q with false", v)
					}
					// Redis starts the TTL when it receives SET, after start; allow for clock skew.
					if gone := time.Since(start); gone < 900*time.Millisecond {
						t.Fatalf("entry with a 1s TTL gone after %v", gone)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("entry with a 1s TTL still there after %v", time.Since(start))
				}
				time.Sleep(50 * time.Millisecond)
			}
			if n, err := f.topo.raw.Exists(ctx, k).Result(); err != nil || n != 0 {
				t.Fatalf("EXISTS after expiry = %d, %v; want 0", n, err)
			}
		}},
		{
			name:  "TTL is capped at MaxRetention",
			tweak: func(o *cache.RedisOptions) { o.MaxRetention = time.Minute },
			run: func(t *testing.T, ctx context.Context, f *fixture) {
				ttls := []struct {
					name    string
					ttl     time.Duration
					atMost  time.Duration
					atLeast time.Duration
				}{
					{name: "longer than retention", ttl: 48 * time.Hour, atMost: time.Minute, atLeast: 50 * time.Second},
					{name: "shorter than retention", ttl: 10 * time.Second, atMost: 10 * time.Second, atLeast: 5 * time.Second},
				}
				for _, tc := range ttls {
					t.Run(tc.name, func(t *testing.T) {
						k := f.keyer.Key("retention", tc.name)
						if err := f.r.Set(ctx, k, []byte("v"), tc.ttl); err != nil {
							t.Fatal(err)
						}
						pttl, err := f.topo.raw.PTTL(ctx, k).Result()
						if err != nil {
							t.Fatal(err)
						}
						if pttl > tc.atMost || pttl < tc.atLeast {
							t.Fatalf("PTTL after Set with %v = %v; want between %v and %v (MaxRetention %v)",
								tc.ttl, pttl, tc.atLeast, tc.atMost, f.opts.MaxRetention)
						}
					})
				}
			},
		},
		{name: "no identifier readable at rest", run: func(t *testing.T, ctx context.Context, f *fixture) {
			answer := `[{"00100010":{"vr":"PN","Value":[{"Alphabetic":"` + patientName + `"}]},` +
				`"00100020":{"vr":"LO","Value":["` + nhsNumber + `"]},` +
				`"0020000D":{"vr":"UI","Value":["` + studyUID + `"]}}]`
			qidoKey := f.keyer.Key("qido", "studies", "PatientID="+nhsNumber, "PatientName="+patientName)
			entries := map[string]string{
				qidoKey:                                     answer,
				f.keyer.Key("metadata", studyUID):           answer,
				f.keyer.Key("locator", studyUID):            "ORA " + studyUID,
				f.keyer.PatientIndexKey(nhsNumber):          nhsNumber + " " + studyUID,
				f.keyer.Key("name", patientName, nhsNumber): patientName,
			}
			for k, v := range entries {
				if err := f.r.Set(ctx, k, []byte(v), time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			stored, err := redisserver.ScanAll(ctx, f.topo.raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(stored) != len(entries) {
				t.Fatalf("Redis holds %d keys; want the %d set", len(stored), len(entries))
			}
			var forbidden []string
			for _, id := range []string{patientName, nhsNumber, studyUID} {
				forbidden = append(forbidden, id, hex.EncodeToString([]byte(id)),
					strings.ToUpper(hex.EncodeToString([]byte(id))), base64.StdEncoding.EncodeToString([]byte(id)))
			}
			keyShape := regexp.MustCompile(`^` + regexp.QuoteMeta(keyPrefix) + `(patient:)?[0-9a-f]{64}$`)
			for k, v := range stored {
				plain, ok := entries[k]
				if !ok {
					t.Errorf("Redis holds key %q, which the test did not set", k)
					continue
				}
				if !keyShape.MatchString(k) {
					t.Errorf("key %q is not %s followed by 64 hex characters", k, keyPrefix)
				}
				if len(v) != len(plain)+sealOverhead {
					t.Errorf("value of %s is %d bytes; want %d (sealed)", k, len(v), len(plain)+sealOverhead)
				}
				for _, s := range forbidden {
					if strings.Contains(k, s) || bytes.Contains(v, []byte(s)) {
						t.Errorf("key %q or its value shows %q in clear", k, s)
					}
				}
			}
			for k, v := range entries {
				got, ok, err := f.r.Get(ctx, k)
				if !ok || err != nil || string(got) != v {
					t.Errorf("Get %s = %q, %v, %v; want the value set", k, got, ok, err)
				}
			}
		}},
		{name: "value moved under another key does not open", run: func(t *testing.T, ctx context.Context, f *fixture) {
			a, b := f.keyer.Key("patient a"), f.keyer.Key("patient b")
			if err := f.r.Set(ctx, a, []byte("answer for patient a"), time.Minute); err != nil {
				t.Fatal(err)
			}
			raw, err := f.topo.raw.Get(ctx, a).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if err := f.topo.raw.Set(ctx, b, raw, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			v, ok, err := f.r.Get(ctx, b)
			if v != nil || ok || !errors.Is(err, cache.ErrUnsealable) {
				t.Fatalf("Get of a copied value = %q, %v, %v; want nil, false, ErrUnsealable", v, ok, err)
			}
			if v, ok, err := f.r.Get(ctx, a); !ok || err != nil || string(v) != "answer for patient a" {
				t.Fatalf("Get of the original = %q, %v, %v; want it to open", v, ok, err)
			}
		}},
		{name: "tampered value does not open", run: func(t *testing.T, ctx context.Context, f *fixture) {
			k := f.keyer.Key("tampered")
			if err := f.r.Set(ctx, k, []byte("answer"), time.Minute); err != nil {
				t.Fatal(err)
			}
			raw, err := f.topo.raw.Get(ctx, k).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)-1] ^= 0xff
			if err := f.topo.raw.Set(ctx, k, raw, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			if v, ok, err := f.r.Get(ctx, k); v != nil || ok || !errors.Is(err, cache.ErrUnsealable) {
				t.Fatalf("Get of a tampered value = %q, %v, %v; want nil, false, ErrUnsealable", v, ok, err)
			}
		}},
	}
	for _, tp := range topologies() {
		t.Run(tp.name, func(t *testing.T) {
			topo := tp.start(t)
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					ctx := testContext(t, 30*time.Second)
					topo.flush(t, ctx)
					tc.run(t, ctx, newFixture(t, topo, tc.tweak))
				})
			}
		})
	}
}

// countingListeners listens on every address in addrs (the ports of killed nodes), counts the
// connections it accepts and holds them open without answering, so that a command reaching
// "Redis" would hang until its timeout.
type countingListeners struct {
	ls       []net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func listenAll(t *testing.T, addrs []string) *countingListeners {
	t.Helper()
	c := &countingListeners{}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			c.close()
			t.Fatalf("listen on the killed node's %s: %v", a, err)
		}
		c.ls = append(c.ls, l)
		c.wg.Go(func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				c.accepted.Add(1)
				c.mu.Lock()
				c.conns = append(c.conns, conn)
				c.mu.Unlock()
			}
		})
	}
	return c
}

// close stops listening, drops the held connections and waits for the accept loops.
func (c *countingListeners) close() {
	for _, l := range c.ls {
		l.Close()
	}
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
}

// TestCacheSurvivesRedisRestart kills Redis under a cache.Redis, checks that calls fail
// promptly and then, with the breaker open, at once and without reaching Redis; restarts Redis
// on the same ports and checks that the same cache.Redis works again after the cooldown.
func TestCacheSurvivesRedisRestart(t *testing.T) {
	for _, tp := range topologies() {
		t.Run(tp.name, func(t *testing.T) {
			ctx := testContext(t, 90*time.Second)
			topo := tp.start(t)
			// A call that reached a silent Redis would wait OpTimeout; refused calls fail at once.
			f := newFixture(t, topo, func(o *cache.RedisOptions) { o.OpTimeout = 800 * time.Millisecond })
			k := f.keyer.Key("survivor")
			if err := f.r.Set(ctx, k, []byte("before"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if _, ok, err := f.r.Get(ctx, k); !ok || err != nil {
				t.Fatalf("Get before the kill = %v, %v; want a hit", ok, err)
			}

			if err := topo.kill(); err != nil {
				t.Fatal(err)
			}
			for i := range int(f.opts.BreakerFailures) {
				start := time.Now()
				var err error
				if i%2 == 0 {
					var v []byte
					var ok bool
					v, ok, err = f.r.Get(ctx, k)
					if v != nil || ok {
						t.Fatalf("Get %d with Redis killed = %q, %v; want a miss", i, v, ok)
					}
				} else {
					err = f.r.Set(ctx, k, []byte("during"), time.Minute)
				}
				took := time.Since(start)
				if err == nil || errors.Is(err, cache.ErrUnavailable) {
					t.Fatalf("call %d with Redis killed: err = %v; want a Redis error, not yet ErrUnavailable", i, err)
				}
				if took > time.Second {
					t.Errorf("call %d with Redis killed took %v; want well under 1s", i, took)
				}
				t.Logf("call %d with Redis killed: %v after %v", i, err, took)
			}

			// The breaker is open now: calls must not reach the ports, even though something listens.
			listeners := listenAll(t, topo.addrs)
			open := []struct {
				name string
				call func() error
			}{
				{name: "get", call: func() error {
					v, ok, err := f.r.Get(ctx, k)
					if v != nil || ok {
						t.Errorf("Get with the breaker open = %q, %v; want a miss", v, ok)
					}
					return err
				}},
				{name: "set", call: func() error { return f.r.Set(ctx, k, []byte("during"), time.Minute) }},
				{name: "delete", call: func() error { return f.r.Delete(ctx, k) }},
			}
			for _, op := range open {
				start := time.Now()
				err := op.call()
				took := time.Since(start)
				if !errors.Is(err, cache.ErrUnavailable) {
					t.Errorf("%s with the breaker open: err = %v; want ErrUnavailable", op.name, err)
				}
				if took > 300*time.Millisecond {
					t.Errorf("%s with the breaker open took %v; a call not reaching Redis takes far less than OpTimeout %v",
						op.name, took, f.opts.OpTimeout)
				}
			}
			listeners.close()
			if n := listeners.accepted.Load(); n != 0 {
				if topo.backgroundTraffic {
					t.Logf("%d connections while the breaker was open, from the cluster client's own slot reloads", n)
				} else {
					t.Errorf("%d connections reached Redis's port while the breaker was open; want none", n)
				}
			}
			if n := f.log.count("unavailable"); n != 1 {
				t.Errorf("logged %d 'unavailable' lines; want 1 for the one opening", n)
			}

			if err := topo.restart(ctx); err != nil {
				t.Fatal(err)
			}
			restarted := time.Now()
			deadline := restarted.Add(10 * time.Second)
			for {
				v, ok, err := f.r.Get(ctx, k)
				if err == nil {
					if ok || v != nil {
						t.Fatalf("Get after the restart = %q, %v; want a miss (the restarted Redis is empty)", v, ok)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("cache.Redis did not recover within %v of the restart: last error %v", time.Since(restarted), err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("cache.Redis recovered %v after the restart", time.Since(restarted))
			if err := f.r.Set(ctx, k, []byte("after"), time.Minute); err != nil {
				t.Fatalf("Set after recovery: %v", err)
			}
			if v, ok, err := f.r.Get(ctx, k); !ok || err != nil || string(v) != "after" {
				t.Fatalf("Get after recovery = %q, %v, %v; want after", v, ok, err)
			}
			if n := f.log.count("available again"); n < 1 {
				t.Errorf("logged no 'available again' line after recovery")
			}
		})
	}
}

// TestClusterSpreadsEntries stores 200 entries through cache.Redis on a 3-node cluster and
// checks that every node holds some of them, sealed, and that all read back.
func TestClusterSpreadsEntries(t *testing.T) {
	const entries = 200
	ctx := testContext(t, 60*time.Second)
	topo := startCluster(t)
	f := newFixture(t, topo, nil)
	want := make(map[string]string, entries)
	for i := range entries {
		k, v := f.keyer.Key("spread", fmt.Sprint(i)), fmt.Sprintf("answer %d for %s", i, nhsNumber)
		want[k] = v
		if err := f.r.Set(ctx, k, []byte(v), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, n := range topo.nodes {
		held, err := redisserver.ScanAll(ctx, n.Client())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("node %s holds %d entries", n.Addr(), len(held))
		if len(held) == 0 {
			t.Errorf("node %s holds none of the %d entries", n.Addr(), entries)
		}
		for k, v := range held {
			plain, ok := want[k]
			if !ok {
				t.Errorf("node %s holds key %q, which the test did not set", n.Addr(), k)
				continue
			}
			if bytes.Contains(v, []byte(plain)) || bytes.Contains(v, []byte(nhsNumber)) {
				t.Errorf("node %s holds %s in clear", n.Addr(), k)
			}
			slot, err := n.Client().ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if owner, err := topo.raw.(*redis.ClusterClient).MasterForKey(ctx, k); err != nil || owner.Options().Addr != n.Addr() {
				t.Errorf("key %s (slot %d) is on %s but the cluster says its master is %v (%v)", k, slot, n.Addr(), owner, err)
			}
		}
		total += len(held)
	}
	if total != entries {
		t.Errorf("nodes hold %d entries in all; want %d", total, entries)
	}
	for k, v := range want {
		got, ok, err := f.r.Get(ctx, k)
		if !ok || err != nil || string(got) != v {
			t.Fatalf("Get %s = %q, %v, %v; want %q", k, got, ok, err, v)
		}
	}
}

// TestCacheBoundedWhenRedisHangs freezes Redis (SIGSTOP: connections are accepted, nothing
// answers) under a cache.Redis and checks that each call gives up within about OpTimeout, that
// the breaker then opens, and that the same cache.Redis works again once Redis is resumed.
func TestCacheBoundedWhenRedisHangs(t *testing.T) {
	for _, tp := range topologies() {
		t.Run(tp.name, func(t *testing.T) {
			ctx := testContext(t, 90*time.Second)
			topo := tp.start(t)
			f := newFixture(t, topo, nil)
			k := f.keyer.Key("frozen")
			if err := f.r.Set(ctx, k, []byte("before"), time.Minute); err != nil {
				t.Fatal(err)
			}
			for _, n := range topo.nodes {
				if err := n.Pause(); err != nil {
					t.Fatal(err)
				}
			}
			resumed := false
			resume := func() {
				if resumed {
					return
				}
				resumed = true
				for _, n := range topo.nodes {
					if err := n.Resume(); err != nil {
						t.Error(err)
					}
				}
			}
			defer resume()

			opened := false
			for i := range int(f.opts.BreakerFailures) + 1 {
				start := time.Now()
				v, ok, err := f.r.Get(ctx, k)
				took := time.Since(start)
				if v != nil || ok || err == nil {
					t.Fatalf("Get %d with Redis frozen = %q, %v, %v; want a miss with an error", i, v, ok, err)
				}
				// OpTimeout (250ms by default) bounds each call; a second is loose on purpose.
				if took > time.Second {
					t.Errorf("Get %d with Redis frozen took %v; want about OpTimeout", i, took)
				}
				if errors.Is(err, cache.ErrUnavailable) {
					if i < int(f.opts.BreakerFailures) {
						t.Fatalf("breaker open after %d failures; want %d", i, f.opts.BreakerFailures)
					}
					opened = true
				}
			}
			if !opened {
				t.Fatalf("breaker not open after %d timed-out calls", f.opts.BreakerFailures+1)
			}

			resume()
			deadline := time.Now().Add(10 * time.Second)
			for {
				v, ok, err := f.r.Get(ctx, k)
				if err == nil {
					if !ok || string(v) != "before" {
						t.Fatalf("Get after resume = %q, %v; want the value set before the freeze", v, ok)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("cache.Redis did not recover within 10s of the resume: last error %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

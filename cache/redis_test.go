package cache

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

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

const (
	testNHS  = "9434765919"
	testName = "DEMO^ALICE"
)

type redisFixture struct {
	mr    *miniredis.Miniredis
	r     *Redis
	keyer *Keyer
	log   *recordHandler
}

func newRedisFixture(t *testing.T, mr *miniredis.Miniredis, keys [][]byte, tweak func(*RedisOptions)) *redisFixture {
	t.Helper()
	if mr == nil {
		mr = miniredis.RunT(t)
	}
	s, err := NewSealer(keys)
	if err != nil {
		t.Fatal(err)
	}
	opts := testRedisOptions(mr.Addr())
	opts.BreakerFailures, opts.BreakerCooldown = 3, 100*time.Millisecond
	if tweak != nil {
		tweak(&opts)
	}
	h := &recordHandler{}
	r, err := NewRedis(opts, s, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	keyer, err := NewKeyer(bytes.Repeat([]byte{9}, 32), "np:v1:")
	if err != nil {
		t.Fatal(err)
	}
	return &redisFixture{mr: mr, r: r, keyer: keyer, log: h}
}

// testRedisOptions are complete options for a Redis at addr: what cmd/nirproxy's configuration
// gives by default, written out (this package's tests cannot import the configuration, which
// imports this package).
func testRedisOptions(addr string) RedisOptions {
	return RedisOptions{
		Addrs:           []string{addr},
		MaxRetention:    time.Hour,
		OpTimeout:       250 * time.Millisecond,
		DialTimeout:     200 * time.Millisecond,
		ReadTimeout:     200 * time.Millisecond,
		WriteTimeout:    200 * time.Millisecond,
		BreakerFailures: 5,
		BreakerCooldown: 5 * time.Second,
	}
}

func TestNewRedisRejects(t *testing.T) {
	s, _ := NewSealer([][]byte{testKey(1)})
	log := slog.New(&recordHandler{})
	complete := testRedisOptions("127.0.0.1:1")
	without := func(edit func(*RedisOptions)) RedisOptions {
		o := complete
		edit(&o)
		return o
	}
	tests := []struct {
		name   string
		opts   RedisOptions
		sealer *Sealer
		log    *slog.Logger
	}{
		{name: "no address", opts: without(func(o *RedisOptions) { o.Addrs = nil }), sealer: s, log: log},
		{name: "no retention", opts: without(func(o *RedisOptions) { o.MaxRetention = 0 }), sealer: s, log: log},
		{name: "no operation time-out", opts: without(func(o *RedisOptions) { o.OpTimeout = 0 }), sealer: s, log: log},
		{name: "no read time-out", opts: without(func(o *RedisOptions) { o.ReadTimeout = 0 }), sealer: s, log: log},
		{name: "no breaker failures", opts: without(func(o *RedisOptions) { o.BreakerFailures = 0 }), sealer: s, log: log},
		{name: "no sealer", opts: complete, log: log},
		{name: "no logger", opts: complete, sealer: s},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewRedis(tc.opts, tc.sealer, tc.log); err == nil {
				t.Fatal("NewRedis succeeded; want an error")
			}
		})
	}
}

func TestRedis(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, f *redisFixture)
	}{
		{name: "miss on absent key", run: func(t *testing.T, f *redisFixture) {
			if v, ok, err := f.r.Get(ctx, f.keyer.Key("absent")); ok || err != nil || v != nil {
				t.Fatalf("Get = %q, %v, %v; want nil, false, nil", v, ok, err)
			}
		}},
		{name: "hit before expiry, miss after", run: func(t *testing.T, f *redisFixture) {
			k := f.keyer.Key("qido", "studies")
			if err := f.r.Set(ctx, k, []byte("answer"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if v, ok, err := f.r.Get(ctx, k); !ok || err != nil || string(v) != "answer" {
				t.Fatalf("Get = %q, %v, %v; want answer, true, nil", v, ok, err)
			}
			f.mr.FastForward(time.Minute)
			if _, ok, err := f.r.Get(ctx, k); ok || err != nil {
				t.Fatalf("Get after TTL = %v, %v; want a clean miss", ok, err)
			}
		}},
		{name: "TTL capped at max retention", run: func(t *testing.T, f *redisFixture) {
			k := f.keyer.Key("metadata")
			if err := f.r.Set(ctx, k, []byte("m"), 48*time.Hour); err != nil {
				t.Fatal(err)
			}
			if ttl := f.mr.TTL(k); ttl <= 0 || ttl > time.Hour {
				t.Fatalf("TTL in redis = %v; want at most the 1h retention", ttl)
			}
			f.mr.FastForward(time.Hour)
			if _, ok, _ := f.r.Get(ctx, k); ok {
				t.Fatal("entry outlived max retention")
			}
		}},
		{name: "zero TTL removes the key", run: func(t *testing.T, f *redisFixture) {
			k := f.keyer.Key("z")
			f.r.Set(ctx, k, []byte("v"), time.Minute)
			if err := f.r.Set(ctx, k, []byte("v2"), 0); err != nil {
				t.Fatal(err)
			}
			if f.mr.Exists(k) {
				t.Fatal("key with zero TTL still in redis; it would never expire")
			}
		}},
		{name: "delete", run: func(t *testing.T, f *redisFixture) {
			k := f.keyer.Key("d")
			f.r.Set(ctx, k, []byte("v"), time.Minute)
			if err := f.r.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
			if err := f.r.Delete(ctx, k); err != nil {
				t.Fatalf("deleting an absent key: %v", err)
			}
			if _, ok, _ := f.r.Get(ctx, k); ok {
				t.Fatal("deleted key still present")
			}
		}},
		{name: "delete several keys", run: func(t *testing.T, f *redisFixture) {
			a, b, c := f.keyer.Key("a"), f.keyer.Key("b"), f.keyer.Key("c")
			idx := f.keyer.StudyIndexKey("1.2.3")
			for _, k := range []string{a, b, c} {
				if err := f.r.Set(ctx, k, []byte("v"), time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.r.Index(ctx, []Link{{Index: idx, Member: a}}, time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := f.r.Delete(ctx, a, f.keyer.Key("absent"), c, idx); err != nil {
				t.Fatal(err)
			}
			if err := f.r.Delete(ctx); err != nil {
				t.Fatalf("Delete of no keys: %v", err)
			}
			if got := f.mr.Keys(); len(got) != 1 || got[0] != b {
				t.Fatalf("redis holds %q after the delete; want only %q", got, b)
			}
		}},
		{name: "index sets members and a ttl capped at max retention", run: func(t *testing.T, f *redisFixture) {
			patient, study := f.keyer.PatientIndexKey(testNHS), f.keyer.StudyIndexKey("1.2.3")
			a, b := f.keyer.Key("a"), f.keyer.Key("b")
			links := []Link{{Index: patient, Member: a}, {Index: study, Member: b}, {Index: patient, Member: study}, {Index: patient, Member: a}}
			if err := f.r.Index(ctx, links, 48*time.Hour); err != nil {
				t.Fatal(err)
			}
			for idx, want := range map[string][]string{patient: sorted(a, study), study: {b}} {
				got, err := f.mr.Members(idx)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("index %s = %q; want %q", idx, got, want)
				}
				if ttl := f.mr.TTL(idx); ttl <= 0 || ttl > time.Hour {
					t.Errorf("TTL of index %s = %v; want at most the 1h retention", idx, ttl)
				}
			}
			f.mr.FastForward(time.Hour)
			if keys := f.mr.Keys(); len(keys) != 0 {
				t.Fatalf("redis holds %q after max retention; want nothing", keys)
			}
		}},
		{name: "index ttl below the cap is kept", run: func(t *testing.T, f *redisFixture) {
			idx := f.keyer.StudyIndexKey("1.2.3")
			if err := f.r.Index(ctx, []Link{{Index: idx, Member: "m"}}, 10*time.Minute); err != nil {
				t.Fatal(err)
			}
			if ttl := f.mr.TTL(idx); ttl != 10*time.Minute {
				t.Fatalf("TTL of index = %v; want 10m", ttl)
			}
		}},
		{name: "index with zero ttl or no links writes nothing", run: func(t *testing.T, f *redisFixture) {
			idx := f.keyer.StudyIndexKey("1.2.3")
			if err := f.r.Index(ctx, []Link{{Index: idx, Member: "m"}}, 0); err != nil {
				t.Fatal(err)
			}
			if err := f.r.Index(ctx, nil, time.Minute); err != nil {
				t.Fatal(err)
			}
			if keys := f.mr.Keys(); len(keys) != 0 {
				t.Fatalf("redis holds %q; want nothing (an index without TTL would never expire)", keys)
			}
		}},
		{name: "members", run: func(t *testing.T, f *redisFixture) {
			idx := f.keyer.PatientIndexKey(testNHS)
			if got, err := f.r.Members(ctx, idx); err != nil || len(got) != 0 {
				t.Fatalf("Members of a missing index = %q, %v; want none, nil", got, err)
			}
			a, b := f.keyer.Key("a"), f.keyer.Key("b")
			f.r.Index(ctx, []Link{{Index: idx, Member: a}}, time.Minute)
			f.r.Index(ctx, []Link{{Index: idx, Member: b}, {Index: idx, Member: a}}, time.Minute)
			got, err := f.r.Members(ctx, idx)
			slices.Sort(got)
			if err != nil || !slices.Equal(got, sorted(a, b)) {
				t.Fatalf("Members = %q, %v; want %q, nil", got, err, sorted(a, b))
			}
		}},
		{name: "members of an entry key is an error", run: func(t *testing.T, f *redisFixture) {
			k := f.keyer.Key("e")
			f.r.Set(ctx, k, []byte("v"), time.Minute)
			if got, err := f.r.Members(ctx, k); err == nil {
				t.Fatalf("Members of a string key = %q, nil; want an error", got)
			}
		}},
		{name: "ping", run: func(t *testing.T, f *redisFixture) {
			if err := f.r.Ping(ctx); err != nil {
				t.Fatalf("Ping = %v; want nil", err)
			}
			f.mr.Close()
			if err := f.r.Ping(ctx); err == nil {
				t.Fatal("Ping with redis down = nil; want an error")
			}
		}},
		{name: "no identifier in clear in redis", run: func(t *testing.T, f *redisFixture) {
			body := []byte(`[{"00100010":{"vr":"PN","Value":[{"Alphabetic":"` + testName + `"}]},"00100020":{"vr":"LO","Value":["` + testNHS + `"]}}]`)
			f.r.Set(ctx, f.keyer.Key("qido", "PatientID="+testNHS, "PatientName="+testName), body, time.Minute)
			f.r.Set(ctx, f.keyer.PatientIndexKey(testNHS), []byte(testNHS), time.Minute)
			keys := f.mr.Keys()
			if len(keys) != 2 {
				t.Fatalf("redis holds %d keys; want 2", len(keys))
			}
			for _, k := range keys {
				v, err := f.mr.Get(k)
				if err != nil {
					t.Fatal(err)
				}
				for _, secret := range []string{testNHS, testName} {
					if strings.Contains(k, secret) || strings.Contains(v, secret) {
						t.Fatalf("redis key %q or its value shows an identifier in clear", k)
					}
				}
			}
		}},
		{name: "tampered value is a miss with an error", run: func(t *testing.T, f *redisFixture) {
			k := f.keyer.Key("t")
			f.r.Set(ctx, k, []byte("value"), time.Minute)
			raw, _ := f.mr.Get(k)
			b := []byte(raw)
			b[len(b)-1] ^= 0xff
			f.mr.Set(k, string(b))
			v, ok, err := f.r.Get(ctx, k)
			if ok || v != nil || !errors.Is(err, ErrUnsealable) {
				t.Fatalf("Get = %q, %v, %v; want nil, false, ErrUnsealable", v, ok, err)
			}
		}},
		{name: "value moved under another key does not open", run: func(t *testing.T, f *redisFixture) {
			a, b := f.keyer.Key("a"), f.keyer.Key("b")
			f.r.Set(ctx, a, []byte("patient a"), time.Minute)
			raw, _ := f.mr.Get(a)
			f.mr.Set(b, raw)
			if _, ok, err := f.r.Get(ctx, b); ok || !errors.Is(err, ErrUnsealable) {
				t.Fatalf("Get = %v, %v; want a miss with ErrUnsealable", ok, err)
			}
		}},
		{name: "unsealable values do not open the breaker", run: func(t *testing.T, f *redisFixture) {
			k := f.keyer.Key("junk")
			f.mr.Set(k, "not sealed")
			for range 10 {
				f.r.Get(ctx, k)
			}
			if _, _, err := f.r.Get(ctx, f.keyer.Key("absent")); err != nil {
				t.Fatalf("Get after bad values = %v; want the breaker still closed", err)
			}
		}},
		{name: "canceled callers do not open the breaker", run: func(t *testing.T, f *redisFixture) {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			for range 10 {
				f.r.Get(cctx, f.keyer.Key("x"))
			}
			if _, _, err := f.r.Get(ctx, f.keyer.Key("x")); err != nil {
				t.Fatalf("Get after canceled calls = %v; want the breaker still closed", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newRedisFixture(t, nil, [][]byte{testKey(1)}, nil))
		})
	}
}

func TestRedisKeyRotation(t *testing.T) {
	ctx := context.Background()
	mr := miniredis.RunT(t)
	oldKey, newKey := testKey(1), testKey(2)
	before := newRedisFixture(t, mr, [][]byte{oldKey}, nil)
	after := newRedisFixture(t, mr, [][]byte{newKey, oldKey}, nil)
	retired := newRedisFixture(t, mr, [][]byte{newKey}, nil)
	kOld, kNew := before.keyer.Key("old"), before.keyer.Key("new")
	if err := before.r.Set(ctx, kOld, []byte("sealed under old"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := after.r.Set(ctx, kNew, []byte("sealed under new"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if raw, _ := mr.Get(kNew); raw[0] != keyID(newKey) {
		t.Fatalf("new value sealed with key id %d; want the new key's %d", raw[0], keyID(newKey))
	}
	tests := []struct {
		name string
		c    *Redis
		key  string
		want string // empty: a miss with ErrUnsealable
	}{
		{name: "rotated cache opens old value", c: after.r, key: kOld, want: "sealed under old"},
		{name: "rotated cache opens new value", c: after.r, key: kNew, want: "sealed under new"},
		{name: "old-key-only cache cannot open new value", c: before.r, key: kNew},
		{name: "retired old key no longer opens", c: retired.r, key: kOld},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, ok, err := tc.c.Get(ctx, tc.key)
			if tc.want == "" {
				if ok || !errors.Is(err, ErrUnsealable) {
					t.Fatalf("Get = %q, %v, %v; want a miss with ErrUnsealable", v, ok, err)
				}
				return
			}
			if !ok || err != nil || string(v) != tc.want {
				t.Fatalf("Get = %q, %v, %v; want %q", v, ok, err, tc.want)
			}
		})
	}
}

// Timings of the breaker tests. The cooldown is long enough that a busy machine cannot let it
// pass between the breaker opening and the checks of the open state, which take microseconds;
// recoveries are polled for up to recoverWithin. A call that reached the network while the
// breaker is open would hang for hangFor on a listener that never answers, far past
// failFastWithin.
const (
	breakerTestCooldown = 5 * time.Second
	recoverWithin       = 30 * time.Second
	hangFor             = 30 * time.Second
	failFastWithin      = 10 * time.Second
)

// hangingListener listens on addr, accepts connections and never answers them, counting them,
// until the test ends or close is called.
type hangingListener struct {
	l        net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted int
}

func listenHanging(t *testing.T, addr string) *hangingListener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s in place of redis: %v", addr, err)
	}
	h := &hangingListener{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.accepted++
			h.mu.Unlock()
		}
	}()
	t.Cleanup(h.close)
	return h
}

func (h *hangingListener) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.accepted
}

func (h *hangingListener) close() {
	h.l.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

func TestRedisDownFailsFastAndRecovers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newRedisFixture(t, nil, [][]byte{testKey(1)}, func(o *RedisOptions) {
		o.BreakerCooldown = breakerTestCooldown
		o.OpTimeout, o.DialTimeout, o.ReadTimeout, o.WriteTimeout = hangFor, hangFor, hangFor, hangFor
	})
	k := f.keyer.Key("k")
	if err := f.r.Set(ctx, k, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	addr := f.mr.Addr()
	f.mr.Close()

	// Failures against the dead address open the breaker after BreakerFailures calls.
	opened := false
	for range 10 {
		_, ok, err := f.r.Get(ctx, k)
		if ok || err == nil {
			t.Fatalf("Get with redis down = %v, %v; want a miss with an error", ok, err)
		}
		if errors.Is(err, ErrUnavailable) {
			opened = true
			break
		}
	}
	if !opened {
		t.Fatal("breaker did not open")
	}
	// While the breaker is open, something listens at Redis's address and never answers: a
	// call that reached it would hang for hangFor.
	hang := listenHanging(t, addr)

	ops := []struct {
		name string
		call func() error
	}{
		{name: "get", call: func() error {
			v, ok, err := f.r.Get(ctx, k)
			if ok || v != nil {
				t.Errorf("Get while open = %q, %v; want a miss", v, ok)
			}
			return err
		}},
		{name: "set", call: func() error { return f.r.Set(ctx, k, []byte("v"), time.Minute) }},
		{name: "delete", call: func() error { return f.r.Delete(ctx, k) }},
	}
	for _, op := range ops {
		t.Run("fail fast/"+op.name, func(t *testing.T) {
			start := time.Now()
			err := op.call()
			if d := time.Since(start); d > failFastWithin {
				t.Errorf("%s took %v with the breaker open; want it refused without waiting for redis (which hangs %v)", op.name, d, hangFor)
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s error = %v; want ErrUnavailable", op.name, err)
			}
			if n := hang.count(); n != 0 {
				t.Errorf("%s with the breaker open made %d connections to redis's address; want none", op.name, n)
			}
		})
	}

	hang.close()
	if err := f.mr.Restart(); err != nil {
		t.Fatalf("restart miniredis on %s: %v", addr, err)
	}
	deadline := time.Now().Add(breakerTestCooldown + recoverWithin)
	for {
		v, ok, err := f.r.Get(ctx, k)
		if err == nil && ok && string(v) == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("breaker did not close after redis came back: last Get = %q, %v, %v", v, ok, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := f.log.count("unavailable"); n != 1 {
		t.Errorf("logged %d 'unavailable' lines; want 1 per opening", n)
	}
	if n := f.log.count("available again"); n != 1 {
		t.Errorf("logged %d 'available again' lines; want 1", n)
	}
}

func TestRedisBreakerState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var (
		mu     sync.Mutex
		states []string
	)
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(states)
	}
	f := newRedisFixture(t, nil, [][]byte{testKey(1)}, func(o *RedisOptions) {
		o.BreakerCooldown = breakerTestCooldown
		o.StateChanged = func(s string) {
			mu.Lock()
			defer mu.Unlock()
			states = append(states, s)
		}
	})
	k := f.keyer.Key("k")
	if err := f.r.Set(ctx, k, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	f.mr.Close()

	steps := []struct {
		name          string
		call          func() error
		wantErr       error // nil: any error
		wantStates    []string
		wantAvailable bool
	}{
		{name: "first failure", call: func() error { return f.r.Ping(ctx) }, wantAvailable: true},
		{name: "second failure", call: func() error { _, _, err := f.r.Get(ctx, k); return err }, wantAvailable: true},
		{name: "third failure opens", call: func() error { return f.r.Delete(ctx, k) }, wantStates: []string{"open"}},
		{name: "refused while open", call: func() error { return f.r.Ping(ctx) }, wantErr: ErrUnavailable, wantStates: []string{"open"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := st.call()
			if err == nil || (st.wantErr != nil && !errors.Is(err, st.wantErr)) {
				t.Fatalf("call with redis down = %v; want an error (%v)", err, st.wantErr)
			}
			if got := seen(); !slices.Equal(got, st.wantStates) {
				t.Fatalf("StateChanged saw %q; want %q", got, st.wantStates)
			}
			if got := f.r.Available(); got != st.wantAvailable {
				t.Fatalf("Available = %v; want %v", got, st.wantAvailable)
			}
		})
	}

	if err := f.mr.Restart(); err != nil {
		t.Fatalf("restart miniredis on %s: %v", f.mr.Addr(), err)
	}
	// The breaker's cooldown runs on the wall clock; poll until the probe goes through.
	deadline := time.Now().Add(breakerTestCooldown + recoverWithin)
	for f.r.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("breaker did not close after redis came back; states %q", seen())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, want := seen(), []string{"open", "half-open", "closed"}; !slices.Equal(got, want) {
		t.Fatalf("StateChanged saw %q; want %q", got, want)
	}
	if !f.r.Available() {
		t.Fatal("Available = false after the breaker closed")
	}
}

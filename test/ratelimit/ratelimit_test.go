// Package ratelimit tests policy/ratelimit against real redis-server (Debian's 7.0), one node
// and a 3-node Redis Cluster, started by test/redisserver: limits shared by two replicas with
// Redis's own clock and real expiry, the go-redis/redis_rate script on a real server and across
// cluster slots, nothing readable stored, and a killed and restarted Redis.
package ratelimit

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/nirproxy/nirproxy/policy/ratelimit"
	"github.com/nirproxy/nirproxy/test/redisserver"
)

// Identifiers the tests count, which Redis must never show in clear.
const (
	issuer = "https://issuer.example/realm"
	alice  = "alice-555123456789"
	bob    = "bob-555987654321"
	carol  = "carol-555000111222"
	ods    = "RX1AB"
)

// The NHS numbers of the patients the tests request.
const (
	patient1 = "9434765919"
	patient2 = "9434765927"
	patient3 = "9434765935"
)

// margin is added to a Retry-After before trying again: the time between Redis telling it and
// the next request reaching Redis.
const margin = 30 * time.Millisecond

// deployment is Redis as a test sees it: the addresses replicas connect to, a client that reads
// Redis around the limiter, and how to empty it, take it away and bring it back.
type deployment struct {
	addrs   []string
	raw     redis.UniversalClient
	cluster bool
	flush   func(ctx context.Context) error
	kill    func() error
	restart func(ctx context.Context) error
	// pause freezes Redis (SIGSTOP) and returns how to thaw it; nil for a cluster.
	pause func() (resume func() error, err error)
}

// startSingle starts one redis-server for t.
func startSingle(t *testing.T) deployment {
	s := redisserver.StartT(t, redisserver.Options{})
	return deployment{
		addrs: []string{s.Addr()}, raw: s.Client(),
		flush: func(ctx context.Context) error { return s.Client().FlushAll(ctx).Err() },
		kill:  s.Kill, restart: s.Restart,
		pause: func() (func() error, error) { return s.Resume, s.Pause() },
	}
}

// startCluster starts a 3-node Redis Cluster for t.
func startCluster(t *testing.T) deployment {
	c := redisserver.StartClusterT(t, 3, redisserver.Options{})
	return deployment{
		addrs: c.Addrs(), raw: c.ClusterClient(), cluster: true,
		flush: func(ctx context.Context) error {
			return c.ClusterClient().ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
				return n.FlushAll(ctx).Err()
			})
		},
		kill: c.Kill, restart: c.Restart,
	}
}

// replica is one nirproxy's Limiter over its own client of the deployment.
type replica struct {
	*ratelimit.Limiter
	store *ratelimit.Redis
}

// newReplica builds a Limiter of cfg counting in d through a client of its own, closed when t
// ends; the store's breaker opens after one failure for 200ms.
func newReplica(t *testing.T, d deployment, cfg ratelimit.Config) replica {
	t.Helper()
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: d.addrs, ContextTimeoutEnabled: true, MaxRetries: 1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { client.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := ratelimit.NewRedis(client, ratelimit.RedisOptions{
		OpTimeout: time.Second, BreakerFailures: 1, BreakerCooldown: 200 * time.Millisecond,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ratelimit.New(cfg, store, log)
	if err != nil {
		t.Fatal(err)
	}
	return replica{Limiter: l, store: store}
}

// allow calls Allow for sub of ods and fails t on an error.
func (r replica) allow(t *testing.T, sub, patient string) ratelimit.Result {
	t.Helper()
	res, err := r.Allow(t.Context(), ratelimit.Caller{Issuer: issuer, Subject: sub, Organisation: ods}, patient)
	if err != nil {
		t.Fatalf("Allow(%s, %q): %v", sub, patient, err)
	}
	return res
}

// config returns the limits the tests use, the clock real: 2 requests per 2s per user, 3 per
// 3s per organisation (one more each second), 2 patients per 1.5s per user.
func config() ratelimit.Config {
	return ratelimit.Config{
		User:         ratelimit.Rate{Requests: 2, Period: 2 * time.Second, Burst: 2},
		Organisation: ratelimit.Rate{Requests: 3, Period: 3 * time.Second, Burst: 3},
		Patients:     ratelimit.PatientLimit{Patients: 2, Window: 1500 * time.Millisecond},
		KeySecret:    bytes.Repeat([]byte{5}, ratelimit.MinKeySecret),
		KeyPrefix:    "np:rl:test:",
		MaxKeys:      1000,
		Clock:        time.Now,
	}
}

// refused fails t unless res is refused by rule, in Redis, with a Retry-After in (0, most].
func refused(t *testing.T, what string, res ratelimit.Result, rule string, most time.Duration) {
	t.Helper()
	if res.Allowed || res.Refused != rule || res.RetryAfter <= 0 || res.RetryAfter > most || res.Degraded {
		t.Fatalf("%s = %+v; want refused by %s in Redis, retry after at most %v", what, res, rule, most)
	}
	if got := res.SecurityEvent; got != (rule == ratelimit.RulePatients) {
		t.Fatalf("%s: security event %v; want it only for %s", what, got, ratelimit.RulePatients)
	}
}

// TestLimitsOnRealRedis runs the limits against a real single node and a real 3-node cluster,
// each shared by two replicas: one server set per deployment, emptied before each case.
func TestLimitsOnRealRedis(t *testing.T) {
	tests := []struct {
		name  string
		tweak func(*ratelimit.Config)
		run   func(t *testing.T, d deployment, a, b replica)
		// singleNode cases run against the single node only.
		singleNode bool
	}{
		{name: "user and organisation rates are shared by replicas and recover", run: func(t *testing.T, _ deployment, a, b replica) {
			for i, r := range []replica{a, b} {
				if res := r.allow(t, alice, ""); !res.Allowed || res.Degraded {
					t.Fatalf("alice's request %d = %+v; want allowed in Redis", i+1, res)
				}
			}
			user := a.allow(t, alice, "")
			refused(t, "alice's 3rd request, on the first replica", user, ratelimit.RuleUserRate, time.Second)
			if res := b.allow(t, bob, ""); !res.Allowed {
				t.Fatalf("bob's request, the organisation's 3rd = %+v; want allowed", res)
			}
			refused(t, "carol's request, the organisation's 4th", a.allow(t, carol, ""), ratelimit.RuleOrganisationRate, time.Second)
			time.Sleep(user.RetryAfter + margin)
			if res := b.allow(t, alice, ""); !res.Allowed {
				t.Fatalf("alice after her Retry-After = %+v; want allowed", res)
			}
		}},
		{name: "distinct patients are counted once, refused as a security event, and leave the window", tweak: func(c *ratelimit.Config) {
			c.User = ratelimit.Rate{Requests: 100, Period: time.Second, Burst: 100}
			c.Organisation = c.User
		}, run: func(t *testing.T, _ deployment, a, b replica) {
			for i, s := range []struct {
				r       replica
				patient string
			}{{a, patient1}, {b, patient2}, {a, "943 476 5919"}, {b, ""}} {
				if res := s.r.allow(t, carol, s.patient); !res.Allowed {
					t.Fatalf("step %d (patient %q) = %+v; want allowed", i+1, s.patient, res)
				}
			}
			res := b.allow(t, carol, patient3)
			refused(t, "a 3rd patient", res, ratelimit.RulePatients, 1500*time.Millisecond)
			if res := a.allow(t, alice, patient3); !res.Allowed {
				t.Fatalf("another user's first patient = %+v; want allowed", res)
			}
			time.Sleep(res.RetryAfter + margin)
			if res := a.allow(t, carol, patient3); !res.Allowed {
				t.Fatalf("the 3rd patient once the oldest has left = %+v; want allowed", res)
			}
		}},
		{name: "Redis holds no identifier, every key expires, a user's keys share a slot", run: func(t *testing.T, d deployment, a, b replica) {
			a.allow(t, alice, patient1)
			b.allow(t, bob, patient1)
			ctx := t.Context()
			stored, err := redisserver.ScanAll(ctx, d.raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(stored) != 5 {
				t.Fatalf("Redis holds %d keys; want 5: 2 users' rates and patients, 1 organisation's rate", len(stored))
			}
			slots := map[string]map[int64]bool{}
			for k, v := range stored {
				if typ, _ := d.raw.Type(ctx, k).Result(); typ == "zset" {
					members, err := d.raw.ZRange(ctx, k, 0, -1).Result()
					if err != nil {
						t.Fatal(err)
					}
					v = []byte(strings.Join(members, "\n"))
				}
				for _, id := range []string{issuer, alice, bob, ods, patient1} {
					if strings.Contains(strings.ToLower(k+"\n"+string(v)), strings.ToLower(id)) {
						t.Errorf("key %q or its value %q holds %q in clear", k, v, id)
					}
				}
				if ttl, err := d.raw.PTTL(ctx, k).Result(); err != nil || ttl <= 0 {
					t.Errorf("PTTL of %q = %v, %v; want it to expire", k, ttl, err)
				}
				if !d.cluster {
					continue
				}
				slot, err := d.raw.ClusterKeySlot(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				tag := k[strings.Index(k, "{"):strings.Index(k, "}")]
				if slots[tag] == nil {
					slots[tag] = map[int64]bool{}
				}
				slots[tag][slot] = true
			}
			for tag, s := range slots {
				if len(s) != 1 {
					t.Errorf("keys tagged %s} are in slots %v; want one", tag, s)
				}
			}
		}},
		{name: "a killed Redis leaves requests counted in process until it is back", run: func(t *testing.T, d deployment, a, _ replica) {
			if err := d.kill(); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if res := a.allow(t, alice, ""); !res.Allowed || !res.Degraded {
					t.Fatalf("request %d with Redis killed = %+v; want allowed, degraded", i+1, res)
				}
			}
			if res := a.allow(t, alice, ""); res.Refused != ratelimit.RuleUserRate || !res.Degraded {
				t.Fatalf("3rd request with Redis killed = %+v; want refused by %s in process", res, ratelimit.RuleUserRate)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			if err := d.restart(ctx); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for res := a.allow(t, bob, ""); res.Degraded; res = a.allow(t, bob, "") {
				if time.Now().After(deadline) {
					t.Fatal("requests still counted in process 20s after Redis came back")
				}
				time.Sleep(100 * time.Millisecond)
			}
			if !a.store.Available() {
				t.Error("store not available after a request counted in Redis")
			}
		}},
		{name: "a frozen Redis costs a request at most OpTimeout, then none", singleNode: true, run: func(t *testing.T, d deployment, a, _ replica) {
			resume, err := d.pause()
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := resume(); err != nil {
					t.Errorf("resume redis-server: %v", err)
				}
			}()
			for i, most := range []time.Duration{time.Second + 200*time.Millisecond, 50 * time.Millisecond} {
				began := time.Now()
				res := a.allow(t, alice, patient1)
				if took := time.Since(began); !res.Allowed || !res.Degraded || took > most {
					t.Fatalf("request %d with Redis frozen = %+v after %v; want allowed, degraded, within %v", i+1, res, took, most)
				}
			}
		}},
	}
	deployments := []struct {
		name  string
		start func(t *testing.T) deployment
	}{
		{name: "single", start: startSingle},
		{name: "cluster", start: startCluster},
	}
	for _, dep := range deployments {
		t.Run(dep.name, func(t *testing.T) {
			d := dep.start(t)
			for _, tt := range tests {
				if tt.singleNode && d.pause == nil {
					// Freezing one node is what the case measures; a cluster has no one node.
					continue
				}
				t.Run(tt.name, func(t *testing.T) {
					if err := d.flush(t.Context()); err != nil {
						t.Fatalf("empty redis: %v", err)
					}
					cfg := config()
					if tt.tweak != nil {
						tt.tweak(&cfg)
					}
					tt.run(t, d, newReplica(t, d, cfg), newReplica(t, d, cfg))
				})
			}
		})
	}
}

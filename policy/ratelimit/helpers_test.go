package ratelimit

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Identifiers the tests count; none may appear in a Redis key or value.
const (
	issuer    = "https://issuer.example/realm"
	alice     = "alice-555123456789"
	bob       = "bob-555987654321"
	carol     = "carol-555000111222"
	orgA      = "RX1AB"
	orgB      = "RY9ZZ"
	nhsNumber = "9434765919"
)

// start is when every test's clock starts.
var start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// fakeClock is a clock the test moves by hand, from the test's goroutine only.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) advance(d time.Duration) time.Time {
	c.now = c.now.Add(d)
	return c.now
}

// testConfig returns small limits: 3 requests a minute per user, 5 per organisation, 3
// patients an hour per user.
func testConfig(clock func() time.Time) Config {
	return Config{
		User:         Rate{Requests: 3, Period: time.Minute, Burst: 3},
		Organisation: Rate{Requests: 5, Period: time.Minute, Burst: 5},
		Patients:     PatientLimit{Patients: 3, Window: time.Hour},
		KeySecret:    bytes.Repeat([]byte{7}, MinKeySecret),
		KeyPrefix:    "np:rl:v1:",
		MaxKeys:      100,
		Clock:        clock,
	}
}

// discard is a logger that writes nowhere.
func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testRedisOptions opens the breaker after one failure for 50ms.
func testRedisOptions() RedisOptions {
	return RedisOptions{OpTimeout: time.Second, BreakerFailures: 1, BreakerCooldown: 50 * time.Millisecond}
}

// newClient returns a client of addr, closed when t ends.
func newClient(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: []string{addr}, ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// rig is a Limiter with its clock, and the miniredis it counts in when it has one.
type rig struct {
	*Limiter
	clock *fakeClock
	mr    *miniredis.Miniredis
	store *Redis
	// storeLog holds what the Redis store logged; only the test's goroutine writes it.
	storeLog *bytes.Buffer
}

// advance moves the rig's clock, and miniredis's, by d.
func (r *rig) advance(d time.Duration) {
	now := r.clock.advance(d)
	if r.mr != nil {
		r.mr.SetTime(now)
	}
}

// allow calls Allow and fails t on an error.
func (r *rig) allow(t *testing.T, c Caller, patient string) Result {
	t.Helper()
	res, err := r.Allow(context.Background(), c, patient)
	if err != nil {
		t.Fatalf("Allow(%+v, %q): %v", c, patient, err)
	}
	return res
}

// kinds names the two ways a rig counts.
var kinds = []string{"memory", "redis"}

// newRig returns a Limiter of cfg (its Clock replaced by the rig's) counting in process, or in
// a new miniredis whose clock (TIME and TTLs) follows the rig's.
func newRig(t *testing.T, kind string, cfg Config) *rig {
	t.Helper()
	r := &rig{clock: &fakeClock{now: start}, storeLog: &bytes.Buffer{}}
	cfg.Clock = r.clock.Now
	var shared Store
	if kind == "redis" {
		r.mr = miniredis.RunT(t)
		r.mr.SetTime(start)
		r.mr.ClockTTL(true)
		s, err := NewRedis(newClient(t, r.mr.Addr()), testRedisOptions(), slog.New(slog.NewTextHandler(r.storeLog, nil)))
		if err != nil {
			t.Fatal(err)
		}
		r.store, shared = s, s
	}
	l, err := New(cfg, shared, discard())
	if err != nil {
		t.Fatal(err)
	}
	r.Limiter = l
	return r
}

// user returns the caller sub of orgA.
func user(sub string) Caller { return Caller{Issuer: issuer, Subject: sub, Organisation: orgA} }

// near reports whether got is within a millisecond of want: Redis's GCRA script keeps times as
// floating-point seconds.
func near(got, want time.Duration) bool {
	d := got - want
	return d > -time.Millisecond && d < time.Millisecond
}

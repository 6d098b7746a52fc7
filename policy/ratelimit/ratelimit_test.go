package ratelimit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

// TestUserRate checks that a user gets its burst, is then refused with the time until its next
// request, and recovers at one request per Period/Requests, in process and in Redis alike.
func TestUserRate(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			r := newRig(t, kind, testConfig(nil))
			for i := range 3 {
				if res := r.allow(t, user(alice), ""); !res.Allowed {
					t.Fatalf("request %d of a burst of 3 refused: %+v", i+1, res)
				}
			}
			res := r.allow(t, user(alice), "")
			if res.Allowed || res.Refused != RuleUserRate || !near(res.RetryAfter, 20*time.Second) || res.SecurityEvent || res.Degraded {
				t.Fatalf("4th request = %+v; want refused by %s, retry after 20s, no security event", res, RuleUserRate)
			}
			if got := res.RetryAfterSeconds(); got != 20 {
				t.Errorf("RetryAfterSeconds = %d; want 20", got)
			}
			r.advance(15 * time.Second)
			if res := r.allow(t, user(alice), ""); res.Allowed || !near(res.RetryAfter, 5*time.Second) {
				t.Fatalf("after 15s = %+v; want refused, retry after 5s", res)
			}
			r.advance(5 * time.Second)
			if res := r.allow(t, user(alice), ""); !res.Allowed {
				t.Fatalf("after 20s = %+v; want allowed (one request per 20s)", res)
			}
			if res := r.allow(t, user(alice), ""); res.Allowed || !near(res.RetryAfter, 20*time.Second) {
				t.Fatalf("at once again = %+v; want refused, retry after 20s", res)
			}
			if res := r.allow(t, user(bob), ""); !res.Allowed {
				t.Fatalf("another user = %+v; want allowed: each user has its own limit", res)
			}
			r.advance(time.Minute)
			for i := range 3 {
				if res := r.allow(t, user(alice), ""); !res.Allowed {
					t.Fatalf("request %d after a quiet minute refused: %+v; want the whole burst back", i+1, res)
				}
			}
		})
	}
}

// TestOrganisationRate checks that an organisation's limit is shared by its users, that another
// organisation is not affected, and that a request refused by the user's own limit spends
// nothing of the organisation's.
func TestOrganisationRate(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			r := newRig(t, kind, testConfig(nil))
			for i, sub := range []string{alice, alice, alice, alice, bob} {
				res := r.allow(t, user(sub), "")
				if want := i != 3; res.Allowed != want {
					t.Fatalf("request %d by %s: %+v; want allowed %v", i+1, sub, res, want)
				}
			}
			// Organisation A has spent 4 of 5: alice's refused request counted only against her.
			if res := r.allow(t, user(bob), ""); !res.Allowed {
				t.Fatalf("5th admitted request of the organisation = %+v; want allowed", res)
			}
			res := r.allow(t, user(carol), "")
			if res.Allowed || res.Refused != RuleOrganisationRate || !near(res.RetryAfter, 12*time.Second) {
				t.Fatalf("6th request of the organisation, by a new user = %+v; want refused by %s, retry after 12s", res, RuleOrganisationRate)
			}
			if res := r.allow(t, Caller{Issuer: issuer, Subject: carol, Organisation: orgB}, ""); !res.Allowed {
				t.Fatalf("the same subject for another organisation = %+v; want allowed", res)
			}
			r.advance(12 * time.Second)
			if res := r.allow(t, user(carol), ""); !res.Allowed {
				t.Fatalf("after 12s = %+v; want allowed", res)
			}
		})
	}
}

// TestDistinctPatients checks the sliding window of distinct patients: repeats (however the
// NHS number is spaced) never count twice, a new patient over the limit is refused as a
// security event until the oldest leaves the window, and requests naming no patient or by
// another user are not affected.
func TestDistinctPatients(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			cfg := testConfig(nil)
			cfg.User = Rate{Requests: 100, Period: time.Minute, Burst: 100}
			cfg.Organisation = cfg.User
			r := newRig(t, kind, cfg)
			steps := []struct {
				after   time.Duration
				patient string
				allowed bool
			}{
				{0, "9434765919", true},
				{10 * time.Minute, "9434765920", true},
				{10 * time.Minute, "9434765921", true},
				{10 * time.Minute, "943 476 5919", true}, // the first patient again, counted from now
				{0, "943-476-5920", true},                // the second again, counted from now
				{0, "9434765919", true},
				{0, "", true}, // a search naming no patient
				{10 * time.Minute, "9434765922", false},
			}
			for i, s := range steps {
				r.advance(s.after)
				res := r.allow(t, user(alice), s.patient)
				if res.Allowed != s.allowed {
					t.Fatalf("step %d (patient %q): %+v; want allowed %v", i+1, s.patient, res, s.allowed)
				}
			}
			// Now t0+40m: the window holds 9434765921 (t0+20m), 9434765919 and 9434765920
			// (t0+30m); 9434765922 is admitted when 9434765921 leaves, at t0+80m.
			res := r.allow(t, user(alice), "9434765922")
			if res.Refused != RulePatients || !res.SecurityEvent || res.RetryAfter != 40*time.Minute || res.RetryAfterSeconds() != 2400 {
				t.Fatalf("a 4th patient = %+v; want refused by %s as a security event, retry after 40m", res, RulePatients)
			}
			for _, p := range []string{"9434765919", "943 476 5920", ""} {
				if res := r.allow(t, user(alice), p); !res.Allowed || res.SecurityEvent {
					t.Fatalf("patient %q already counted, at the limit = %+v; want allowed", p, res)
				}
			}
			if res := r.allow(t, user(bob), "9434765922"); !res.Allowed {
				t.Fatalf("another user's first patient = %+v; want allowed", res)
			}
			r.advance(40*time.Minute - time.Millisecond)
			if res := r.allow(t, user(alice), "9434765922"); res.Allowed || res.RetryAfter != time.Millisecond {
				t.Fatalf("a millisecond early = %+v; want refused, retry after 1ms", res)
			}
			r.advance(time.Millisecond)
			if res := r.allow(t, user(alice), "9434765922"); !res.Allowed {
				t.Fatalf("when the oldest patient has left the window = %+v; want allowed", res)
			}
		})
	}
}

// TestSharedAcrossReplicas checks that two Limiters over one Redis count one limit: replicas
// agree.
func TestSharedAcrossReplicas(t *testing.T) {
	first := newRig(t, "redis", testConfig(nil))
	s, err := NewRedis(newClient(t, first.mr.Addr()), testRedisOptions(), discard())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(first.clock.Now)
	second, err := New(cfg, s, discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, l := range []*Limiter{first.Limiter, second, first.Limiter} {
		if res, err := l.Allow(ctx, user(alice), "943476591"+string(rune('0'+i))); err != nil || !res.Allowed {
			t.Fatalf("request %d = %+v, %v; want allowed", i+1, res, err)
		}
	}
	if res, err := second.Allow(ctx, user(alice), ""); err != nil || res.Refused != RuleUserRate {
		t.Fatalf("4th request, on the other replica = %+v, %v; want refused by %s", res, err, RuleUserRate)
	}
	first.advance(time.Minute)
	if res, err := second.Allow(ctx, user(alice), "9434765913"); err != nil || res.Refused != RulePatients {
		t.Fatalf("a 4th patient, on the other replica = %+v, %v; want refused by %s", res, err, RulePatients)
	}
}

// TestRedisKeys checks what Redis holds: no identifier in clear, a user's keys under one hash
// tag, and every key expiring.
func TestRedisKeys(t *testing.T) {
	r := newRig(t, "redis", testConfig(nil))
	r.allow(t, user(alice), nhsNumber)
	r.allow(t, user(alice), "")
	r.allow(t, Caller{Subject: "system-" + bob, Organisation: orgB}, nhsNumber)
	keys := r.mr.Keys()
	if len(keys) != 6 {
		t.Fatalf("keys = %q; want 6: 2 users' rates and patients, 2 organisations' rates", keys)
	}
	tags := map[string][]string{}
	for _, k := range keys {
		if !strings.HasPrefix(k, "rate:np:rl:v1:") && !strings.HasPrefix(k, "np:rl:v1:") {
			t.Errorf("key %q lacks the prefix", k)
		}
		var stored []string
		if r.mr.Type(k) == "zset" {
			stored, _ = r.mr.ZMembers(k)
		} else {
			v, _ := r.mr.Get(k)
			stored = []string{v}
		}
		for _, id := range []string{issuer, alice, bob, orgA, orgB, nhsNumber, "9434765919"} {
			if strings.Contains(strings.ToLower(k+strings.Join(stored, " ")), strings.ToLower(id)) {
				t.Errorf("key %q or its value %q holds %q in clear", k, stored, id)
			}
		}
		if r.mr.TTL(k) <= 0 {
			t.Errorf("key %q does not expire", k)
		}
		open, end := strings.Index(k, "{"), strings.Index(k, "}")
		if open < 0 || end < open {
			t.Fatalf("key %q has no hash tag", k)
		}
		tag := k[open : end+1]
		tags[tag] = append(tags[tag], k)
	}
	for tag, ks := range tags {
		want := 1
		if strings.HasPrefix(tag, "{u:") {
			want = 2
		}
		if len(ks) != want {
			t.Errorf("hash tag %s holds %q; want %d keys", tag, ks, want)
		}
	}
}

// failingStore is a shared Store that always fails, counting its calls.
type failingStore struct{ calls int }

func (f *failingStore) Take(context.Context, string, Rate) (Decision, error) {
	f.calls++
	return Decision{}, errors.New("connection refused")
}

func (f *failingStore) SeePatient(context.Context, string, string, PatientLimit) (Decision, error) {
	f.calls++
	return Decision{}, errors.New("connection refused")
}

// TestFallback checks that a failing shared store never fails a request: it is counted in
// process, the limits still hold and a patient refusal is still a security event.
func TestFallback(t *testing.T) {
	clock := &fakeClock{now: start}
	shared := &failingStore{}
	l, err := New(testConfig(clock.Now), shared, discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, p := range []string{"9434765919", "9434765920", "9434765921"} {
		if res, err := l.Allow(ctx, user(alice), p); err != nil || !res.Allowed || !res.Degraded {
			t.Fatalf("request %d = %+v, %v; want allowed and degraded", i+1, res, err)
		}
	}
	if res, _ := l.Allow(ctx, user(alice), ""); res.Refused != RuleUserRate || !res.Degraded || res.RetryAfter != 20*time.Second {
		t.Fatalf("4th request = %+v; want refused by %s in process, retry after 20s", res, RuleUserRate)
	}
	clock.advance(time.Minute)
	if res, _ := l.Allow(ctx, user(alice), "9434765922"); res.Refused != RulePatients || !res.SecurityEvent || !res.Degraded {
		t.Fatalf("4th patient = %+v; want refused by %s, a security event, degraded", res, RulePatients)
	}
	if shared.calls != 13 {
		t.Errorf("shared store asked %d times; want 13: every count tried there first", shared.calls)
	}
}

// TestRedisDown checks the Redis store: a Redis that goes away leaves requests counted in
// process, the breaker then spares Redis, and once Redis is back and the cooldown has passed
// requests are counted in Redis again.
func TestRedisDown(t *testing.T) {
	r := newRig(t, "redis", testConfig(nil))
	r.allow(t, user(alice), "")
	r.mr.Close()
	for i := range 3 {
		if res := r.allow(t, user(alice), ""); !res.Allowed || !res.Degraded {
			t.Fatalf("request %d with Redis down = %+v; want allowed, degraded", i+1, res)
		}
	}
	if res := r.allow(t, user(alice), ""); res.Refused != RuleUserRate || !res.Degraded {
		t.Fatalf("4th request counted in process = %+v; want refused by %s, degraded", res, RuleUserRate)
	}
	if r.store.Available() {
		t.Fatal("Available with Redis down; want the breaker open")
	}
	if err := r.mr.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		time.Sleep(testRedisOptions().BreakerCooldown)
		res := r.allow(t, user(bob), "")
		if !res.Degraded {
			// Redis kept alice's one request; bob's is the first of his there.
			if !res.Allowed || !r.store.Available() {
				t.Fatalf("first request with Redis back = %+v, available %v; want allowed, closed", res, r.store.Available())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("requests still counted in process 5s after Redis came back")
		}
	}
	if got, _ := r.mr.Get("rate:" + r.keys.user(issuer, bob).rate()); got == "" {
		t.Fatal("bob's request not counted in Redis after it came back")
	}
	logged := r.storeLog.String()
	for _, msg := range []string{"level=WARN msg=\"redis rate limit store unavailable", "msg=\"redis rate limit store available again"} {
		if n := strings.Count(logged, msg); n != 1 {
			t.Errorf("log has %d lines with %s; want 1:\n%s", n, msg, logged)
		}
	}
}

// TestAllowRefusesIncompleteCaller checks that a caller without a subject or organisation is an
// error, never counted as anybody.
func TestAllowRefusesIncompleteCaller(t *testing.T) {
	r := newRig(t, "memory", testConfig(nil))
	for _, c := range []Caller{{Issuer: issuer, Organisation: orgA}, {Issuer: issuer, Subject: alice}} {
		if _, err := r.Allow(context.Background(), c, ""); !errors.Is(err, ErrIncompleteCaller) {
			t.Errorf("Allow(%+v) error = %v; want ErrIncompleteCaller", c, err)
		}
	}
}

// TestCallerOf checks which principal fields a caller is counted by.
func TestCallerOf(t *testing.T) {
	p := policy.Principal{Subject: alice, Issuer: issuer, Organisation: orgA, Role: "R8000", System: "viewer"}
	if got, want := CallerOf(p), user(alice); got != want {
		t.Fatalf("CallerOf = %+v; want %+v", got, want)
	}
}

// TestRetryAfterSeconds checks the rounding of Retry-After to whole seconds.
func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		name string
		res  Result
		want int
	}{
		{"allowed", Result{Allowed: true}, 0},
		{"refused for no time still says 1", Result{Refused: RuleUserRate}, 1},
		{"a millisecond rounds up", Result{Refused: RuleUserRate, RetryAfter: time.Millisecond}, 1},
		{"whole seconds stay", Result{Refused: RuleUserRate, RetryAfter: 20 * time.Second}, 20},
		{"a fraction over rounds up", Result{Refused: RulePatients, RetryAfter: 20*time.Second + time.Nanosecond}, 21},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.res.RetryAfterSeconds(); got != tt.want {
				t.Errorf("RetryAfterSeconds = %d; want %d", got, tt.want)
			}
		})
	}
}

// TestNewRefusesIncompleteConfig checks that each missing or wrong setting is refused, named.
func TestNewRefusesIncompleteConfig(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(*Config)
		want  string
	}{
		{"user requests", func(c *Config) { c.User.Requests = 0 }, "Config.User.Requests"},
		{"user period", func(c *Config) { c.User.Period = 0 }, "Config.User.Period"},
		{"user burst", func(c *Config) { c.User.Burst = 0 }, "Config.User.Burst"},
		{"organisation requests", func(c *Config) { c.Organisation.Requests = -1 }, "Config.Organisation.Requests"},
		{"organisation period", func(c *Config) { c.Organisation.Period = time.Microsecond }, "Config.Organisation.Period"},
		{"organisation burst", func(c *Config) { c.Organisation.Burst = 0 }, "Config.Organisation.Burst"},
		{"patients", func(c *Config) { c.Patients.Patients = 0 }, "Config.Patients.Patients"},
		{"patient window", func(c *Config) { c.Patients.Window = 0 }, "Config.Patients.Window"},
		{"short secret", func(c *Config) { c.KeySecret = c.KeySecret[:MinKeySecret-1] }, "Config.KeySecret"},
		{"prefix", func(c *Config) { c.KeyPrefix = "" }, "Config.KeyPrefix"},
		{"max keys", func(c *Config) { c.MaxKeys = 0 }, "Config.MaxKeys"},
		{"clock", func(c *Config) { c.Clock = nil }, "Config.Clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(time.Now)
			tt.spoil(&cfg)
			_, err := New(cfg, nil, discard())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v; want one naming %s", err, tt.want)
			}
		})
	}
	if _, err := New(testConfig(time.Now), nil, nil); err == nil {
		t.Error("New without a logger succeeded")
	}
}

// TestNewRedisRefusesIncompleteOptions checks that each missing Redis setting is refused, named.
func TestNewRedisRefusesIncompleteOptions(t *testing.T) {
	client := newClient(t, "127.0.0.1:1")
	tests := []struct {
		name  string
		spoil func(*RedisOptions)
		want  string
	}{
		{"op timeout", func(o *RedisOptions) { o.OpTimeout = 0 }, "OpTimeout"},
		{"breaker failures", func(o *RedisOptions) { o.BreakerFailures = 0 }, "BreakerFailures"},
		{"breaker cooldown", func(o *RedisOptions) { o.BreakerCooldown = 0 }, "BreakerCooldown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testRedisOptions()
			tt.spoil(&opts)
			if _, err := NewRedis(client, opts, discard()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewRedis error = %v; want one naming %s", err, tt.want)
			}
		})
	}
	if _, err := NewRedis(nil, testRedisOptions(), discard()); err == nil {
		t.Error("NewRedis without a client succeeded")
	}
}

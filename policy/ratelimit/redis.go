package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// ErrRedisUnavailable reports that the Redis store's breaker is open (or probing) and the call
// was refused without reaching Redis. The Limiter counts such a request in process.
var ErrRedisUnavailable = errors.New("redis rate limit store unavailable")

// patientsScript keeps one user's window of distinct patients in a sorted set at KEYS[1]: each
// member a patient's hash, its score when the user last requested that patient (milliseconds of
// Redis's clock, so that every replica agrees). It drops members older than the window
// (ARGV[3] ms); admits ARGV[1] when already a member or when fewer than ARGV[2] members remain,
// recording it at now and keeping the set one window past its last change; and otherwise returns
// how long until the oldest member leaves. A sorted set rather than a HyperLogLog: the count
// must be exact at limits as small as 50, repeats of a patient must be recognised, and the
// oldest member tells the Retry-After. It holds at most ARGV[2] members, so it stays small.
//
// It returns {1, 0} when admitted, {0, ms to wait} when refused.
const patientsScript = `
local key, member = KEYS[1], ARGV[1]
local limit, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("ZREMRANGEBYSCORE", key, "-inf", now - window)
if not redis.call("ZSCORE", key, member) and redis.call("ZCARD", key) >= limit then
  local oldest = redis.call("ZRANGE", key, 0, 0, "WITHSCORES")
  return {0, tonumber(oldest[2]) + window - now}
end
redis.call("ZADD", key, now, member)
redis.call("PEXPIRE", key, window)
return {1, 0}
`

// RedisOptions configures a Redis store. Every field is required but StateChanged.
type RedisOptions struct {
	// OpTimeout bounds each call to Redis, retries included; a slower Redis counts as failed
	// and the request is counted in process.
	OpTimeout time.Duration
	// BreakerFailures is how many consecutive failed calls open the breaker.
	BreakerFailures uint32
	// BreakerCooldown is how long the breaker stays open (every call counted in process at
	// once) before one probe call is let through.
	BreakerCooldown time.Duration
	// StateChanged, when set, is told each breaker state change ("closed", "half-open",
	// "open"), for metrics. It runs under the breaker's lock and must return at once.
	StateChanged func(state string)
}

// Redis is a Store in Redis (single node, Sentinel or Cluster), shared by every replica that
// uses the same Redis and Config.KeySecret. Request rates use go-redis/redis_rate's GCRA script,
// under keys "rate:" + the Limiter's key. Distinct patients use a sorted set per user, each
// member a patient's hash scored with when the user last requested them: exact at any limit and
// able to tell a repeat, which a HyperLogLog is not, and never larger than the limit. Both
// scripts read Redis's own clock, so replicas' clocks do not matter, and touch one key each.
//
// A circuit breaker guards Redis as the cache's does: after BreakerFailures consecutive
// failures calls fail at once with ErrRedisUnavailable for BreakerCooldown, then one probe
// decides whether Redis is back. Each state change is logged once. A caller that cancels its
// context does not count against Redis's health.
//
// Redis is safe for concurrent use.
type Redis struct {
	client    redis.UniversalClient
	rates     *redis_rate.Limiter
	patients  *redis.Script
	cb        *gobreaker.CircuitBreaker[Decision]
	opTimeout time.Duration
}

// NewRedis returns a Redis store using client, which the caller keeps and closes. The client
// should be made with ContextTimeoutEnabled, so that OpTimeout bounds its socket reads; log
// receives the breaker's state changes and must not be nil.
func NewRedis(client redis.UniversalClient, opts RedisOptions, log *slog.Logger) (*Redis, error) {
	switch {
	case client == nil || log == nil:
		return nil, errors.New("create redis rate limit store: client and logger are required")
	case opts.OpTimeout <= 0:
		return nil, fmt.Errorf("create redis rate limit store: RedisOptions.OpTimeout is %v; it must be positive", opts.OpTimeout)
	case opts.BreakerFailures == 0:
		return nil, errors.New("create redis rate limit store: RedisOptions.BreakerFailures is 0; it must be at least 1")
	case opts.BreakerCooldown <= 0:
		return nil, fmt.Errorf("create redis rate limit store: RedisOptions.BreakerCooldown is %v; it must be positive", opts.BreakerCooldown)
	}
	r := &Redis{
		client:    client,
		rates:     redis_rate.NewLimiter(client),
		patients:  redis.NewScript(patientsScript),
		opTimeout: opts.OpTimeout,
	}
	r.cb = gobreaker.NewCircuitBreaker[Decision](gobreaker.Settings{
		Name:          "redis-rate-limits",
		MaxRequests:   1,
		Timeout:       opts.BreakerCooldown,
		ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= opts.BreakerFailures },
		IsExcluded:    func(err error) bool { return errors.Is(err, errCallerGone) },
		OnStateChange: stateLogger(opts.StateChanged, log),
	})
	return r, nil
}

// stateLogger returns the breaker's OnStateChange: it tells notify, when set, and logs the
// change once. It runs under the breaker's lock, so it only logs and returns.
func stateLogger(notify func(string), log *slog.Logger) func(string, gobreaker.State, gobreaker.State) {
	return func(_ string, from, to gobreaker.State) {
		if notify != nil {
			notify(to.String())
		}
		level, msg := slog.LevelInfo, "redis rate limit store available again"
		if to == gobreaker.StateOpen {
			level, msg = slog.LevelWarn, "redis rate limit store unavailable; each replica counts limits on its own"
		} else if to == gobreaker.StateHalfOpen {
			msg = "redis rate limit store probing"
		}
		log.Log(context.Background(), level, msg, "from", from.String(), "to", to.String())
	}
}

// errCallerGone marks a failure caused by the caller's own context ending.
var errCallerGone = errors.New("caller context ended")

// call runs op under the breaker and OpTimeout; what names the operation in errors.
func (r *Redis) call(ctx context.Context, what string, op func(ctx context.Context) (Decision, error)) (Decision, error) {
	d, err := r.cb.Execute(func() (Decision, error) {
		octx, cancel := context.WithTimeout(ctx, r.opTimeout)
		defer cancel()
		d, err := op(octx)
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", errCallerGone, err)
		}
		return d, err
	})
	switch {
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		return Decision{}, fmt.Errorf("%s: %w: %w", what, ErrRedisUnavailable, err)
	case err != nil:
		return Decision{}, fmt.Errorf("%s in redis: %w", what, err)
	}
	return d, nil
}

// Take implements Store with redis_rate's GCRA.
func (r *Redis) Take(ctx context.Context, key string, rate Rate) (Decision, error) {
	return r.call(ctx, "count request", func(ctx context.Context) (Decision, error) {
		res, err := r.rates.Allow(ctx, key, redis_rate.Limit{Rate: rate.Requests, Period: rate.Period, Burst: rate.Burst})
		if err != nil {
			return Decision{}, err
		}
		if res.Allowed > 0 {
			return Decision{Allowed: true}, nil
		}
		return Decision{RetryAfter: res.RetryAfter}, nil
	})
}

// SeePatient implements Store with a sorted set per user.
func (r *Redis) SeePatient(ctx context.Context, key, patient string, p PatientLimit) (Decision, error) {
	return r.call(ctx, "count patient", func(ctx context.Context) (Decision, error) {
		out, err := r.patients.Run(ctx, r.client, []string{key}, patient, p.Patients, p.Window.Milliseconds()).Int64Slice()
		if err != nil {
			return Decision{}, err
		}
		if len(out) != 2 {
			return Decision{}, fmt.Errorf("patients script returned %d values, want 2", len(out))
		}
		return Decision{Allowed: out[0] == 1, RetryAfter: time.Duration(out[1]) * time.Millisecond}, nil
	})
}

// Available reports whether the breaker is closed: calls go to Redis.
func (r *Redis) Available() bool { return r.cb.State() == gobreaker.StateClosed }

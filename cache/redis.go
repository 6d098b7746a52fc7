package cache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/sony/gobreaker/v2"
)

// ErrUnavailable reports that the Redis breaker is open (or probing) and the call was refused
// without reaching Redis. Callers treat it as a miss and go to the upstream.
var ErrUnavailable = errors.New("redis cache unavailable")

// RedisOptions configures a Redis cache. The topology follows redis.NewUniversalClient: a
// MasterName selects Sentinel (Addrs are the sentinels), two or more Addrs select Redis Cluster,
// and one address a single node. The time-outs and the breaker's settings are required:
// NewRedis refuses options with one missing (cmd/nirproxy's configuration holds the defaults).
type RedisOptions struct {
	// Addrs are host:port addresses of the node, the sentinels or the cluster seed nodes.
	Addrs []string
	// MasterName is the Sentinel master name; empty when not using Sentinel.
	MasterName string
	// Username and Password authenticate to Redis (ACL user or requirepass).
	Username, Password string
	// SentinelPassword authenticates to the sentinels when they require it.
	SentinelPassword string
	// DB is the database number (single node and Sentinel only; Cluster has only 0).
	DB int
	// TLS enables TLS with this configuration when non-nil.
	TLS *tls.Config

	// MaxRetention caps every entry's TTL: nothing stays in Redis longer.
	MaxRetention time.Duration

	// OpTimeout bounds each Get, Set or Delete including dialling and retries.
	OpTimeout time.Duration
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound one socket read or write.
	ReadTimeout, WriteTimeout time.Duration
	// PoolSize is connections per node; 0 keeps go-redis's own default (10 per CPU).
	PoolSize int

	// BreakerFailures is how many consecutive failed calls open the breaker.
	BreakerFailures uint32
	// BreakerCooldown is how long the breaker stays open before one probe call is let
	// through.
	BreakerCooldown time.Duration

	// StateChanged, when set, is told each breaker state change ("closed", "half-open",
	// "open"), for metrics. It runs under the breaker's lock and must return at once.
	StateChanged func(state string)
}

// check names the first of o's required settings that is missing or out of range.
func (o RedisOptions) check() error {
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"MaxRetention", o.MaxRetention}, {"OpTimeout", o.OpTimeout}, {"DialTimeout", o.DialTimeout},
		{"ReadTimeout", o.ReadTimeout}, {"WriteTimeout", o.WriteTimeout}, {"BreakerCooldown", o.BreakerCooldown},
	}
	for _, f := range durations {
		if f.d <= 0 {
			return fmt.Errorf("RedisOptions.%s is %v; it must be positive", f.name, f.d)
		}
	}
	switch {
	case len(o.Addrs) == 0:
		return errors.New("RedisOptions.Addrs is empty; it needs the address of a node, of the cluster's seed nodes or of the sentinels")
	case o.BreakerFailures == 0:
		return errors.New("RedisOptions.BreakerFailures is 0; it must be at least 1")
	case o.PoolSize < 0 || o.DB < 0:
		return fmt.Errorf("RedisOptions.PoolSize (%d) and DB (%d) cannot be negative", o.PoolSize, o.DB)
	}
	return nil
}

// Redis is a Cache over Redis (single node, Sentinel or Cluster). Values are sealed with a
// Sealer bound to their key; TTLs are capped at MaxRetention. A circuit breaker guards Redis:
// after BreakerFailures consecutive failures calls fail at once with ErrUnavailable for
// BreakerCooldown, then one probe decides whether Redis is back, so a restarted Redis is picked up
// without restarting nirproxy. Each breaker state change is logged once.
//
// Errors never mean more than a miss to callers: Get returns (nil, false, err). A value that does
// not open (tampered, or sealed under a retired key) is a miss with an error wrapping
// ErrUnsealable and does not count against Redis's health. A caller that cancels its context does
// not count against it either.
//
// Redis is safe for concurrent use.
type Redis struct {
	client       redis.UniversalClient
	sealer       *Sealer
	cb           *gobreaker.CircuitBreaker[[]byte]
	maxRetention time.Duration
	opTimeout    time.Duration
}

// NewClient is a client of the Redis opts describes, connecting lazily, with the time-outs of
// opts and context time-outs enabled: the one way nirproxy makes a Redis client, for the cache
// and for the rate limits that share its Redis. The caller closes it.
func (opts RedisOptions) NewClient() redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 opts.Addrs,
		MasterName:            opts.MasterName,
		Username:              opts.Username,
		Password:              opts.Password,
		SentinelPassword:      opts.SentinelPassword,
		DB:                    opts.DB,
		TLSConfig:             opts.TLS,
		ContextTimeoutEnabled: true,
		DialTimeout:           opts.DialTimeout,
		ReadTimeout:           opts.ReadTimeout,
		WriteTimeout:          opts.WriteTimeout,
		PoolTimeout:           opts.OpTimeout,
		PoolSize:              opts.PoolSize,
		MaxRetries:            1,
		MinRetryBackoff:       5 * time.Millisecond,
		MaxRetryBackoff:       50 * time.Millisecond,
		DialerRetries:         1,
		DialerRetryTimeout:    10 * time.Millisecond,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
}

// NewRedis connects lazily to Redis as opts describe (no command is sent until the first call) and
// seals values with sealer. log receives breaker state changes; it must not be nil.
func NewRedis(opts RedisOptions, sealer *Sealer, log *slog.Logger) (*Redis, error) {
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("create redis cache: %w", err)
	}
	if sealer == nil || log == nil {
		return nil, errors.New("create redis cache: sealer and logger are required")
	}
	client := opts.NewClient()
	r := &Redis{client: client, sealer: sealer, maxRetention: opts.MaxRetention, opTimeout: opts.OpTimeout}
	r.cb = gobreaker.NewCircuitBreaker[[]byte](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,
		Timeout:     opts.BreakerCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= opts.BreakerFailures },
		// A caller that gave up says nothing about Redis.
		IsExcluded: func(err error) bool { return errors.Is(err, errCallerGone) },
		// OnStateChange runs under the breaker's lock: log and return.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if opts.StateChanged != nil {
				opts.StateChanged(to.String())
			}
			switch to {
			case gobreaker.StateOpen:
				log.Warn("redis cache unavailable; serving from upstreams", "from", from.String(), "to", to.String(), "retry_after", opts.BreakerCooldown)
			case gobreaker.StateHalfOpen:
				log.Info("redis cache probing", "from", from.String(), "to", to.String())
			default:
				log.Info("redis cache available again", "from", from.String(), "to", to.String())
			}
		},
	})
	return r, nil
}

// errCallerGone marks a failure caused by the caller's own context ending.
var errCallerGone = errors.New("caller context ended")

// do runs one Redis command under the breaker and the per-call timeout.
func (r *Redis) do(ctx context.Context, op func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	v, err := r.cb.Execute(func() ([]byte, error) {
		octx, cancel := context.WithTimeout(ctx, r.opTimeout)
		defer cancel()
		v, err := op(octx)
		if err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", errCallerGone, err)
		}
		return v, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return v, err
}

// Get implements Cache.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	sealed, err := r.do(ctx, func(ctx context.Context) ([]byte, error) {
		v, err := r.client.Get(ctx, key).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		return v, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("get cache entry from redis: %w", err)
	}
	if sealed == nil {
		return nil, false, nil
	}
	v, err := r.sealer.Open(sealed, []byte(key))
	if err != nil {
		return nil, false, fmt.Errorf("get cache entry from redis: %w", err)
	}
	return v, true, nil
}

// Set implements Cache. The TTL is capped at MaxRetention; a TTL under a millisecond removes the
// key instead, as Redis would otherwise keep the value forever.
func (r *Redis) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ttl = min(ttl, r.maxRetention)
	if ttl < time.Millisecond {
		return r.Delete(ctx, key)
	}
	sealed, err := r.sealer.Seal(value, []byte(key))
	if err != nil {
		return fmt.Errorf("set cache entry in redis: %w", err)
	}
	_, err = r.do(ctx, func(ctx context.Context) ([]byte, error) {
		return nil, r.client.Set(ctx, key, sealed, ttl).Err()
	})
	if err != nil {
		return fmt.Errorf("set cache entry in redis: %w", err)
	}
	return nil
}

// Delete implements Cache. Each key is deleted by its own command (pipelined), so keys in
// different Cluster slots can be deleted together.
func (r *Redis) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := r.do(ctx, func(ctx context.Context) ([]byte, error) {
		cmds, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Del(ctx, k)
			}
			return nil
		})
		return nil, firstErr(cmds, err)
	})
	if err != nil {
		return fmt.Errorf("delete cache entries from redis: %w", err)
	}
	return nil
}

// Index implements Cache: SADD for each link and PEXPIRE for each index touched, in one
// pipeline. The ttl is capped at MaxRetention.
func (r *Redis) Index(ctx context.Context, links []Link, ttl time.Duration) error {
	ttl = min(ttl, r.maxRetention)
	if len(links) == 0 || ttl < time.Millisecond {
		return nil
	}
	_, err := r.do(ctx, func(ctx context.Context) ([]byte, error) {
		cmds, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			seen := map[string]bool{}
			for _, l := range links {
				p.SAdd(ctx, l.Index, l.Member)
			}
			for _, l := range links {
				if !seen[l.Index] {
					seen[l.Index] = true
					p.PExpire(ctx, l.Index, ttl)
				}
			}
			return nil
		})
		return nil, firstErr(cmds, err)
	})
	if err != nil {
		return fmt.Errorf("index cache entries in redis: %w", err)
	}
	return nil
}

// Members implements Cache.
func (r *Redis) Members(ctx context.Context, indexKey string) ([]string, error) {
	var out []string
	_, err := r.do(ctx, func(ctx context.Context) ([]byte, error) {
		m, err := r.client.SMembers(ctx, indexKey).Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		out = m
		return nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("list cache index in redis: %w", err)
	}
	return out, nil
}

// firstErr is the pipeline's error or the first failed command's (redis.Nil is no error).
func firstErr(cmds []redis.Cmder, err error) error {
	for _, c := range cmds {
		if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
			return e
		}
	}
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// Ping checks that Redis answers, through the breaker.
func (r *Redis) Ping(ctx context.Context) error {
	_, err := r.do(ctx, func(ctx context.Context) ([]byte, error) {
		return nil, r.client.Ping(ctx).Err()
	})
	if err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// Available reports whether the breaker around Redis is closed.
func (r *Redis) Available() bool { return r.cb.State() == gobreaker.StateClosed }

// Close closes the connections to Redis.
func (r *Redis) Close() error {
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("close redis cache: %w", err)
	}
	return nil
}

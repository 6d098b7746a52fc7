package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/dicomweb"
)

// keyPrefix starts every key nirproxy writes to Redis. It is in clear, so it holds no
// identifier; v1 changes if the layout of keys or values ever does.
const keyPrefix = "nirproxy:v1:"

// openCache builds the cache Store the configuration asks for: nil when the cache is off, over
// Redis when cache.redis.addrs is set, in process otherwise. The returned close function
// releases the Redis connections (a no-op otherwise).
func openCache(cfg config.Cache, reg prometheus.Registerer, log *slog.Logger) (*cache.Store, func() error, error) {
	noop := func() error { return nil }
	if !cfg.Enabled {
		return nil, noop, nil
	}
	var metrics *cache.Metrics
	if reg != nil {
		metrics = cache.NewMetrics(reg)
	}
	opts := cache.StoreOptions{MaxRetention: cfg.MaxRetention.Std(), Metrics: metrics, Log: log}
	if !cfg.RedisEnabled() {
		st, err := cache.NewLocalStore(int64(cfg.MemoryMaxBytes), []byte(cfg.KeySecret), opts)
		if err != nil {
			return nil, noop, fmt.Errorf("open in-process cache: %w", err)
		}
		return st, noop, nil
	}
	keys, err := cfg.Keys()
	if err != nil {
		return nil, noop, fmt.Errorf("open redis cache: %w", err)
	}
	sealer, err := cache.NewSealer(keys)
	if err != nil {
		return nil, noop, fmt.Errorf("open redis cache: %w", err)
	}
	keyer, err := cache.NewKeyer([]byte(cfg.KeySecret), keyPrefix)
	if err != nil {
		return nil, noop, fmt.Errorf("open redis cache: %w", err)
	}
	ro := cfg.RedisOptions()
	ro.StateChanged = metrics.BackendState
	// go-redis logs each failed dial itself; while Redis is down that is a line per request.
	// The breaker already logs each state change once, so its own lines go to debug.
	redis.SetLogger(redisLogger{log: log})
	r, err := cache.NewRedis(ro, sealer, log)
	if err != nil {
		return nil, noop, fmt.Errorf("open redis cache: %w", err)
	}
	st, err := cache.NewStore(r, keyer, opts)
	if err != nil {
		r.Close()
		return nil, noop, fmt.Errorf("open redis cache: %w", err)
	}
	return st, r.Close, nil
}

// cacheCommand runs `nirproxy cache purge --config FILE --patient NHSNUMBER`: it removes every
// cache entry about the patient from the configured Redis.
func cacheCommand(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "purge" {
		return errors.New("usage: nirproxy cache purge --config FILE --patient NHSNUMBER")
	}
	fs := flag.NewFlagSet("cache purge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration `FILE` (YAML) naming the Redis cache")
	patient := fs.String("patient", "", "the patient's `NHSNUMBER` (10 digits)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *path == "" || *patient == "" {
		return errors.New("cache purge needs --config FILE and --patient NHSNUMBER")
	}
	nhs, err := dicomweb.NormaliseNHSNumber(*patient)
	if err != nil {
		// The message never repeats the number: terminals and shells keep scrollback.
		return errors.New("--patient is not a valid NHS number (10 digits with a correct check digit)")
	}
	cfg, err := loadConfig(*path, environ, stderr)
	if err != nil {
		return err
	}
	if !cfg.Cache.RedisEnabled() {
		fmt.Fprintf(stdout, "No Redis cache is configured in %s: the in-process cache lives only inside each running nirproxy, holds nothing after a restart, and keeps nothing longer than cache.maxRetention (%s).\n", *path, cfg.Cache.MaxRetention)
		return nil
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, closeCache, err := openCache(cfg.Cache, nil, log)
	if err != nil {
		return err
	}
	defer closeCache()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	n, err := st.PurgePatient(ctx, nhs)
	if err != nil {
		return fmt.Errorf("purge: %d keys removed before it failed; run it again: %w", n, err)
	}
	fmt.Fprintf(stdout, "Removed %d cache keys about the patient from Redis.\n", n)
	return nil
}

// redisLogger passes go-redis's own log lines (connection failures, with addresses but never
// keys or values) to slog at debug level.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client", "msg", fmt.Sprintf(format, v...))
}

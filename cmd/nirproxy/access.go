package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
	"github.com/nirproxy/nirproxy/policy/authn"
	"github.com/nirproxy/nirproxy/policy/authz"
	"github.com/nirproxy/nirproxy/policy/mtls"
	"github.com/nirproxy/nirproxy/policy/ratelimit"
)

// rateLimitKeyPrefix starts every key of the rate limits in Redis (redis_rate puts "rate:"
// before its own): a namespace apart from the cache's keyPrefix, so that the cache's keys and
// the limits' never mix. Like the cache's, it holds no identifier.
const rateLimitKeyPrefix = "nirproxy:rl:v1:"

// access is the governance serve wires into every data route: who is calling (authn: a bearer
// token, or a system's client certificate), whether the data sharing agreement lets it do what
// it asks (authz, over the onboarding registry file), within what limits (ratelimit), and the
// record of it (audit, in the spool).
type access struct {
	authn policy.Authenticator
	// tokens is authn's bearer-token half, whose key refreshes close stops.
	tokens *authn.Authenticator
	// authz is the rules, then the limits: a caller the rules refuse spends nothing of its
	// limits.
	authz policy.Authorizer
	// audit records every access in spool, which close closes.
	audit    *audit.Spooled
	spool    *spool.Spool
	registry *authz.RegistryFile
	// stop ends the registry's watch and releases the rate limits' Redis client.
	stop func()
}

// openAccess builds the access control cfg describes, and the audit spool, telling the time by
// now (time.Now but in tests). It contacts no issuer (keys are fetched when the first token
// needs them) but reads the registry file and opens the spool (recovering it after a crash),
// and fails without either: nirproxy does not run without authentication, onboarding and the
// audit.
func openAccess(ctx context.Context, cfg config.Config, now func() time.Time, log *slog.Logger) (_ *access, err error) {
	if len(cfg.Authentication.Issuers) == 0 || cfg.Onboarding.RegistryFile == "" || cfg.Audit.SpoolDir == "" {
		return nil, errors.New("open access control: auth.issuers, onboarding.registryFile and audit.spoolDir are required")
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	registry, err := authz.OpenRegistryFile(cfg.Onboarding.RegistryFile, log)
	if err != nil {
		return nil, fmt.Errorf("open access control: %w", err)
	}
	rules, err := cfg.AuthzRules()
	if err != nil {
		return nil, fmt.Errorf("open access control: %w", err)
	}
	decide, err := authz.NewAuthorizer(registry, rules, now, log)
	if err != nil {
		return nil, fmt.Errorf("open access control: %w", err)
	}
	sp, err := spool.Open(cfg.Audit.SpoolOptions(now), log)
	if err != nil {
		return nil, fmt.Errorf("open the audit spool: %w", err)
	}
	undo = append(undo, func() { sp.Close() })
	limits, closeLimits, err := openRateLimit(cfg, now, log)
	if err != nil {
		return nil, err
	}
	undo = append(undo, closeLimits)
	systems, err := mtls.New(registry)
	if err != nil {
		return nil, fmt.Errorf("open access control: %w", err)
	}
	tokens, err := authn.New(ctx, cfg.Authn(now, nil))
	if err != nil {
		return nil, fmt.Errorf("open access control: %w", err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	go registry.Watch(watchCtx, cfg.Onboarding.ReloadEvery.Std())
	return &access{
		authn:    callers{tokens: tokens, systems: systems},
		tokens:   tokens,
		authz:    policy.Authorizers{decide, ratelimit.NewGuard(limits, log)},
		audit:    audit.NewSpooled(sp),
		spool:    sp,
		registry: registry,
		stop: func() {
			stopWatch()
			closeLimits()
		},
	}, nil
}

// close stops the background work of a (key refreshes, the registry's watch, the Redis client)
// and closes the audit spool; no request may be in flight.
func (a *access) close(ctx context.Context, log *slog.Logger) {
	if err := a.tokens.Close(ctx); err != nil {
		log.Warn("stop refreshing token issuers' keys", "err", err)
	}
	a.stop()
	if err := a.spool.Close(); err != nil {
		log.Error("close the audit spool", "err", err)
	}
}

// callers authenticates every data request: by its bearer token when it has an Authorization
// header; else, when the listener verified a client certificate, as the system the
// certificate is registered to (a certificate registered to none is refused); else it is
// refused for want of a token. A token always wins over a certificate: a viewer's user is
// never taken for the system whose certificate the connection carries.
type callers struct {
	tokens  policy.Authenticator
	systems policy.Authenticator
}

// Authenticate implements policy.Authenticator.
func (c callers) Authenticate(r *http.Request) (policy.Principal, error) {
	if len(r.Header.Values("Authorization")) == 0 && mtls.Verified(r) {
		return c.systems.Authenticate(r)
	}
	return c.tokens.Authenticate(r)
}

// openRateLimit builds the limiter: counting in the cache's Redis when one is configured, so
// that replicas share the counts, else in process. The returned function closes the Redis
// client.
func openRateLimit(cfg config.Config, now func() time.Time, log *slog.Logger) (*ratelimit.Limiter, func(), error) {
	secret := make([]byte, ratelimit.MinKeySecret)
	_, _ = rand.Read(secret) // used only when rateLimit.keySecret is empty; Warnings says so
	rc := cfg.RateLimiter(rateLimitKeyPrefix, secret, now)
	noop := func() {}
	if !cfg.Cache.RedisEnabled() {
		l, err := ratelimit.New(rc, nil, log)
		if err != nil {
			return nil, noop, fmt.Errorf("open rate limits: %w", err)
		}
		return l, noop, nil
	}
	client := cfg.Cache.RedisOptions().NewClient()
	store, err := ratelimit.NewRedis(client, cfg.Cache.RateLimitRedis(), log)
	if err != nil {
		client.Close()
		return nil, noop, fmt.Errorf("open rate limits in redis: %w", err)
	}
	l, err := ratelimit.New(rc, store, log)
	if err != nil {
		client.Close()
		return nil, noop, fmt.Errorf("open rate limits: %w", err)
	}
	return l, func() { client.Close() }, nil
}

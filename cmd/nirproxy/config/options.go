package config

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/dicomweb"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy/authn"
	"github.com/nirproxy/nirproxy/policy/authz"
	"github.com/nirproxy/nirproxy/policy/ratelimit"
	"github.com/nirproxy/nirproxy/upstream"
)

// DICOMweb is the DICOMweb front's configuration: links from PublicURL, CORS, paging and query
// caps, request bounds, and the partial-answer policy (stale copies only with a cache).
func (c Config) DICOMweb() dicomweb.Config {
	return dicomweb.Config{
		Forwarding:         dicomweb.Forwarding{PublicURL: c.PublicURL},
		AllowedOrigins:     c.CORS.AllowedOrigins,
		CORSMaxAge:         c.CORS.MaxAge.Std(),
		PatientIDIssuer:    c.PatientIdentifierIssuer,
		RequestTimeout:     c.RequestTimeout.Std(),
		ClientWriteTimeout: c.ClientWriteTimeout.Std(),
		MaxFrames:          c.MaxFrames,
		ThumbnailViewport:  c.ThumbnailViewport,
		Search: dicomweb.SearchLimits{
			MaxResultsPerSource: c.Search.MaxResultsPerSource,
			DefaultLimit:        c.Search.DefaultLimit,
			MaxLimit:            c.Search.MaxLimit,
			MaxQueryLength:      c.Search.MaxQueryLength,
			MaxMatchingKeys:     c.Search.MaxMatchingKeys,
			MaxIncludeFields:    c.Search.MaxIncludeFields,
			MaxValuesPerKey:     c.Search.MaxValuesPerKey,
		},
		Fallback: fallback.Policy{
			Search:     fallback.Partial(c.PartialSearch),
			Retrieve:   fallback.Partial(c.PartialRetrieve),
			RetryAfter: c.RetryAfter.Std(),
			ServeStale: c.Cache.Enabled && c.Cache.ServeStale,
		},
	}
}

// This file turns a validated configuration into the settings of the packages it configures,
// which have no defaults of their own: every field they take is set here.

// UpstreamSource is s as package upstream describes a trust, with the TLS configuration of its
// connections (see [SourceTLS]), whose files it reads. It fails only for what Validate refuses:
// a URL that does not parse, tls files that cannot be read or do not parse.
func (s Source) UpstreamSource() (upstream.SourceConfig, error) {
	u, err := url.Parse(strings.TrimSuffix(s.URL, "/"))
	if err != nil {
		return upstream.SourceConfig{}, fmt.Errorf("source %s: parse url: %w", s.ID, err)
	}
	tlsConfig, problems := s.TLS.clientTLS("tls")
	if len(problems) > 0 {
		return upstream.SourceConfig{}, fmt.Errorf("source %s: load its tls files: %w", s.ID, problems)
	}
	return upstream.SourceConfig{
		ID:       s.ID,
		Name:     s.Name,
		BaseURL:  u,
		Priority: s.Priority,
		Timeout:  s.Timeout.Std(),
		Required: s.Required,
		Auth: upstream.Auth{
			Type:     upstream.AuthType(s.Auth.Type),
			Username: s.Auth.Username,
			Password: string(s.Auth.Password),
			Token:    string(s.Auth.Token),
		},
		TLS:             tlsConfig,
		PatientID:       upstream.PatientIDAttribute(s.PatientID.Attribute),
		PatientIDIssuer: s.PatientID.Issuer,
	}, nil
}

// UpstreamOptions are s's protections as package upstream takes them: its HTTP client, its
// breaker and its concurrency limit. The caller adds what is not configuration: metrics,
// incidents and the cache (see [Cache.SourceCache]).
func (s Source) UpstreamOptions() upstream.Options {
	return upstream.Options{
		HTTP: upstream.HTTPOptions{
			HeaderTimeout:   s.Timeout.Std(),
			RetryMax:        s.Retries,
			RetryWaitMin:    s.RetryWaitMin.Std(),
			RetryWaitMax:    s.RetryWaitMax.Std(),
			MaxConnsPerHost: s.MaxConnections,
			IdleTimeout:     s.IdleTimeout.Std(),
		},
		Breaker:       s.Breaker.Options(),
		MaxConcurrent: s.MaxConcurrent,
	}
}

// Options is b as package upstream takes it.
func (b Breaker) Options() upstream.BreakerOptions {
	return upstream.BreakerOptions{
		Window:                 b.Window.Std(),
		MinRequests:            uint32(max(b.MinRequests, 0)),
		FailureRatio:           b.FailureRatio,
		ConsecutiveUnreachable: uint32(max(b.ConsecutiveUnreachable, 0)),
		OpenFor:                b.OpenFor.Std(),
	}
}

// SourceCache is what each source keeps in st, as package upstream takes it: nothing when st is
// nil (the cache is off).
func (c Cache) SourceCache(st *cache.Store) upstream.CacheOptions {
	if st == nil {
		return upstream.CacheOptions{}
	}
	return upstream.CacheOptions{
		Store:            st,
		Search:           c.Search.Std(),
		Metadata:         c.Metadata.Std(),
		Rendered:         c.Rendered.Freshness().Std(),
		RenderedMaxBytes: int64(c.Rendered.MaxBytes),
	}
}

// RedisOptions is the Redis cache as package cache takes it. The caller adds StateChanged.
func (c Cache) RedisOptions() cache.RedisOptions {
	r := c.Redis
	o := cache.RedisOptions{
		Addrs:            r.Addrs,
		MasterName:       r.MasterName,
		Username:         r.Username,
		Password:         string(r.Password),
		SentinelPassword: string(r.SentinelPassword),
		DB:               r.DB,
		MaxRetention:     c.MaxRetention.Std(),
		OpTimeout:        r.OpTimeout.Std(),
		DialTimeout:      r.DialTimeout.Std(),
		ReadTimeout:      r.ReadTimeout.Std(),
		WriteTimeout:     r.WriteTimeout.Std(),
		PoolSize:         r.PoolSize,
		BreakerFailures:  uint32(max(r.BreakerFailures, 0)),
		BreakerCooldown:  r.BreakerCooldown.Std(),
	}
	if r.TLS {
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return o
}

// Std is f as package cache takes it.
func (f Freshness) Std() cache.Freshness {
	return cache.Freshness{Fresh: f.Fresh.Std(), Stale: f.Stale.Std()}
}

// Authn is the auth section as package authn takes it. Its HTTP client, for keys, discovery
// documents and userinfo, carries auth.httpTimeout and sends through transport (nil:
// http.DefaultTransport); clock tells the time (time.Now in production).
func (c Config) Authn(clock func() time.Time, transport http.RoundTripper) authn.Config {
	a := c.Authentication
	issuers := make([]authn.Options, len(a.Issuers))
	for i, iss := range a.Issuers {
		issuers[i] = iss.Options()
	}
	return authn.Config{
		Issuers:    issuers,
		CacheTTL:   a.CacheTTL.Std(),
		CacheSize:  a.CacheSize,
		Clock:      clock,
		HTTPClient: &http.Client{Transport: transport, Timeout: a.HTTPTimeout.Std()},
	}
}

// Options is the issuer as package authn takes it. Its cis2 settings are passed on for profile
// cis2, and for another profile only where the file changed them from their defaults (which
// authn then refuses, naming them); its claims are passed on as given.
func (t TokenIssuer) Options() authn.Options {
	o := authn.Options{
		Issuer:     t.Issuer,
		JWKSURL:    t.JWKSURL,
		Discovery:  t.Discovery,
		Audiences:  slices.Clone(t.Audiences),
		Algorithms: slices.Clone(t.Algorithms),
		ClockSkew:  t.ClockSkew.Std(),
		KeyRefresh: t.KeyRefresh.Std(),
		KeyMaxAge:  t.KeyMaxAge.Std(),
		Profile:    t.Profile,
		Claims:     authn.ClaimNames(t.Claims),
	}
	if t.Profile == authn.ProfileCIS2 || t.CIS2 != DefaultTokenIssuer().CIS2 {
		o.CIS2 = authn.CIS2Options(t.CIS2)
	}
	return o
}

// AuthzRules is the authorization section as package authz takes it, with a copy of the roles
// map. It fails only for a dsptYearStart or dsptTimeZone that Validate refuses.
func (c Config) AuthzRules() (authz.Rules, error) {
	a := c.Authorization
	year, err := a.dsptYear()
	if err != nil {
		return authz.Rules{}, fmt.Errorf("read authorization.dsptYearStart and dsptTimeZone: %w", err)
	}
	roles := make(authz.RoleActions, len(a.RoleActions))
	for role, perms := range a.RoleActions {
		roles[role] = slices.Clone(perms)
	}
	return authz.Rules{RoleActions: roles, DSPTYear: year, AcceptRequestPurpose: a.AcceptRequestPurpose}, nil
}

// RateLimiter is the rateLimit section as package ratelimit takes it, keys under keyPrefix;
// secret is the key secret to use when rateLimit.keySecret is empty (a random one, made by the
// caller), and clock tells the time.
func (c Config) RateLimiter(keyPrefix string, secret []byte, clock func() time.Time) ratelimit.Config {
	r := c.RateLimit
	if r.KeySecret != "" {
		secret = []byte(r.KeySecret)
	}
	rate := func(r Rate) ratelimit.Rate {
		return ratelimit.Rate{Requests: r.Requests, Period: r.Period.Std(), Burst: r.Burst}
	}
	return ratelimit.Config{
		User:         rate(r.User),
		Organisation: rate(r.Organisation),
		Patients:     ratelimit.PatientLimit{Patients: r.Patients.Patients, Window: r.Patients.Window.Std()},
		KeySecret:    secret,
		KeyPrefix:    keyPrefix,
		MaxKeys:      r.MaxKeys,
		Clock:        clock,
	}
}

// RateLimitRedis is how the rate limit uses the cache's Redis: its time-out and breaker.
func (c Cache) RateLimitRedis() ratelimit.RedisOptions {
	r := c.Redis
	return ratelimit.RedisOptions{OpTimeout: r.OpTimeout.Std(), BreakerFailures: uint32(r.BreakerFailures), BreakerCooldown: r.BreakerCooldown.Std()}
}

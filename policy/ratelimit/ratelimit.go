// Package ratelimit limits what each caller may ask of nirproxy: requests per user, requests per
// organisation, and distinct patients per user (a user who opens many patients' records in a
// short time may be trawling, so crossing that limit is also a security event).
//
// # Counting
//
// Request rates use GCRA (the generic cell rate algorithm): a limit of Requests per Period with a
// Burst admits Burst requests at once after a quiet spell, then one every Period/Requests. A
// refused request is told exactly when the next one would be admitted (Retry-After).
//
// Distinct patients use a sliding window: a user may have requested at most Patients different
// patients within the last Window. Asking again for a patient already counted never counts
// twice and is never refused by this limit, so a clinician at the limit can still go on with the
// patients already open. A new patient over the limit is refused until the oldest patient counted
// has left the window.
//
// # Stores
//
// The counts live in a [Store]: [Redis], shared by every replica, or [Memory], in process. The
// Limiter always keeps a Memory of its own. When the shared store fails (Redis down, slow, or its
// breaker open), the request is counted in process instead: the limiter fails open to its local
// counts and never fails a request because of a Redis outage, as the cache does. While that
// lasts each replica counts on its own, so a caller spreading requests over n replicas may get up
// to n times its limits; [Result].Degraded says so for every request counted that way.
//
// # Identifiers
//
// No key or stored value holds an identifier in clear: users (issuer and subject), organisations
// and patients are replaced by a keyed HMAC-SHA256 under Config.KeySecret, so reading Redis tells
// nobody which user or patient a count belongs to, nor lets them test a guess. In Redis Cluster a
// user's keys share one hash tag (one slot); an organisation's key has its own.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

// The rules a Result names when a limit refuses a request.
const (
	// RuleUserRate is the limit on requests per user.
	RuleUserRate = "rate-limit-user"
	// RuleOrganisationRate is the limit on requests per organisation, shared by its users.
	RuleOrganisationRate = "rate-limit-organisation"
	// RulePatients is the limit on distinct patients per user; a refusal by it is a security
	// event.
	RulePatients = "distinct-patients"
)

// MinKeySecret is the shortest Config.KeySecret New accepts, in bytes.
const MinKeySecret = 32

// ErrIncompleteCaller is returned by Allow for a caller without a subject or an organisation,
// which authentication never produces: the request should be refused, not let through.
var ErrIncompleteCaller = errors.New("caller lacks a subject or an organisation")

// Caller is who a request is counted against.
type Caller struct {
	// Issuer is the token's issuer; "" for a system caller. With Subject it names the user.
	Issuer string
	// Subject is the user's (or system's) identifier at Issuer.
	Subject string
	// Organisation is the ODS code of the organisation the caller acts for.
	Organisation string
}

// CallerOf is the Caller an authenticated principal is counted as.
func CallerOf(p policy.Principal) Caller {
	return Caller{Issuer: p.Issuer, Subject: p.Subject, Organisation: p.Organisation}
}

// Rate is a GCRA request-rate limit: on average Requests per Period, with at most Burst
// admitted at once.
type Rate struct {
	// Requests is how many requests are admitted per Period; at least 1.
	Requests int
	// Period is the time Requests are counted over; at least a millisecond.
	Period time.Duration
	// Burst is how many requests may arrive together after a quiet spell; at least 1. Equal
	// to Requests, a full Period's allowance may be spent at once.
	Burst int
}

// PatientLimit limits how many distinct patients one user may request within a sliding Window.
type PatientLimit struct {
	// Patients is the most distinct patients a user may request within Window; at least 1.
	Patients int
	// Window is how long a patient counts after the user last requested them; at least a
	// millisecond.
	Window time.Duration
}

// Config configures a Limiter. Every field is required: the package supplies no defaults, and
// New refuses a Config with a field left out, naming it.
type Config struct {
	// User limits each user's requests (a user is an issuer and subject).
	User Rate
	// Organisation limits the requests of all the users of one organisation together.
	Organisation Rate
	// Patients limits each user's distinct patients.
	Patients PatientLimit
	// KeySecret is the HMAC secret identifiers are hashed with, at least MinKeySecret bytes.
	// Replicas sharing Redis must share it, or each counts apart.
	KeySecret []byte
	// KeyPrefix starts every key, such as "np:rl:v1:". It is stored in clear, so it must not
	// hold identifiers. (The Redis store's rate keys carry redis_rate's own "rate:" before it.)
	KeyPrefix string
	// MaxKeys bounds the in-process counts: at most MaxKeys rate keys (users and organisations)
	// and MaxKeys users' patient windows. When full, expired counts are dropped first, then the
	// one nearest expiry, which forgets (and so relaxes) that caller's limit: make it larger
	// than the callers active within a Period or Window.
	MaxKeys int
	// Clock tells the time for the in-process counts. The Redis store uses Redis's clock, so
	// that replicas agree.
	Clock func() time.Time
}

// check reports the first missing or wrong field of r, named as field.
func (r Rate) check(field string) error {
	switch {
	case r.Requests < 1:
		return fmt.Errorf("Config.%s.Requests is %d; it must be at least 1", field, r.Requests)
	case r.Period < time.Millisecond:
		return fmt.Errorf("Config.%s.Period is %v; it must be at least 1ms", field, r.Period)
	case r.Burst < 1:
		return fmt.Errorf("Config.%s.Burst is %d; it must be at least 1", field, r.Burst)
	}
	return nil
}

// validate reports the first missing or wrong field of c, by name.
func (c Config) validate() error {
	if err := c.User.check("User"); err != nil {
		return err
	}
	if err := c.Organisation.check("Organisation"); err != nil {
		return err
	}
	switch {
	case c.Patients.Patients < 1:
		return fmt.Errorf("Config.Patients.Patients is %d; it must be at least 1", c.Patients.Patients)
	case c.Patients.Window < time.Millisecond:
		return fmt.Errorf("Config.Patients.Window is %v; it must be at least 1ms", c.Patients.Window)
	case len(c.KeySecret) < MinKeySecret:
		return fmt.Errorf("Config.KeySecret is %d bytes; it must be at least %d", len(c.KeySecret), MinKeySecret)
	case c.KeyPrefix == "":
		return errors.New(`Config.KeyPrefix is empty; set one such as "np:rl:v1:"`)
	case c.MaxKeys < 1:
		return fmt.Errorf("Config.MaxKeys is %d; it must be at least 1", c.MaxKeys)
	case c.Clock == nil:
		return errors.New("Config.Clock is not set")
	}
	return nil
}

// Result is a Limiter's answer for one request.
type Result struct {
	// Allowed is true when no limit refused the request.
	Allowed bool
	// Refused names the rule that refused the request (RuleUserRate, RuleOrganisationRate or
	// RulePatients); "" when allowed.
	Refused string
	// RetryAfter is how long the caller should wait before the refused request could be
	// admitted; 0 when allowed.
	RetryAfter time.Duration
	// SecurityEvent is true when the request was refused because it would take the user over
	// the distinct-patients limit: a sign of trawling the caller must record as a security
	// event. Every such refusal is one; a user who keeps trying raises one each time.
	SecurityEvent bool
	// Degraded is true when the shared store failed and the request was counted in process.
	Degraded bool
}

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up, for a Retry-After header: at
// least 1 for a refused request, 0 for an allowed one.
func (r Result) RetryAfterSeconds() int {
	if r.Allowed {
		return 0
	}
	return max(1, int((r.RetryAfter+time.Second-1)/time.Second))
}

// Limiter decides whether a caller's request is within its limits. It is safe for concurrent
// use.
type Limiter struct {
	cfg    Config
	keys   keyer
	shared Store
	local  *Memory
	log    *slog.Logger
}

// New returns a Limiter counting in shared, or only in process when shared is nil. Whatever
// shared is, the Limiter keeps an in-process Memory of its own to fall back on when shared
// fails. log receives a debug line for each fallback; it must not be nil.
func New(cfg Config, shared Store, log *slog.Logger) (*Limiter, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("create rate limiter: %w", err)
	}
	if log == nil {
		return nil, errors.New("create rate limiter: logger is required")
	}
	local, err := NewMemory(cfg.MaxKeys, cfg.Clock)
	if err != nil {
		return nil, fmt.Errorf("create rate limiter: %w", err)
	}
	return &Limiter{cfg: cfg, keys: newKeyer(cfg.KeySecret, cfg.KeyPrefix), shared: shared, local: local, log: log}, nil
}

// Allow counts one request by caller, for patient when the request names one (an NHS number;
// "" for a request about no single patient), and says whether it is within the limits.
//
// The limits are checked in order, each only when the ones before it admitted the request: the
// user's rate, the organisation's rate, then the user's distinct patients. So a user refused by
// its own limit spends nothing of its organisation's, but a request refused by a later limit
// has spent its place under the earlier ones, as any request does.
//
// Allow never fails for a store outage (see Result.Degraded). Its only error wraps
// ErrIncompleteCaller.
func (l *Limiter) Allow(ctx context.Context, caller Caller, patient string) (Result, error) {
	r, err := l.AllowRequest(ctx, caller)
	if err != nil || !r.Allowed || patient == "" {
		return r, err
	}
	p, err := l.AllowPatient(ctx, caller, patient)
	p.Degraded = p.Degraded || r.Degraded
	return p, err
}

// AllowRequest counts one request by caller under the user's rate, then the organisation's.
// It is Allow without a patient: the step before the patient a request concerns is known.
func (l *Limiter) AllowRequest(ctx context.Context, caller Caller) (Result, error) {
	if caller.Subject == "" || caller.Organisation == "" {
		return Result{}, fmt.Errorf("count request: %w", ErrIncompleteCaller)
	}
	c := l.counting()
	if d := c.decide(func(s Store) (Decision, error) {
		return s.Take(ctx, l.keys.user(caller.Issuer, caller.Subject).rate(), l.cfg.User)
	}); !d.Allowed {
		return c.refuse(RuleUserRate, d), nil
	}
	if d := c.decide(func(s Store) (Decision, error) {
		return s.Take(ctx, l.keys.organisation(caller.Organisation), l.cfg.Organisation)
	}); !d.Allowed {
		return c.refuse(RuleOrganisationRate, d), nil
	}
	return Result{Allowed: true, Degraded: c.degraded}, nil
}

// AllowPatient counts patient (an NHS number) among caller's distinct patients and says
// whether that is within the limit. Counting a patient already counted within the window
// refreshes it and is always allowed. Its only error wraps ErrIncompleteCaller.
func (l *Limiter) AllowPatient(ctx context.Context, caller Caller, patient string) (Result, error) {
	if caller.Subject == "" || caller.Organisation == "" {
		return Result{}, fmt.Errorf("count patient: %w", ErrIncompleteCaller)
	}
	c := l.counting()
	set, member := l.keys.user(caller.Issuer, caller.Subject).patients(), l.keys.patient(patient)
	if d := c.decide(func(s Store) (Decision, error) { return s.SeePatient(ctx, set, member, l.cfg.Patients) }); !d.Allowed {
		return c.refuse(RulePatients, d), nil
	}
	return Result{Allowed: true, Degraded: c.degraded}, nil
}

// counting is one call's use of the stores: it remembers whether any decision fell back to the
// in-process counts.
type counting struct {
	l        *Limiter
	degraded bool
}

func (l *Limiter) counting() *counting { return &counting{l: l} }

// decide is Limiter.decide, remembering a fallback.
func (c *counting) decide(op func(Store) (Decision, error)) Decision {
	d, fellBack := c.l.decide(op)
	c.degraded = c.degraded || fellBack
	return d
}

// refuse is the Result of a refusal by rule.
func (c *counting) refuse(rule string, d Decision) Result {
	return Result{Refused: rule, RetryAfter: d.RetryAfter, SecurityEvent: rule == RulePatients, Degraded: c.degraded}
}

// decide runs op on the shared store, or on the in-process one when there is no shared store
// or it fails; fellBack reports the latter.
func (l *Limiter) decide(op func(Store) (Decision, error)) (d Decision, fellBack bool) {
	if l.shared == nil {
		d, _ = op(l.local)
		return d, false
	}
	d, err := op(l.shared)
	if err == nil {
		return d, false
	}
	l.log.Debug("rate limit counted in process: shared store failed", "err", err)
	d, _ = op(l.local)
	return d, true
}

package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/nirproxy/nirproxy/policy"
)

// RuleIdentifiedCaller refuses a caller whose principal names no user or no organisation, so
// that its requests cannot be counted. Authentication never produces one; the rule keeps a
// defect elsewhere from becoming a caller without limits.
const RuleIdentifiedCaller = "identified-caller"

// Guard applies a Limiter as a policy.Authorizer. Authorize counts the request under the
// user's and the organisation's rates; AuthorizePatient counts the patient under the user's
// distinct patients. A refusal is a *policy.Refusal with status 429 and RetryAfter, so the
// caller is told when to try again; it is decided before any trust is asked, so a caller over
// its limit cannot keep failing requests at a trust. A refusal by the distinct-patient limit is
// logged as a security event (without the patient).
type Guard struct {
	limiter *Limiter
	log     *slog.Logger
}

// NewGuard returns a Guard over l, logging security events to log (which must not be nil).
func NewGuard(l *Limiter, log *slog.Logger) *Guard {
	if l == nil || log == nil {
		panic("ratelimit: NewGuard needs a Limiter and a logger")
	}
	return &Guard{limiter: l, log: log}
}

var _ policy.Authorizer = (*Guard)(nil)

// Authorize implements policy.Authorizer: the request rates. Its Grant says nothing.
func (g *Guard) Authorize(ctx context.Context, p policy.Principal, _ policy.Action) (policy.Grant, error) {
	r, err := g.limiter.AllowRequest(ctx, CallerOf(p))
	return policy.Grant{}, g.verdict(ctx, p, r, err)
}

// AuthorizePatient implements policy.Authorizer: the distinct-patient limit.
func (g *Guard) AuthorizePatient(ctx context.Context, p policy.Principal, a policy.Action) error {
	if a.PatientID == "" {
		return nil
	}
	r, err := g.limiter.AllowPatient(ctx, CallerOf(p), a.PatientID)
	return g.verdict(ctx, p, r, err)
}

// verdict turns a Limiter's answer into Authorize's.
func (g *Guard) verdict(ctx context.Context, p policy.Principal, r Result, err error) error {
	if errors.Is(err, ErrIncompleteCaller) {
		return &policy.Refusal{Rule: RuleIdentifiedCaller, Status: http.StatusForbidden,
			Message: "The caller's credential names no user or no organisation, so its requests cannot be counted against its limits."}
	}
	if err != nil {
		return err
	}
	if r.Allowed {
		return nil
	}
	if r.SecurityEvent {
		g.log.WarnContext(ctx, "security event: distinct-patient limit reached",
			"rule", r.Refused, "subject", p.Subject, "issuer", p.Issuer, "role", p.Role,
			"organisation", p.Organisation, "system", p.System,
			"limit", g.limiter.cfg.Patients.Patients, "window", g.limiter.cfg.Patients.Window.String())
	}
	return &policy.Refusal{Rule: r.Refused, Status: http.StatusTooManyRequests, Message: g.message(r.Refused), RetryAfter: r.RetryAfter}
}

// message tells the client which limit refused it.
func (g *Guard) message(rule string) string {
	const after = "; try again after the time Retry-After gives"
	switch rule {
	case RuleUserRate:
		return "This user has made more requests than its limit allows" + after + "."
	case RuleOrganisationRate:
		return "This organisation's users have made more requests than its limit allows" + after + "."
	}
	pl := g.limiter.cfg.Patients
	return fmt.Sprintf("This user has opened the imaging of %d different patients within %v, the most the registry allows; patients already opened stay available, and a new one can be opened after the time Retry-After gives. The attempt is recorded as a security event.", pl.Patients, pl.Window)
}

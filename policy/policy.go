// Package policy decides who may use the proxy and for what: authentication (who is calling,
// for which organisation, for what purpose), authorization (may this principal do this, for
// this patient), and audit (policy/audit). Every data route passes through it.
//
// Authorization has two steps. Authorize judges the caller and what it asks before any trust is
// asked anything: authentication's outcome, onboarding, purpose of use, role, and the caller's
// request rates. AuthorizePatient judges the patient an answer concerns once it is known (from
// the request, the locator or the answer) and before any of the answer is sent: the caller's
// distinct-patient limit sees every patient whose imaging it is shown.
package policy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Principal is the authenticated caller: a user acting through a clinical system, or a system
// on its own behalf (mutual TLS).
type Principal struct {
	// Subject is the user's identifier (CIS2 nhsid_useruid, else sub), or the system's id for
	// a system caller.
	Subject string
	// Issuer is the token's issuer, exactly as the token states it; "" for a system caller.
	Issuer string
	// TokenID is the token's jti, when it has one: the audit names the token used.
	TokenID string
	// Role is the national RBAC job role the caller acts in (R8000, R0001, ...).
	Role string
	// Organisation is the ODS code of the organisation the caller acts for.
	Organisation string
	// System is the calling system: the token's client_id (azp), or the system a client
	// certificate is registered to.
	System string
	// Purpose is the purpose of use the caller asserts (HL7 v3 PurposeOfUse: TREAT, ETREAT,
	// BTG, ...), "" when the token states none.
	Purpose string
	// PurposeReason is the reason given for emergency or break-glass access.
	PurposeReason string
	// Expires is when the caller's credential expires.
	Expires time.Time
}

// IsPurposeCode reports whether s has the form of an HL7 v3 PurposeOfUse (ActReason) code:
// upper-case letters, like TREAT.
func IsPurposeCode(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < 'A' || r > 'Z' })
}

// Action is what a principal asks to do.
type Action struct {
	// Kind is "search" or "retrieve".
	Kind string
	// Resource is the route template, e.g. "/studies/{study}/series".
	Resource string
	// PatientID is the NHS number the request is scoped to, when it names one.
	PatientID string
	// StudyUID is the study the request is scoped to, when it names one.
	StudyUID string
	// Purpose is the purpose of use the request itself states (the X-Purpose-Of-Use header),
	// "" when it states none. The authorizer uses it only when neither the token nor the
	// calling system's registration states a purpose, and only where configuration allows.
	Purpose string
	// PurposeReason is the reason the request itself states for emergency or break-glass
	// access (a header), used when the token gives none.
	PurposeReason string
}

// ErrUnauthenticated and ErrForbidden are the two refusals; the HTTP layer maps them to 401 and
// 403. ErrUnavailable is a governance step that cannot decide now (an identity provider's keys
// out of date, say): the request is refused with 503, never let through. ErrLimited is a caller
// over one of its limits: 429, with when to try again.
var (
	ErrUnauthenticated = errors.New("authentication required")
	ErrForbidden       = errors.New("not permitted")
	ErrUnavailable     = errors.New("access cannot be decided now")
	ErrLimited         = errors.New("caller over its limit")
)

// Refusal is a governance step's refusal of a request: the rule that refused it, the HTTP
// status (401, 403, 429 or 503) and a message that tells the client why, without identifiers.
// It wraps ErrUnauthenticated, ErrForbidden, ErrLimited or ErrUnavailable by its status.
type Refusal struct {
	// Rule names the rule that refused.
	Rule string
	// Status is 401, 403, 429 or 503.
	Status int
	// Message tells the client why.
	Message string
	// RetryAfter is, for a 429 or 503, when the request could succeed; 0 when the refusal
	// does not say (the HTTP layer then uses its configured Retry-After for a 503).
	RetryAfter time.Duration
}

func (r *Refusal) Error() string { return fmt.Sprintf("refused by rule %s: %s", r.Rule, r.Message) }

// Unwrap is ErrUnauthenticated for a 401, ErrLimited for a 429, ErrUnavailable for a 503, else
// ErrForbidden.
func (r *Refusal) Unwrap() error {
	switch r.Status {
	case http.StatusUnauthorized:
		return ErrUnauthenticated
	case http.StatusTooManyRequests:
		return ErrLimited
	case http.StatusServiceUnavailable:
		return ErrUnavailable
	}
	return ErrForbidden
}

// Authenticator establishes who is calling.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// Grant is what an authorizer judged of an action, for the audit record: the purpose of use,
// where that came from, the reason given for emergency access, and the organisation and
// registered system the caller acts for as the rules saw them. With a refusal it is what had
// been judged when the action was refused, so that the refusal's record names who asked and for
// what; it allows nothing. The zero Grant says nothing.
type Grant struct {
	// Purpose is the purpose of use judged (TREAT, ETREAT, BTG), or, with a refusal, asked for
	// (HRESCH, say).
	Purpose string
	// PurposeSource is where it came from: "token", "registration" or "request".
	PurposeSource string
	// Reason is the reason given for emergency or break-glass access.
	Reason string
	// Emergency and BreakGlass say the access was ETREAT or BTG.
	Emergency, BreakGlass bool
	// Organisation is the ODS code the caller acts for: its token's, or a system's
	// registration's.
	Organisation string
	// System is the registered system the caller is or calls through; "" when none.
	System string
}

// Authorizer decides whether a principal may perform an action.
type Authorizer interface {
	// Authorize is called once per request, before any trust is asked anything. a.PatientID is
	// the patient the request itself names; "" when it names none (a retrieve by UID, a search
	// by accession number), and AuthorizePatient then sees the patient later. It returns what
	// it judged, for the audit, whether or not it allowed the action: with a refusal, the
	// Grant is what the authorizer had judged when it refused (the zero Grant when nothing),
	// and only the error says whether the action is allowed.
	Authorize(ctx context.Context, p Principal, a Action) (Grant, error)
	// AuthorizePatient is called once the patient the answer concerns is known and before any
	// of it is sent, with a.PatientID that patient: from the request, the locator or the
	// answer itself. A search naming a patient concerns that patient even when nothing is
	// found; it is not called for an answer that concerns no patient (an empty search by
	// study or accession number).
	AuthorizePatient(ctx context.Context, p Principal, a Action) error
}

// Authorizers applies each of its Authorizers in order; the first refusal stops it. It is how a
// deployment puts its rules (authz) before its limits (ratelimit), so that a refused caller
// spends nothing of its limits.
type Authorizers []Authorizer

// Authorize implements Authorizer. Its Grant is the first one an Authorizer gave that says
// something, the refusing one's included: a caller the rules allowed and its limits refused is
// recorded as the rules judged it.
func (as Authorizers) Authorize(ctx context.Context, p Principal, a Action) (Grant, error) {
	var granted Grant
	for _, z := range as {
		g, err := z.Authorize(ctx, p, a)
		if granted == (Grant{}) {
			granted = g
		}
		if err != nil {
			return granted, err
		}
	}
	return granted, nil
}

// AuthorizePatient implements Authorizer.
func (as Authorizers) AuthorizePatient(ctx context.Context, p Principal, a Action) error {
	for _, z := range as {
		if err := z.AuthorizePatient(ctx, p, a); err != nil {
			return err
		}
	}
	return nil
}

// AllowAll authenticates every caller as an anonymous development principal and permits
// everything. It is for tests of the request path that are not about governance; nirproxy
// itself never uses it.
type AllowAll struct{}

// Authenticate implements Authenticator.
func (AllowAll) Authenticate(*http.Request) (Principal, error) {
	return Principal{Subject: "anonymous", Role: "development", Purpose: "direct-care"}, nil
}

// Authorize implements Authorizer: it grants the principal's own purpose.
func (AllowAll) Authorize(_ context.Context, p Principal, _ Action) (Grant, error) {
	return Grant{Purpose: p.Purpose, PurposeSource: "token", Organisation: p.Organisation, System: p.System}, nil
}

// AuthorizePatient implements Authorizer.
func (AllowAll) AuthorizePatient(context.Context, Principal, Action) error { return nil }

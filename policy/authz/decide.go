package authz

import (
	"cmp"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

// The rules a request can be refused by, as a Decision and a Refusal name them.
const (
	// RuleAuthenticated refuses a request with no caller, or one whose credential has expired
	// (401).
	RuleAuthenticated = "authenticated"
	// RuleOnboarded refuses a caller whose organisation is not onboarded: unknown, without a
	// signed data sharing agreement, an in-year DSPT of Standards Met or Exceeded or a DPIA, or
	// suspended; or a system caller that is not registered (403).
	RuleOnboarded = "onboarded"
	// RulePurposeOfUse refuses a request for patient data whose purpose of use is not direct
	// care, or is emergency or break-glass access without a reason (403).
	RulePurposeOfUse = "purpose-of-use"
	// RuleRoleActions refuses a caller whose job role is not given the permission the action
	// needs (403).
	RuleRoleActions = "role-actions"
)

// The purposes of use (HL7 v3 ActReason) nirproxy allows: all are direct patient care.
const (
	// PurposeTreatment is treatment.
	PurposeTreatment = "TREAT"
	// PurposeEmergency is emergency treatment: it needs a reason and is a security event.
	PurposeEmergency = "ETREAT"
	// PurposeBreakGlass is break-the-glass access: it needs a reason and is a security event.
	PurposeBreakGlass = "BTG"
)

// directCareOnly is what a client whose purpose of use is refused is told.
const directCareOnly = "nirproxy may only be used for direct patient care"

// PurposeSource says where a request's purpose of use came from.
type PurposeSource string

// The places a purpose of use comes from, in the order they are looked at.
const (
	PurposeFromToken        PurposeSource = "token"
	PurposeFromRegistration PurposeSource = "registration"
	PurposeFromRequest      PurposeSource = "request"
)

// Decision is what the rules decide about one action of one principal, and what the audit
// needs to know of it.
type Decision struct {
	// Allowed is true when every rule allows the action.
	Allowed bool
	// Rule names the rule that refused it (Rule... constants); "" when allowed.
	Rule string
	// Status is the HTTP status of a refusal, 401 or 403; 0 when allowed.
	Status int
	// Message tells the client why it was refused; "" when allowed.
	Message string

	// Permission is what the action needs; "" when its kind is not known.
	Permission Permission
	// Organisation is the ODS code the caller acts for: the token's, or a system caller's
	// registration's.
	Organisation string
	// System is the registered system's ID, when the caller is one or calls through one.
	System string
	// Purpose, PurposeSource and Reason are the purpose of use asked for, where it came from
	// and the reason given for emergency or break-glass access: known once the caller is
	// identified (past the authenticated rule and a system caller's registration), whatever
	// rule then refuses, so that a refusal's record says what was asked for. They are empty for
	// actions that do not read patient data.
	Purpose       string
	PurposeSource PurposeSource
	Reason        string
	// Emergency and BreakGlass say the request asked for ETREAT or BTG access, whether or not
	// it was allowed; SecurityEvent is set with either, for the security log.
	Emergency     bool
	BreakGlass    bool
	SecurityEvent bool
}

// Err is nil when the action is allowed, else a *Refusal.
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &Refusal{Rule: d.Rule, Status: d.Status, Message: d.Message}
}

// Grant is what the decision judged, for the audit: for a refusal, what had been judged when
// it was refused (the zero Grant for a refusal by the authenticated rule). It allows nothing by
// itself; Err says whether the action is allowed.
func (d Decision) Grant() policy.Grant {
	return policy.Grant{Purpose: d.Purpose, PurposeSource: string(d.PurposeSource), Reason: d.Reason,
		Emergency: d.Emergency, BreakGlass: d.BreakGlass, Organisation: d.Organisation, System: d.System}
}

// Refusal is a refused decision as an error: policy.Refusal, whose Unwrap gives
// policy.ErrUnauthenticated for a 401, else policy.ErrForbidden.
type Refusal = policy.Refusal

// refuse makes d a refusal by rule with status and message.
func (d Decision) refuse(rule string, status int, format string, args ...any) Decision {
	d.Allowed, d.Rule, d.Status, d.Message = false, rule, status, fmt.Sprintf(format, args...)
	return d
}

// Decide judges whether principal p may perform action a at now, under the registry reg and
// the rules. It looks at, in turn:
//
//  1. authenticated: p has a subject and its credential has not expired (else 401);
//  2. the action's kind is known ("search", "retrieve", or a Permission's name);
//  3. onboarded: the organisation p acts for is in reg, has signed the data sharing agreement,
//     holds a DSPT assessment of Standards Met or Exceeded for the assessment year covering
//     now (rules.DSPTYear), has a DPIA, and is not suspended. A system caller (a principal
//     with no Issuer: a client certificate) must be registered, and acts for its
//     registration's organisation;
//  4. purpose of use, for actions that read patient data: the token's (p.Purpose), else the
//     purpose the calling system was onboarded for, else the request's (a.Purpose) where
//     rules.AcceptRequestPurpose allows. TREAT is allowed; ETREAT and BTG need a reason (the
//     token's, else the request's) and are flagged; anything else is refused. The purpose asked
//     for is found before step 3 judges the organisation, so that a refusal by either step
//     says what was asked for (and flags an emergency or break-glass attempt); it is judged
//     only here;
//  5. role actions: p.Role is given the action's permission by rules.RoleActions.
//
// A nil reg refuses every action. Decide has no side effects.
func Decide(reg *Registry, rules Rules, p policy.Principal, a policy.Action, now time.Time) Decision {
	var d Decision
	if p.Subject == "" {
		return d.refuse(RuleAuthenticated, http.StatusUnauthorized, "no authenticated caller: send a bearer token")
	}
	if !p.Expires.IsZero() && !now.Before(p.Expires) {
		return d.refuse(RuleAuthenticated, http.StatusUnauthorized, "the credential expired at %s", p.Expires.UTC().Format(time.RFC3339))
	}
	perm, ok := permissionOf(a.Kind)
	if !ok {
		return d.refuse(RuleRoleActions, http.StatusForbidden, "the action %q is not one nirproxy authorizes", a.Kind)
	}
	d.Permission = perm
	if reg == nil {
		return d.refuse(RuleOnboarded, http.StatusForbidden, "no onboarding registry is loaded")
	}
	sys, registered := reg.SystemByClientID(p.System)
	d.Organisation = strings.ToUpper(p.Organisation)
	if p.Issuer == "" {
		if sys, registered = reg.System(p.System); !registered {
			return d.refuse(RuleOnboarded, http.StatusForbidden, "the system %q is not registered", p.System)
		}
		if d.Organisation != "" && d.Organisation != sys.Organisation {
			return d.refuse(RuleOnboarded, http.StatusForbidden, "the system %q is registered to %s, not %s", sys.ID, sys.Organisation, d.Organisation)
		}
		d.Organisation = sys.Organisation
	}
	if registered {
		d.System = sys.ID
	}
	if perm.patientData() {
		d = askedPurpose(d, p, a, sys)
	}
	if missing := onboarding(reg, rules.DSPTYear, d.Organisation, now); len(missing) > 0 {
		return d.refuse(RuleOnboarded, http.StatusForbidden, "the organisation %s is not onboarded: %s", orNone(d.Organisation), strings.Join(missing, "; "))
	}
	if perm.patientData() {
		if refused := judgePurpose(d, rules); refused != "" {
			return d.refuse(RulePurposeOfUse, http.StatusForbidden, "%s", refused)
		}
	}
	if p.Role == "" {
		return d.refuse(RuleRoleActions, http.StatusForbidden, "the caller acts in no job role")
	}
	if !rules.RoleActions.allows(p.Role, perm) {
		return d.refuse(RuleRoleActions, http.StatusForbidden, "the job role %s may not %s", p.Role, perm.describe())
	}
	d.Allowed = true
	return d
}

// orNone is s, or "(none)" when it is empty.
func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// onboarding lists what the organisation ods lacks to be onboarded at now; nil when nothing.
func onboarding(reg *Registry, year DSPTYear, ods string, now time.Time) []string {
	if ods == "" {
		return []string{"the caller states no organisation"}
	}
	o, ok := reg.Organisation(ods)
	if !ok {
		return []string{"it is not in the onboarding registry"}
	}
	var missing []string
	if o.Suspended {
		missing = append(missing, "its access is suspended")
	}
	if o.DSASigned.IsZero() || o.DSASigned.After(now) {
		missing = append(missing, "no signed data sharing agreement")
	}
	want := year.Covering(now)
	switch {
	case o.DSPTStatus == "":
		missing = append(missing, fmt.Sprintf("no DSPT assessment (%s, Standards Met or Exceeded, is needed)", want))
	case o.DSPTYear != want:
		missing = append(missing, fmt.Sprintf("no in-year DSPT assessment: its latest is %s, %s is needed", o.DSPTYear, want))
	case o.DSPTStatus != StandardsMet && o.DSPTStatus != StandardsExceeded:
		missing = append(missing, fmt.Sprintf("its %s DSPT assessment is %s, not Standards Met or Exceeded", o.DSPTYear, o.DSPTStatus))
	}
	if o.DPIA.IsZero() || o.DPIA.After(now) {
		missing = append(missing, "no data protection impact assessment")
	}
	return missing
}

// askedPurpose is d with the purpose of use asked for, where it comes from (the token's, else
// the calling system's registration's, else the request's own) and, for emergency or
// break-glass access, the reason given (the token's, else the request's) and the flags. It
// judges nothing: judgePurpose does.
func askedPurpose(d Decision, p policy.Principal, a policy.Action, sys System) Decision {
	switch {
	case p.Purpose != "":
		d.Purpose, d.PurposeSource = p.Purpose, PurposeFromToken
	case sys.Purpose != "":
		d.Purpose, d.PurposeSource = sys.Purpose, PurposeFromRegistration
	case a.Purpose != "":
		d.Purpose, d.PurposeSource = a.Purpose, PurposeFromRequest
	default:
		return d
	}
	if d.Purpose == PurposeEmergency || d.Purpose == PurposeBreakGlass {
		d.Emergency = d.Purpose == PurposeEmergency
		d.BreakGlass = d.Purpose == PurposeBreakGlass
		d.SecurityEvent = true
		d.Reason = cmp.Or(strings.TrimSpace(p.PurposeReason), strings.TrimSpace(a.PurposeReason))
	}
	return d
}

// judgePurpose judges the purpose of use askedPurpose found: refused is the client's message
// when it is not allowed, "" when it is.
func judgePurpose(d Decision, rules Rules) (refused string) {
	switch {
	case d.Purpose == "":
		return "no purpose of use is stated: " + directCareOnly
	case d.PurposeSource == PurposeFromRequest && !rules.AcceptRequestPurpose:
		return "this deployment does not accept a purpose of use stated by the request (X-Purpose-Of-Use); " +
			"it must come from the token or the calling system's registration: " + directCareOnly
	case d.Purpose == PurposeTreatment:
		return ""
	case d.Emergency || d.BreakGlass:
		if d.Reason == "" {
			return fmt.Sprintf("the purpose of use %s needs a reason", d.Purpose)
		}
		return ""
	}
	return fmt.Sprintf("the purpose of use %q is not direct patient care: %s", d.Purpose, directCareOnly)
}

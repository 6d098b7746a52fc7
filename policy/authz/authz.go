// Package authz decides whether an authenticated principal may do what it asks, under the
// registry's data sharing agreement: only for direct patient care, only for organisations
// that are onboarded, and only as its job role allows. [Decide] is the one place the rules are
// written; [Authorizer] applies them as a policy.Authorizer.
//
// # The onboarding registry
//
// The registry is a YAML file of organisations and the client systems that call on their
// behalf; unknown keys are refused:
//
//	organisations:
//	  - ods: RR8                     # ODS code
//	    name: Leeds Teaching Hospitals
//	    dsaSigned: 2024-04-01        # data sharing agreement signed; leave out when not
//	    dsptStatus: Standards Met    # Standards Exceeded, Standards Met, Approaching Standards, Standards Not Met
//	    dsptYear: 2025/26            # the assessment year of that status
//	    dpia: 2024-03-15             # DPIA completed; leave out when not
//	    suspended: false
//	systems:
//	  - id: leeds-viewer             # a system caller's name (policy.Principal.System)
//	    clientId: 0a1b2c             # its OAuth client id (a token's azp), and/or
//	    certificateSHA256: 3f...e9   # its client certificate's fingerprint (SHA-256 of the DER)
//	    organisation: RR8
//	    role: R8000                  # the job role it acts in with its certificate (required with one)
//	    purpose: TREAT               # purpose of use it was onboarded for
//
// A system with a certificate calls on its own behalf (mutual TLS): it is the caller, acting
// for its organisation in its role and for its purpose. A system with a client id only is the
// viewer its users' tokens come through; their tokens carry their roles, so it has no role.
//
// [RegistryFile] reloads it when it changes; a file that is not valid is logged and leaves the
// last good registry in force.
//
// # Defaults
//
// The package applies no defaults of its own: [DefaultRoleActions] and [DefaultDSPTYear] are
// for the configuration's defaults to use.
package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

// Authorizer applies Decide to the registry in force and the deployment's rules. It implements
// policy.Authorizer.
type Authorizer struct {
	registries RegistrySource
	rules      Rules
	now        func() time.Time
	log        *slog.Logger
}

// NewAuthorizer makes an Authorizer. It fails when the rules are not valid. now is the clock
// (time.Now in production); log receives a warning for every security event (emergency or
// break-glass access), and may be nil to discard them.
func NewAuthorizer(registries RegistrySource, rules Rules, now func() time.Time, log *slog.Logger) (*Authorizer, error) {
	if registries == nil || now == nil {
		return nil, errors.New("make authorizer: a registry source and a clock are needed")
	}
	if err := rules.Validate(); err != nil {
		return nil, fmt.Errorf("make authorizer: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	roles := make(RoleActions, len(rules.RoleActions))
	for role, perms := range rules.RoleActions {
		roles[role] = slices.Clone(perms)
	}
	rules.RoleActions = roles // the caller's map may change; this copy does not
	return &Authorizer{registries: registries, rules: rules, now: now, log: log}, nil
}

// Decide is Decide with the registry in force, the rules and the clock: for a caller that
// needs the whole Decision (the audit's flags, the purpose of use).
func (z *Authorizer) Decide(p policy.Principal, a policy.Action) Decision {
	return Decide(z.registries.Registry(), z.rules, p, a, z.now())
}

// Authorize implements policy.Authorizer: nil when the action is allowed, else a *Refusal
// wrapping policy.ErrUnauthenticated or policy.ErrForbidden. The Grant is the decision's, refused
// or not (Decision.Grant), for the audit record. Emergency and break-glass requests are logged as
// security events, allowed or not; the reason given is not logged (it is free text a clinician
// wrote, which may name the patient): the audit record keeps it.
func (z *Authorizer) Authorize(ctx context.Context, p policy.Principal, a policy.Action) (policy.Grant, error) {
	d := z.Decide(p, a)
	if d.SecurityEvent {
		z.log.WarnContext(ctx, "security event: emergency or break-glass access",
			"allowed", d.Allowed, "rule", d.Rule, "subject", p.Subject, "role", p.Role,
			"organisation", d.Organisation, "system", d.System, "purpose", d.Purpose,
			"reasonGiven", d.Reason != "", "action", a.Kind, "resource", a.Resource)
	}
	return d.Grant(), d.Err()
}

// AuthorizePatient implements policy.Authorizer. The registry's rules concern the caller and
// its purpose, not which patient it asks for (the data sharing agreement covers every patient
// in direct care), so every patient is allowed here; the limits on distinct patients are
// package ratelimit's.
func (z *Authorizer) AuthorizePatient(context.Context, policy.Principal, policy.Action) error {
	return nil
}

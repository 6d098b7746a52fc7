package policy

import (
	"context"
	"errors"
	"testing"
)

// judged is an Authorizer that returns its Grant and error, whatever it is asked.
type judged struct {
	grant Grant
	err   error
}

func (j judged) Authorize(context.Context, Principal, Action) (Grant, error) { return j.grant, j.err }

func (judged) AuthorizePatient(context.Context, Principal, Action) error { return nil }

// TestAuthorizersGrant: Authorizers gives the first Grant that says something, with the first
// refusal, so that a request the rules judged and a later step refused (a limit, say) is
// recorded as the rules judged it.
func TestAuthorizersGrant(t *testing.T) {
	rules := Grant{Purpose: "TREAT", PurposeSource: "token", Organisation: "RR8", System: "viewer"}
	refusedRules := Grant{Purpose: "HRESCH", PurposeSource: "token", Organisation: "RR8", System: "viewer"}
	limited := &Refusal{Rule: "request-rate", Status: 429, Message: "slow down"}
	forbidden := &Refusal{Rule: "purpose-of-use", Status: 403, Message: "direct care only"}
	for _, tc := range []struct {
		name string
		as   Authorizers
		want Grant
		err  error
	}{
		{"allowed", Authorizers{judged{grant: rules}, judged{}}, rules, nil},
		{"allowed by the rules, refused by a limit", Authorizers{judged{grant: rules}, judged{err: limited}}, rules, limited},
		{"refused by the rules", Authorizers{judged{grant: refusedRules, err: forbidden}, judged{}}, refusedRules, forbidden},
		{"refused before anything was judged", Authorizers{judged{err: limited}, judged{grant: rules}}, Grant{}, limited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := tc.as.Authorize(t.Context(), Principal{}, Action{})
			if g != tc.want || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Errorf("Authorize = %+v, %v; want %+v, %v", g, err, tc.want, tc.err)
			}
		})
	}
}

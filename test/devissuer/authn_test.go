package devissuer_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/authn"
	"github.com/nirproxy/nirproxy/test/devissuer"
)

// cis2Roles are a CIS2 user's role profiles: two roles, at two organisations.
var cis2Roles = []devissuer.NRBACRole{
	{PersonRoleID: "555254242105", OrgCode: "RX1", RoleCode: "S8000:G8000:R8000", RoleName: "Clinical Practitioner Access Role"},
	{PersonRoleID: "555254242106", OrgCode: "RYJ", RoleCode: "S8000:G8000:R8001", RoleName: "Nurse Access Role"},
}

// TestProfiles checks that tokens minted for each profile authn knows are accepted by authn
// configured with discovery against the issuer, and map to the expected principal.
func TestProfiles(t *testing.T) {
	cis2 := func(fromUserinfo bool) *devissuer.CIS2 {
		return &devissuer.CIS2{
			UserUID: "910000000001", SelectedRoleID: "555254242106", Roles: cis2Roles,
			IDAssuranceLevel: 3, ACR: "AAL3_ANY", AMR: []string{"N3_SMARTCARD"},
			RolesFromUserinfo: fromUserinfo,
		}
	}
	tests := []struct {
		name         string
		profile      string
		claims       devissuer.Claims
		want         policy.Principal // Issuer and Expires are filled in by the test
		wantUserinfo int64
	}{
		{
			name:    "iua",
			profile: authn.ProfileIUA,
			claims:  iuaClinician("t-iua"),
			want:    policy.Principal{Subject: "user-1", TokenID: "t-iua", Role: "R8000", Organisation: "RYJ", Purpose: "TREAT", System: "pacs-viewer"},
		},
		{
			name:    "iua: emergency, single role coding",
			profile: authn.ProfileIUA,
			claims: devissuer.Claims{Subject: "user-3", TokenID: "t-iua-2", ClientID: "pacs-viewer", IUA: &devissuer.IUA{
				SubjectOrganizationID: "RX1",
				SubjectRole:           []devissuer.Coding{{Code: "R8003"}},
				PurposeOfUse:          []devissuer.Coding{devissuer.PurposeOfUse("ETREAT")},
			}},
			want: policy.Principal{Subject: "user-3", TokenID: "t-iua-2", Role: "R8003", Organisation: "RX1", Purpose: "ETREAT", System: "pacs-viewer"},
		},
		{
			name:    "cis2: roles in the token",
			profile: authn.ProfileCIS2,
			claims:  devissuer.Claims{Subject: "user-2", TokenID: "t-cis2", AuthorizedParty: "nirproxy-client", CIS2: cis2(false)},
			want:    policy.Principal{Subject: "910000000001", TokenID: "t-cis2", Role: "R8001", Organisation: "RYJ", System: "nirproxy-client"},
		},
		{
			name:         "cis2: roles from userinfo",
			profile:      authn.ProfileCIS2,
			claims:       devissuer.Claims{Subject: "user-2", TokenID: "t-cis2-ui", AuthorizedParty: "nirproxy-client", CIS2: cis2(true)},
			want:         policy.Principal{Subject: "910000000001", TokenID: "t-cis2-ui", Role: "R8001", Organisation: "RYJ", System: "nirproxy-client"},
			wantUserinfo: 1,
		},
		{
			name:    "plain claims",
			profile: authn.ProfileClaims,
			claims: devissuer.Claims{Subject: "po-1", TokenID: "t-claims", AuthorizedParty: "audit-viewer",
				Extra: map[string]any{"role": "R0001", "org": "RX1", "pou": "TREAT"}},
			want: policy.Principal{Subject: "po-1", TokenID: "t-claims", Role: "R0001", Organisation: "RX1", Purpose: "TREAT", System: "audit-viewer"},
		},
	}
	for _, alg := range []string{devissuer.ES256, devissuer.RS256} {
		clk := newClock()
		iss := startIssuer(t, alg, clk)
		for _, tt := range tests {
			t.Run(alg+"/"+tt.name, func(t *testing.T) {
				a := newAuthenticator(t, clk, authnOptions(iss, tt.profile))
				userinfo := iss.Requests(devissuer.UserinfoPath)
				p, err := authenticate(a, mint(t, iss, tt.claims))
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				want := tt.want
				want.Issuer = iss.URL()
				want.Expires = clk.Now().Add(devissuer.DefaultLifetime)
				if !p.Expires.Equal(want.Expires) {
					t.Errorf("Expires = %v, want %v", p.Expires, want.Expires)
				}
				p.Expires, want.Expires = time.Time{}, time.Time{}
				if p != want {
					t.Errorf("principal = %+v\nwant        %+v", p, want)
				}
				if got := iss.Requests(devissuer.UserinfoPath) - userinfo; got != tt.wantUserinfo {
					t.Errorf("%d userinfo requests, want %d", got, tt.wantUserinfo)
				}
			})
		}
	}
}

// TestBadTokens checks that each deliberately bad token is refused as unauthenticated, for
// its own flaw, where the same claims minted soundly are accepted.
func TestBadTokens(t *testing.T) {
	tests := []struct {
		name       string
		mint       func(*devissuer.Issuer, devissuer.Claims) (string, error)
		wantReason string
	}{
		{"expired", (*devissuer.Issuer).MintExpired, "the token has expired"},
		{"not yet valid", (*devissuer.Issuer).MintNotYetValid, "the token is not valid yet"},
		{"wrong audience", (*devissuer.Issuer).MintWrongAudience, "the token is not meant for this service"},
		{"wrong issuer", (*devissuer.Issuer).MintWrongIssuer, "the token's issuer is not trusted"},
		{"alg none", (*devissuer.Issuer).MintAlgNone, "the token's signature algorithm is not allowed for its issuer"},
		{"unknown key", (*devissuer.Issuer).MintUnknownKey, "the token's signing key is not among its issuer's keys"},
		{"forged", (*devissuer.Issuer).MintForged, "the token's signature does not verify"},
		{"key confusion", (*devissuer.Issuer).MintKeyConfusion, "the token's signature algorithm is not allowed for its issuer"},
	}
	for _, alg := range []string{devissuer.ES256, devissuer.RS256} {
		clk := newClock()
		iss := startIssuer(t, alg, clk)
		a := newAuthenticator(t, clk, authnOptions(iss, authn.ProfileIUA))
		if _, err := authenticate(a, mint(t, iss, iuaClinician("sound"))); err != nil {
			t.Fatalf("%s: a sound token: Authenticate: %v", alg, err)
		}
		for _, tt := range tests {
			t.Run(alg+"/"+tt.name, func(t *testing.T) {
				token, err := tt.mint(iss, iuaClinician(tt.name))
				if err != nil {
					t.Fatalf("mint: %v", err)
				}
				p, err := authenticate(a, token)
				if !errors.Is(err, policy.ErrUnauthenticated) || errors.Is(err, authn.ErrKeysUnavailable) {
					t.Fatalf("Authenticate = %+v, %v; want policy.ErrUnauthenticated", p, err)
				}
				if !strings.HasSuffix(err.Error(), ": "+tt.wantReason) {
					t.Errorf("refusal %q, want the reason %q", err, tt.wantReason)
				}
			})
		}
	}
}

// TestRotate checks that a verifier picks up a rotated key once its refresh interval
// allows, that a kept old key still verifies and that a dropped one no longer does.
func TestRotate(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, devissuer.ES256, clk)
	a := newAuthenticator(t, clk, authnOptions(iss, authn.ProfileIUA))
	accept := func(step, token string) {
		t.Helper()
		if _, err := authenticate(a, token); err != nil {
			t.Fatalf("%s: Authenticate: %v", step, err)
		}
	}

	first := iss.KeyID()
	accept("first key", mint(t, iss, iuaClinician("k1-a")))
	signedByFirst := mint(t, iss, iuaClinician("k1-b")) // not yet seen by the verifier

	second, err := iss.Rotate(devissuer.KeepOldKey)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if second == first || iss.KeyID() != second {
		t.Fatalf("Rotate gave kid %q, KeyID %q; want a new kid in place of %q", second, iss.KeyID(), first)
	}
	clk.Advance(keyRefresh)
	accept("second key, after the refresh interval", mint(t, iss, iuaClinician("k2-a")))
	accept("first key, kept", signedByFirst)
	signedBySecond := mint(t, iss, iuaClinician("k2-b"))

	if _, err := iss.Rotate(devissuer.DropOldKey); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	clk.Advance(keyRefresh)
	accept("third key, after the refresh interval", mint(t, iss, iuaClinician("k3")))
	if p, err := authenticate(a, signedBySecond); !errors.Is(err, policy.ErrUnauthenticated) {
		t.Fatalf("second key, dropped: Authenticate = %+v, %v; want policy.ErrUnauthenticated", p, err)
	}
	if got := iss.Requests(devissuer.JWKSPath); got != 3 {
		t.Errorf("%d JWKS requests, want 3: one at first, one per rotation", got)
	}
}

// TestKeyOutage is hazard H16's integration test: while the issuer is down its keys serve
// until they are older than KeyMaxAge; then every token is refused with
// authn.ErrKeysUnavailable, a cached one too, until the issuer is back.
func TestKeyOutage(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, devissuer.RS256, clk)
	a := newAuthenticator(t, clk, authnOptions(iss, authn.ProfileIUA))
	cached := mint(t, iss, iuaClinician("cached"))
	if _, err := authenticate(a, cached); err != nil {
		t.Fatalf("before the outage: Authenticate: %v", err)
	}

	iss.SetDown(true)
	for _, u := range []string{iss.URL() + devissuer.DiscoveryPath, iss.JWKSURL()} {
		if status := get(t, u, ""); status != http.StatusServiceUnavailable {
			t.Errorf("GET %s while down: %d, want 503", u, status)
		}
	}
	clk.Advance(keyMaxAge / 2)
	for _, token := range []string{cached, mint(t, iss, iuaClinician("within"))} {
		if _, err := authenticate(a, token); err != nil {
			t.Fatalf("down, keys younger than KeyMaxAge: Authenticate: %v", err)
		}
	}
	clk.Advance(keyMaxAge/2 + time.Second)
	for _, token := range []string{cached, mint(t, iss, iuaClinician("past"))} {
		p, err := authenticate(a, token)
		if !errors.Is(err, authn.ErrKeysUnavailable) || !errors.Is(err, policy.ErrUnavailable) || errors.Is(err, policy.ErrUnauthenticated) {
			t.Fatalf("down, keys older than KeyMaxAge: Authenticate = %+v, %v; want authn.ErrKeysUnavailable", p, err)
		}
	}

	iss.SetDown(false)
	clk.Advance(keyRefresh)
	if _, err := authenticate(a, mint(t, iss, iuaClinician("back"))); err != nil {
		t.Fatalf("issuer back: Authenticate: %v", err)
	}
}

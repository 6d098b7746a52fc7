package authn

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

// cis2Options returns Options for ti with the cis2 profile, as NHS services configure it.
func (ti *testIssuer) cis2Options() Options {
	o := ti.claimsOptions()
	o.Profile, o.Claims = ProfileCIS2, ClaimNames{}
	o.CIS2 = CIS2Options{MinIDAssuranceLevel: 3, ACRPrefix: "AAL3_", UserinfoURL: ti.srv.URL + "/realms/test/userinfo"}
	return o
}

// testRoles are a CIS2 user's nhsid_nrbac_roles: two roles, the second selected.
var testRoles = []map[string]any{
	{"person_roleid": "555254242105", "org_code": "RX1", "role_code": "S8000:G8000:R8000", "role_name": "\"Clinical\":\"Clinical Provision\":\"Clinical Practitioner Access Role\""},
	{"person_roleid": "555254242106", "org_code": "RYJ", "role_code": "S8000:G8000:R8001", "role_name": "\"Clinical\":\"Clinical Provision\":\"Nurse Access Role\""},
}

func TestProfiles(t *testing.T) {
	clock := newFakeClock()
	now := clock.Now()
	exp := now.Add(time.Hour).Truncate(time.Second)

	tests := []struct {
		name         string
		profile      string
		names        ClaimNames // for ProfileClaims, when not the test issuer's
		claims       map[string]any
		userinfo     func(r *http.Request) (int, any)
		want         policy.Principal
		wantErr      string // a refusal's reason, when refused
		wantUserinfo int64
	}{
		{
			name:    "claims: configured names",
			profile: ProfileClaims,
			claims:  map[string]any{"role": "R8003", "org": "RYJ", "pou": "TREAT", "azp": "viewer-1", "client_id": "ignored"},
			want:    policy.Principal{Subject: "user-1", TokenID: "token-1", Role: "R8003", Organisation: "RYJ", Purpose: "TREAT", System: "viewer-1", Expires: exp},
		},
		{
			name:    "claims: other names, absent ones empty",
			profile: ProfileClaims,
			names:   ClaimNames{Subject: "email", Role: "job", Organisation: "ods", Purpose: "purpose", System: "app"},
			claims:  map[string]any{"email": "a@example.org", "job": "R0001", "azp": "viewer-1"},
			want:    policy.Principal{Subject: "a@example.org", TokenID: "token-1", Role: "R0001", Expires: exp},
		},
		{
			name:    "iua: extension codings",
			profile: ProfileIUA,
			claims: map[string]any{
				"client_id": "pacs-viewer",
				"scope":     "user/ImagingStudy.read",
				"extensions": map[string]any{"ihe_iua": map[string]any{
					"subject_name":            "Dr A",
					"subject_organization":    "Example Trust",
					"subject_organization_id": "RYJ",
					"subject_role":            []map[string]any{{"system": "https://fhir.nhs.uk/CodeSystem/job-role", "code": "R8000"}},
					"purpose_of_use":          []map[string]any{{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}},
				}},
			},
			want: policy.Principal{Subject: "user-1", TokenID: "token-1", Role: "R8000", Organisation: "RYJ", Purpose: "TREAT", System: "pacs-viewer", Expires: exp},
		},
		{
			name:    "iua: single codings, azp as system",
			profile: ProfileIUA,
			claims: map[string]any{
				"azp": "pacs-viewer",
				"extensions": map[string]any{"ihe_iua": map[string]any{
					"subject_organization_id": "RYJ",
					"subject_role":            map[string]any{"code": "R8001"},
					"purpose_of_use":          map[string]any{"code": "ETREAT"},
				}},
			},
			want: policy.Principal{Subject: "user-1", TokenID: "token-1", Role: "R8001", Organisation: "RYJ", Purpose: "ETREAT", System: "pacs-viewer", Expires: exp},
		},
		{
			name:    "iua: no extension",
			profile: ProfileIUA,
			claims:  map[string]any{"client_id": "pacs-viewer"},
			wantErr: "no IHE IUA extension",
		},
		{
			name:    "cis2: roles in the token",
			profile: ProfileCIS2,
			claims: map[string]any{
				"acr": "AAL3_ANY", "id_assurance_level": "3", "amr": []string{"N3_SMARTCARD"}, "azp": "nirproxy-client",
				"selected_roleid": "555254242106", "nhsid_useruid": "910000000001", "nhsid_nrbac_roles": testRoles,
			},
			want: policy.Principal{Subject: "910000000001", TokenID: "token-1", Role: "R8001", Organisation: "RYJ", System: "nirproxy-client", Expires: exp},
		},
		{
			name:    "cis2: roles from userinfo",
			profile: ProfileCIS2,
			claims:  map[string]any{"acr": "AAL3_ANY", "id_assurance_level": 3, "selected_roleid": "555254242105"},
			userinfo: func(*http.Request) (int, any) {
				return http.StatusOK, map[string]any{"sub": "user-1", "nhsid_useruid": "910000000001", "nhsid_nrbac_roles": testRoles}
			},
			want:         policy.Principal{Subject: "910000000001", TokenID: "token-1", Role: "R8000", Organisation: "RX1", Expires: exp},
			wantUserinfo: 1,
		},
		{
			name:    "cis2: selected role and user from userinfo, subject falls back to sub",
			profile: ProfileCIS2,
			claims:  map[string]any{"acr": "AAL3_ANY", "id_assurance_level": "3"},
			userinfo: func(*http.Request) (int, any) {
				return http.StatusOK, map[string]any{"sub": "user-1", "selected_roleid": "555254242106", "nhsid_nrbac_roles": testRoles}
			},
			want:         policy.Principal{Subject: "user-1", TokenID: "token-1", Role: "R8001", Organisation: "RYJ", Expires: exp},
			wantUserinfo: 1,
		},
		{
			name:    "cis2: assurance below the minimum",
			profile: ProfileCIS2,
			claims:  map[string]any{"acr": "AAL3_ANY", "id_assurance_level": "2", "selected_roleid": "555254242106", "nhsid_nrbac_roles": testRoles},
			wantErr: "below the minimum",
		},
		{
			name:    "cis2: no assurance level",
			profile: ProfileCIS2,
			claims:  map[string]any{"acr": "AAL3_ANY", "selected_roleid": "555254242106", "nhsid_nrbac_roles": testRoles},
			wantErr: "no identity assurance level",
		},
		{
			name:    "cis2: acr of another class",
			profile: ProfileCIS2,
			claims:  map[string]any{"acr": "AAL2_ANY", "id_assurance_level": "3", "selected_roleid": "555254242106", "nhsid_nrbac_roles": testRoles},
			wantErr: "(acr) is not accepted",
		},
		{
			name:    "cis2: no acr",
			profile: ProfileCIS2,
			claims:  map[string]any{"id_assurance_level": "3", "selected_roleid": "555254242106", "nhsid_nrbac_roles": testRoles},
			wantErr: "(acr) is not accepted",
		},
		{
			name:    "cis2: selected role not among the roles",
			profile: ProfileCIS2,
			claims:  map[string]any{"acr": "AAL3_ANY", "id_assurance_level": "3", "selected_roleid": "999", "nhsid_nrbac_roles": testRoles},
			wantErr: "not among the user's roles",
		},
		{
			name:    "cis2: role code without a job role",
			profile: ProfileCIS2,
			claims: map[string]any{"acr": "AAL3_ANY", "id_assurance_level": "3", "selected_roleid": "1",
				"nhsid_nrbac_roles": []map[string]any{{"person_roleid": "1", "org_code": "RYJ", "role_code": "S8000:G8000"}}},
			wantErr: "names no job role",
		},
		{
			name:    "cis2: userinfo refuses the token",
			profile: ProfileCIS2,
			claims:  map[string]any{"acr": "AAL3_ANY", "id_assurance_level": "3", "selected_roleid": "555254242106"},
			userinfo: func(*http.Request) (int, any) {
				return http.StatusUnauthorized, map[string]any{"error": "invalid_token"}
			},
			wantErr:      "userinfo endpoint refused the token",
			wantUserinfo: 1,
		},
		{
			name:    "cis2: userinfo fails",
			profile: ProfileCIS2,
			claims:  map[string]any{"acr": "AAL3_ANY", "id_assurance_level": "3", "selected_roleid": "555254242106"},
			userinfo: func(*http.Request) (int, any) {
				return http.StatusInternalServerError, map[string]any{}
			},
			wantErr:      "userinfo endpoint gave no roles",
			wantUserinfo: 1,
		},
		{
			name:    "cis2: userinfo for another user",
			profile: ProfileCIS2,
			claims:  map[string]any{"acr": "AAL3_ANY", "id_assurance_level": "3", "selected_roleid": "555254242106"},
			userinfo: func(*http.Request) (int, any) {
				return http.StatusOK, map[string]any{"sub": "user-2", "nhsid_nrbac_roles": testRoles}
			},
			wantErr:      "for another user",
			wantUserinfo: 1,
		},
		{
			name:    "cis2: malformed roles",
			profile: ProfileCIS2,
			claims:  map[string]any{"acr": "AAL3_ANY", "id_assurance_level": "3", "selected_roleid": "1", "nhsid_nrbac_roles": "R8000"},
			wantErr: "CIS2 claims are malformed",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ti := newTestIssuer(t)
			ti.addKey("rsa-1", "rsa", "", true)
			token := ti.sign("rsa-1", "RS256", ti.claims(now, tc.claims), nil)
			ti.setUserinfo(func(r *http.Request) (int, any) {
				if r.Method != http.MethodGet || r.Header.Get("Authorization") != "Bearer "+token {
					return http.StatusBadRequest, map[string]any{"error": "the token was not sent as a bearer token"}
				}
				if tc.userinfo == nil {
					return http.StatusNotFound, map[string]any{}
				}
				return tc.userinfo(r)
			})
			o := ti.cis2Options()
			switch tc.profile {
			case ProfileIUA:
				o.Profile, o.CIS2 = ProfileIUA, CIS2Options{}
			case ProfileClaims:
				o = ti.claimsOptions()
				if tc.names != (ClaimNames{}) {
					o.Claims = tc.names
				}
			}
			a := newAuthenticator(t, clock, time.Minute, o)
			p, err := authenticate(a, token)
			if got := ti.userinfoHits.Load(); got != tc.wantUserinfo {
				t.Errorf("userinfo asked %d times, want %d", got, tc.wantUserinfo)
			}
			if tc.wantErr != "" {
				if !errors.Is(err, policy.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Authenticate = %+v, %v; want a refusal saying %q", p, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			tc.want.Issuer = ti.issuer
			if !p.Expires.Equal(tc.want.Expires) {
				t.Errorf("Expires = %v, want %v", p.Expires, tc.want.Expires)
			}
			p.Expires, tc.want.Expires = time.Time{}, time.Time{}
			if p != tc.want {
				t.Errorf("principal\n got %+v\nwant %+v", p, tc.want)
			}
		})
	}
}

// TestUserinfoCached checks a CIS2 userinfo answer is reused for the same token after the
// verified principal has left its cache, until the token expires.
func TestUserinfoCached(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIssuer(t)
	ti.addKey("rsa-1", "rsa", "", true)
	ti.setUserinfo(func(*http.Request) (int, any) {
		return http.StatusOK, map[string]any{"sub": "user-1", "nhsid_nrbac_roles": testRoles}
	})
	a := newAuthenticator(t, clock, time.Minute, ti.cis2Options())
	token := ti.sign("rsa-1", "RS256", ti.claims(clock.Now(), map[string]any{
		"acr": "AAL3_ANY", "id_assurance_level": "3", "selected_roleid": "555254242106",
		"exp": clock.Now().Add(10 * time.Minute).Unix(),
	}), nil)
	for i, step := range []struct {
		advance        time.Duration
		wantChecks     int64
		wantUserinfo   int64
		wantRefusedNow bool
	}{
		{advance: 0, wantChecks: 1, wantUserinfo: 1},
		{advance: 30 * time.Second, wantChecks: 1, wantUserinfo: 1},      // principal cached
		{advance: 2 * time.Minute, wantChecks: 2, wantUserinfo: 1},       // principal cache bound passed, userinfo cached
		{advance: 10 * time.Minute, wantChecks: 3, wantRefusedNow: true}, // token expired
	} {
		clock.Advance(step.advance)
		p, err := authenticate(a, token)
		if step.wantRefusedNow {
			if !errors.Is(err, policy.ErrUnauthenticated) {
				t.Fatalf("step %d: Authenticate = %+v, %v; want refused", i, p, err)
			}
		} else if err != nil || p.Role != "R8001" {
			t.Fatalf("step %d: Authenticate = %+v, %v", i, p, err)
		}
		if got := a.signatureChecks.Load(); got != step.wantChecks {
			t.Errorf("step %d: %d signature checks, want %d", i, got, step.wantChecks)
		}
		if got := ti.userinfoHits.Load(); !step.wantRefusedNow && got != step.wantUserinfo {
			t.Errorf("step %d: userinfo asked %d times, want %d", i, got, step.wantUserinfo)
		}
	}
}

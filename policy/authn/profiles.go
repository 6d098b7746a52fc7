package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

// profile maps a verified token's claims onto a principal whose Subject (sub), Issuer,
// TokenID (jti), System (azp, else client_id) and Expires (exp) are already filled in.
type profile interface {
	apply(ctx context.Context, tok verifiedToken, p *policy.Principal) error
}

func newProfile(o Options, cfg Config) profile {
	switch o.Profile {
	case ProfileCIS2:
		return &cis2Profile{
			opts:     o.CIS2,
			client:   cfg.HTTPClient,
			clock:    cfg.Clock,
			userinfo: newTTLCache[cis2Roles](cfg.CacheSize),
		}
	case ProfileIUA:
		return iuaProfile{}
	}
	return claimsProfile{names: o.Claims}
}

// principal maps a verified token to the principal its issuer's profile makes of it; a
// principal without a subject is refused.
func (iss *issuer) principal(ctx context.Context, tok verifiedToken) (policy.Principal, error) {
	exp, _ := tok.token.Expiration()
	sub, _ := tok.token.Subject()
	jti, _ := tok.token.JwtID()
	system, err := stringClaim(tok.claims, "azp")
	if err == nil && system == "" {
		system, err = stringClaim(tok.claims, "client_id")
	}
	if err != nil {
		return policy.Principal{}, err
	}
	p := policy.Principal{Subject: sub, Issuer: iss.opts.Issuer, TokenID: jti, System: system, Expires: exp}
	if err := iss.profile.apply(ctx, tok, &p); err != nil {
		return policy.Principal{}, err
	}
	if p.Subject == "" {
		return policy.Principal{}, refuse("the token names no subject")
	}
	return p, nil
}

// stringClaim returns the named claim, "" when it is absent or null; any other type than
// a string is refused.
func stringClaim(claims map[string]json.RawMessage, name string) (string, error) {
	raw, ok := claims[name]
	if !ok {
		return "", nil
	}
	var v *string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", refuse(fmt.Sprintf("the token's claim %q is not a string", name))
	}
	if v == nil {
		return "", nil
	}
	return *v, nil
}

// claimsProfile reads the configured top-level claims; each sets its principal field,
// empty when the claim is absent.
type claimsProfile struct{ names ClaimNames }

func (cp claimsProfile) apply(_ context.Context, tok verifiedToken, p *policy.Principal) error {
	for _, f := range []struct {
		claim string
		field *string
	}{
		{cp.names.Subject, &p.Subject},
		{cp.names.Role, &p.Role},
		{cp.names.Organisation, &p.Organisation},
		{cp.names.Purpose, &p.Purpose},
		{cp.names.System, &p.System},
	} {
		v, err := stringClaim(tok.claims, f.claim)
		if err != nil {
			return err
		}
		*f.field = v
	}
	return nil
}

// iuaProfile reads the IHE IUA extension: extensions.ihe_iua.subject_role (Codings: the
// first code), subject_organization_id and purpose_of_use (Codings: the first code), and
// client_id as the system.
type iuaProfile struct{}

// coding is a FHIR Coding as IUA carries it.
type coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// codings decodes an array of Codings, or a single one.
type codings []coding

func (c *codings) UnmarshalJSON(b []byte) error {
	var list []coding
	if err := json.Unmarshal(b, &list); err == nil {
		*c = list
		return nil
	}
	var one coding
	if err := json.Unmarshal(b, &one); err != nil {
		return errors.New("not a Coding or an array of Codings")
	}
	*c = codings{one}
	return nil
}

// code returns the first non-empty code.
func (c codings) code() string {
	for _, x := range c {
		if x.Code != "" {
			return x.Code
		}
	}
	return ""
}

func (iuaProfile) apply(_ context.Context, tok verifiedToken, p *policy.Principal) error {
	var c struct {
		ClientID   string `json:"client_id"`
		Extensions struct {
			IUA *struct {
				SubjectRole           codings `json:"subject_role"`
				SubjectOrganizationID string  `json:"subject_organization_id"`
				PurposeOfUse          codings `json:"purpose_of_use"`
			} `json:"ihe_iua"`
		} `json:"extensions"`
	}
	if json.Unmarshal(tok.payload, &c) != nil {
		return refuse("the token's IHE IUA claims are malformed")
	}
	iua := c.Extensions.IUA
	if iua == nil {
		return refuse("the token has no IHE IUA extension (extensions.ihe_iua)")
	}
	p.Role = iua.SubjectRole.code()
	p.Organisation = iua.SubjectOrganizationID
	p.Purpose = iua.PurposeOfUse.code()
	if c.ClientID != "" {
		p.System = c.ClientID
	}
	return nil
}

// cis2Profile reads NHS CIS2 tokens. The token must state an id_assurance_level of at
// least the minimum and an acr with the configured prefix. The selected role is the
// nhsid_nrbac_roles entry whose person_roleid is selected_roleid; when the token lacks
// either, the issuer's userinfo endpoint is asked with the token (its answer must be for
// the same sub) and the answer cached until the token expires.
type cis2Profile struct {
	opts     CIS2Options
	client   *http.Client
	clock    func() time.Time
	userinfo *ttlCache[cis2Roles]
}

// cis2Roles are the CIS2 claims naming the user and their roles, in the ID token or the
// userinfo answer.
type cis2Roles struct {
	Sub            string      `json:"sub"`
	UserUID        string      `json:"nhsid_useruid"`
	SelectedRoleID string      `json:"selected_roleid"`
	Roles          []nrbacRole `json:"nhsid_nrbac_roles"`
}

// nrbacRole is one of a user's national RBAC role profiles.
type nrbacRole struct {
	PersonRoleID string `json:"person_roleid"`
	OrgCode      string `json:"org_code"`
	RoleCode     string `json:"role_code"`
}

// assuranceLevel decodes id_assurance_level, which is sent as a number or a numeric string.
type assuranceLevel int

func (l *assuranceLevel) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		b = []byte(s)
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		return errors.New("id_assurance_level is not a whole number")
	}
	*l = assuranceLevel(n)
	return nil
}

func (cp *cis2Profile) apply(ctx context.Context, tok verifiedToken, p *policy.Principal) error {
	var c struct {
		cis2Roles
		IDAssuranceLevel *assuranceLevel `json:"id_assurance_level"`
		ACR              *string         `json:"acr"`
	}
	if json.Unmarshal(tok.payload, &c) != nil {
		return refuse("the token's CIS2 claims are malformed")
	}
	switch {
	case c.IDAssuranceLevel == nil:
		return refuse("the token states no identity assurance level")
	case int(*c.IDAssuranceLevel) < cp.opts.MinIDAssuranceLevel:
		return refuse("the token's identity assurance level is below the minimum")
	case c.ACR == nil || !strings.HasPrefix(*c.ACR, cp.opts.ACRPrefix):
		return refuse("the token's authentication context class (acr) is not accepted")
	}
	roles := c.cis2Roles
	if roles.Roles == nil || roles.SelectedRoleID == "" {
		info, err := cp.lookup(ctx, tok)
		if err != nil {
			return err
		}
		if info.Sub != roles.Sub {
			return refuse("the userinfo answer is for another user")
		}
		if roles.Roles == nil {
			roles.Roles = info.Roles
		}
		if roles.SelectedRoleID == "" {
			roles.SelectedRoleID = info.SelectedRoleID
		}
		if roles.UserUID == "" {
			roles.UserUID = info.UserUID
		}
	}
	if roles.SelectedRoleID == "" {
		return refuse("the token names no selected role (selected_roleid)")
	}
	var selected *nrbacRole
	for i := range roles.Roles {
		if roles.Roles[i].PersonRoleID == roles.SelectedRoleID {
			selected = &roles.Roles[i]
			break
		}
	}
	if selected == nil {
		return refuse("the selected role is not among the user's roles (nhsid_nrbac_roles)")
	}
	job := jobRole(selected.RoleCode)
	if job == "" {
		return refuse("the selected role's role_code names no job role")
	}
	p.Role, p.Organisation = job, selected.OrgCode
	if roles.UserUID != "" {
		p.Subject = roles.UserUID
	}
	return nil
}

// jobRole returns the last R… segment of a role_code such as S8000:G8000:R8001.
func jobRole(roleCode string) string {
	segments := strings.Split(roleCode, ":")
	for i := len(segments) - 1; i >= 0; i-- {
		if s := segments[i]; len(s) > 1 && s[0] == 'R' {
			return s
		}
	}
	return ""
}

// lookup returns the userinfo answer for tok, from the cache or by asking the issuer.
func (cp *cis2Profile) lookup(ctx context.Context, tok verifiedToken) (cis2Roles, error) {
	if info, ok := cp.userinfo.get(tok.hash, cp.clock()); ok {
		return info, nil
	}
	var info cis2Roles
	if err := getJSON(ctx, cp.client, cp.opts.UserinfoURL, tok.raw, &info); err != nil {
		var se *statusError
		if errors.As(err, &se) && (se.status == http.StatusUnauthorized || se.status == http.StatusForbidden) {
			return cis2Roles{}, refuse("the issuer's userinfo endpoint refused the token")
		}
		return cis2Roles{}, refuse("the issuer's userinfo endpoint gave no roles")
	}
	exp, _ := tok.token.Expiration()
	cp.userinfo.put(tok.hash, info, exp, cp.clock())
	return info, nil
}

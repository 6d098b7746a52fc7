package devissuer

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"time"
)

// ActReasonSystem is the HL7 v3 ActReason code system, which purpose-of-use codes (TREAT,
// ETREAT, BTG, HRESCH, ...) belong to.
const ActReasonSystem = "http://terminology.hl7.org/CodeSystem/v3-ActReason"

// Claims is what a minted token says. Zero fields are left out of the token, except the
// registered claims, which default as their comments say.
type Claims struct {
	// Subject is sub.
	Subject string
	// Audience is aud; empty means Options.Audience.
	Audience []string
	// IssuedAt is iat; zero means now by Options.Clock.
	IssuedAt time.Time
	// NotBefore is nbf; zero means IssuedAt.
	NotBefore time.Time
	// Expires is exp; zero means IssuedAt plus Options.Lifetime.
	Expires time.Time
	// TokenID is jti; empty means a random one (crypto/rand.Text).
	TokenID string
	// ClientID is client_id, the calling system in IUA tokens.
	ClientID string
	// AuthorizedParty is azp, the calling system in OIDC tokens.
	AuthorizedParty string
	// Scope is scope.
	Scope string
	// IUA, when set, is written as extensions.ihe_iua.
	IUA *IUA
	// CIS2, when set, adds NHS CIS2 claims.
	CIS2 *CIS2
	// Extra holds further top-level claims, written as given, for plain-claims profiles.
	// It may not name a claim the other fields write (iss, sub, aud, exp, nbf, iat, jti,
	// client_id, azp, scope, extensions and the CIS2 claims): Mint refuses it.
	Extra map[string]any
}

// IUA is the IHE IUA extension of an access token.
type IUA struct {
	SubjectName           string   `json:"subject_name,omitempty"`
	SubjectOrganization   string   `json:"subject_organization,omitempty"`
	SubjectOrganizationID string   `json:"subject_organization_id,omitempty"`
	SubjectRole           []Coding `json:"subject_role,omitempty"`
	PurposeOfUse          []Coding `json:"purpose_of_use,omitempty"`
	PersonID              string   `json:"person_id,omitempty"`
	HomeCommunityID       string   `json:"home_community_id,omitempty"`
}

// Coding is a FHIR Coding.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// PurposeOfUse returns the ActReason Coding of a purpose-of-use code such as TREAT.
func PurposeOfUse(code string) Coding {
	return Coding{System: ActReasonSystem, Code: code}
}

// CIS2 holds the NHS Care Identity Service 2 claims of a token.
type CIS2 struct {
	// UserUID is nhsid_useruid, the user's SDS user id.
	UserUID string
	// SelectedRoleID is selected_roleid, the person_roleid of the role chosen at login.
	SelectedRoleID string
	// Roles is nhsid_nrbac_roles, the user's role profiles.
	Roles []NRBACRole
	// IDAssuranceLevel is id_assurance_level, written as a string of digits; 0 leaves it out.
	IDAssuranceLevel int
	// ACR is acr, e.g. "AAL3_ANY".
	ACR string
	// AMR is amr, e.g. ["N3_SMARTCARD"].
	AMR []string
	// RolesFromUserinfo leaves nhsid_nrbac_roles and nhsid_useruid out of the token, as CIS2
	// ID tokens do, so that a verifier must ask the issuer's userinfo endpoint for them.
	// selected_roleid stays in the token.
	RolesFromUserinfo bool
}

// NRBACRole is one entry of nhsid_nrbac_roles.
type NRBACRole struct {
	PersonRoleID string `json:"person_roleid"`
	OrgCode      string `json:"org_code"`
	// RoleCode is an S…:G…:R… triple such as "S8000:G8000:R8000"; the job role is its last
	// segment.
	RoleCode string `json:"role_code"`
	RoleName string `json:"role_name,omitempty"`
}

// reserved reports whether Claims' typed fields write the claim name; Extra may not use it.
func reserved(name string) bool {
	switch name {
	case "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "azp", "scope", "extensions",
		"nhsid_useruid", "selected_roleid", "nhsid_nrbac_roles", "id_assurance_level", "acr", "amr":
		return true
	}
	return false
}

// payload returns the claim set of c as issuer iss at now, with the defaults of o filled
// in, and the userinfo answer for a token carrying it.
func (c Claims) payload(iss string, o Options, now time.Time) (claims, info map[string]any, err error) {
	claims = map[string]any{}
	for name, v := range c.Extra {
		if reserved(name) {
			return nil, nil, fmt.Errorf("mint a token: Claims.Extra names %q, which a typed field writes", name)
		}
		claims[name] = v
	}
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = now
	}
	nbf := c.NotBefore
	if nbf.IsZero() {
		nbf = iat
	}
	exp := c.Expires
	if exp.IsZero() {
		exp = iat.Add(o.Lifetime)
	}
	aud := c.Audience
	if len(aud) == 0 {
		aud = []string{o.Audience}
	}
	jti := c.TokenID
	if jti == "" {
		jti = rand.Text()
	}
	claims["iss"] = iss
	claims["aud"] = aud
	claims["iat"] = iat.Unix()
	claims["nbf"] = nbf.Unix()
	claims["exp"] = exp.Unix()
	claims["jti"] = jti
	info = map[string]any{}
	setString(claims, "sub", c.Subject)
	setString(info, "sub", c.Subject)
	setString(claims, "client_id", c.ClientID)
	setString(claims, "azp", c.AuthorizedParty)
	setString(claims, "scope", c.Scope)
	if c.IUA != nil {
		claims["extensions"] = map[string]any{"ihe_iua": c.IUA}
	}
	if c.CIS2 != nil {
		c.CIS2.write(claims, info)
	}
	return claims, info, nil
}

// write adds the CIS2 claims to the token's claims and to its userinfo answer, leaving the
// roles and user id out of the token when they are to come from userinfo.
func (c *CIS2) write(claims, info map[string]any) {
	setString(info, "nhsid_useruid", c.UserUID)
	if c.Roles != nil {
		info["nhsid_nrbac_roles"] = c.Roles
	}
	if !c.RolesFromUserinfo {
		setString(claims, "nhsid_useruid", c.UserUID)
		if c.Roles != nil {
			claims["nhsid_nrbac_roles"] = c.Roles
		}
	}
	setString(claims, "selected_roleid", c.SelectedRoleID)
	setString(info, "selected_roleid", c.SelectedRoleID)
	if c.IDAssuranceLevel != 0 {
		claims["id_assurance_level"] = strconv.Itoa(c.IDAssuranceLevel)
	}
	setString(claims, "acr", c.ACR)
	if c.AMR != nil {
		claims["amr"] = c.AMR
	}
}

// setString sets m[name] to v unless v is empty.
func setString(m map[string]any, name, v string) {
	if v != "" {
		m[name] = v
	}
}

package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/policy/authz"
	"github.com/nirproxy/nirproxy/policy/ratelimit"
)

// This file holds the access control sections (auth, onboarding, authorization) and their
// validation. Packages policy/authn and policy/authz judge the values: the checks here ask them,
// and only name the key and the fix.

// Authentication says which issuers' bearer tokens identify callers, and how verified tokens
// are cached. It becomes [authn.Config] (see [Config.Authn]).
type Authentication struct {
	// Issuers are the token issuers trusted, each with its own keys and claim profile. Default
	// none. They are set in the file only: an entry has no environment overrides.
	Issuers []TokenIssuer `yaml:"issuers"`
	// CacheTTL bounds how long a verified token's caller is reused without verifying the token
	// again (never beyond the token's exp). Default 5m.
	CacheTTL Duration `yaml:"tokenCacheTTL"`
	// CacheSize bounds how many verified tokens, and apart how many CIS2 userinfo answers, are
	// held in memory. Default 10000.
	CacheSize int `yaml:"tokenCacheSize"`
	// HTTPTimeout bounds one fetch of an issuer's keys, discovery document or userinfo answer.
	// Default 5s.
	HTTPTimeout Duration `yaml:"httpTimeout"`
}

// TokenIssuer is one trusted token issuer. Its fields are named as [authn.Options]'s are, so
// that authn's refusals of them can be named by their keys.
type TokenIssuer struct {
	// Issuer is the issuer exactly as its tokens state it in iss. It is compared byte for byte
	// and never normalised: no trailing slash is added or removed, no default port dropped.
	// CIS2's issuer includes ":443":
	// https://am.nhsidentity.spineservices.nhs.uk:443/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare.
	// Required.
	Issuer string `yaml:"issuer"`
	// JWKSURL is where the issuer publishes its signing keys (CIS2: <issuer>/connect/jwk_uri).
	// Give it or Discovery, not both.
	JWKSURL string `yaml:"jwksURL"`
	// Discovery takes the keys' URL from the issuer's discovery document,
	// <issuer>/.well-known/openid-configuration, whose issuer must equal Issuer. Default false.
	Discovery bool `yaml:"discovery"`
	// Audiences are the aud values accepted; a token must name one of them. Required.
	Audiences []string `yaml:"audiences"`
	// Algorithms is the signature algorithm allow-list, among RS256, RS512, PS256 and ES256
	// (never none, never HMAC). Default [RS256].
	Algorithms []string `yaml:"algorithms"`
	// ClockSkew is the tolerance on exp, nbf and iat: more than 0, at most 5m. Default 60s.
	ClockSkew Duration `yaml:"clockSkew"`
	// KeyRefresh is how often the keys are fetched again in the background, and the least time
	// between two fetches that tokens with an unknown kid may cause; at least 1s. Default 5m.
	KeyRefresh Duration `yaml:"keyRefresh"`
	// KeyMaxAge is how long after their last fetch the keys still verify tokens while the issuer
	// cannot be reached; after it every token of the issuer is refused with a 503 until keys are
	// fetched again (hazard H16). More than KeyRefresh. Default 1h.
	KeyMaxAge Duration `yaml:"keyMaxAge"`
	// Profile says how a token's claims name the caller: cis2, iua or claims. Required.
	Profile string `yaml:"profile"`
	// Claims names the claims profile claims reads; only for that profile, which needs every
	// name.
	Claims ClaimNames `yaml:"claims"`
	// CIS2 is what profile cis2 needs; only for that profile.
	CIS2 CIS2 `yaml:"cis2"`
}

// ClaimNames names the top-level string claims the claims profile reads.
type ClaimNames struct {
	// Subject is the claim naming the user, like sub.
	Subject string `yaml:"subject"`
	// Role is the claim holding the national RBAC job role (R8000, ...).
	Role string `yaml:"role"`
	// Organisation is the claim holding the ODS code of the user's organisation.
	Organisation string `yaml:"organisation"`
	// Purpose is the claim holding the purpose of use (TREAT, ...).
	Purpose string `yaml:"purpose"`
	// System is the claim naming the calling system, like azp.
	System string `yaml:"system"`
}

// CIS2 configures profile cis2 (NHS Care Identity Service 2).
type CIS2 struct {
	// MinIDAssuranceLevel is the least id_assurance_level accepted. Default 3, as NHS services
	// require.
	MinIDAssuranceLevel int `yaml:"minIdAssuranceLevel"`
	// ACRPrefix is the prefix acr must start with. Default AAL3_, as NHS services require.
	ACRPrefix string `yaml:"acrPrefix"`
	// UserinfoURL is the issuer's userinfo endpoint (CIS2: <issuer>/userinfo), asked for the
	// user's roles when the token lacks them. Required.
	UserinfoURL string `yaml:"userinfoURL"`
}

// Onboarding says where the onboarding registry is: the organisations that may use the proxy
// and the client systems that call it.
type Onboarding struct {
	// RegistryFile names the registry, a YAML file of organisations and systems (its form is in
	// package policy/authz's documentation). A relative path is taken from the config file's
	// directory; Load leaves the path resolved. check-config reads and checks the file. Default
	// none.
	RegistryFile string `yaml:"registryFile"`
	// ReloadEvery is how often the file is checked for changes: a changed file that is valid
	// replaces the registry in force, one that is not is logged and leaves it. Default 30s.
	ReloadEvery Duration `yaml:"reloadEvery"`
}

// Authorization says what each job role may do and how purposes of use and DSPT years are
// judged. It becomes [authz.Rules] (see [Config.AuthzRules]).
type Authorization struct {
	// RoleActions gives each national RBAC job role (R and four digits) its permissions, among
	// search, retrieveImages, retrieveReports, readAudit and operate; a role it does not name has
	// none. A map in the file replaces the default whole. Default [authz.DefaultRoleActions]:
	// R8000, R8001 and R8003 search and retrieve images and reports, R0001 reads the audit.
	// Set in the file only.
	RoleActions authz.RoleActions `yaml:"roleActions"`
	// AcceptRequestPurpose accepts the purpose of use a request states in its X-Purpose-Of-Use
	// header when neither its token nor its calling system's registration states one. Default
	// false: such a request is refused.
	AcceptRequestPurpose bool `yaml:"acceptRequestPurpose"`
	// DSPTYearStart is the first day of a Data Security and Protection Toolkit assessment year,
	// as month-day, like 07-01: an organisation's DSPT status counts only in its own year.
	// Default 07-01 (the NHS toolkit year, 1 July to 30 June; [authz.DefaultDSPTYear]).
	DSPTYearStart string `yaml:"dsptYearStart"`
	// DSPTTimeZone is the IANA time zone whose midnight starts that year, like Europe/London.
	// Default UTC.
	DSPTTimeZone string `yaml:"dsptTimeZone"`
}

// RateLimit limits what each caller may ask: requests per user and per organisation, and
// distinct patients per user. The counts are kept in the cache's Redis when cache.redis.addrs is
// set (shared by replicas), in process otherwise. It becomes [ratelimit.Config] (see
// [Config.RateLimiter]).
type RateLimit struct {
	// User limits each user's requests. Default 600 a minute, 300 at once.
	User Rate `yaml:"user"`
	// Organisation limits the requests of all of an organisation's users together. Default
	// 6000 a minute, 1000 at once.
	Organisation Rate `yaml:"organisation"`
	// Patients limits how many different patients one user may open within a window: more is
	// a sign of trawling, refused and logged as a security event. Default 50 an hour.
	Patients PatientLimit `yaml:"patients"`
	// KeySecret is the secret (at least 32 bytes) the counts' keys are derived with, so that
	// Redis never holds a user's or patient's identifier. Replicas sharing Redis must share it.
	// Empty means a random secret for this process.
	KeySecret Secret `yaml:"keySecret"`
	// KeySecretFile names a file holding KeySecret; a relative path is taken from the config
	// file's directory.
	KeySecretFile string `yaml:"keySecretFile"`
	// MaxKeys bounds the counts held in process (callers active within a period or window).
	// Default 100000.
	MaxKeys int `yaml:"maxKeys"`
}

// Rate is a request-rate limit: on average Requests per Period, at most Burst at once.
type Rate struct {
	// Requests is how many requests are allowed each Period.
	Requests int `yaml:"requests"`
	// Period is the time Requests are counted over.
	Period Duration `yaml:"period"`
	// Burst is how many may come together after a quiet spell.
	Burst int `yaml:"burst"`
}

// PatientLimit is a limit on distinct patients per user within a sliding window.
type PatientLimit struct {
	// Patients is the most different patients a user may open within Window.
	Patients int `yaml:"patients"`
	// Window is how long a patient counts after the user last opened them.
	Window Duration `yaml:"window"`
}

// checkRateLimit checks the rateLimit section.
func checkRateLimit(ps *Problems, r RateLimit) {
	const p = "rateLimit"
	for _, rt := range []struct {
		key string
		r   Rate
		eg  string
	}{{"user", r.User, "600"}, {"organisation", r.Organisation, "6000"}} {
		if rt.r.Requests < 1 {
			ps.add(p+"."+rt.key+".requests", "is %d; it must be at least 1, like %s", rt.r.Requests, rt.eg)
		}
		if rt.r.Period.Std() < time.Second {
			ps.add(p+"."+rt.key+".period", "is %s; it must be at least 1s, like 1m", rt.r.Period)
		}
		if rt.r.Burst < 1 {
			ps.add(p+"."+rt.key+".burst", "is %d; it must be at least 1 (a burst of 1 allows no two requests together)", rt.r.Burst)
		}
	}
	if r.Patients.Patients < 1 {
		ps.add(p+".patients.patients", "is %d; it must be at least 1, like 50", r.Patients.Patients)
	}
	if r.Patients.Window.Std() < time.Minute {
		ps.add(p+".patients.window", "is %s; it must be at least 1m, like 1h", r.Patients.Window)
	}
	if n := len(r.KeySecret); n > 0 && n < ratelimit.MinKeySecret {
		ps.add(p+".keySecret", "is %d bytes; it must be at least %d (generate one with: openssl rand -base64 48)", n, ratelimit.MinKeySecret)
	}
	if r.MaxKeys < 1000 {
		ps.add(p+".maxKeys", "is %d; it must be at least 1000, like 100000", r.MaxKeys)
	}
}

// formatMonthDay is y's first day as dsptYearStart writes it: 07-01.
func formatMonthDay(y authz.DSPTYear) string {
	return fmt.Sprintf("%02d-%02d", int(y.StartMonth), y.StartDay)
}

// zoneName is loc as dsptTimeZone writes it; nil is UTC.
func zoneName(loc *time.Location) string {
	if loc == nil {
		return time.UTC.String()
	}
	return loc.String()
}

// monthDay is the form of dsptYearStart.
var monthDay = regexp.MustCompile(`^([0-9]{2})-([0-9]{2})$`)

// dsptYear reads dsptYearStart and dsptTimeZone; its errors say what is wrong and how to write
// it, without the key.
func (a Authorization) dsptYear() (authz.DSPTYear, error) {
	start, err := parseMonthDay(a.DSPTYearStart)
	if err != nil {
		return authz.DSPTYear{}, err
	}
	start.Location, err = loadZone(a.DSPTTimeZone)
	return start, err
}

// parseMonthDay reads month-day (07-01) as a DSPT year's first day, which authz must accept.
func parseMonthDay(s string) (authz.DSPTYear, error) {
	m := monthDay.FindStringSubmatch(s)
	if m == nil {
		return authz.DSPTYear{}, fmt.Errorf("%q is not a month and day; write them as MM-DD, like 07-01 (1 July)", s)
	}
	month, _ := strconv.Atoi(m[1])
	day, _ := strconv.Atoi(m[2])
	y := authz.DSPTYear{StartMonth: time.Month(month), StartDay: day}
	if err := y.Validate(); err != nil {
		return authz.DSPTYear{}, fmt.Errorf("%q is not a day of every year (%v); write MM-DD, like 07-01 (1 July)", s, err)
	}
	return y, nil
}

// loadZone loads an IANA time zone by name. "Local" is refused: it would make the year depend
// on the machine's setting.
func loadZone(name string) (*time.Location, error) {
	const how = "write an IANA time zone name, like Europe/London, or UTC"
	switch name {
	case "":
		return nil, fmt.Errorf("is empty; %s", how)
	case "Local":
		return nil, fmt.Errorf("%q is the machine's own setting, which may differ between replicas; %s", name, how)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not a time zone this system knows; %s", name, how)
	}
	return loc, nil
}

// checkAccess checks the access control sections. serve answers only authenticated callers of
// onboarded organisations, so a token issuer and the onboarding registry are required.
func (c Config) checkAccess(ps *Problems) {
	if len(c.Authentication.Issuers) == 0 {
		ps.add("auth.issuers", "is empty; nirproxy answers only callers with a bearer token from a trusted issuer: add the issuer (for NHS CIS2, see config.example.yaml)")
	}
	c.checkAuthentication(ps)
	if c.Onboarding.RegistryFile == "" {
		ps.add("onboarding.registryFile", "is empty; nirproxy answers only organisations onboarded to the registry: name the registry file (its form is in registry.example.yaml)")
	}
	checkPositive(ps, "onboarding.reloadEvery", c.Onboarding.ReloadEvery, "30s")
	checkAuthorization(ps, c.Authorization)
	checkRateLimit(ps, c.RateLimit)
	checkAudit(ps, c.Audit)
}

// checkAuthorization checks the roles map, each role and permission on its own so that every
// problem is named, and the DSPT year; authz.Rules.Validate then judges the whole, so that
// nothing this accepts is refused by authz.
func checkAuthorization(ps *Problems, a Authorization) {
	const p = "authorization"
	before := len(*ps)
	permissions := make([]string, 0, len(authz.Permissions()))
	for _, perm := range authz.Permissions() {
		permissions = append(permissions, string(perm))
	}
	for _, role := range slices.Sorted(maps.Keys(a.RoleActions)) {
		rp := p + ".roleActions." + role
		if (authz.RoleActions{role: nil}).Validate() != nil {
			hint := ""
			if up := strings.ToUpper(role); (authz.RoleActions{up: nil}).Validate() == nil {
				hint = "; here write " + up
			}
			ps.add(rp, "%q is not a national RBAC job role code; write R and four digits, like R8000 (Clinical Practitioner)%s", role, hint)
		}
		for j, perm := range a.RoleActions[role] {
			if !slices.Contains(authz.Permissions(), perm) {
				ps.add(fmt.Sprintf("%s[%d]", rp, j), "%q is not a permission; write one of %s%s",
					perm, strings.Join(permissions, ", "), didYouMean(string(perm), permissions))
			}
		}
	}
	if _, err := parseMonthDay(a.DSPTYearStart); err != nil {
		ps.add(p+".dsptYearStart", "%v", err)
	}
	if _, err := loadZone(a.DSPTTimeZone); err != nil {
		ps.add(p+".dsptTimeZone", "%v", err)
	}
	if len(*ps) > before {
		return
	}
	if rules, err := (Config{Authorization: a}).AuthzRules(); err != nil {
		ps.add(p, "%v", err)
	} else if err := rules.Validate(); err != nil {
		ps.add(p, "%v", err)
	}
}

// didYouMean is "; did you mean X?" for the one of names closest to s, or "".
func didYouMean(s string, names []string) string {
	if best := closest(s, names, 3); best != "" && best != s {
		return "; did you mean " + best + "?"
	}
	return ""
}

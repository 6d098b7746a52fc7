package authn

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// Claim profiles: how a verified token's claims become a policy.Principal.
const (
	// ProfileCIS2 reads NHS Care Identity Service 2 tokens: the selected role from
	// selected_roleid matched in nhsid_nrbac_roles (asking the issuer's userinfo endpoint
	// when the token lacks them), the user from nhsid_useruid, else sub.
	ProfileCIS2 = "cis2"
	// ProfileIUA reads IHE IUA access tokens: extensions.ihe_iua.subject_role,
	// subject_organization_id and purpose_of_use, client_id as the system.
	ProfileIUA = "iua"
	// ProfileClaims reads top-level string claims whose names the configuration gives.
	ProfileClaims = "claims"
)

// MaxClockSkew is the largest clock skew an issuer may be configured with.
const MaxClockSkew = 5 * time.Minute

// MinKeyRefresh is the shortest key refresh interval an issuer may be configured with: the
// background refresher schedules in whole seconds.
const MinKeyRefresh = time.Second

// allowedAlgorithms names the only signature algorithms an issuer may list. "none" and the
// HMAC family are deliberately absent: a public key must never serve as an HMAC secret.
const allowedAlgorithms = "RS256, RS512, PS256, ES256"

// algorithmAllowed reports whether an issuer may list alg.
func algorithmAllowed(alg string) bool {
	switch alg {
	case "RS256", "RS512", "PS256", "ES256":
		return true
	}
	return false
}

// Config configures an Authenticator. Every field is required: the package supplies no
// defaults, and New refuses a Config or Options with a field left out, naming it.
type Config struct {
	// Issuers are the token issuers the proxy trusts, each with its own keys and profile.
	// Issuer strings must be distinct.
	Issuers []Options
	// CacheTTL bounds how long a verified principal is reused without verifying its token
	// again; an entry never outlives its token's exp either.
	CacheTTL time.Duration
	// CacheSize bounds the number of verified principals, and separately of userinfo
	// answers, held in memory.
	CacheSize int
	// Clock tells the time for token validity, key age, rate limits and caches.
	Clock func() time.Time
	// HTTPClient fetches discovery documents, key sets and userinfo. It should carry a
	// timeout: a request waiting for keys waits at most as long as its context allows.
	HTTPClient *http.Client
}

// Options configures one trusted token issuer.
type Options struct {
	// Issuer is the issuer exactly as its tokens state it in iss, compared byte for byte
	// (a CIS2 issuer includes ":443").
	Issuer string
	// JWKSURL is where the issuer publishes its signing keys. Exactly one of JWKSURL and
	// Discovery is set.
	JWKSURL string
	// Discovery takes the key set's URL from jwks_uri in the issuer's discovery document,
	// <Issuer>/.well-known/openid-configuration, whose issuer must equal Issuer.
	Discovery bool
	// Audiences are the aud values accepted; a token must name at least one of them.
	Audiences []string
	// Algorithms is the signature algorithm allow-list, a subset of RS256, RS512, PS256
	// and ES256.
	Algorithms []string
	// ClockSkew is the tolerance applied to exp, nbf and iat; more than 0, at most
	// MaxClockSkew.
	ClockSkew time.Duration
	// KeyRefresh is how often the key set is refreshed in the background, and the least
	// time between two refreshes a token with an unknown kid may cause; at least
	// MinKeyRefresh.
	KeyRefresh time.Duration
	// KeyMaxAge is how long after their last successful fetch cached keys still verify
	// tokens while the issuer cannot be reached; after it every token of this issuer is
	// refused with ErrKeysUnavailable. It must exceed KeyRefresh.
	KeyMaxAge time.Duration
	// Profile is ProfileCIS2, ProfileIUA or ProfileClaims.
	Profile string
	// Claims names the claims ProfileClaims reads; empty for the other profiles.
	Claims ClaimNames
	// CIS2 holds what ProfileCIS2 needs; empty for the other profiles.
	CIS2 CIS2Options
}

// ClaimNames names the top-level claims the claims profile maps to a principal. Each value
// must be a JSON string when present.
type ClaimNames struct {
	Subject      string
	Role         string
	Organisation string
	Purpose      string
	System       string
}

// CIS2Options configures the cis2 profile.
type CIS2Options struct {
	// MinIDAssuranceLevel is the least id_assurance_level accepted (NHS services use 3);
	// a token without the claim is refused.
	MinIDAssuranceLevel int
	// ACRPrefix is the prefix acr must start with (NHS services use "AAL3_"); a token
	// without acr is refused.
	ACRPrefix string
	// UserinfoURL is the issuer's userinfo endpoint, asked for the roles when the token
	// lacks nhsid_nrbac_roles.
	UserinfoURL string
}

// Validate reports the first missing or wrong field of c, by its Go name (Config.CacheTTL,
// Config.Issuers[1]: Options.KeyMaxAge), as New refuses it. It starts and fetches nothing.
func (c Config) Validate() error {
	switch {
	case len(c.Issuers) == 0:
		return errors.New("Config.Issuers is empty: configure at least one token issuer")
	case c.CacheTTL <= 0:
		return errors.New("Config.CacheTTL is not set: give how long a verified token may be reused")
	case c.CacheSize <= 0:
		return errors.New("Config.CacheSize is not set: give how many verified tokens may be cached")
	case c.Clock == nil:
		return errors.New("Config.Clock is not set")
	case c.HTTPClient == nil:
		return errors.New("Config.HTTPClient is not set")
	}
	seen := make(map[string]bool, len(c.Issuers))
	for i, o := range c.Issuers {
		if err := o.Validate(); err != nil {
			return fmt.Errorf("Config.Issuers[%d]: %w", i, err)
		}
		if seen[o.Issuer] {
			return fmt.Errorf("Config.Issuers[%d]: Options.Issuer %q is configured twice", i, o.Issuer)
		}
		seen[o.Issuer] = true
	}
	return nil
}

// Validate reports the first missing or wrong field of o, by its Go name (Options.KeyMaxAge).
func (o Options) Validate() error {
	if err := checkURL("Options.Issuer", o.Issuer); err != nil {
		return err
	}
	switch {
	case o.JWKSURL == "" && !o.Discovery:
		return errors.New("neither Options.JWKSURL nor Options.Discovery is set: give the key set's URL or turn discovery on")
	case o.JWKSURL != "" && o.Discovery:
		return errors.New("both Options.JWKSURL and Options.Discovery are set: choose one")
	case o.JWKSURL != "":
		if err := checkURL("Options.JWKSURL", o.JWKSURL); err != nil {
			return err
		}
	}
	if len(o.Audiences) == 0 || slices.Contains(o.Audiences, "") {
		return errors.New("Options.Audiences is empty or has an empty entry: list the audiences a token may name")
	}
	if len(o.Algorithms) == 0 {
		return fmt.Errorf("Options.Algorithms is empty: list the accepted algorithms among %s", allowedAlgorithms)
	}
	for _, a := range o.Algorithms {
		if !algorithmAllowed(a) {
			return fmt.Errorf("Options.Algorithms names %q: only %s are accepted", a, allowedAlgorithms)
		}
	}
	switch {
	case o.ClockSkew <= 0 || o.ClockSkew > MaxClockSkew:
		return fmt.Errorf("Options.ClockSkew is %s: give more than 0 and at most %s", o.ClockSkew, MaxClockSkew)
	case o.KeyRefresh < MinKeyRefresh:
		return fmt.Errorf("Options.KeyRefresh is %s: give at least %s", o.KeyRefresh, MinKeyRefresh)
	case o.KeyMaxAge <= o.KeyRefresh:
		return fmt.Errorf("Options.KeyMaxAge is %s: give more than Options.KeyRefresh (%s)", o.KeyMaxAge, o.KeyRefresh)
	}
	return o.validateProfile()
}

// validateProfile checks that exactly the profile's own settings are given.
func (o Options) validateProfile() error {
	hasClaims := o.Claims != ClaimNames{}
	hasCIS2 := o.CIS2 != CIS2Options{}
	switch o.Profile {
	case ProfileCIS2:
		switch {
		case hasClaims:
			return errors.New("Options.Claims is set but Options.Profile is cis2: remove it")
		case o.CIS2.MinIDAssuranceLevel <= 0:
			return errors.New("Options.CIS2.MinIDAssuranceLevel is not set: give the least id_assurance_level accepted")
		case o.CIS2.ACRPrefix == "":
			return errors.New("Options.CIS2.ACRPrefix is not set: give the prefix acr must start with")
		}
		return checkURL("Options.CIS2.UserinfoURL", o.CIS2.UserinfoURL)
	case ProfileIUA:
		switch {
		case hasClaims:
			return errors.New("Options.Claims is set but Options.Profile is iua: remove it")
		case hasCIS2:
			return errors.New("Options.CIS2 is set but Options.Profile is iua: remove it")
		}
		return nil
	case ProfileClaims:
		switch {
		case hasCIS2:
			return errors.New("Options.CIS2 is set but Options.Profile is claims: remove it")
		case o.Claims.Subject == "":
			return errors.New("Options.Claims.Subject is not set")
		case o.Claims.Role == "":
			return errors.New("Options.Claims.Role is not set")
		case o.Claims.Organisation == "":
			return errors.New("Options.Claims.Organisation is not set")
		case o.Claims.Purpose == "":
			return errors.New("Options.Claims.Purpose is not set")
		case o.Claims.System == "":
			return errors.New("Options.Claims.System is not set")
		}
		return nil
	}
	return fmt.Errorf("Options.Profile is %q: give %s, %s or %s", o.Profile, ProfileCIS2, ProfileIUA, ProfileClaims)
}

// checkURL refuses a value that is not an absolute http or https URL.
func checkURL(field, v string) error {
	if v == "" {
		return fmt.Errorf("%s is not set", field)
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%s %q is not an absolute http(s) URL", field, v)
	}
	return nil
}

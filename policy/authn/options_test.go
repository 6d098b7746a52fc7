package authn

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConfigRefused checks New refuses an incomplete or unsafe configuration, naming the
// field.
func TestConfigRefused(t *testing.T) {
	clock := newFakeClock()
	claims := Options{
		Issuer:     "https://idp.example:443/realms/test",
		JWKSURL:    "https://idp.example:443/realms/test/jwks",
		Audiences:  []string{"nirproxy"},
		Algorithms: []string{"RS256"},
		ClockSkew:  30 * time.Second,
		KeyRefresh: time.Minute,
		KeyMaxAge:  time.Hour,
		Profile:    ProfileClaims,
		Claims:     ClaimNames{Subject: "sub", Role: "role", Organisation: "org", Purpose: "pou", System: "azp"},
	}
	cis2 := claims
	cis2.Profile, cis2.Claims = ProfileCIS2, ClaimNames{}
	cis2.Issuer = "https://cis2.example:443/realms/test"
	cis2.CIS2 = CIS2Options{MinIDAssuranceLevel: 3, ACRPrefix: "AAL3_", UserinfoURL: "https://cis2.example:443/realms/test/userinfo"}
	valid := func() Config {
		return Config{
			Issuers:    []Options{claims, cis2},
			CacheTTL:   time.Minute,
			CacheSize:  10,
			Clock:      clock.Now,
			HTTPClient: &http.Client{},
		}
	}

	tests := []struct {
		name   string
		change func(c *Config)
		field  string
	}{
		{name: "no issuers", change: func(c *Config) { c.Issuers = nil }, field: "Config.Issuers"},
		{name: "no cache bound", change: func(c *Config) { c.CacheTTL = 0 }, field: "Config.CacheTTL"},
		{name: "no cache size", change: func(c *Config) { c.CacheSize = 0 }, field: "Config.CacheSize"},
		{name: "no clock", change: func(c *Config) { c.Clock = nil }, field: "Config.Clock"},
		{name: "no HTTP client", change: func(c *Config) { c.HTTPClient = nil }, field: "Config.HTTPClient"},
		{name: "issuer twice", change: func(c *Config) { c.Issuers[1] = c.Issuers[0] }, field: "configured twice"},
		{name: "no issuer", change: func(c *Config) { c.Issuers[0].Issuer = "" }, field: "Options.Issuer"},
		{name: "issuer not a URL", change: func(c *Config) { c.Issuers[0].Issuer = "idp.example" }, field: "Options.Issuer"},
		{name: "neither JWKS URL nor discovery", change: func(c *Config) { c.Issuers[0].JWKSURL = "" }, field: "Options.JWKSURL"},
		{name: "both JWKS URL and discovery", change: func(c *Config) { c.Issuers[0].Discovery = true }, field: "Options.Discovery"},
		{name: "JWKS URL not a URL", change: func(c *Config) { c.Issuers[0].JWKSURL = "/jwks" }, field: "Options.JWKSURL"},
		{name: "no audiences", change: func(c *Config) { c.Issuers[0].Audiences = nil }, field: "Options.Audiences"},
		{name: "empty audience", change: func(c *Config) { c.Issuers[0].Audiences = []string{""} }, field: "Options.Audiences"},
		{name: "no algorithms", change: func(c *Config) { c.Issuers[0].Algorithms = nil }, field: "Options.Algorithms"},
		{name: "alg none", change: func(c *Config) { c.Issuers[0].Algorithms = []string{"RS256", "none"} }, field: `Options.Algorithms names "none"`},
		{name: "HMAC", change: func(c *Config) { c.Issuers[0].Algorithms = []string{"HS256"} }, field: `Options.Algorithms names "HS256"`},
		{name: "unlisted algorithm", change: func(c *Config) { c.Issuers[0].Algorithms = []string{"ES384"} }, field: `Options.Algorithms names "ES384"`},
		{name: "no skew", change: func(c *Config) { c.Issuers[0].ClockSkew = 0 }, field: "Options.ClockSkew"},
		{name: "skew too large", change: func(c *Config) { c.Issuers[0].ClockSkew = time.Hour }, field: "Options.ClockSkew"},
		{name: "no key refresh", change: func(c *Config) { c.Issuers[0].KeyRefresh = 0 }, field: "Options.KeyRefresh"},
		{name: "no key max age", change: func(c *Config) { c.Issuers[0].KeyMaxAge = 0 }, field: "Options.KeyMaxAge"},
		{name: "key max age not above refresh", change: func(c *Config) { c.Issuers[0].KeyMaxAge = time.Minute }, field: "Options.KeyMaxAge"},
		{name: "no profile", change: func(c *Config) { c.Issuers[0].Profile = "" }, field: "Options.Profile"},
		{name: "unknown profile", change: func(c *Config) { c.Issuers[0].Profile = "saml" }, field: "Options.Profile"},
		{name: "claims: no subject claim", change: func(c *Config) { c.Issuers[0].Claims.Subject = "" }, field: "Options.Claims.Subject"},
		{name: "claims: no role claim", change: func(c *Config) { c.Issuers[0].Claims.Role = "" }, field: "Options.Claims.Role"},
		{name: "claims: no organisation claim", change: func(c *Config) { c.Issuers[0].Claims.Organisation = "" }, field: "Options.Claims.Organisation"},
		{name: "claims: no purpose claim", change: func(c *Config) { c.Issuers[0].Claims.Purpose = "" }, field: "Options.Claims.Purpose"},
		{name: "claims: no system claim", change: func(c *Config) { c.Issuers[0].Claims.System = "" }, field: "Options.Claims.System"},
		{name: "claims: CIS2 settings", change: func(c *Config) { c.Issuers[0].CIS2 = cis2.CIS2 }, field: "Options.CIS2"},
		{name: "cis2: claim names", change: func(c *Config) { c.Issuers[1].Claims = claims.Claims }, field: "Options.Claims"},
		{name: "cis2: no assurance minimum", change: func(c *Config) { c.Issuers[1].CIS2.MinIDAssuranceLevel = 0 }, field: "Options.CIS2.MinIDAssuranceLevel"},
		{name: "cis2: no acr prefix", change: func(c *Config) { c.Issuers[1].CIS2.ACRPrefix = "" }, field: "Options.CIS2.ACRPrefix"},
		{name: "cis2: no userinfo URL", change: func(c *Config) { c.Issuers[1].CIS2.UserinfoURL = "" }, field: "Options.CIS2.UserinfoURL"},
		{name: "iua: claim names", change: func(c *Config) {
			c.Issuers[1].Profile, c.Issuers[1].CIS2, c.Issuers[1].Claims = ProfileIUA, CIS2Options{}, claims.Claims
		}, field: "Options.Claims"},
		{name: "iua: CIS2 settings", change: func(c *Config) { c.Issuers[1].Profile = ProfileIUA }, field: "Options.CIS2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.change(&cfg)
			a, err := New(t.Context(), cfg)
			if err == nil {
				_ = a.Close(t.Context())
				t.Fatal("New accepted the configuration")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
	a, err := New(t.Context(), valid())
	if err != nil {
		t.Fatalf("New refused the valid configuration: %v", err)
	}
	if err := a.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

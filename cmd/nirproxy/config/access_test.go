package config

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy/authn"
	"github.com/nirproxy/nirproxy/policy/authz"
)

// cis2Issuer is CIS2's integration issuer, with its port, as its tokens state it.
const cis2Issuer = "https://am.nhsint.auth-ptl.cis2.spineservices.nhs.uk:443/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare"

// withIssuers gives c two valid token issuers: CIS2 (issuers[0]) and one of profile claims
// (issuers[1]).
func withIssuers(c *Config) {
	cis2 := DefaultTokenIssuer()
	cis2.Issuer, cis2.Discovery, cis2.Audiences, cis2.Profile = cis2Issuer, true, []string{"nirproxy-client-id"}, authn.ProfileCIS2
	cis2.CIS2.UserinfoURL = cis2Issuer + "/userinfo"
	claims := DefaultTokenIssuer()
	claims.Issuer, claims.JWKSURL, claims.Audiences, claims.Profile = "https://login.example.nhs.uk", "https://login.example.nhs.uk/certs", []string{"nirproxy"}, authn.ProfileClaims
	claims.Claims = ClaimNames{Subject: "sub", Role: "job_role", Organisation: "ods_code", Purpose: "purpose_of_use", System: "azp"}
	c.Authentication.Issuers = []TokenIssuer{cis2, claims}
}

// accessYAML sets every key of the access sections to something other than its default; its
// second issuer keeps the issuer defaults.
const accessYAML = `
auth:
  issuers:
    - issuer: https://idp.example.nhs.uk/
      jwksURL: https://idp.example.nhs.uk/keys
      discovery: false
      audiences: [a, b]
      algorithms: [PS256, ES256]
      clockSkew: 30s
      keyRefresh: 1m
      keyMaxAge: 2h
      profile: claims
      claims: {subject: uid, role: rbac, organisation: ods, purpose: pou, system: client}
      cis2: {minIdAssuranceLevel: 2, acrPrefix: AAL2_, userinfoURL: https://idp.example.nhs.uk/userinfo}
    - issuer: https://iua.example.nhs.uk
      discovery: true
      audiences: [nirproxy]
      profile: iua
  tokenCacheTTL: 1m
  tokenCacheSize: 50
  httpTimeout: 2s
onboarding:
  registryFile: /etc/nirproxy/onboarding.yaml
  reloadEvery: 1m
authorization:
  roleActions:
    R8000: &clinical [search, retrieveImages]
    R8001: *clinical
    R8008:
  acceptRequestPurpose: true
  dsptYearStart: "04-01"
  dsptTimeZone: Europe/London
`

func TestParseAccess(t *testing.T) {
	full := Default()
	second := DefaultTokenIssuer()
	second.Issuer, second.Discovery, second.Audiences, second.Profile = "https://iua.example.nhs.uk", true, []string{"nirproxy"}, authn.ProfileIUA
	full.Authentication = Authentication{
		Issuers: []TokenIssuer{{
			Issuer:     "https://idp.example.nhs.uk/",
			JWKSURL:    "https://idp.example.nhs.uk/keys",
			Audiences:  []string{"a", "b"},
			Algorithms: []string{"PS256", "ES256"},
			ClockSkew:  Duration(30 * time.Second),
			KeyRefresh: Duration(time.Minute),
			KeyMaxAge:  Duration(2 * time.Hour),
			Profile:    authn.ProfileClaims,
			Claims:     ClaimNames{Subject: "uid", Role: "rbac", Organisation: "ods", Purpose: "pou", System: "client"},
			CIS2:       CIS2{MinIDAssuranceLevel: 2, ACRPrefix: "AAL2_", UserinfoURL: "https://idp.example.nhs.uk/userinfo"},
		}, second},
		CacheTTL:    Duration(time.Minute),
		CacheSize:   50,
		HTTPTimeout: Duration(2 * time.Second),
	}
	full.Onboarding = Onboarding{RegistryFile: "/etc/nirproxy/onboarding.yaml", ReloadEvery: Duration(time.Minute)}
	clinical := []authz.Permission{authz.PermSearch, authz.PermRetrieveImages}
	full.Authorization = Authorization{
		RoleActions:          authz.RoleActions{"R8000": clinical, "R8001": clinical, "R8008": nil},
		AcceptRequestPurpose: true,
		DSPTYearStart:        "04-01",
		DSPTTimeZone:         "Europe/London",
	}
	tests := []struct {
		name string
		yaml string
		want Config
	}{
		{"every key", accessYAML, full},
		{"no sections keep the defaults", "listen: :8080\n", func() Config {
			c := Default()
			c.Listen = ":8080"
			return c
		}()},
		{"an issuer entry starts from the issuer defaults", "auth:\n  issuers:\n    - {issuer: https://a, keyMaxAge: 2h}\n    - {}\n", func() Config {
			c := Default()
			a, b := DefaultTokenIssuer(), DefaultTokenIssuer()
			a.Issuer, a.KeyMaxAge = "https://a", Duration(2*time.Hour)
			c.Authentication.Issuers = []TokenIssuer{a, b}
			return c
		}()},
		{"a roles map replaces the default whole", "authorization:\n  roleActions:\n    R8000: [search]\n", func() Config {
			c := Default()
			c.Authorization.RoleActions = authz.RoleActions{"R8000": {authz.PermSearch}}
			return c
		}()},
		{"an empty roles map gives no role anything", "authorization:\n  roleActions: {}\n", func() Config {
			c := Default()
			c.Authorization.RoleActions = authz.RoleActions{}
			return c
		}()},
		{"a roles map without value keeps the default", "authorization:\n  roleActions:\n", Default()},
		{"merge keys in the roles map", "authorization:\n  roleActions:\n    <<: [{R0001: [readAudit]}, {R8000: [search]}]\n    R8000: [operate]\n", func() Config {
			c := Default()
			c.Authorization.RoleActions = authz.RoleActions{"R0001": {authz.PermReadAudit}, "R8000": {authz.PermOperate}}
			return c
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), nil)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Errorf("got\n%+v\n%+v\n%+v\nwant\n%+v\n%+v\n%+v", c.Authentication, c.Onboarding, c.Authorization,
					tc.want.Authentication, tc.want.Onboarding, tc.want.Authorization)
			}
		})
	}
}

func TestRegistryFilePath(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		yaml    string
		environ []string
		want    string
	}{
		{"relative to the config file", "onboarding: {registryFile: onboarding.yaml}\n", nil, filepath.Join(dir, "onboarding.yaml")},
		{"absolute", "onboarding: {registryFile: /etc/nirproxy/onboarding.yaml}\n", nil, "/etc/nirproxy/onboarding.yaml"},
		{"from the environment, relative", "", []string{"NIRPROXY_ONBOARDING_REGISTRY_FILE=reg/onboarding.yaml"}, filepath.Join(dir, "reg/onboarding.yaml")},
		{"none", "", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(fileWriter(t, dir)("config.yaml", tc.yaml), tc.environ)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.Onboarding.RegistryFile != tc.want {
				t.Errorf("onboarding.registryFile = %q, want %q", c.Onboarding.RegistryFile, tc.want)
			}
		})
	}
	c, err := Parse([]byte("onboarding: {registryFile: onboarding.yaml}\n"), nil)
	if err != nil || c.Onboarding.RegistryFile != "onboarding.yaml" {
		t.Errorf("Parse: onboarding.registryFile = %q, %v; want it relative, as written", c.Onboarding.RegistryFile, err)
	}
}

func TestValidateAccess(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   []Problem // Message is a substring of the problem's message
	}{
		{"defaults", func(c *Config) {}, nil},
		{"valid issuers", withIssuers, nil},
		{"no issuers: no caller could be authenticated", func(c *Config) { c.Authentication.Issuers = nil },
			[]Problem{{"auth.issuers", "is empty; nirproxy answers only callers with a bearer token from a trusted issuer: add the issuer (for NHS CIS2, see config.example.yaml)"}}},
		{"no audit spool: nothing could be recorded", func(c *Config) { c.Audit.SpoolDir = "" },
			[]Problem{{"audit.spoolDir", "is empty; nirproxy records every access before it answers: name a directory for the audit spool, like /var/lib/nirproxy/audit"}}},
		{"audit segments too small, and a spool smaller than a segment", func(c *Config) { c.Audit.SegmentBytes = 1000 },
			[]Problem{{"audit.segmentBytes", "is 1000; use 1048576 (1 MiB) to 1073741824 (1 GiB), like 67108864 (64 MiB)"}}},
		{"a spool smaller than a segment", func(c *Config) { c.Audit.MaxBytes = 1 << 20 },
			[]Problem{{"audit.maxBytes", "is 1048576, less than audit.segmentBytes (67108864); give room for many segments, like 10737418240 (10 GiB)"}}},
		{"an ATNA repository at no port, unnamed, with small messages", func(c *Config) {
			c.Audit.ATNA.Address, c.Audit.ATNA.MaxMessageSize = "atna.example.nhs.uk", 1024
		}, []Problem{
			{"audit.atna.address", `"atna.example.nhs.uk" is not host:port; write it like atna.example.nhs.uk:6514`},
			{"audit.atna.sourceId", "is empty; name this nirproxy as the audit repository knows it"},
			{"audit.atna.maxMessageSize", "is 1024; it must be at least 8192, like 32768"},
		}},
		{"an ATNA repository", func(c *Config) {
			c.Audit.ATNA.Address, c.Audit.ATNA.SourceID = "atna.example.nhs.uk:6514", "NIRPROXY-LEEDS"
		}, nil},
		{"no registry: no organisation could be onboarded", func(c *Config) { c.Onboarding.RegistryFile = "" },
			[]Problem{{"onboarding.registryFile", "is empty; nirproxy answers only organisations onboarded to the registry: name the registry file (its form is in registry.example.yaml)"}}},

		// rateLimit
		{"rate limits of nothing", func(c *Config) {
			c.RateLimit.User = Rate{}
			c.RateLimit.Organisation.Period = Duration(time.Millisecond)
			c.RateLimit.Patients = PatientLimit{Patients: 0, Window: Duration(time.Second)}
			c.RateLimit.MaxKeys = 10
		}, []Problem{
			{"rateLimit.user.requests", "is 0; it must be at least 1, like 600"},
			{"rateLimit.user.period", "is 0s; it must be at least 1s, like 1m"},
			{"rateLimit.user.burst", "is 0; it must be at least 1 (a burst of 1 allows no two requests together)"},
			{"rateLimit.organisation.period", "is 1ms; it must be at least 1s, like 1m"},
			{"rateLimit.patients.patients", "is 0; it must be at least 1, like 50"},
			{"rateLimit.patients.window", "is 1s; it must be at least 1m, like 1h"},
			{"rateLimit.maxKeys", "is 10; it must be at least 1000, like 100000"},
		}},
		{"a rate limit key secret too short", func(c *Config) { c.RateLimit.KeySecret = "short" },
			[]Problem{{"rateLimit.keySecret", "is 5 bytes; it must be at least 32 (generate one with: openssl rand -base64 48)"}}},

		// auth
		{"token cache of no time", func(c *Config) { c.Authentication.CacheTTL = 0 },
			[]Problem{{"auth.tokenCacheTTL", "is 0s; it must be greater than 0, like 5m"}}},
		{"token cache of no time, with issuers: said once", func(c *Config) { withIssuers(c); c.Authentication.CacheTTL = 0 },
			[]Problem{{"auth.tokenCacheTTL", "is 0s; it must be greater than 0, like 5m"}}},
		{"token cache of no size", func(c *Config) { c.Authentication.CacheSize = 0 },
			[]Problem{{"auth.tokenCacheSize", "is 0; it must be at least 1, like 10000"}}},
		{"fetches without time", func(c *Config) { c.Authentication.HTTPTimeout = 0 },
			[]Problem{{"auth.httpTimeout", "is 0s; it must be greater than 0, like 5s"}}},

		// auth.issuers, as authn judges them
		{"an issuer kept as written, trailing slash and all", func(c *Config) {
			withIssuers(c)
			c.Authentication.Issuers[1].Issuer += "/"
		}, nil},
		{"no issuer", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].Issuer = "" },
			[]Problem{{"auth.issuers[0].issuer", "is not set; write it exactly as the issuer's tokens state iss (CIS2's includes :443)"}}},
		{"an issuer that is no URL", func(c *Config) { withIssuers(c); c.Authentication.Issuers[1].Issuer = "login.example.nhs.uk" },
			[]Problem{{"auth.issuers[1].issuer", `"login.example.nhs.uk" is not an absolute http(s) URL; write it exactly`}}},
		{"the same issuer twice", func(c *Config) { withIssuers(c); c.Authentication.Issuers[1].Issuer = cis2Issuer },
			[]Problem{{"auth.issuers[1].issuer", `"` + cis2Issuer + `" is configured twice; list each issuer once`}}},
		{"no keys", func(c *Config) { withIssuers(c); c.Authentication.Issuers[1].JWKSURL = "" },
			[]Problem{{"auth.issuers[1].jwksURL", "neither jwksURL nor discovery is set: give the key set's URL or turn discovery on"}}},
		{"keys twice", func(c *Config) { withIssuers(c); c.Authentication.Issuers[1].Discovery = true },
			[]Problem{{"auth.issuers[1].jwksURL", "both jwksURL and discovery are set: choose one"}}},
		{"keys at no URL", func(c *Config) { withIssuers(c); c.Authentication.Issuers[1].JWKSURL = "certs" },
			[]Problem{{"auth.issuers[1].jwksURL", `"certs" is not an absolute http(s) URL`}}},
		{"no audience", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].Audiences = nil },
			[]Problem{{"auth.issuers[0].audiences", "is empty or has an empty entry: list the audiences a token may name"}}},
		{"an empty audience", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].Audiences = []string{"a", ""} },
			[]Problem{{"auth.issuers[0].audiences", "has an empty entry"}}},
		{"no algorithm", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].Algorithms = nil },
			[]Problem{{"auth.issuers[0].algorithms", "is empty: list the accepted algorithms among RS256, RS512, PS256, ES256"}}},
		{"every accepted algorithm", func(c *Config) {
			withIssuers(c)
			c.Authentication.Issuers[0].Algorithms = []string{"RS256", "RS512", "PS256", "ES256"}
		}, nil},
		{"algorithm none and HMAC", func(c *Config) {
			withIssuers(c)
			c.Authentication.Issuers[0].Algorithms = []string{"RS256", "none", "HS256"}
		},
			[]Problem{
				{"auth.issuers[0].algorithms[1]", `"none" is not accepted; only RS256, RS512, PS256, ES256 are accepted`},
				{"auth.issuers[0].algorithms[2]", `"HS256" is not accepted; only RS256, RS512, PS256, ES256 are accepted`},
			}},
		{"an algorithm in lower case", func(c *Config) { withIssuers(c); c.Authentication.Issuers[1].Algorithms = []string{"rs256"} },
			[]Problem{{"auth.issuers[1].algorithms[0]", `"rs256" is not accepted; only RS256, RS512, PS256, ES256 are accepted; did you mean RS256?`}}},
		{"no clock skew", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].ClockSkew = 0 },
			[]Problem{{"auth.issuers[0].clockSkew", "is 0s: give more than 0 and at most 5m0s"}}},
		{"too much clock skew", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].ClockSkew = Duration(10 * time.Minute) },
			[]Problem{{"auth.issuers[0].clockSkew", "is 10m0s: give more than 0 and at most 5m0s"}}},
		{"keys refreshed too often", func(c *Config) {
			withIssuers(c)
			c.Authentication.Issuers[0].KeyRefresh = Duration(500 * time.Millisecond)
		},
			[]Problem{{"auth.issuers[0].keyRefresh", "is 500ms: give at least 1s"}}},
		{"keys too old for their refresh", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].KeyMaxAge = Duration(5 * time.Minute) },
			[]Problem{{"auth.issuers[0].keyMaxAge", "is 5m0s: give more than keyRefresh (5m0s)"}}},
		{"no profile", func(c *Config) { withIssuers(c); c.Authentication.Issuers[1].Profile = "" },
			[]Problem{{"auth.issuers[1].profile", `is "": give cis2, iua or claims`}}},
		{"a profile in upper case", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].Profile = "CIS2" },
			[]Problem{{"auth.issuers[0].profile", `is "CIS2": give cis2, iua or claims; did you mean cis2?`}}},
		{"profile iua, cis2 settings at their defaults", func(c *Config) {
			withIssuers(c)
			c.Authentication.Issuers[1].Profile, c.Authentication.Issuers[1].Claims = authn.ProfileIUA, ClaimNames{}
		}, nil},
		{"cis2 settings for profile iua", func(c *Config) {
			withIssuers(c)
			c.Authentication.Issuers[1].Profile, c.Authentication.Issuers[1].Claims = authn.ProfileIUA, ClaimNames{}
			c.Authentication.Issuers[1].CIS2.UserinfoURL = "https://login.example.nhs.uk/userinfo"
		}, []Problem{{"auth.issuers[1].cis2", "is set but profile is iua: remove it"}}},
		{"cis2 settings for profile claims", func(c *Config) { withIssuers(c); c.Authentication.Issuers[1].CIS2.ACRPrefix = "AAL2_" },
			[]Problem{{"auth.issuers[1].cis2", "is set but profile is claims: remove it"}}},
		{"claims for profile cis2", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].Claims.Role = "role" },
			[]Problem{{"auth.issuers[0].claims", "is set but profile is cis2: remove it"}}},
		{"claims for profile iua", func(c *Config) { withIssuers(c); c.Authentication.Issuers[1].Profile = authn.ProfileIUA },
			[]Problem{{"auth.issuers[1].claims", "is set but profile is iua: remove it"}}},
		{"cis2 without an assurance level", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].CIS2.MinIDAssuranceLevel = 0 },
			[]Problem{{"auth.issuers[0].cis2.minIdAssuranceLevel", "is not set: give the least id_assurance_level accepted"}}},
		{"cis2 without an acr prefix", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].CIS2.ACRPrefix = "" },
			[]Problem{{"auth.issuers[0].cis2.acrPrefix", "is not set: give the prefix acr must start with"}}},
		{"cis2 without userinfo", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].CIS2.UserinfoURL = "" },
			[]Problem{{"auth.issuers[0].cis2.userinfoURL", "is not set; CIS2's is <issuer>/userinfo"}}},
		{"cis2 with userinfo at no URL", func(c *Config) { withIssuers(c); c.Authentication.Issuers[0].CIS2.UserinfoURL = "/userinfo" },
			[]Problem{{"auth.issuers[0].cis2.userinfoURL", `"/userinfo" is not an absolute http(s) URL`}}},
		{"claims without a system", func(c *Config) { withIssuers(c); c.Authentication.Issuers[1].Claims.System = "" },
			[]Problem{{"auth.issuers[1].claims.system", "is not set; write the name of the top-level claim that holds the calling system's client id, like azp"}}},
		{"claims without any name", func(c *Config) { withIssuers(c); c.Authentication.Issuers[1].Claims = ClaimNames{} },
			[]Problem{
				{"auth.issuers[1].claims.subject", "is not set; write the name of the top-level claim that holds the user's identifier, like sub"},
				{"auth.issuers[1].claims.role", "holds the national RBAC job role"},
				{"auth.issuers[1].claims.organisation", "holds the ODS code"},
				{"auth.issuers[1].claims.purpose", "holds the purpose of use"},
				{"auth.issuers[1].claims.system", "holds the calling system's client id"},
			}},
		{"every problem of every issuer at once", func(c *Config) {
			withIssuers(c)
			c.Authentication.Issuers = append(c.Authentication.Issuers, c.Authentication.Issuers[0])
			i := &c.Authentication.Issuers[0]
			i.Issuer, i.Audiences, i.Algorithms, i.ClockSkew, i.KeyMaxAge = "", nil, []string{"HS256"}, 0, 0
			i.CIS2.UserinfoURL = ""
			c.Authentication.Issuers[1].JWKSURL = ""
		}, []Problem{
			{"auth.issuers[0].issuer", "is not set"},
			{"auth.issuers[0].audiences", "is empty"},
			{"auth.issuers[0].algorithms[0]", `"HS256" is not accepted`},
			{"auth.issuers[0].clockSkew", "is 0s"},
			{"auth.issuers[0].keyMaxAge", "is 0s"},
			{"auth.issuers[0].cis2.userinfoURL", "is not set"},
			{"auth.issuers[1].jwksURL", "neither jwksURL nor discovery is set"},
		}},
		{"the same issuer twice, among other problems", func(c *Config) {
			withIssuers(c)
			c.Authentication.Issuers = append(c.Authentication.Issuers, c.Authentication.Issuers[0])
			c.Authentication.Issuers[1].JWKSURL = ""
		}, []Problem{
			{"auth.issuers[1].jwksURL", "neither jwksURL nor discovery is set"},
			{"auth.issuers[2].issuer", "is configured twice"},
		}},

		// onboarding
		{"a registry never reloaded", func(c *Config) { c.Onboarding.ReloadEvery = 0 },
			[]Problem{{"onboarding.reloadEvery", "is 0s; it must be greater than 0, like 30s"}}},
		{"a registry that is not there is for check-config", func(c *Config) { c.Onboarding.RegistryFile = "/nonexistent/onboarding.yaml" }, nil},

		// authorization
		{"no role may do anything", func(c *Config) { c.Authorization.RoleActions = authz.RoleActions{} }, nil},
		{"every permission", func(c *Config) {
			c.Authorization.RoleActions = authz.RoleActions{"R8000": authz.Permissions(), "R8008": nil}
		}, nil},
		{"a role in lower case", func(c *Config) { c.Authorization.RoleActions["r8004"] = []authz.Permission{authz.PermSearch} },
			[]Problem{{"authorization.roleActions.r8004", `"r8004" is not a national RBAC job role code; write R and four digits, like R8000 (Clinical Practitioner); here write R8004`}}},
		{"a role by its name", func(c *Config) { c.Authorization.RoleActions["Nurse"] = nil },
			[]Problem{{"authorization.roleActions.Nurse", `"Nurse" is not a national RBAC job role code; write R and four digits, like R8000 (Clinical Practitioner)`}}},
		{"a misspelt permission", func(c *Config) {
			c.Authorization.RoleActions["R8000"] = []authz.Permission{authz.PermSearch, "retrieveImage"}
		},
			[]Problem{{"authorization.roleActions.R8000[1]", `"retrieveImage" is not a permission; write one of search, retrieveImages, retrieveReports, readAudit, operate; did you mean retrieveImages?`}}},
		{"an unknown permission", func(c *Config) { c.Authorization.RoleActions["R0001"] = []authz.Permission{"everything"} },
			[]Problem{{"authorization.roleActions.R0001[0]", `"everything" is not a permission; write one of search, retrieveImages, retrieveReports, readAudit, operate`}}},
		{"another DSPT year", func(c *Config) {
			c.Authorization.DSPTYearStart, c.Authorization.DSPTTimeZone = "04-01", "Europe/London"
		}, nil},
		{"a DSPT year start not written MM-DD", func(c *Config) { c.Authorization.DSPTYearStart = "7-1" },
			[]Problem{{"authorization.dsptYearStart", `"7-1" is not a month and day; write them as MM-DD, like 07-01 (1 July)`}}},
		{"a DSPT year starting on a day most years lack", func(c *Config) { c.Authorization.DSPTYearStart = "02-29" },
			[]Problem{{"authorization.dsptYearStart", `"02-29" is not a day of every year (DSPT year start day 29 is not a day 1-28 of February); write MM-DD, like 07-01 (1 July)`}}},
		{"a DSPT year starting in no month", func(c *Config) { c.Authorization.DSPTYearStart = "13-01" },
			[]Problem{{"authorization.dsptYearStart", `"13-01" is not a day of every year (DSPT year start month 13 is not a month 1-12)`}}},
		{"no DSPT time zone", func(c *Config) { c.Authorization.DSPTTimeZone = "" },
			[]Problem{{"authorization.dsptTimeZone", "is empty; write an IANA time zone name, like Europe/London, or UTC"}}},
		{"the machine's time zone", func(c *Config) { c.Authorization.DSPTTimeZone = "Local" },
			[]Problem{{"authorization.dsptTimeZone", `"Local" is the machine's own setting, which may differ between replicas`}}},
		{"an unknown time zone", func(c *Config) { c.Authorization.DSPTTimeZone = "Europe/Londn" },
			[]Problem{{"authorization.dsptTimeZone", `"Europe/Londn" is not a time zone this system knows; write an IANA time zone name, like Europe/London, or UTC`}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(&c)
			got := c.Validate()
			matchProblems(t, got, tc.want)
			agreesWithPolicy(t, c, got)
		})
	}
}

// agreesWithPolicy checks that Validate's problems with the access sections agree with the
// policy packages: what Validate accepts they accept, and what they refuse it refuses.
func agreesWithPolicy(t *testing.T, c Config, problems []Problem) {
	t.Helper()
	under := func(prefix string, except ...string) bool {
		return slices.ContainsFunc(problems, func(p Problem) bool {
			return strings.HasPrefix(p.Path, prefix) && !slices.Contains(except, p.Path)
		})
	}
	if len(c.Authentication.Issuers) > 0 {
		err := authnAccepts(c.Authn(time.Now, nil))
		if refused := under("auth.", "auth.httpTimeout"); refused != (err != nil) {
			t.Errorf("Validate refuses the auth section: %v; authn.New: %v", refused, err)
		}
	}
	rules, err := c.AuthzRules()
	if err == nil {
		err = rules.Validate()
	}
	if refused := under("authorization"); refused != (err != nil) {
		t.Errorf("Validate refuses the authorization section: %v; authz: %v", refused, err)
	}
}

func TestAccessWarnings(t *testing.T) {
	checkWarnings(t, []warningCase{
		{"CIS2 with its port", withIssuers, nil},
		{"CIS2 without a port", func(c *Config) {
			withIssuers(c)
			c.Authentication.Issuers[0].Issuer = strings.Replace(cis2Issuer, ":443", "", 1)
		}, []Problem{{"auth.issuers[0].issuer", "has no port, but CIS2 states its issuer with one (https://am.nhsidentity.spineservices.nhs.uk:443/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare) " +
			"and issuers are compared exactly; check it against the iss of one of its tokens, or every token from it will be refused"}}},
		{"another profile without a port", func(c *Config) { withIssuers(c); c.Authentication.Issuers = c.Authentication.Issuers[1:] }, nil},
	})
}

// TestEnvOverridesAccess sets every key of the access sections that has an override; it fails
// when one is missing from the table, so a new key cannot go untested.
func TestEnvOverridesAccess(t *testing.T) {
	checkEnvCases(t, []string{"AUTH_", "ONBOARDING_", "AUTHORIZATION_"}, []envCase{
		{"NIRPROXY_AUTH_TOKEN_CACHE_TTL", "10m", func(c Config) any { return c.Authentication.CacheTTL.Std() }, 10 * time.Minute},
		{"NIRPROXY_AUTH_TOKEN_CACHE_SIZE", "500", func(c Config) any { return c.Authentication.CacheSize }, 500},
		{"NIRPROXY_AUTH_HTTP_TIMEOUT", "2s", func(c Config) any { return c.Authentication.HTTPTimeout.Std() }, 2 * time.Second},
		{"NIRPROXY_ONBOARDING_REGISTRY_FILE", "/etc/nirproxy/onboarding.yaml", func(c Config) any { return c.Onboarding.RegistryFile }, "/etc/nirproxy/onboarding.yaml"},
		{"NIRPROXY_ONBOARDING_RELOAD_EVERY", "1m", func(c Config) any { return c.Onboarding.ReloadEvery.Std() }, time.Minute},
		{"NIRPROXY_AUTHORIZATION_ACCEPT_REQUEST_PURPOSE", "true", func(c Config) any { return c.Authorization.AcceptRequestPurpose }, true},
		{"NIRPROXY_AUTHORIZATION_DSPT_YEAR_START", "04-01", func(c Config) any { return c.Authorization.DSPTYearStart }, "04-01"},
		{"NIRPROXY_AUTHORIZATION_DSPT_TIME_ZONE", "Europe/London", func(c Config) any { return c.Authorization.DSPTTimeZone }, "Europe/London"},
	})
	// The issuers and the roles map are set in the file only, and a bad value names its key.
	_, err := Parse([]byte(twoSourcesYAML), []string{
		"NIRPROXY_AUTH_ISSUERS=https://x", "NIRPROXY_AUTHORIZATION_ROLE_ACTIONS=R8000", "NIRPROXY_AUTH_TOKEN_CACHE_SIZE=many",
	})
	assertProblems(t, err, []Problem{
		{"NIRPROXY_AUTH_ISSUERS", "names no configuration key"},
		{"NIRPROXY_AUTHORIZATION_ROLE_ACTIONS", "names no configuration key"},
		{"NIRPROXY_AUTH_TOKEN_CACHE_SIZE", `"many" is not a whole number; write it like 100 (overriding auth.tokenCacheSize)`},
	})
}

func TestCheckFileAccess(t *testing.T) {
	dir := t.TempDir()
	write := fileWriter(t, dir)
	write("onboarding.yaml", "organisations:\n"+
		"  - {ods: RR8, dsaSigned: 2024-04-01, dsptStatus: Standards Met, dsptYear: 2025/26, dpia: 2024-03-15}\n"+
		"  - {ods: RXA}\n"+
		"systems:\n  - {id: viewer, clientId: viewer-client, organisation: RR8, purpose: TREAT}\n")
	empty := write("empty.yaml", "")
	bad := write("bad-onboarding.yaml", "organisations:\n  - {ods: R-8}\n  - {ods: RR8, dpia: 15/03/2024}\n")
	const signed = "signingKey: kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\naudit:\n  spoolDir: audit\n  pars: {url: 'https://pars.example.nhs.uk/FHIR/R4', observer: '200000001234'}\n" + checkpointKeyYAML
	issuers := "auth:\n  issuers:\n    - {issuer: '" + cis2Issuer + "', discovery: true, audiences: [nirproxy], profile: cis2, cis2: {userinfoURL: '" + cis2Issuer + "/userinfo'}}\n" +
		"    - {issuer: 'https://iua.example.nhs.uk', jwksURL: 'https://iua.example.nhs.uk/keys', audiences: [nirproxy], profile: iua}\n"
	tests := []struct {
		name   string
		yaml   string
		wantOK bool
		want   []string // the output's lines; PATH is the config file's path, DIR its directory
	}{
		{
			name:   "a registry and issuers",
			yaml:   minimalYAML + signed + issuers + "onboarding:\n  registryFile: onboarding.yaml\n",
			wantOK: true,
			want: []string{"PATH is valid: 1 source (RXA), listening on 127.0.0.1:8080", "cache: in process, 64 MiB",
				"onboarding registry: DIR/onboarding.yaml (organisations: 2, systems: 1)",
				"audit spool: DIR/audit",
				"token issuers: " + cis2Issuer + " (cis2), https://iua.example.nhs.uk (iua)"},
		},
		{
			name: "a registry with problems",
			yaml: minimalYAML + signed + issuers + "onboarding:\n  registryFile: " + bad + "\n",
			want: []string{
				`onboarding.registryFile: DIR/bad-onboarding.yaml: organisations[0].ods: "R-8" is not an ODS code (3 to 10 letters and digits, like RR8 or A81001)`,
				`onboarding.registryFile: DIR/bad-onboarding.yaml: organisations[1] (RR8).dpia: "15/03/2024" is not a date written like 2025-07-01`,
			},
		},
		{
			name: "a registry that is not there",
			yaml: minimalYAML + signed + issuers + "onboarding:\n  registryFile: nope.yaml\n",
			want: []string{"onboarding.registryFile: cannot read DIR/nope.yaml: no such file or directory; check the path and the file's permissions"},
		},
		{
			name: "an empty registry",
			yaml: minimalYAML + signed + issuers + "onboarding:\n  registryFile: " + empty + "\n",
			want: []string{"onboarding.registryFile: DIR/empty.yaml: the file is empty; it needs organisations and systems"},
		},
		{
			name: "the configuration's problems, then the registry's",
			yaml: minimalYAML + signed + issuers + "onboarding:\n  registryFile: bad-onboarding.yaml\n  reloadEvery: 0s\n",
			want: []string{
				"onboarding.reloadEvery: is 0s; it must be greater than 0, like 30s",
				`onboarding.registryFile: DIR/bad-onboarding.yaml: organisations[0].ods: "R-8" is not an ODS code`,
				`onboarding.registryFile: DIR/bad-onboarding.yaml: organisations[1] (RR8).dpia: "15/03/2024" is not a date`,
			},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := write(fmt.Sprintf("config%d.yaml", i), tc.yaml)
			var out bytes.Buffer
			if ok := CheckFile(path, nil, &out); ok != tc.wantOK {
				t.Errorf("CheckFile = %v, want %v", ok, tc.wantOK)
			}
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("CheckFile printed\n%s\nwant %d lines like\n%s", out.String(), len(tc.want), strings.Join(tc.want, "\n"))
			}
			for j, w := range tc.want {
				w = strings.ReplaceAll(strings.ReplaceAll(w, "PATH", path), "DIR", dir)
				if !strings.HasPrefix(got[j], w) {
					t.Errorf("line %d = %q, want it to start with %q", j, got[j], w)
				}
			}
		})
	}
}

func TestAuthn(t *testing.T) {
	c := validConfig()
	withIssuers(&c)
	c.Authentication.CacheTTL, c.Authentication.CacheSize, c.Authentication.HTTPTimeout = Duration(time.Minute), 7, Duration(3*time.Second)
	iua := DefaultTokenIssuer()
	iua.Issuer, iua.JWKSURL, iua.Audiences, iua.Profile = "https://iua.example.nhs.uk/", "https://iua.example.nhs.uk/keys", []string{"x"}, authn.ProfileIUA
	c.Authentication.Issuers = append(c.Authentication.Issuers, iua)
	clock := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	transport := &http.Transport{}
	got := c.Authn(clock, transport)

	want := []authn.Options{{
		Issuer: cis2Issuer, Discovery: true, Audiences: []string{"nirproxy-client-id"}, Algorithms: []string{"RS256"},
		ClockSkew: time.Minute, KeyRefresh: 5 * time.Minute, KeyMaxAge: time.Hour, Profile: authn.ProfileCIS2,
		CIS2: authn.CIS2Options{MinIDAssuranceLevel: 3, ACRPrefix: "AAL3_", UserinfoURL: cis2Issuer + "/userinfo"},
	}, {
		Issuer: "https://login.example.nhs.uk", JWKSURL: "https://login.example.nhs.uk/certs", Audiences: []string{"nirproxy"}, Algorithms: []string{"RS256"},
		ClockSkew: time.Minute, KeyRefresh: 5 * time.Minute, KeyMaxAge: time.Hour, Profile: authn.ProfileClaims,
		Claims: authn.ClaimNames{Subject: "sub", Role: "job_role", Organisation: "ods_code", Purpose: "purpose_of_use", System: "azp"},
	}, {
		// The issuer exactly as written; cis2's defaults are not passed on for another profile.
		Issuer: "https://iua.example.nhs.uk/", JWKSURL: "https://iua.example.nhs.uk/keys", Audiences: []string{"x"}, Algorithms: []string{"RS256"},
		ClockSkew: time.Minute, KeyRefresh: 5 * time.Minute, KeyMaxAge: time.Hour, Profile: authn.ProfileIUA,
	}}
	if !reflect.DeepEqual(got.Issuers, want) {
		t.Errorf("Issuers =\n%+v\nwant\n%+v", got.Issuers, want)
	}
	if got.CacheTTL != time.Minute || got.CacheSize != 7 || got.Clock == nil || !got.Clock().Equal(clock()) {
		t.Errorf("CacheTTL %v, CacheSize %d; want 1m, 7 and the clock given", got.CacheTTL, got.CacheSize)
	}
	if got.HTTPClient == nil || got.HTTPClient.Timeout != 3*time.Second || got.HTTPClient.Transport != transport {
		t.Errorf("HTTPClient = %+v, want auth.httpTimeout (3s) and the transport given", got.HTTPClient)
	}
	got.Issuers[0].Audiences[0] = "changed"
	if c.Authentication.Issuers[0].Audiences[0] != "nirproxy-client-id" {
		t.Error("Authn shares its lists with the configuration")
	}
	a, err := authn.New(t.Context(), c.Authn(time.Now, nil))
	if err != nil {
		t.Fatalf("authn.New refused a valid configuration: %v", err)
	}
	if err := a.Close(t.Context()); err != nil {
		t.Error(err)
	}

	// A cis2 setting changed for another profile is passed on, for authn to refuse.
	iua.CIS2.MinIDAssuranceLevel = 2
	if o := iua.Options(); o.CIS2 != (authn.CIS2Options{MinIDAssuranceLevel: 2, ACRPrefix: "AAL3_"}) {
		t.Errorf("Options().CIS2 = %+v, want the changed settings", o.CIS2)
	}
}

func TestPolicyOfTheExample(t *testing.T) {
	cfg, err := Load(examplePath, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := authn.New(t.Context(), cfg.Authn(time.Now, nil))
	if err != nil {
		t.Fatalf("authn.New refused the example: %v", err)
	}
	if err := a.Close(t.Context()); err != nil {
		t.Error(err)
	}
	rules, err := cfg.AuthzRules()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rules.RoleActions, authz.DefaultRoleActions()) {
		t.Errorf("the example's roleActions = %v, want the default it documents", rules.RoleActions)
	}
	if _, err := authz.NewAuthorizer(&authz.Registry{}, rules, time.Now, nil); err != nil {
		t.Errorf("authz.NewAuthorizer refused the example: %v", err)
	}
}

func TestAuthzRules(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatalf("load Europe/London from the embedded time-zone database: %v", err)
	}
	tests := []struct {
		name   string
		modify func(a *Authorization)
		want   authz.Rules
	}{
		{"defaults", func(a *Authorization) {},
			authz.Rules{RoleActions: authz.DefaultRoleActions(), DSPTYear: authz.DSPTYear{StartMonth: time.July, StartDay: 1, Location: time.UTC}}},
		{"every key", func(a *Authorization) {
			a.RoleActions = authz.RoleActions{"R8000": {authz.PermSearch}}
			a.AcceptRequestPurpose, a.DSPTYearStart, a.DSPTTimeZone = true, "04-06", "Europe/London"
		}, authz.Rules{RoleActions: authz.RoleActions{"R8000": {authz.PermSearch}}, DSPTYear: authz.DSPTYear{StartMonth: time.April, StartDay: 6, Location: london},
			AcceptRequestPurpose: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.modify(&c.Authorization)
			got, err := c.AuthzRules()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("AuthzRules() =\n%+v\nwant\n%+v", got, tc.want)
			}
			if _, err := authz.NewAuthorizer(&authz.Registry{}, got, time.Now, nil); err != nil {
				t.Errorf("authz.NewAuthorizer refused the rules: %v", err)
			}
			for role := range got.RoleActions {
				got.RoleActions[role] = append(got.RoleActions[role][:0], authz.PermOperate)
			}
			if !reflect.DeepEqual(c.Authorization.RoleActions, tc.want.RoleActions) {
				t.Errorf("AuthzRules shares its roles with the configuration")
			}
		})
	}
	c := Default()
	c.Authorization.DSPTTimeZone = "Mars/Olympus_Mons"
	if _, err := c.AuthzRules(); err == nil || !strings.Contains(err.Error(), "authorization.dsptYearStart and dsptTimeZone") {
		t.Errorf("AuthzRules with an unknown time zone: %v, want an error naming the keys", err)
	}
}

// TestTokenIssuerMirrorsAuthn checks that every setting of authn.Options has a key of the same
// Go name in TokenIssuer, so that authn's refusals are named by their keys.
func TestTokenIssuerMirrorsAuthn(t *testing.T) {
	var walk func(a, c reflect.Type, path string)
	walk = func(a, c reflect.Type, path string) {
		for i := range a.NumField() {
			f := a.Field(i)
			cf, ok := c.FieldByName(f.Name)
			if !ok || yamlKey(cf) == "" {
				t.Errorf("TokenIssuer has no key for authn's Options.%s%s", path, f.Name)
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(f.Type, cf.Type, path+f.Name+".")
			}
		}
	}
	walk(reflect.TypeFor[authn.Options](), reflect.TypeFor[TokenIssuer](), "")
	for _, field := range []string{"Config.CacheTTL", "Config.CacheSize", "Config.Issuers"} {
		if _, _, ok := authnKey(field, ""); !ok {
			t.Errorf("Authentication has no key for authn's %s", field)
		}
	}
}

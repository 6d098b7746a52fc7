package config

import (
	"bytes"
	"encoding/base64"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// validConfig is a configuration that Validate accepts, for the cases below to break one rule of.
func validConfig() Config {
	c := Default()
	a := DefaultSource()
	a.ID, a.Name, a.URL = "RXA", "Example Hospitals NHS Trust", "https://127.0.0.1:8042/dicom-web"
	b := DefaultSource()
	b.ID, b.Name, b.URL = "RXB", "Other NHS Trust", "https://pacs.example.nhs.uk:8443/dicomweb"
	b.Auth = Auth{Type: AuthBasic, Username: "u", Password: "p"}
	c.Sources = []Source{a, b}
	withAccess(&c)
	return c
}

// withAccess gives c what serve cannot run without: a token issuer (never asked), an
// onboarding registry file (Validate does not read it) and an audit spool (nor that).
func withAccess(c *Config) {
	iss := DefaultTokenIssuer()
	iss.Issuer, iss.JWKSURL, iss.Audiences, iss.Profile = "https://idp.example.nhs.uk", "https://idp.example.nhs.uk/jwks", []string{"nirproxy"}, "iua"
	c.Authentication.Issuers = []TokenIssuer{iss}
	c.Onboarding.RegistryFile = "/etc/nirproxy/registry.yaml"
	c.Audit.SpoolDir = "/var/lib/nirproxy/audit"
	c.Audit.PARS.URL, c.Audit.PARS.Observer = "https://pars.example.nhs.uk/FHIR/R4", "200000001234"
	c.Audit.CheckpointKey = testCheckpointKey
}

// encryptionKey is the base64 of 32 bytes of b, a valid cache encryption key.
func encryptionKey(b byte) Secret {
	return Secret(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, EncryptionKeyBytes)))
}

// withRedis keeps c's cache in a Redis on the loopback interface, with the secrets it needs and
// the rate limits' key secret that replicas sharing it share.
func withRedis(c *Config) {
	c.Cache.Redis.Addrs = []string{"127.0.0.1:6379"}
	c.Cache.KeySecret = Secret(strings.Repeat("s", MinCacheKeySecretBytes))
	c.Cache.EncryptionKeys = []Secret{encryptionKey(1)}
	c.RateLimit.KeySecret = Secret(strings.Repeat("r", 32))
}

func TestValidate(t *testing.T) {
	longKey := Secret(strings.Repeat("x", 32))
	tests := []struct {
		name   string
		modify func(c *Config)
		want   []Problem // Message is a substring of the problem's message
	}{
		{"valid", func(c *Config) {}, nil},

		// listen
		{"listen with any interface and a public URL", func(c *Config) { c.Listen, c.PublicURL = ":8080", "https://imaging.example.nhs.uk" }, nil},
		{"listen on IPv6 loopback without a public URL", func(c *Config) { c.Listen = "[::1]:0" }, nil},
		{"listen on localhost without a public URL", func(c *Config) { c.Listen = "localhost:8080" }, nil},
		{"listen on any interface without a public URL", func(c *Config) { c.Listen = ":8080" },
			[]Problem{{"publicURL", `is required when listen (":8080") is not a loopback address: links in answers are built only from it, never from a request's Host; set it to the URL clients reach the proxy at`}}},
		{"listen on a LAN address without a public URL", func(c *Config) { c.Listen = "192.0.2.7:8080" },
			[]Problem{{"publicURL", "is required when listen"}}},
		{"listen without host", func(c *Config) { c.Listen = "8080" },
			[]Problem{{"listen", `"8080" is not host:port; write it like 127.0.0.1:8080`}}},
		{"listen with bad port", func(c *Config) { c.Listen = "localhost:http" },
			[]Problem{{"listen", "is not host:port"}}},
		{"listen with port out of range", func(c *Config) { c.Listen = "localhost:70000" },
			[]Problem{{"listen", "is not host:port"}}},
		{"listen empty", func(c *Config) { c.Listen = "" },
			[]Problem{{"listen", "is not host:port"}}},

		// publicURL
		{"publicURL https with path", func(c *Config) { c.PublicURL = "https://imaging.example.nhs.uk/nir" }, nil},
		{"publicURL relative", func(c *Config) { c.PublicURL = "/dicom-web" },
			[]Problem{{"publicURL", `"/dicom-web" is not an absolute http(s) URL; write it like https://`}}},
		{"publicURL other scheme", func(c *Config) { c.PublicURL = "ftp://example.com" },
			[]Problem{{"publicURL", "is not an absolute http(s) URL"}}},
		{"publicURL with query", func(c *Config) { c.PublicURL = "https://example.com/?a=b" },
			[]Problem{{"publicURL", "must have no query"}}},
		{"publicURL with fragment", func(c *Config) { c.PublicURL = "https://example.com/#x" },
			[]Problem{{"publicURL", "must have no query (?...) or fragment"}}},

		// tls (Validate judges the keys; Load reads the files)
		{"tls with client certificates required, on every interface", func(c *Config) {
			c.Listen, c.PublicURL = ":8443", "https://imaging.example.nhs.uk"
			c.TLS = ListenTLS{CertFile: "/etc/nirproxy/tls.crt", KeyFile: "/etc/nirproxy/tls.key", ClientCAFile: "/etc/nirproxy/clients.pem", ClientAuth: ClientAuthRequire}
		}, nil},
		{"tls on loopback without a public URL", func(c *Config) {
			c.TLS = ListenTLS{CertFile: "tls.crt", KeyFile: "tls.key", ClientCAFile: "clients.pem", ClientAuth: ClientAuthRequest}
		}, nil},
		{"tls with an http public URL", func(c *Config) {
			c.PublicURL, c.TLS = "http://imaging.example.nhs.uk", ListenTLS{CertFile: "tls.crt", KeyFile: "tls.key", ClientAuth: ClientAuthNone}
		}, []Problem{{"publicURL", `"http://imaging.example.nhs.uk" is http, but the proxy terminates TLS (tls.certFile): clients reach it at https://`}}},
		{"tls certificate without its key", func(c *Config) { c.TLS.CertFile = "tls.crt" },
			[]Problem{{"tls.keyFile", "is missing; tls.certFile needs the file of its private key"}}},
		{"tls key without its certificate", func(c *Config) { c.TLS.KeyFile = "tls.key" },
			[]Problem{{"tls.certFile", "is missing; tls.keyFile needs the file of its certificate"}}},
		{"tls client auth unknown", func(c *Config) { c.TLS = ListenTLS{CertFile: "tls.crt", KeyFile: "tls.key", ClientAuth: "optional"} },
			[]Problem{{"tls.clientAuth", `"optional" is not known; write none, request (ask clients for a certificate) or require (refuse clients without one)`}}},
		{"tls client auth required without a CA bundle", func(c *Config) {
			c.TLS = ListenTLS{CertFile: "tls.crt", KeyFile: "tls.key", ClientAuth: ClientAuthRequire}
		}, []Problem{{"tls.clientCAFile", "is missing; tls.clientAuth require verifies client certificates against it"}}},
		{"tls client auth requested without a CA bundle", func(c *Config) {
			c.TLS = ListenTLS{CertFile: "tls.crt", KeyFile: "tls.key", ClientAuth: ClientAuthRequest}
		}, []Problem{{"tls.clientCAFile", "is missing; tls.clientAuth request verifies"}}},
		{"tls client certificates without tls", func(c *Config) { c.TLS.ClientCAFile, c.TLS.ClientAuth = "clients.pem", ClientAuthRequire },
			[]Problem{{"tls", "client certificates need the proxy to terminate TLS: set tls.certFile and tls.keyFile, or remove tls.clientCAFile and tls.clientAuth"}}},
		{"tls client auth required without tls or a CA bundle", func(c *Config) { c.TLS.ClientAuth = ClientAuthRequire }, []Problem{
			{"tls", "client certificates need the proxy to terminate TLS"},
			{"tls.clientCAFile", "is missing"},
		}},

		// adminListen
		{"no admin listener", func(c *Config) { c.AdminListen = "" }, nil},
		{"admin listener on IPv6 loopback", func(c *Config) { c.AdminListen = "[::1]:9090" }, nil},
		{"admin listener on every interface", func(c *Config) { c.AdminListen = ":9090" }, nil},
		{"admin listener without host", func(c *Config) { c.AdminListen = "9090" },
			[]Problem{{"adminListen", `"9090" is not host:port; write it like 127.0.0.1:9090 (or "" for no admin listener)`}}},
		{"admin listener on listen's address", func(c *Config) { c.AdminListen = c.Listen },
			[]Problem{{"adminListen", `"127.0.0.1:8080" is also listen's address; give the admin listener its own port, like 127.0.0.1:9090`}}},

		// degraded modes
		{"partialRetrieve warn", func(c *Config) { c.PartialRetrieve = "warn" }, nil},
		{"partialRetrieve 206", func(c *Config) { c.PartialRetrieve = "206" }, nil},
		{"partialSearch fail", func(c *Config) { c.PartialSearch = "fail" }, nil},
		{"partialSearch 206 is for retrieves only", func(c *Config) { c.PartialSearch = "206" },
			[]Problem{{"partialSearch", `"206" is not a policy; write warn`}}},
		{"partialRetrieve unknown", func(c *Config) { c.PartialRetrieve = "ignore" },
			[]Problem{{"partialRetrieve", `"ignore" is not a policy; write fail`}}},
		{"webhook not absolute", func(c *Config) { c.Incidents.WebhookURL = "alerts/nirproxy" },
			[]Problem{{"incidents.webhookURL", "is not an absolute http(s) URL"}}},
		{"webhook retries out of range", func(c *Config) { c.Incidents.WebhookRetries = 11 },
			[]Problem{{"incidents.webhookRetries", "use 0 to 10"}}},
		{"source retries out of range", func(c *Config) { c.Sources[0].Retries = 9 },
			[]Problem{{"sources[0].retries", "use 0 to 5"}}},
		{"source with no concurrency", func(c *Config) { c.Sources[1].MaxConcurrent = 0 },
			[]Problem{{"sources[1].maxConcurrent", "use 1 to 10000"}}},
		{"source with no connections", func(c *Config) { c.Sources[1].MaxConnections = 0 },
			[]Problem{{"sources[1].maxConnections", "is 0; use 1 to 10000, like 64"}}},
		{"source retrying at once", func(c *Config) { c.Sources[0].RetryWaitMin, c.Sources[0].RetryWaitMax = 0, 0 },
			[]Problem{{"sources[0].retryWaitMin", "is 0s; it must be greater than 0, like 50ms"}}},
		{"source waiting less at most than at least", func(c *Config) { c.Sources[0].RetryWaitMax = Duration(10 * time.Millisecond) },
			[]Problem{{"sources[0].retryWaitMax", "is 10ms, below retryWaitMin (50ms)"}}},
		{"retryAfter of nothing", func(c *Config) { c.RetryAfter = 0 },
			[]Problem{{"retryAfter", "is 0s; use 1s to 1h, like 30s"}}},
		{"retryAfter of a day", func(c *Config) { c.RetryAfter = Duration(24 * time.Hour) },
			[]Problem{{"retryAfter", "use 1s to 1h"}}},
		{"no frames", func(c *Config) { c.MaxFrames = 0 },
			[]Problem{{"maxFrames", "is 0; use 1 to 100000, like 1000"}}},
		{"a larger thumbnail", func(c *Config) { c.ThumbnailViewport = "256,192" }, nil},
		{"a thumbnail of one number", func(c *Config) { c.ThumbnailViewport = "128" },
			[]Problem{{"thumbnailViewport", `"128" is not a width and a height; write two whole numbers from 1 to 4096 separated by a comma, like 128,128`}}},
		{"a thumbnail with a region", func(c *Config) { c.ThumbnailViewport = "128,128,0,0" },
			[]Problem{{"thumbnailViewport", "is not a width and a height"}}},
		{"a thumbnail of no pixels", func(c *Config) { c.ThumbnailViewport = "0,128" },
			[]Problem{{"thumbnailViewport", "is not a width and a height"}}},
		{"breaker window of nothing", func(c *Config) { c.Sources[0].Breaker.Window = 0 },
			[]Problem{{"sources[0].breaker.window", "use 1s to 24h0m0s, like 60s"}}},
		{"breaker window of a week", func(c *Config) { c.Sources[0].Breaker.Window = Duration(7 * 24 * time.Hour) },
			[]Problem{{"sources[0].breaker.window", "use 1s to 24h0m0s"}}},
		{"breaker without a minimum of calls", func(c *Config) { c.Sources[0].Breaker.MinRequests = 0 },
			[]Problem{{"sources[0].breaker.minRequests", "use 1 to 100000, like 20"}}},
		{"breaker ratio of nothing", func(c *Config) { c.Sources[0].Breaker.FailureRatio = 0 },
			[]Problem{{"sources[0].breaker.failureRatio", "greater than 0 and at most 1, like 0.5"}}},
		{"breaker ratio above one", func(c *Config) { c.Sources[0].Breaker.FailureRatio = 1.5 },
			[]Problem{{"sources[0].breaker.failureRatio", "is 1.5; use a number greater than 0 and at most 1"}}},
		{"breaker ratio NaN", func(c *Config) { c.Sources[0].Breaker.FailureRatio = math.NaN() },
			[]Problem{{"sources[0].breaker.failureRatio", "is NaN"}}},
		{"breaker that never opens on unreachable calls", func(c *Config) { c.Sources[0].Breaker.ConsecutiveUnreachable = 0 },
			[]Problem{{"sources[0].breaker.consecutiveUnreachable", "use 1 to 1000, like 5"}}},
		{"breaker open for no time", func(c *Config) { c.Sources[0].Breaker.OpenFor = 0 },
			[]Problem{{"sources[0].breaker.openFor", "must be greater than 0"}}},
		{"idle timeout zero", func(c *Config) { c.Sources[0].IdleTimeout = 0 },
			[]Problem{{"sources[0].idleTimeout", "must be greater than 0"}}},

		// bulkdataLinkTTL
		{"bulkdata links for 24h", func(c *Config) { c.BulkdataLinkTTL = Duration(24 * time.Hour) }, nil},
		{"bulkdata links for longer than a day", func(c *Config) { c.BulkdataLinkTTL = Duration(25 * time.Hour) },
			[]Problem{{"bulkdataLinkTTL", "is 25h0m0s; use 1m0s to 24h0m0s, like 1h"}}},
		{"bulkdata links for no time", func(c *Config) { c.BulkdataLinkTTL = 0 },
			[]Problem{{"bulkdataLinkTTL", "is 0s; use 1m0s to 24h0m0s"}}},

		// cors
		{"cors origins", func(c *Config) {
			c.CORS.AllowedOrigins = []string{"http://localhost:3000", "https://viewer.example.nhs.uk", "*", "http://[::1]:3000"}
		}, nil},
		{"cors origin with trailing slash", func(c *Config) { c.CORS.AllowedOrigins = []string{"http://localhost:3000/"} },
			[]Problem{{"cors.allowedOrigins[0]", `has no path, query or user; write "http://localhost:3000"`}}},
		{"cors origin without scheme", func(c *Config) { c.CORS.AllowedOrigins = []string{"localhost:3000"} },
			[]Problem{{"cors.allowedOrigins[0]", "is not an origin; write scheme://host[:port]"}}},
		{"cors origin host only", func(c *Config) { c.CORS.AllowedOrigins = []string{"example.com"} },
			[]Problem{{"cors.allowedOrigins[0]", "is not an origin"}}},
		{"cors origin in upper case", func(c *Config) { c.CORS.AllowedOrigins = []string{"https://Viewer.Example.com"} },
			[]Problem{{"cors.allowedOrigins[0]", `write it in lower case: "https://viewer.example.com"`}}},
		{"cors origin with upper-case scheme", func(c *Config) { c.CORS.AllowedOrigins = []string{"HTTP://localhost:3000"} },
			[]Problem{{"cors.allowedOrigins[0]", `write it in lower case: "http://localhost:3000"`}}},
		{"cors origin with bad port", func(c *Config) { c.CORS.AllowedOrigins = []string{"http://localhost:99999"} },
			[]Problem{{"cors.allowedOrigins[0]", "invalid port"}}},
		{"cors maxAge zero", func(c *Config) { c.CORS.MaxAge = 0 },
			[]Problem{{"cors.maxAge", "must be greater than 0"}}},

		// signingKey
		{"signing key of 32 bytes", func(c *Config) { c.SigningKey = longKey }, nil},
		{"signing key too short", func(c *Config) { c.SigningKey = "short-secret" },
			[]Problem{{"signingKey", "is 12 bytes long; use at least 32"}}},

		// patientIdentifierIssuer
		{"issuer empty", func(c *Config) { c.PatientIdentifierIssuer = "" },
			[]Problem{{"patientIdentifierIssuer", "is empty"}}},
		{"issuer too long", func(c *Config) { c.PatientIdentifierIssuer = strings.Repeat("1", 65) },
			[]Problem{{"patientIdentifierIssuer", "at most 64"}}},
		{"issuer with backslash", func(c *Config) { c.PatientIdentifierIssuer = `a\b` },
			[]Problem{{"patientIdentifierIssuer", "backslash"}}},

		// durations
		{"requestTimeout zero", func(c *Config) { c.RequestTimeout = 0 },
			[]Problem{{"requestTimeout", "is 0s; it must be greater than 0, like 30s"}}},
		{"requestTimeout negative", func(c *Config) { c.RequestTimeout = Duration(-time.Second) },
			[]Problem{{"requestTimeout", "must be greater than 0"}}},
		{"locator ttl zero", func(c *Config) { c.Locator.TTL = 0 },
			[]Problem{{"locator.ttl", "must be greater than 0"}}},
		{"source timeout zero", func(c *Config) { c.Sources[1].Timeout = 0 },
			[]Problem{{"sources[1].timeout", "must be greater than 0, like 10s"}}},

		// search
		{"search default limit set", func(c *Config) { c.Search.DefaultLimit = 100 }, nil},
		{"search maxLimit zero", func(c *Config) { c.Search.MaxLimit = 0 },
			[]Problem{{"search.maxLimit", "must be at least 1"}}},
		{"search defaultLimit above maxLimit", func(c *Config) { c.Search.DefaultLimit = 2000 },
			[]Problem{{"search.defaultLimit", "above search.maxLimit (1000)"}}},
		{"search query caps out of range", func(c *Config) {
			c.Search.MaxQueryLength, c.Search.MaxMatchingKeys, c.Search.MaxIncludeFields, c.Search.MaxValuesPerKey = 100, 0, 20000, -1
		}, []Problem{
			{"search.maxQueryLength", "is 100; it must be from 1024 to 1048576, like 8192"},
			{"search.maxMatchingKeys", "is 0; it must be from 1 to 1000"},
			{"search.maxIncludeFields", "is 20000; it must be from 1 to 10000"},
			{"search.maxValuesPerKey", "is -1; it must be from 1 to 10000"},
		}},
		{"search defaultLimit negative", func(c *Config) { c.Search.DefaultLimit = -1 },
			[]Problem{{"search.defaultLimit", "write 0 for no limit"}}},
		{"search maxResultsPerSource zero", func(c *Config) { c.Search.MaxResultsPerSource = 0 },
			[]Problem{{"search.maxResultsPerSource", "must be at least 1"}}},

		// logging
		{"logging debug text", func(c *Config) { c.Logging = Logging{Level: "debug", Format: "text"} }, nil},
		{"logging level upper case", func(c *Config) { c.Logging.Level = "WARN" }, nil},
		{"logging level unknown", func(c *Config) { c.Logging.Level = "verbose" },
			[]Problem{{"logging.level", `"verbose" is not a level; write debug, info, warn or error`}}},
		{"logging format unknown", func(c *Config) { c.Logging.Format = "xml" },
			[]Problem{{"logging.format", "write json or text"}}},

		// sources
		{"no sources", func(c *Config) { c.Sources = nil },
			[]Problem{{"sources", "no source is configured"}}},
		{"id missing", func(c *Config) { c.Sources[0].ID = "" },
			[]Problem{{"sources[0].id", "is missing"}}},
		{"id lower case", func(c *Config) { c.Sources[0].ID = "rxa" },
			[]Problem{{"sources[0].id", `"rxa" is not an ODS code; use 3 to 10 upper-case letters or digits, like RXA; here write RXA`}}},
		{"id too long", func(c *Config) { c.Sources[0].ID = "ABCDEFGHIJK" },
			[]Problem{{"sources[0].id", "is not an ODS code"}}},
		{"id with underscore", func(c *Config) { c.Sources[0].ID = "RX_A" },
			[]Problem{{"sources[0].id", "is not an ODS code"}}},
		{"id duplicated", func(c *Config) { c.Sources[1].ID = "RXA" },
			[]Problem{{"sources[1].id", `"RXA" is also the id of sources[0]`}}},
		{"name missing", func(c *Config) { c.Sources[1].Name = " " },
			[]Problem{{"sources[1].name", "is missing"}}},
		{"url missing", func(c *Config) { c.Sources[0].URL = "" },
			[]Problem{{"sources[0].url", "is missing"}}},
		{"url without scheme", func(c *Config) { c.Sources[0].URL = "localhost:8042" },
			[]Problem{{"sources[0].url", `"localhost:8042" is not an absolute http(s) URL; write it like http://127.0.0.1:8042/dicom-web`}}},
		{"url with query", func(c *Config) { c.Sources[0].URL = "http://pacs/dicom-web?x=1" },
			[]Problem{{"sources[0].url", "must have no query"}}},
		{"url with fragment", func(c *Config) { c.Sources[0].URL = "http://pacs/dicom-web#x" },
			[]Problem{{"sources[0].url", "or fragment"}}},
		{"url with credentials", func(c *Config) { c.Sources[0].URL = "http://user:hunter2@pacs/dicom-web" },
			[]Problem{{"sources[0].url", `"http://user:xxxxx@pacs/dicom-web" holds a user name or password`}}},
		{"negative priority is allowed", func(c *Config) { c.Sources[0].Priority = -5 }, nil},

		// auth
		{"auth bearer", func(c *Config) { c.Sources[0].Auth = Auth{Type: AuthBearer, Token: "t"} }, nil},
		{"auth bearer from file", func(c *Config) { c.Sources[0].Auth = Auth{Type: AuthBearer, TokenFile: "/run/secrets/t"} }, nil},
		{"auth type unknown", func(c *Config) { c.Sources[0].Auth.Type = "digest" },
			[]Problem{{"sources[0].auth.type", `"digest" is not an authentication type; write none, basic or bearer`}}},
		{"auth type empty", func(c *Config) { c.Sources[0].Auth.Type = "" },
			[]Problem{{"sources[0].auth.type", "is not an authentication type"}}},
		{"basic without username and password", func(c *Config) { c.Sources[1].Auth = Auth{Type: AuthBasic} },
			[]Problem{
				{"sources[1].auth.username", "is missing; auth type basic needs it"},
				{"sources[1].auth.password", "or the variable NIRPROXY_SOURCES_RXB_AUTH_PASSWORD"},
			}},
		{"basic with a token", func(c *Config) { c.Sources[1].Auth.Token = "t" },
			[]Problem{{"sources[1].auth.token", "is set but auth type basic does not use it"}}},
		{"bearer without token", func(c *Config) { c.Sources[0].Auth = Auth{Type: AuthBearer} },
			[]Problem{{"sources[0].auth.token", "is missing; auth type bearer needs it; set it, or sources[0].auth.tokenFile, or the variable NIRPROXY_SOURCES_RXA_AUTH_TOKEN"}}},
		{"bearer with a password", func(c *Config) { c.Sources[0].Auth = Auth{Type: AuthBearer, Token: "t", PasswordFile: "f"} },
			[]Problem{{"sources[0].auth.password", "auth type bearer does not use it"}}},
		{"none with secrets", func(c *Config) { c.Sources[0].Auth = Auth{Type: AuthNone, Username: "u", TokenFile: "f"} },
			[]Problem{
				{"sources[0].auth.username", "auth type none does not use it"},
				{"sources[0].auth.token", "auth type none does not use it"},
			}},

		// patientId
		{"patient id with issuer", func(c *Config) { c.Sources[0].PatientID.Issuer = "NHS" }, nil},
		{"other patient ids with issuer", func(c *Config) {
			c.Sources[0].PatientID = PatientID{Attribute: AttributeOtherPatientIDsSequence, Issuer: "2.16.840.1.113883.2.1.4.1"}
		}, nil},
		{"other patient ids without issuer", func(c *Config) { c.Sources[0].PatientID = PatientID{Attribute: AttributeOtherPatientIDsSequence} },
			[]Problem{{"sources[0].patientId.issuer", "is missing; with attribute OtherPatientIDsSequence"}}},
		{"patient id attribute unknown", func(c *Config) { c.Sources[0].PatientID.Attribute = "NHSNumber" },
			[]Problem{{"sources[0].patientId.attribute", `"NHSNumber" is not known; write PatientID or OtherPatientIDsSequence`}}},

		// cache
		{"cache in process", func(c *Config) {}, nil},
		{"cache in redis", withRedis, nil},
		{"cache in a redis cluster with rotated keys", func(c *Config) {
			withRedis(c)
			c.Cache.Redis.Addrs = []string{"redis-0:6379", "redis-1:6379", "[fd00::2]:6380"}
			c.Cache.EncryptionKeys = []Secret{" " + encryptionKey(2) + " ", encryptionKey(1)}
		}, nil},
		{"cache in redis behind sentinel with a db", func(c *Config) {
			withRedis(c)
			c.Cache.Redis.Addrs = []string{"sentinel-0:26379", "sentinel-1:26379", "sentinel-2:26379"}
			c.Cache.Redis.MasterName, c.Cache.Redis.DB = "mymaster", 2
		}, nil},
		{"cache off needs no memory", func(c *Config) { c.Cache.Enabled, c.Cache.MemoryMaxBytes = false, 0 }, nil},
		{"cache off needs no redis secrets", func(c *Config) {
			c.Cache.Enabled = false
			c.Cache.Redis.Addrs = []string{"redis:6379"}
		}, nil},
		{"cache in redis needs no memory", func(c *Config) { withRedis(c); c.Cache.MemoryMaxBytes = 0 }, nil},
		{"cache memory negative", func(c *Config) { c.Cache.MemoryMaxBytes = -1 },
			[]Problem{{"cache.memoryMaxBytes", "is -1; it cannot be negative"}}},
		{"cache memory below 1 MiB", func(c *Config) { c.Cache.MemoryMaxBytes = 1000 },
			[]Problem{{"cache.memoryMaxBytes", "is 1000; the in-process cache needs at least 1048576 (1 MiB)"}}},
		{"cache memory of 1 MiB", func(c *Config) { c.Cache.MemoryMaxBytes = 1 << 20 }, nil},
		{"cache maxRetention zero", func(c *Config) { c.Cache.MaxRetention = 0 },
			[]Problem{{"cache.maxRetention", "is 0s; it must be greater than 0, like 24h; to turn the cache off, set cache.enabled: false"}}},
		{"cache maxRetention negative", func(c *Config) { c.Cache.MaxRetention = Duration(-time.Hour) },
			[]Problem{{"cache.maxRetention", "must be greater than 0"}}},
		{"cache negative windows", func(c *Config) {
			c.Cache.Search.Fresh = Duration(-time.Second)
			c.Cache.Metadata.Stale = Duration(-time.Second)
			c.Cache.Rendered.Stale = Duration(-time.Second)
		}, []Problem{
			{"cache.search.fresh", "is -1s; it cannot be negative; write a duration like 30s, or 0 not to cache this kind"},
			{"cache.metadata.stale", "cannot be negative; write a duration like 1h, or 0 to keep nothing past fresh"},
			{"cache.rendered.stale", "cannot be negative"},
		}},
		{"cache stale without fresh is not cached", func(c *Config) { c.Cache.Search.Fresh = 0 }, nil},
		{"cache rendered maxBytes zero", func(c *Config) { c.Cache.Rendered.MaxBytes = 0 },
			[]Problem{{"cache.rendered.maxBytes", "is 0, so no rendered image would be cached; write a size in bytes, like 2097152"}}},
		{"cache rendered maxBytes zero when not cached", func(c *Config) { c.Cache.Rendered.MaxBytes, c.Cache.Rendered.Fresh = 0, 0 }, nil},
		{"cache rendered maxBytes negative", func(c *Config) { c.Cache.Rendered.MaxBytes = -5 },
			[]Problem{{"cache.rendered.maxBytes", "is -5; it cannot be negative"}}},
		{"cache keySecret short without redis", func(c *Config) { c.Cache.KeySecret = "short" },
			[]Problem{{"cache.keySecret", "is 5 bytes long; use at least 32 random bytes; generate one with: openssl rand -base64 48"}}},
		{"cache keySecret short with redis", func(c *Config) { withRedis(c); c.Cache.KeySecret = "short" },
			[]Problem{{"cache.keySecret", "is 5 bytes long"}}},
		{"cache keySecret missing with redis", func(c *Config) { withRedis(c); c.Cache.KeySecret = "" },
			[]Problem{{"cache.keySecret", "is missing; with Redis every replica must derive cache keys from the same secret; set it, or cache.keySecretFile, " +
				"or the variable NIRPROXY_CACHE_KEY_SECRET; generate one with: openssl rand -base64 48"}}},
		{"cache encryptionKeys missing with redis", func(c *Config) { withRedis(c); c.Cache.EncryptionKeys = nil },
			[]Problem{{"cache.encryptionKeys", "is missing; with Redis every value is encrypted, and every replica needs the same keys; " +
				"set it, or cache.encryptionKeysFile, or the variable NIRPROXY_CACHE_ENCRYPTION_KEYS; generate one with: openssl rand -base64 32"}}},
		{"cache encryption key not base64", func(c *Config) { withRedis(c); c.Cache.EncryptionKeys = append(c.Cache.EncryptionKeys, "not base64!") },
			[]Problem{{"cache.encryptionKeys[1]", "is not base64 (standard encoding); each key must be the base64 of 32 random bytes; generate one with: openssl rand -base64 32"}}},
		{"cache encryption key in URL encoding", func(c *Config) { c.Cache.EncryptionKeys = []Secret{Secret(strings.Repeat("_", 43) + "=")} },
			[]Problem{{"cache.encryptionKeys[0]", "is not base64 (standard encoding)"}}},
		{"cache encryption key too short", func(c *Config) {
			withRedis(c)
			c.Cache.EncryptionKeys = []Secret{Secret(base64.StdEncoding.EncodeToString(make([]byte, 16)))}
		}, []Problem{{"cache.encryptionKeys[0]", "is the base64 of 16 bytes, not 32; each key must be the base64 of 32 random bytes"}}},
		{"cache encryption key empty", func(c *Config) { withRedis(c); c.Cache.EncryptionKeys = []Secret{encryptionKey(1), " "} },
			[]Problem{{"cache.encryptionKeys[1]", "is empty; each key must be"}}},
		{"cache encryption key given twice", func(c *Config) {
			withRedis(c)
			c.Cache.EncryptionKeys = []Secret{encryptionKey(1), "bad", encryptionKey(2), encryptionKey(1) + "\n"}
		}, []Problem{
			{"cache.encryptionKeys[1]", "is not base64"},
			{"cache.encryptionKeys[3]", "is the same key as cache.encryptionKeys[0]; remove one of them"},
		}},
		{"cache encryption key from a file", func(c *Config) {
			withRedis(c)
			c.Cache.EncryptionKeys, c.Cache.EncryptionKeysFile = []Secret{encryptionKey(1), "bad"}, "keys"
		}, []Problem{{"cache.encryptionKeys[1]", "is not base64 (standard encoding) (counting from 0 the keys of the file cache.encryptionKeysFile names"}}},
		{"redis addrs not host:port", func(c *Config) {
			withRedis(c)
			c.Cache.Redis.Addrs = []string{"redis", "redis:0", "redis:65536", ":6379", "redis:port", "redis://redis:6379", "pw-secret@redis:6379"}
		}, []Problem{
			{"cache.redis.addrs[0]", `"redis" is not host:port; write it like redis.example.internal:6379 or 10.0.0.5:6379`},
			{"cache.redis.addrs[1]", "is not host:port"},
			{"cache.redis.addrs[2]", "is not host:port"},
			{"cache.redis.addrs[3]", "is not host:port"},
			{"cache.redis.addrs[4]", "is not host:port"},
			{"cache.redis.addrs[5]", "is not host:port"},
			{"cache.redis.addrs[6]", `"xxxxx@redis:6379" is not host:port`},
		}},
		{"redis addrs checked with the cache off", func(c *Config) { c.Cache.Enabled = false; c.Cache.Redis.Addrs = []string{"redis"} },
			[]Problem{{"cache.redis.addrs[0]", "is not host:port"}}},
		{"redis masterName without addrs", func(c *Config) { c.Cache.Redis.MasterName = "mymaster" },
			[]Problem{{"cache.redis.masterName", "is set but cache.redis.addrs is empty; list the sentinels' host:port under cache.redis.addrs, or remove masterName"}}},
		{"redis db with a cluster", func(c *Config) {
			withRedis(c)
			c.Cache.Redis.Addrs, c.Cache.Redis.DB = []string{"redis-0:6379", "redis-1:6379"}, 1
		}, []Problem{{"cache.redis.db", "is 1, but two or more addrs make a Redis Cluster, which has only db 0; set db: 0, or set masterName if the addrs are sentinels"}}},
		{"redis db on a single node", func(c *Config) { withRedis(c); c.Cache.Redis.DB = 15 }, nil},
		{"redis db negative", func(c *Config) { withRedis(c); c.Cache.Redis.DB = -1 },
			[]Problem{{"cache.redis.db", "is -1; write a database number, 0 or more"}}},
		{"redis poolSize negative", func(c *Config) { withRedis(c); c.Cache.Redis.PoolSize = -1 },
			[]Problem{{"cache.redis.poolSize", "is -1; write 0 for go-redis's default"}}},
		{"redis breaker that never opens", func(c *Config) { withRedis(c); c.Cache.Redis.BreakerFailures = 0 },
			[]Problem{{"cache.redis.breakerFailures", "is 0; it must be at least 1, like 5"}}},
		{"redis breaker unused without redis", func(c *Config) { c.Cache.Redis.BreakerFailures = 0 }, nil},
		{"redis durations zero", func(c *Config) {
			withRedis(c)
			c.Cache.Redis.OpTimeout, c.Cache.Redis.DialTimeout, c.Cache.Redis.BreakerCooldown = 0, Duration(-time.Second), 0
			c.Cache.Redis.ReadTimeout, c.Cache.Redis.WriteTimeout = 0, 0
		}, []Problem{
			{"cache.redis.opTimeout", "is 0s; it must be greater than 0, like 250ms"},
			{"cache.redis.dialTimeout", "must be greater than 0, like 200ms"},
			{"cache.redis.readTimeout", "is 0s; it must be greater than 0, like 200ms"},
			{"cache.redis.writeTimeout", "is 0s; it must be greater than 0, like 200ms"},
			{"cache.redis.breakerCooldown", "must be greater than 0, like 5s"},
		}},

		{"every problem at once", func(c *Config) {
			c.Listen = "x"
			c.Search.MaxLimit = 0
			c.Sources[0].URL = "pacs"
			c.Sources[1].ID = "RXA"
		}, []Problem{
			{"listen", "is not host:port"},
			{"search.maxLimit", "at least 1"},
			{"sources[0].url", "is not an absolute"},
			{"sources[1].id", "also the id of sources[0]"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(&c)
			matchProblems(t, c.Validate(), tc.want)
		})
	}
}

func TestValidateNeverShowsSecrets(t *testing.T) {
	c := validConfig()
	c.SigningKey = "short-signing-secret"
	c.Sources[0].URL = "http://user:url-secret@pacs?x"
	c.Sources[1].Auth = Auth{Type: AuthNone, Password: "password-secret", Token: "token-secret"}
	c.Cache.KeySecret = "short-cache-secret"
	c.Cache.EncryptionKeys = []Secret{"bad-key-secret", encryptionKey(7), Secret(base64.StdEncoding.EncodeToString([]byte("short-encryption-secret"))), encryptionKey(7)}
	c.Cache.Redis = Redis{Addrs: []string{"user:addr-secret@redis:6379", "pw-secret@10.0.0.5:6379", "10.0.0.6:6379"}, Password: "redis-secret", SentinelPassword: "sentinel-secret", DB: 1}
	problems := c.Validate()
	warnings := c.Warnings()
	if len(problems) < 8 || len(warnings) == 0 {
		t.Fatalf("got %d problems and %d warnings, want at least 8 and 1:\n%v\n%v", len(problems), len(warnings), Problems(problems), Problems(warnings))
	}
	for _, p := range append(problems, warnings...) {
		for _, s := range []string{"signing-secret", "url-secret", "password-secret", "token-secret", "cache-secret", "key-secret",
			string(encryptionKey(7)), string(c.Cache.EncryptionKeys[2]), "addr-secret", "pw-secret", "redis-secret", "sentinel-secret"} {
			if strings.Contains(p.String(), s) {
				t.Errorf("problem %q shows a secret", p)
			}
		}
	}
}

// warningCase is a valid configuration, validConfig with a signing key and modify applied, and
// the warnings it gives.
type warningCase struct {
	name   string
	modify func(c *Config)
	want   []Problem // Message is a substring of the warning's message
}

// checkWarnings checks each case's configuration is valid and gives its warnings.
func checkWarnings(t *testing.T, tests []warningCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			c.SigningKey = Secret(strings.Repeat("x", 32))
			tc.modify(&c)
			if ps := c.Validate(); len(ps) > 0 {
				t.Fatalf("Validate = %v, want a valid configuration", Problems(ps))
			}
			matchProblems(t, c.Warnings(), tc.want)
		})
	}
}

func TestCacheWarnings(t *testing.T) {
	checkWarnings(t, []warningCase{
		{"defaults", func(c *Config) {}, nil},
		{"redis on the loopback interface", func(c *Config) {
			withRedis(c)
			c.Cache.Redis.Addrs = []string{"127.0.0.1:6379", "localhost:6380", "[::1]:6381"}
		}, nil},
		{"redis across the network with tls", func(c *Config) {
			withRedis(c)
			c.Cache.Redis.Addrs, c.Cache.Redis.TLS = []string{"redis.example.internal:6380"}, true
		}, nil},
		{"redis across the network without tls", func(c *Config) {
			withRedis(c)
			c.Cache.Redis.Addrs = []string{"127.0.0.1:6379", "10.0.0.5:6379", "10.0.0.6:6379"}
		}, []Problem{{"cache.redis.tls", "is false and cache.redis.addrs[1] (10.0.0.5:6379) is not a loopback address: " +
			"values are encrypted, but the Redis password and the HMAC'd keys cross the network in clear"}}},
		{"audit records not sent to PARS", func(c *Config) { c.Audit.PARS.URL = "" },
			[]Problem{{"audit.pars.url", "is empty: audit records are kept in the spool only, not sent to the Patient Audit Record Service"}}},
		{"redis shared without a rate limit secret", func(c *Config) { withRedis(c); c.RateLimit.KeySecret = "" },
			[]Problem{{"rateLimit.keySecret", "empty, so a random secret is made for this process; replicas sharing the cache's Redis must share one"}}},
		{"cache off", func(c *Config) { c.Cache.Enabled = false; c.Cache.MaxRetention = Duration(time.Minute) },
			[]Problem{{"cache.enabled", "is false: every request goes to the trusts; no stale copies while a trust is down"}}},
		{"windows longer than maxRetention", func(c *Config) {
			c.Cache.MaxRetention = Duration(time.Hour)
			c.Cache.Search.Fresh = 0
			c.Cache.Search.Stale = Duration(2 * time.Hour)
		}, []Problem{
			{"cache.metadata", "fresh 5m0s and stale 1h0m0s together (1h5m0s) are longer than cache.maxRetention (1h0m0s); entries will be cut to maxRetention"},
			{"cache.rendered", "together (2h0m0s) are longer than cache.maxRetention (1h0m0s); entries will be cut to maxRetention"},
		}},
		{"windows as long as maxRetention", func(c *Config) { c.Cache.MaxRetention = Duration(2 * time.Hour) }, nil},
	})
}

func TestCacheKeys(t *testing.T) {
	tests := []struct {
		name    string
		keys    []Secret
		want    [][]byte
		wantErr string
	}{
		{"none", nil, [][]byte{}, ""},
		{"in order, trimmed", []Secret{encryptionKey(2), " " + encryptionKey(1) + "\n"},
			[][]byte{bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{1}, 32)}, ""},
		{"not base64", []Secret{encryptionKey(1), "not-base64-secret"}, nil,
			"decode cache.encryptionKeys[1]: is not base64 (standard encoding)"},
		{"URL encoding", []Secret{Secret(strings.Repeat("-", 43) + "=")}, nil,
			"decode cache.encryptionKeys[0]: is not base64 (standard encoding)"},
		{"wrong length", []Secret{Secret(base64.StdEncoding.EncodeToString([]byte("sixteen-secret!!")))}, nil,
			"decode cache.encryptionKeys[0]: is the base64 of 16 bytes, not 32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Cache{EncryptionKeys: tc.keys}.Keys()
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Keys() error = %v, want %q", err, tc.wantErr)
				}
				for _, k := range tc.keys {
					if strings.Contains(err.Error(), strings.TrimSpace(string(k))) {
						t.Errorf("Keys() error %q shows a key", err)
					}
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Keys() = %v, %v, want %v", got, err, tc.want)
			}
		})
	}
}

func TestCacheRedisEnabled(t *testing.T) {
	tests := []struct {
		name    string
		enabled bool
		addrs   []string
		want    bool
	}{
		{"in process", true, nil, false},
		{"redis", true, []string{"redis:6379"}, true},
		{"redis, cache off", false, []string{"redis:6379"}, false},
		{"cache off", false, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Cache{Enabled: tc.enabled, Redis: Redis{Addrs: tc.addrs}}
			if got := c.RedisEnabled(); got != tc.want {
				t.Errorf("RedisEnabled() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	c := validConfig()
	c.CORS.AllowedOrigins = []string{"http://localhost:3000", "*"}
	matchProblems(t, c.Warnings(), []Problem{
		{"cors.allowedOrigins[1]", "any web site"},
		{"signingKey", "random key"},
	})
	c.CORS.AllowedOrigins = nil
	c.SigningKey = Secret(strings.Repeat("x", 32))
	matchProblems(t, c.Warnings(), nil)
	for _, loopback := range []string{"", "127.0.0.1:9090", "[::1]:9090", "localhost:9090"} {
		c.AdminListen = loopback
		matchProblems(t, c.Warnings(), nil)
	}
	for _, open := range []string{":9090", "0.0.0.0:9090", "192.0.2.7:9090"} {
		c.AdminListen = open
		matchProblems(t, c.Warnings(), []Problem{{"adminListen", "is not a loopback address: /status and /metrics are served there in plain HTTP, with no authentication"}})
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		name string
		p    Problem
		want string
	}{
		{"with path", Problem{Path: "sources[1].url", Message: "is missing"}, "sources[1].url: is missing"},
		{"without path", Problem{Message: "the file is not valid YAML"}, "the file is not valid YAML"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

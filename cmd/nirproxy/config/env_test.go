package config

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const twoSourcesYAML = `
listen: 127.0.0.1:8080
cors:
  allowedOrigins: [http://a.example]
sources:
  - id: RXA
    name: A
    url: https://127.0.0.1:8042/dicom-web
  - id: RXB
    name: B
    url: https://127.0.0.1:8043/dicom-web
    auth: {type: basic, username: u, password: from-file}
`

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		check   func(t *testing.T, c Config)
		want    []Problem // Message is a substring of the problem's message
	}{
		{
			name:    "top-level keys",
			environ: []string{"NIRPROXY_LISTEN=0.0.0.0:9000", "NIRPROXY_PUBLIC_URL=https://x.example", "NIRPROXY_REQUEST_TIMEOUT=45s"},
			check: func(t *testing.T, c Config) {
				if c.Listen != "0.0.0.0:9000" || c.PublicURL != "https://x.example" || c.RequestTimeout.Std() != 45*time.Second {
					t.Errorf("got listen %q, publicURL %q, requestTimeout %v", c.Listen, c.PublicURL, c.RequestTimeout)
				}
			},
		},
		{
			name:    "nested keys",
			environ: []string{"NIRPROXY_SEARCH_MAX_LIMIT=50", "NIRPROXY_SEARCH_MAX_RESULTS_PER_SOURCE=200", "NIRPROXY_LOGGING_LEVEL=debug", "NIRPROXY_LOCATOR_TTL=1h"},
			check: func(t *testing.T, c Config) {
				if c.Search.MaxLimit != 50 || c.Search.MaxResultsPerSource != 200 || c.Logging.Level != "debug" || c.Locator.TTL.Std() != time.Hour {
					t.Errorf("got search %+v, logging %+v, locator %+v", c.Search, c.Logging, c.Locator)
				}
			},
		},
		{
			name:    "lists are comma-separated",
			environ: []string{"NIRPROXY_CORS_ALLOWED_ORIGINS=http://localhost:3000, https://v.example,"},
			check: func(t *testing.T, c Config) {
				if want := []string{"http://localhost:3000", "https://v.example"}; !reflect.DeepEqual(c.CORS.AllowedOrigins, want) {
					t.Errorf("cors.allowedOrigins = %q, want %q", c.CORS.AllowedOrigins, want)
				}
			},
		},
		{
			name: "a source's breaker",
			environ: []string{"NIRPROXY_SOURCES_RXA_BREAKER_WINDOW=2m", "NIRPROXY_SOURCES_RXA_BREAKER_MIN_REQUESTS=50",
				"NIRPROXY_SOURCES_RXA_BREAKER_FAILURE_RATIO=0.75", "NIRPROXY_SOURCES_RXA_BREAKER_CONSECUTIVE_UNREACHABLE=3"},
			check: func(t *testing.T, c Config) {
				want := Breaker{Window: Duration(2 * time.Minute), MinRequests: 50, FailureRatio: 0.75, ConsecutiveUnreachable: 3, OpenFor: Duration(30 * time.Second)}
				if c.Sources[0].Breaker != want {
					t.Errorf("sources[0].breaker = %+v, want %+v", c.Sources[0].Breaker, want)
				}
			},
		},
		{
			name:    "the retired breaker.failures",
			environ: []string{"NIRPROXY_SOURCES_RXA_BREAKER_FAILURES=5"},
			want:    []Problem{{"NIRPROXY_SOURCES_RXA_BREAKER_FAILURES", "overrides sources[].breaker.failures, which is no longer read"}},
		},
		{
			name:    "a ratio that is not finite",
			environ: []string{"NIRPROXY_SOURCES_RXA_BREAKER_FAILURE_RATIO=NaN"},
			want:    []Problem{{"NIRPROXY_SOURCES_RXA_BREAKER_FAILURE_RATIO", `"NaN" is not a finite number; write it like 0.5 (overriding sources[0].breaker.failureRatio)`}},
		},
		{
			name:    "an empty value empties a list or a string",
			environ: []string{"NIRPROXY_CORS_ALLOWED_ORIGINS=", "NIRPROXY_LISTEN="},
			check: func(t *testing.T, c Config) {
				if len(c.CORS.AllowedOrigins) != 0 || c.Listen != "" {
					t.Errorf("cors.allowedOrigins = %q, listen = %q, want both empty", c.CORS.AllowedOrigins, c.Listen)
				}
			},
		},
		{
			name:    "secrets",
			environ: []string{"NIRPROXY_SIGNING_KEY=" + strings.Repeat("k", 32), "NIRPROXY_SOURCES_RXB_AUTH_PASSWORD=pw", "NIRPROXY_SOURCES_RXA_AUTH_TOKEN=tok"},
			check: func(t *testing.T, c Config) {
				if len(c.SigningKey) != 32 || c.Sources[1].Auth.Password != "pw" || c.Sources[0].Auth.Token != "tok" {
					t.Errorf("secrets not set from the environment")
				}
			},
		},
		{
			name: "source keys by id",
			environ: []string{
				"NIRPROXY_SOURCES_RXA_URL=http://pacs-a/dicom-web", "NIRPROXY_SOURCES_RXB_PRIORITY=5",
				"NIRPROXY_SOURCES_RXB_REQUIRED=true", "NIRPROXY_SOURCES_RXA_TIMEOUT=2s",
				"NIRPROXY_SOURCES_RXA_PATIENT_ID_ATTRIBUTE=OtherPatientIDsSequence", "NIRPROXY_SOURCES_RXA_PATIENT_ID_ISSUER=NHS",
				"NIRPROXY_SOURCES_RXB_AUTH_TYPE=bearer",
			},
			check: func(t *testing.T, c Config) {
				a, b := c.Sources[0], c.Sources[1]
				if a.URL != "http://pacs-a/dicom-web" || a.Timeout.Std() != 2*time.Second ||
					a.PatientID != (PatientID{Attribute: AttributeOtherPatientIDsSequence, Issuer: "NHS"}) {
					t.Errorf("RXA = %+v", a)
				}
				if b.Priority != 5 || !b.Required || b.Auth.Type != AuthBearer || b.URL != "https://127.0.0.1:8043/dicom-web" {
					t.Errorf("RXB = %+v", b)
				}
			},
		},
		{
			name: "a source's transport keys",
			environ: []string{
				"NIRPROXY_SOURCES_RXB_INSECURE=true", "NIRPROXY_SOURCES_RXB_TLS_CA_FILE=/etc/nirproxy/ca.pem",
				"NIRPROXY_SOURCES_RXB_TLS_CERT_FILE=client.pem", "NIRPROXY_SOURCES_RXB_TLS_KEY_FILE=client-key.pem",
				"NIRPROXY_SOURCES_RXB_TLS_SERVER_NAME=pacs.internal",
			},
			check: func(t *testing.T, c Config) {
				want := SourceTLS{CAFile: "/etc/nirproxy/ca.pem", CertFile: "client.pem", KeyFile: "client-key.pem", ServerName: "pacs.internal"}
				if b := c.Sources[1]; !b.Insecure || b.TLS != want {
					t.Errorf("RXB insecure %v, tls %+v; want true, %+v", b.Insecure, b.TLS, want)
				}
			},
		},
		{
			name:    "source id in lower case",
			environ: []string{"NIRPROXY_SOURCES_rxa_PRIORITY=7"},
			check: func(t *testing.T, c Config) {
				if c.Sources[0].Priority != 7 {
					t.Errorf("priority = %d, want 7", c.Sources[0].Priority)
				}
			},
		},
		{
			name:    "other variables are ignored",
			environ: []string{"HOME=/root", "NIRPROXYLISTEN=x", "nirproxy_listen=x", "NOEQUALS"},
			check: func(t *testing.T, c Config) {
				if c.Listen != "127.0.0.1:8080" {
					t.Errorf("listen = %q", c.Listen)
				}
			},
		},
		{
			name:    "unknown key",
			environ: []string{"NIRPROXY_SEARCH_MAXLIMIT=3"},
			want:    []Problem{{"NIRPROXY_SEARCH_MAXLIMIT", "names no configuration key; did you mean NIRPROXY_SEARCH_MAX_LIMIT?"}},
		},
		{
			name:    "unknown key far from any",
			environ: []string{"NIRPROXY_CONFIGURATION_FILE=x"},
			want:    []Problem{{"NIRPROXY_CONFIGURATION_FILE", "names no configuration key; a variable's name is NIRPROXY_ and the key's path"}},
		},
		{
			name:    "a section is not a key",
			environ: []string{"NIRPROXY_SEARCH=3"},
			want:    []Problem{{"NIRPROXY_SEARCH", "names no configuration key"}},
		},
		{
			name:    "unknown source id",
			environ: []string{"NIRPROXY_SOURCES_RXC_URL=http://x"},
			want:    []Problem{{"NIRPROXY_SOURCES_RXC_URL", "no entry of sources has the id RXC; the ids are RXA, RXB"}},
		},
		{
			name:    "unknown source key",
			environ: []string{"NIRPROXY_SOURCES_RXA_ULR=http://x"},
			want:    []Problem{{"NIRPROXY_SOURCES_RXA_ULR", "an entry of sources has no key ULR; did you mean NIRPROXY_SOURCES_RXA_URL?"}},
		},
		{
			name:    "a source's id cannot be overridden",
			environ: []string{"NIRPROXY_SOURCES_RXA_ID=RXZ"},
			want:    []Problem{{"NIRPROXY_SOURCES_RXA_ID", "the id of an entry of sources cannot be changed from the environment"}},
		},
		{
			name:    "sources as a whole",
			environ: []string{"NIRPROXY_SOURCES=RXA"},
			want:    []Problem{{"NIRPROXY_SOURCES", "cannot be set from the environment as a whole"}},
		},
		{
			name:    "a source without key",
			environ: []string{"NIRPROXY_SOURCES_RXA=x"},
			want:    []Problem{{"NIRPROXY_SOURCES_RXA", "like NIRPROXY_SOURCES_RXA_URL"}},
		},
		{
			name:    "bad values",
			environ: []string{"NIRPROXY_REQUEST_TIMEOUT=30", "NIRPROXY_SEARCH_MAX_LIMIT=many", "NIRPROXY_SOURCES_RXA_REQUIRED=sometimes"},
			want: []Problem{
				{"NIRPROXY_REQUEST_TIMEOUT", `"30" is not a duration; write it like 10s, 1m30s or 500ms (overriding requestTimeout)`},
				{"NIRPROXY_SEARCH_MAX_LIMIT", `"many" is not a whole number; write it like 100 (overriding search.maxLimit)`},
				{"NIRPROXY_SOURCES_RXA_REQUIRED", "is not a boolean; write true or false (overriding sources[0].required)"},
			},
		},
		{
			name:    "bad cache values",
			environ: []string{"NIRPROXY_CACHE_REDIS_DB=one", "NIRPROXY_CACHE_SEARCH_FRESH=30", "NIRPROXY_CACHE_ENABLED=yes please"},
			want: []Problem{
				{"NIRPROXY_CACHE_REDIS_DB", `"one" is not a whole number; write it like 100 (overriding cache.redis.db)`},
				{"NIRPROXY_CACHE_SEARCH_FRESH", `"30" is not a duration; write it like 10s, 1m30s or 500ms (overriding cache.search.fresh)`},
				{"NIRPROXY_CACHE_ENABLED", "is not a boolean; write true or false (overriding cache.enabled)"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(twoSourcesYAML), tc.environ)
			assertProblems(t, err, tc.want)
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// TestEnvOverridesCache sets every key of the cache section from the environment; it fails when a
// key of the section is missing from the table, so a new key cannot go untested.
func TestEnvOverridesCache(t *testing.T) {
	keyA, keyB := strings.Repeat("A", 43)+"=", strings.Repeat("B", 43)+"="
	tests := []struct {
		name, value string
		got         func(c Cache) any
		want        any
	}{
		{"NIRPROXY_CACHE_ENABLED", "false", func(c Cache) any { return c.Enabled }, false},
		{"NIRPROXY_CACHE_MEMORY_MAX_BYTES", "2097152", func(c Cache) any { return c.MemoryMaxBytes }, 2 << 20},
		{"NIRPROXY_CACHE_MAX_RETENTION", "2h", func(c Cache) any { return c.MaxRetention.Std() }, 2 * time.Hour},
		{"NIRPROXY_CACHE_SERVE_STALE", "false", func(c Cache) any { return c.ServeStale }, false},
		{"NIRPROXY_CACHE_KEY_SECRET", "env-key-secret", func(c Cache) any { return c.KeySecret }, Secret("env-key-secret")},
		{"NIRPROXY_CACHE_KEY_SECRET_FILE", "", func(c Cache) any { return c.KeySecretFile }, ""},
		{"NIRPROXY_CACHE_ENCRYPTION_KEYS", keyA + ", " + keyB + ",", func(c Cache) any { return c.EncryptionKeys }, []Secret{Secret(keyA), Secret(keyB)}},
		{"NIRPROXY_CACHE_ENCRYPTION_KEYS_FILE", "", func(c Cache) any { return c.EncryptionKeysFile }, ""},
		{"NIRPROXY_CACHE_SEARCH_FRESH", "1m", func(c Cache) any { return c.Search.Fresh.Std() }, time.Minute},
		{"NIRPROXY_CACHE_SEARCH_STALE", "0s", func(c Cache) any { return c.Search.Stale.Std() }, time.Duration(0)},
		{"NIRPROXY_CACHE_METADATA_FRESH", "10m", func(c Cache) any { return c.Metadata.Fresh.Std() }, 10 * time.Minute},
		{"NIRPROXY_CACHE_METADATA_STALE", "2h", func(c Cache) any { return c.Metadata.Stale.Std() }, 2 * time.Hour},
		{"NIRPROXY_CACHE_RENDERED_FRESH", "0s", func(c Cache) any { return c.Rendered.Fresh.Std() }, time.Duration(0)},
		{"NIRPROXY_CACHE_RENDERED_STALE", "30m", func(c Cache) any { return c.Rendered.Stale.Std() }, 30 * time.Minute},
		{"NIRPROXY_CACHE_RENDERED_MAX_BYTES", "1024", func(c Cache) any { return c.Rendered.MaxBytes }, 1024},
		{"NIRPROXY_CACHE_REDIS_ADDRS", "redis-0:6379,redis-1:6379", func(c Cache) any { return c.Redis.Addrs }, []string{"redis-0:6379", "redis-1:6379"}},
		{"NIRPROXY_CACHE_REDIS_MASTER_NAME", "mymaster", func(c Cache) any { return c.Redis.MasterName }, "mymaster"},
		{"NIRPROXY_CACHE_REDIS_USERNAME", "nirproxy", func(c Cache) any { return c.Redis.Username }, "nirproxy"},
		{"NIRPROXY_CACHE_REDIS_PASSWORD", "env-redis-password", func(c Cache) any { return c.Redis.Password }, Secret("env-redis-password")},
		{"NIRPROXY_CACHE_REDIS_PASSWORD_FILE", "", func(c Cache) any { return c.Redis.PasswordFile }, ""},
		{"NIRPROXY_CACHE_REDIS_SENTINEL_PASSWORD", "env-sentinel", func(c Cache) any { return c.Redis.SentinelPassword }, Secret("env-sentinel")},
		{"NIRPROXY_CACHE_REDIS_SENTINEL_PASSWORD_FILE", "", func(c Cache) any { return c.Redis.SentinelPasswordFile }, ""},
		{"NIRPROXY_CACHE_REDIS_DB", "3", func(c Cache) any { return c.Redis.DB }, 3},
		{"NIRPROXY_CACHE_REDIS_TLS", "true", func(c Cache) any { return c.Redis.TLS }, true},
		{"NIRPROXY_CACHE_REDIS_OP_TIMEOUT", "1s", func(c Cache) any { return c.Redis.OpTimeout.Std() }, time.Second},
		{"NIRPROXY_CACHE_REDIS_DIAL_TIMEOUT", "500ms", func(c Cache) any { return c.Redis.DialTimeout.Std() }, 500 * time.Millisecond},
		{"NIRPROXY_CACHE_REDIS_READ_TIMEOUT", "300ms", func(c Cache) any { return c.Redis.ReadTimeout.Std() }, 300 * time.Millisecond},
		{"NIRPROXY_CACHE_REDIS_WRITE_TIMEOUT", "400ms", func(c Cache) any { return c.Redis.WriteTimeout.Std() }, 400 * time.Millisecond},
		{"NIRPROXY_CACHE_REDIS_POOL_SIZE", "40", func(c Cache) any { return c.Redis.PoolSize }, 40},
		{"NIRPROXY_CACHE_REDIS_BREAKER_FAILURES", "2", func(c Cache) any { return c.Redis.BreakerFailures }, 2},
		{"NIRPROXY_CACHE_REDIS_BREAKER_COOLDOWN", "1m", func(c Cache) any { return c.Redis.BreakerCooldown.Std() }, time.Minute},
	}
	cases := make([]envCase, len(tests))
	for i, tc := range tests {
		cases[i] = envCase{tc.name, tc.value, func(c Config) any { return tc.got(c.Cache) }, tc.want}
	}
	checkEnvCases(t, []string{"CACHE_"}, cases)
}

// envCase is one variable, its value, and what it sets.
type envCase struct {
	name, value string
	got         func(c Config) any
	want        any
}

// checkEnvCases sets each case's variable over twoSourcesYAML and checks what it set, and that
// EnvNames lists it; and that every variable EnvNames lists under the sections (CACHE_, ...) has
// a case, so a new key cannot go untested.
func checkEnvCases(t *testing.T, sections []string, tests []envCase) {
	t.Helper()
	names := EnvNames(Default())
	var inTable []string
	for _, tc := range tests {
		inTable = append(inTable, tc.name)
		t.Run(tc.name, func(t *testing.T) {
			if !slices.Contains(names, tc.name) {
				t.Errorf("EnvNames lacks %s", tc.name)
			}
			c, err := Parse([]byte(twoSourcesYAML), []string{tc.name + "=" + tc.value})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := tc.got(c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	for _, n := range names {
		for _, section := range sections {
			if strings.HasPrefix(n, EnvPrefix+section) && !slices.Contains(inTable, n) {
				t.Errorf("%s is not tested here", n)
			}
		}
	}
}

func TestEnvOverridesNeverShowSecrets(t *testing.T) {
	_, err := Parse([]byte(twoSourcesYAML), []string{
		"NIRPROXY_SOURCES_RXZ_AUTH_PASSWORD=hunter2", "NIRPROXY_SIGNING_KEYS=hunter3", "NIRPROXY_SOURCES_RXA_AUTH_TOKN=hunter4",
		"NIRPROXY_CACHE_ENCRYPTION_KEY=hunter5", "NIRPROXY_CACHE_REDIS_PASSWORDS=hunter6", "NIRPROXY_CACHE_KEYSECRET=hunter7",
		"NIRPROXY_CACHE_REDIS=hunter8",
	})
	if err == nil {
		t.Fatal("Parse: no error, want seven problems")
	}
	var ps Problems
	if errors.As(err, &ps) && len(ps) != 7 {
		t.Errorf("got %d problems, want 7:\n%v", len(ps), err)
	}
	if strings.Contains(err.Error(), "hunter") {
		t.Errorf("problems show a secret:\n%v", err)
	}
}

func TestEnvWords(t *testing.T) {
	tests := []struct{ key, want string }{
		{"listen", "LISTEN"},
		{"publicURL", "PUBLIC_URL"},
		{"maxResultsPerSource", "MAX_RESULTS_PER_SOURCE"},
		{"patientId", "PATIENT_ID"},
		{"ttl", "TTL"},
		{"signingKeyFile", "SIGNING_KEY_FILE"},
		{"publicURLPath", "PUBLIC_URL_PATH"},
		{"http2Enabled", "HTTP2_ENABLED"},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			if got := envWords(tc.key); got != tc.want {
				t.Errorf("envWords(%q) = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

func TestEnvNames(t *testing.T) {
	c, err := Parse([]byte(twoSourcesYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	names := EnvNames(c)
	for _, want := range []string{
		"NIRPROXY_LISTEN", "NIRPROXY_PUBLIC_URL", "NIRPROXY_SIGNING_KEY", "NIRPROXY_SIGNING_KEY_FILE", "NIRPROXY_REQUEST_TIMEOUT",
		"NIRPROXY_SEARCH_MAX_LIMIT", "NIRPROXY_CORS_ALLOWED_ORIGINS", "NIRPROXY_LOGGING_LEVEL", "NIRPROXY_BULKDATA_LINK_TTL",
		"NIRPROXY_PATIENT_IDENTIFIER_ISSUER", "NIRPROXY_LOCATOR_TTL", "NIRPROXY_CORS_MAX_AGE",
		"NIRPROXY_SOURCES_RXA_URL", "NIRPROXY_SOURCES_RXA_AUTH_PASSWORD", "NIRPROXY_SOURCES_RXB_AUTH_TOKEN",
		"NIRPROXY_SOURCES_RXB_AUTH_TOKEN_FILE", "NIRPROXY_SOURCES_RXA_PATIENT_ID_ISSUER",
		"NIRPROXY_CACHE_ENABLED", "NIRPROXY_CACHE_ENCRYPTION_KEYS", "NIRPROXY_CACHE_ENCRYPTION_KEYS_FILE", "NIRPROXY_CACHE_KEY_SECRET",
		"NIRPROXY_CACHE_SEARCH_FRESH", "NIRPROXY_CACHE_RENDERED_MAX_BYTES", "NIRPROXY_CACHE_REDIS_ADDRS", "NIRPROXY_CACHE_REDIS_PASSWORD",
		"NIRPROXY_CACHE_REDIS_SENTINEL_PASSWORD_FILE", "NIRPROXY_CACHE_REDIS_BREAKER_COOLDOWN",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("EnvNames lacks %s", want)
		}
	}
	for _, n := range names {
		if strings.HasSuffix(n, "_ID") && strings.HasPrefix(n, "NIRPROXY_SOURCES_") && !strings.Contains(n, "PATIENT") {
			t.Errorf("EnvNames offers %s, but a source's id cannot be overridden", n)
		}
	}
	// Every name it lists is accepted.
	var environ []string
	for _, n := range names {
		environ = append(environ, n+"=")
	}
	if _, err := Parse([]byte(twoSourcesYAML), environ); err != nil {
		var ps Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				if strings.Contains(p.Message, "names no configuration key") || strings.Contains(p.Message, "has no key") {
					t.Errorf("EnvNames lists %s, which Parse refuses: %s", p.Path, p.Message)
				}
			}
		}
	}
}

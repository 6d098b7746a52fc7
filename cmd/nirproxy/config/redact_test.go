package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// secretConfig is a valid configuration holding a secret of every kind.
func secretConfig() Config {
	c := validConfig()
	c.SigningKey = Secret("signing-secret-" + strings.Repeat("x", 32))
	c.Sources[0].Auth = Auth{Type: AuthBearer, Token: "token-secret", TokenFile: "/run/secrets/token"}
	c.Sources[1].Auth = Auth{Type: AuthBasic, Username: "user", Password: "password-secret"}
	c.Cache.KeySecret = Secret("cache-key-secret-" + strings.Repeat("x", 32))
	c.Cache.EncryptionKeys = []Secret{encryptionKey(0xa1), encryptionKey(0xb2), encryptionKey(0xc3)}
	c.Cache.EncryptionKeysFile = "/run/secrets/cache-keys"
	c.Cache.Redis.Addrs = []string{"127.0.0.1:6379"}
	c.Cache.Redis.Username = "nirproxy"
	c.Cache.Redis.Password = "redis-password-secret"
	c.Cache.Redis.SentinelPassword = "sentinel-password-secret"
	return c
}

// secretValues are the values of secretConfig's secrets that have no "-secret" in them.
func secretValues(c Config) []string {
	var vs []string
	for _, k := range c.Cache.EncryptionKeys {
		vs = append(vs, string(k))
	}
	return vs
}

// redacted is a deep copy of c with every non-empty secret replaced by "REDACTED": what the tests
// write out or print. (Nothing in production needs it: a Secret already prints and marshals as
// REDACTED.)
func redacted(c Config) Config {
	v := reflect.ValueOf(&c).Elem()
	redact(v)
	return c
}

// redact copies v's slices (so the caller's Config is left alone) and redacts its secrets.
func redact(v reflect.Value) {
	switch {
	case v.Type() == reflect.TypeFor[Secret]():
		if v.String() != "" {
			v.SetString(Redaction)
		}
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				redact(v.Field(i))
			}
		}
	case v.Kind() == reflect.Slice && !v.IsNil():
		cp := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(cp, v)
		v.Set(cp)
		for i := range cp.Len() {
			redact(cp.Index(i))
		}
	}
}

func TestSecretConfigIsValid(t *testing.T) {
	c := secretConfig()
	c.Cache.EncryptionKeysFile = "" // Load reads it; Validate only mentions it.
	if ps := c.Validate(); len(ps) > 0 {
		t.Errorf("Validate(secretConfig()) = %v, want no problems", Problems(ps))
	}
}

func TestRedacted(t *testing.T) {
	c := secretConfig()
	r := redacted(c)
	if r.SigningKey != Redaction || r.Sources[0].Auth.Token != Redaction || r.Sources[1].Auth.Password != Redaction {
		t.Errorf("Redacted kept a secret: %+v", r)
	}
	if r.Sources[1].Auth.Token != "" || r.Sources[0].Auth.Password != "" {
		t.Errorf("Redacted filled in empty secrets: %+v", r)
	}
	if r.Sources[0].Auth.TokenFile != "/run/secrets/token" || r.Sources[1].Auth.Username != "user" || r.Sources[0].URL != c.Sources[0].URL {
		t.Errorf("Redacted changed what is not secret: %+v", r)
	}
	if c.Sources[0].Auth.Token != "token-secret" || c.Sources[1].Auth.Password != "password-secret" {
		t.Errorf("Redacted changed the original's sources: %+v", c.Sources)
	}
}

func TestRedactedCache(t *testing.T) {
	c := secretConfig()
	want := c.Cache
	want.KeySecret = Redaction
	want.EncryptionKeys = []Secret{Redaction, Redaction, Redaction}
	want.Redis.Password, want.Redis.SentinelPassword = Redaction, Redaction
	r := redacted(c)
	if !reflect.DeepEqual(r.Cache, want) {
		t.Errorf("Redacted().Cache =\n%+v\nwant\n%+v", r.Cache, want)
	}
	if !reflect.DeepEqual(c.Cache.EncryptionKeys, secretConfig().Cache.EncryptionKeys) {
		t.Errorf("Redacted changed the original's encryption keys")
	}
	c.Cache = Cache{EncryptionKeys: []Secret{"", encryptionKey(1)}}
	if got := redacted(c).Cache.EncryptionKeys; !reflect.DeepEqual(got, []Secret{"", Redaction}) {
		t.Errorf("Redacted().Cache.EncryptionKeys = %q, want an empty key kept empty and the other redacted", got)
	}
}

// TestSecretsNeverPrinted checks the ways a Config may end up in a log or on a terminal.
func TestSecretsNeverPrinted(t *testing.T) {
	c := secretConfig()
	var logs bytes.Buffer
	tests := []struct {
		name  string
		print func() string
	}{
		{"fmt %v", func() string { return fmt.Sprintf("%v", c) }},
		{"fmt %+v", func() string { return fmt.Sprintf("%+v", c) }},
		{"fmt %#v", func() string { return fmt.Sprintf("%#v", c) }},
		{"fmt %s of a secret", func() string { return fmt.Sprintf("%s", c.SigningKey) }},
		{"fmt %v of the encryption keys", func() string { return fmt.Sprintf("%v", c.Cache.EncryptionKeys) }},
		{"fmt %#v of the cache", func() string { return fmt.Sprintf("%#v", c.Cache) }},
		{"fmt %v of the redacted config", func() string { return fmt.Sprintf("%v", redacted(c)) }},
		{"yaml of the redacted config", func() string { b, _ := yaml.Marshal(redacted(c)); return string(b) }},
		{"json", func() string { b, _ := json.Marshal(c); return string(b) }},
		{"yaml", func() string { b, _ := yaml.Marshal(c); return string(b) }},
		{"slog text", func() string {
			logs.Reset()
			slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "config", c, "token", c.Sources[0].Auth.Token)
			return logs.String()
		}},
		{"slog json", func() string {
			logs.Reset()
			slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", c, "token", c.Sources[0].Auth.Token)
			return logs.String()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.print()
			if strings.Contains(out, "-secret") {
				t.Errorf("printed a secret: %s", out)
			}
			for _, v := range secretValues(c) {
				if strings.Contains(out, v) {
					t.Errorf("printed the secret %s: %s", v, out)
				}
			}
			if !strings.Contains(out, Redaction) {
				t.Errorf("printed no %s: %s", Redaction, out)
			}
		})
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d.String() != "1m30s" {
		t.Errorf("UnmarshalText(1m30s) = %v, %v", d, err)
	}
	if err := d.UnmarshalText([]byte("90")); err == nil {
		t.Errorf("UnmarshalText(90) succeeded, want an error")
	}
	// yaml.v3's own decoder reads a Duration too, for callers that use it directly.
	var s struct{ T Duration }
	if err := yaml.Unmarshal([]byte("t: 2s"), &s); err != nil || s.T.String() != "2s" {
		t.Errorf("yaml.Unmarshal = %v, %v", s.T, err)
	}
}

func TestSlogLevel(t *testing.T) {
	tests := []struct {
		level string
		want  slog.Level
	}{
		{"debug", slog.LevelDebug}, {"info", slog.LevelInfo}, {"WARN", slog.LevelWarn}, {"error", slog.LevelError}, {"", slog.LevelInfo},
	}
	for _, tc := range tests {
		t.Run(tc.level, func(t *testing.T) {
			if got := (Logging{Level: tc.level}).SlogLevel(); got != tc.want {
				t.Errorf("SlogLevel() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	writeMinimalRegistry(t, dir)
	access := []string{"onboarding registry: DIR/registry.yaml (organisations: 2, systems: 1)", "audit spool: DIR/audit", "token issuers: https://idp.example.nhs.uk (iua)"}
	tests := []struct {
		name    string
		yaml    string // empty: no file
		environ []string
		wantOK  bool
		want    []string // the output's lines; a line holding "PATH" is matched with the file's path
	}{
		{
			name:   "minimal",
			yaml:   minimalYAML + minimalAccessYAML,
			wantOK: true,
			want: []string{"PATH is valid: 1 source (RXA), listening on 127.0.0.1:8080", "cache: in process, 64 MiB", access[0], access[1], access[2],
				"warning: signingKey: empty, so a random key is made for this process; several replicas behind one load balancer must share one key, or bulkdata links from one fail at another"},
		},
		{
			name:    "several sources with an override",
			yaml:    twoSourcesYAML + minimalAccessYAML,
			environ: []string{"NIRPROXY_LISTEN=:9000", "NIRPROXY_PUBLIC_URL=https://imaging.example.nhs.uk"},
			wantOK:  true,
			want: []string{"PATH is valid: 2 sources (RXA, RXB), listening on :9000", "cache: in process, 64 MiB", access[0], access[1], access[2],
				"warning: signingKey: empty, so a random key is made for this process; several replicas behind one load balancer must share one key, or bulkdata links from one fail at another"},
		},
		{
			name: "a Redis Cluster on another host, without TLS",
			yaml: minimalYAML + minimalAccessYAML + "signingKey: " + strings.Repeat("k", 32) + "\ncache:\n  keySecret: " + strings.Repeat("s", 40) +
				"\n  encryptionKeys: [" + string(encryptionKey(4)) + "]\n  redis: {addrs: [10.0.0.5:6379, 10.0.0.6:6379, 10.0.0.7:6379]}\n",
			wantOK: true,
			want: []string{"PATH is valid: 1 source (RXA), listening on 127.0.0.1:8080", "cache: Redis Cluster at 10.0.0.5:6379, 10.0.0.6:6379, 10.0.0.7:6379", access[0], access[1], access[2],
				"warning: cache.redis.tls: is false and cache.redis.addrs[0] (10.0.0.5:6379) is not a loopback address: values are encrypted, but the Redis password and the HMAC'd keys cross the network in clear; set tls: true if the Redis accepts TLS",
				"warning: rateLimit.keySecret: empty, so a random secret is made for this process; replicas sharing the cache's Redis must share one, or each counts its callers apart and a caller gets each replica's limits"},
		},
		{
			name:    "every problem, from reading and validating",
			yaml:    "listen: 8080\nsorces: []\nsources:\n  - id: rxa\n    url: localhost:8042\n    auth: {type: basic, username: u, password: hunter2-secret}\n",
			environ: []string{"NIRPROXY_SOURCES_RXQ_URL=x"},
			want: []string{
				"sorces: unknown key (line 2); did you mean sources? The keys here are adminListen, audit, auth, authorization, bulkdataLinkTTL, cache, clientWriteTimeout, cors, incidents, listen, locator, logging, maxFrames, onboarding, partialRetrieve, partialSearch, patientIdentifierIssuer, publicURL, rateLimit, requestTimeout, retryAfter, search, signingKey, signingKeyFile, sources, thumbnailViewport, tls",
				"NIRPROXY_SOURCES_RXQ_URL: no entry of sources has the id RXQ; the ids are rxa",
				`listen: "8080" is not host:port; write it like 127.0.0.1:8080 (or :8080 for every interface)`,
				`sources[0].id: "rxa" is not an ODS code; use 3 to 10 upper-case letters or digits, like RXA; here write RXA`,
				"sources[0].name: is missing; write the trust's name, like Example Hospitals NHS Trust",
				`sources[0].url: "localhost:8042" is not an absolute http(s) URL; write it like http://127.0.0.1:8042/dicom-web`,
				"auth.issuers: is empty; nirproxy answers only callers with a bearer token from a trusted issuer: add the issuer (for NHS CIS2, see config.example.yaml)",
				"onboarding.registryFile: is empty; nirproxy answers only organisations onboarded to the registry: name the registry file (its form is in registry.example.yaml)",
				"audit.spoolDir: is empty; nirproxy records every access before it answers: name a directory for the audit spool, like /var/lib/nirproxy/audit",
			},
		},
		{
			name:   "a test PACS on plain http",
			yaml:   "signingKey: " + strings.Repeat("k", 32) + "\nsources:\n  - {id: ORA, name: Orthanc A, url: 'http://127.0.0.1:8042/dicom-web', insecure: true}\n" + minimalAccessYAML,
			wantOK: true,
			want: []string{"PATH is valid: 1 source (ORA), listening on 127.0.0.1:8080", "cache: in process, 64 MiB", access[0], access[1], access[2],
				"warning: sources[0].insecure: is true: ORA is reached over plain HTTP, which sends patients' data unencrypted; for a demo or test only: use an https url and remove insecure"},
		},
		{
			name: "plain http without insecure, and a CA file that is not there",
			yaml: "sources:\n  - {id: ORA, name: Orthanc A, url: 'http://127.0.0.1:8042/dicom-web'}\n  - {id: RXB, name: B, url: 'https://pacs.example.nhs.uk/dicom-web', tls: {caFile: rxb-ca.pem}}\n" + minimalAccessYAML,
			want: []string{
				`sources[0].url: "http://127.0.0.1:8042/dicom-web" is plain HTTP, which sends patients' data unencrypted; use https, or set insecure: true for a demo or test`,
				"sources[1].tls.caFile: cannot read " + filepath.Join(dir, "rxb-ca.pem") + ": no such file or directory; check the path and the file's permissions",
			},
		},
		{
			name: "cache problems show no secret",
			yaml: minimalYAML + minimalAccessYAML + "cache:\n  keySecret: short-key-secret\n  encryptionKeys: [bad-encryption-secret, " + string(encryptionKey(9)) + "]\n" +
				"  redis: {addrs: [redis:6379], password: redis-password-secret}\n",
			environ: []string{"NIRPROXY_CACHE_ENCRYPTION_KEY=" + string(encryptionKey(9)), "NIRPROXY_CACHE_REDIS_DB=two"},
			want: []string{
				"NIRPROXY_CACHE_ENCRYPTION_KEY: names no configuration key; did you mean NIRPROXY_CACHE_ENCRYPTION_KEYS?",
				`NIRPROXY_CACHE_REDIS_DB: "two" is not a whole number; write it like 100 (overriding cache.redis.db)`,
				"cache.keySecret: is 16 bytes long; use at least 32 random bytes; generate one with: openssl rand -base64 48",
				"cache.encryptionKeys[0]: is not base64 (standard encoding); each key must be the base64 of 32 random bytes; generate one with: openssl rand -base64 32",
			},
		},
		{
			name: "missing file",
			want: []string{"PATH: read config file: open PATH: no such file or directory"},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("config%d.yaml", i))
			if tc.yaml != "" {
				if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			if ok := CheckFile(path, tc.environ, &out); ok != tc.wantOK {
				t.Errorf("CheckFile = %v, want %v", ok, tc.wantOK)
			}
			want := strings.ReplaceAll(strings.ReplaceAll(strings.Join(tc.want, "\n")+"\n", "PATH", path), "DIR", dir)
			if out.String() != want {
				t.Errorf("CheckFile printed\n%s\nwant\n%s", out.String(), want)
			}
			for _, secret := range []string{"key-secret", "encryption-secret", "password-secret", string(encryptionKey(9))} {
				if strings.Contains(out.String(), secret) {
					t.Errorf("CheckFile printed a secret: %s", out.String())
				}
			}
		})
	}
}

func TestCheckFileExample(t *testing.T) {
	var out bytes.Buffer
	if !CheckFile(examplePath, nil, &out) {
		t.Fatalf("CheckFile(%s) = false:\n%s", examplePath, out.String())
	}
	if want := "is valid: 3 sources (RXA, RXB, RXC)"; !strings.Contains(out.String(), want) {
		t.Errorf("CheckFile printed %q, want it to contain %q", out.String(), want)
	}
}

package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const examplePath = "../../../config.example.yaml"

const minimalYAML = `
listen: 127.0.0.1:8080
sources:
  - id: RXA                       # the trust's ODS code
    name: Example Hospitals NHS Trust
    url: https://127.0.0.1:8042/dicom-web
`

// minimalAccessYAML is what a configuration needs beside its sources: a token issuer, the
// onboarding registry (registry.yaml beside the file; see writeMinimalRegistry) and the audit
// spool.
const minimalAccessYAML = `auth:
  issuers:
    - issuer: https://idp.example.nhs.uk
      jwksURL: https://idp.example.nhs.uk/jwks
      audiences: [nirproxy]
      profile: iua
onboarding:
  registryFile: registry.yaml
audit:
  spoolDir: audit
  pars: {url: "https://pars.example.nhs.uk/FHIR/R4", observer: "200000001234"}
` + checkpointKeyYAML

// writeMinimalRegistry writes the registry minimalAccessYAML names into dir: two
// organisations and a system.
func writeMinimalRegistry(t *testing.T, dir string) {
	t.Helper()
	fileWriter(t, dir)("registry.yaml", "organisations:\n"+
		"  - {ods: RR8, dsaSigned: 2024-04-01, dsptStatus: Standards Met, dsptYear: 2026/27, dpia: 2024-03-15}\n"+
		"  - {ods: RXA}\n"+
		"systems:\n  - {id: viewer, clientId: viewer-client, organisation: RR8, purpose: TREAT}\n")
}

func TestParseMinimal(t *testing.T) {
	cfg, err := Parse([]byte(minimalYAML+minimalAccessYAML), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Default()
	src := DefaultSource()
	src.ID, src.Name, src.URL = "RXA", "Example Hospitals NHS Trust", "https://127.0.0.1:8042/dicom-web"
	want.Sources = []Source{src}
	idp := DefaultTokenIssuer()
	idp.Issuer, idp.JWKSURL, idp.Audiences, idp.Profile = "https://idp.example.nhs.uk", "https://idp.example.nhs.uk/jwks", []string{"nirproxy"}, "iua"
	want.Authentication.Issuers = []TokenIssuer{idp}
	want.Onboarding.RegistryFile = "registry.yaml"
	want.Audit.SpoolDir = "audit"
	want.Audit.PARS.URL, want.Audit.PARS.Observer = "https://pars.example.nhs.uk/FHIR/R4", "200000001234"
	want.Audit.CheckpointKey = testCheckpointKey
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse(minimal) =\n%+v\nwant\n%+v", cfg, want)
	}
	if ps := cfg.Validate(); len(ps) != 0 {
		t.Errorf("Validate(minimal) = %v, want no problems", ps)
	}
	// The documented defaults.
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Listen, "127.0.0.1:8080"},
		{"requestTimeout", cfg.RequestTimeout.Std(), 30 * time.Second},
		{"clientWriteTimeout", cfg.ClientWriteTimeout.Std(), 60 * time.Second},
		{"cors.maxAge", cfg.CORS.MaxAge.Std(), 10 * time.Minute},
		{"patientIdentifierIssuer", cfg.PatientIdentifierIssuer, "2.16.840.1.113883.2.1.4.1"},
		{"search.maxResultsPerSource", cfg.Search.MaxResultsPerSource, 1000},
		{"search.defaultLimit", cfg.Search.DefaultLimit, 0},
		{"search.maxLimit", cfg.Search.MaxLimit, 1000},
		{"search.maxQueryLength", cfg.Search.MaxQueryLength, 8192},
		{"search.maxMatchingKeys", cfg.Search.MaxMatchingKeys, 32},
		{"search.maxIncludeFields", cfg.Search.MaxIncludeFields, 128},
		{"search.maxValuesPerKey", cfg.Search.MaxValuesPerKey, 100},
		{"locator.ttl", cfg.Locator.TTL.Std(), 10 * time.Minute},
		{"retryAfter", cfg.RetryAfter.Std(), 30 * time.Second},
		{"bulkdataLinkTTL", cfg.BulkdataLinkTTL.Std(), time.Hour},
		{"maxFrames", cfg.MaxFrames, 1000},
		{"thumbnailViewport", cfg.ThumbnailViewport, "128,128"},
		{"logging.level", cfg.Logging.Level, "info"},
		{"logging.format", cfg.Logging.Format, "json"},
		{"cache.enabled", cfg.Cache.Enabled, true},
		{"cache.memoryMaxBytes", cfg.Cache.MemoryMaxBytes, 64 << 20},
		{"cache.maxRetention", cfg.Cache.MaxRetention.Std(), 24 * time.Hour},
		{"cache.serveStale", cfg.Cache.ServeStale, true},
		{"cache.keySecret", cfg.Cache.KeySecret, Secret("")},
		{"cache.encryptionKeys", len(cfg.Cache.EncryptionKeys), 0},
		{"cache.search", cfg.Cache.Search, Freshness{Fresh: Duration(30 * time.Second), Stale: Duration(15 * time.Minute)}},
		{"cache.metadata", cfg.Cache.Metadata, Freshness{Fresh: Duration(5 * time.Minute), Stale: Duration(time.Hour)}},
		{"cache.rendered", cfg.Cache.Rendered, Rendered{Fresh: Duration(time.Hour), Stale: Duration(time.Hour), MaxBytes: 2097152}},
		{"cache.redis.addrs", len(cfg.Cache.Redis.Addrs), 0},
		{"cache.redis.db", cfg.Cache.Redis.DB, 0},
		{"cache.redis.tls", cfg.Cache.Redis.TLS, false},
		{"cache.redis.opTimeout", cfg.Cache.Redis.OpTimeout.Std(), 250 * time.Millisecond},
		{"cache.redis.dialTimeout", cfg.Cache.Redis.DialTimeout.Std(), 200 * time.Millisecond},
		{"cache.redis.readTimeout", cfg.Cache.Redis.ReadTimeout.Std(), 200 * time.Millisecond},
		{"cache.redis.writeTimeout", cfg.Cache.Redis.WriteTimeout.Std(), 200 * time.Millisecond},
		{"cache.redis.poolSize", cfg.Cache.Redis.PoolSize, 0},
		{"cache.redis.breakerFailures", cfg.Cache.Redis.BreakerFailures, 5},
		{"cache.redis.breakerCooldown", cfg.Cache.Redis.BreakerCooldown.Std(), 5 * time.Second},
		{"cache is in process", cfg.Cache.RedisEnabled(), false},
		{"sources[0].priority", cfg.Sources[0].Priority, 100},
		{"sources[0].timeout", cfg.Sources[0].Timeout.Std(), 10 * time.Second},
		{"sources[0].idleTimeout", cfg.Sources[0].IdleTimeout.Std(), 30 * time.Second},
		{"sources[0].retries", cfg.Sources[0].Retries, 1},
		{"sources[0].retryWaitMin", cfg.Sources[0].RetryWaitMin.Std(), 50 * time.Millisecond},
		{"sources[0].retryWaitMax", cfg.Sources[0].RetryWaitMax.Std(), time.Second},
		{"sources[0].maxConcurrent", cfg.Sources[0].MaxConcurrent, 32},
		{"sources[0].maxConnections", cfg.Sources[0].MaxConnections, 64},
		{"sources[0].required", cfg.Sources[0].Required, false},
		{"sources[0].auth.type", cfg.Sources[0].Auth.Type, AuthNone},
		{"sources[0].patientId.attribute", cfg.Sources[0].PatientID.Attribute, AttributePatientID},
		{"sources[0].breaker.window", cfg.Sources[0].Breaker.Window.Std(), 60 * time.Second},
		{"sources[0].breaker.minRequests", cfg.Sources[0].Breaker.MinRequests, 20},
		{"sources[0].breaker.failureRatio", cfg.Sources[0].Breaker.FailureRatio, 0.5},
		{"sources[0].breaker.consecutiveUnreachable", cfg.Sources[0].Breaker.ConsecutiveUnreachable, 5},
		{"sources[0].breaker.openFor", cfg.Sources[0].Breaker.OpenFor.Std(), 30 * time.Second},
		{"auth.tokenCacheTTL", cfg.Authentication.CacheTTL.Std(), 5 * time.Minute},
		{"auth.tokenCacheSize", cfg.Authentication.CacheSize, 10000},
		{"auth.httpTimeout", cfg.Authentication.HTTPTimeout.Std(), 5 * time.Second},
		{"onboarding.reloadEvery", cfg.Onboarding.ReloadEvery.Std(), 30 * time.Second},
		{"authorization.roleActions", fmt.Sprint(cfg.Authorization.RoleActions),
			"map[R0001:[readAudit] R8000:[search retrieveImages retrieveReports] R8001:[search retrieveImages retrieveReports] R8003:[search retrieveImages retrieveReports]]"},
		{"authorization.acceptRequestPurpose", cfg.Authorization.AcceptRequestPurpose, false},
		{"authorization.dsptYearStart", cfg.Authorization.DSPTYearStart, "07-01"},
		{"authorization.dsptTimeZone", cfg.Authorization.DSPTTimeZone, "UTC"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// The documented defaults of each entry of auth.issuers.
	iss := DefaultTokenIssuer()
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"auth.issuers[].algorithms", fmt.Sprint(iss.Algorithms), "[RS256]"},
		{"auth.issuers[].clockSkew", iss.ClockSkew.Std(), 60 * time.Second},
		{"auth.issuers[].keyRefresh", iss.KeyRefresh.Std(), 5 * time.Minute},
		{"auth.issuers[].keyMaxAge", iss.KeyMaxAge.Std(), time.Hour},
		{"auth.issuers[].discovery", iss.Discovery, false},
		{"auth.issuers[].cis2.minIdAssuranceLevel", iss.CIS2.MinIDAssuranceLevel, 3},
		{"auth.issuers[].cis2.acrPrefix", iss.CIS2.ACRPrefix, "AAL3_"},
		{"auth.issuers[].cis2.userinfoURL", iss.CIS2.UserinfoURL, ""},
		{"auth.issuers[].claims", iss.Claims, ClaimNames{}},
		{"auth.issuers[].profile", iss.Profile, ""},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadExample(t *testing.T) {
	cfg, err := Load(examplePath, nil)
	if err != nil {
		t.Fatalf("Load(%s): %v", examplePath, err)
	}
	if ps := cfg.Validate(); len(ps) != 0 {
		t.Fatalf("Validate(example) = %v, want no problems", ps)
	}
	if got, want := cfg.SourceIDs(), []string{"RXA", "RXB", "RXC"}; !reflect.DeepEqual(got, want) {
		t.Errorf("source ids = %v, want %v", got, want)
	}
	rxb, rxc := cfg.Sources[1], cfg.Sources[2]
	if rxb.Priority != 50 || rxb.Auth.Type != AuthBasic || rxb.Auth.Username != "nirproxy" || rxb.Timeout.Std() != 10*time.Second {
		t.Errorf("RXB = %+v, want priority 50, basic auth as nirproxy, default timeout", rxb)
	}
	if rxc.PatientID != (PatientID{Attribute: AttributeOtherPatientIDsSequence, Issuer: "NHS"}) || rxc.Auth.Type != AuthBearer || rxc.Priority != 100 {
		t.Errorf("RXC = %+v, want bearer auth, OtherPatientIDsSequence/NHS, default priority", rxc)
	}
	if got, want := cfg.CORS.AllowedOrigins, []string{"http://localhost:3000"}; !reflect.DeepEqual(got, want) {
		t.Errorf("cors.allowedOrigins = %v, want %v", got, want)
	}
	// The example's cache section shows the defaults, written out (its lists as []).
	want := DefaultCache()
	want.EncryptionKeys, want.Redis.Addrs = []Secret{}, []string{}
	if !reflect.DeepEqual(cfg.Cache, want) {
		t.Errorf("cache =\n%+v\nwant the defaults\n%+v", cfg.Cache, want)
	}
	// Its access sections show the defaults too, with a CIS2 issuer and one of profile claims,
	// and the example registry beside it.
	wantAccess := Default()
	if a, w := cfg.Authentication, wantAccess.Authentication; a.CacheTTL != w.CacheTTL || a.CacheSize != w.CacheSize || a.HTTPTimeout != w.HTTPTimeout {
		t.Errorf("auth = %+v, want the defaults %+v", a, w)
	}
	wantAccess.Onboarding.RegistryFile = filepath.Join(filepath.Dir(examplePath), "registry.example.yaml")
	if cfg.Onboarding != wantAccess.Onboarding || !reflect.DeepEqual(cfg.Authorization, wantAccess.Authorization) {
		t.Errorf("onboarding, authorization = %+v, %+v; want the defaults %+v, %+v", cfg.Onboarding, cfg.Authorization, wantAccess.Onboarding, wantAccess.Authorization)
	}
	if iss := cfg.Authentication.Issuers; len(iss) != 2 || iss[0].Profile != "cis2" || !strings.Contains(iss[0].Issuer, ":443/") || iss[1].Profile != "claims" {
		t.Errorf("auth.issuers = %+v, want a CIS2 issuer with its port, then one of profile claims", iss)
	}
}

// fullCacheYAML sets every key of the cache section to something other than its default.
const fullCacheYAML = `
cache:
  enabled: false
  memoryMaxBytes: 1048576
  maxRetention: 2h
  serveStale: false
  keySecret: key-secret-of-at-least-32-bytes-xxxxxxxx
  keySecretFile: ""
  encryptionKeys:
    - AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=
    - AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=
  encryptionKeysFile: ""
  search: {fresh: 10s, stale: 0s}
  metadata:
    fresh: 0s
    stale: 30m
  rendered: {fresh: 5m, stale: 10m, maxBytes: 65536}
  redis:
    addrs: [redis-0:6379, redis-1:6379, redis-2:6379]
    masterName: mymaster
    username: nirproxy
    password: redis-password
    sentinelPassword: sentinel-password
    db: 2
    tls: true
    opTimeout: 100ms
    dialTimeout: 1s
    readTimeout: 300ms
    writeTimeout: 400ms
    poolSize: 20
    breakerFailures: 3
    breakerCooldown: 10s
`

func TestParseCache(t *testing.T) {
	want := Cache{
		Enabled:        false,
		MemoryMaxBytes: 1 << 20,
		MaxRetention:   Duration(2 * time.Hour),
		ServeStale:     false,
		KeySecret:      "key-secret-of-at-least-32-bytes-xxxxxxxx",
		EncryptionKeys: []Secret{"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="},
		Search:         Freshness{Fresh: Duration(10 * time.Second)},
		Metadata:       Freshness{Stale: Duration(30 * time.Minute)},
		Rendered:       Rendered{Fresh: Duration(5 * time.Minute), Stale: Duration(10 * time.Minute), MaxBytes: 65536},
		Redis: Redis{
			Addrs:            []string{"redis-0:6379", "redis-1:6379", "redis-2:6379"},
			MasterName:       "mymaster",
			Username:         "nirproxy",
			Password:         "redis-password",
			SentinelPassword: "sentinel-password",
			DB:               2,
			TLS:              true,
			OpTimeout:        Duration(100 * time.Millisecond),
			DialTimeout:      Duration(time.Second),
			ReadTimeout:      Duration(300 * time.Millisecond),
			WriteTimeout:     Duration(400 * time.Millisecond),
			PoolSize:         20,
			BreakerFailures:  3,
			BreakerCooldown:  Duration(10 * time.Second),
		},
	}
	tests := []struct {
		name string
		yaml string
		want Cache
	}{
		{"every key", fullCacheYAML, want},
		{"no section keeps the defaults", "listen: :8080\n", DefaultCache()},
		{"a partial section keeps its other defaults", "cache:\n  search: {fresh: 1m}\n  redis: {addrs: [redis:6379]}\n", func() Cache {
			c := DefaultCache()
			c.Search.Fresh = Duration(time.Minute)
			c.Redis.Addrs = []string{"redis:6379"}
			return c
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), nil)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(c.Cache, tc.want) {
				t.Errorf("cache =\n%#v\nwant\n%#v", c.Cache, tc.want)
			}
		})
	}
}

// TestExampleDocumentsEveryKey checks that config.example.yaml names every key of Config (a list's
// keys in at least one of its entries), so a new key cannot go undocumented.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	inFile := map[string]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := joinPath(path, n.Content[i].Value)
				inFile[p] = true
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, path+"[]")
			}
		}
	}
	walk(&root, "")
	var inStruct []string
	var keys func(t reflect.Type, path string)
	keys = func(t reflect.Type, path string) {
		for i := range t.NumField() {
			k := yamlKey(t.Field(i))
			if k == "" {
				continue
			}
			p := joinPath(path, k)
			inStruct = append(inStruct, p)
			ft := t.Field(i).Type
			switch {
			case ft == reflect.TypeFor[Duration]():
			case ft.Kind() == reflect.Struct:
				keys(ft, p)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				keys(ft.Elem(), p+"[]")
			}
		}
	}
	keys(reflect.TypeFor[Config](), "")
	sort.Strings(inStruct)
	for _, k := range inStruct {
		if !inFile[k] {
			t.Errorf("config.example.yaml does not document key %s", k)
		}
	}
}

func TestParseKeepsDefaults(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		want  []Problem
		check func(t *testing.T, c Config)
	}{
		{
			name: "empty file gives the defaults",
			yaml: "",
			check: func(t *testing.T, c Config) {
				if !reflect.DeepEqual(c, Default()) {
					t.Errorf("got %+v, want Default()", c)
				}
			},
		},
		{
			name: "a partial section keeps its other defaults",
			yaml: "search:\n  maxLimit: 50\n",
			check: func(t *testing.T, c Config) {
				if c.Search != (Search{MaxResultsPerSource: 1000, DefaultLimit: 0, MaxLimit: 50, MaxQueryLength: 8192, MaxMatchingKeys: 32, MaxIncludeFields: 128, MaxValuesPerKey: 100}) {
					t.Errorf("search = %+v", c.Search)
				}
			},
		},
		{
			name: "a key without value keeps its default",
			yaml: "requestTimeout:\nlogging:\n  level: ~\n",
			check: func(t *testing.T, c Config) {
				if c.RequestTimeout.Std() != 30*time.Second || c.Logging.Level != "info" {
					t.Errorf("requestTimeout = %v, logging.level = %q", c.RequestTimeout, c.Logging.Level)
				}
			},
		},
		{
			name: "a partial source keeps the source defaults",
			yaml: "sources:\n  - id: RXA\n    auth: {type: basic, username: u, password: p}\n    priority: 0\n",
			check: func(t *testing.T, c Config) {
				s := c.Sources[0]
				if s.PatientID.Attribute != AttributePatientID || s.Timeout.Std() != 10*time.Second || s.Priority != 0 {
					t.Errorf("source = %+v, want default patientId and timeout, priority 0 as written", s)
				}
			},
		},
		{
			name: "anchors and merge keys",
			yaml: "sources:\n  - {id: RXA, auth: &auth {type: bearer, token: t}}\n" +
				"  - id: RXB\n    auth:\n      <<: *auth\n      token: u\n  - {id: RXC, auth: *auth}\n",
			check: func(t *testing.T, c Config) {
				a, b, cc := c.Sources[0].Auth, c.Sources[1].Auth, c.Sources[2].Auth
				if a.Token != "t" || b.Token != "u" || b.Type != AuthBearer || cc != a {
					t.Errorf("sources' auth = %+v, %+v, %+v", a, b, cc)
				}
			},
		},
		{
			name: "an anchor under an unknown key is still an unknown key",
			yaml: "x-auth: &auth {type: bearer}\nsources:\n  - {id: RXA, auth: *auth}\n",
			want: []Problem{{Path: "x-auth", Message: "unknown key"}},
			check: func(t *testing.T, c Config) {
				if c.Sources[0].Auth.Type != AuthBearer {
					t.Errorf("auth = %+v", c.Sources[0].Auth)
				}
			},
		},
		{
			name: "scalar values are converted by the field's type",
			yaml: "search: {maxLimit: \"20\"}\nsources:\n  - {id: RXA, required: true, timeout: 1m30s, name: 123}\n",
			check: func(t *testing.T, c Config) {
				s := c.Sources[0]
				if c.Search.MaxLimit != 20 || !s.Required || s.Timeout.Std() != 90*time.Second || s.Name != "123" {
					t.Errorf("got maxLimit %d, source %+v", c.Search.MaxLimit, s)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), nil)
			assertProblems(t, err, tc.want)
			tc.check(t, c)
		})
	}
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []Problem // Message is a substring of the problem's message
	}{
		{"unknown top-level key", "listen: :8080\npublicUrl: http://x\n",
			[]Problem{{"publicUrl", "unknown key (line 2); did you mean publicURL?"}}},
		{"unknown nested key", "search:\n  maxlimit: 3\n",
			[]Problem{{"search.maxlimit", "did you mean maxLimit?"}}},
		{"unknown key in a source", "sources:\n  - id: RXA\n  - id: RXB\n    auth:\n      tokn: x\n",
			[]Problem{{"sources[1].auth.tokn", "did you mean token? The keys here are"}}},
		{"unknown key far from any", "frobnicate: 1\n",
			[]Problem{{"frobnicate", "the keys here are adminListen, audit, auth, authorization, bulkdataLinkTTL, cache, clientWriteTimeout, cors, incidents, listen,"}}},
		{"every unknown key at once", "a: 1\nb: 2\n",
			[]Problem{{"a", "unknown key"}, {"b", "unknown key"}}},
		{"key given twice", "listen: :1\nlisten: :2\n",
			[]Problem{{"listen", "given twice (lines 1 and 2)"}}},
		{"bad duration", "requestTimeout: 10\n",
			[]Problem{{"requestTimeout", `"10" is not a duration; write it like 10s`}}},
		{"bad integer", "search:\n  maxLimit: lots\n",
			[]Problem{{"search.maxLimit", `"lots" is not a whole number`}}},
		{"bad boolean", "sources:\n  - id: RXA\n    required: maybe\n",
			[]Problem{{"sources[0].required", `"maybe" is not a boolean`}}},
		{"list where a value belongs", "listen: [a, b]\n",
			[]Problem{{"listen", "expected a single value, found a list"}}},
		{"value where a list belongs", "sources: RXA\n",
			[]Problem{{"sources", "expected a list"}}},
		{"value where a mapping belongs", "search: 3\n",
			[]Problem{{"search", "expected keys and values"}}},
		{"sources as a mapping", "sources:\n  RXA: {url: x}\n",
			[]Problem{{"sources", "expected a list"}}},
		{"unknown key in the cache's redis", "cache:\n  redis:\n    adrs: [redis:6379]\n",
			[]Problem{{"cache.redis.adrs", "did you mean addrs?"}}},
		{"encryption keys as one value", "cache:\n  encryptionKeys: AQEB\n",
			[]Problem{{"cache.encryptionKeys", "expected a list"}}},
		{"freshness as one value", "cache:\n  search: 30s\n",
			[]Problem{{"cache.search", "expected keys and values"}}},
		{"not YAML", "listen: [\n",
			[]Problem{{"", "the file is not valid YAML"}}},
		{"not a mapping", "just text\n",
			[]Problem{{"", "expected keys and values"}}},
		{"the retired breaker.failures", "sources:\n  - id: RXA\n    breaker:\n      failures: 5\n",
			[]Problem{{"sources[0].breaker.failures", "is no longer read: a breaker no longer opens after failures in a row, which one client's queries could cause; it opens when at least failureRatio"}}},
		{"a ratio that is no number", "sources:\n  - id: RXA\n    breaker:\n      failureRatio: half\n",
			[]Problem{{"sources[0].breaker.failureRatio", `"half" is not a finite number; write it like 0.5 (line 4)`}}},
		{"a ratio that is NaN", "sources:\n  - id: RXA\n    breaker:\n      failureRatio: .nan\n",
			[]Problem{{"sources[0].breaker.failureRatio", `".nan" is not a finite number`}}},
		{"a ratio that is infinite", "sources:\n  - id: RXA\n    breaker:\n      failureRatio: Inf\n",
			[]Problem{{"sources[0].breaker.failureRatio", `"Inf" is not a finite number`}}},

		// the access control sections
		{"unknown key in an issuer", "auth:\n  issuers:\n    - jwksUrl: https://x\n",
			[]Problem{{"auth.issuers[0].jwksUrl", "unknown key (line 3); did you mean jwksURL?"}}},
		{"unknown key in an issuer's claims", "auth:\n  issuers:\n    - claims: {subjet: sub}\n",
			[]Problem{{"auth.issuers[0].claims.subjet", "did you mean subject?"}}},
		{"unknown key in an issuer's cis2", "auth:\n  issuers:\n    - cis2: {minIDAssuranceLevel: 3}\n",
			[]Problem{{"auth.issuers[0].cis2.minIDAssuranceLevel", "did you mean minIdAssuranceLevel?"}}},
		{"unknown key in a section", "onboarding:\n  registryfile: x.yaml\nauthorization:\n  dsptYear: 07-01\n", []Problem{
			{"onboarding.registryfile", "did you mean registryFile?"},
			{"authorization.dsptYear", "the keys here are acceptRequestPurpose, dsptTimeZone, dsptYearStart, roleActions"},
		}},
		{"issuers as a mapping", "auth:\n  issuers:\n    cis2: {issuer: https://x}\n",
			[]Problem{{"auth.issuers", "expected a list"}}},
		{"an issuer's duration", "auth:\n  issuers:\n    - clockSkew: 60\n",
			[]Problem{{"auth.issuers[0].clockSkew", `"60" is not a duration`}}},
		{"an issuer's assurance level", "auth:\n  issuers:\n    - cis2: {minIdAssuranceLevel: high}\n",
			[]Problem{{"auth.issuers[0].cis2.minIdAssuranceLevel", `"high" is not a whole number`}}},
		{"roles as a list", "authorization:\n  roleActions: [R8000]\n",
			[]Problem{{"authorization.roleActions", "expected keys and values (a mapping), found a list (line 2)"}}},
		{"a role given twice", "authorization:\n  roleActions:\n    R8000: [search]\n    R8000: [operate]\n",
			[]Problem{{"authorization.roleActions.R8000", "given twice (lines 3 and 4); keep one"}}},
		{"a role's permissions as one value", "authorization:\n  roleActions:\n    R8000: search\n",
			[]Problem{{"authorization.roleActions.R8000", "expected a list"}}},
		{"a role's permission as a list", "authorization:\n  roleActions:\n    R8000: [[search]]\n",
			[]Problem{{"authorization.roleActions.R8000[0]", "expected a single value, found a list"}}},
		{"a role that is a list", "authorization:\n  roleActions:\n    [R8000]: [search]\n",
			[]Problem{{"authorization.roleActions", "a key is a list (line 3); write each key as a single value"}}},
		{"a merge that is no mapping", "authorization:\n  roleActions:\n    <<: R8000\n",
			[]Problem{{"authorization.roleActions", "expected keys and values (a mapping), found a single value"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), nil)
			assertProblems(t, err, tc.want)
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want an error wrapping os.ErrNotExist", err)
	}
	var ps Problems
	if errors.As(err, &ps) {
		t.Errorf("Load(missing) returned Problems %v, want a plain error", ps)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := fileWriter(t, dir)
	key := strings.Repeat("k", 40)
	write("key", key+"\n")
	write("password", "s3cret-password\r\n")
	tokenPath := write("token", "s3cret-token")
	write("empty", "\n")
	cacheSecret := "cache-" + strings.Repeat("c", 40)
	write("cache-key", cacheSecret+"\n")
	keyA, keyB := strings.Repeat("A", 43)+"=", strings.Repeat("B", 43)+"="
	write("enc-keys", "# the key that encrypts, since 2026-11\n"+keyA+"\r\n\n   \n  # retired after 2026-12-01\n  "+keyB+"  \n")
	write("no-keys", "# no key yet\n\n")
	write("redis-password", "s3cret-redis\n")
	write("sentinel-password", "s3cret-sentinel\n")

	tests := []struct {
		name    string
		yaml    string
		environ []string
		check   func(t *testing.T, c Config)
		want    []Problem
	}{
		{
			name: "relative and absolute files",
			yaml: "signingKeyFile: key\nsources:\n" +
				"  - {id: RXA, auth: {type: basic, username: u, passwordFile: password}}\n" +
				"  - {id: RXB, auth: {type: bearer, tokenFile: " + tokenPath + "}}\n",
			check: func(t *testing.T, c Config) {
				if string(c.SigningKey) != key {
					t.Errorf("signingKey not read from file (len %d)", len(c.SigningKey))
				}
				if c.Sources[0].Auth.Password != "s3cret-password" {
					t.Errorf("password not read from file, or newline kept")
				}
				if c.Sources[1].Auth.Token != "s3cret-token" {
					t.Errorf("token not read from file")
				}
				if c.SigningKeyFile != "key" {
					t.Errorf("signingKeyFile = %q, want it kept as written", c.SigningKeyFile)
				}
			},
		},
		{
			name:    "file named by an environment override",
			yaml:    "sources:\n  - {id: RXA, auth: {type: bearer}}\n",
			environ: []string{"NIRPROXY_SOURCES_RXA_AUTH_TOKEN_FILE=token"},
			check: func(t *testing.T, c Config) {
				if c.Sources[0].Auth.Token != "s3cret-token" {
					t.Errorf("token not read from the file named by the environment")
				}
			},
		},
		{
			name: "secret given twice",
			yaml: "signingKey: " + key + "\nsigningKeyFile: key\n",
			want: []Problem{{"signingKey", "given both directly and by signingKeyFile"}},
		},
		{
			name:    "secret given twice, once by the environment",
			yaml:    "sources:\n  - {id: RXA, auth: {type: basic, username: u, passwordFile: password}}\n",
			environ: []string{"NIRPROXY_SOURCES_RXA_AUTH_PASSWORD=other"},
			want:    []Problem{{"sources[0].auth.password", "given both directly and by sources[0].auth.passwordFile"}},
		},
		{
			name: "missing file",
			yaml: "sources:\n  - {id: RXA, auth: {type: bearer, tokenFile: nope}}\n",
			want: []Problem{{"sources[0].auth.tokenFile", "cannot read " + filepath.Join(dir, "nope") + ": no such file"}},
		},
		{
			name: "empty file",
			yaml: "signingKeyFile: empty\n",
			want: []Problem{{"signingKeyFile", "is empty"}},
		},
		{
			name: "cache secrets",
			yaml: "cache:\n  keySecretFile: cache-key\n  encryptionKeysFile: enc-keys\n" +
				"  redis: {addrs: [redis:6379], passwordFile: redis-password, sentinelPasswordFile: sentinel-password}\n",
			check: func(t *testing.T, c Config) {
				if string(c.Cache.KeySecret) != cacheSecret {
					t.Errorf("cache.keySecret not read from file (len %d)", len(c.Cache.KeySecret))
				}
				if want := []Secret{Secret(keyA), Secret(keyB)}; !reflect.DeepEqual(c.Cache.EncryptionKeys, want) {
					t.Errorf("cache.encryptionKeys = %d keys, not the file's two key lines in order", len(c.Cache.EncryptionKeys))
				}
				if c.Cache.Redis.Password != "s3cret-redis" || c.Cache.Redis.SentinelPassword != "s3cret-sentinel" {
					t.Errorf("cache.redis passwords not read from their files")
				}
				for _, p := range c.Validate() {
					if strings.HasPrefix(p.Path, "cache.") {
						t.Errorf("Validate: %s, want no problem with the cache", p)
					}
				}
			},
		},
		{
			name:    "encryption keys file named by an environment override",
			yaml:    "cache: {redis: {addrs: [redis:6379]}}\n",
			environ: []string{"NIRPROXY_CACHE_ENCRYPTION_KEYS_FILE=enc-keys", "NIRPROXY_CACHE_KEY_SECRET_FILE=cache-key"},
			check: func(t *testing.T, c Config) {
				if len(c.Cache.EncryptionKeys) != 2 || string(c.Cache.KeySecret) != cacheSecret {
					t.Errorf("cache keys not read from the files named by the environment")
				}
			},
		},
		{
			name: "encryption keys given twice",
			yaml: "cache:\n  encryptionKeys: [" + keyA + "]\n  encryptionKeysFile: enc-keys\n",
			want: []Problem{{"cache.encryptionKeys", "given both directly and by cache.encryptionKeysFile; keep one of them"}},
		},
		{
			name:    "encryption keys given twice, once by the environment",
			yaml:    "cache:\n  encryptionKeysFile: enc-keys\n",
			environ: []string{"NIRPROXY_CACHE_ENCRYPTION_KEYS=" + keyB},
			want:    []Problem{{"cache.encryptionKeys", "given both directly and by cache.encryptionKeysFile"}},
		},
		{
			name: "key secret given twice",
			yaml: "cache:\n  keySecret: other\n  keySecretFile: cache-key\n",
			want: []Problem{{"cache.keySecret", "given both directly and by cache.keySecretFile"}},
		},
		{
			name:    "redis passwords given twice",
			yaml:    "cache:\n  redis: {passwordFile: redis-password, sentinelPassword: other, sentinelPasswordFile: sentinel-password}\n",
			environ: []string{"NIRPROXY_CACHE_REDIS_PASSWORD=other"},
			want: []Problem{
				{"cache.redis.password", "given both directly and by cache.redis.passwordFile"},
				{"cache.redis.sentinelPassword", "given both directly and by cache.redis.sentinelPasswordFile"},
			},
		},
		{
			name: "encryption keys file without a key",
			yaml: "cache: {encryptionKeysFile: no-keys}\n",
			want: []Problem{{"cache.encryptionKeysFile", filepath.Join(dir, "no-keys") + " holds no key; put one key on each line"}},
		},
		{
			name: "missing encryption keys file",
			yaml: "cache: {encryptionKeysFile: nope}\n",
			want: []Problem{{"cache.encryptionKeysFile", "cannot read " + filepath.Join(dir, "nope") + ": no such file"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path, tc.environ)
			assertProblems(t, err, tc.want)
			if tc.check != nil {
				tc.check(t, c)
			}
			if err != nil {
				for _, secret := range []string{key, "s3cret", "other", cacheSecret, keyA, keyB} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("problem %q contains a secret", err)
					}
				}
			}
		})
	}
}

// fileWriter is a function that writes a file into dir and returns its path.
func fileWriter(t *testing.T, dir string) func(name, content string) string {
	return func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// assertProblems checks that err is exactly the problems want, in order; each wanted message is a
// substring of the one reported.
func assertProblems(t *testing.T, err error, want []Problem) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		return
	}
	var got Problems
	if !errors.As(err, &got) {
		t.Fatalf("got error %v, want Problems %v", err, want)
	}
	matchProblems(t, got, want)
}

// matchProblems checks got against want: the same paths in order, each wanted message a substring.
func matchProblems(t *testing.T, got, want []Problem) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d problems:\n%s\nwant %d: %v", len(got), Problems(got).Error(), len(want), want)
	}
	for i := range want {
		if got[i].Path != want[i].Path || !strings.Contains(got[i].Message, want[i].Message) {
			t.Errorf("problem %d = %q, want path %q and a message containing %q", i, got[i], want[i].Path, want[i].Message)
		}
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzLoadConfig feeds the loader arbitrary YAML and environment overrides (env holds
// NAME=VALUE lines). It checks that loading never panics; that every problem it or Validate
// reports names a key (all but the file's own syntax); and that a configuration that loads and
// validates says the same when written out and read again, so no default overwrites a value
// given, and what the loader writes it also reads.
func FuzzLoadConfig(f *testing.F) {
	for _, name := range []string{"../../../config.example.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "")
	}
	f.Add([]byte(minimalYAML), "NIRPROXY_SOURCES_RXA_BREAKER_FAILURE_RATIO=0.25\nNIRPROXY_SEARCH_MAX_LIMIT=10")
	f.Add([]byte(minimalYAML), "NIRPROXY_SOURCES_RXA_BREAKER_FAILURES=5")
	f.Add([]byte(minimalYAML+"    insecure: true\n    tls: {serverName: pacs.internal}\n"), "NIRPROXY_SOURCES_RXA_TLS_CA_FILE=ca.pem")
	f.Add([]byte("sources:\n  - id: RXA\n    breaker: {failureRatio: .nan, window: 1ms}\n"), "")
	f.Add([]byte(minimalYAML+accessYAML), "NIRPROXY_AUTHORIZATION_DSPT_TIME_ZONE=Europe/London")
	f.Fuzz(func(t *testing.T, data []byte, env string) {
		var environ []string
		for line := range strings.Lines(env) {
			environ = append(environ, strings.TrimRight(line, "\n"))
		}
		// Secret files are read relative to an empty directory: no file the fuzzer names exists.
		dir := t.TempDir()
		cfg, err := parse(data, environ, dir)
		if err != nil {
			ps, ok := err.(Problems)
			if !ok {
				t.Fatalf("parse returned %T, not Problems: %v", err, err)
			}
			for _, p := range ps {
				if p.Path == "" && !strings.HasPrefix(p.Message, "the file is not valid YAML") && !strings.HasPrefix(p.Message, "expected keys and values") {
					t.Fatalf("problem names no key: %q", p.Message)
				}
			}
			return
		}
		problems := cfg.Validate()
		for _, p := range problems {
			if p.Path == "" {
				t.Fatalf("Validate problem names no key: %q", p.Message)
			}
		}
		if len(problems) > 0 {
			return
		}
		first := writeOut(t, cfg)
		again, err := parse(first, nil, filepath.Join(dir, "none"))
		if err != nil {
			t.Fatalf("a valid configuration, written out, does not load again: %v\n%s", err, first)
		}
		if second := writeOut(t, again); string(second) != string(first) {
			t.Fatalf("a valid configuration changed when written out and read again:\n%s\nthen\n%s", first, second)
		}
	})
}

// writeOut is cfg as YAML, its secrets redacted and its *File keys dropped (their secrets are
// already read), so that reading it again reads no file.
func writeOut(t *testing.T, cfg Config) []byte {
	t.Helper()
	c := redacted(cfg)
	c.SigningKeyFile, c.Cache.KeySecretFile, c.Cache.EncryptionKeysFile = "", "", ""
	c.Cache.Redis.PasswordFile, c.Cache.Redis.SentinelPasswordFile = "", ""
	for i := range c.Sources {
		c.Sources[i].Auth.PasswordFile, c.Sources[i].Auth.TokenFile = "", ""
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatalf("write out a valid configuration: %v", err)
	}
	return out
}

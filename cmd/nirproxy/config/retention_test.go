package config

import (
	"strings"
	"testing"
	"time"
)

// testCheckpointKey is an Ed25519 private key in PEM (PKCS#8), for tests only.
const testCheckpointKey = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIK7yY9Xo/w5g3eGhgqkjgQYvHHZIJQ7WvOTdueEI728z
-----END PRIVATE KEY-----
`

// checkpointKeyYAML is audit.checkpointKey, testCheckpointKey, in YAML under audit.
const checkpointKeyYAML = `  checkpointKey: |
    -----BEGIN PRIVATE KEY-----
    MC4CAQAwBQYDK2VwBCIEIK7yY9Xo/w5g3eGhgqkjgQYvHHZIJQ7WvOTdueEI728z
    -----END PRIVATE KEY-----
`

func TestValidateRetention(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   []Problem
	}{
		{"the default, with a key", func(c *Config) {}, nil},
		{"off, without a key", func(c *Config) { c.Audit.Retention, c.Audit.CheckpointKey = 0, "" }, nil},
		{"on without a sink: nothing deleted, no key needed", func(c *Config) { c.Audit.PARS.URL, c.Audit.CheckpointKey = "", "" }, nil},
		{"on with a sink, without a key", func(c *Config) { c.Audit.CheckpointKey = "" },
			[]Problem{{"audit.checkpointKey", "is empty, yet audit.retention (720h0m0s) deletes records every sink has"}}},
		{"on with ATNA only, without a key", func(c *Config) {
			c.Audit.PARS.URL, c.Audit.CheckpointKey = "", ""
			c.Audit.ATNA.Address, c.Audit.ATNA.SourceID = "atna.example.nhs.uk:6514", "NIRPROXY"
		}, []Problem{{"audit.checkpointKey", "is empty, yet audit.retention"}}},
		{"a key that is not Ed25519 PEM", func(c *Config) { c.Audit.CheckpointKey = "secret" },
			[]Problem{{"audit.checkpointKey", "cannot be used: read the checkpoint key: not a PEM block"}}},
		{"too short", func(c *Config) { c.Audit.Retention = Duration(time.Hour) },
			[]Problem{{"audit.retention", "is 1h0m0s; use 0 to keep everything, or 24h0m0s to 87600h0m0s, like 720h (30 days)"}}},
		{"negative", func(c *Config) { c.Audit.Retention = Duration(-time.Hour) }, []Problem{{"audit.retention", "is -1h0m0s"}}},
		{"too long", func(c *Config) { c.Audit.Retention = Duration(87601 * time.Hour) }, []Problem{{"audit.retention", "is 87601h0m0s"}}},
		{"an interval too short", func(c *Config) { c.Audit.RetentionInterval = Duration(time.Second) },
			[]Problem{{"audit.retentionInterval", "is 1s; use 1m0s to audit.retention (720h0m0s), like 1h"}}},
		{"an interval longer than retention", func(c *Config) { c.Audit.RetentionInterval = Duration(1000 * time.Hour) },
			[]Problem{{"audit.retentionInterval", "is 1000h0m0s"}}},
		{"a trusted key's fingerprint", func(c *Config) {
			c.Audit.TrustedCheckpointKeys = []string{strings.Repeat("0a", 32)}
		}, nil},
		{"a trusted key that is no fingerprint", func(c *Config) {
			c.Audit.Retention, c.Audit.TrustedCheckpointKeys = 0, []string{strings.Repeat("0a", 32), "SHA256:0A"}
		}, []Problem{{"audit.trustedCheckpointKeys[1]", `is "SHA256:0A"; write a key's fingerprint as`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			withAccess(&c)
			tt.modify(&c)
			var got []Problem
			for _, p := range c.Validate() {
				if strings.HasPrefix(p.Path, "audit.") && p.Path != "audit.pars.url" {
					got = append(got, p)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("problems %v; want %v", got, tt.want)
			}
			for i, w := range tt.want {
				if got[i].Path != w.Path || !strings.Contains(got[i].Message, w.Message) {
					t.Errorf("problem %v; want %v", got[i], w)
				}
			}
		})
	}
}

func TestRetentionSettings(t *testing.T) {
	c := Default()
	if c.Audit.Retention.Std() != 30*24*time.Hour || c.Audit.RetentionInterval.Std() != time.Hour {
		t.Errorf("defaults: retention %s every %s; want 720h every 1h", c.Audit.Retention, c.Audit.RetentionInterval)
	}
	withAccess(&c)
	if got := c.Audit.SinkNames(); len(got) != 1 || got[0] != "pars" || !c.Audit.Prunes() {
		t.Errorf("SinkNames() = %v, Prunes() = %v; want [pars], true", got, c.Audit.Prunes())
	}
	c.Audit.ATNA.Address = "atna.example.nhs.uk:6514"
	if got := c.Audit.SinkNames(); len(got) != 2 || got[1] != c.ATNASink().Name {
		t.Errorf("SinkNames() = %v; want pars and atna, as the sinks name themselves", got)
	}
	if so, err := c.PARSSink(nil); err != nil || so.Name != "pars" {
		t.Errorf("PARSSink name %q, %v", so.Name, err)
	}
	key, err := c.Audit.RetentionKey()
	if err != nil || len(key) == 0 {
		t.Fatalf("RetentionKey() = %v", err)
	}
	c.Audit.PARS.URL, c.Audit.ATNA.Address = "", ""
	if c.Audit.Prunes() {
		t.Error("Prunes() with no sink: the spool holds the only copy")
	}
}

func TestRetentionKeyFromFile(t *testing.T) {
	dir := t.TempDir()
	write := fileWriter(t, dir)
	write("checkpoint-key.pem", testCheckpointKey)
	path := write("nirproxy.yaml", minimalYAML+strings.Replace(minimalAccessYAML, checkpointKeyYAML, "  checkpointKeyFile: checkpoint-key.pem\n", 1))
	writeMinimalRegistry(t, dir)
	cfg, err := LoadValid(path, nil)
	if err != nil {
		t.Fatalf("LoadValid: %v", err)
	}
	if _, err := cfg.Audit.RetentionKey(); err != nil {
		t.Errorf("the key read from checkpointKeyFile: %v", err)
	}
}

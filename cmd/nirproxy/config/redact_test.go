package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
	return c
}

func TestRedacted(t *testing.T) {
	c := secretConfig()
	r := c.Redacted()
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
	tests := []struct {
		name    string
		yaml    string // empty: no file
		environ []string
		wantOK  bool
		want    []string // the output's lines; a line holding "PATH" is matched with the file's path
	}{
		{
			name:   "minimal",
			yaml:   minimalYAML,
			wantOK: true,
			want:   []string{"PATH is valid: 1 source (RXA), listening on 127.0.0.1:8080"},
		},
		{
			name:    "several sources with an override",
			yaml:    twoSourcesYAML,
			environ: []string{"NIRPROXY_LISTEN=:9000"},
			wantOK:  true,
			want:    []string{"PATH is valid: 2 sources (RXA, RXB), listening on :9000"},
		},
		{
			name:    "every problem, from reading and validating",
			yaml:    "listen: 8080\nsorces: []\nsources:\n  - id: rxa\n    url: localhost:8042\n    auth: {type: basic, username: u, password: hunter2-secret}\n",
			environ: []string{"NIRPROXY_SOURCES_RXQ_URL=x"},
			want: []string{
				"sorces: unknown key (line 2); did you mean sources? The keys here are cors, incidents, listen, locator, logging, partialRetrieve, partialSearch, patientIdentifierIssuer, publicURL, requestTimeout, search, signingKey, signingKeyFile, sources, trustedProxies",
				"NIRPROXY_SOURCES_RXQ_URL: no entry of sources has the id RXQ; the ids are rxa",
				`listen: "8080" is not host:port; write it like 127.0.0.1:8080 (or :8080 for every interface)`,
				`sources[0].id: "rxa" is not an ODS code; use 3 to 10 upper-case letters or digits, like RXA; here write RXA`,
				"sources[0].name: is missing; write the trust's name, like Example Hospitals NHS Trust",
				`sources[0].url: "localhost:8042" is not an absolute http(s) URL; write it like http://127.0.0.1:8042/dicom-web`,
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
			want := strings.ReplaceAll(strings.Join(tc.want, "\n")+"\n", "PATH", path)
			if out.String() != want {
				t.Errorf("CheckFile printed\n%s\nwant\n%s", out.String(), want)
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

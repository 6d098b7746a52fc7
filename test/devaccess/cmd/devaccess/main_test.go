package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/nirproxy/nirproxy/test/devaccess"
)

// TestRun checks what a developer is given: the fragment naming the running issuer and the
// registry, an export line for every persona, and "ready" last; and that run ends when
// interrupted.
func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "access")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, dir, time.Hour, pw)
		pw.Close()
	}()
	var issuer string
	exports := map[string]bool{}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "issuer "); ok {
			issuer, _, _ = strings.Cut(v, " ")
		}
		if v, ok := strings.CutPrefix(line, "export "); ok {
			name, _, _ := strings.Cut(v, "=")
			exports[name] = true
		}
		if line == "ready; interrupt to stop" {
			break
		}
	}
	for _, p := range devaccess.Personas() {
		if !exports[p.Var] {
			t.Errorf("no export line of %s's token (%s)", p.Name, p.Var)
		}
	}
	if !strings.HasPrefix(issuer, "http://127.0.0.1:") {
		t.Errorf("issuer %q; want one on loopback", issuer)
	}

	data, err := os.ReadFile(filepath.Join(dir, fragmentName))
	if err != nil {
		t.Fatal(err)
	}
	var fragment struct {
		Auth struct {
			Issuers []struct {
				Issuer  string `yaml:"issuer"`
				Profile string `yaml:"profile"`
			} `yaml:"issuers"`
		} `yaml:"auth"`
		Onboarding struct {
			RegistryFile string `yaml:"registryFile"`
		} `yaml:"onboarding"`
	}
	if err := yaml.Unmarshal(data, &fragment); err != nil {
		t.Fatalf("the fragment is not YAML: %v\n%s", err, data)
	}
	if iss := fragment.Auth.Issuers; len(iss) != 1 || iss[0].Issuer != issuer || iss[0].Profile != "iua" {
		t.Errorf("the fragment's issuers %+v; want the printed issuer %s, profile iua", iss, issuer)
	}
	if _, err := os.Stat(fragment.Onboarding.RegistryFile); err != nil || !filepath.IsAbs(fragment.Onboarding.RegistryFile) {
		t.Errorf("the fragment's registry %q is not an absolute path to a file (%v)", fragment.Onboarding.RegistryFile, err)
	}

	cancel()
	go io.Copy(io.Discard, pr)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not end when interrupted")
	}
}

func TestRunNeedsDir(t *testing.T) {
	if err := run(context.Background(), "", time.Hour, io.Discard); err == nil || !strings.Contains(err.Error(), "-dir is required") {
		t.Errorf("run without -dir: %v; want -dir is required", err)
	}
}

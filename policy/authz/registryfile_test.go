package authz

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer is a log's output that tests read while a goroutine writes it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logger is a logger writing text to b.
func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// registryOf is a registry file of one onboarded organisation, RR8, suspended or not, with
// one system.
func registryOf(suspended bool) string {
	s := "false"
	if suspended {
		s = "true"
	}
	return "organisations:\n  - {ods: RR8, dsaSigned: 2024-04-01, dsptStatus: Standards Met, dsptYear: 2025/26, dpia: 2024-03-15, suspended: " + s + "}\n" +
		"systems:\n  - {id: viewer, clientId: viewer-client, organisation: RR8, purpose: TREAT}\n"
}

// writeFile writes data at path with a modification time of mtime, so that each write is seen
// as a change whatever the file system's clock granularity.
func writeFile(t *testing.T, path, data string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// suspended reports whether the registry in force has RR8 suspended.
func suspended(t *testing.T, f *RegistryFile) bool {
	t.Helper()
	o, ok := f.Registry().Organisation("RR8")
	if !ok {
		t.Fatal("the registry in force has no RR8")
	}
	return o.Suspended
}

func TestOpenRegistryFileFails(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenRegistryFile(filepath.Join(dir, "missing.yaml"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenRegistryFile(missing) = %v, want a not-exist error", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "organisations: [{ods: R-8}]\n", time.Now())
	var re *RegistryError
	if _, err := OpenRegistryFile(bad, nil); !errors.As(err, &re) || !strings.Contains(err.Error(), bad) {
		t.Errorf("OpenRegistryFile(invalid) = %v, want a *RegistryError naming the file", err)
	}
}

func TestRegistryFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.yaml")
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFile(t, path, registryOf(false), mtime)
	var log logBuffer
	f, err := OpenRegistryFile(path, log.logger())
	if err != nil {
		t.Fatal(err)
	}
	if suspended(t, f) {
		t.Fatal("RR8 suspended in the first file")
	}

	step := func(name string, change func(), wantChanged, wantErr, wantSuspended bool) {
		t.Helper()
		change()
		before := f.Registry()
		changed, err := f.Reload()
		if changed != wantChanged || (err != nil) != wantErr {
			t.Fatalf("%s: Reload = %v, %v; want changed %v, error %v", name, changed, err, wantChanged, wantErr)
		}
		if !changed && f.Registry() != before {
			t.Fatalf("%s: the registry in force was replaced though Reload reported no change", name)
		}
		if suspended(t, f) != wantSuspended {
			t.Fatalf("%s: RR8 suspended %v, want %v", name, !wantSuspended, wantSuspended)
		}
	}
	step("unchanged", func() {}, false, false, false)
	step("a valid change takes effect", func() { mtime = mtime.Add(time.Second); writeFile(t, path, registryOf(true), mtime) },
		true, false, true)
	step("touched without a change", func() { mtime = mtime.Add(time.Second); writeFile(t, path, registryOf(true), mtime) },
		false, false, true)
	step("an invalid change keeps the last good registry", func() {
		mtime = mtime.Add(time.Second)
		writeFile(t, path, strings.Replace(registryOf(false), "2025/26", "2025-26", 1), mtime)
	}, false, true, true)
	if got := strings.Count(log.String(), "onboarding registry not reloaded"); got != 1 {
		t.Fatalf("the invalid file was logged %d times, want once:\n%s", got, log.String())
	}
	if !strings.Contains(log.String(), "dsptYear") {
		t.Errorf("the log does not say what is wrong:\n%s", log.String())
	}
	step("the same invalid file again", func() {}, false, true, true)
	if got := strings.Count(log.String(), "onboarding registry not reloaded"); got != 1 {
		t.Errorf("the same invalid file was logged %d times, want once", got)
	}
	step("a half-written file keeps the last good registry", func() {
		mtime = mtime.Add(time.Second)
		writeFile(t, path, registryOf(false)[:60], mtime)
	}, false, true, true)
	step("a removed file keeps the last good registry", func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}, false, true, true)
	step("a corrected file takes effect", func() { mtime = mtime.Add(time.Second); writeFile(t, path, registryOf(false), mtime) },
		true, false, false)
	if got := strings.Count(log.String(), "onboarding registry not reloaded"); got != 3 {
		t.Errorf("logged %d failures, want 3 (invalid, half-written, removed):\n%s", got, log.String())
	}
}

// TestRegistryFileWatch shows a running Watch putting a changed file in force, and an
// Authorizer deciding by it without a restart.
func TestRegistryFileWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.yaml")
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFile(t, path, registryOf(false), mtime)
	f, err := OpenRegistryFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	z, err := NewAuthorizer(f, testRules(), func() time.Time { return testNow }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := z.Authorize(t.Context(), clinician(), search); err != nil {
		t.Fatalf("Authorize before the change = %v, want allowed", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Watch(ctx, time.Millisecond)
	}()
	writeFile(t, path, registryOf(true), mtime.Add(time.Second))
	deadline := time.Now().Add(5 * time.Second)
	for !suspended(t, f) {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not put the changed file in force within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	var r *Refusal
	if _, err := z.Authorize(t.Context(), clinician(), search); !errors.As(err, &r) || r.Rule != RuleOnboarded {
		t.Errorf("Authorize after suspension = %v, want refused as not onboarded", err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return when its context ended")
	}
}

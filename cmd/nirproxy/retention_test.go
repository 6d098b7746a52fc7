package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// testCheckpointKey signs the checkpoints of tests; otherCheckpointKey is another key.
var (
	testCheckpointKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	otherCheckpointKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, ed25519.SeedSize))
)

// checkpointKeyPEM is key in PEM, PKCS#8, as audit.checkpointKey takes it.
func checkpointKeyPEM(t testing.TB, key ed25519.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// writePublicKey writes key's public half in PEM, as `openssl pkey -pubout` does, and
// returns the file's path.
func writePublicKey(t *testing.T, key ed25519.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "checkpoint-public.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// agedSpool opens a spool of ten records a day apart, in segments of about three records, the
// sink pars having acknowledged them all; the clock then stands a day after the last.
func agedSpool(t *testing.T) (*spool.Spool, spool.Options, *time.Time) {
	t.Helper()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := spool.Options{Dir: filepath.Join(t.TempDir(), "audit"), SegmentBytes: 3 * (97 + 10), MaxBytes: 1 << 20, Clock: func() time.Time { return now }}
	sp, err := spool.Open(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	cur, err := sp.Cursor("pars")
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	appendTaken(t, sp, cur, 10, func() { now = now.Add(24 * time.Hour) })
	return sp, opts, &now
}

func TestRetentionRunsAndVerifyChecksTheKey(t *testing.T) {
	sp, opts, now := agedSpool(t)
	cfg := config.Default()
	cfg.Audit.PARS.URL = "https://pars.example.nhs.uk/FHIR/R4"
	cfg.Audit.Retention = config.Duration(4 * 24 * time.Hour)
	cfg.Audit.CheckpointKey = config.Secret(checkpointKeyPEM(t, testCheckpointKey))
	reg := prometheus.NewRegistry()
	r, err := startRetention(cfg, sp, func() time.Time { return *now }, reg, slog.New(slog.DiscardHandler))
	if err != nil || r == nil {
		t.Fatalf("startRetention = %v, %v", r, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(r.metrics.segments) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	r.Close()
	// Records 1 to 6 are older than four days; the segments holding 1-3 and 4-6 go.
	if got := testutil.ToFloat64(r.metrics.records); got != 6 {
		t.Fatalf("retention deleted %v records; want 6", got)
	}
	tests := []struct {
		name  string
		key   string // the --key file; "" for none
		fails bool
		want  string
	}{
		{"with the key", writePublicKey(t, testCheckpointKey), false, "the checkpoint's signature was checked with the key in"},
		{"without a key", "", false, "the checkpoint's signer was NOT checked: give --key"},
		{"with another key", writePublicKey(t, otherCheckpointKey), true, "breaks in checkpoint at byte 0 (record 7): the checkpoint was signed by the key with fingerprint " + spool.Fingerprint(testCheckpointKey.Public().(ed25519.PublicKey))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"verify", opts.Dir}
			if tt.key != "" {
				args = []string{"verify", "--key", tt.key, opts.Dir}
			}
			var out bytes.Buffer
			err := auditCommand(args, &out)
			if (err != nil) != tt.fails || !strings.Contains(out.String(), tt.want) {
				t.Fatalf("audit verify = %v, printing\n%s\nwant %q", err, out.String(), tt.want)
			}
			if !tt.fails && !strings.Contains(out.String(), "the chain holds: 4 records (7 to 10)") ||
				!tt.fails && !strings.Contains(out.String(), "records 1 to 6 (2 segments, from 2026-01-01T00:00:00Z to 2026-01-06T00:00:00Z) were deleted by retention") {
				t.Errorf("audit verify printed\n%s", out.String())
			}
		})
	}
	if err := auditCommand([]string{"verify", opts.Dir, "--key"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("audit verify with the flag after DIR = %v; want the usage", err)
	}
}

func TestRetentionDeletesNothingWithoutASink(t *testing.T) {
	sp, _, now := agedSpool(t)
	cfg := config.Default() // retention on, no sink, no key
	var logs bytes.Buffer
	r, err := startRetention(cfg, sp, func() time.Time { return *now }, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || r != nil {
		t.Fatalf("startRetention = %v, %v; want none running", r, err)
	}
	if !strings.Contains(logs.String(), "the spool keeps the only copy") {
		t.Errorf("logs %q; want the warning", logs.String())
	}
	cfg.Audit.PARS.URL, cfg.Audit.CheckpointKey = "https://pars.example.nhs.uk/FHIR/R4", "not a key"
	if _, err := startRetention(cfg, sp, time.Now, prometheus.NewRegistry(), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("startRetention took a checkpoint key that is not one")
	}
}

// TestCheckpointSignedByAnotherKeyIsRefused: a spool whose checkpoint another key signed (one
// forged to hide deleted records, say) is neither continued nor re-signed, unless that key's
// fingerprint is among audit.trustedCheckpointKeys (a key changed on purpose).
func TestCheckpointSignedByAnotherKeyIsRefused(t *testing.T) {
	sp, _, now := agedSpool(t)
	clock := func() time.Time { return *now }
	cfg := config.Default()
	cfg.Audit.PARS.URL = "https://pars.example.nhs.uk/FHIR/R4"
	cfg.Audit.Retention = config.Duration(4 * 24 * time.Hour)
	cfg.Audit.CheckpointKey = config.Secret(checkpointKeyPEM(t, otherCheckpointKey))
	if _, err := sp.Prune(context.Background(), spool.Retention{Before: now.Add(-cfg.Audit.Retention.Std()), Sinks: []string{"pars"}, Key: otherCheckpointKey}); err != nil {
		t.Fatal(err)
	}
	other := spool.Fingerprint(otherCheckpointKey.Public().(ed25519.PublicKey))
	cfg.Audit.CheckpointKey = config.Secret(checkpointKeyPEM(t, testCheckpointKey))
	r, err := startRetention(cfg, sp, clock, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "signed by the key with fingerprint "+other) {
		r.Close()
		t.Fatalf("startRetention over another key's checkpoint = %v; want it refused, naming that key", err)
	}
	cfg.Audit.TrustedCheckpointKeys = []string{other}
	r, err = startRetention(cfg, sp, clock, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil || r == nil {
		t.Fatalf("startRetention with the other key trusted = %v, %v; want it running", r, err)
	}
	r.Close()
}

// TestFullSpoolRunsRetentionAtOnce: a spool that refuses a record for room has retention run
// at once, not at its next interval (an hour here), so that data requests are refused (503)
// no longer than they must be.
func TestFullSpoolRunsRetentionAtOnce(t *testing.T) {
	var at atomic.Int64 // the clock, read by the spool's flusher and by retention
	at.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, at.Load()).UTC() }
	const record = 97 + 10
	opts := spool.Options{Dir: filepath.Join(t.TempDir(), "audit"), SegmentBytes: 3 * record, MaxBytes: 9 * record, Clock: clock}
	sp, err := spool.Open(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	cfg := config.Default()
	cfg.Audit.PARS.URL = "https://pars.example.nhs.uk/FHIR/R4"
	cfg.Audit.Retention = config.Duration(24 * time.Hour)
	cfg.Audit.RetentionInterval = config.Duration(time.Hour)
	cfg.Audit.CheckpointKey = config.Secret(checkpointKeyPEM(t, testCheckpointKey))
	r, err := startRetention(cfg, sp, clock, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil || r == nil {
		t.Fatalf("startRetention = %v, %v", r, err)
	}
	defer r.Close()
	cur, err := sp.Cursor("pars")
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	// Nine records fill the spool; the sink takes them all; two days pass.
	appendTaken(t, sp, cur, 9, func() {})
	at.Add(int64(48 * time.Hour))
	if _, err := sp.Append(context.Background(), []byte("0123456789")); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("append to a full spool = %v; want ErrFull", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(r.metrics.segments) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := testutil.ToFloat64(r.metrics.segments); got == 0 {
		t.Fatal("the full spool was not pruned before retention's next interval")
	}
	if _, err := sp.Append(context.Background(), []byte("0123456789")); err != nil {
		t.Errorf("append once retention ran = %v; want room", err)
	}
}

// appendTaken appends n records of 10 bytes to sp, each taken by the sink's cursor cur and
// followed by after, then acknowledges them all.
func appendTaken(t *testing.T, sp *spool.Spool, cur *spool.Cursor, n int, after func()) {
	t.Helper()
	for i := range n {
		if _, err := sp.Append(context.Background(), []byte(strings.Repeat("x", 9)+string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
		if _, err := cur.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
		after()
	}
	if err := cur.Ack(uint64(n)); err != nil {
		t.Fatal(err)
	}
}

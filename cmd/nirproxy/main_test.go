package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server goroutine to write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunCommands(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("listen: 127.0.0.1:8080\nsources:\n  - id: RXA\n    name: Example Hospitals NHS Trust\n    url: http://127.0.0.1:8042/dicom-web\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: 127.0.0.1:8080\nsources:\n  - id: rxa\n    url: localhost:8042\n"), 0o600)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{name: "version", args: []string{"version"}, wantCode: 0, wantOut: "nirproxy dev"},
		{name: "no command", args: nil, wantCode: 2, wantOut: "Usage"},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantOut: `unknown command "frobnicate"`},
		{name: "valid config", args: []string{"check-config", good}, wantCode: 0, wantOut: "1 source (RXA)"},
		{name: "invalid config names the keys", args: []string{"check-config", bad}, wantCode: 1, wantOut: "sources[0].url"},
		{name: "serve without config", args: []string{"serve"}, wantCode: 1, wantOut: "--config"},
		{name: "serve with invalid config", args: []string{"serve", "--config", bad}, wantCode: 1, wantOut: "sources[0].name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.args, nil, &out, &errOut)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.wantCode, out.String(), errOut.String())
			}
			if all := out.String() + errOut.String(); !strings.Contains(all, tc.wantOut) {
				t.Fatalf("output %q does not mention %q", all, tc.wantOut)
			}
		})
	}
}

// TestDemoServesMergedSearch starts the demo as `make run` does (on a free port) and checks
// the first curl command it prints: patient 9434765919's studies from all three trusts.
func TestDemoServesMergedSearch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"demo", "--addr", "127.0.0.1:0"}, nil, &out, &errOut) }()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("demo exited %d: %s", code, errOut.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("demo did not stop")
		}
	}()
	addr := regexp.MustCompile(`DICOMweb at (http://[0-9.:]+)/dicom-web`)
	var base string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := addr.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
			break
		}
	}
	if base == "" {
		t.Fatalf("demo printed no address; stdout %q stderr %q", out.String(), errOut.String())
	}
	resp, err := http.Get(base + "/dicom-web/studies?PatientID=9434765919")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("search: %d %s", resp.StatusCode, body)
	}
	var studies []map[string]struct {
		Value []any `json:"Value"`
	}
	if err := json.Unmarshal(body, &studies); err != nil {
		t.Fatal(err)
	}
	holders := map[string]bool{}
	shared := false
	for _, s := range studies {
		for _, h := range s["00080054"].Value {
			holders[h.(string)] = true
		}
		if len(s["00080054"].Value) == 2 {
			shared = true
		}
	}
	if len(holders) != 3 || !shared {
		t.Fatalf("studies held at %v (a study at two trusts: %v); want all three trusts and one shared study", holders, shared)
	}
	if strings.Contains(errOut.String(), "9434765919") {
		t.Fatal("the NHS number appears in the log")
	}
}

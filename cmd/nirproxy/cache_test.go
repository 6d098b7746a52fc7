package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
)

// writeRedisConfig writes a configuration whose cache is the Redis at addr, and returns its path.
func writeRedisConfig(t *testing.T, addr string) string {
	t.Helper()
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32))
	yaml := fmt.Sprintf(`listen: 127.0.0.1:8080
sources:
  - id: RXA
    name: Example Hospitals NHS Trust
    url: http://127.0.0.1:8042/dicom-web
    insecure: true
cache:
  keySecret: %s
  encryptionKeys: [%s]
  redis:
    addrs: [%s]
`, strings.Repeat("s", 40), key, addr)
	dir := t.TempDir()
	yaml += accessConfig(t, dir)
	path := filepath.Join(dir, "nirproxy.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCachePurgeCommand(t *testing.T) {
	mr := miniredis.RunT(t)
	path := writeRedisConfig(t, mr.Addr())
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, closeCache, err := openCache(cfg.Cache, nil, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer closeCache()
	ctx := context.Background()
	fresh := cache.Freshness{Fresh: 60e9}
	alpha, bravo := st.Key("search", "alpha"), st.Key("search", "bravo")
	st.Put(ctx, alpha, []byte("alpha's studies"), fresh, cache.Link{Index: st.PatientIndex("9434765919")})
	st.Put(ctx, bravo, []byte("bravo's studies"), fresh, cache.Link{Index: st.PatientIndex("9449306052")})

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantErr    string
		goneAlpha  bool
		neverPrint string
	}{
		{name: "bad check digit", args: []string{"--config", path, "--patient", "9434765918"}, wantCode: 1, wantErr: "not a valid NHS number", neverPrint: "9434765918"},
		{name: "no patient", args: []string{"--config", path}, wantCode: 1, wantErr: "needs --config FILE and --patient"},
		{name: "purge", args: []string{"--config", path, "--patient", "943 476 5919"}, wantCode: 0, wantOut: "Removed 2 cache keys", goneAlpha: true, neverPrint: "9434765919"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(ctx, append([]string{"cache", "purge"}, tc.args...), nil, &out, &errOut)
			if code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errOut.String(), tc.wantErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errOut.String(), tc.wantCode, tc.wantOut, tc.wantErr)
			}
			if tc.neverPrint != "" && strings.Contains(out.String()+errOut.String(), tc.neverPrint) {
				t.Errorf("the NHS number was printed: %q %q", out.String(), errOut.String())
			}
			_, alphaThere := st.Lookup(ctx, "search", alpha)
			if alphaThere == tc.goneAlpha {
				t.Errorf("alpha's entry present = %v after the command", alphaThere)
			}
			if _, ok := st.Lookup(ctx, "search", bravo); !ok {
				t.Error("another patient's entry was removed")
			}
		})
	}
}

func TestCachePurgeWithoutRedis(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte("sources:\n  - id: RXA\n    name: Example Hospitals NHS Trust\n    url: http://127.0.0.1:8042/dicom-web\n    insecure: true\n"+accessConfig(t, dir)), 0o600)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"cache", "purge", "--config", path, "--patient", "9434765919"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "No Redis cache is configured") {
		t.Errorf("stdout %q; want it to say there is no Redis to purge", out.String())
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

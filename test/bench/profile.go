package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// PprofAddrEnv names the environment variable that tells a profiling build of nirproxy where
// to serve net/http/pprof. It must not start with NIRPROXY_: those are configuration keys.
const PprofAddrEnv = "BENCH_PPROF_ADDR"

// pprofSource is added to package main of cmd/nirproxy, through `go build -overlay`, in the
// profiling build only: the repository's code is not changed, and the binary that is measured
// is built without it. An init function is the one way to add behaviour to a main package
// from outside it; it does nothing unless PprofAddrEnv is set.
const pprofSource = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("` + PprofAddrEnv + `"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
`

// BuildProfilingProxy builds cmd/nirproxy of the module at root into outDir as
// "nirproxy-pprof", with net/http/pprof served on $BENCH_PPROF_ADDR, and returns its path.
func BuildProfilingProxy(ctx context.Context, root, outDir string) (string, error) {
	src := filepath.Join(outDir, "zz_bench_pprof.go")
	if err := os.WriteFile(src, []byte(pprofSource), 0o644); err != nil {
		return "", fmt.Errorf("write pprof overlay: %w", err)
	}
	overlay, err := json.Marshal(map[string]map[string]string{
		"Replace": {filepath.Join(root, "cmd", "nirproxy", "zz_bench_pprof.go"): src},
	})
	if err != nil {
		return "", fmt.Errorf("encode pprof overlay: %w", err)
	}
	overlayPath := filepath.Join(outDir, "overlay.json")
	if err := os.WriteFile(overlayPath, overlay, 0o644); err != nil {
		return "", fmt.Errorf("write pprof overlay: %w", err)
	}
	bin := filepath.Join(outDir, "nirproxy-pprof")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-overlay", overlayPath, "-o", bin, "./cmd/nirproxy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build profiling nirproxy: %w\n%s", err, out)
	}
	return bin, nil
}

// CPUProfile asks the pprof server at addr for a CPU profile of the next d and writes it to
// path. It blocks for d.
func CPUProfile(ctx context.Context, addr string, d time.Duration, path string) error {
	u := "http://" + addr + "/debug/pprof/profile?seconds=" + strconv.Itoa(max(1, int(d.Seconds())))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("build profile request: %w", err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: d + 30*time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("get CPU profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return fmt.Errorf("get CPU profile: status %d: %s", resp.StatusCode, body)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create profile file: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("save CPU profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save CPU profile: %w", err)
	}
	return nil
}

// PprofTop runs `go tool pprof -top` on profile (of bin) and returns its table of the n
// heaviest functions, flat or cumulative, without the preamble about the binary's path.
func PprofTop(ctx context.Context, bin, profile string, n int, cum bool) (string, error) {
	args := []string{"tool", "pprof", "-top", "-nodecount=" + strconv.Itoa(n)}
	if cum {
		args = append(args, "-cum")
	}
	args = append(args, bin, profile)
	out, err := exec.CommandContext(ctx, "go", args...).Output()
	if err != nil {
		return "", fmt.Errorf("go tool pprof -top: %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	var keep []string
	for _, l := range lines {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n"), nil
}

package orthanc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/nirproxy/nirproxy/test/childproc"
	"github.com/nirproxy/nirproxy/test/devaccess"
)

// modulePath is the module whose cmd/nirproxy BuildProxy builds.
const modulePath = "github.com/nirproxy/nirproxy"

// ProxySource is one trust in the generated proxy configuration.
type ProxySource struct {
	ID       string `yaml:"id"`
	Name     string `yaml:"name"`
	URL      string `yaml:"url"`
	Priority int    `yaml:"priority,omitempty"`
	// Insecure lets URL be plain http, as the proxy requires a source to say of such a URL. It
	// is written true for a URL that is plain http whatever it holds (see MarshalYAML).
	Insecure bool `yaml:"insecure,omitempty"`
}

// MarshalYAML writes s with insecure: true where its URL is plain http, as every test trust's is
// (Orthanc and the simulators on the loopback interface).
func (s ProxySource) MarshalYAML() (any, error) {
	type fields ProxySource // without this method, so that writing it does not come back here
	f := fields(s)
	f.Insecure = f.Insecure || strings.HasPrefix(f.URL, "http://")
	return f, nil
}

// ProxyOptions configures StartProxy. Binary and Sources are required.
type ProxyOptions struct {
	// Binary is the nirproxy executable, as BuildProxy returns it.
	Binary string
	// Sources become the configuration's sources, in order.
	Sources []ProxySource
	// Extra is a YAML mapping merged over the generated configuration's top level (for
	// example cache or CORS settings); nil for none. An adminListen it sets is the one
	// AdminURL names.
	Extra map[string]any
	// Dir holds the configuration and log; default a new temporary directory, removed by Stop.
	Dir string
	// Env is the process environment; nil inherits the test's, less its NIRPROXY_ variables
	// (the proxy refuses NIRPROXY_ variables that name no configuration key, and the tests'
	// own switches, such as NIRPROXY_REQUIRE_REAL_SERVERS, share the prefix).
	Env []string
	// StartTimeout bounds the wait for /healthz; default 30 s.
	StartTimeout time.Duration
	// Access is the token issuer and onboarding registry the proxy trusts (its auth and
	// onboarding sections, which Extra may replace); nil starts one in Dir, closed by Stop.
	Access *devaccess.Access
}

// Proxy is a running nirproxy, started as `nirproxy serve --config FILE` on a loopback port.
type Proxy struct {
	// Addr is "127.0.0.1:PORT".
	Addr string
	// URL is "http://127.0.0.1:PORT".
	URL string
	// AdminURL is the admin listener's "http://127.0.0.1:PORT", where /status and /metrics
	// are; "" when the configuration turns it off.
	AdminURL string
	// ConfigPath is the generated YAML configuration.
	ConfigPath string

	dir       string
	ownDir    bool
	proc      *childproc.Process
	access    *devaccess.Access
	ownAccess bool
}

// ModuleRoot finds the directory of the nirproxy module's go.mod, from the working directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find module root: no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

// BuildProxy builds ./cmd/nirproxy into outDir and returns the binary's path. With
// NIRPROXY_TEST_PROXY_RACE=1 the binary is built with the race detector.
func BuildProxy(ctx context.Context, outDir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(outDir, "nirproxy")
	args := []string{"build", "-o", bin}
	if os.Getenv("NIRPROXY_TEST_PROXY_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/nirproxy")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build nirproxy (go %s): %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// StartProxy writes a configuration listening on a free loopback port with opts.Sources, and
// its admin listener (adminListen) on another, starts `nirproxy serve --config FILE` and waits
// until GET /healthz answers 200.
func StartProxy(ctx context.Context, opts ProxyOptions) (*Proxy, error) {
	if opts.Binary == "" || len(opts.Sources) == 0 {
		return nil, errors.New("start nirproxy: Binary and Sources are required")
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	p := &Proxy{dir: opts.Dir}
	if p.dir == "" {
		dir, err := os.MkdirTemp("", "nirproxy-")
		if err != nil {
			return nil, fmt.Errorf("create directory for nirproxy: %w", err)
		}
		p.dir, p.ownDir = dir, true
	} else if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create directory for nirproxy: %w", err)
	}
	p.access = opts.Access
	if p.access == nil {
		acc, err := devaccess.Start(devaccess.Options{Dir: p.dir, Lifetime: 6 * time.Hour})
		if err != nil {
			p.cleanup()
			return nil, err
		}
		p.access, p.ownAccess = acc, true
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			p.cleanup()
			return nil, err
		}
		p.Addr = "127.0.0.1:" + strconv.Itoa(ports[0])
		p.URL = "http://" + p.Addr
		if err := p.writeConfig(opts, "127.0.0.1:"+strconv.Itoa(ports[1])); err != nil {
			p.cleanup()
			return nil, err
		}
		env := opts.Env
		if env == nil {
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "NIRPROXY_") {
					env = append(env, kv)
				}
			}
		}
		proc, err := childproc.Start("nirproxy", p.dir, filepath.Join(p.dir, "nirproxy.log"), env,
			opts.Binary, "serve", "--config", p.ConfigPath)
		if err != nil {
			p.cleanup()
			return nil, err
		}
		p.proc = proc
		if lastErr = waitHTTP(ctx, proc, p.URL+"/healthz", opts.StartTimeout, nil); lastErr == nil {
			return p, nil
		}
		_ = proc.Kill()
		if ctx.Err() != nil {
			break
		}
	}
	p.cleanup()
	return nil, lastErr
}

// writeConfig writes the YAML configuration, with the admin listener on adminAddr unless
// opts.Extra says otherwise, and sets AdminURL.
func (p *Proxy) writeConfig(opts ProxyOptions, adminAddr string) error {
	cfg := map[string]any{"listen": p.Addr, "adminListen": adminAddr, "sources": opts.Sources}
	for k, v := range p.access.Config() {
		cfg[k] = v
	}
	cfg["audit"] = map[string]any{"spoolDir": p.AuditDir()}
	// The tests load one clinician's requests far past what one person makes, to test the
	// proxy, not the limits: a test of the limits sets its own rateLimit in Extra.
	cfg["rateLimit"] = map[string]any{
		"user":         map[string]any{"requests": 1000000, "period": "1m", "burst": 100000},
		"organisation": map[string]any{"requests": 1000000, "period": "1m", "burst": 100000},
		"patients":     map[string]any{"patients": 100000, "window": "1h"},
	}
	for k, v := range opts.Extra {
		cfg[k] = v
	}
	p.AdminURL = ""
	if a, _ := cfg["adminListen"].(string); a != "" {
		p.AdminURL = "http://" + a
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode nirproxy configuration: %w", err)
	}
	p.ConfigPath = filepath.Join(p.dir, "nirproxy.yaml")
	if err := os.WriteFile(p.ConfigPath, data, 0o644); err != nil {
		return fmt.Errorf("write nirproxy configuration: %w", err)
	}
	return nil
}

// AuditDir is the proxy's audit spool.
func (p *Proxy) AuditDir() string { return filepath.Join(p.dir, "audit") }

// Access is the token issuer and registry the proxy trusts.
func (p *Proxy) Access() *devaccess.Access { return p.access }

// Transport is base (http.DefaultTransport when nil) sending each request with the token of
// devaccess.Clinician, an allowed caller, unless it has an Authorization header already.
func (p *Proxy) Transport(base http.RoundTripper) http.RoundTripper {
	return p.access.Transport(base, devaccess.Clinician)
}

// DICOMwebURL is "http://127.0.0.1:PORT/dicom-web".
func (p *Proxy) DICOMwebURL() string { return p.URL + "/dicom-web" }

// PID is the proxy's process id.
func (p *Proxy) PID() int { return p.proc.PID() }

// LogPath is the file the proxy's standard output and error (its JSON log) go to.
func (p *Proxy) LogPath() string { return p.proc.LogPath() }

// Log returns what the proxy has logged so far.
func (p *Proxy) Log() ([]byte, error) {
	data, err := os.ReadFile(p.proc.LogPath())
	if err != nil {
		return nil, fmt.Errorf("read nirproxy log: %w", err)
	}
	return data, nil
}

// Running reports whether the proxy process is alive.
func (p *Proxy) Running() bool { return !p.proc.Exited() }

// Stop ends the proxy (SIGTERM, then SIGKILL) and removes its directory if StartProxy made it.
// Call Log before Stop if the log is wanted.
func (p *Proxy) Stop() error {
	err := p.proc.Terminate(stopGrace)
	p.cleanup()
	return err
}

// Kill ends the proxy at once with SIGKILL.
func (p *Proxy) Kill() error { return p.proc.Kill() }

// Pause freezes the proxy with SIGSTOP; Resume undoes it.
func (p *Proxy) Pause() error { return p.proc.Pause() }

// Resume continues a paused proxy with SIGCONT.
func (p *Proxy) Resume() error { return p.proc.Resume() }

// cleanup stops the issuer and removes the directory if StartProxy created them.
func (p *Proxy) cleanup() {
	if p.ownAccess {
		p.access.Close()
		p.ownAccess = false
	}
	if p.ownDir {
		os.RemoveAll(p.dir)
		p.ownDir = false
	}
}

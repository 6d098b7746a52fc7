package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/orthanc"
	"github.com/nirproxy/nirproxy/test/pacssim"
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

// accessConfig writes an onboarding registry into dir and returns the auth and onboarding
// sections of a configuration in dir that names it, with an issuer that is never asked: what
// every configuration needs to be valid.
func accessConfig(t *testing.T, dir string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "registry.yaml"), devaccess.Registry(time.Now()), 0o600); err != nil {
		t.Fatal(err)
	}
	return `auth:
  issuers:
    - issuer: https://issuer.example.nhs.uk
      jwksURL: https://issuer.example.nhs.uk/jwks
      audiences: [nirproxy]
      profile: iua
onboarding:
  registryFile: registry.yaml
audit:
  spoolDir: audit
`
}

func TestRunCommands(t *testing.T) {
	dir := t.TempDir()
	access := accessConfig(t, dir)
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("listen: 127.0.0.1:8080\nsources:\n  - id: RXA\n    name: Example Hospitals NHS Trust\n    url: http://127.0.0.1:8042/dicom-web\n    insecure: true\n"+access), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: 127.0.0.1:8080\nsources:\n  - id: rxa\n    url: localhost:8042\n"+access), 0o600)
	unconfigured := filepath.Join(dir, "unconfigured.yaml")
	os.WriteFile(unconfigured, []byte("listen: 127.0.0.1:8080\nsources:\n  - id: RXA\n    name: Example Hospitals NHS Trust\n    url: http://127.0.0.1:8042/dicom-web\n    insecure: true\n"), 0o600)
	unread := filepath.Join(dir, "unread.yaml")
	os.WriteFile(unread, []byte("frobnicate: 1\nsources:\n  - id: rxa\n"), 0o600)
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
		{name: "serve without an issuer", args: []string{"serve", "--config", unconfigured}, wantCode: 1, wantOut: "auth.issuers: is empty; nirproxy answers only callers with a bearer token"},
		{name: "serve without a registry", args: []string{"serve", "--config", unconfigured}, wantCode: 1, wantOut: "onboarding.registryFile: is empty; nirproxy answers only organisations onboarded"},
		{name: "serve with a key it cannot read", args: []string{"serve", "--config", unread}, wantCode: 1, wantOut: "nirproxy: load " + unread + ": frobnicate: unknown key (line 1)"},
		{name: "serve --addr overrides listen", args: []string{"serve", "--config", good, "--addr", "8080"}, wantCode: 1,
			wantOut: "listen: \"8080\" is not host:port; write it like 127.0.0.1:8080 (or :8080 for every interface)\nnirproxy: " + good + " has 1 problem(s); run nirproxy check-config " + good},
		{name: "cache purge with invalid config", args: []string{"cache", "purge", "--config", bad, "--patient", "9434765919"}, wantCode: 1, wantOut: bad + " has 3 problem(s); run nirproxy check-config " + bad},
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
	base, out, errOut := startDemo(t, "demo", "--addr", "127.0.0.1:0")
	client := demoClient(t, out)
	resp, err := client.Get(base + "/dicom-web/studies?PatientID=9434765919")
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
	// The demo caches in process: the same search again is the same answer, from the cache.
	resp, err = client.Get(base + "/dicom-web/studies?PatientID=9434765919")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(again, body) {
		t.Errorf("the repeated search answered differently:\n%s\nthen\n%s", body, again)
	}
	admin := demoAdmin(t, out)
	resp, err = http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`nirproxy_cache_lookups_total\{kind="search",result="hit"\} [1-9]`).Match(metrics) {
		t.Errorf("no search cache hits in /metrics after a repeated search")
	}
	resp, err = http.Get(admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Cache *struct {
			Backend   string `json:"backend"`
			Available bool   `json:"available"`
		} `json:"cache"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Cache == nil || st.Cache.Backend != "memory" || !st.Cache.Available {
		t.Errorf("GET /status cache = %+v (%v); want the in-process cache, available", st.Cache, err)
	}
	if strings.Contains(errOut.String(), "9434765919") {
		t.Fatal("the NHS number appears in the log")
	}
}

// TestDemoWithFaults runs `nirproxy demo --faults` as a newcomer would and checks what the
// commands it prints show: a search still answers 200 with what XA1 holds, plus a Warning
// naming XC3 (slower than its timeout) and XB2 (failing while it flaps); GET /status lists
// every source; after three failures in a row each faulty trust's breaker is open, and the
// next search names it as such at once, without waiting for it.
func TestDemoWithFaults(t *testing.T) {
	base, out, errOut := startDemo(t, "demo", "--faults", "--addr", "127.0.0.1:0")
	if !strings.Contains(out.String(), "Faults (--faults)") {
		t.Errorf("the demo does not describe its faults; stdout %q", out.String())
	}
	client := demoClient(t, out)
	admin := demoAdmin(t, out)

	// search runs the printed search and checks that it answers 200 with studies held at XA1
	// only, and that its Warnings name XB2 and XC3 (and nothing else) for the reasons given.
	// It may run in its own goroutine, so it reports with Errorf only.
	search := func(reasonB, reasonC string, extra ...string) {
		t.Helper()
		start := time.Now()
		resp, err := client.Get(base + "/dicom-web/studies?PatientID=9434765919" + strings.Join(extra, ""))
		if err != nil {
			t.Errorf("search: %v", err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("search: %d %s (%v)", resp.StatusCode, body, err)
			return
		}
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("search took %v; XC3's 2 s timeout should bound it", elapsed)
		}
		var studies []map[string]struct {
			Value []any `json:"Value"`
		}
		if err := json.Unmarshal(body, &studies); err != nil || len(studies) == 0 {
			t.Errorf("search answered %d studies (%v); want XA1's", len(studies), err)
			return
		}
		for _, s := range studies {
			for _, h := range s["00080054"].Value {
				if h != "XA1" {
					t.Errorf("a study held at %v came back, from a trust that failed", h)
				}
			}
		}
		warnings := resp.Header.Values("Warning")
		for id, reason := range map[string]string{"XB2": reasonB, "XC3": reasonC} {
			found := false
			for _, w := range warnings {
				found = found || strings.HasPrefix(w, "299 ") && strings.Contains(w, id+" (") && strings.Contains(w, reason)
			}
			if !found {
				t.Errorf("no Warning names %s as %q; warnings %q", id, reason, warnings)
			}
		}
		if len(warnings) != 2 {
			t.Errorf("%d warnings; want one for XB2 and one for XC3: %q", len(warnings), warnings)
		}
	}
	// status returns GET /status's sources by id.
	type source struct {
		ID, Breaker, LastFailure string
	}
	status := func() map[string]source {
		t.Helper()
		resp, err := http.Get(admin + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Sources []source `json:"sources"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatalf("GET /status: %d: %v", resp.StatusCode, err)
		}
		byID := map[string]source{}
		for _, s := range st.Sources {
			byID[s.ID] = s
		}
		if len(byID) != 3 {
			t.Fatalf("/status lists %v; want XA1, XB2 and XC3", st.Sources)
		}
		return byID
	}

	search("answered 500", "timed out")
	if t.Failed() {
		t.FailNow()
	}
	st := status()
	if st["XB2"].LastFailure != "answered 500" || st["XC3"].LastFailure != "timed out" || st["XA1"].LastFailure != "" {
		t.Errorf("/status last failures: %+v; want XB2 answered 500, XC3 timed out, XA1 none", st)
	}
	for id, s := range st {
		if s.Breaker != "closed" {
			t.Errorf("after one search %s's breaker is %q; want closed", id, s.Breaker)
		}
	}

	// Two more failures each, at once, open both faulty trusts' breakers. The two searches
	// differ (identical concurrent searches share one upstream call, so count as one).
	var wg sync.WaitGroup
	for _, field := range []string{"00081030", "00080090"} {
		wg.Go(func() { search("answered 500", "timed out", "&includefield="+field) })
	}
	wg.Wait()
	st = status()
	if st["XA1"].Breaker != "closed" || st["XB2"].Breaker != "open" || st["XC3"].Breaker != "open" {
		t.Fatalf("after three failures each, breakers are XA1 %q, XB2 %q, XC3 %q; want closed, open, open",
			st["XA1"].Breaker, st["XB2"].Breaker, st["XC3"].Breaker)
	}
	start := time.Now()
	search("has an open circuit breaker", "has an open circuit breaker")
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("with XC3's breaker open the search took %v; want no wait for XC3", elapsed)
	}
	if strings.Contains(errOut.String(), "9434765919") {
		t.Fatal("the NHS number appears in the log")
	}
}

// startDemo runs the demo command with args on a free port, as `make run` does, until the test
// ends, and returns the base URL it printed and its output.
func startDemo(t *testing.T, args ...string) (base string, out, errOut *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut = &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, nil, out, errOut) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("demo exited %d: %s", code, errOut.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("demo did not stop")
		}
	})
	addr := regexp.MustCompile(`DICOMweb at (http://[0-9.:]+)/dicom-web`)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		// The demo prints all its help before it serves, and logs "nirproxy listening" once it
		// does: only then is every line of the help there to be read.
		if m := addr.FindStringSubmatch(out.String()); m != nil && strings.Contains(errOut.String(), "nirproxy listening") {
			return m[1], out, errOut
		}
	}
	t.Fatalf("demo printed no address; stdout %q stderr %q", out.String(), errOut.String())
	return "", nil, nil
}

// demoAdmin is the base URL of the admin listener the demo printed, where /status and
// /metrics are.
func demoAdmin(t *testing.T, out *syncBuffer) string {
	t.Helper()
	m := regexp.MustCompile(`admin listener \(loopback only, no token\): (http://127\.0\.0\.1:[0-9]+)/status`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the demo printed no admin listener; stdout %q", out.String())
	}
	return m[1]
}

// demoToken is the token the demo printed for export as name (NIR_TOKEN is the clinician's).
func demoToken(t *testing.T, out *syncBuffer, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  export ` + name + `='([^']+)'$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the demo printed no token %s; stdout %q", name, out.String())
	}
	return m[1]
}

// demoClient is a client sending the clinician's token the demo printed, as its help says to.
func demoClient(t *testing.T, out *syncBuffer) *http.Client {
	token := demoToken(t, out, "NIR_TOKEN")
	return &http.Client{Transport: bearer{token: token}}
}

// bearer sends every request with its token.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// TestDemoTokensShowTheirOutcomes runs, with bash and curl, the export lines and the access
// control commands the demo prints, as a newcomer pastes them: each persona's search answers
// as the demo says it will (the clinician and break-glass 200, the privacy officer, the
// researcher and the lapsed organisation 403 naming why), and no token 401.
func TestDemoTokensShowTheirOutcomes(t *testing.T) {
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			orthanc.SkipOrFail(t, fmt.Errorf("%s is not installed (make deps installs it)", tool))
		}
	}
	_, out, _ := startDemo(t, "demo", "--addr", "127.0.0.1:0")
	printed := out.String()
	exports := regexp.MustCompile(`(?m)^  export .*$`).FindAllString(printed, -1)
	commands := regexp.MustCompile(`(?m)^  # (\S+) -> (.*)\n  (curl .*)$`).FindAllStringSubmatch(printed, -1)
	if len(exports) != len(devaccess.Personas()) || len(commands) != len(devaccess.Personas())+1 {
		t.Fatalf("the demo printed %d export lines and %d commands; want %d and %d:\n%s", len(exports), len(commands), len(devaccess.Personas()), len(devaccess.Personas())+1, printed)
	}
	byName := map[string]devaccess.Persona{}
	for _, p := range devaccess.Personas() {
		byName[p.Name] = p
	}
	for _, c := range commands {
		t.Run(c[1], func(t *testing.T) {
			script := strings.Join(exports, "\n") + "\n" + c[3]
			got, err := exec.Command("bash", "-c", script).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", c[3], err, got)
			}
			wantStatus, wantText := http.StatusUnauthorized, "Authentication"
			if p, ok := byName[c[1]]; ok {
				wantStatus, wantText = p.Status, p.Refusal
			} else if c[1] != "no-token" {
				t.Fatalf("a command for %q, who is no persona", c[1])
			}
			if !strings.HasPrefix(string(got), fmt.Sprintf("HTTP/1.1 %d ", wantStatus)) || !strings.Contains(string(got), wantText) {
				t.Fatalf("%s printed:\n%s\nwant status %d and %q", c[3], got, wantStatus, wantText)
			}
			if !strings.HasPrefix(c[2], strconv.Itoa(wantStatus)) {
				t.Errorf("the demo says %q of a command answering %d", c[2], wantStatus)
			}
		})
	}
}

// TestDemoWithCopies runs `nirproxy demo --copies` and checks what it prints and its second
// command: the series held at XD4 and XE5 with different instances comes back whole, each
// instance once, put together from both trusts.
func TestDemoWithCopies(t *testing.T) {
	base, out, _ := startDemo(t, "demo", "--copies", "--addr", "127.0.0.1:0")
	for _, want := range []string{"over 5 sample trusts", pacssim.CopiesTrustA, pacssim.CopiesTrustB, "Differing copies (--copies)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's help does not mention %q", want)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/dicom-web/studies/"+pacssim.CopiesStudyUID+"/series/"+pacssim.CopiesSharedSeriesUID, nil)
	req.Header.Set("Accept", `multipart/related; type="application/dicom"`)
	resp, err := demoClient(t, out).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	seen := map[string]bool{}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read the series: %v", err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("read the series: %v", err)
		}
		meta, _, err := media.ParseFileMeta(body)
		if err != nil || seen[meta.SOPInstanceUID] {
			t.Fatalf("part %d: %v, or its instance came twice", len(seen)+1, err)
		}
		seen[meta.SOPInstanceUID] = true
	}
	if len(seen) != 12 {
		t.Fatalf("%d instances; want the 12 the two copies of the series hold together", len(seen))
	}
}

// TestDemoAuditCommands runs, after a clinician's search, the audit commands the demo prints:
// verify finds the chain whole, and export prints a FHIR Bundle with the search's AuditEvent.
func TestDemoAuditCommands(t *testing.T) {
	base, out, _ := startDemo(t, "demo", "--addr", "127.0.0.1:0")
	resp, err := demoClient(t, out).Get(base + "/dicom-web/studies?PatientID=9434765919")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range regexp.MustCompile(`(?m)^  go run \./cmd/nirproxy (audit .*)$`).FindAllStringSubmatch(out.String(), -1) {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), strings.Fields(c[1]), nil, &stdout, &stderr); code != 0 {
			t.Errorf("nirproxy %s: exit %d: %s", c[1], code, stderr.String())
		}
		switch {
		case strings.HasPrefix(c[1], "audit verify") && !strings.Contains(stdout.String(), "the chain holds: 1 records"):
			t.Errorf("nirproxy %s printed %q; want one record, the chain whole", c[1], stdout.String())
		case strings.HasPrefix(c[1], "audit export") && (!strings.Contains(stdout.String(), `"resourceType": "Bundle"`) || strings.Count(stdout.String(), `"resourceType": "AuditEvent"`) != 1):
			t.Errorf("nirproxy %s printed %.400s; want a Bundle of one AuditEvent", c[1], stdout.String())
		}
	}
	if n := strings.Count(out.String(), "go run ./cmd/nirproxy audit "); n != 2 {
		t.Errorf("the demo printed %d audit commands; want verify and export", n)
	}
}

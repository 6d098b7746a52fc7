package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/devissuer"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// demoCommand runs three sample trusts' PACS in this process, each on its own loopback port,
// and the proxy over them with an in-process cache: everything a newcomer needs to try
// nirproxy with curl or a viewer, and nothing but Go. With --faults, one trust is slow and
// one flaps, so degraded mode can be watched. With --copies, two more trusts hold differing
// copies of one study, one of them capping its search answers, so the composite retrieve
// can be watched.
func demoCommand(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Default()
	addr := fs.String("addr", cfg.Listen, "listen on `HOST:PORT`")
	public := fs.String("public-url", "", "the `URL` clients reach the demo at, which every link in answers starts with (default http:// and the address listened on, localhost for every interface)")
	origin := fs.String("cors-origin", "http://localhost:3000", "browser `ORIGIN` allowed by CORS (a viewer such as OHIF)")
	tokenLife := fs.Duration("token-lifetime", 12*time.Hour, "how long the printed tokens are valid")
	faults := fs.Bool("faults", false, "make trust XC3 slow and XB2 flap between failing and working, to watch degraded mode")
	copies := fs.Bool("copies", false, "add trusts XD4 and XE5, holding differing copies of one study (XE5 caps its search answers), to watch the composite retrieve")
	if err := fs.Parse(args); err != nil {
		return err
	}
	trusts, err := demoTrusts(*copies)
	if err != nil {
		return err
	}
	cfg.Listen, cfg.PublicURL = *addr, *public
	cfg.Logging.Format = "text"
	dir, err := os.MkdirTemp("", "nirproxy-demo-")
	if err != nil {
		return fmt.Errorf("make the demo's directory: %w", err)
	}
	defer os.RemoveAll(dir)
	acc, err := startDemoAccess(&cfg, dir, *tokenLife)
	if err != nil {
		return err
	}
	defer acc.Close()
	if *origin != "" {
		cfg.CORS.AllowedOrigins = []string{*origin}
	}
	for i, t := range trusts {
		src, stop, err := startDemoTrust(t, i+1, *faults)
		if err != nil {
			return err
		}
		defer stop()
		cfg.Sources = append(cfg.Sources, src)
	}
	ln, adminLn, err := demoListeners(&cfg)
	if err != nil {
		return err
	}
	closeAll := func() { ln.Close(); adminLn.Close() }
	// The demo derives its public URL on any address, so links name where it listens.
	cfg.PublicURL = publicURL(cfg, ln.Addr())
	if problems := cfg.Validate(); len(problems) > 0 {
		closeAll()
		return fmt.Errorf("demo configuration is invalid: %v", problems)
	}
	base, admin := strings.TrimSuffix(cfg.PublicURL, "/"), "http://"+cfg.AdminListen
	tokens, err := printDemoTokens(stdout, acc, *tokenLife)
	if err != nil {
		closeAll()
		return err
	}
	printDemoHelp(stdout, base, admin, cfg)
	auditConfig, err := writeDemoAuditConfig(dir, cfg)
	if err != nil {
		closeAll()
		return err
	}
	printDemoAccess(stdout, base, *origin, cfg.Audit.SpoolDir, auditConfig, tokens)
	if *faults {
		printDemoFaults(stdout, base, admin)
	}
	if *copies {
		printDemoCopies(stdout, base)
	}
	return serve(ctx, cfg, ln, adminLn, newLogger(cfg.Logging, stderr))
}

// demoTrusts are the demo's sample trusts, with the two holding differing copies of one study
// when copies is set.
func demoTrusts(copies bool) ([]*pacssim.Trust, error) {
	trusts, err := pacssim.DemoTrusts()
	if err != nil {
		return nil, fmt.Errorf("make demo trusts: %w", err)
	}
	if copies {
		a, b, err := pacssim.CopiesTrusts(pacssim.CopiesOptions{SearchCap: demoSearchCap})
		if err != nil {
			return nil, fmt.Errorf("make demo trusts with differing copies: %w", err)
		}
		trusts = append(trusts, a, b)
	}
	return trusts, nil
}

// demoListeners listens on cfg.Listen for clients, and on a free loopback port for the
// operations endpoints (as serve's are on adminListen), which cfg.AdminListen then names.
func demoListeners(cfg *config.Config) (ln, adminLn net.Listener, err error) {
	ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s (use --addr to choose another): %w", cfg.Listen, err)
	}
	adminLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("listen for the demo's admin endpoints: %w", err)
	}
	cfg.AdminListen = adminLn.Addr().String()
	return ln, adminLn, nil
}

// startDemoAccess starts the demo's development token issuer on loopback, with an onboarding
// registry in dir, and points cfg's authentication and onboarding at them, and its audit spool
// at dir/audit. This is the only way
// nirproxy runs with an issuer that mints tokens on request: serve never does.
func startDemoAccess(cfg *config.Config, dir string, lifetime time.Duration) (*devaccess.Access, error) {
	acc, err := devaccess.Start(devaccess.Options{Dir: dir, Lifetime: lifetime})
	if err != nil {
		return nil, fmt.Errorf("start the demo's token issuer: %w", err)
	}
	iss := config.DefaultTokenIssuer()
	iss.Issuer, iss.Discovery, iss.Profile = acc.Issuer().URL(), true, "iua"
	iss.Audiences, iss.Algorithms = []string{devissuer.DefaultAudience}, []string{acc.Issuer().Algorithm()}
	cfg.Authentication.Issuers = []config.TokenIssuer{iss}
	cfg.Onboarding.RegistryFile = acc.RegistryPath()
	cfg.Audit.SpoolDir = filepath.Join(dir, "audit")
	// Not sent anywhere (no url): the observer names the demo in what audit export prints.
	cfg.Audit.PARS.Observer = "nirproxy-demo"
	return acc, nil
}

// printDemoTokens prints an export line for each persona's token, and returns the tokens by
// persona name.
func printDemoTokens(w io.Writer, acc *devaccess.Access, lifetime time.Duration) (map[string]string, error) {
	tokens := map[string]string{}
	fmt.Fprintf(w, "Tokens from the demo's development issuer %s, valid for %s. Paste these lines into your shell:\n", acc.Issuer().URL(), lifetime)
	for _, p := range devaccess.Personas() {
		t, err := acc.Token(p)
		if err != nil {
			return nil, err
		}
		tokens[p.Name] = t
		fmt.Fprintf(w, "  # %s\n  export %s='%s'\n", p.Describe, p.Var, t)
	}
	fmt.Fprintln(w)
	return tokens, nil
}

// printDemoAccess prints a curl line for each persona showing its outcome, how to read the
// audit record, and the OHIF URL.
func printDemoAccess(w io.Writer, base, origin, spoolDir, auditConfig string, tokens map[string]string) {
	fmt.Fprintf(w, "Access control: each token's search shows its outcome (the first line is the status).\n")
	for _, p := range devaccess.Personas() {
		outcome := "200: allowed"
		if p.Status != http.StatusOK {
			outcome = fmt.Sprintf("%d: refused, the message says %q", p.Status, p.Refusal)
		}
		extra := ""
		for k, v := range p.Headers {
			extra += fmt.Sprintf(" -H '%s: %s'", k, v)
		}
		fmt.Fprintf(w, "  # %s -> %s\n  curl -si -H \"Authorization: Bearer $%s\"%s '%s/dicom-web/studies?PatientID=9434765919' | sed -n '1p;$p'\n",
			p.Name, outcome, p.Var, extra, base)
	}
	fmt.Fprintf(w, "  # no-token -> 401: a token is required\n  curl -si '%s/dicom-web/studies?PatientID=9434765919' | sed -n '1p;$p'\n\n", base)
	fmt.Fprintf(w, `The audit record: every access above, and every refusal, was recorded in %[3]s before it was answered.
  # Who has accessed patient 9434765919's imaging (the privacy officer may read it; as a page with -H 'Accept: text/html')
  curl -s -H "Authorization: Bearer $%[2]s" '%[1]s/audit/patients/9434765919'
  # The record's hash chain
  go run ./cmd/nirproxy audit verify %[3]s
  # The patient's accesses as a FHIR R4 Bundle of AuditEvents, as PARS would receive them
  go run ./cmd/nirproxy audit export --config %[4]s --patient 9434765919

`, base, devaccess.PrivacyOfficer.Var, spoolDir, auditConfig)
	if origin != "" {
		fmt.Fprintf(w, "OHIF (served at %s with its data source at %s/dicom-web) opens the shared study as the clinician:\n  %s/viewer?StudyInstanceUIDs=%s&token=%s\n\n",
			origin, base, origin, pacssim.DemoSharedStudyUID, tokens[devaccess.Clinician.Name])
	}
}

// writeDemoAuditConfig writes, in dir, a configuration file of the demo for the audit commands
// (audit export reads the spool and the observer from one), and returns its path. It holds no
// secret.
func writeDemoAuditConfig(dir string, cfg config.Config) (string, error) {
	sources := make([]map[string]any, len(cfg.Sources))
	for i, s := range cfg.Sources {
		sources[i] = map[string]any{"id": s.ID, "name": s.Name, "url": s.URL, "insecure": s.Insecure}
	}
	iss := cfg.Authentication.Issuers[0]
	doc := map[string]any{
		"sources":    sources,
		"auth":       map[string]any{"issuers": []map[string]any{{"issuer": iss.Issuer, "discovery": true, "audiences": iss.Audiences, "algorithms": iss.Algorithms, "profile": iss.Profile}}},
		"onboarding": map[string]any{"registryFile": cfg.Onboarding.RegistryFile},
		"audit":      map[string]any{"spoolDir": cfg.Audit.SpoolDir, "pars": map[string]any{"observer": cfg.Audit.PARS.Observer}},
	}
	data, err := yaml.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("write the demo's audit configuration: %w", err)
	}
	path := filepath.Join(dir, "nirproxy-audit.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("write the demo's audit configuration: %w", err)
	}
	return path, nil
}

// startDemoTrust serves a demo trust's PACS on a loopback port and returns its configuration
// as a source of the given priority (with faults when asked), and how to stop it.
func startDemoTrust(t *pacssim.Trust, priority int, faults bool) (config.Source, func() error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return config.Source{}, nil, fmt.Errorf("listen for demo trust %s: %w", t.ID, err)
	}
	hs := &http.Server{Handler: t.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	src := config.DefaultSource()
	src.ID, src.Name = t.ID, t.Name
	src.URL = "http://" + ln.Addr().String() + "/dicom-web"
	src.Insecure = true // a demo trust on the loopback interface, holding made-up patients
	src.Priority = priority
	if t.ID == pacssim.DemoTrustC {
		src.PatientID = config.PatientID{Attribute: config.AttributeOtherPatientIDsSequence, Issuer: "NHS"}
	}
	if faults {
		injectDemoFaults(t, &src)
	}
	return src, hs.Close, nil
}

// printDemoHelp prints where the demo serves clients (base) and operators (admin), its trusts,
// and what to try.
func printDemoHelp(w io.Writer, base, admin string, cfg config.Config) {
	// The operators' line comes first: whoever reads the client's line (tests do) finds both.
	fmt.Fprintf(w, "Operations, on the admin listener (loopback only, no token): %[1]s/status and %[1]s/metrics\n", admin)
	fmt.Fprintf(w, "nirproxy demo: DICOMweb at %s/dicom-web over %d sample trusts:\n", base, len(cfg.Sources))
	for _, s := range cfg.Sources {
		fmt.Fprintf(w, "  %s  %-40s %s\n", s.ID, s.Name, s.URL)
	}
	fmt.Fprintf(w, `
Try, as the clinician (after the export lines above):
  AUTH="Authorization: Bearer $NIR_TOKEN"
  # Every study of patient 9434765919, merged across the three trusts (one is held at two)
  curl -s -H "$AUTH" '%[1]s/dicom-web/studies?PatientID=9434765919' | jq .
  # Repeated within 30 s it is answered from the in-process cache (see %[6]s/metrics, nirproxy_cache_)
  # The same, paged
  curl -si -H "$AUTH" '%[1]s/dicom-web/studies?PatientID=9434765919&limit=2&offset=0'
  # The series of the study held at two trusts (each copy contributes)
  curl -s -H "$AUTH" '%[1]s/dicom-web/studies/%[2]s/series' | jq .
  # Its metadata: every instance once, bulk data links pointing at the proxy
  curl -s -H "$AUTH" '%[1]s/dicom-web/studies/%[2]s/metadata' | jq length
  # The whole study as multipart DICOM
  curl -s -o study.multipart -H "$AUTH" -H 'Accept: multipart/related; type="application/dicom"' '%[1]s/dicom-web/studies/%[2]s'
  # A rendered frame of the multi-frame ultrasound, and a thumbnail
  curl -s -o frame.jpg -H "$AUTH" '%[1]s/dicom-web/studies/%[3]s/series/%[4]s/instances/%[5]s/frames/1/rendered'
  curl -s -o thumb.jpg -H "$AUTH" '%[1]s/dicom-web/studies/%[3]s/thumbnail'
  # Refused: a search with no patient, and an NHS number with a wrong check digit
  curl -si -H "$AUTH" '%[1]s/dicom-web/studies?Modality=CT'
  curl -si -H "$AUTH" '%[1]s/dicom-web/studies?PatientID=9434765918'
  # What the service supports
  curl -s -X OPTIONS '%[1]s/dicom-web'

`, base, pacssim.DemoSharedStudyUID, pacssim.DemoUltrasoundStudyUID, pacssim.DemoMultiFrameSeriesUID, pacssim.DemoMultiFrameInstanceUID, admin)
}

// The faults of `nirproxy demo --faults`.
const (
	demoSlowLatency  = 3 * time.Second  // how late XC3 answers
	demoSlowTimeout  = 2 * time.Second  // how long the proxy waits for XC3's headers
	demoFlapPhase    = 20 * time.Second // how long XB2 fails, then works
	demoFailures     = 3                // calls that, all failed within a minute, open a faulty trust's breaker
	demoBreakerPause = 10 * time.Second // how long an open breaker waits before a probe
)

// injectDemoFaults makes XC3 slower than its timeout and XB2 flap between HTTP 500s and
// health, and gives both a breaker quick enough to watch open and close.
func injectDemoFaults(t *pacssim.Trust, src *config.Source) {
	switch t.ID {
	case pacssim.DemoTrustC:
		t.SetFaults(pacssim.Latency(demoSlowLatency))
		src.Timeout = config.Duration(demoSlowTimeout)
	case pacssim.DemoTrustB:
		t.SetFaults(pacssim.Status(http.StatusInternalServerError).Flapping(pacssim.Flap{Fail: demoFlapPhase, Work: demoFlapPhase}))
	default:
		return
	}
	src.Breaker.MinRequests = demoFailures
	src.Breaker.ConsecutiveUnreachable = demoFailures
	src.Breaker.OpenFor = config.Duration(demoBreakerPause)
}

// printDemoFaults describes the faults of --faults and how to watch them, at base and at the
// admin listener admin.
func printDemoFaults(w io.Writer, base, admin string) {
	fmt.Fprintf(w, `Faults (--faults), to watch degraded mode happen:
  %[2]s  answers every request after %[3]s, but the proxy waits only %[4]s for it: it times out.
  %[5]s  flaps: HTTP 500 to every request for %[6]s, then healthy for %[6]s, and so on, from now.
  Either one's circuit breaker opens once at least %[7]d calls to it within a minute have ended and
  half of them failed, and lets a probe through %[8]s later.

Watch:
  # Still 200 with what answered, and a Warning header naming each trust missing and why
  # (XC3 timed out; XB2 failed, while it flaps; "circuit open" once a breaker opens). Once XB2
  # has answered, its cached copy stands in while it fails: Warning 110 "Response is Stale" and
  # a 299 saying how old the copy is
  curl -s -D - -o /dev/null -H "$AUTH" '%[1]s/dicom-web/studies?PatientID=9434765919' | grep -i '^warning'
  # Each trust's breaker state, recent error rate and latency (the admin listener)
  curl -s %[10]s/status | jq .
  # XC3's ultrasound cannot be had while XC3 is slow: 503 naming XC3, never a study that looks complete
  curl -si -H "$AUTH" '%[1]s/dicom-web/studies/%[9]s/metadata' | head -n 20

`, base, pacssim.DemoTrustC, demoSlowLatency, demoSlowTimeout, pacssim.DemoTrustB, demoFlapPhase,
		demoFailures, demoBreakerPause, pacssim.DemoUltrasoundStudyUID, admin)
}

// demoSearchCap is how many results XE5 answers a search with, under --copies: more than
// its copy of any one series holds, fewer than its copy of the study.
const demoSearchCap = 10

func printDemoCopies(w io.Writer, base string) {
	fmt.Fprintf(w, `Differing copies (--copies): %[2]s and %[3]s each hold a copy of study %[4]s (patient %[5]s).
  Neither holds every instance: series .1 is at both with different instances, .3 only at %[2]s,
  .4 only at %[3]s. %[3]s answers every search with at most %[6]d results, like a PACS with a result limit.

Watch:
  # The study's %[7]d instances, each once, put together from both trusts
  curl -s -H "$AUTH" -H 'Accept: multipart/related; type="application/dicom"' '%[1]s/dicom-web/studies/%[4]s' | grep -ac 'Content-Type: application/dicom'
  # The series held at both with different instances: 12 instances
  curl -s -H "$AUTH" -H 'Accept: multipart/related; type="application/dicom"' '%[1]s/dicom-web/studies/%[4]s/series/%[8]s' | grep -ac 'Content-Type: application/dicom'

`, base, pacssim.CopiesTrustA, pacssim.CopiesTrustB, pacssim.CopiesStudyUID, pacssim.CopiesPatientNHSNumber,
		demoSearchCap, pacssim.CopiesUnionInstances, pacssim.CopiesSharedSeriesUID)
}

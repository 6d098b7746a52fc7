package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/dicomweb"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/upstream"
)

func serveCommand(ctx context.Context, args, environ []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration `FILE` (YAML)")
	addr := fs.String("addr", "", "listen on `HOST:PORT` instead of the configured address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("serve needs --config FILE")
	}
	if *addr != "" {
		// --addr is the last override of listen, after the environment's.
		environ = append(slices.Clip(environ), config.EnvPrefix+"LISTEN="+*addr)
	}
	cfg, err := loadConfig(*path, environ, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Logging, stderr)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	var adminLn net.Listener
	if cfg.AdminListen != "" {
		if adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s (adminListen): %w", cfg.AdminListen, err)
		}
	}
	return serve(ctx, cfg, ln, adminLn, log)
}

// loadConfig is config.LoadValid for serve and cache purge: a file it cannot read is an error
// naming the file; each problem Validate finds is printed to stderr, and the error points at
// check-config.
func loadConfig(path string, environ []string, stderr io.Writer) (config.Config, error) {
	cfg, err := config.LoadValid(path, environ)
	var fe *config.FileError
	switch {
	case errors.As(err, &fe) && len(fe.Unread) > 0:
		return cfg, fmt.Errorf("load %s: %w", path, config.Problems(fe.Unread))
	case errors.As(err, &fe):
		for _, p := range fe.Invalid {
			fmt.Fprintln(stderr, p.String())
		}
		return cfg, fmt.Errorf("%s has %d problem(s); run nirproxy check-config %s", path, len(fe.Invalid), path)
	case err != nil:
		return cfg, fmt.Errorf("load %s: %w", path, err)
	}
	return cfg, nil
}

func newLogger(l config.Logging, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// app is the wired proxy: its handlers, its sources, and what must be stopped with it.
type app struct {
	// handler serves clients: DICOMweb, /healthz and /readyz.
	handler *echo.Echo
	// admin serves operators: /status and /metrics, and nothing else.
	admin   *echo.Echo
	sources []*upstream.Source
	webhook *upstream.Webhook
	access  *access
	// forwarder sends the audit record to its sinks; nil without any.
	forwarder *forwarding
	// retention deletes the spool's old segments every sink has; nil when it deletes nothing.
	retention *retention
	// closeCache releases the cache's connections.
	closeCache func() error
}

// close stops what a started: the access control's background work, the incident webhook's
// deliveries (until ctx ends) and the cache's connections.
func (a *app) close(ctx context.Context, log *slog.Logger) {
	a.stopForwarder()
	a.access.close(ctx, log)
	if a.webhook != nil {
		a.webhook.Close(ctx)
	}
	if err := a.closeCache(); err != nil {
		log.Warn("close cache", "err", err)
	}
}

// stopForwarder stops the audit record's delivery and retention, if they run; the spool stays
// open.
func (a *app) stopForwarder() {
	a.retention.Close()
	if a.forwarder != nil {
		_ = a.forwarder.Close()
	}
}

// buildHandler wires the request path of DESIGN.md from a validated configuration whose
// PublicURL is set (see publicURL). Every setting of the packages it wires comes from cfg: they
// have no defaults of their own. Its background work (token issuers' keys, the registry's
// watch) runs until ctx ends or the app is closed.
func buildHandler(ctx context.Context, cfg config.Config, log *slog.Logger) (*app, error) {
	return buildHandlerAt(ctx, cfg, time.Now, log)
}

// buildHandlerAt is buildHandler with the clock access control tells the time by, for tests.
func buildHandlerAt(ctx context.Context, cfg config.Config, now func() time.Time, log *slog.Logger) (*app, error) {
	acc, err := openAccess(ctx, cfg, now, log)
	if err != nil {
		return nil, err
	}
	a, err := wire(cfg, acc, log)
	if err != nil {
		acc.close(ctx, log)
		return nil, err
	}
	return a, nil
}

// wire builds the proxy's handler over the access control acc.
func wire(cfg config.Config, acc *access, log *slog.Logger) (*app, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	upMetrics := upstream.NewMetrics(reg)
	a := &app{access: acc}
	var err error
	var incidents upstream.Notifier
	if cfg.Incidents.WebhookURL != "" {
		a.webhook = upstream.NewWebhook(cfg.Incidents.WebhookURL, cfg.Incidents.WebhookTimeout.Std(), cfg.Incidents.WebhookRetries, fallback.Reason, log)
		incidents = a.webhook
	}
	if a.forwarder, err = startForwarder(cfg, acc.spool, reg, a.webhook, log); err != nil {
		return nil, err
	}
	if a.retention, err = startRetention(cfg, acc.spool, time.Now, reg, log); err != nil {
		a.stopForwarder()
		return nil, err
	}
	store, closeCache, err := openCache(cfg.Cache, reg, log)
	if err != nil {
		a.stopForwarder()
		return nil, err
	}
	a.closeCache = closeCache
	sources := make([]*upstream.Source, 0, len(cfg.Sources))
	for _, sc := range cfg.Sources {
		src, err := sc.UpstreamSource()
		if err != nil {
			closeCache()
			a.stopForwarder()
			return nil, err
		}
		opts := sc.UpstreamOptions()
		opts.Metrics, opts.Incidents, opts.Cache = upMetrics, incidents, cfg.Cache.SourceCache(store)
		sources = append(sources, upstream.NewSource(src, opts, log))
	}
	key := []byte(cfg.SigningKey)
	if len(key) == 0 {
		// config.Warnings tells the operator; links stop working on restart.
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	locator := upstream.NewLocator(sources, store, cfg.Locator.TTL.Std(), log)
	srv := dicomweb.New(cfg.DICOMweb(), dicomweb.Deps{
		Metrics:  dicomweb.NewMetrics(reg),
		Locator:  locator,
		Cache:    store,
		Signer:   dicomweb.NewSigner(key, cfg.BulkdataLinkTTL.Std(), nil),
		Auth:     acc.authn,
		Authz:    acc.authz,
		Audit:    acc.audit,
		AuditLog: acc.audit,
		Log:      log,
	})
	e := echo.New()
	srv.Register(e)
	admin := echo.New()
	admin.GET("/status", srv.Status)
	admin.GET("/status/audit", forwardStatus(a.forwarder))
	admin.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	a.handler, a.admin, a.sources = e, admin, sources
	return a, nil
}

// serve runs the proxy until ctx is cancelled, then drains in-flight requests: clients on ln
// (with TLS when cfg.TLS is on), operators on adminLn (/status and /metrics, plain HTTP), or
// nowhere when adminLn is nil. It closes both listeners.
func serve(ctx context.Context, cfg config.Config, ln, adminLn net.Listener, log *slog.Logger) error {
	listeners := []net.Listener{ln}
	if adminLn != nil {
		listeners = append(listeners, adminLn)
	}
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	tlsConfig, err := cfg.TLS.ServerConfig()
	if err != nil {
		closeAll()
		return err
	}
	cfg.PublicURL = publicURL(cfg, ln.Addr())
	a, err := buildHandler(ctx, cfg, log)
	if err != nil {
		closeAll()
		return err
	}
	for _, w := range cfg.Warnings() {
		log.Warn("configuration", "key", w.Path, "warning", w.Message)
	}
	log.Warn("audit records are kept in the spool but not yet forwarded to PARS or ATNA", "spool", cfg.Audit.SpoolDir)
	ids := make([]string, len(a.sources))
	for i, s := range a.sources {
		ids[i] = s.ID
	}
	servers, errc := startServers(a, ln, adminLn, tlsConfig, log)
	admin := "off"
	if adminLn != nil {
		admin = adminLn.Addr().String()
	}
	log.Info("nirproxy listening", "addr", ln.Addr().String(), "tls", tlsConfig != nil, "admin", admin,
		"sources", strings.Join(ids, ","), "cache", cfg.Cache.Describe(), "version", version)
	var served error
	select {
	case served = <-errc:
	case <-ctx.Done():
	}
	shutdown := stopServers(servers, a, log)
	if served != nil {
		return fmt.Errorf("serve: %w", served)
	}
	if shutdown != nil {
		return fmt.Errorf("shut down: %w", shutdown)
	}
	return nil
}

// startServers serves a's handler on ln (with TLS when tlsConfig is not nil) and its admin
// handler on adminLn (when not nil), and returns the servers and where their first failure
// is sent.
func startServers(a *app, ln, adminLn net.Listener, tlsConfig *tls.Config, log *slog.Logger) ([]*http.Server, <-chan error) {
	hs := newHTTPServer(a.handler, log)
	hs.TLSConfig = tlsConfig
	servers := []*http.Server{hs}
	errc := make(chan error, 2)
	go func() {
		if tlsConfig != nil {
			errc <- hs.ServeTLS(ln, "", "") // the certificate is in TLSConfig
			return
		}
		errc <- hs.Serve(ln)
	}()
	if adminLn != nil {
		as := newHTTPServer(a.admin, log)
		servers = append(servers, as)
		go func() { errc <- as.Serve(adminLn) }()
	}
	return servers, errc
}

// stopServers drains the servers' in-flight requests (for at most 20 s), then stops what a
// started.
func stopServers(servers []*http.Server, a *app, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	log.Info("shutting down")
	var errs []error
	for _, s := range servers {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	a.close(ctx, log)
	return errors.Join(errs...)
}

// publicURL is the URL clients reach the proxy at: the configured one, or, when none is
// configured (Validate allows that only on a loopback address, and the demo on any), http://
// (https:// when the proxy terminates TLS) and the address the proxy listens on, with
// localhost for an unspecified address.
func publicURL(cfg config.Config, addr net.Addr) string {
	if cfg.PublicURL != "" {
		return cfg.PublicURL
	}
	scheme := "http://"
	if cfg.TLS.Enabled() {
		scheme = "https://"
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return scheme + addr.String()
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return scheme + net.JoinHostPort(host, port)
}

func checkConfigCommand(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: nirproxy check-config FILE")
		return 2
	}
	if !config.CheckFile(args[0], environ, stdout) {
		return 1
	}
	return 0
}

// newHTTPServer is the listener's HTTP server. A client that sends its request headers slowly
// (slowloris) is cut off after ReadHeaderTimeout, and headers are bounded to MaxHeaderBytes;
// an idle keep-alive connection is closed after IdleTimeout. There is no WriteTimeout: study
// retrieves stream for as long as they take, and each write has its own deadline instead
// (dicomweb's clientWriteTimeout).
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

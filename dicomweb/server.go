// Package dicomweb is nirproxy's DICOMweb front: the Echo routes of QIDO-RS and WADO-RS
// (PS3.18), request parsing and validation, content negotiation, merging and paging of
// answers from several trusts, URL rewriting and error bodies.
//
// Every data request follows the path of DESIGN.md: authenticate, authorize, validate, fan out
// (package upstream), decide (package fallback), merge and rewrite, audit, respond. The package
// never calls an upstream itself except through upstream.Source.
package dicomweb

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

// Config is what the DICOMweb front needs from the deployment's configuration.
type Config struct {
	Forwarding Forwarding
	// AllowedOrigins are the browser origins allowed by CORS ("*" for any).
	AllowedOrigins []string
	CORSMaxAge     time.Duration
	// PatientIDIssuer is written as IssuerOfPatientID next to the NHS number in answers.
	PatientIDIssuer string
	// RequestTimeout bounds a search's fan-out and a retrieve's locating and planning; streams
	// themselves are bounded by the sources' idle timeouts.
	RequestTimeout time.Duration
	// ClientWriteTimeout bounds how long one write to a client may take (it is extended with
	// every 64 KiB the client takes in): a client that stops reading for longer is cut off,
	// as its own failure. Default 60 s.
	ClientWriteTimeout time.Duration
	Search             SearchLimits
	// MaxFrames bounds the frames named in one request.
	MaxFrames int
	// ThumbnailViewport is the size asked for when a thumbnail is derived from a rendering.
	ThumbnailViewport string
	Fallback          fallback.Policy
}

// check reports the first setting of c left unset: the deployment's configuration
// (config.Default and the file) sets every one, and the package has no defaults of its own.
func (c Config) check() error {
	positive := []struct {
		name string
		ok   bool
	}{
		{"Forwarding.PublicURL", c.Forwarding.PublicURL != ""},
		{"RequestTimeout", c.RequestTimeout > 0},
		{"ClientWriteTimeout", c.ClientWriteTimeout > 0},
		{"CORSMaxAge", c.CORSMaxAge > 0},
		{"MaxFrames", c.MaxFrames > 0},
		{"ThumbnailViewport", c.ThumbnailViewport != ""},
		{"Search.MaxResultsPerSource", c.Search.MaxResultsPerSource > 0},
		{"Search.MaxLimit", c.Search.MaxLimit > 0},
		{"Search.MaxQueryLength", c.Search.MaxQueryLength > 0},
		{"Search.MaxMatchingKeys", c.Search.MaxMatchingKeys > 0},
		{"Search.MaxIncludeFields", c.Search.MaxIncludeFields > 0},
		{"Search.MaxValuesPerKey", c.Search.MaxValuesPerKey > 0},
		{"Fallback.Search", c.Fallback.Search != ""},
		{"Fallback.Retrieve", c.Fallback.Retrieve != ""},
		{"Fallback.RetryAfter", c.Fallback.RetryAfter > 0},
	}
	for _, f := range positive {
		if !f.ok {
			return fmt.Errorf("dicomweb: Config.%s is not set; pass the configuration whole (config.Config.DICOMweb)", f.name)
		}
	}
	return nil
}

// Deps are the collaborators a Server is built from.
type Deps struct {
	Locator *upstream.Locator
	Signer  *Signer
	Auth    policy.Authenticator
	Authz   policy.Authorizer
	Audit   audit.Recorder
	// AuditLog, when set, answers the patient access report (GET /audit/patients/{nhs}).
	AuditLog audit.Log
	Log      *slog.Logger
	Now      func() time.Time
	// Metrics receives the front's instruments; nil records none.
	Metrics *Metrics
	// Cache is the sources' cache, shown by Status; nil when there is none.
	Cache *cache.Store
}

// Server serves DICOMweb over the configured sources.
type Server struct {
	cfg      Config
	locator  *upstream.Locator
	signer   *Signer
	auth     policy.Authenticator
	authz    policy.Authorizer
	audit    audit.Recorder
	auditLog audit.Log
	log      *slog.Logger
	now      func() time.Time
	thumbs   noThumbnails
	metrics  *Metrics
	cache    *cache.Store
}

// New returns a Server. An incomplete Config is refused by a panic naming the setting; nil
// Auth/Authz/Audit are refused at Register time by a panic, so a deployment cannot run without
// the request path's governance steps.
func New(cfg Config, d Deps) *Server {
	if err := cfg.check(); err != nil {
		panic(err)
	}
	cfg.Fallback.Agent = hostOf(cfg.Forwarding)
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, locator: d.Locator, signer: d.Signer, auth: d.Auth, authz: d.Authz, audit: d.Audit, auditLog: d.AuditLog, log: d.Log, now: d.Now, metrics: d.Metrics, cache: d.Cache}
}

// Keys of what the middleware keeps on a request: its id and its caller, never a decision.
const (
	ctxRequestID = "nirproxy.request_id"
	ctxPrincipal = "nirproxy.principal"
	// ctxGrant is what authorize judged of the caller (policy.Grant), allowed or refused, and
	// ctxPatient the NHS number authorizePatient was asked about: the audit record's who and
	// whom. Neither is a decision: the error of each step is.
	ctxGrant   = "nirproxy.grant"
	ctxPatient = "nirproxy.patient"
	// ctxDataRoute marks a request of a data route, whose refusals are audited.
	ctxDataRoute = "nirproxy.data_route"
)

// Register mounts the service on e: health endpoints, CORS, request ids, logging and the
// DICOMweb routes under /dicom-web. /status is not among them: it is for operators, and the
// deployment mounts Status where only they reach it.
func (s *Server) Register(e *echo.Echo) {
	if s.auth == nil || s.authz == nil || s.audit == nil || s.locator == nil || s.signer == nil {
		panic("dicomweb: Server needs Locator, Signer, Auth, Authz and Audit")
	}
	e.HTTPErrorHandler = errorHandler(s.log, s.cfg.Fallback.RetryAfter, func(c *echo.Context, de *Error, err error) {
		if dataRoute, _ := c.Get(ctxDataRoute).(bool); dataRoute {
			s.recordRefusal(c, de, err)
		}
	})
	e.Use(s.requestID, s.accessLog, s.writeDeadline, securityHeaders, s.cors)
	e.GET("/healthz", func(c *echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", s.ready)

	e.OPTIONS(Root, s.capabilities)
	e.OPTIONS(Root+"/", s.capabilities)
	e.GET(Root, s.capabilities)
	s.dataRoutes(e.Group(Root, s.authenticate, s.checkQuery))
	if s.auditLog != nil {
		s.auditRoutes(e.Group(AuditRoot, s.authenticate, s.checkQuery))
	}
	refuseWrites(e)
	e.RouteNotFound(Root+"/*", func(c *echo.Context) error {
		return notFound("No such DICOMweb resource; see OPTIONS %s for what is supported.", Root)
	})
}

// dataRoutes mounts the DICOMweb data routes on g, which authenticates every request.
func (s *Server) dataRoutes(g *echo.Group) {
	// Every data route answers HEAD as it answers GET: the same status and headers, no body.
	get := func(path string, h echo.HandlerFunc) {
		g.GET(path, h)
		g.HEAD(path, h)
	}
	// QIDO-RS (PS3.18 §10.6).
	get("/studies", s.searchHandler(StudyLevel))
	get("/series", s.searchHandler(SeriesLevel))
	get("/instances", s.searchHandler(InstanceLevel))
	get("/studies/:study/series", s.searchHandler(SeriesLevel))
	get("/studies/:study/instances", s.searchHandler(InstanceLevel))
	get("/studies/:study/series/:series/instances", s.searchHandler(InstanceLevel))

	// WADO-RS (PS3.18 §10.4).
	get("/studies/:study", s.retrieveHandler(StudyLevel))
	get("/studies/:study/series/:series", s.retrieveHandler(SeriesLevel))
	get("/studies/:study/series/:series/instances/:instance", s.retrieveHandler(InstanceLevel))
	get("/studies/:study/metadata", s.metadataHandler(StudyLevel))
	get("/studies/:study/series/:series/metadata", s.metadataHandler(SeriesLevel))
	get("/studies/:study/series/:series/instances/:instance/metadata", s.metadataHandler(InstanceLevel))
	get("/studies/:study/series/:series/instances/:instance/frames/:frames", s.framesHandler)
	get("/studies/:study/rendered", s.renderedHandler(StudyLevel, false))
	get("/studies/:study/series/:series/rendered", s.renderedHandler(SeriesLevel, false))
	get("/studies/:study/series/:series/instances/:instance/rendered", s.renderedHandler(InstanceLevel, false))
	get("/studies/:study/series/:series/instances/:instance/frames/:frames/rendered", s.renderedHandler(InstanceLevel, true))
	get("/studies/:study/thumbnail", s.thumbnailHandler(StudyLevel, false))
	get("/studies/:study/series/:series/thumbnail", s.thumbnailHandler(SeriesLevel, false))
	get("/studies/:study/series/:series/instances/:instance/thumbnail", s.thumbnailHandler(InstanceLevel, false))
	get("/studies/:study/series/:series/instances/:instance/frames/:frames/thumbnail", s.thumbnailHandler(InstanceLevel, true))
	get("/bulkdata/:token", s.bulkdataHandler)
}

// refuseWrites answers every write with 405: the registry is read-only (no STOW-RS, UPS-RS or
// other writes).
func refuseWrites(e *echo.Echo) {
	readOnly := func(c *echo.Context) error {
		return &Error{Status: http.StatusMethodNotAllowed, Message: "The registry is read-only: " + c.Request().Method + " is not supported (no STOW-RS or other writes); use GET to search and retrieve."}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		e.Add(m, Root, readOnly)
		e.Add(m, Root+"/*", readOnly)
	}
}

// securityHeaders marks every response so that a browser never runs or sniffs what passes
// through the proxy: answers carry patients' data from many trusts, and a trust's answer must
// not become script on the proxy's origin. The policy forbids every fetch, script and frame
// (a viewer reads the proxy's answers with fetch from its own origin, which the policy of a
// response does not govern) and sandboxes anything opened as a page.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
		h.Set("Referrer-Policy", "no-referrer")
		return next(c)
	}
}

// requestID gives every request an id, taken from X-Request-Id when it is a sane token.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		id := c.Request().Header.Get("X-Request-Id")
		if !saneID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		c.Set(ctxRequestID, id)
		c.Response().Header().Set("X-Request-Id", id)
		return next(c)
	}
}

func saneID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func requestID(c *echo.Context) string {
	id, _ := c.Get(ctxRequestID).(string)
	return id
}

// accessLog logs one line per request with the route template, never the raw path or query:
// both carry patient identifiers and UIDs.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		start := s.now()
		defer func() {
			// An aborted stream (http.ErrAbortHandler) still gets its log line and its count;
			// the panic goes on to net/http, which resets the connection.
			if r := recover(); r != nil {
				s.logRequest(c, start, "aborted")
				panic(r)
			}
		}()
		err := next(c)
		if err != nil {
			c.Echo().HTTPErrorHandler(c, err)
		}
		s.logRequest(c, start, "")
		return nil
	}
}

func (s *Server) logRequest(c *echo.Context, start time.Time, outcome string) {
	status := 0
	var size int64
	if r, uErr := echo.UnwrapResponse(c.Response()); uErr == nil {
		status, size = r.Status, r.Size
	}
	route := c.Path()
	if route == "" {
		route = "unmatched"
	}
	elapsed := s.now().Sub(start)
	s.metrics.request(route, status, elapsed)
	attrs := []any{"request_id", requestID(c), "method", c.Request().Method, "route", route,
		"status", status, "bytes", size, "duration_ms", elapsed.Milliseconds()}
	if outcome != "" {
		attrs = append(attrs, "outcome", outcome)
	}
	s.log.Info("request", attrs...)
}

// cors answers preflights and marks responses for the configured browser origins. A viewer
// such as OHIF served from another origin needs this to read any answer.
func (s *Server) cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		origin := c.Request().Header.Get("Origin")
		if origin == "" || !s.originAllowed(origin) {
			if origin != "" && c.Request().Method == http.MethodOptions && c.Request().Header.Get("Access-Control-Request-Method") != "" {
				return &Error{Status: http.StatusForbidden, Message: "This origin is not allowed to use the proxy from a browser."}
			}
			return next(c)
		}
		h := c.Response().Header()
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", "Warning, Retry-After, X-Request-Id, Content-Location, Content-Length")
		if c.Request().Method == http.MethodOptions && c.Request().Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			if allowed := corsHeaders(c.Request().Header.Get("Access-Control-Request-Headers")); allowed != "" {
				h.Set("Access-Control-Allow-Headers", allowed)
			}
			h.Set("Access-Control-Max-Age", strconv.Itoa(int(s.cfg.CORSMaxAge/time.Second)))
			return c.NoContent(http.StatusNoContent)
		}
		return next(c)
	}
}

// corsRequestHeaders are the request headers a page of an allowed origin may send: its bearer
// token, content negotiation, a request id and the purpose-of-use headers. No cookies, and no
// Access-Control-Allow-Credentials: a viewer authenticates with its token.
var corsRequestHeaders = []string{"accept", "authorization", "x-request-id", strings.ToLower(headerPurpose), strings.ToLower(headerPurposeReason)}

// corsHeaders is the part of a preflight's Access-Control-Request-Headers list that
// corsRequestHeaders allows, as the browser wrote it.
func corsHeaders(requested string) string {
	var out []string
	for _, name := range strings.Split(requested, ",") {
		name = strings.TrimSpace(name)
		if slices.Contains(corsRequestHeaders, strings.ToLower(name)) {
			out = append(out, name)
		}
	}
	return strings.Join(out, ", ")
}

func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// authenticate is step 1 of the request path: every data route runs behind it.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		c.Set(ctxDataRoute, true)
		p, err := s.auth.Authenticate(c.Request())
		if err != nil {
			return err
		}
		c.Set(ctxPrincipal, p)
		return next(c)
	}
}

func principal(c *echo.Context) policy.Principal {
	p, _ := c.Get(ctxPrincipal).(policy.Principal)
	return p
}

package dicomweb

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

// The steps every data request passes, in the order of DESIGN.md's request path. Each is one
// method here, called from one place per route kind, so that governance attaches to a single
// line:
//
//  1. authenticate: the middleware on every data route (Server.authenticate);
//  2. parse and validate the request: parseSearchRequest, prepare (retrieves, metadata,
//     frames, rendered images, thumbnails), bulkdataHandler's link check;
//  3. authorize: Server.authorize, called by searchHandler for searches and by admit for
//     everything that reads a study;
//  4. locate and fan out: Server.locate, upstream.FanOut and upstream.FirstOf;
//  5. decide: every verdict is fallback's, kept as a fallback.Decision value (the verdict)
//     that travels with the request to the writer, never stored in the Echo context;
//  6. merge, plan, rewrite: search.go, counts.go, plan.go;
//  7. authorize the patient: Server.authorizePatient, once the one patient the answer
//     concerns is known (patient.go) and before any of it is fetched or sent: called by
//     locate for everything that reads a study, right after the study is located (the
//     locator names its patient; finding it may have asked every trust where the study is,
//     but nothing of the study is fetched before this step), and by searchHandler once the
//     trusts' answers are merged, before their counts are listed. An answer that concerns no
//     patient (an empty search by study) skips it;
//  8. record: Server.startAnswer records the access (audit) before the status line is sent, the
//     one place an answer is recorded; a request answered with an error (refused by access
//     control, or failed) is recorded by the error handler (Server.recordRefusal). The event's
//     who comes from the principal and what authorize judged, allowed or refused (the Echo
//     context's grant), its patient from authorizePatient;
//  9. respond: the writers of writer.go and stream.go.

// The headers in which a request states its own purpose of use (HL7 v3 PurposeOfUse: TREAT,
// ETREAT, BTG, ...) and the reason for emergency or break-glass access. The authorizer uses them
// only when neither the token nor the calling system's registration states a purpose, and only
// where the deployment allows it.
const (
	headerPurpose       = "X-Purpose-Of-Use"
	headerPurposeReason = "X-Purpose-Of-Use-Reason"
)

// maxPurposeCode and maxPurposeReason bound the purpose-of-use headers, in bytes.
const (
	maxPurposeCode   = 16
	maxPurposeReason = 500
)

// authorize is step 3: may this principal do this, for this patient or study? It is called
// from exactly two places: searchHandler and admit. The request's own purpose-of-use headers
// are checked here and passed on with the action.
func (s *Server) authorize(c *echo.Context, a policy.Action) error {
	a = requestAction(c, a)
	if a.Purpose != "" && (len(a.Purpose) > maxPurposeCode || !policy.IsPurposeCode(a.Purpose)) {
		return badRequest("%s must be one HL7 PurposeOfUse code, such as TREAT", headerPurpose)
	}
	if len(a.PurposeReason) > maxPurposeReason || strings.ContainsFunc(a.PurposeReason, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return badRequest("%s must be printable text of at most %d bytes", headerPurposeReason, maxPurposeReason)
	}
	g, err := s.authz.Authorize(c.Request().Context(), principal(c), a)
	// What the rules judged is the record's whether or not they allowed: a refusal's record
	// names the registered system and the purpose asked for too (recordRefusal).
	c.Set(ctxGrant, g)
	return err
}

// authorizePatient is step 7: may this principal see this patient's imaging? patient is the
// NHS number the answer concerns (patient.go), known once the answer is merged (searches) or
// the study located (everything that reads a study), and always before any of the answer is
// fetched or sent. It is called from exactly two places: searchHandler and locate; at most
// once a request, and not for an answer that concerns no patient (an empty search). Its
// refusal is answered as authorize's is: nothing of the answer is sent, and the refusal is
// recorded under the patient.
func (s *Server) authorizePatient(c *echo.Context, a policy.Action, patient string) error {
	a = requestAction(c, a)
	a.PatientID = patient
	// The patient is the record's whether or not the step allows: a refused attempt on a
	// patient's imaging is recorded under the patient too.
	c.Set(ctxPatient, patient)
	return s.authz.AuthorizePatient(c.Request().Context(), principal(c), a)
}

// requestAction is a completed with what the request says of itself: its route, and the
// purpose of use its headers state (authorize checks them).
func requestAction(c *echo.Context, a policy.Action) policy.Action {
	a.Resource = c.Path()
	h := c.Request().Header
	a.Purpose, a.PurposeReason = h.Get(headerPurpose), h.Get(headerPurposeReason)
	return a
}

// startAnswer is steps 8 and 9's start, the one place a data route's access is recorded: the
// audit event is recorded (a failure to record refuses the request), then the status line goes
// out with the verdict's status and Warnings, the given Content-Type, the Content-Length when
// length is not negative, and no caching. Nothing of a body may be written before it.
func (s *Server) startAnswer(c *echo.Context, v fallback.Decision, e audit.Event, contentType string, length int64) error {
	status := v.Status
	if status == 0 {
		status = http.StatusOK
	}
	e.Status = status
	if err := s.record(c, e, v); err != nil {
		return err
	}
	h := c.Response().Header()
	if length >= 0 {
		h.Set("Content-Length", strconv.FormatInt(length, 10))
	}
	for _, w := range v.Warnings {
		h.Add("Warning", w)
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", contentType)
	c.Response().WriteHeader(status)
	return nil
}

// record audits the access before any of the body is sent; it is called only by startAnswer.
// The event is completed from the request: who (its principal and what authorize granted),
// which patient (authorizePatient), the route and its UIDs, and the verdict's missing and
// stale trusts.
func (s *Server) record(c *echo.Context, e audit.Event, v fallback.Decision) error {
	e.Outcome = audit.OutcomeSuccess
	for _, m := range v.Missing {
		e.Missing = append(e.Missing, m.ID)
	}
	for _, st := range v.Stale {
		e.Stale = append(e.Stale, st.ID)
	}
	if len(e.Missing) > 0 || len(e.Stale) > 0 {
		e.Outcome = audit.OutcomePartial
	}
	if err := s.audit.Record(c.Request().Context(), s.completeEvent(c, e)); err != nil {
		return &Error{Status: http.StatusServiceUnavailable, Message: "The access could not be audited, so it is refused.", RetryAfter: s.cfg.Fallback.RetryAfter, Err: errors.Join(errNotAudited, err)}
	}
	return nil
}

// ruleAuthenticated is the rule a request refused by authentication (401) is recorded under,
// as package authz names it (authz.RuleAuthenticated).
const ruleAuthenticated = "authenticated"

// errNotAudited marks the refusal of a request whose audit record could not be written, so
// that the refusal is not recorded again (recordRefusal).
var errNotAudited = errors.New("audit record not written")

// recordRefusal audits a data request answered with an error: refused by access control (the
// rule named) or failed. No data was sent, so a failure to record it is logged, and the answer
// stays what it was.
func (s *Server) recordRefusal(c *echo.Context, de *Error, err error) {
	if errors.Is(err, errNotAudited) {
		return
	}
	e := audit.Event{Status: de.Status, Outcome: audit.OutcomeFailed}
	var refusal *policy.Refusal
	switch {
	case errors.As(err, &refusal):
		e.Outcome, e.Rule = audit.OutcomeRefused, refusal.Rule
	case errors.Is(err, policy.ErrUnauthenticated):
		// No token, or one that does not verify: refused by the rule every caller meets first.
		e.Outcome, e.Rule = audit.OutcomeRefused, ruleAuthenticated
	case errors.Is(err, policy.ErrForbidden), errors.Is(err, policy.ErrLimited), errors.Is(err, policy.ErrUnavailable):
		e.Outcome = audit.OutcomeRefused
	}
	if rerr := s.audit.Record(c.Request().Context(), s.completeEvent(c, e)); rerr != nil {
		s.log.Error("a refused request could not be audited", "request_id", requestID(c), "route", c.Path(), "status", de.Status, "err", rerr)
	}
}

// completeEvent fills in what every event of the request c shares. The study, series and
// instance are the route's, or a bulk data link's as it was signed (ctxBulkLink).
func (s *Server) completeEvent(c *echo.Context, e audit.Event) audit.Event {
	p := principal(c)
	g, _ := c.Get(ctxGrant).(policy.Grant)
	e.Time, e.RequestID = s.now(), requestID(c)
	e.User, e.Issuer, e.TokenID, e.Role = p.Subject, p.Issuer, p.TokenID, p.Role
	e.Organisation, e.System = cmp.Or(g.Organisation, p.Organisation), cmp.Or(g.System, p.System)
	e.Purpose, e.PurposeSource, e.Reason = g.Purpose, g.PurposeSource, g.Reason
	e.BreakGlass, e.Emergency = g.BreakGlass, g.Emergency
	e.ClientAddress = clientAddress(c.Request())
	e.Resource = c.Path()
	e.Action = actionOf(e.Resource)
	if e.Action == audit.ActionSearch {
		e.Query = c.QueryString()
	}
	if patient, ok := c.Get(ctxPatient).(string); ok && e.PatientID == "" {
		e.PatientID = patient
	}
	study, series, instance := c.Param("study"), c.Param("series"), c.Param("instance")
	if link, ok := c.Get(ctxBulkLink).(BulkLink); ok {
		study, series, instance = link.Study, link.Series, link.Instance
	}
	if study != "" && len(e.StudyUIDs) == 0 {
		e.StudyUIDs = []string{study}
	}
	e.SeriesUID, e.InstanceUID = series, instance
	return e
}

// actionOf is the audit action of a data route, by its template.
func actionOf(route string) string {
	switch {
	case strings.HasPrefix(route, AuditRoot+"/"):
		return audit.ActionAuditRead
	case strings.HasSuffix(route, "/metadata"):
		return audit.ActionMetadata
	case strings.HasSuffix(route, "/rendered"), strings.HasSuffix(route, "/thumbnail"):
		return audit.ActionRendered
	case strings.Contains(route, "/bulkdata/"):
		return audit.ActionBulkData
	case strings.HasSuffix(route, "/studies"), strings.HasSuffix(route, "/series"), strings.HasSuffix(route, "/instances"):
		return audit.ActionSearch
	}
	return audit.ActionRetrieve
}

// clientAddress is the host of the connection's peer: never a forwarding header, which the
// client writes.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// judge merges a fallback decision about a request into its verdict so far, logging and
// counting the sources left out. A decision that refuses the request is returned as the error
// to answer with.
func (s *Server) judge(c *echo.Context, v *fallback.Decision, kind string, d fallback.Decision) error {
	if len(d.Missing) == 0 && len(d.Stale) == 0 && len(d.Warnings) == 0 {
		return nil
	}
	s.logMissing(c, kind, d)
	s.logStale(c, kind, d)
	if len(d.Missing) > 0 {
		s.metrics.incompleteAnswer(kind, d.Status)
	}
	if !d.OK() {
		return decisionError(d)
	}
	*v = fallback.Merge(*v, d)
	return nil
}

// refusal answers a decision that refuses the request, logging the sources it names.
func (s *Server) refusal(c *echo.Context, kind string, d fallback.Decision) error {
	s.logMissing(c, kind, d)
	return decisionError(d)
}

// decisionError turns a refusing fallback decision into an error answer.
func decisionError(d fallback.Decision) *Error {
	return &Error{Status: d.Status, Message: d.Message, Warnings: d.Warnings, RetryAfter: d.RetryAfter}
}

// negotiate picks the representation for a resource from the request's Accept, answering 400
// for an unparsable Accept and 406 when nothing offered is acceptable.
func negotiate(c *echo.Context, offers []media.Offer, what string) (media.Match, error) {
	ranges, err := media.RequestRanges(c.Request())
	if err != nil {
		return media.Match{}, badRequest("%v", err)
	}
	m, ok := media.Negotiate(ranges, offers)
	if !ok {
		names := make([]string, len(offers))
		for i, o := range offers {
			names[i] = o.String()
		}
		return media.Match{}, notAcceptable("%s can be sent as %v; the Accept header allows none of them", what, names)
	}
	// The transfer syntax is passed on to the trusts in their Accept: only a UID or "*" may
	// be, never other text of the client's.
	if ts, given := m.Range.Params["transfer-syntax"]; given && ts != "*" && !validUID(ts) {
		return media.Match{}, badRequest("transfer-syntax %q in the Accept header must be a transfer syntax UID or *", ts)
	}
	return m, nil
}

// deadline returns the request's context bounded by the configured request timeout.
func (s *Server) deadline(c *echo.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request().Context(), s.cfg.RequestTimeout)
}

// staleOK marks ctx so that sources' caches return stale copies of holders that fail, when
// the deployment serves stale copies at all (fallback's ServeStale).
func (s *Server) staleOK(ctx context.Context) context.Context {
	if s.cfg.Fallback.ServeStale {
		return upstream.AcceptStale(ctx)
	}
	return ctx
}

// agent is the warn-agent of the Warning headers the front writes itself, as fallback's
// decisions have it (New sets it from the public URL).
func (s *Server) agent() string { return s.cfg.Fallback.Agent }

// hostOf is the host of the proxy's public URL: the warn-agent of its Warning headers.
func hostOf(f Forwarding) string {
	host := strings.TrimPrefix(strings.TrimPrefix(f.base(), "http://"), "https://")
	host, _, _ = strings.Cut(host, "/")
	return host
}

// rewriter rewrites the URLs of an answer for the caller of c: links to the proxy, bulk data
// links issued to the caller.
func (s *Server) rewriter(c *echo.Context) *rewriter {
	return &rewriter{base: s.cfg.Forwarding.base(), signer: s.signer, caller: callerOf(principal(c))}
}

// callerOf is who a bulk data link is issued to: the principal's subject at its issuer.
func callerOf(p policy.Principal) string { return p.Issuer + "\x00" + p.Subject }

// logStale writes one line per source stood in for by its stale cached copy.
func (s *Server) logStale(c *echo.Context, kind string, d fallback.Decision) {
	for _, st := range d.Stale {
		s.log.Warn("source answered from a stale cached copy", "request_id", requestID(c), "what", kind, "source", st.ID, "reason", st.Reason, "age", st.Age.String())
	}
	if len(d.Stale) > 0 {
		s.metrics.staleAnswer(kind)
	}
}

// logMissing writes one incident line per source left out of an answer.
func (s *Server) logMissing(c *echo.Context, kind string, d fallback.Decision) {
	for _, m := range d.Missing {
		s.log.Warn("source left out of answer", "request_id", requestID(c), "what", kind, "source", m.ID, "reason", m.Reason, "status", d.Status)
	}
}

// logFailover writes one line per holder a request failed over from (a 404 of a copy is not
// a failure: copies differ).
func (s *Server) logFailover(c *echo.Context, tried []upstream.Outcome) {
	for _, o := range tried {
		if f := upstream.Classify(o.Err); f.Class != upstream.ClassNotFound {
			s.log.Warn("retrieve failed over", "request_id", requestID(c), "source", o.Source.ID, "reason", fallback.Reason(f))
		}
	}
}

package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

// dicomOffers are the representations of study, series and instance retrieves.
var dicomOffers = []media.Offer{{Type: "multipart/related", PartType: "application/dicom"}}

// target is the resource a WADO-RS request names, its UIDs validated.
type target struct {
	level                 Level
	study, series, sop    string
	frames                []int
	framesRaw             string
	studyPath, seriesPath string
}

// parseTarget validates the UIDs in the path; nothing reaches an upstream before this passes.
func parseTarget(c *echo.Context, level Level) (target, error) {
	t := target{level: level, study: c.Param("study"), series: c.Param("series"), sop: c.Param("instance")}
	if err := checkUID("study UID", t.study); err != nil {
		return t, err
	}
	if level >= SeriesLevel {
		if err := checkUID("series UID", t.series); err != nil {
			return t, err
		}
	}
	if level == InstanceLevel {
		if err := checkUID("SOP instance UID", t.sop); err != nil {
			return t, err
		}
	}
	return t, nil
}

// path is the resource's path below the DICOMweb root.
func (t target) path() string {
	p := "studies/" + t.study
	if t.level >= SeriesLevel {
		p += "/series/" + t.series
	}
	if t.level == InstanceLevel {
		p += "/instances/" + t.sop
	}
	return p
}

func (t target) describe() string {
	switch t.level {
	case StudyLevel:
		return "The study"
	case SeriesLevel:
		return "The series"
	}
	return "The instance"
}

// upstreamAccept re-states the chosen representation for an upstream, keeping the client's
// transfer-syntax. Quoting the type parameter is what PS3.18 shows and every origin accepts.
func upstreamAccept(m media.Match) string {
	a := m.Offer.Type
	if m.Offer.PartType != "" {
		a += `; type="` + m.Offer.PartType + `"`
	}
	if ts := m.TransferSyntax(); ts != "" {
		a += "; transfer-syntax=" + ts
	}
	return a
}

// notFoundOrUnavailable answers a resource no reachable holder has: 404 when every trust that
// may hold it answered, 503 naming the others when some could not be asked (a partial-answer
// policy let the request go on without them), because the resource may be theirs.
func (s *Server) notFoundOrUnavailable(c *echo.Context, t target) error {
	if d, ok := c.Get(ctxPartial).(fallback.Decision); ok && len(d.Missing) > 0 {
		names := make([]string, len(d.Missing))
		for i, m := range d.Missing {
			names[i] = fmt.Sprintf("the PACS of %s (%s) %s", m.ID, m.Name, m.Reason)
		}
		retry := s.cfg.Fallback.RetryAfter
		if retry <= 0 {
			retry = fallback.DefaultRetryAfter
		}
		return &Error{Status: http.StatusServiceUnavailable, RetryAfter: retry, Warnings: d.Warnings,
			Message: fmt.Sprintf("%s is held only by trusts that cannot answer now: %s", t.describe(), strings.Join(names, "; "))}
	}
	return notFound("%s %s holds no instances at any trust.", t.describe(), t.path())
}

// judgeRetrieve asks fallback whether a study or series answer may go ahead without the
// given sources. A refusal is returned as the error to answer with; a partial answer that the
// policy allows (warn, 206) is remembered on the request, and answerStatus applies it.
func (s *Server) judgeRetrieve(c *echo.Context, missing []upstream.Outcome, what string) error {
	d := fallback.DecideRetrieve(missing, what, s.agent(c), s.cfg.Fallback)
	if len(d.Missing) == 0 {
		return nil
	}
	s.logMissing(c, "retrieve", d)
	s.metrics.incomplete(d.Status)
	if !d.OK() {
		return decisionError(d)
	}
	if prev, ok := c.Get(ctxPartial).(fallback.Decision); ok {
		d = fallback.Merge(prev, d)
	}
	c.Set(ctxPartial, d)
	return nil
}

// answerStatus sets the Warning headers of a partial answer the policy allowed and returns
// the status to send: 200, or 206 under partialRetrieve: 206.
func (s *Server) answerStatus(c *echo.Context) int {
	d, ok := c.Get(ctxPartial).(fallback.Decision)
	if !ok {
		return http.StatusOK
	}
	for _, w := range d.Warnings {
		c.Response().Header().Add("Warning", w)
	}
	return d.Status
}

// authorizeAndLocate runs steps 2 and 4 of a retrieve: may the caller read this study, and
// which trusts hold it. The context it returns carries the request's planning deadline; the
// caller must call cancel.
func (s *Server) authorizeAndLocate(c *echo.Context, t target) (context.Context, context.CancelFunc, upstream.Location, error) {
	if err := s.authorize(c, policy.Action{Kind: "retrieve", StudyUID: t.study}); err != nil {
		return nil, nil, upstream.Location{}, err
	}
	ctx, cancel := s.deadline(c)
	loc, err := s.locate(ctx, c, t)
	if err != nil {
		cancel()
		return nil, nil, loc, err
	}
	return ctx, cancel, loc, nil
}

// locate finds the study's holders, answering 404 when no trust holds it and 503 when the
// trusts that could not be asked might.
func (s *Server) locate(ctx context.Context, c *echo.Context, t target) (upstream.Location, error) {
	// A holder whose cached answer says it held the study stays a holder while it cannot
	// answer; what it is then asked for is judged on its own (a stale copy of its metadata,
	// marked; or a 503 for pixel data, which is never cached).
	loc := s.locator.Locate(s.staleOK(ctx), t.study)
	if len(loc.Holders) == 0 {
		if un := loc.Unreached(); len(un) > 0 {
			return loc, decisionError(fallback.Unavailable(un, t.describe(), s.agent(c), s.cfg.Fallback))
		}
		return loc, notFound("No trust holds study %s.", t.study)
	}
	return loc, nil
}

func (s *Server) retrieveHandler(level Level) echo.HandlerFunc {
	return func(c *echo.Context) error {
		t, err := parseTarget(c, level)
		if err != nil {
			return err
		}
		rep, err := negotiate(c, dicomOffers, "DICOM instances")
		if err != nil {
			return err
		}
		ctx, cancel, loc, err := s.authorizeAndLocate(c, t)
		if err != nil {
			return err
		}
		defer cancel()
		accept := upstreamAccept(rep)
		if level == InstanceLevel || len(loc.Holders) == 1 && len(loc.Unreached()) == 0 {
			return s.streamFromFirst(c, t, loc, t.path(), nil, accept)
		}
		if err := s.judgeRetrieve(c, loc.Unreached(), t.describe()); err != nil {
			return err
		}
		inv, err := s.inventory(ctx, c, t, loc.Holders)
		if err != nil {
			return err
		}
		if len(inv.union) == 0 {
			return s.notFoundOrUnavailable(c, t)
		}
		// A holder whose copy is whole is asked first, alone; its answer is still checked part
		// by part against the listings (each instance once, none missing, none unlisted), as
		// a composite answer is.
		return s.streamComposite(c, t, inv.preferringComplete(), accept)
	}
}

// streamFromFirst fetches path from the first holder that answers, failing over to the next
// before any byte is sent, and passes its multipart body through byte for byte, checking that
// it ends complete. A holder that answers 404 is skipped (copies differ); if every holder
// failed otherwise, the answer is 503 naming them.
//
// Sources that could not be asked while locating the study (loc.Unreached) may hold what every
// holder lacks: then the answer is 503, not 404.
func (s *Server) streamFromFirst(c *echo.Context, t target, loc upstream.Location, path string, query url.Values, accept string) error {
	var failed []upstream.Outcome
	notFoundCount := 0
	for _, src := range loc.Holders {
		resp, err := src.Fetch(c.Request().Context(), path, query, accept)
		if err != nil {
			if upstream.IsClientGone(err) {
				return err
			}
			if upstream.IsNotFound(err) {
				notFoundCount++
				continue
			}
			var se *upstream.StatusError
			if errors.As(err, &se) && (se.Status == http.StatusNotAcceptable || se.Status == http.StatusBadRequest) {
				// The representation asked for is what the origin refuses; the next copy may serve it.
				failed = append(failed, upstream.Outcome{Source: src, Err: err})
				continue
			}
			s.log.Warn("retrieve failed over", "request_id", requestID(c), "source", src.ID, "reason", upstream.Reason(err))
			failed = append(failed, upstream.Outcome{Source: src, Err: err})
			continue
		}
		ans, err := openAnswer(src, resp, accept)
		if err != nil {
			// A sign-in page, an error page with a 200, parts of another type: not what was
			// asked for. Try the next copy.
			s.log.Warn("retrieve failed over", "request_id", requestID(c), "source", src.ID, "reason", upstream.Reason(err))
			failed = append(failed, upstream.Outcome{Source: src, Err: err})
			continue
		}
		s.noteRefused(c, failed, t.describe())
		return s.passThrough(c, t, ans)
	}
	if len(failed) == 0 && notFoundCount > 0 && len(loc.Unreached()) > 0 {
		failed = loc.Unreached()
	}
	if len(failed) == 0 && notFoundCount > 0 {
		if t.level == StudyLevel {
			// The remembered holders no longer have the study.
			s.locator.Forget(c.Request().Context(), t.study)
		}
		return notFound("%s was not found at any trust that holds the study.", t.describe())
	}
	if err := notAcceptableAmong(failed, t); err != nil {
		return err
	}
	d := fallback.Unavailable(failed, t.describe(), s.agent(c), s.cfg.Fallback)
	s.logMissing(c, "retrieve", d)
	return decisionError(d)
}

// passThrough sends a checked trust answer (openAnswer) on. A single-part body is copied byte
// for byte. A multipart body is re-framed part by part under the proxy's boundary: part bodies
// are copied unchanged, part headers are rebuilt from checked values (partHeader), with any
// Content-Location pointing at the proxy, so no upstream address leaves in a part header. No
// header of the trust's response is sent; the Content-Type is the representation asked for.
// A body that ends before its closing delimiter, or a later part of another type, is
// aborted, so no client can take a truncated study for a complete one.
func (s *Server) passThrough(c *echo.Context, t target, ans *trustAnswer) error {
	src, resp := ans.src, ans.resp
	defer resp.Body.Close()
	if err := s.record(c, audit.Event{Action: "retrieve", StudyUIDs: []string{t.study}, Sources: []string{src.ID}, Status: http.StatusOK}); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	if !ans.asked.multipart() {
		h.Set("Content-Type", ans.asked.contentType(""))
		if resp.ContentLength >= 0 {
			h.Set("Content-Length", itoa(int(resp.ContentLength)))
		}
		c.Response().WriteHeader(s.answerStatus(c))
		if headOnly(c) {
			return nil
		}
		if _, err := media.Copy(c.Response(), resp.Body); err != nil {
			s.abort(c, src, err)
		}
		return nil
	}
	out := s.coalesce(c)
	mw := media.NewWriter(out)
	h.Set("Content-Type", ans.asked.contentType(mw.Boundary()))
	c.Response().WriteHeader(s.answerStatus(c))
	if headOnly(c) {
		return out.Close()
	}
	if _, err := reframe(mw, ans, s.rewriter(c)); err != nil {
		mw.Abort()
		s.abort(c, src, markBroken(resp, src, err))
	}
	if err := mw.Close(); err != nil {
		s.abort(c, src, err)
	}
	if err := out.Close(); err != nil {
		s.abort(c, src, err)
	}
	return nil
}

// headOnly reports whether the request is a HEAD. A HEAD of a retrieve is answered as its GET
// is, up to the status and headers: the study is located and planned and the first trust's
// answer awaited (its status decides the answer's), and then nothing of its body is read or
// sent. Answers the proxy builds itself (searches, metadata) are built whole, and net/http
// sends none of their body.
func headOnly(c *echo.Context) bool { return c.Request().Method == http.MethodHead }

// coalesce returns a writer that gathers a stream's small writes into large ones (see
// media.Coalescer). It is remembered on the request so that abort can stop it.
func (s *Server) coalesce(c *echo.Context) *media.Coalescer {
	co := media.NewCoalescer(c.Response())
	c.Set(ctxCoalescer, co)
	return co
}

// markBroken classifies a failure found while reading an upstream body. A framing error (no
// closing delimiter, a part that ends early) is the source's invalid answer and is reported to
// it, so its breaker and /status count the call as failed; read errors were already seen by
// the source's own wrappers.
func markBroken(resp *http.Response, src *upstream.Source, err error) error {
	var we *media.WriteError
	if errors.As(err, &we) {
		return err
	}
	var te *upstream.TransportError
	if !errors.As(err, &te) {
		err = &upstream.InvalidResponseError{Source: src.ID, Err: err}
	}
	upstream.MarkFailed(resp.Body, err)
	return err
}

// abort ends a response whose body is already partly sent, without its closing delimiter or
// final chunk: the connection is reset so the client sees an error, never a short study.
func (s *Server) abort(c *echo.Context, src *upstream.Source, err error) {
	if co, ok := c.Get(ctxCoalescer).(*media.Coalescer); ok {
		co.Discard()
	}
	var we *media.WriteError
	switch {
	case clientCutOff(c):
		// The client stopped reading for longer than its write deadline: its own failure. The
		// trust is not charged (its body is closed unread, which its breaker does not count).
		s.metrics.abort(src.ID, "client_timeout")
		s.log.Warn("client stopped reading; response cut off", "request_id", requestID(c), "source", src.ID, "client_write_timeout", s.cfg.ClientWriteTimeout.String())
	case errors.As(err, &we) || c.Request().Context().Err() != nil:
		// Our client went away; nothing to tell it.
		s.metrics.abort(src.ID, "client")
		s.log.Info("client left during a stream", "request_id", requestID(c), "source", src.ID)
	default:
		s.metrics.abort(src.ID, "upstream")
		s.log.Error("upstream stream broke; response aborted", "request_id", requestID(c), "source", src.ID, "reason", upstream.Reason(err), "err", err)
	}
	panic(http.ErrAbortHandler)
}

// inventory lists, for each holder, the instances it has of the target (study or series).
type inventory struct {
	holders []*upstream.Source
	// has maps holder id -> SOP instance UID -> series UID.
	has   map[string]map[string]string
	union map[string]string // SOP instance UID -> series UID
}

// inventory lists what each holder has of the target now (listHoldings, past the cache), for
// plan. A holder that cannot be listed completely is judged like an unreached one: under the
// default policy the retrieve is refused (503 naming it); under a partial policy it goes on
// without that holder, marked. The listing of every other holder is complete, even where its
// PACS cuts its search answers short.
func (s *Server) inventory(ctx context.Context, c *echo.Context, t target, holders []*upstream.Source) (*inventory, error) {
	series := ""
	if t.level == SeriesLevel {
		series = t.series
	}
	h := listHoldings(upstream.BypassCache(ctx), t.study, series, holders)
	if h.failEmptyListings(upstream.BypassCache(ctx), t.study, series) && t.level == StudyLevel {
		// A holder's location says it holds the study and its listing says it holds none of
		// it: one of the two is out of date, so the next request locates the study afresh.
		s.locator.Forget(ctx, t.study)
	}
	s.logListingFailures(c, h.failed)
	inv := &inventory{holders: h.holders, has: map[string]map[string]string{}, union: h.union()}
	for id, l := range h.listed {
		inv.has[id] = l.series
	}
	if err := s.judgeRetrieve(c, h.failed, t.describe()); err != nil {
		return nil, err
	}
	return inv, nil
}

// preferringComplete returns the inventory with the holders whose copy has every instance held
// anywhere first (each group in its priority order), so that a plan asks one of them alone.
func (inv *inventory) preferringComplete() *inventory {
	var complete, partial []*upstream.Source
	for _, h := range inv.holders {
		if len(inv.has[h.ID]) == len(inv.union) {
			complete = append(complete, h)
		} else {
			partial = append(partial, h)
		}
	}
	out := *inv
	out.holders = append(complete, partial...)
	return &out
}

// step is one upstream fetch of a composite answer.
type step struct {
	src  *upstream.Source
	path string
	// sops are the instances of the union this step must deliver: each is sent by this step
	// or was sent by an earlier one when the step ends, or the answer is aborted and src is
	// blamed. No instance is given to two steps.
	sops []string
}

// plan covers the union of instances with as few fetches as it can: the preferred holder's
// whole copy, then whole series from others where the preferred copy lacks the series, then
// single instances.
func (inv *inventory) plan(t target, holders []*upstream.Source) ([]step, bool) {
	covered := map[string]bool{}
	var steps []step
	if len(holders) == 0 {
		return nil, false
	}
	first := holders[0]
	lead := step{src: first, path: t.path()}
	for sop := range inv.has[first.ID] {
		covered[sop] = true
		lead.sops = append(lead.sops, sop)
	}
	sort.Strings(lead.sops)
	steps = append(steps, lead)
	for _, h := range holders[1:] {
		has := inv.has[h.ID]
		// Series missing entirely so far, and complete at h.
		bySeries := map[string][]string{}
		for sop, series := range inv.union {
			if !covered[sop] {
				bySeries[series] = append(bySeries[series], sop)
			}
		}
		seriesUIDs := make([]string, 0, len(bySeries))
		for se := range bySeries {
			seriesUIDs = append(seriesUIDs, se)
		}
		sort.Strings(seriesUIDs)
		for _, se := range seriesUIDs {
			missing := bySeries[se]
			total := 0
			for _, s2 := range inv.union {
				if s2 == se {
					total++
				}
			}
			atH := 0
			for sop, s2 := range has {
				if s2 == se && !covered[sop] {
					atH++
				}
			}
			if atH == 0 {
				continue
			}
			sort.Strings(missing)
			if len(missing) == total && atH == total {
				steps = append(steps, step{src: h, path: "studies/" + t.study + "/series/" + se, sops: missing})
				for _, sop := range missing {
					covered[sop] = true
				}
				continue
			}
			for _, sop := range missing {
				if has[sop] != "" {
					steps = append(steps, step{src: h, path: "studies/" + t.study + "/series/" + se + "/instances/" + sop, sops: []string{sop}})
					covered[sop] = true
				}
			}
		}
	}
	return steps, len(covered) == len(inv.union)
}

// streamComposite answers with every instance held anywhere, each once, when no single holder
// has them all: the parts of several upstream answers are re-framed into one multipart body.
// The first fetch may fail over to a plan led by another holder; once a byte is sent, any
// failure aborts the response.
//
// Each part is known by the SOP Instance UID in its file meta information, not by its place
// in the stream (see delivery): a part whose instance was already sent, or that is not in the
// union, is skipped, whatever the trusts send. A step that ends without every instance it was
// planned to deliver, or a part that is not a PS3.10 file, is its holder's invalid answer:
// the response is aborted, never closed as if complete.
func (s *Server) streamComposite(c *echo.Context, t target, inv *inventory, accept string) error {
	ctx := c.Request().Context()
	holders := inv.holders
	var failed []upstream.Outcome
	for len(holders) > 0 {
		steps, ok := inv.plan(t, holders)
		if !ok {
			break
		}
		ans, err := s.fetchAnswer(ctx, steps[0], accept)
		if err != nil {
			if upstream.IsClientGone(err) {
				return err
			}
			failed = append(failed, upstream.Outcome{Source: steps[0].src, Err: err})
			holders = holders[1:]
			continue
		}
		if err := s.record(c, audit.Event{Action: "retrieve", StudyUIDs: []string{t.study}, Sources: stepSources(steps), Status: http.StatusOK}); err != nil {
			ans.resp.Body.Close()
			return err
		}
		s.noteRefused(c, failed, t.describe())
		rw := s.rewriter(c)
		d := newDelivery(inv.union)
		out := s.coalesce(c)
		mw := media.NewWriter(out)
		h := c.Response().Header()
		h.Set("Content-Type", mw.ContentType("application/dicom"))
		h.Set("Cache-Control", "no-store")
		c.Response().WriteHeader(s.answerStatus(c))
		if headOnly(c) {
			ans.resp.Body.Close()
			return out.Close()
		}
		for i, st := range steps {
			if i > 0 {
				ans, err = s.fetchAnswer(ctx, st, accept)
				if err != nil {
					mw.Abort()
					s.abort(c, st.src, err)
				}
			}
			skippedBefore := d.skipped
			_, err := reframeParts(mw, ans, rw, d)
			if err == nil {
				err = d.checkStep(st)
			}
			if err != nil {
				err = markBroken(ans.resp, st.src, err)
				ans.resp.Body.Close()
				mw.Abort()
				s.abort(c, st.src, err)
			}
			ans.resp.Body.Close()
			if n := d.skipped - skippedBefore; n > 0 {
				s.log.Warn("composite retrieve skipped parts already sent", "request_id", requestID(c), "source", st.src.ID, "parts", n)
			}
		}
		if src, err := d.checkAll(steps); err != nil {
			mw.Abort()
			s.abort(c, src, err)
		}
		if err := mw.Close(); err != nil {
			s.abort(c, steps[len(steps)-1].src, err)
		}
		if err := out.Close(); err != nil {
			s.abort(c, steps[len(steps)-1].src, err)
		}
		return nil
	}
	if err := notAcceptableAmong(failed, t); err != nil {
		return err
	}
	d := fallback.Unavailable(failed, t.describe(), s.agent(c), s.cfg.Fallback)
	s.logMissing(c, "retrieve", d)
	return decisionError(d)
}

// notAcceptableAmong answers 406 when a holder refused the representation asked for: the
// others failing too does not make the request one that could succeed later.
func notAcceptableAmong(failed []upstream.Outcome, t target) error {
	for _, f := range failed {
		var se *upstream.StatusError
		if errors.As(f.Err, &se) && se.Status == http.StatusNotAcceptable {
			return notAcceptable("No trust holding %s can send it in the representation asked for.", strings.ToLower(t.describe()))
		}
	}
	return nil
}

// fetchAnswer fetches one step of a composite answer and checks it (openAnswer).
func (s *Server) fetchAnswer(ctx context.Context, st step, accept string) (*trustAnswer, error) {
	resp, err := st.src.Fetch(ctx, st.path, nil, accept)
	if err != nil {
		return nil, err
	}
	return openAnswer(st.src, resp, accept)
}

func stepSources(steps []step) []string {
	var out []string
	for _, st := range steps {
		if !contains(out, st.src.ID) {
			out = append(out, st.src.ID)
		}
	}
	return out
}

// reframe copies every part of a checked multipart answer into mw and returns how many it
// copied. Part bodies pass unchanged, part headers are rebuilt (partHeader); a
// Content-Location below the source's root becomes the same resource at the proxy, any other
// is dropped. A part of a type not asked for, or a body that ends early, is an error.
func reframe(mw *media.Writer, ans *trustAnswer, rw *rewriter) (int, error) {
	return reframeParts(mw, ans, rw, nil)
}

// reframeParts is reframe, choosing parts by their SOP instance when d is not nil: each
// part's head is read up to the end of its file meta information (at most
// media.MaxFileMetaBytes, never the whole part), and the part is copied only if its instance
// was not sent yet; the head is then sent before the rest of the part, unchanged. A part that
// is not a PS3.10 file is an error wrapping media.ErrNotPart10; a part whose instance is not in
// the union (the trust did not list it) is an error wrapping ErrUnlistedInstance. It returns
// how many parts it copied.
func reframeParts(mw *media.Writer, ans *trustAnswer, rw *rewriter, d *delivery) (int, error) {
	src := ans.src
	n := 0
	for i := 0; ; i++ {
		p, err := ans.next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		var head []byte
		var sop string
		if d != nil {
			meta, h, err := media.ReadFileMeta(p, d.headBuffer())
			if err != nil {
				return n, fmt.Errorf("read part %d: %w", i+1, err)
			}
			sop = meta.SOPInstanceUID
			if _, listed := d.union[sop]; !listed {
				// The trust's answer and its own listing disagree: the listing that planned
				// this answer cannot be trusted to be whole, and the part may not be of what
				// was asked for.
				return n, fmt.Errorf("part %d is an instance %s did not list: %w", i+1, src.ID, ErrUnlistedInstance)
			}
			if d.sent[sop] {
				// A duplicate: the rest of the part is read and dropped by NextPart.
				d.skipped++
				continue
			}
			head = h
		}
		h := partHeader(p.Header)
		if loc := p.ContentLocation(); loc != "" {
			if rel, ok := relativeTo(src, loc); ok {
				h.Set("Content-Location", rw.base+"/"+stripQuery(rel))
			}
		}
		pw, err := mw.CreatePartHeader(h)
		if err != nil {
			return n, err
		}
		if len(head) > 0 {
			if _, err := pw.Write(head); err != nil {
				return n, err
			}
		}
		if _, err := media.Copy(pw, p); err != nil {
			return n, err
		}
		if d != nil {
			d.sent[sop] = true
		}
		n++
	}
}

// ErrUnlistedInstance reports an upstream answer with an instance its trust did not list for
// it: its listing and its answer disagree, so neither can be taken as whole.
var ErrUnlistedInstance = errors.New("upstream answer holds an instance its trust did not list")

// ErrInstancesMissing reports an upstream answer that ended without instances its trust
// listed for it: a composite answer that went on would lack them.
var ErrInstancesMissing = errors.New("upstream answer lacks instances its trust listed")

// delivery is what a composite answer must send and what it has sent, by SOP Instance UID.
// It keeps the UIDs only, never part bytes, and one reusable buffer for a part's head.
type delivery struct {
	union   map[string]string // SOP instance UID -> series UID: exactly what the answer must hold
	sent    map[string]bool
	skipped int // parts read and not sent: duplicates of instances already sent
	head    []byte
}

func newDelivery(union map[string]string) *delivery {
	return &delivery{union: union, sent: make(map[string]bool, len(union))}
}

// headBuffer returns the buffer a part's head is read into, made on first use.
func (d *delivery) headBuffer() []byte {
	if d.head == nil {
		d.head = make([]byte, media.MaxFileMetaBytes)
	}
	return d.head
}

// checkStep fails with ErrInstancesMissing when an instance st was planned to deliver has
// not been sent.
func (d *delivery) checkStep(st step) error {
	got := 0
	for _, sop := range st.sops {
		if d.sent[sop] {
			got++
		}
	}
	if got < len(st.sops) {
		return fmt.Errorf("%s sent %d of the %d instances it listed: %w", st.src.ID, got, len(st.sops), ErrInstancesMissing)
	}
	return nil
}

// checkAll is the last check before a composite answer is closed: every instance of the
// union was sent. It returns the holder of a step that should have sent a missing one (the
// last step's holder when no step was given it) with an error wrapping ErrInstancesMissing.
// After checkStep has passed for every step of a complete plan it cannot fail; it guards
// against a plan that does not cover the union.
func (d *delivery) checkAll(steps []step) (*upstream.Source, error) {
	missing := 0
	for sop := range d.union {
		if !d.sent[sop] {
			missing++
		}
	}
	if missing == 0 {
		return nil, nil
	}
	src := steps[len(steps)-1].src
	for _, st := range steps {
		if d.checkStep(st) != nil {
			src = st.src
			break
		}
	}
	return src, fmt.Errorf("composite answer lacks %d of the %d instances held: %w", missing, len(d.union), ErrInstancesMissing)
}

package dicomweb

import (
	"context"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/upstream"
)

// dicomOffers are the representations of study, series and instance retrieves.
var dicomOffers = []media.Offer{{Type: "multipart/related", PartType: "application/dicom"}}

// retrieval is a request that reads a study (a retrieve, metadata, frames, a rendered image, a
// thumbnail, bulk data) on its way through the pipeline: what it names, in which
// representation, who holds it, and what fallback has decided so far.
type retrieval struct {
	c   *echo.Context
	t   target
	rep media.Match
	// ctx bounds locating and planning by the request timeout; streams outlive it. cancel
	// must be called when the request ends.
	ctx    context.Context
	cancel context.CancelFunc
	// holders are the trusts to ask, preferred first; unreached the ones that could not be
	// asked where the study is, which may hold it too.
	holders   []*upstream.Source
	unreached []upstream.Outcome
	// patient is the NHS number of the study's patient, authorized by locate.
	patient string
	// verdict is every fallback decision about the answer so far: a partial answer the policy
	// allows, copies stood in for, answers refused. The writer sends it.
	verdict fallback.Decision
	// derived is set when the answer is made from the study rather than being part of it (a
	// thumbnail): no holder sending it says nothing of where the study is held.
	derived bool
}

// parseStep parses a part of a request beyond its target (frames, rendering parameters),
// before the representation is negotiated.
type parseStep func(r *retrieval) error

// prepare runs the request path of a route that reads a study up to its holders: the target's
// UIDs are validated, then the route's own parameters (parse), the representation negotiated
// from offers (what names the resource in a 406), the caller authorized (admit), the study
// located and the caller authorized for its patient (locate). The caller must call r.cancel.
func (s *Server) prepare(c *echo.Context, level Level, offers []media.Offer, what string, parse ...parseStep) (*retrieval, error) {
	t, err := parseTarget(c, level)
	if err != nil {
		return nil, err
	}
	r := &retrieval{c: c, t: t}
	for _, p := range parse {
		if err := p(r); err != nil {
			return nil, err
		}
	}
	if err := s.admit(r, offers, what); err != nil {
		return nil, err
	}
	if err := s.locate(r); err != nil {
		r.cancel()
		return nil, err
	}
	return r, nil
}

// admit negotiates the representation and authorizes the caller to read the study r names:
// the one place every route that reads a study is authorized. On success r.ctx is set and
// r.cancel must be called.
func (s *Server) admit(r *retrieval, offers []media.Offer, what string) error {
	rep, err := negotiate(r.c, offers, what)
	if err != nil {
		return err
	}
	r.rep = rep
	if err := s.authorize(r.c, r.action()); err != nil {
		return err
	}
	r.ctx, r.cancel = s.deadline(r.c)
	return nil
}

// action is what the request asks to do, for authorization: read the study it names.
func (r *retrieval) action() policy.Action {
	return policy.Action{Kind: "retrieve", StudyUID: r.t.study}
}

// locate finds the study's holders (fallback.Locate judges which to ask), answering 404 when no
// trust holds it and 503 when the trusts that could not be asked might; then the patient the
// holders file it under (patientOf: refused when they name none, or several), for whom the
// caller is authorized before anything of the study is fetched. Finding the holders may have
// asked every trust where the study is (the locator's search by its UID): that is all a
// caller refused for the patient makes the trusts do.
func (s *Server) locate(r *retrieval) error {
	loc := s.locator.Locate(s.staleOK(r.ctx), r.t.study)
	r.holders, r.unreached = fallback.Locate(loc, s.cfg.Fallback)
	if len(r.holders) == 0 {
		return decisionError(fallback.NotLocated(r.unreached, r.t.describe(), r.t.study, s.cfg.Fallback))
	}
	ids := make([]string, len(r.holders))
	for i, h := range r.holders {
		ids[i] = h.ID
	}
	patient, err := s.patientOf(r.c, loc.Patients, "this study", ids)
	if err != nil {
		return err
	}
	r.patient = patient
	return s.authorizePatient(r.c, r.action(), patient)
}

// retrieveHandler answers study, series and instance retrieves (PS3.18 §10.4.1.1.1). An
// instance, or a study or series one trust alone holds, is passed through from the first
// holder that answers. Otherwise every holder's copy is listed and the answer holds each
// instance held anywhere exactly once (plan.go, composite.go).
func (s *Server) retrieveHandler(level Level) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r, err := s.prepare(c, level, dicomOffers, "DICOM instances")
		if err != nil {
			return err
		}
		defer r.cancel()
		accept := upstreamAccept(r.rep)
		if level == InstanceLevel || len(r.holders) == 1 && len(r.unreached) == 0 {
			return s.streamFromFirst(r, r.t.path(), nil, accept)
		}
		if err := s.judge(c, &r.verdict, "retrieve", fallback.DecideRetrieve(r.unreached, r.t.describe(), s.cfg.Fallback)); err != nil {
			return err
		}
		inv, err := s.inventory(r)
		if err != nil {
			return err
		}
		if len(inv.union) == 0 {
			return decisionError(fallback.Absent(r.verdict, r.t.describe(), r.t.path(), s.cfg.Fallback))
		}
		return s.streamComposite(r, inv, accept)
	}
}

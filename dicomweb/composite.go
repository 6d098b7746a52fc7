package dicomweb

import (
	"context"
	"slices"

	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

// inventory lists what each holder has of the target now (listHoldings, past the cache), for
// plan. A holder that cannot be listed completely is judged like an unreached one: under the
// default policy the retrieve is refused (503 naming it); under a partial policy it goes on
// without that holder, marked. The listing of every other holder is complete, even where its
// PACS cuts its search answers short.
func (s *Server) inventory(r *retrieval) (*inventory, error) {
	series := ""
	if r.t.level == SeriesLevel {
		series = r.t.series
	}
	ctx := upstream.BypassCache(r.ctx)
	h := listHoldings(ctx, r.t.study, series, r.holders)
	if h.failEmptyListings(ctx, r.t.study, series) && r.t.level == StudyLevel {
		// A holder's location says it holds the study and its listing says it holds none of
		// it: one of the two is out of date, so the next request locates the study afresh.
		s.locator.Forget(r.ctx, r.t.study)
	}
	s.logListingFailures(r.c, h.failed)
	inv := &inventory{holders: h.holders, has: map[string]map[string]string{}, union: h.union()}
	for id, l := range h.listed {
		inv.has[id] = l.series
	}
	if err := s.judge(r.c, &r.verdict, "retrieve", fallback.DecideRetrieve(h.failed, r.t.describe(), s.cfg.Fallback)); err != nil {
		return nil, err
	}
	return inv, nil
}

// streamComposite answers with every instance held anywhere, each once, when no single holder
// has them all: the parts of several upstream answers are re-framed into one multipart body.
// The holders are tried in fallback's order (complete copies first); the first fetch of a plan
// led by one may fail over to a plan led by the next (upstream.FirstOf); once a byte is sent,
// any failure aborts the response.
func (s *Server) streamComposite(r *retrieval, inv *inventory, accept string) error {
	holders := fallback.CompleteFirst(inv.holders, inv.held, len(inv.union))
	var steps []step
	won, tried, err := upstream.FirstOf(r.c.Request().Context(), holders, func(ctx context.Context, src *upstream.Source) (*trustAnswer, error) {
		var ok bool
		if steps, ok = inv.plan(r.t, holders[slices.Index(holders, src):]); !ok {
			return nil, upstream.ErrGiveUp
		}
		return fetchStep(ctx, steps[0], accept)
	})
	s.logFailover(r.c, tried)
	if err != nil {
		return err
	}
	if won.Source == nil {
		// Every holder here listed instances of the target, so one that answers 404 for it
		// failed like any other.
		return s.refusal(r.c, "retrieve", fallback.NotSent(tried, r.t.describe(), s.cfg.Fallback))
	}
	if err := s.judge(r.c, &r.verdict, "retrieve", fallback.FailedOver(tried, r.t.describe(), s.agent())); err != nil {
		won.Value.resp.Body.Close()
		return err
	}
	return s.sendComposite(r, inv, steps, won.Value, accept)
}

// sendComposite sends a composite answer whose first step's answer is first.
//
// Each part is known by the SOP Instance UID in its file meta information, not by its place
// in the stream (see delivery): a part whose instance was already sent, or that is not in the
// union, is skipped, whatever the trusts send. A step that ends without every instance it was
// planned to deliver, or a part that is not a PS3.10 file, is its holder's invalid answer:
// the response is aborted, never closed as if complete.
func (s *Server) sendComposite(r *retrieval, inv *inventory, steps []step, first *trustAnswer, accept string) error {
	st := s.openStream(r.c)
	mw := media.NewWriter(st.out)
	ev := audit.Event{StudyUIDs: []string{r.t.study}, Sources: stepSources(steps)}
	if err := s.startAnswer(r.c, r.verdict, ev, mw.ContentType("application/dicom"), -1); err != nil {
		first.resp.Body.Close()
		st.out.Discard()
		return err
	}
	if headOnly(r.c) {
		first.resp.Body.Close()
		return st.close()
	}
	rw, d := s.rewriter(r.c), newDelivery(inv.union)
	for i, step := range steps {
		ans := first
		if i > 0 {
			var err error
			if ans, err = fetchStep(r.c.Request().Context(), step, accept); err != nil {
				mw.Abort()
				st.abort(step.src, err)
			}
		}
		skippedBefore := d.skipped
		err := reframeParts(mw, ans, rw, d)
		if err == nil {
			err = d.checkStep(step)
		}
		if err != nil {
			err = markBroken(ans, err)
			ans.resp.Body.Close()
			mw.Abort()
			st.abort(step.src, err)
		}
		ans.resp.Body.Close()
		if n := d.skipped - skippedBefore; n > 0 {
			s.log.Warn("composite retrieve skipped parts already sent", "request_id", requestID(r.c), "source", step.src.ID, "parts", n)
		}
	}
	if src, err := d.checkAll(steps); err != nil {
		mw.Abort()
		st.abort(src, err)
	}
	last := steps[len(steps)-1].src
	if err := mw.Close(); err != nil {
		st.abort(last, err)
	}
	if err := st.close(); err != nil {
		st.abort(last, err)
	}
	return nil
}

// fetchStep fetches one step of a composite answer and checks it (openAnswer).
func fetchStep(ctx context.Context, st step, accept string) (*trustAnswer, error) {
	resp, err := st.src.Fetch(ctx, st.path, nil, accept)
	if err != nil {
		return nil, err
	}
	return openAnswer(st.src, resp, accept)
}

// stepSources are the trusts a composite answer draws on, each once.
func stepSources(steps []step) []string {
	var out []string
	for _, st := range steps {
		if !slices.Contains(out, st.src.ID) {
			out = append(out, st.src.ID)
		}
	}
	return out
}

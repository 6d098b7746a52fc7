package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

// streamFromFirst fetches path from the first holder whose answer is what was asked for
// (openAnswer), failing over to the next before any byte is sent (upstream.FirstOf), and passes
// it through (passThrough). When no holder sends it, fallback decides the answer (noCopy).
func (s *Server) streamFromFirst(r *retrieval, path string, query url.Values, accept string) error {
	return s.firstAnswer(r, r.t.describe(), func(ctx context.Context, src *upstream.Source) (*trustAnswer, error) {
		resp, err := src.Fetch(ctx, path, query, accept)
		if err != nil {
			return nil, err
		}
		return openAnswer(src, resp, accept)
	})
}

// firstAnswer passes through the answer of the first holder for which try succeeds, in the
// holders' order; what names the resource in the words fallback gives the client.
func (s *Server) firstAnswer(r *retrieval, what string, try func(context.Context, *upstream.Source) (*trustAnswer, error)) error {
	won, tried, err := upstream.FirstOf(r.c.Request().Context(), r.holders, try)
	s.logFailover(r.c, tried)
	if err != nil {
		return err
	}
	if won.Source == nil {
		return s.noCopy(r, what, tried)
	}
	if err := s.judge(r.c, &r.verdict, "retrieve", fallback.FailedOver(tried, what, s.agent())); err != nil {
		won.Value.resp.Body.Close()
		return err
	}
	return s.passThrough(r, won.Value)
}

// noCopy answers a request no holder sent an answer to, as fallback decides (NoCopy): 404,
// 406 or 503. A study whose remembered holders all answered 404 for it is forgotten, so the
// next request locates it afresh.
func (s *Server) noCopy(r *retrieval, what string, tried []upstream.Outcome) error {
	d := fallback.NoCopy(tried, r.unreached, what, s.cfg.Fallback)
	if d.Status == http.StatusNotFound && r.t.level == StudyLevel && !r.derived {
		s.locator.Forget(r.c.Request().Context(), r.t.study)
	}
	return s.refusal(r.c, "retrieve", d)
}

// passThrough sends a checked trust answer (openAnswer) on. A single-part body is copied byte
// for byte. A multipart body is re-framed part by part under the proxy's boundary: part bodies
// are copied unchanged, part headers are rebuilt from checked values (partHeader), with any
// Content-Location pointing at the proxy, so no upstream address leaves in a part header. No
// header of the trust's response is sent; the Content-Type is the representation asked for.
// A body that ends before its closing delimiter, or a later part of another type, is
// aborted, so no client can take a truncated study for a complete one.
func (s *Server) passThrough(r *retrieval, ans *trustAnswer) error {
	defer ans.resp.Body.Close()
	ev := audit.Event{StudyUIDs: []string{r.t.study}, Sources: []string{ans.src.ID}}
	if !ans.asked.multipart() {
		if err := s.startAnswer(r.c, r.verdict, ev, ans.asked.contentType(""), ans.resp.ContentLength); err != nil || headOnly(r.c) {
			return err
		}
		if _, err := media.Copy(r.c.Response(), ans.resp.Body); err != nil {
			(&answerStream{s: s, c: r.c}).abort(ans.src, err)
		}
		return nil
	}
	st := s.openStream(r.c)
	mw := media.NewWriter(st.out)
	if err := s.startAnswer(r.c, r.verdict, ev, ans.asked.contentType(mw.Boundary()), -1); err != nil {
		st.out.Discard()
		return err
	}
	if headOnly(r.c) {
		return st.close()
	}
	if err := reframeParts(mw, ans, s.rewriter(r.c), nil); err != nil {
		mw.Abort()
		st.abort(ans.src, markBroken(ans, err))
	}
	if err := mw.Close(); err != nil {
		st.abort(ans.src, err)
	}
	if err := st.close(); err != nil {
		st.abort(ans.src, err)
	}
	return nil
}

// headOnly reports whether the request is a HEAD. A HEAD of a retrieve is answered as its GET
// is, up to the status and headers: the study is located and planned and the first trust's
// answer awaited (its status decides the answer's), and then nothing of its body is read or
// sent. Answers the proxy builds itself (searches, metadata) are built whole, and net/http
// sends none of their body.
func headOnly(c *echo.Context) bool { return c.Request().Method == http.MethodHead }

// isWriteError reports whether err is a failure to write to our client.
func isWriteError(err error) bool {
	var we *media.WriteError
	return errors.As(err, &we)
}

// markBroken classifies a failure found while reading a trust's answer. A framing error (no
// closing delimiter, a part that ends early) is the trust's invalid answer and is reported to
// it, so its breaker and /status count the call as failed; read errors were already seen by
// the source's own wrappers, and write errors are our client's.
func markBroken(ans *trustAnswer, err error) error {
	if isWriteError(err) {
		return err
	}
	var te *upstream.TransportError
	if !errors.As(err, &te) {
		err = &upstream.InvalidResponseError{Source: ans.src.ID, Err: err}
	}
	upstream.MarkFailed(ans.resp.Body, err)
	return err
}

// reframeParts copies every part of a checked multipart answer into mw. Part bodies pass
// unchanged, part headers are rebuilt (partHeader); a Content-Location below the source's root
// becomes the same resource at the proxy, any other is dropped. A part of a type not asked for,
// or a body that ends early, is an error.
//
// With a delivery d, parts are chosen by their SOP instance: each part's head is read up to
// the end of its file meta information (at most media.MaxFileMetaBytes, never the whole part),
// and the part is copied only if its instance was not sent yet; the head is then sent before
// the rest of the part, unchanged. A part that is not a PS3.10 file is an error wrapping
// media.ErrNotPart10; a part whose instance is not in the union (the trust did not list it) is
// an error wrapping ErrUnlistedInstance.
func reframeParts(mw *media.Writer, ans *trustAnswer, rw *rewriter, d *delivery) error {
	for i := 0; ; i++ {
		p, err := ans.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		head, sop, keep, err := d.choose(p, ans.src, i)
		if err != nil {
			return err
		}
		if !keep {
			continue
		}
		h := partHeader(p.Header)
		if loc := p.ContentLocation(); loc != "" {
			if rel, ok := relativeTo(ans.src, loc); ok {
				h.Set("Content-Location", rw.base+"/"+stripQuery(rel))
			}
		}
		pw, err := mw.CreatePartHeader(h)
		if err != nil {
			return err
		}
		if len(head) > 0 {
			if _, err := pw.Write(head); err != nil {
				return err
			}
		}
		if _, err := media.Copy(pw, p); err != nil {
			return err
		}
		d.sent(sop)
	}
}

// choose reads the head of part i of src's answer and decides whether to send it: a part of
// an instance not sent yet is, with its head to send first; a duplicate is skipped. A nil
// delivery sends every part as it is.
func (d *delivery) choose(p *media.Part, src *upstream.Source, i int) (head []byte, sop string, keep bool, err error) {
	if d == nil {
		return nil, "", true, nil
	}
	meta, head, err := media.ReadFileMeta(p, d.headBuffer())
	if err != nil {
		return nil, "", false, fmt.Errorf("read part %d: %w", i+1, err)
	}
	sop = meta.SOPInstanceUID
	if _, listed := d.union[sop]; !listed {
		// The trust's answer and its own listing disagree: the listing that planned this
		// answer cannot be trusted to be whole, and the part may not be of what was asked for.
		return nil, "", false, fmt.Errorf("part %d is an instance %s did not list: %w", i+1, src.ID, ErrUnlistedInstance)
	}
	if d.done[sop] {
		// A duplicate: the rest of the part is read and dropped by NextPart.
		d.skipped++
		return nil, "", false, nil
	}
	return head, sop, true, nil
}

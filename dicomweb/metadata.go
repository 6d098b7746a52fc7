package dicomweb

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

// metadataHandler answers study, series and instance metadata. Every holder's metadata is
// asked for at once; the answer lists each instance held anywhere exactly once, taking the
// preferred holder's copy, with patient identity normalised and every URL rewritten. Bodies
// are decoded one instance at a time, so memory does not grow with the study.
func (s *Server) metadataHandler(level Level) echo.HandlerFunc {
	return func(c *echo.Context) error {
		t, err := parseTarget(c, level)
		if err != nil {
			return err
		}
		rep, err := negotiate(c, jsonOffers, "metadata")
		if err != nil {
			return err
		}
		ctx, cancel, loc, err := s.authorizeAndLocate(c, t)
		if err != nil {
			return err
		}
		defer cancel()
		if err := s.judgeRetrieve(c, loc.Unreached(), "The metadata of "+strings.ToLower(t.describe())); err != nil {
			return err
		}
		holders := loc.Holders
		if level == InstanceLevel {
			// One copy of one instance is enough; the others are only fallbacks.
			return s.instanceMetadata(c, t, rep, holders)
		}
		// Bodies outlive the planning deadline: they are read while the answer streams.
		results := upstream.FanOutOpen(s.staleOK(c.Request().Context()), holders, func(ctx context.Context, src *upstream.Source) (*http.Response, error) {
			return src.Fetch(ctx, t.path()+"/metadata", nil, "application/dicom+json")
		})
		var open []upstream.Result[*http.Response]
		var failed, stale []upstream.Outcome
		for _, r := range results {
			_, isStale := upstream.AsStale(r.Err)
			switch {
			case r.Err == nil:
				open = append(open, r)
			case isStale && r.Value != nil:
				// The holder failed; its stale cached copy stands in, marked (judgeStale).
				open = append(open, r)
				stale = append(stale, r.Outcome)
			case upstream.IsNotFound(r.Err):
				// This copy lacks the series; the others answer for it.
			default:
				failed = append(failed, r.Outcome)
			}
		}
		closeAll := func() {
			for _, r := range open {
				r.Value.Body.Close()
			}
		}
		if err := s.judgeRetrieve(c, failed, "The metadata of "+strings.ToLower(t.describe())); err != nil {
			closeAll()
			return err
		}
		s.judgeStale(c, stale, "The metadata of "+strings.ToLower(t.describe()))
		if len(open) == 0 {
			if _, partial := c.Get(ctxPartial).(fallback.Decision); !partial && level == StudyLevel {
				s.locator.Forget(ctx, t.study)
			}
			return s.notFoundOrUnavailable(c, t)
		}
		defer closeAll()
		return s.writeMetadata(c, t, rep, open)
	}
}

func (s *Server) instanceMetadata(c *echo.Context, t target, rep media.Match, holders []*upstream.Source) error {
	var failed []upstream.Outcome
	// A stale copy is used only when no holder can answer now.
	var staleResp *http.Response
	var staleOutcome upstream.Outcome
	defer func() {
		if staleResp != nil {
			staleResp.Body.Close()
		}
	}()
	for _, src := range holders {
		resp, err := src.Fetch(s.staleOK(c.Request().Context()), t.path()+"/metadata", nil, "application/dicom+json")
		if _, isStale := upstream.AsStale(err); isStale && resp != nil {
			if staleResp == nil {
				staleResp, staleOutcome = resp, upstream.Outcome{Source: src, Err: err}
			} else {
				resp.Body.Close()
			}
			failed = append(failed, upstream.Outcome{Source: src, Err: err})
			continue
		}
		if err != nil {
			if upstream.IsNotFound(err) {
				continue
			}
			if upstream.IsClientGone(err) {
				return err
			}
			failed = append(failed, upstream.Outcome{Source: src, Err: err})
			continue
		}
		defer resp.Body.Close()
		return s.writeMetadata(c, t, rep, []upstream.Result[*http.Response]{{Outcome: upstream.Outcome{Source: src}, Value: resp}})
	}
	if staleResp != nil {
		s.judgeStale(c, []upstream.Outcome{staleOutcome}, "The instance metadata")
		resp := staleResp
		staleResp = nil
		defer resp.Body.Close()
		return s.writeMetadata(c, t, rep, []upstream.Result[*http.Response]{{Outcome: staleOutcome, Value: resp}})
	}
	if len(failed) > 0 {
		d := fallback.Unavailable(failed, "The instance metadata", s.agent(c), s.cfg.Fallback)
		s.logMissing(c, "metadata", d)
		return decisionError(d)
	}
	return notFound("The instance was not found at any trust that holds the study.")
}

// staleOK marks ctx so that sources' caches return stale copies of holders that fail, when
// the deployment serves stale copies at all (fallback's ServeStale).
func (s *Server) staleOK(ctx context.Context) context.Context {
	if s.cfg.Fallback.ServeStale {
		return upstream.AcceptStale(ctx)
	}
	return ctx
}

// judgeStale asks fallback about holders stood in for by stale cached copies, and remembers
// the warnings on the request for answerStatus.
func (s *Server) judgeStale(c *echo.Context, stale []upstream.Outcome, what string) {
	if len(stale) == 0 {
		return
	}
	d := fallback.DecideStale(stale, what, s.agent(c), s.cfg.Fallback)
	s.logStale(c, "metadata", d)
	if prev, ok := c.Get(ctxPartial).(fallback.Decision); ok {
		d = fallback.Merge(prev, d)
	}
	c.Set(ctxPartial, d)
}

// metadataStream decodes one holder's metadata array one dataset at a time.
type metadataStream struct {
	src  *upstream.Source
	body io.ReadCloser
	dec  *json.Decoder
}

func openMetadata(src *upstream.Source, resp *http.Response) (*metadataStream, error) {
	ct := resp.Header.Get("Content-Type")
	if ct != "" {
		mt, err := media.ParseMediaType(ct)
		if err != nil || !(mt.Essence() == "application/dicom+json" || mt.Essence() == "application/json") {
			return nil, &upstream.InvalidResponseError{Source: src.ID, Err: fmt.Errorf("metadata content type %q is not DICOM JSON", ct)}
		}
	}
	dec := json.NewDecoder(resp.Body)
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('[') {
		return nil, &upstream.InvalidResponseError{Source: src.ID, Err: fmt.Errorf("metadata is not a JSON array")}
	}
	return &metadataStream{src: src, body: resp.Body, dec: dec}, nil
}

// next returns the next dataset, or io.EOF after the closing bracket.
func (m *metadataStream) next() (dcmjson.Dataset, error) {
	if !m.dec.More() {
		if tok, err := m.dec.Token(); err != nil || tok != json.Delim(']') {
			return nil, &upstream.InvalidResponseError{Source: m.src.ID, Err: fmt.Errorf("metadata array does not end")}
		}
		return nil, io.EOF
	}
	var ds dcmjson.Dataset
	if err := m.dec.Decode(&ds); err != nil {
		return nil, &upstream.InvalidResponseError{Source: m.src.ID, Err: err}
	}
	if err := ds.Validate(); err != nil {
		return nil, &upstream.InvalidResponseError{Source: m.src.ID, Err: err}
	}
	return ds, nil
}

// maxMetadataReadAhead bounds what is read ahead of one later holder's metadata while an
// earlier holder's is sent: the size of a large study's metadata. Beyond it reading pauses,
// which is not charged to the trust (its idle timer runs only while the proxy waits on it).
const maxMetadataReadAhead = 16 << 20

// writeMetadata streams the holders' metadata (in priority order) to the client, each SOP
// instance once. The first holder's array is opened before the status is sent, so a source
// that answers garbage at once is a 503, not a broken 200.
func (s *Server) writeMetadata(c *echo.Context, t target, rep media.Match, open []upstream.Result[*http.Response]) error {
	streams := make([]*metadataStream, 0, len(open))
	for i, r := range open {
		if i > 0 {
			// Holders after the first are sent only after it; meanwhile their answers are
			// read ahead, so no trust waits on the proxy (and none is timed) while another
			// holder's metadata goes to the client. The caller's Close of the body ends it.
			r.Value.Body = upstream.ReadAhead(r.Value.Body, maxMetadataReadAhead)
		}
		ms, err := openMetadata(r.Source, r.Value)
		if err != nil {
			upstream.MarkFailed(r.Value.Body, err)
			d := fallback.Unavailable([]upstream.Outcome{{Source: r.Source, Err: err}}, "The metadata", s.agent(c), s.cfg.Fallback)
			s.logMissing(c, "metadata", d)
			return decisionError(d)
		}
		streams = append(streams, ms)
	}
	ids := make([]string, len(streams))
	for i, ms := range streams {
		ids[i] = ms.src.ID
	}
	if err := s.record(c, audit.Event{Action: "retrieve", StudyUIDs: []string{t.study}, Sources: ids, Status: http.StatusOK}); err != nil {
		return err
	}
	rw := s.rewriter(c)
	out := s.newDatasetWriter(c, rep)
	seen := map[string]bool{}
	for _, ms := range streams {
		for {
			ds, err := ms.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				upstream.MarkFailed(ms.body, err)
				out.abort()
				s.abort(c, ms.src, err)
			}
			sop := ds.String(dcmjson.TagSOPInstanceUID)
			if sop != "" && seen[sop] {
				continue
			}
			seen[sop] = true
			normalise(ds, ms.src, s.cfg.PatientIDIssuer)
			rw.rewriteDataset(ds, ms.src)
			if err := out.write(ds); err != nil {
				s.abort(c, ms.src, &media.WriteError{Err: err})
			}
		}
	}
	if len(seen) == 0 && t.level == InstanceLevel {
		out.abort()
		s.abort(c, streams[0].src, fmt.Errorf("instance metadata was an empty array"))
	}
	if err := out.close(); err != nil {
		s.abort(c, streams[len(streams)-1].src, &media.WriteError{Err: err})
	}
	return nil
}

// datasetWriter streams datasets as a JSON array or as multipart DICOM XML.
type datasetWriter struct {
	c   *echo.Context
	out *media.Coalescer
	xml *media.Writer
	n   int
	buf []byte
}

func (s *Server) newDatasetWriter(c *echo.Context, rep media.Match) *datasetWriter {
	w := &datasetWriter{c: c, out: s.coalesce(c)}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	if rep.Offer.PartType == "application/dicom+xml" {
		w.xml = media.NewWriter(w.out)
		h.Set("Content-Type", w.xml.ContentType("application/dicom+xml"))
	} else {
		h.Set("Content-Type", rep.Offer.Type)
	}
	c.Response().WriteHeader(s.answerStatus(c))
	return w
}

func (w *datasetWriter) write(ds dcmjson.Dataset) error {
	if w.xml != nil {
		pw, err := w.xml.CreatePart("application/dicom+xml", "")
		if err != nil {
			return err
		}
		return dcmjson.WriteXML(pw, ds)
	}
	sep := byte(',')
	if w.n == 0 {
		sep = '['
	}
	w.n++
	w.buf = ds.AppendJSON(append(w.buf[:0], sep))
	_, err := w.out.Write(w.buf)
	return err
}

func (w *datasetWriter) close() error {
	if w.xml != nil {
		if err := w.xml.Close(); err != nil {
			return err
		}
		return w.out.Close()
	}
	end := "]"
	if w.n == 0 {
		end = "[]"
	}
	if _, err := io.WriteString(w.out, end); err != nil {
		return err
	}
	return w.out.Close()
}

func (w *datasetWriter) abort() {
	if w.xml != nil {
		w.xml.Abort()
	}
}

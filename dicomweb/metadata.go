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
			return fetchMetadata(ctx, src, t.path()+"/metadata")
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
		// Each answer's first dataset is read before anything is sent: a holder whose answer
		// is not DICOM JSON, or whose first dataset is over the size limit, is judged with
		// those that failed, not found out after the status was sent.
		streams, bad := openMetadataStreams(open)
		failed = append(failed, bad...)
		closeAll := func() {
			for _, ms := range streams {
				ms.body.Close()
			}
		}
		if err := s.judgeRetrieve(c, failed, "The metadata of "+strings.ToLower(t.describe())); err != nil {
			closeAll()
			return err
		}
		s.judgeStale(c, stale, "The metadata of "+strings.ToLower(t.describe()))
		if len(streams) == 0 {
			if _, partial := c.Get(ctxPartial).(fallback.Decision); !partial && level == StudyLevel {
				s.locator.Forget(ctx, t.study)
			}
			return s.notFoundOrUnavailable(c, t)
		}
		defer closeAll()
		return s.writeMetadata(c, t, rep, streams)
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
		resp, err := fetchMetadata(s.staleOK(c.Request().Context()), src, t.path()+"/metadata")
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
		ms, err := openMetadata(src, resp)
		if err != nil {
			// Not DICOM JSON, or its dataset over the size limit: the next copy may do.
			failed = append(failed, upstream.Outcome{Source: src, Err: err})
			continue
		}
		defer ms.body.Close()
		s.noteRefused(c, failed, "The instance metadata")
		return s.writeMetadata(c, t, rep, []*metadataStream{ms})
	}
	if staleResp != nil {
		resp := staleResp
		staleResp = nil
		ms, err := openMetadata(staleOutcome.Source, resp)
		if err == nil {
			s.judgeStale(c, []upstream.Outcome{staleOutcome}, "The instance metadata")
			defer ms.body.Close()
			return s.writeMetadata(c, t, rep, []*metadataStream{ms})
		}
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

// metadataAccept is the representation metadata is asked of a trust in.
const metadataAccept = "application/dicom+json"

// fetchMetadata asks src for the metadata at path and checks that the answer is DICOM JSON
// (checkRepresentation): an HTML page or any other type is refused before a byte of it is
// parsed, the trust charged. A stale copy the cache stands in with is checked the same way.
func fetchMetadata(ctx context.Context, src *upstream.Source, path string) (*http.Response, error) {
	resp, err := src.Fetch(ctx, path, nil, metadataAccept)
	if resp == nil {
		return nil, err
	}
	if cerr := refuseUnlessAsked(src, resp, metadataAccept); cerr != nil {
		return nil, cerr
	}
	return resp, err
}

// maxMetadataDatasetBytes bounds the DICOM JSON of one instance in a trust's metadata answer,
// which is decoded whole into memory: far above a real instance's (its pixel data and other
// bulk data are links, not inline), far below what would strain the proxy. A larger dataset
// is the trust's invalid answer. The bound is approximate by the JSON decoder's read-ahead.
const maxMetadataDatasetBytes = 16 << 20

// errDatasetTooLarge is the reason a metadata dataset over maxMetadataDatasetBytes is refused.
var errDatasetTooLarge = fmt.Errorf("a metadata dataset is larger than %d bytes", maxMetadataDatasetBytes)

// boundedReader fails with errDatasetTooLarge once more than its allowance has been read
// since the last reset.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) reset() { b.left = maxMetadataDatasetBytes }

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errDatasetTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// metadataStream decodes one holder's metadata array one dataset at a time, each at most
// maxMetadataDatasetBytes.
type metadataStream struct {
	src    *upstream.Source
	body   io.ReadCloser
	dec    *json.Decoder
	limit  *boundedReader
	peeked dcmjson.Dataset // the first dataset, read by openMetadata
	ended  bool            // the array ended before a first dataset
}

// openMetadata reads the start of one holder's metadata answer, whose media type
// fetchMetadata checked: the opening bracket and the first dataset, so that an answer that is
// not a DICOM JSON array, or whose first dataset is too large or invalid, fails before
// anything is sent. On failure the body is closed and the trust charged.
func openMetadata(src *upstream.Source, resp *http.Response) (*metadataStream, error) {
	lim := &boundedReader{r: resp.Body}
	lim.reset()
	ms := &metadataStream{src: src, body: resp.Body, dec: json.NewDecoder(lim), limit: lim}
	tok, err := ms.dec.Token()
	if err == nil && tok != json.Delim('[') {
		err = fmt.Errorf("metadata is not a JSON array")
	}
	if err == nil {
		ms.peeked, err = ms.next()
		if err == io.EOF {
			ms.ended, err = true, nil
		}
	}
	if err != nil {
		err = invalidAnswer(src, err)
		refuse(resp, err)
		return nil, err
	}
	return ms, nil
}

// openMetadataStreams opens the holders' answers (openMetadata) in priority order. The
// answers of holders after the first are read ahead (upstream.ReadAhead), so no trust waits
// on the proxy, and none is timed, while another holder's metadata goes to the client. It
// returns the streams opened and the outcomes of the holders whose answers failed to open.
func openMetadataStreams(open []upstream.Result[*http.Response]) ([]*metadataStream, []upstream.Outcome) {
	var streams []*metadataStream
	var failed []upstream.Outcome
	for i, r := range open {
		if i > 0 {
			r.Value.Body = upstream.ReadAhead(r.Value.Body, maxMetadataReadAhead)
		}
		ms, err := openMetadata(r.Source, r.Value)
		if err != nil {
			failed = append(failed, upstream.Outcome{Source: r.Source, Err: err})
			continue
		}
		streams = append(streams, ms)
	}
	return streams, failed
}

// next returns the next dataset, or io.EOF after the closing bracket.
func (m *metadataStream) next() (dcmjson.Dataset, error) {
	if m.peeked != nil {
		ds := m.peeked
		m.peeked = nil
		return ds, nil
	}
	if m.ended {
		return nil, io.EOF
	}
	m.limit.reset()
	if !m.dec.More() {
		if tok, err := m.dec.Token(); err != nil || tok != json.Delim(']') {
			return nil, &upstream.InvalidResponseError{Source: m.src.ID, Err: fmt.Errorf("metadata array does not end")}
		}
		m.ended = true
		return nil, io.EOF
	}
	var ds dcmjson.Dataset
	if err := m.dec.Decode(&ds); err != nil {
		return nil, invalidAnswer(m.src, err)
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

// writeMetadata streams the holders' metadata (opened by openMetadata, in priority order) to
// the client, each SOP instance once. A holder whose answer turns out invalid after the status
// was sent aborts the response: it is never closed as if complete.
func (s *Server) writeMetadata(c *echo.Context, t target, rep media.Match, streams []*metadataStream) error {
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

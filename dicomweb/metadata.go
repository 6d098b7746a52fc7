package dicomweb

import (
	"context"
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

// metadataHandler answers study, series and instance metadata (PS3.18 §10.4.1.1.2). The
// answer lists each instance held anywhere exactly once, taking the preferred holder's copy,
// with patient identity normalised and every URL rewritten. Bodies are decoded one instance
// at a time, so memory does not grow with the study.
func (s *Server) metadataHandler(level Level) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r, err := s.prepare(c, level, jsonOffers, "metadata")
		if err != nil {
			return err
		}
		defer r.cancel()
		what := "The metadata of " + strings.ToLower(r.t.describe())
		if err := s.judge(c, &r.verdict, "retrieve", fallback.DecideRetrieve(r.unreached, what, s.cfg.Fallback)); err != nil {
			return err
		}
		var streams []*metadataStream
		if level == InstanceLevel {
			streams, err = s.instanceMetadata(r)
		} else {
			streams, err = s.holdersMetadata(r, what)
		}
		if err != nil {
			return err
		}
		defer closeStreams(streams)
		return s.writeMetadata(r, streams)
	}
}

// holdersMetadata asks every holder for its metadata of the study or series at once and opens
// the answers to use (fallback.Triage): the holders' own, or their stale cached copies where
// the policy serves them. Holders whose answers fail, or fail to open, are judged as missing;
// when none is left, fallback decides between 404 and 503 (Absent).
func (s *Server) holdersMetadata(r *retrieval, what string) ([]*metadataStream, error) {
	// Bodies outlive the planning deadline: they are read while the answer streams.
	results := upstream.FanOutOpen(s.staleOK(r.c.Request().Context()), r.holders, func(ctx context.Context, src *upstream.Source) (*http.Response, error) {
		return fetchMetadata(ctx, src, r.t.path()+"/metadata")
	})
	usable, stale, failed := fallback.Triage(results, func(resp *http.Response) bool { return resp != nil })
	// Each answer's first dataset is read before anything is sent: a holder whose answer is
	// not DICOM JSON, or whose first dataset is over the size limit, is judged with those that
	// failed, not found out after the status was sent.
	streams, bad := openMetadataStreams(usable)
	failed = append(failed, bad...)
	err := s.judge(r.c, &r.verdict, "retrieve", fallback.DecideRetrieve(failed, what, s.cfg.Fallback))
	if err == nil {
		err = s.judge(r.c, &r.verdict, "metadata", fallback.DecideStale(stale, what, s.cfg.Fallback))
	}
	if err != nil {
		closeStreams(streams)
		return nil, err
	}
	if len(streams) == 0 {
		if r.verdict.Status == 0 && r.t.level == StudyLevel {
			// Every holder answered, and none has the study: where it is held is out of date.
			s.locator.Forget(r.ctx, r.t.study)
		}
		return nil, decisionError(fallback.Absent(r.verdict, r.t.describe(), r.t.path(), s.cfg.Fallback))
	}
	return streams, nil
}

// instanceMetadata opens the metadata of one instance from the first holder that sends it
// (upstream.FirstOf): one copy is enough. A stale cached copy is used only when no holder can
// answer now.
func (s *Server) instanceMetadata(r *retrieval) ([]*metadataStream, error) {
	const what = "The instance metadata"
	var stale *upstream.Result[*http.Response]
	won, tried, err := upstream.FirstOf(s.staleOK(r.c.Request().Context()), r.holders, func(ctx context.Context, src *upstream.Source) (*metadataStream, error) {
		resp, err := fetchMetadata(ctx, src, r.t.path()+"/metadata")
		if _, isStale := upstream.AsStale(err); isStale && resp != nil {
			if stale == nil {
				stale = &upstream.Result[*http.Response]{Outcome: upstream.Outcome{Source: src, Err: err}, Value: resp}
			} else {
				resp.Body.Close()
			}
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		return openMetadata(src, resp)
	})
	if stale != nil && (err != nil || won.Source != nil) {
		stale.Value.Body.Close()
	}
	switch {
	case err != nil:
		return nil, err
	case won.Source != nil:
		return []*metadataStream{won.Value}, s.judge(r.c, &r.verdict, "retrieve", fallback.FailedOver(tried, what, s.agent()))
	case stale != nil:
		if ms, err := openMetadata(stale.Source, stale.Value); err == nil {
			return []*metadataStream{ms}, s.judge(r.c, &r.verdict, "metadata", fallback.DecideStale([]upstream.Outcome{stale.Outcome}, what, s.cfg.Fallback))
		}
	}
	return nil, s.noCopy(r, what, tried)
}

// closeStreams closes the holders' metadata answers.
func closeStreams(streams []*metadataStream) {
	for _, ms := range streams {
		ms.body.Close()
	}
}

// writeMetadata streams the holders' metadata (opened by openMetadata, in priority order) to
// the client, each SOP instance once. A holder whose answer turns out invalid after the status
// was sent aborts the response: it is never closed as if complete.
func (s *Server) writeMetadata(r *retrieval, streams []*metadataStream) error {
	ids := make([]string, len(streams))
	for i, ms := range streams {
		ids[i] = ms.src.ID
	}
	out, err := s.startDatasets(r.c, r.rep, r.verdict, audit.Event{StudyUIDs: []string{r.t.study}, Sources: ids})
	if err != nil {
		return err
	}
	rw, seen := s.rewriter(r.c), map[string]bool{}
	for _, ms := range streams {
		s.copyMetadata(out, ms, rw, seen)
	}
	if len(seen) == 0 && r.t.level == InstanceLevel {
		out.abortDatasets(streams[0].src, fmt.Errorf("instance metadata was an empty array"))
	}
	if err := out.close(); err != nil {
		out.abort(streams[len(streams)-1].src, &media.WriteError{Err: err})
	}
	return nil
}

// copyMetadata sends the datasets of one holder's metadata not sent yet (by SOP Instance UID,
// in seen), normalised and rewritten. A dataset that fails to decode aborts the answer and is
// charged to the holder.
func (s *Server) copyMetadata(out *datasetWriter, ms *metadataStream, rw *rewriter, seen map[string]bool) {
	for {
		ds, err := ms.next()
		if err == io.EOF {
			return
		}
		if err != nil {
			upstream.MarkFailed(ms.body, err)
			out.abortDatasets(ms.src, err)
		}
		sop := ds.String(dcmjson.TagSOPInstanceUID)
		if sop != "" && seen[sop] {
			continue
		}
		seen[sop] = true
		normalise(ds, ms.src, s.cfg.PatientIDIssuer)
		rw.rewriteDataset(ds, ms.src)
		if err := out.write(ds); err != nil {
			out.abort(ms.src, &media.WriteError{Err: err})
		}
	}
}

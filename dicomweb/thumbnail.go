package dicomweb

import (
	"context"
	"net/http"
	"net/url"
	"sync"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/upstream"
)

// noThumbnails remembers sources that have answered that they do not make thumbnails (as
// Orthanc does), so later thumbnails are derived from rendered images without asking again.
type noThumbnails struct{ m sync.Map }

func (n *noThumbnails) known(id string) bool { _, ok := n.m.Load(id); return ok }
func (n *noThumbnails) mark(id string)       { n.m.Store(id, true) }

// thumbnailHandler proxies thumbnails (PS3.18 §10.4.1.1.5) from the first holder that sends
// one (thumbnailAt).
func (s *Server) thumbnailHandler(level Level, framesPath bool) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r, want, err := s.prepareRendering(c, level, framesPath, true, "A thumbnail")
		if err != nil {
			return err
		}
		defer r.cancel()
		r.derived = true
		return s.firstAnswer(r, "The thumbnail", func(ctx context.Context, src *upstream.Source) (*trustAnswer, error) {
			return s.thumbnailAt(ctx, r, src, want)
		})
	}
}

// thumbnailAt asks one holder for the thumbnail. Where the holder makes none
// (fallback.ThumbnailUnsupported), the thumbnail is a small rendering of a representative
// instance: the first instance of the first series for a study, the first instance of a series.
func (s *Server) thumbnailAt(ctx context.Context, r *retrieval, src *upstream.Source, want rendering) (*trustAnswer, error) {
	accept := r.rep.Offer.Type
	if !s.thumbs.known(src.ID) {
		resp, err := src.Fetch(ctx, r.t.path()+want.frames+"/thumbnail", want.params, accept)
		if err == nil {
			return openAnswer(src, resp, accept)
		}
		derive, remember := fallback.ThumbnailUnsupported(err, r.t.level == InstanceLevel)
		if !derive {
			return nil, err
		}
		if remember {
			s.thumbs.mark(src.ID)
		}
	}
	path, err := representative(r.ctx, src, r.t)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	for k, v := range want.params {
		q[k] = v
	}
	if q.Get("viewport") == "" {
		q.Set("viewport", s.cfg.ThumbnailViewport)
	}
	resp, err := src.Fetch(ctx, path+want.frames+"/rendered", q, accept)
	if err != nil {
		return nil, err
	}
	return openAnswer(src, resp, accept)
}

// representative picks the instance a derived thumbnail shows.
func representative(ctx context.Context, src *upstream.Source, t target) (string, error) {
	if t.level == InstanceLevel {
		return t.path(), nil
	}
	series := t.series
	if t.level == StudyLevel {
		list, err := src.Search(ctx, "studies/"+t.study+"/series", url.Values{"includefield": {dcmjson.TagSeriesNumber}})
		if err != nil {
			return "", err
		}
		series = firstBy(list, dcmjson.TagSeriesNumber, dcmjson.TagSeriesInstanceUID)
	}
	if series == "" {
		return "", &upstream.StatusError{Source: src.ID, Status: http.StatusNotFound}
	}
	list, err := src.Search(ctx, "studies/"+t.study+"/series/"+series+"/instances", url.Values{"includefield": {dcmjson.TagInstanceNumber}})
	if err != nil {
		return "", err
	}
	sop := firstBy(list, dcmjson.TagInstanceNumber, dcmjson.TagSOPInstanceUID)
	if sop == "" {
		return "", &upstream.StatusError{Source: src.ID, Status: http.StatusNotFound}
	}
	return "studies/" + t.study + "/series/" + series + "/instances/" + sop, nil
}

// firstBy returns the UID of the dataset with the lowest number (then UID).
func firstBy(list []dcmjson.Dataset, numberTag, uidTag string) string {
	best := ""
	var bestDS dcmjson.Dataset
	for _, ds := range list {
		uid := ds.String(uidTag)
		if !validUID(uid) {
			continue
		}
		if bestDS == nil {
			best, bestDS = uid, ds
			continue
		}
		c := compareNumber(ds, bestDS, numberTag)
		if c < 0 || c == 0 && uid < best {
			best, bestDS = uid, ds
		}
	}
	return best
}

package dicomweb

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/upstream"
)

// frameOffers are the representations of frames and bulkdata: uncompressed bytes by default,
// or the compressed bitstream as stored when the client asks for it (transfer-syntax=*).
var frameOffers = []media.Offer{
	{Type: "multipart/related", PartType: "application/octet-stream"},
	{Type: "multipart/related", PartType: "image/jpeg"},
	{Type: "multipart/related", PartType: "image/jls"},
	{Type: "multipart/related", PartType: "image/jp2"},
	{Type: "multipart/related", PartType: "image/jpx"},
	{Type: "multipart/related", PartType: "image/dicom-rle"},
	{Type: "multipart/related", PartType: "video/mpeg"},
	{Type: "multipart/related", PartType: "video/mp4"},
	{Type: "multipart/related", PartType: "video/H265"},
}

// renderedOffers are the consumer formats of rendered resources and thumbnails.
var renderedOffers = []media.Offer{{Type: "image/jpeg"}, {Type: "image/png"}, {Type: "image/gif"}}

// frameAccept picks the representation of frames or bulk data the client prefers and states it
// for the upstream, with the client's transfer-syntax. Only one is forwarded: origins such as
// Orthanc refuse an Accept that lists several.
func frameAccept(c *echo.Context, what string) (string, error) {
	m, err := negotiate(c, frameOffers, what)
	if err != nil {
		return "", err
	}
	return upstreamAccept(m), nil
}

func (s *Server) framesHandler(c *echo.Context) error {
	t, err := parseTarget(c, InstanceLevel)
	if err != nil {
		return err
	}
	frames, err := parseFrameList(c.Param("frames"), s.cfg.MaxFrames)
	if err != nil {
		return err
	}
	accept, err := frameAccept(c, "Frames")
	if err != nil {
		return err
	}
	_, cancel, loc, err := s.authorizeAndLocate(c, t)
	if err != nil {
		return err
	}
	defer cancel()
	return s.streamFromFirst(c, t, loc, t.path()+"/frames/"+formatFrameList(frames), nil, accept)
}

// renderedHandler proxies rendered resources (PS3.18 §10.4.1.1.4): consumer images made by the
// origin, with the validated viewport, quality and window parameters.
func (s *Server) renderedHandler(level Level, framesPath bool) echo.HandlerFunc {
	return func(c *echo.Context) error {
		t, err := parseTarget(c, level)
		if err != nil {
			return err
		}
		path := t.path()
		if framesPath {
			frames, err := parseFrameList(c.Param("frames"), s.cfg.MaxFrames)
			if err != nil {
				return err
			}
			path += "/frames/" + formatFrameList(frames)
		}
		params, err := renderParams(c.QueryParam, true)
		if err != nil {
			return err
		}
		rep, err := negotiate(c, renderedOffers, "A rendered image")
		if err != nil {
			return err
		}
		_, cancel, loc, err := s.authorizeAndLocate(c, t)
		if err != nil {
			return err
		}
		defer cancel()
		return s.streamFromFirst(c, t, loc, path+"/rendered", toValues(params), rep.Offer.Type)
	}
}

func toValues(m map[string]string) url.Values {
	v := url.Values{}
	for k, val := range m {
		v.Set(k, val)
	}
	return v
}

// noThumbnails remembers sources that have answered that they do not make thumbnails (as
// Orthanc does), so later thumbnails are derived from rendered images without asking again.
type noThumbnails struct{ m sync.Map }

func (n *noThumbnails) known(id string) bool { _, ok := n.m.Load(id); return ok }
func (n *noThumbnails) mark(id string)       { n.m.Store(id, true) }

// thumbnailHandler proxies thumbnails (PS3.18 §10.4.1.1.5). Where the holder makes none, the
// thumbnail is a small rendering of a representative instance: the first instance of the
// first series for a study, the first instance of a series.
func (s *Server) thumbnailHandler(level Level, framesPath bool) echo.HandlerFunc {
	return func(c *echo.Context) error {
		t, err := parseTarget(c, level)
		if err != nil {
			return err
		}
		framePart := ""
		if framesPath {
			frames, err := parseFrameList(c.Param("frames"), s.cfg.MaxFrames)
			if err != nil {
				return err
			}
			framePart = "/frames/" + itoa(frames[0])
		}
		params, err := renderParams(c.QueryParam, false)
		if err != nil {
			return err
		}
		rep, err := negotiate(c, renderedOffers, "A thumbnail")
		if err != nil {
			return err
		}
		ctx, cancel, loc, err := s.authorizeAndLocate(c, t)
		if err != nil {
			return err
		}
		defer cancel()
		var failed []upstream.Outcome
		for _, src := range loc.Holders {
			if !s.thumbs.known(src.ID) {
				resp, err := src.Fetch(c.Request().Context(), t.path()+framePart+"/thumbnail", toValues(params), rep.Offer.Type)
				if err == nil {
					ans, err := openAnswer(src, resp, rep.Offer.Type)
					if err != nil {
						// Not the image type asked for (an HTML page, an SVG).
						failed = append(failed, upstream.Outcome{Source: src, Err: err})
						continue
					}
					s.noteRefused(c, failed, "The thumbnail")
					return s.passThrough(c, t, ans)
				}
				var se *upstream.StatusError
				if !errors.As(err, &se) || !(se.Status == http.StatusNotFound || se.Status == http.StatusBadRequest || se.Status == http.StatusNotImplemented || se.Status == http.StatusNotAcceptable) {
					failed = append(failed, upstream.Outcome{Source: src, Err: err})
					continue
				}
				if se.Status != http.StatusNotFound || level != InstanceLevel {
					s.thumbs.mark(src.ID)
				}
			}
			path, err := s.representative(ctx, src, t)
			if err != nil {
				if !upstream.IsNotFound(err) {
					failed = append(failed, upstream.Outcome{Source: src, Err: err})
				}
				continue
			}
			q := toValues(params)
			if q.Get("viewport") == "" {
				q.Set("viewport", s.cfg.ThumbnailViewport)
			}
			resp, err := src.Fetch(c.Request().Context(), path+framePart+"/rendered", q, rep.Offer.Type)
			if err != nil {
				if !upstream.IsNotFound(err) {
					failed = append(failed, upstream.Outcome{Source: src, Err: err})
				}
				continue
			}
			ans, err := openAnswer(src, resp, rep.Offer.Type)
			if err != nil {
				failed = append(failed, upstream.Outcome{Source: src, Err: err})
				continue
			}
			s.noteRefused(c, failed, "The thumbnail")
			return s.passThrough(c, t, ans)
		}
		if len(failed) > 0 {
			return decisionError(fallback.Unavailable(failed, "The thumbnail", s.agent(c), s.cfg.Fallback))
		}
		return notFound("No thumbnail can be made for %s.", strings.ToLower(t.describe()))
	}
}

// representative picks the instance a derived thumbnail shows.
func (s *Server) representative(ctx context.Context, src *upstream.Source, t target) (string, error) {
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

// bulkdataHandler fetches the bulk data a signed link names, from the source that gave it. The
// study authorised is the one the link was signed for (see Signer.Verify).
func (s *Server) bulkdataHandler(c *echo.Context) error {
	link, err := s.signer.Verify(c.Param("token"))
	if err != nil {
		return bulkLinkError(err, s.signer.TTL())
	}
	src, ok := s.locator.Source(link.Source)
	if !ok {
		return notFound("The bulkdata link names a trust that is no longer configured.")
	}
	relPath, rawQuery, _ := strings.Cut(link.Rel, "?")
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return notFound("The bulkdata link is invalid.")
	}
	accept, err := frameAccept(c, "Bulk data")
	if err != nil {
		return err
	}
	t := target{level: InstanceLevel, study: link.Study}
	if err := s.authorize(c, policy.Action{Kind: "retrieve", StudyUID: t.study}); err != nil {
		return err
	}
	return s.streamFromFirst(c, t, upstream.Location{Holders: []*upstream.Source{src}}, relPath, query, accept)
}

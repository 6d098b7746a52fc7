package dicomweb

import (
	"net/url"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/media"
)

// renderedOffers are the consumer formats of rendered resources and thumbnails.
var renderedOffers = []media.Offer{{Type: "image/jpeg"}, {Type: "image/png"}, {Type: "image/gif"}}

// rendering is what a rendered image or thumbnail request asks for beyond its target: the
// frames path segment ("" for none) and the validated rendering parameters.
type rendering struct {
	frames string
	params url.Values
}

// prepareRendering is prepare for a rendered image or a thumbnail (what): the target, its
// frames (all of them, or only the first for a thumbnail) and its rendering parameters
// (annotation only for rendered images). The caller must call r.cancel.
func (s *Server) prepareRendering(c *echo.Context, level Level, framesPath, thumbnail bool, what string) (*retrieval, rendering, error) {
	var want rendering
	r, err := s.prepare(c, level, renderedOffers, what, s.parseRendering(&want, framesPath, thumbnail))
	return r, want, err
}

// parseRendering returns the step that parses a rendering's frames and parameters into into.
func (s *Server) parseRendering(into *rendering, framesPath, thumbnail bool) parseStep {
	return func(r *retrieval) error {
		var err error
		switch {
		case framesPath && thumbnail:
			into.frames, err = firstFrameOf(r.c, s.cfg.MaxFrames)
		case framesPath:
			into.frames, err = framesOf(r.c, s.cfg.MaxFrames)
		}
		if err != nil {
			return err
		}
		params, err := renderParams(r.c.QueryParam, !thumbnail)
		if err != nil {
			return err
		}
		into.params = url.Values{}
		for k, v := range params {
			into.params.Set(k, v)
		}
		return nil
	}
}

// renderedHandler proxies rendered resources (PS3.18 §10.4.1.1.4): consumer images made by the
// origin, with the validated viewport, quality and window parameters.
func (s *Server) renderedHandler(level Level, framesPath bool) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r, want, err := s.prepareRendering(c, level, framesPath, false, "A rendered image")
		if err != nil {
			return err
		}
		defer r.cancel()
		return s.streamFromFirst(r, r.t.path()+want.frames+"/rendered", want.params, r.rep.Offer.Type)
	}
}

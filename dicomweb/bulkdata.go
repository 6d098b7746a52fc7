package dicomweb

import (
	"net/url"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/upstream"
)

// bulkdataHandler fetches the bulk data a signed link names (see Signer), from the source that
// gave it. The study authorised is the one the link was signed for.
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
	r := &retrieval{c: c, t: target{level: InstanceLevel, study: link.Study}, holders: []*upstream.Source{src}}
	if err := s.admit(r, frameOffers, "Bulk data"); err != nil {
		return err
	}
	defer r.cancel()
	return s.streamFromFirst(r, relPath, query, upstreamAccept(r.rep))
}

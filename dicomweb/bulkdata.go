package dicomweb

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/upstream"
)

// ruleBulkLinkCaller is the rule a bulk data link presented by a caller it was not issued to
// is refused (and recorded) under: a link is bound to the caller it was signed for.
const ruleBulkLinkCaller = "bulk-link-caller"

// ctxBulkLink is the verified link (BulkLink) of a bulk data request: its audit record's study,
// series and instance (completeEvent), since its route names none.
const ctxBulkLink = "nirproxy.bulk_link"

// bulkdataHandler fetches the bulk data a signed link names (see Signer), from the source that
// gave it, for the caller it was issued to only. The study authorised is the one the link was
// signed for; it is located as every retrieve's study is, so that the caller is authorized for
// its patient, but only the link's source is asked for the data. The request is recorded under
// the link's study, series and instance, answered or refused.
func (s *Server) bulkdataHandler(c *echo.Context) error {
	link, err := s.signer.Verify(c.Param("token"))
	if err != nil {
		return bulkLinkError(err, s.signer.TTL())
	}
	c.Set(ctxBulkLink, link)
	if !s.signer.IssuedTo(link, callerOf(principal(c))) {
		return &policy.Refusal{Rule: ruleBulkLinkCaller, Status: http.StatusForbidden,
			Message: "This bulk data link was issued to another caller; ask for the metadata again to have links of your own."}
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
	r := &retrieval{c: c, t: target{level: InstanceLevel, study: link.Study}}
	if err := s.admit(r, frameOffers, "Bulk data"); err != nil {
		return err
	}
	defer r.cancel()
	if err := s.locate(r); err != nil {
		return err
	}
	r.holders, r.unreached = []*upstream.Source{src}, nil
	return s.streamFromFirst(r, relPath, query, upstreamAccept(r.rep))
}

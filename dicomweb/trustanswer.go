package dicomweb

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/upstream"
)

// A trust's answer reaches a client only in the representation negotiated with that client,
// and only through fields the proxy writes itself: no header of the trust's response is
// copied (its Set-Cookie, WWW-Authenticate, Location, Link, Access-Control-*, Server never
// leave the proxy), the Content-Type sent is built from what was asked, and a multipart
// answer's part headers are rebuilt from checked values. An answer of any other media type
// (an HTML sign-in page, an SVG with a script, a part of the wrong type) is the trust's
// invalid answer: the trust is a failed source, charged to its breaker, and nothing of the
// answer is sent.

// asked is the representation asked of a trust: the Accept sent to it (one media type with
// parameters, as upstreamAccept states it).
type asked struct {
	// essence is the media type: multipart/related, image/jpeg, application/dicom+json.
	essence string
	// partTypes are the media types the parts of a multipart answer may have: the part type
	// asked for, or, when the client accepts any transfer syntax of bulk data, any of the
	// binary types a frame may be sent as.
	partTypes []string
}

// parseAsked reads the Accept the proxy sent. It is the proxy's own text, so an error is a
// programming error; it yields a representation no answer has, so every answer is refused.
func parseAsked(accept string) asked {
	mt, err := media.ParseMediaType(accept)
	if err != nil {
		return asked{essence: "invalid/accept"}
	}
	a := asked{essence: mt.Essence()}
	if pt := mt.Param("type"); pt != "" {
		a.partTypes = []string{pt}
		if mt.Param("transfer-syntax") == "*" && slices.ContainsFunc(frameOffers, func(o media.Offer) bool { return o.PartType == pt }) {
			for _, o := range frameOffers {
				if !slices.Contains(a.partTypes, o.PartType) {
					a.partTypes = append(a.partTypes, o.PartType)
				}
			}
		}
	}
	return a
}

// multipart reports whether a multipart answer was asked for.
func (a asked) multipart() bool { return a.essence == "multipart/related" }

// contentType is the Content-Type the proxy sends for an answer in this representation: the
// media type asked for, with the part type asked for and the proxy's own boundary for a
// multipart answer. Nothing of the trust's Content-Type is in it.
func (a asked) contentType(boundary string) string {
	mt := media.MediaType{Params: map[string]string{}}
	mt.Type, mt.Subtype, _ = strings.Cut(a.essence, "/")
	if a.multipart() {
		if len(a.partTypes) > 0 {
			mt.Params["type"] = a.partTypes[0]
		}
		mt.Params["boundary"] = boundary
	}
	return mt.String()
}

// checkRepresentation reports an answer whose media type is not the one asked for: exactly
// the image type negotiated for a rendered image or thumbnail (image/jpeg, image/png or
// image/gif, never image/svg+xml or text/html, which could run script from the proxy's
// origin); DICOM JSON (application/dicom+json, or application/json as some PACS label it)
// for metadata, which the proxy decodes; multipart/related for instances, frames and bulk
// data, with the part type asked for when the answer states one. An answer without a
// Content-Type is refused too.
func checkRepresentation(src *upstream.Source, resp *http.Response, accept string) error {
	ct := resp.Header.Get("Content-Type")
	a := parseAsked(accept)
	if err := a.check(ct); err != nil {
		return &upstream.InvalidResponseError{Source: src.ID, Err: fmt.Errorf("answered %q to a request for %q: %w", ct, accept, err)}
	}
	return nil
}

// errWrongType is the reason an answer or part of the wrong media type is refused.
var errWrongType = errors.New("not the representation asked for")

// check reports whether a Content-Type is this representation's.
func (a asked) check(ct string) error {
	mt, err := media.ParseMediaType(ct)
	if err != nil {
		return err
	}
	switch got := mt.Essence(); {
	case got == a.essence:
	case a.essence == "application/dicom+json" && got == "application/json":
	default:
		return errWrongType
	}
	if a.multipart() {
		// The type parameter may carry parameters of its own: Orthanc sends
		// type="application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1".
		if pt := mt.Param("type"); pt != "" {
			part, err := media.ParseMediaType(pt)
			if err != nil || !slices.Contains(a.partTypes, part.Essence()) {
				return errWrongType
			}
		}
		if _, err := media.Boundary(ct); err != nil {
			return err
		}
	}
	return nil
}

// refuseUnlessAsked checks an answer's media type against what was asked for
// (checkRepresentation). When it is not, the body is closed unread, the trust charged with the
// failure, and the error returned: nothing of such an answer is ever passed on.
func refuseUnlessAsked(src *upstream.Source, resp *http.Response, accept string) error {
	err := checkRepresentation(src, resp, accept)
	if err != nil {
		refuse(resp, err)
	}
	return err
}

// refuse charges a trust's answer with err and closes it unread.
func refuse(resp *http.Response, err error) {
	upstream.MarkFailed(resp.Body, err)
	resp.Body.Close()
}

// trustAnswer is a trust's answer checked before any byte of it is sent: its media type is
// the one asked for and, for a multipart answer, its first part's header (type included) is
// read and checked, so that an answer of the wrong kind is a failed source the request can
// fail over from, not a response cut off after its status was sent.
type trustAnswer struct {
	src   *upstream.Source
	resp  *http.Response
	asked asked
	parts *media.Reader // multipart answers only
	first *media.Part   // the first part, checked; nil when the answer has none
}

// openAnswer checks a trust's answer to a request sent with accept (checkRepresentation, and
// the first part of a multipart answer with checkPart). On failure the answer is refused (its
// body closed unread, the trust charged) and the error returned.
func openAnswer(src *upstream.Source, resp *http.Response, accept string) (*trustAnswer, error) {
	if err := refuseUnlessAsked(src, resp, accept); err != nil {
		return nil, err
	}
	ans := &trustAnswer{src: src, resp: resp, asked: parseAsked(accept)}
	if !ans.asked.multipart() {
		return ans, nil
	}
	r, err := media.NewReaderFromContentType(resp.Body, resp.Header.Get("Content-Type"))
	if err == nil {
		ans.parts = r
		ans.first, err = ans.next()
	}
	if err == io.EOF {
		return ans, nil
	}
	if err != nil {
		err = invalidAnswer(src, err)
		refuse(resp, err)
		return nil, err
	}
	return ans, nil
}

// invalidAnswer wraps err as the source's invalid answer unless it already is one or is a
// failure to reach it.
func invalidAnswer(src *upstream.Source, err error) error {
	var ie *upstream.InvalidResponseError
	var te *upstream.TransportError
	if errors.As(err, &ie) || errors.As(err, &te) {
		return err
	}
	return &upstream.InvalidResponseError{Source: src.ID, Err: err}
}

// next returns the answer's next part, checked with checkPart; io.EOF after the last.
func (ans *trustAnswer) next() (*media.Part, error) {
	if ans.first != nil {
		p := ans.first
		ans.first = nil
		return p, nil
	}
	p, err := ans.parts.NextPart()
	if err != nil {
		return nil, err
	}
	if err := ans.asked.checkPart(p.Header); err != nil {
		return nil, err
	}
	return p, nil
}

// checkPart reports a part whose Content-Type is missing or not one of the part types asked
// for.
func (a asked) checkPart(h textproto.MIMEHeader) error {
	ct := h.Get("Content-Type")
	mt, err := media.ParseMediaType(ct)
	if err != nil || !slices.Contains(a.partTypes, mt.Essence()) {
		return fmt.Errorf("a part of type %q in an answer of %q parts: %w", ct, strings.Join(a.partTypes, " or "), errWrongType)
	}
	return nil
}

// partHeader is the header the proxy writes for a part it passes on, built from checked
// values only: the part's media type (already checked by checkPart) with its transfer
// syntax when that is a UID, and its Content-Length when that is a number. Any other field a
// trust put in a part header (a Content-Description, a Content-Disposition) is dropped;
// Content-Location is the caller's to set.
func partHeader(h textproto.MIMEHeader) textproto.MIMEHeader {
	out := textproto.MIMEHeader{}
	if mt, err := media.ParseMediaType(h.Get("Content-Type")); err == nil {
		ct := media.MediaType{Type: mt.Type, Subtype: mt.Subtype}
		if ts := mt.Param("transfer-syntax"); validUID(ts) {
			ct.Params = map[string]string{"transfer-syntax": ts}
		}
		out.Set("Content-Type", ct.String())
	}
	if n := h.Get("Content-Length"); n != "" && len(n) <= 19 && strings.Trim(n, "0123456789") == "" {
		out.Set("Content-Length", n)
	}
	return out
}

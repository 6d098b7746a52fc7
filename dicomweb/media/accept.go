package media

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// MediaRange is one element of an Accept field: a media type, possibly with wildcards
// ("*/*", "image/*"), its parameters and its weight.
type MediaRange struct {
	MediaType
	// Q is the weight from 0 to 1; 1 when the client gave none. 0 means "not acceptable".
	Q float64
}

// TransferSyntax returns the transfer-syntax parameter ("*", a UID, or "" when absent).
func (r MediaRange) TransferSyntax() string { return r.Params["transfer-syntax"] }

// String formats the range with its parameters and, when it is not 1, its weight.
func (r MediaRange) String() string {
	s := r.MediaType.String()
	if r.Q != 1 {
		s += fmt.Sprintf("; q=%.3g", r.Q)
	}
	return s
}

// ParseAccept parses an Accept field value (RFC 9110 §12.5.1) into its media ranges, in the
// order the client wrote them. Empty list elements are skipped, so "" gives no ranges and no
// error; the caller then treats the request as having no Accept field.
//
// Parameters may be quoted or bare; a bare value may contain "/" and "*", as in OHIF's
// `multipart/related; type=application/octet-stream; transfer-syntax=*`. Anything else that
// does not parse is an error whose message says what and where, fit for a 400 answer.
func ParseAccept(header string) ([]MediaRange, error) {
	var out []MediaRange
	p := parser{s: header}
	for {
		p.skipOWS()
		if p.done() {
			return out, nil
		}
		if p.peek() == ',' {
			p.i++
			continue
		}
		mr, err := p.mediaRange(true)
		if err != nil {
			return nil, fmt.Errorf("parse Accept %s: %w", quoteShort(header), err)
		}
		out = append(out, mr)
		p.skipOWS()
		if !p.done() && p.peek() != ',' {
			return nil, fmt.Errorf("parse Accept %s: %w", quoteShort(header), p.unexpected(`"," between media ranges`))
		}
	}
}

// errEmptyAcceptParam is returned for "?accept=" with no value.
var errEmptyAcceptParam = errors.New("the accept query parameter is empty")

// ParseAcceptQuery finds the accept query parameter (PS3.18 §8.3.3.1) in a raw query string
// and parses its value as an Accept field. It reports whether the parameter was present.
// Several accept parameters are joined as one list.
//
// The raw query is read rather than url.Values because url.Values turns every "+" into a
// space, and "+" is part of DICOM media types (application/dicom+json) that clients often
// leave unescaped. Here a "+" between two letters or digits stays a "+"; any other "+" is the
// form encoding of a space.
func ParseAcceptQuery(rawQuery string) ([]MediaRange, bool, error) {
	var values []string
	found := false
	for _, kv := range strings.Split(rawQuery, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if k != "accept" {
			continue
		}
		found = true
		dec, err := url.PathUnescape(plusToSpace(v))
		if err != nil {
			return nil, true, fmt.Errorf("decode accept query parameter: %w", err)
		}
		if strings.TrimSpace(dec) == "" {
			return nil, true, errEmptyAcceptParam
		}
		values = append(values, dec)
	}
	if !found {
		return nil, false, nil
	}
	ranges, err := ParseAccept(strings.Join(values, ","))
	if err != nil {
		return nil, true, fmt.Errorf("accept query parameter: %w", err)
	}
	return ranges, true, nil
}

// plusToSpace replaces the "+" that encode spaces in a raw query value, keeping those that
// sit between two letters or digits (dicom+json). A percent-encoded octet before a "+" does
// not count as a letter.
func plusToSpace(v string) string {
	if strings.IndexByte(v, '+') < 0 {
		return v
	}
	b := []byte(v)
	for i, c := range b {
		if c != '+' {
			continue
		}
		prevAlnum := i > 0 && isAlnum(v[i-1]) && !(i >= 3 && v[i-3] == '%')
		nextAlnum := i+1 < len(v) && isAlnum(v[i+1])
		if !prevAlnum || !nextAlnum {
			b[i] = ' '
		}
	}
	return string(b)
}

// RequestRanges returns what a request accepts: the ranges of its accept query parameter when
// there is one (it overrides the header, PS3.18 §8.3.3.1), else those of all its Accept
// fields. No ranges (and no error) means the client stated no preference.
func RequestRanges(r *http.Request) ([]MediaRange, error) {
	if ranges, ok, err := ParseAcceptQuery(r.URL.RawQuery); ok || err != nil {
		return ranges, err
	}
	return ParseAccept(strings.Join(r.Header.Values("Accept"), ","))
}

// Offer is one representation a resource can be sent in.
type Offer struct {
	// Type is the media type of the response: "application/dicom+json", "image/jpeg",
	// "multipart/related".
	Type string
	// PartType is the media type of every part of a multipart response (the type parameter,
	// "application/dicom"); "" for a single-part type.
	PartType string
}

// String formats the offer as the Content-Type of a response would start:
// `multipart/related; type="application/dicom"` or `application/dicom+json`.
func (o Offer) String() string {
	if o.PartType == "" {
		return o.Type
	}
	return o.Type + `; type="` + o.PartType + `"`
}

// Match is one acceptable pairing of an offer with the client's media range that selected it.
type Match struct {
	// Offer is the representation; OfferIndex its position in the offers given.
	Offer      Offer
	OfferIndex int
	// Range is the client's range that matched, for its parameters (transfer-syntax, charset).
	// Without an Accept field it is the zero MediaRange with Q 1.
	Range MediaRange
}

// TransferSyntax returns the transfer-syntax the client asked for with this representation:
// "*" (as stored, no transcoding), a UID, or "" (the resource's default).
func (m Match) TransferSyntax() string { return m.Range.TransferSyntax() }

// Negotiate returns the representation to send: the best of Acceptable. ok is false when the
// client accepts none of the offers (answer 406).
func Negotiate(ranges []MediaRange, offers []Offer) (Match, bool) {
	all := Acceptable(ranges, offers)
	if len(all) == 0 {
		return Match{}, false
	}
	return all[0], true
}

// Acceptable returns every offer the client accepts, in its order of preference, each paired
// with the media range that selected it. List the resource's offers in the server's order of
// preference, its default first: ties in weight keep that order, and a request without
// ranges accepts every offer in that order.
//
// The rules are RFC 9110 §12.5.1 with the DICOM reading of multipart/related (PS3.18 §8.7):
//   - an offer's weight comes from the most specific ranges that match it; a weight of 0 at
//     that level excludes it, whatever less specific ranges say;
//   - "*/*" matches everything, "image/*" every image type, "multipart/*" every multipart offer;
//   - "multipart/related" with a type parameter matches the offers of that part type (type may
//     itself be a wildcard such as "image/*"); without one it means the resource's default
//     part type, which is the part type of the first multipart/related offer;
//   - parameters other than type (transfer-syntax, charset) do not affect matching; they are
//     carried in Match.Range for the handler. When several ranges of equal specificity match
//     one offer (the same part type with different transfer syntaxes), each gives a Match.
func Acceptable(ranges []MediaRange, offers []Offer) []Match {
	if len(offers) == 0 {
		return nil
	}
	if len(ranges) == 0 {
		out := make([]Match, len(offers))
		for i, o := range offers {
			out[i] = Match{Offer: o, OfferIndex: i, Range: MediaRange{Q: 1}}
		}
		return out
	}
	// The default part type of each multipart type is the first offer's.
	defaults := map[string]int{}
	for i, o := range offers {
		if o.PartType == "" {
			continue
		}
		t := strings.ToLower(o.Type)
		if _, ok := defaults[t]; !ok {
			defaults[t] = i
		}
	}
	var out []Match
	var hits []int
	for oi, o := range offers {
		ot, os := splitType(o.Type)
		pt, ps := splitType(o.PartType)
		isDefault := o.PartType != "" && defaults[strings.ToLower(o.Type)] == oi
		best := -1
		hits = hits[:0]
		for ri := range ranges {
			s := specificity(&ranges[ri], ot, os, pt, ps, isDefault)
			switch {
			case s < 0 || s < best:
				continue
			case s > best:
				best = s
				hits = hits[:0]
			}
			hits = append(hits, ri)
		}
		for _, ri := range hits {
			if ranges[ri].Q > 0 {
				out = append(out, Match{Offer: o, OfferIndex: oi, Range: ranges[ri]})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Range.Q > out[j].Range.Q })
	return out
}

// specificity ranks how precisely r names the offer ot/os (with part type pt/ps when
// multipart): -1 no match, 0 "*/*", 1 "type/*", 2 the exact type (for multipart: without a
// part type, meaning the default one, or with type=*/*), 3 part type "image/*", 4 exact part
// type.
func specificity(r *MediaRange, ot, os, pt, ps string, isDefaultPart bool) int {
	if r.Type == "*" {
		return 0
	}
	if r.Type != ot {
		return -1
	}
	if r.Subtype == "*" {
		return 1
	}
	if r.Subtype != os {
		return -1
	}
	if pt == "" {
		return 2
	}
	want, ok := r.Params["type"]
	if !ok || want == "" {
		if isDefaultPart {
			return 2
		}
		return -1
	}
	wt, ws := splitType(want)
	switch {
	case wt == "*" && ws == "*":
		return 2
	case wt != pt:
		return -1
	case ws == "*":
		return 3
	case ws == ps:
		return 4
	}
	return -1
}

// splitType splits "type/subtype" in lower case; a value without "/" gives ("", "").
func splitType(s string) (string, string) {
	t, sub, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "/")
	if !ok {
		return "", ""
	}
	return t, sub
}

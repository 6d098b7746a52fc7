// Package media implements the HTTP side of DICOMweb representations (PS3.18 §8.7): parsing
// media types and Accept fields as real clients send them, choosing a representation for a
// resource, and writing, reading and passing through multipart/related bodies as streams.
//
// Nothing here buffers a whole body: multipart parts are read and written as they arrive,
// and the pass-through copy keeps only a fixed tail window to check that an upstream's body
// ended with its closing delimiter.
package media

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// MediaType is a media type with its parameters, as a Content-Type field or one element of an
// Accept field carries it.
type MediaType struct {
	// Type and Subtype are lower case; "*" stands for a wildcard in an Accept field.
	Type, Subtype string
	// Params holds the parameters with lower-case names and unquoted values, nil when there
	// are none. The value of "type" (the part type of multipart/related) is lower-cased, since
	// media types are case-insensitive; other values keep their case (a boundary is
	// case-sensitive). The Accept weight "q" is never in Params.
	Params map[string]string
}

// Essence returns "type/subtype" without parameters.
func (m MediaType) Essence() string {
	return m.Type + "/" + m.Subtype
}

// Param returns the value of the named parameter (case-insensitive name), or "" when absent.
func (m MediaType) Param(name string) string {
	return m.Params[strings.ToLower(name)]
}

// String formats the media type with its parameters: "type" first, the others in name order,
// values quoted when they are not tokens.
func (m MediaType) String() string {
	var b strings.Builder
	b.WriteString(m.Essence())
	keys := make([]string, 0, len(m.Params))
	for k := range m.Params {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if (keys[i] == "type") != (keys[j] == "type") {
			return keys[i] == "type"
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		b.WriteString("; ")
		b.WriteString(k)
		b.WriteByte('=')
		writeParamValue(&b, k, m.Params[k])
	}
	return b.String()
}

// writeParamValue writes v bare when it is a token, else quoted. The part type of
// multipart/related is always quoted because it contains "/", which RFC 2045 does not allow
// in a token (several clients send it bare; we are strict in what we send).
func writeParamValue(b *strings.Builder, name, v string) {
	if v != "" && name != "type" && isToken(v) {
		b.WriteString(v)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
}

// ParseMediaType parses one media type with optional parameters, as a Content-Type field
// holds it. It is more lenient than mime.ParseMediaType in the ways DICOMweb peers need:
// parameter values may be unquoted even when they contain "/" (type=application/dicom, as
// OHIF and some origins send), and whitespace around "=" is tolerated. Wildcards are refused.
func ParseMediaType(s string) (MediaType, error) {
	p := parser{s: s}
	p.skipOWS()
	mr, err := p.mediaRange(false)
	if err != nil {
		return MediaType{}, fmt.Errorf("parse media type %s: %w", quoteShort(s), err)
	}
	p.skipOWS()
	if !p.done() {
		return MediaType{}, fmt.Errorf("parse media type %s: unexpected %q at offset %d", quoteShort(s), p.s[p.i], p.i)
	}
	if mr.Type == "*" || mr.Subtype == "*" {
		return MediaType{}, fmt.Errorf("parse media type %s: a wildcard is not a media type", quoteShort(s))
	}
	return mr.MediaType, nil
}

// errNotMultipart is returned by Boundary for a Content-Type that is not multipart.
var errNotMultipart = errors.New("not a multipart media type")

// Boundary returns the boundary parameter of a multipart Content-Type, such as an upstream's
// `multipart/related; type="application/dicom"; boundary=xyz`.
func Boundary(contentType string) (string, error) {
	mt, err := ParseMediaType(contentType)
	if err != nil {
		return "", err
	}
	if mt.Type != "multipart" {
		return "", fmt.Errorf("read boundary of %s: %w", quoteShort(contentType), errNotMultipart)
	}
	b := mt.Params["boundary"]
	if err := validBoundary(b); err != nil {
		return "", fmt.Errorf("read boundary of %s: %w", quoteShort(contentType), err)
	}
	return b, nil
}

// validBoundary checks a boundary against RFC 2046 §5.1.1: 1 to 70 characters from bchars,
// not ending in a space.
func validBoundary(b string) error {
	if b == "" {
		return errors.New("missing boundary parameter")
	}
	if len(b) > 70 {
		return fmt.Errorf("boundary is %d characters long, more than 70", len(b))
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if isAlnum(c) || strings.IndexByte("'()+_,-./:=? ", c) >= 0 {
			continue
		}
		return fmt.Errorf("boundary has the character %q, which RFC 2046 does not allow", c)
	}
	if b[len(b)-1] == ' ' {
		return errors.New("boundary ends with a space")
	}
	return nil
}

// parser scans media types and media ranges (RFC 9110 §5.6, §8.3.1, §12.5.1).
type parser struct {
	s string
	i int
}

func (p *parser) done() bool { return p.i >= len(p.s) }

func (p *parser) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.i]
}

func (p *parser) skipOWS() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// token reads an RFC 9110 token; it returns "" when none starts here.
func (p *parser) token() string {
	start := p.i
	for !p.done() && isTchar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// mediaRange reads "type/subtype *( OWS ; OWS name=value )". When accept is true the weight
// "q" is taken out of the parameters; otherwise q is an ordinary parameter.
func (p *parser) mediaRange(accept bool) (MediaRange, error) {
	mr, err := p.essence()
	if err != nil {
		return MediaRange{}, err
	}
	seenQ := false
	for {
		name, val, ok, err := p.param(mr.Type, mr.Subtype)
		if err != nil {
			return MediaRange{}, err
		}
		if !ok {
			return mr, nil
		}
		if accept && name == "q" {
			if seenQ {
				return MediaRange{}, fmt.Errorf("%s/%s has more than one q parameter", mr.Type, mr.Subtype)
			}
			q, err := parseQ(val)
			if err != nil {
				return MediaRange{}, fmt.Errorf("%s/%s: %w", mr.Type, mr.Subtype, err)
			}
			mr.Q, seenQ = q, true
			continue
		}
		if err := mr.addParam(name, val); err != nil {
			return MediaRange{}, err
		}
	}
}

// essence reads "type/subtype" and returns it as a MediaRange of weight 1 with both names
// lower-cased and no parameters. A wildcard type with a concrete subtype is refused.
func (p *parser) essence() (MediaRange, error) {
	start := p.i
	typ := p.token()
	if typ == "" {
		return MediaRange{}, p.unexpected("a media type")
	}
	if p.peek() != '/' {
		return MediaRange{}, fmt.Errorf("%q is not of the form type/subtype", p.s[start:p.i])
	}
	p.i++
	sub := p.token()
	if sub == "" {
		return MediaRange{}, p.unexpected("a subtype after " + typ + "/")
	}
	mr := MediaRange{MediaType: MediaType{Type: strings.ToLower(typ), Subtype: strings.ToLower(sub)}, Q: 1}
	if mr.Type == "*" && mr.Subtype != "*" {
		return MediaRange{}, fmt.Errorf("%q has a wildcard type with a concrete subtype", p.s[start:p.i])
	}
	return mr, nil
}

// param reads one "OWS ; OWS name=value" following the media range typ/sub, which its error
// messages name, and returns the name lower-cased and the value unquoted. It returns ok
// false and no error when no parameter follows: at anything but ";", or after a trailing
// ";" that ends the field or the element.
func (p *parser) param(typ, sub string) (name, val string, ok bool, err error) {
	p.skipOWS()
	if p.peek() != ';' {
		return "", "", false, nil
	}
	p.i++
	p.skipOWS()
	if p.done() || p.peek() == ',' {
		// A trailing ";" with nothing after it: tolerated, as browsers do.
		return "", "", false, nil
	}
	name = strings.ToLower(p.token())
	if name == "" {
		return "", "", false, p.unexpected("a parameter name")
	}
	p.skipOWS()
	if p.peek() != '=' {
		return "", "", false, fmt.Errorf("parameter %q of %s/%s has no value", name, typ, sub)
	}
	p.i++
	p.skipOWS()
	val, err = p.paramValue()
	if err != nil {
		return "", "", false, fmt.Errorf("parameter %q of %s/%s: %w", name, typ, sub, err)
	}
	return name, val, true, nil
}

// addParam adds the parameter name=val to m, name already lower-cased; the value of "type"
// is lower-cased too. A name m already has is an error.
func (m *MediaType) addParam(name, val string) error {
	if name == "type" {
		val = strings.ToLower(val)
	}
	if m.Params == nil {
		m.Params = make(map[string]string, 2)
	}
	if _, dup := m.Params[name]; dup {
		return fmt.Errorf("%s/%s has the parameter %q twice", m.Type, m.Subtype, name)
	}
	m.Params[name] = val
	return nil
}

// paramValue reads a quoted string or a lenient bare value: any visible character except
// the separators ',', ';' and '"'. The bare form admits "/" and "*" so that
// type=application/octet-stream and transfer-syntax=* parse as clients mean them.
func (p *parser) paramValue() (string, error) {
	if p.peek() == '"' {
		return p.quoted()
	}
	start := p.i
	for !p.done() {
		c := p.s[p.i]
		if c <= ' ' || c >= 0x7f || c == ',' || c == ';' || c == '"' {
			break
		}
		p.i++
	}
	if p.i == start {
		return "", p.unexpected("a value")
	}
	return p.s[start:p.i], nil
}

// quoted reads an RFC 9110 quoted-string and returns its content with quoted-pairs undone.
func (p *parser) quoted() (string, error) {
	start := p.i
	p.i++ // opening quote
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return "", fmt.Errorf("quoted value at offset %d ends with a lone backslash", start)
			}
			if e := p.s[p.i+1]; e < ' ' && e != '\t' || e == 0x7f {
				return "", fmt.Errorf("quoted value at offset %d has a control character", start)
			}
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case c < ' ' && c != '\t' || c == 0x7f:
			return "", fmt.Errorf("quoted value at offset %d has a control character", start)
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return "", fmt.Errorf("quoted value at offset %d has no closing quote", start)
}

func (p *parser) unexpected(want string) error {
	if p.done() {
		return fmt.Errorf("expected %s at the end", want)
	}
	return fmt.Errorf("expected %s at offset %d, found %q", want, p.i, p.s[p.i])
}

// parseQ parses a weight (RFC 9110 §12.4.2): a number from 0 to 1 with at most three
// decimals. Further decimals are tolerated and dropped; exponents, signs and values above 1
// are refused.
func parseQ(s string) (float64, error) {
	bad := fmt.Errorf("q=%s is not a weight between 0 and 1", s)
	whole, frac, _ := strings.Cut(s, ".")
	if len(whole) != 1 || !isDigit(whole[0]) {
		return 0, bad
	}
	milli := int(whole[0]-'0') * 1000
	for i := 0; i < len(frac); i++ {
		if !isDigit(frac[i]) {
			return 0, bad
		}
		if i < 3 {
			milli += int(frac[i]-'0') * [3]int{100, 10, 1}[i]
		}
	}
	if milli > 1000 || milli == 1000 && strings.Trim(frac, "0") != "" {
		return 0, bad
	}
	return float64(milli) / 1000, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlnum(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// isTchar reports whether c may appear in an RFC 9110 token.
func isTchar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return s != ""
}

// quoteShort quotes s for an error message, cut to a length a log line can carry.
func quoteShort(s string) string {
	const max = 120
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

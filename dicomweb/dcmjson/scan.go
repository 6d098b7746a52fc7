package dcmjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// The proxy decodes every upstream answer, so decoding is on its hot path. encoding/json
// decodes DICOM JSON through reflection, a map per object and a copy per value; this scanner
// reads the one shape DICOM JSON has (an array of objects of tag: {vr, Value | BulkDataURI |
// InlineBinary}) in one pass, validating as strictly as encoding/json and keeping each value as
// a slice of the input. It is checked against encoding/json by FuzzDecode.

type scanner struct {
	data []byte
	i    int
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", s.i, fmt.Sprintf(format, args...))
}

func (s *scanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte) error {
	s.ws()
	if s.peek() != c {
		if s.i >= len(s.data) {
			return s.errorf("unexpected end of input, want %q", c)
		}
		return s.errorf("found %q, want %q", s.data[s.i], c)
	}
	s.i++
	return nil
}

// object reads a JSON object, calling member for each key with the scanner at its value;
// member must consume the value.
func (s *scanner) object(member func(key string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	s.ws()
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		key, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		s.ws()
		if err := member(key); err != nil {
			return err
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errorf("want , or } in an object")
		}
	}
}

// array reads a JSON array, calling item with the scanner at each element; item must consume
// it.
func (s *scanner) array(item func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	s.ws()
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if err := item(); err != nil {
			return err
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.errorf("want , or ] in an array")
		}
	}
}

// decodeArray reads a JSON array of DICOM JSON objects.
func (s *scanner) decodeArray() ([]Dataset, error) {
	var out []Dataset
	err := s.array(func() error {
		if s.peek() == 'n' {
			return s.errorf("null where a DICOM JSON object belongs")
		}
		ds, err := s.decodeObject()
		out = append(out, ds)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// decodeObject reads one DICOM JSON object: tag keys (upper-cased) to elements.
func (s *scanner) decodeObject() (Dataset, error) {
	ds := Dataset{}
	err := s.object(func(key string) error {
		var el *Element
		if s.peek() == 'n' {
			if err := s.literal("null"); err != nil {
				return err
			}
		} else {
			var err error
			if el, err = s.decodeElement(); err != nil {
				return fmt.Errorf("element %s: %w", key, err)
			}
		}
		ds[upperHex(key)] = el
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ds, nil
}

// upperHex upper-cases a tag key without allocating when it already is.
func upperHex(k string) string {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c >= 'a' && c <= 'z' {
			return strings.ToUpper(k)
		}
	}
	return k
}

func (s *scanner) decodeElement() (*Element, error) {
	el := &Element{}
	err := s.object(func(key string) error {
		var err error
		// Member names match case-insensitively, as encoding/json matches them.
		switch {
		case strings.EqualFold(key, "vr"):
			el.VR, err = s.str()
		case strings.EqualFold(key, "BulkDataURI"):
			el.BulkDataURI, err = s.str()
		case strings.EqualFold(key, "InlineBinary"):
			el.InlineBinary, err = s.str()
		case strings.EqualFold(key, "Value"):
			el.Value = nil // a repeated member replaces the earlier one, as in encoding/json
			if s.peek() == 'n' {
				return s.literal("null")
			}
			el.Value = []json.RawMessage{}
			err = s.array(func() error {
				start := s.i
				if err := s.skip(0); err != nil {
					return err
				}
				el.Value = append(el.Value, json.RawMessage(s.data[start:s.i:s.i]))
				return nil
			})
		default:
			// Other members (none are defined) are checked and ignored, as encoding/json does.
			err = s.skip(0)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return el, nil
}

// maxDepth bounds nesting as encoding/json does, so a hostile answer cannot exhaust the stack.
const maxDepth = 10000

// skip validates and steps over one JSON value.
func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.errorf("nested deeper than %d", maxDepth)
	}
	s.ws()
	switch c := s.peek(); {
	case c == '"':
		_, err := s.str()
		return err
	case c == '{':
		return s.object(func(string) error { return s.skip(depth + 1) })
	case c == '[':
		return s.array(func() error { return s.skip(depth + 1) })
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case s.i >= len(s.data):
		return s.errorf("unexpected end of input")
	default:
		return s.errorf("unexpected %q", c)
	}
}

func (s *scanner) literal(lit string) error {
	if len(s.data)-s.i < len(lit) || string(s.data[s.i:s.i+len(lit)]) != lit {
		return s.errorf("invalid literal, want %s", lit)
	}
	s.i += len(lit)
	return nil
}

// number validates a JSON number (RFC 8259 grammar).
func (s *scanner) number() error {
	start := s.i
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
			s.i++
		}
	default:
		s.i = start
		return s.errorf("invalid number")
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return s.errorf("invalid number: no digit after the point")
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return s.errorf("invalid number: no digit in the exponent")
		}
	}
	return nil
}

func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

var errString = errors.New("invalid string")

// str reads a JSON string and returns its value. ASCII strings without escapes (nearly all of
// them) are taken as they are; others go through encoding/json.
func (s *scanner) str() (string, error) {
	if s.peek() != '"' {
		return "", s.errorf("want a string")
	}
	start := s.i
	s.i++
	escaped := false
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			if !escaped {
				return string(s.data[start+1 : s.i-1]), nil
			}
			var v string
			if err := json.Unmarshal(s.data[start:s.i], &v); err != nil {
				return "", fmt.Errorf("offset %d: %w", start, errString)
			}
			return v, nil
		case c == '\\':
			escaped = true
			s.i += 2
			continue
		case c < 0x20:
			return "", s.errorf("control character in a string")
		case c >= 0x80:
			// Non-ASCII (rare in keys, VRs and URIs) goes through encoding/json, which
			// replaces invalid UTF-8 as it always has.
			escaped = true
		}
		s.i++
	}
	return "", s.errorf("unterminated string")
}

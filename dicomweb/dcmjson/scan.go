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

// decodeArray reads a JSON array of DICOM JSON objects.
func (s *scanner) decodeArray() ([]Dataset, error) {
	if err := s.expect('['); err != nil {
		return nil, err
	}
	var out []Dataset
	s.ws()
	if s.peek() == ']' {
		s.i++
		return out, nil
	}
	for {
		s.ws()
		if strings.HasPrefix(string(s.data[s.i:min(s.i+4, len(s.data))]), "null") {
			return nil, s.errorf("null where a DICOM JSON object belongs")
		}
		ds, err := s.decodeObject()
		if err != nil {
			return nil, err
		}
		out = append(out, ds)
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return out, nil
		default:
			return nil, s.errorf("want , or ] after an object")
		}
	}
}

// decodeObject reads one DICOM JSON object: tag keys (upper-cased) to elements.
func (s *scanner) decodeObject() (Dataset, error) {
	if err := s.expect('{'); err != nil {
		return nil, err
	}
	ds := Dataset{}
	s.ws()
	if s.peek() == '}' {
		s.i++
		return ds, nil
	}
	for {
		s.ws()
		key, err := s.str()
		if err != nil {
			return nil, err
		}
		if err := s.expect(':'); err != nil {
			return nil, err
		}
		s.ws()
		var el *Element
		if s.peek() == 'n' {
			if err := s.literal("null"); err != nil {
				return nil, err
			}
		} else if el, err = s.decodeElement(); err != nil {
			return nil, fmt.Errorf("element %s: %w", key, err)
		}
		ds[upperHex(key)] = el
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return ds, nil
		default:
			return nil, s.errorf("want , or } in an object")
		}
	}
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
	if err := s.expect('{'); err != nil {
		return nil, err
	}
	el := &Element{}
	s.ws()
	if s.peek() == '}' {
		s.i++
		return el, nil
	}
	for {
		s.ws()
		key, err := s.str()
		if err != nil {
			return nil, err
		}
		if err := s.expect(':'); err != nil {
			return nil, err
		}
		s.ws()
		// Member names match case-insensitively, as encoding/json matches them.
		switch {
		case strings.EqualFold(key, "vr"):
			if el.VR, err = s.str(); err != nil {
				return nil, err
			}
		case strings.EqualFold(key, "BulkDataURI"):
			if el.BulkDataURI, err = s.str(); err != nil {
				return nil, err
			}
		case strings.EqualFold(key, "InlineBinary"):
			if el.InlineBinary, err = s.str(); err != nil {
				return nil, err
			}
		case strings.EqualFold(key, "Value"):
			el.Value = nil // a repeated member replaces the earlier one, as in encoding/json
			if s.peek() == 'n' {
				if err := s.literal("null"); err != nil {
					return nil, err
				}
				break
			}
			if err := s.expect('['); err != nil {
				return nil, err
			}
			s.ws()
			if s.peek() == ']' {
				s.i++
				el.Value = []json.RawMessage{}
				break
			}
			for {
				s.ws()
				start := s.i
				if err := s.skip(0); err != nil {
					return nil, err
				}
				el.Value = append(el.Value, json.RawMessage(s.data[start:s.i:s.i]))
				s.ws()
				if s.peek() == ',' {
					s.i++
					continue
				}
				if err := s.expect(']'); err != nil {
					return nil, err
				}
				break
			}
		default:
			// Other members (none are defined) are checked and ignored, as encoding/json does.
			if err := s.skip(0); err != nil {
				return nil, err
			}
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return el, nil
		default:
			return nil, s.errorf("want , or } in an element")
		}
	}
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
		s.i++
		s.ws()
		if s.peek() == '}' {
			s.i++
			return nil
		}
		for {
			s.ws()
			if _, err := s.str(); err != nil {
				return err
			}
			if err := s.expect(':'); err != nil {
				return err
			}
			if err := s.skip(depth + 1); err != nil {
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
	case c == '[':
		s.i++
		s.ws()
		if s.peek() == ']' {
			s.i++
			return nil
		}
		for {
			if err := s.skip(depth + 1); err != nil {
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

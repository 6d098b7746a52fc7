package dcmjson

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// NativeDICOMNamespace is the XML namespace of the Native DICOM Model (PS3.19 Annex A).
const NativeDICOMNamespace = "http://dicom.nema.org/PS3.19/models/NativeDICOM"

// maxXMLDepth bounds the nesting of sequences WriteXML follows, so that a hostile upstream
// cannot make it recurse without end.
const maxXMLDepth = 64

// errXMLTooDeep is returned for datasets nested deeper than maxXMLDepth.
var errXMLTooDeep = errors.New("sequences nested too deeply")

// WriteXML writes ds as one Native DICOM Model document (PS3.19 Annex A.1): the body of one
// part of a `multipart/related; type="application/dicom+xml"` search or metadata answer.
//
// Attributes come in ascending tag order with their VR and, for standard attributes, their
// keyword. Person names are split into their groups and components; sequences become
// numbered Items; BulkDataURI and InlineBinary become BulkData and InlineBinary. Private data
// elements are written as PS3.19 asks, as gggg00ee with a privateCreator taken from their
// block's Private Creator element (and left as they are when the dataset lacks it). Group
// lengths are left out.
//
// Values are written as the DICOM JSON holds them: strings as text, numbers in their JSON
// form. A value the JSON model does not allow (an object where a string belongs) is an
// error; what was written before it is then incomplete, so write into a buffer or a part
// that can be abandoned.
func WriteXML(w io.Writer, ds Dataset) error {
	e := xmlEncoder{w: bufio.NewWriterSize(w, 4096)}
	e.w.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	e.w.WriteString(`<NativeDicomModel xmlns="` + NativeDICOMNamespace + `" xml:space="preserve">`)
	if err := e.dataset(ds, 0); err != nil {
		return fmt.Errorf("encode dataset as DICOM XML: %w", err)
	}
	e.w.WriteString("</NativeDicomModel>\n")
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("write DICOM XML: %w", err)
	}
	return nil
}

// xmlEncoder writes the Native DICOM Model. Write errors stick in the bufio.Writer and come
// back from its Flush.
type xmlEncoder struct {
	w *bufio.Writer
}

func (e *xmlEncoder) dataset(ds Dataset, depth int) error {
	if depth > maxXMLDepth {
		return errXMLTooDeep
	}
	for _, tag := range ds.Tags() {
		el := ds[tag]
		if el == nil || !IsTag(tag) {
			continue
		}
		if err := e.attribute(ds, strings.ToUpper(tag), el, depth); err != nil {
			return fmt.Errorf("element %s: %w", strings.ToUpper(tag), err)
		}
	}
	return nil
}

func (e *xmlEncoder) attribute(ds Dataset, tag string, el *Element, depth int) error {
	n, _ := strconv.ParseUint(tag, 16, 32)
	group, elem := uint16(n>>16), uint16(n)
	if elem == 0 {
		return nil // group length: PS3.19 A.1 leaves it out
	}
	xmlTag, keyword, creator := xmlAttributeName(ds, tag, group, elem)
	e.startAttribute(xmlTag, el.VR, keyword, creator)
	if el.BulkDataURI == "" && el.InlineBinary == "" && len(el.Value) == 0 {
		e.w.WriteString("/>")
		return nil
	}
	e.w.WriteByte('>')
	if err := e.attributeContent(el, depth); err != nil {
		return err
	}
	e.w.WriteString("</DicomAttribute>")
	return nil
}

// xmlAttributeName returns how PS3.19 names the attribute tag (upper-case hex, with group
// and elem its two halves): the value of its tag attribute, its keyword ("" for private
// and unknown attributes) and its private creator. A private data element is named
// gggg00ee with the creator its block's Private Creator element in ds gives; without one
// it keeps tag and has no creator.
func xmlAttributeName(ds Dataset, tag string, group, elem uint16) (xmlTag, keyword, creator string) {
	switch {
	case group%2 == 1 && elem >= 0x1000:
		// A private data element: named by its creator, not by the block it sat in.
		creatorTag := fmt.Sprintf("%04X00%02X", group, elem>>8)
		if c := strings.TrimSpace(ds.String(creatorTag)); c != "" {
			return fmt.Sprintf("%04X00%02X", group, elem&0xFF), "", c
		}
	case group%2 == 0:
		if a, err := LookupAttribute(tag); err == nil {
			return tag, a.Keyword, ""
		}
	}
	return tag, "", ""
}

// startAttribute writes the start tag of a DicomAttribute up to, not including, its closing
// ">" or "/>": tag, vr in upper case, and keyword and privateCreator when not "".
func (e *xmlEncoder) startAttribute(tag, vr, keyword, creator string) {
	e.w.WriteString(`<DicomAttribute tag="`)
	e.w.WriteString(tag)
	e.w.WriteString(`" vr="`)
	xmlEscape(e.w, strings.ToUpper(vr))
	e.w.WriteByte('"')
	if keyword != "" {
		e.w.WriteString(` keyword="`)
		e.w.WriteString(keyword)
		e.w.WriteByte('"')
	}
	if creator != "" {
		e.w.WriteString(` privateCreator="`)
		xmlEscape(e.w, creator)
		e.w.WriteByte('"')
	}
}

// attributeContent writes what goes between the tags of the DicomAttribute for el, which
// the caller has found not empty: BulkData when el has a BulkDataURI, else InlineBinary
// when it has that, else its values as its VR asks: Items (datasets at depth+1) for SQ,
// PersonNames for PN, Values otherwise. It fails where a value does not fit the JSON model
// or sequences nest past maxXMLDepth.
func (e *xmlEncoder) attributeContent(el *Element, depth int) error {
	switch {
	case el.BulkDataURI != "":
		e.w.WriteString(`<BulkData uri="`)
		xmlEscape(e.w, el.BulkDataURI)
		e.w.WriteString(`"/>`)
	case el.InlineBinary != "":
		e.w.WriteString("<InlineBinary>")
		xmlEscape(e.w, el.InlineBinary)
		e.w.WriteString("</InlineBinary>")
	case strings.EqualFold(el.VR, "SQ"):
		return e.items(el.Value, depth)
	case strings.EqualFold(el.VR, "PN"):
		return e.personNames(el.Value)
	default:
		return e.values(el.Value, strings.EqualFold(el.VR, "AT"))
	}
	return nil
}

func (e *xmlEncoder) items(values []json.RawMessage, depth int) error {
	for i, raw := range values {
		e.numbered("Item", i)
		if !isJSONNull(raw) {
			var item Dataset
			if err := json.Unmarshal(raw, &item); err != nil {
				return fmt.Errorf("item %d: %w", i+1, err)
			}
			if err := e.dataset(item, depth+1); err != nil {
				return fmt.Errorf("item %d: %w", i+1, err)
			}
		}
		e.w.WriteString("</Item>")
	}
	return nil
}

// xmlPersonName is the DICOM JSON form of one PN value (PS3.18 F.2.2).
type xmlPersonName struct {
	Alphabetic  string `json:"Alphabetic"`
	Ideographic string `json:"Ideographic"`
	Phonetic    string `json:"Phonetic"`
}

// pnComponents are the XML names of the five components of a person name group, in order.
var pnComponents = [5]string{"FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix"}

func (e *xmlEncoder) personNames(values []json.RawMessage) error {
	for i, raw := range values {
		var pn xmlPersonName
		raw = bytes.TrimSpace(raw)
		switch {
		case isJSONNull(raw):
		case len(raw) > 0 && raw[0] == '"':
			// Not DICOM JSON, but some origins send a name as a bare string.
			if err := json.Unmarshal(raw, &pn.Alphabetic); err != nil {
				return fmt.Errorf("person name %d: %w", i+1, err)
			}
		default:
			if err := json.Unmarshal(raw, &pn); err != nil {
				return fmt.Errorf("person name %d: %w", i+1, err)
			}
		}
		if pn == (xmlPersonName{}) {
			e.emptyNumbered("PersonName", i)
			continue
		}
		e.numbered("PersonName", i)
		e.nameGroup("Alphabetic", pn.Alphabetic)
		e.nameGroup("Ideographic", pn.Ideographic)
		e.nameGroup("Phonetic", pn.Phonetic)
		e.w.WriteString("</PersonName>")
	}
	return nil
}

// nameGroup writes one group of a person name, split on "^" into its components; empty
// components are left out, since each one is named.
func (e *xmlEncoder) nameGroup(name, group string) {
	if group == "" {
		return
	}
	e.w.WriteByte('<')
	e.w.WriteString(name)
	e.w.WriteByte('>')
	for i, c := range strings.SplitN(group, "^", len(pnComponents)) {
		if c == "" {
			continue
		}
		e.w.WriteByte('<')
		e.w.WriteString(pnComponents[i])
		e.w.WriteByte('>')
		xmlEscape(e.w, c)
		e.w.WriteString("</")
		e.w.WriteString(pnComponents[i])
		e.w.WriteByte('>')
	}
	e.w.WriteString("</")
	e.w.WriteString(name)
	e.w.WriteByte('>')
}

func (e *xmlEncoder) values(values []json.RawMessage, upper bool) error {
	for i, raw := range values {
		raw = bytes.TrimSpace(raw)
		switch {
		case isJSONNull(raw):
			e.emptyNumbered("Value", i)
		case raw[0] == '"':
			var s string
			if len(raw) >= 2 && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
				// The common case: no escapes, so the JSON text is the value.
				s = string(raw[1 : len(raw)-1])
			} else if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("value %d: %w", i+1, err)
			}
			if upper {
				s = strings.ToUpper(s)
			}
			e.numbered("Value", i)
			xmlEscape(e.w, s)
			e.w.WriteString("</Value>")
		case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
			if !json.Valid(raw) {
				return fmt.Errorf("value %d: %q is not a number", i+1, raw)
			}
			e.numbered("Value", i)
			e.w.Write(raw)
			e.w.WriteString("</Value>")
		default:
			return fmt.Errorf("value %d: %s is neither a string nor a number", i+1, truncateRaw(raw))
		}
	}
	return nil
}

// numbered opens <name number="i+1">.
func (e *xmlEncoder) numbered(name string, i int) {
	e.w.WriteByte('<')
	e.w.WriteString(name)
	e.w.WriteString(` number="`)
	e.w.WriteString(strconv.Itoa(i + 1))
	e.w.WriteString(`">`)
}

// emptyNumbered writes <name number="i+1"/>, an empty value that keeps its place.
func (e *xmlEncoder) emptyNumbered(name string, i int) {
	e.w.WriteByte('<')
	e.w.WriteString(name)
	e.w.WriteString(` number="`)
	e.w.WriteString(strconv.Itoa(i + 1))
	e.w.WriteString(`"/>`)
}

func isJSONNull(raw []byte) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

func truncateRaw(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "..."
	}
	return string(raw)
}

// xmlEscape writes s as XML character data fit for both text and attribute values: markup
// characters and the white space an attribute would normalise are escaped, and characters
// XML 1.0 cannot carry (most C0 controls, invalid UTF-8, U+FFFE, U+FFFF) become U+FFFD.
func xmlEscape(w *bufio.Writer, s string) {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '&' && c != '<' && c != '>' && c != '"' && c != '\'' {
			i++
			continue
		}
		var esc string
		width := 1
		switch c {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '"':
			esc = "&#34;"
		case '\'':
			esc = "&#39;"
		case '\t':
			esc = "&#x9;"
		case '\n':
			esc = "&#xA;"
		case '\r':
			esc = "&#xD;"
		default:
			if c < 0x20 {
				esc = "\uFFFD"
				break
			}
			r, n := utf8.DecodeRuneInString(s[i:])
			width = n
			if r == utf8.RuneError && n == 1 || r == 0xFFFE || r == 0xFFFF {
				esc = "\uFFFD"
				break
			}
			i += n
			continue
		}
		w.WriteString(s[last:i])
		w.WriteString(esc)
		i += width
		last = i
	}
	w.WriteString(s[last:])
}

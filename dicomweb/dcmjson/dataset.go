// Package dcmjson is the DICOM JSON model of PS3.18 Annex F: datasets as maps from tags to
// elements, with the accessors the proxy needs to merge, sort and rewrite search and metadata
// answers without knowing every attribute.
//
// Values are kept as raw JSON so that what an upstream sent (numbers, person names, sequences)
// passes through unchanged unless the proxy means to change it.
package dcmjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Tags the proxy reads or writes, as the eight upper-case hex digits DICOM JSON uses for keys.
const (
	TagSpecificCharacterSet            = "00080005"
	TagSOPClassUID                     = "00080016"
	TagSOPInstanceUID                  = "00080018"
	TagStudyDate                       = "00080020"
	TagStudyTime                       = "00080030"
	TagAccessionNumber                 = "00080050"
	TagRetrieveAETitle                 = "00080054"
	TagInstanceAvailability            = "00080056"
	TagModality                        = "00080060"
	TagModalitiesInStudy               = "00080061"
	TagReferringPhysicianName          = "00080090"
	TagStudyDescription                = "00081030"
	TagSeriesDescription               = "0008103E"
	TagRetrieveURL                     = "00081190"
	TagPatientName                     = "00100010"
	TagPatientID                       = "00100020"
	TagIssuerOfPatientID               = "00100021"
	TagPatientBirthDate                = "00100030"
	TagPatientSex                      = "00100040"
	TagOtherPatientIDsSequence         = "00101002"
	TagStudyInstanceUID                = "0020000D"
	TagSeriesInstanceUID               = "0020000E"
	TagStudyID                         = "00200010"
	TagSeriesNumber                    = "00200011"
	TagInstanceNumber                  = "00200013"
	TagNumberOfStudyRelatedSeries      = "00201206"
	TagNumberOfStudyRelatedInstances   = "00201208"
	TagNumberOfSeriesRelatedInstances  = "00201209"
	TagNumberOfFrames                  = "00280008"
	TagRows                            = "00280010"
	TagColumns                         = "00280011"
	TagPixelData                       = "7FE00010"
	TagTransferSyntaxUID               = "00020010"
	TagPerformedProcedureStepStartDate = "00400244"
)

// Element is one attribute of a DICOM JSON object. Exactly one of Value, BulkDataURI and
// InlineBinary is set, or none for an empty attribute.
type Element struct {
	VR           string            `json:"vr"`
	Value        []json.RawMessage `json:"Value,omitempty"`
	BulkDataURI  string            `json:"BulkDataURI,omitempty"`
	InlineBinary string            `json:"InlineBinary,omitempty"`
}

// Dataset is one DICOM JSON object, keyed by tag ("0020000D").
type Dataset map[string]*Element

// Decode parses a DICOM JSON array, as a QIDO-RS search or a metadata request answers.
// An empty body is an empty array (some origins answer 204 or 200 with no payload).
func Decode(data []byte) ([]Dataset, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil
	}
	sc := scanner{data: data}
	out, err := sc.decodeArray()
	if err == nil {
		sc.ws()
		if sc.i != len(data) {
			err = sc.errorf("data after the array")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("decode DICOM JSON: %w", err)
	}
	for i, ds := range out {
		if err := ds.Validate(); err != nil {
			return nil, fmt.Errorf("decode DICOM JSON: object %d: %w", i, err)
		}
	}
	return out, nil
}

// Validate checks the structure the proxy relies on: tag keys of eight hex digits, a VR on
// every element, and nested sequence items that are themselves valid.
func (d Dataset) Validate() error {
	if d == nil {
		return fmt.Errorf("null object")
	}
	for tag, el := range d {
		if !IsTag(tag) {
			return fmt.Errorf("key %q is not a tag of eight hex digits", tag)
		}
		if el == nil {
			return fmt.Errorf("element %s is null", tag)
		}
		if len(el.VR) != 2 {
			return fmt.Errorf("element %s has VR %q", tag, el.VR)
		}
		if el.VR == "SQ" {
			// Items are checked to be objects here and decoded only when used (Items):
			// parsing every nested item of every answer twice costs more than the rest of a
			// search. encoding/json has already checked that they are well-formed JSON.
			for i, raw := range el.Value {
				if b := firstByte(raw); b != '{' && b != 'n' {
					return fmt.Errorf("element %s item %d is not an object", tag, i)
				}
			}
		}
	}
	return nil
}

func firstByte(raw []byte) byte {
	for _, c := range raw {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

// IsTag reports whether s is a DICOM JSON tag key: eight hex digits.
func IsTag(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < 8; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// String returns the first value of tag as a string: the text of a string VR, the decimal form
// of a number, or the Alphabetic group of a person name. It returns "" when absent.
func (d Dataset) String(tag string) string {
	v := d.Strings(tag)
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// Strings returns every value of tag in the forms String describes.
func (d Dataset) Strings(tag string) []string {
	el, ok := d[tag]
	if !ok || el == nil {
		return nil
	}
	out := make([]string, 0, len(el.Value))
	for _, raw := range el.Value {
		out = append(out, rawString(el.VR, raw))
	}
	return out
}

func rawString(vr string, raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	switch raw[0] {
	case '"':
		// Most values have no escapes: take them between the quotes without a decoder.
		if len(raw) >= 2 && raw[len(raw)-1] == '"' && bytes.IndexByte(raw[1:len(raw)-1], '\\') < 0 && bytes.IndexByte(raw[1:len(raw)-1], '"') < 0 {
			return string(raw[1 : len(raw)-1])
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case '{':
		if vr == "PN" {
			var pn struct {
				Alphabetic string `json:"Alphabetic"`
			}
			if json.Unmarshal(raw, &pn) == nil {
				return pn.Alphabetic
			}
		}
		return ""
	}
	return string(raw)
}

// Int returns the first value of tag as an integer, and whether it was present and numeric.
// Integer strings (IS) and JSON numbers are both accepted.
func (d Dataset) Int(tag string) (int64, bool) {
	s := strings.TrimSpace(d.String(tag))
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return 0, false
		}
		return int64(f), true
	}
	return n, true
}

// Items returns the items of a sequence attribute. Items that fail to decode are skipped;
// Decode has already validated datasets that came from an upstream.
func (d Dataset) Items(tag string) []Dataset {
	el, ok := d[tag]
	if !ok || el == nil || el.VR != "SQ" {
		return nil
	}
	out := make([]Dataset, 0, len(el.Value))
	for _, raw := range el.Value {
		var item Dataset
		if json.Unmarshal(raw, &item) == nil && item != nil {
			out = append(out, item)
		}
	}
	return out
}

// SetStrings sets tag to the given string values with the given VR, replacing what was there.
// Person names (PN) are written as {"Alphabetic": ...}.
func (d Dataset) SetStrings(tag, vr string, values ...string) {
	el := &Element{VR: vr, Value: make([]json.RawMessage, 0, len(values))}
	for _, v := range values {
		var raw []byte
		if vr == "PN" {
			raw, _ = json.Marshal(map[string]string{"Alphabetic": v})
		} else {
			raw, _ = json.Marshal(v)
		}
		el.Value = append(el.Value, raw)
	}
	d[tag] = el
}

// SetInt sets tag to one integer value. IS values are written as JSON numbers, as Annex F says.
func (d Dataset) SetInt(tag, vr string, n int64) {
	d[tag] = &Element{VR: vr, Value: []json.RawMessage{json.RawMessage(strconv.FormatInt(n, 10))}}
}

// SetItems sets a sequence attribute to the given items.
func (d Dataset) SetItems(tag string, items ...Dataset) {
	el := &Element{VR: "SQ", Value: make([]json.RawMessage, 0, len(items))}
	for _, it := range items {
		raw, _ := json.Marshal(it)
		el.Value = append(el.Value, raw)
	}
	d[tag] = el
}

// Clone returns a deep enough copy: elements are copied, raw values are shared (they are never
// modified in place).
func (d Dataset) Clone() Dataset {
	out := make(Dataset, len(d))
	for k, v := range d {
		if v == nil {
			out[k] = nil
			continue
		}
		c := *v
		c.Value = append([]json.RawMessage(nil), v.Value...)
		out[k] = &c
	}
	return out
}

// Tags returns the dataset's tags in ascending order, the order DICOM requires on the wire.
// Keys are upper-case hex (UnmarshalJSON and the setters make them so), so string order is
// tag order.
func (d Dataset) Tags() []string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// MarshalJSON writes the dataset with its tags in ascending order, so answers are stable
// byte for byte (encoding/json already sorts map keys; this keeps upper-case hex).
func (d Dataset) MarshalJSON() ([]byte, error) {
	return d.AppendJSON(nil), nil
}

// AppendArray appends list to b as a DICOM JSON array and returns the extended buffer.
func AppendArray(b []byte, list []Dataset) []byte {
	b = append(b, '[')
	for i, ds := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = ds.AppendJSON(b)
	}
	return append(b, ']')
}

// AppendJSON appends the dataset's DICOM JSON to b, tags in ascending order. Raw values are
// copied as they are (they came from a JSON decoder or from json.Marshal, so they are valid);
// it never fails, and it is what answers are written with, without encoding/json's re-checking.
func (d Dataset) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	for i, tag := range d.Tags() {
		el := d[tag]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, tag...)
		b = append(b, `":`...)
		if el == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, `{"vr":`...)
		b = strconv.AppendQuote(b, el.VR)
		switch {
		case el.BulkDataURI != "":
			b = append(b, `,"BulkDataURI":`...)
			b = appendJSONString(b, el.BulkDataURI)
		case el.InlineBinary != "":
			b = append(b, `,"InlineBinary":`...)
			b = appendJSONString(b, el.InlineBinary)
		case len(el.Value) > 0:
			b = append(b, `,"Value":[`...)
			for j, v := range el.Value {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, v...)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	simple := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			simple = false
			break
		}
	}
	if simple {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	enc, _ := json.Marshal(s)
	return append(b, enc...)
}

// UnmarshalJSON reads a DICOM JSON object, upper-casing tag keys so lookups by the Tag
// constants work whatever case the upstream used.
func (d *Dataset) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		*d = nil
		return nil
	}
	// The caller may reuse data (encoding/json's Decoder does), and values are slices of it.
	sc := scanner{data: append([]byte(nil), data...)}
	ds, err := sc.decodeObject()
	if err != nil {
		return err
	}
	*d = ds
	return nil
}

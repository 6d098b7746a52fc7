package pacssim

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// fromDICOM converts a dataset parsed (or built) with suyashkumar/dicom to DICOM JSON as
// PS3.18 Annex F writes it: strings as JSON strings, IS, DS and the binary numeric VRs as JSON
// numbers, person names as {"Alphabetic": ...} objects, AT as "GGGGEEEE" strings and sequences
// as nested objects. File meta information (group 0002), group lengths and item delimiters
// are left out.
//
// Binary values (PixelData and the VRs OB, OW, OD, OF, OL, OV and UN) become a BulkDataURI
// when bulk returns one, else InlineBinary (base64). bulk is called with the element's path:
// its tag ("7FE00010") at the top level, or for an element inside a sequence the tags and
// zero-based item indexes joined by "/" ("00540016/0/00181072"). bulk may be nil, which
// inlines everything. Encapsulated pixel data that is not given a BulkDataURI is written
// without a value: its fragments have no meaning as one inline string.
func fromDICOM(ds dicom.Dataset, bulk func(tag string) string) (dcmjson.Dataset, error) {
	return fromElements(ds.Elements, "", bulk)
}

func fromElements(elems []*dicom.Element, prefix string, bulk func(string) string) (dcmjson.Dataset, error) {
	out := make(dcmjson.Dataset, len(elems))
	for _, e := range elems {
		if e == nil || e.Tag.Group == tag.MetadataGroup || e.Tag.Element == 0 || e.Tag.Group == 0xFFFE {
			continue
		}
		key := dcmjson.FormatTag(uint32(e.Tag.Group)<<16 | uint32(e.Tag.Element))
		el, err := fromElement(e, prefix+key, bulk)
		if err != nil {
			return nil, fmt.Errorf("convert element %s: %w", key, err)
		}
		out[key] = el
	}
	return out, nil
}

// isBinaryVR reports whether DICOM JSON carries values of vr as BulkDataURI or InlineBinary.
func isBinaryVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "UN":
		return true
	}
	return false
}

func fromElement(e *dicom.Element, path string, bulk func(string) string) (*dcmjson.Element, error) {
	vr := e.RawValueRepresentation
	if len(vr) != 2 {
		vr = "UN"
		if info, err := tag.Find(e.Tag); err == nil && len(info.VRs) > 0 {
			vr = info.VRs[0]
		}
	}
	el := &dcmjson.Element{VR: vr}
	if e.Value == nil {
		return el, nil
	}

	switch e.Value.ValueType() {
	case dicom.PixelData:
		if vr != "OB" && vr != "OW" {
			el.VR = "OW"
		}
		return el, setPixelData(el, dicom.MustGetPixelDataInfo(e.Value), path, bulk)
	case dicom.Sequences:
		el.VR = "SQ"
		items, _ := e.Value.GetValue().([]*dicom.SequenceItemValue)
		for i, item := range items {
			sub, _ := item.GetValue().([]*dicom.Element)
			ds, err := fromElements(sub, path+"/"+strconv.Itoa(i)+"/", bulk)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			raw, err := json.Marshal(ds)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			el.Value = append(el.Value, raw)
		}
		return el, nil
	case dicom.Bytes:
		setBinary(el, dicom.MustGetBytes(e.Value), path, bulk)
		return el, nil
	case dicom.Ints:
		return el, setInts(el, dicom.MustGetInts(e.Value))
	case dicom.Floats:
		for _, f := range dicom.MustGetFloats(e.Value) {
			el.Value = append(el.Value, jsonNumber(f))
		}
		return el, nil
	case dicom.Strings:
		strs := dicom.MustGetStrings(e.Value)
		if isBinaryVR(vr) {
			// The library reads OD, OF, OL and OV as text; the bytes are what it read.
			setBinary(el, []byte(strings.Join(strs, `\`)), path, bulk)
			return el, nil
		}
		setStrings(el, strs)
		return el, nil
	default:
		return nil, fmt.Errorf("unsupported value type %v", e.Value.ValueType())
	}
}

// setStrings writes text values by VR: numbers for IS and DS, objects for PN, strings
// otherwise. A single empty value is an attribute without a value; an empty value among
// several is null, as Annex F says. An IS or DS value that is not a number (real files hold
// such things) is kept as a string rather than lost.
func setStrings(el *dcmjson.Element, strs []string) {
	switch el.VR {
	case "LT", "ST", "UT", "UR":
		// These VRs are single-valued and may contain backslashes, which the library split.
		strs = []string{strings.Join(strs, `\`)}
	}
	if len(strs) == 1 && strings.Trim(strs[0], " \x00") == "" {
		return
	}
	for _, s := range strs {
		s = strings.TrimRight(s, " \x00")
		if el.VR != "LT" && el.VR != "ST" && el.VR != "UT" {
			s = strings.TrimLeft(s, " ")
		}
		if s == "" {
			el.Value = append(el.Value, json.RawMessage("null"))
			continue
		}
		var raw json.RawMessage
		switch el.VR {
		case "IS", "SV", "UV":
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				raw = json.RawMessage(strconv.FormatInt(n, 10))
			} else {
				raw, _ = json.Marshal(s)
			}
		case "DS":
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				raw = jsonNumber(f)
			} else {
				raw, _ = json.Marshal(s)
			}
		case "PN":
			raw = personName(s)
		default:
			raw, _ = json.Marshal(s)
		}
		el.Value = append(el.Value, raw)
	}
}

// personName splits a PN value into its alphabetic, ideographic and phonetic groups.
func personName(s string) json.RawMessage {
	groups := strings.SplitN(s, "=", 3)
	pn := struct {
		Alphabetic  string `json:"Alphabetic,omitempty"`
		Ideographic string `json:"Ideographic,omitempty"`
		Phonetic    string `json:"Phonetic,omitempty"`
	}{Alphabetic: groups[0]}
	if len(groups) > 1 {
		pn.Ideographic = groups[1]
	}
	if len(groups) > 2 {
		pn.Phonetic = groups[2]
	}
	raw, _ := json.Marshal(pn)
	return raw
}

// setInts writes US, SS, UL, SL (and SV, UV) values as numbers, and AT values, which the
// library holds as group and element pairs, as "GGGGEEEE" strings.
func setInts(el *dcmjson.Element, ints []int) error {
	if el.VR == "AT" {
		if len(ints)%2 != 0 {
			return fmt.Errorf("AT value has %d 16-bit halves, want an even number", len(ints))
		}
		for i := 0; i < len(ints); i += 2 {
			raw, _ := json.Marshal(fmt.Sprintf("%04X%04X", uint16(ints[i]), uint16(ints[i+1])))
			el.Value = append(el.Value, raw)
		}
		return nil
	}
	for _, n := range ints {
		el.Value = append(el.Value, json.RawMessage(strconv.Itoa(n)))
	}
	return nil
}

// jsonNumber writes f in its shortest form; NaN and infinities, which JSON cannot carry,
// become null.
func jsonNumber(f float64) json.RawMessage {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return json.RawMessage("null")
	}
	return json.RawMessage(strconv.FormatFloat(f, 'g', -1, 64))
}

func setBinary(el *dcmjson.Element, data []byte, path string, bulk func(string) string) {
	if bulk != nil {
		if uri := bulk(path); uri != "" {
			el.BulkDataURI = uri
			return
		}
	}
	if len(data) > 0 {
		el.InlineBinary = base64.StdEncoding.EncodeToString(data)
	}
}

func setPixelData(el *dcmjson.Element, info dicom.PixelDataInfo, path string, bulk func(string) string) error {
	if bulk != nil {
		if uri := bulk(path); uri != "" {
			el.BulkDataURI = uri
			return nil
		}
	}
	switch {
	case info.IntentionallySkipped, info.IsEncapsulated:
		return nil
	case info.IntentionallyUnprocessed:
		setBinary(el, info.UnprocessedValueData, path, nil)
		return nil
	}
	data, err := nativePixelBytes(info)
	if err != nil {
		return err
	}
	setBinary(el, data, path, nil)
	return nil
}

// nativePixelBytes returns native (uncompressed) pixel data as it is encoded in Explicit VR
// Little Endian: every frame's samples in order, little-endian, padded to an even length.
func nativePixelBytes(info dicom.PixelDataInfo) ([]byte, error) {
	if info.IsEncapsulated {
		return nil, fmt.Errorf("pixel data is encapsulated, not native")
	}
	var buf bytes.Buffer
	for i, f := range info.Frames {
		if f == nil || f.NativeData == nil {
			return nil, fmt.Errorf("frame %d has no native data", i+1)
		}
		switch raw := f.NativeData.RawDataSlice().(type) {
		case []uint8:
			buf.Write(raw)
		case []uint16:
			b := make([]byte, 2*len(raw))
			for j, v := range raw {
				binary.LittleEndian.PutUint16(b[2*j:], v)
			}
			buf.Write(b)
		case []uint32:
			b := make([]byte, 4*len(raw))
			for j, v := range raw {
				binary.LittleEndian.PutUint32(b[4*j:], v)
			}
			buf.Write(b)
		default:
			return nil, fmt.Errorf("frame %d has %d bits per sample, which is not supported", i+1, f.NativeData.BitsPerSample())
		}
	}
	if buf.Len()%2 != 0 {
		buf.WriteByte(0)
	}
	return buf.Bytes(), nil
}

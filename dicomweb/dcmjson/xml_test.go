package dcmjson

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The Native DICOM Model as encoding/xml reads it back.
type xNative struct {
	XMLName xml.Name `xml:"http://dicom.nema.org/PS3.19/models/NativeDICOM NativeDicomModel"`
	Space   string   `xml:"http://www.w3.org/XML/1998/namespace space,attr"`
	Attrs   []xAttr  `xml:"DicomAttribute"`
}

type xAttr struct {
	Tag            string     `xml:"tag,attr"`
	VR             string     `xml:"vr,attr"`
	Keyword        string     `xml:"keyword,attr"`
	PrivateCreator string     `xml:"privateCreator,attr"`
	Values         []xValue   `xml:"Value"`
	Names          []xPN      `xml:"PersonName"`
	Items          []xItem    `xml:"Item"`
	BulkData       *xBulk     `xml:"BulkData"`
	InlineBinary   *string    `xml:"InlineBinary"`
	Other          []xml.Name `xml:",any"`
}

type xValue struct {
	Number int    `xml:"number,attr"`
	Text   string `xml:",chardata"`
}

type xPN struct {
	Number      int     `xml:"number,attr"`
	Alphabetic  *xGroup `xml:"Alphabetic"`
	Ideographic *xGroup `xml:"Ideographic"`
	Phonetic    *xGroup `xml:"Phonetic"`
}

type xGroup struct {
	FamilyName, GivenName, MiddleName, NamePrefix, NameSuffix string
}

type xItem struct {
	Number int     `xml:"number,attr"`
	Attrs  []xAttr `xml:"DicomAttribute"`
}

type xBulk struct {
	URI string `xml:"uri,attr"`
}

func mustDataset(t *testing.T, js string) Dataset {
	t.Helper()
	var ds Dataset
	if err := json.Unmarshal([]byte(js), &ds); err != nil {
		t.Fatalf("test dataset: %v", err)
	}
	return ds
}

func strp(s string) *string { return &s }

func TestWriteXML(t *testing.T) {
	tests := []struct {
		name string
		js   string
		want []xAttr
	}{
		{
			name: "study search result",
			js: `{
				"00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
				"00080020": {"vr": "DA", "Value": ["20240131"]},
				"00080061": {"vr": "CS", "Value": ["CT", "MR"]},
				"00081190": {"vr": "UR", "Value": ["https://proxy.example/dicom-web/studies/1.2.3"]},
				"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}]},
				"0020000D": {"vr": "UI", "Value": ["1.2.3"]},
				"00201208": {"vr": "IS", "Value": [42]},
				"00280030": {"vr": "DS", "Value": [0.5, 1.25e-3]}
			}`,
			want: []xAttr{
				{Tag: "00080005", VR: "CS", Keyword: "SpecificCharacterSet", Values: []xValue{{1, "ISO_IR 192"}}},
				{Tag: "00080020", VR: "DA", Keyword: "StudyDate", Values: []xValue{{1, "20240131"}}},
				{Tag: "00080061", VR: "CS", Keyword: "ModalitiesInStudy", Values: []xValue{{1, "CT"}, {2, "MR"}}},
				{Tag: "00081190", VR: "UR", Keyword: "RetrieveURL", Values: []xValue{{1, "https://proxy.example/dicom-web/studies/1.2.3"}}},
				{Tag: "00100010", VR: "PN", Keyword: "PatientName", Names: []xPN{{
					Number:      1,
					Alphabetic:  &xGroup{FamilyName: "Yamada", GivenName: "Tarou"},
					Ideographic: &xGroup{FamilyName: "山田", GivenName: "太郎"},
					Phonetic:    &xGroup{FamilyName: "やまだ", GivenName: "たろう"},
				}}},
				{Tag: "0020000D", VR: "UI", Keyword: "StudyInstanceUID", Values: []xValue{{1, "1.2.3"}}},
				{Tag: "00201208", VR: "IS", Keyword: "NumberOfStudyRelatedInstances", Values: []xValue{{1, "42"}}},
				{Tag: "00280030", VR: "DS", Keyword: "PixelSpacing", Values: []xValue{{1, "0.5"}, {2, "1.25e-3"}}},
			},
		},
		{
			name: "person name components",
			js: `{
				"00080090": {"vr": "PN", "Value": [{"Alphabetic": "Adams^John Robert Quincy^^Rev.^B.A. M.Div."}, null, {"Alphabetic": "^Madonna"}]},
				"00100010": {"vr": "PN", "Value": ["Bare^String"]}
			}`,
			want: []xAttr{
				{Tag: "00080090", VR: "PN", Keyword: "ReferringPhysicianName", Names: []xPN{
					{Number: 1, Alphabetic: &xGroup{FamilyName: "Adams", GivenName: "John Robert Quincy", NamePrefix: "Rev.", NameSuffix: "B.A. M.Div."}},
					{Number: 2},
					{Number: 3, Alphabetic: &xGroup{GivenName: "Madonna"}},
				}},
				{Tag: "00100010", VR: "PN", Keyword: "PatientName", Names: []xPN{
					{Number: 1, Alphabetic: &xGroup{FamilyName: "Bare", GivenName: "String"}},
				}},
			},
		},
		{
			name: "sequences",
			js: `{
				"00081199": {"vr": "SQ", "Value": [
					{"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]}, "00081155": {"vr": "UI", "Value": ["1.2.3.4"]}},
					{},
					{"0040A730": {"vr": "SQ", "Value": [{"0040A160": {"vr": "UT", "Value": ["nested"]}}]}}
				]},
				"00101002": {"vr": "SQ"}
			}`,
			want: []xAttr{
				{Tag: "00081199", VR: "SQ", Keyword: "ReferencedSOPSequence", Items: []xItem{
					{Number: 1, Attrs: []xAttr{
						{Tag: "00081150", VR: "UI", Keyword: "ReferencedSOPClassUID", Values: []xValue{{1, "1.2.840.10008.5.1.4.1.1.2"}}},
						{Tag: "00081155", VR: "UI", Keyword: "ReferencedSOPInstanceUID", Values: []xValue{{1, "1.2.3.4"}}},
					}},
					{Number: 2},
					{Number: 3, Attrs: []xAttr{
						{Tag: "0040A730", VR: "SQ", Keyword: "ContentSequence", Items: []xItem{
							{Number: 1, Attrs: []xAttr{{Tag: "0040A160", VR: "UT", Keyword: "TextValue", Values: []xValue{{1, "nested"}}}}},
						}},
					}},
				}},
				{Tag: "00101002", VR: "SQ", Keyword: "OtherPatientIDsSequence"},
			},
		},
		{
			name: "bulk data and inline binary",
			js: `{
				"00281201": {"vr": "OW", "InlineBinary": "AAEC"},
				"7FE00010": {"vr": "OB", "BulkDataURI": "https://proxy.example/bulk/abc?sig=1&x=2"}
			}`,
			want: []xAttr{
				{Tag: "00281201", VR: "OW", Keyword: "RedPaletteColorLookupTableData", InlineBinary: strp("AAEC")},
				{Tag: "7FE00010", VR: "OB", Keyword: "PixelData", BulkData: &xBulk{URI: "https://proxy.example/bulk/abc?sig=1&x=2"}},
			},
		},
		{
			name: "private elements",
			js: `{
				"00290010": {"vr": "LO", "Value": ["SIEMENS CSA HEADER"]},
				"00291010": {"vr": "OB", "InlineBinary": "U1YxMA=="},
				"00291120": {"vr": "LO", "Value": ["no creator for block 11"]},
				"00090000": {"vr": "UL", "Value": [12]},
				"00100000": {"vr": "UL", "Value": [12]}
			}`,
			want: []xAttr{
				{Tag: "00290010", VR: "LO", Values: []xValue{{1, "SIEMENS CSA HEADER"}}},
				{Tag: "00290010", VR: "OB", PrivateCreator: "SIEMENS CSA HEADER", InlineBinary: strp("U1YxMA==")},
				{Tag: "00291120", VR: "LO", Values: []xValue{{1, "no creator for block 11"}}},
			},
		},
		{
			name: "empty, null and AT values",
			js: `{
				"00080050": {"vr": "SH"},
				"00080060": {"vr": "CS", "Value": []},
				"00081030": {"vr": "LO", "Value": ["MPG", null, "XR3"]},
				"00209165": {"vr": "AT", "Value": ["0020000d", "00209057"]},
				"00280008": {"vr": "IS", "Value": [-3]}
			}`,
			want: []xAttr{
				{Tag: "00080050", VR: "SH", Keyword: "AccessionNumber"},
				{Tag: "00080060", VR: "CS", Keyword: "Modality"},
				{Tag: "00081030", VR: "LO", Keyword: "StudyDescription", Values: []xValue{{1, "MPG"}, {2, ""}, {3, "XR3"}}},
				{Tag: "00209165", VR: "AT", Keyword: "DimensionIndexPointer", Values: []xValue{{1, "0020000D"}, {2, "00209057"}}},
				{Tag: "00280008", VR: "IS", Keyword: "NumberOfFrames", Values: []xValue{{1, "-3"}}},
			},
		},
		{
			name: "text that needs escaping",
			js: `{
				"00081030": {"vr": "LO", "Value": ["<b>CT & MR</b> \"head\" 'neck'", "line one\r\nline two\ttab", "bell\u0007 é ☃"]},
				"00324000": {"vr": "LT", "Value": ["]]> and &amp; literally"]}
			}`,
			want: []xAttr{
				{Tag: "00081030", VR: "LO", Keyword: "StudyDescription", Values: []xValue{
					{1, `<b>CT & MR</b> "head" 'neck'`},
					{2, "line one\r\nline two\ttab"},
					{3, "bell\uFFFD é ☃"},
				}},
				{Tag: "00324000", VR: "LT", Keyword: "StudyComments", Values: []xValue{{1, "]]> and &amp; literally"}}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteXML(&buf, mustDataset(t, tc.js)); err != nil {
				t.Fatalf("WriteXML: %v", err)
			}
			if !strings.HasPrefix(buf.String(), `<?xml version="1.0" encoding="UTF-8"?>`) {
				t.Fatalf("no XML declaration: %.60q", buf.String())
			}
			var got xNative
			if err := xml.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("parse output: %v\n%s", err, buf.String())
			}
			if got.Space != "preserve" {
				t.Errorf("xml:space = %q, want preserve", got.Space)
			}
			if !reflect.DeepEqual(got.Attrs, tc.want) {
				gj, _ := json.MarshalIndent(got.Attrs, "", " ")
				wj, _ := json.MarshalIndent(tc.want, "", " ")
				t.Fatalf("attributes differ\n got %s\nwant %s\nxml: %s", gj, wj, buf.String())
			}
		})
	}
}

func TestWriteXMLExactForm(t *testing.T) {
	ds := Dataset{}
	ds.SetStrings(TagStudyInstanceUID, "UI", "1.2.3")
	ds.SetStrings(TagPatientName, "PN", "Doe^Jane")
	var buf bytes.Buffer
	if err := WriteXML(&buf, ds); err != nil {
		t.Fatal(err)
	}
	want := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM" xml:space="preserve">` +
		`<DicomAttribute tag="00100010" vr="PN" keyword="PatientName"><PersonName number="1"><Alphabetic><FamilyName>Doe</FamilyName><GivenName>Jane</GivenName></Alphabetic></PersonName></DicomAttribute>` +
		`<DicomAttribute tag="0020000D" vr="UI" keyword="StudyInstanceUID"><Value number="1">1.2.3</Value></DicomAttribute>` +
		"</NativeDicomModel>\n"
	if buf.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("client went away") }

func TestWriteXMLErrors(t *testing.T) {
	deep := `{"00400555": {"vr": "SQ", "Value": [X]}}`
	nested := `{}`
	for i := 0; i < maxXMLDepth+2; i++ {
		nested = strings.Replace(deep, "X", nested, 1)
	}
	tests := []struct {
		name    string
		js      string
		wantErr string
	}{
		{name: "object as a string value", js: `{"00080050": {"vr": "SH", "Value": [{"a": 1}]}}`, wantErr: "element 00080050: value 1"},
		{name: "boolean value", js: `{"00080050": {"vr": "SH", "Value": [true]}}`, wantErr: "neither a string nor a number"},
		{name: "person name of the wrong shape", js: `{"00100010": {"vr": "PN", "Value": [42]}}`, wantErr: "person name 1"},
		{name: "item that is not an object", js: `{"00081199": {"vr": "SQ", "Value": ["x"]}}`, wantErr: "item 1"},
		{name: "too deep", js: nested, wantErr: "nested too deeply"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteXML(&bytes.Buffer{}, mustDataset(t, tc.js))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}

	t.Run("number that is not JSON", func(t *testing.T) {
		ds := Dataset{TagNumberOfFrames: {VR: "IS", Value: []json.RawMessage{json.RawMessage("1x")}}}
		if err := WriteXML(&bytes.Buffer{}, ds); err == nil || !strings.Contains(err.Error(), "not a number") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("write error", func(t *testing.T) {
		ds := Dataset{}
		ds.SetStrings(TagStudyDescription, "LO", strings.Repeat("x", 10000))
		if err := WriteXML(failWriter{}, ds); err == nil || !strings.Contains(err.Error(), "client went away") {
			t.Fatalf("err = %v", err)
		}
	})
}

func BenchmarkWriteXML(b *testing.B) {
	var ds Dataset
	if err := json.Unmarshal([]byte(`{
		"00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
		"00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
		"00080018": {"vr": "UI", "Value": ["1.2.826.0.1.3680043.8.498.12345678901234567890"]},
		"00080020": {"vr": "DA", "Value": ["20240131"]},
		"00080060": {"vr": "CS", "Value": ["CT"]},
		"00081030": {"vr": "LO", "Value": ["CT HEAD & NECK"]},
		"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
		"0020000D": {"vr": "UI", "Value": ["1.2.3"]},
		"00200013": {"vr": "IS", "Value": [17]},
		"00280010": {"vr": "US", "Value": [512]},
		"00280030": {"vr": "DS", "Value": [0.5, 0.5]},
		"00081199": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": ["1.2"]}}]},
		"7FE00010": {"vr": "OW", "BulkDataURI": "https://proxy.example/bulk/abc"}
	}`), &ds); err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := WriteXML(&buf, ds); err != nil {
			b.Fatal(err)
		}
	}
}

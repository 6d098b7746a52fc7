package pacssim

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/frame"
	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

// elem builds an element with an explicit VR, as a parser would hand it over.
func elem(t *testing.T, tg tag.Tag, vr string, data any) *dicom.Element {
	t.Helper()
	v, err := dicom.NewValue(data)
	if err != nil {
		t.Fatalf("new value for %v: %v", tg, err)
	}
	return &dicom.Element{Tag: tg, ValueRepresentation: tag.GetVRKind(tg, vr), RawValueRepresentation: vr, Value: v}
}

func nativeFrame16(rows, cols int, samples ...uint16) *frame.Frame {
	nf := frame.NewNativeFrame[uint16](16, rows, cols, rows*cols, 1)
	copy(nf.RawData, samples)
	return &frame.Frame{NativeData: nf}
}

func TestFromDICOM(t *testing.T) {
	pixel16 := dicom.PixelDataInfo{Frames: []*frame.Frame{nativeFrame16(1, 2, 0x0102, 0x0304), nativeFrame16(1, 2, 5, 6)}}
	bulkAll := func(path string) string { return "https://pacs.example/bulk/" + path }
	tests := []struct {
		name  string
		elems func(t *testing.T) []*dicom.Element
		bulk  func(string) string
		want  string
	}{
		{
			name: "strings, multi-valued and trimmed",
			elems: func(t *testing.T) []*dicom.Element {
				return []*dicom.Element{
					elem(t, tag.ImageType, "CS", []string{"ORIGINAL", "PRIMARY "}),
					elem(t, tag.SOPInstanceUID, "UI", []string{"1.2.3\x00"}),
					elem(t, tag.StudyDescription, "LO", []string{"CT HEAD "}),
				}
			},
			want: `{"00080008":{"vr":"CS","Value":["ORIGINAL","PRIMARY"]},"00080018":{"vr":"UI","Value":["1.2.3"]},"00081030":{"vr":"LO","Value":["CT HEAD"]}}`,
		},
		{
			name: "empty value and empty value among several",
			elems: func(t *testing.T) []*dicom.Element {
				return []*dicom.Element{
					elem(t, tag.AccessionNumber, "SH", []string{""}),
					elem(t, tag.ImageType, "CS", []string{"DERIVED", "", "AXIAL"}),
				}
			},
			want: `{"00080008":{"vr":"CS","Value":["DERIVED",null,"AXIAL"]},"00080050":{"vr":"SH"}}`,
		},
		{
			name: "text VRs keep backslashes",
			elems: func(t *testing.T) []*dicom.Element {
				return []*dicom.Element{elem(t, tag.ImageComments, "LT", []string{`C:`, `path`})}
			},
			want: `{"00204000":{"vr":"LT","Value":["C:\\path"]}}`,
		},
		{
			name: "person name groups",
			elems: func(t *testing.T) []*dicom.Element {
				return []*dicom.Element{
					elem(t, tag.PatientName, "PN", []string{"DEMO^ALICE"}),
					elem(t, tag.ReferringPhysicianName, "PN", []string{"Yamada^Tarou=山田^太郎=やまだ^たろう"}),
				}
			},
			want: `{"00080090":{"vr":"PN","Value":[{"Alphabetic":"Yamada^Tarou","Ideographic":"山田^太郎","Phonetic":"やまだ^たろう"}]},"00100010":{"vr":"PN","Value":[{"Alphabetic":"DEMO^ALICE"}]}}`,
		},
		{
			name: "IS and DS as numbers, junk kept as a string",
			elems: func(t *testing.T) []*dicom.Element {
				return []*dicom.Element{
					elem(t, tag.SeriesNumber, "IS", []string{" +12"}),
					elem(t, tag.PixelSpacing, "DS", []string{"0.50", "1e3"}),
					elem(t, tag.SliceThickness, "DS", []string{"n/a"}),
				}
			},
			want: `{"00180050":{"vr":"DS","Value":["n/a"]},"00200011":{"vr":"IS","Value":[12]},"00280030":{"vr":"DS","Value":[0.5,1000]}}`,
		},
		{
			name: "binary numbers and AT",
			elems: func(t *testing.T) []*dicom.Element {
				return []*dicom.Element{
					elem(t, tag.Rows, "US", []int{512}),
					elem(t, tag.FrameIncrementPointer, "AT", []int{0x0018, 0x1063, 0x0018, 0x1065}),
					elem(t, tag.SmallestImagePixelValue, "SS", []int{-3}),
					elem(t, tag.DiffusionBValue, "FD", []float64{2.5}),
					elem(t, tag.RecommendedDisplayFrameRateInFloat, "FL", []float64{0.25}),
				}
			},
			want: `{"00089459":{"vr":"FL","Value":[0.25]},"00189087":{"vr":"FD","Value":[2.5]},"00280009":{"vr":"AT","Value":["00181063","00181065"]},"00280010":{"vr":"US","Value":[512]},"00280106":{"vr":"SS","Value":[-3]}}`,
		},
		{
			name: "nested sequences",
			elems: func(t *testing.T) []*dicom.Element {
				inner := [][]*dicom.Element{{elem(t, tag.CodeValue, "SH", []string{"T-D1100"})}}
				return []*dicom.Element{elem(t, tag.OtherPatientIDsSequence, "SQ", [][]*dicom.Element{
					{elem(t, tag.PatientID, "LO", []string{"9434765919"}), elem(t, tag.IssuerOfPatientID, "LO", []string{"NHS"})},
					{elem(t, tag.PatientID, "LO", []string{"MRN1"}), elem(t, tag.AnatomicRegionSequence, "SQ", inner)},
				})}
			},
			want: `{"00101002":{"vr":"SQ","Value":[{"00100020":{"vr":"LO","Value":["9434765919"]},"00100021":{"vr":"LO","Value":["NHS"]}},{"00082218":{"vr":"SQ","Value":[{"00080100":{"vr":"SH","Value":["T-D1100"]}}]},"00100020":{"vr":"LO","Value":["MRN1"]}}]}}`,
		},
		{
			name: "pixel data as bulk data",
			elems: func(t *testing.T) []*dicom.Element {
				return []*dicom.Element{elem(t, tag.PixelData, "OW", pixel16)}
			},
			bulk: bulkAll,
			want: `{"7FE00010":{"vr":"OW","BulkDataURI":"https://pacs.example/bulk/7FE00010"}}`,
		},
		{
			name: "pixel data inline when bulk declines",
			elems: func(t *testing.T) []*dicom.Element {
				return []*dicom.Element{elem(t, tag.PixelData, "OW", pixel16)}
			},
			bulk: func(string) string { return "" },
			// 02 01 04 03 05 00 06 00, little endian.
			want: `{"7FE00010":{"vr":"OW","InlineBinary":"AgEEAwUABgA="}}`,
		},
		{
			name: "other binary VRs, nested paths",
			elems: func(t *testing.T) []*dicom.Element {
				return []*dicom.Element{
					elem(t, tag.Tag{Group: 0x0029, Element: 0x1010}, "UN", []byte{1, 2, 3, 4}),
					elem(t, tag.IconImageSequence, "SQ", [][]*dicom.Element{{elem(t, tag.RedPaletteColorLookupTableData, "OW", []byte{9, 9})}}),
				}
			},
			bulk: bulkAll,
			want: `{"00291010":{"vr":"UN","BulkDataURI":"https://pacs.example/bulk/00291010"},"00880200":{"vr":"SQ","Value":[{"00281201":{"vr":"OW","BulkDataURI":"https://pacs.example/bulk/00880200/0/00281201"}}]}}`,
		},
		{
			name: "no bulk function inlines",
			elems: func(t *testing.T) []*dicom.Element {
				return []*dicom.Element{elem(t, tag.Tag{Group: 0x0029, Element: 0x1010}, "OB", []byte("hi"))}
			},
			want: `{"00291010":{"vr":"OB","InlineBinary":"aGk="}}`,
		},
		{
			name: "file meta, group lengths and empty elements",
			elems: func(t *testing.T) []*dicom.Element {
				return []*dicom.Element{
					elem(t, tag.TransferSyntaxUID, "UI", []string{uid.ExplicitVRLittleEndian}),
					elem(t, tag.Tag{Group: 0x0008, Element: 0x0000}, "UL", []int{100}),
					{Tag: tag.StudyID, RawValueRepresentation: "SH"},
				}
			},
			want: `{"00200010":{"vr":"SH"}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := fromDICOM(dicom.Dataset{Elements: tc.elems(t)}, tc.bulk)
			if err != nil {
				t.Fatalf("fromDICOM: %v", err)
			}
			if err := ds.Validate(); err != nil {
				t.Fatalf("result does not validate: %v", err)
			}
			got, err := json.Marshal(ds)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestFromDICOMParsed writes a dataset to Part-10 bytes and converts what the parser reads
// back, so the value types the parser produces (not only those NewValue makes) are covered.
func TestFromDICOMParsed(t *testing.T) {
	elems := []*dicom.Element{
		elem(t, tag.MediaStorageSOPClassUID, "UI", []string{"1.2.840.10008.5.1.4.1.1.7"}),
		elem(t, tag.MediaStorageSOPInstanceUID, "UI", []string{"1.2.3.4"}),
		elem(t, tag.TransferSyntaxUID, "UI", []string{uid.ExplicitVRLittleEndian}),
		elem(t, tag.SOPInstanceUID, "UI", []string{"1.2.3.4"}),
		elem(t, tag.StudyDate, "DA", []string{"20240131"}),
		elem(t, tag.PatientName, "PN", []string{"DEMO^ALICE"}),
		elem(t, tag.NumberOfFrames, "IS", []string{"2"}),
		elem(t, tag.FrameIncrementPointer, "AT", []int{0x0018, 0x1063}),
		elem(t, tag.Rows, "US", []int{1}),
		elem(t, tag.Columns, "US", []int{2}),
		elem(t, tag.SamplesPerPixel, "US", []int{1}),
		elem(t, tag.BitsAllocated, "US", []int{16}),
		elem(t, tag.PixelData, "OW", dicom.PixelDataInfo{Frames: []*frame.Frame{nativeFrame16(1, 2, 1, 2), nativeFrame16(1, 2, 3, 4)}}),
	}
	var buf bytes.Buffer
	if err := dicom.Write(&buf, dicom.Dataset{Elements: elems}); err != nil {
		t.Fatalf("write: %v", err)
	}
	parsed, err := dicom.Parse(&buf, int64(buf.Len()), nil)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	ds, err := fromDICOM(parsed, nil)
	if err != nil {
		t.Fatalf("fromDICOM: %v", err)
	}
	tests := []struct {
		name, tag, want string
	}{
		{name: "file meta skipped", tag: dcmjson.TagTransferSyntaxUID, want: ``},
		{name: "date", tag: dcmjson.TagStudyDate, want: `{"vr":"DA","Value":["20240131"]}`},
		{name: "person name", tag: dcmjson.TagPatientName, want: `{"vr":"PN","Value":[{"Alphabetic":"DEMO^ALICE"}]}`},
		{name: "number of frames", tag: dcmjson.TagNumberOfFrames, want: `{"vr":"IS","Value":[2]}`},
		{name: "attribute tag", tag: "00280009", want: `{"vr":"AT","Value":["00181063"]}`},
		{name: "pixel data", tag: dcmjson.TagPixelData, want: `{"vr":"OW","InlineBinary":"AQACAAMABAA="}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			el, ok := ds[tc.tag]
			if !ok {
				if tc.want != "" {
					t.Fatalf("%s missing", tc.tag)
				}
				return
			}
			got, _ := json.Marshal(el)
			if string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

package pacssim

import (
	"bytes"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

func testStudy() StudySpec {
	return StudySpec{
		UID:     "1.2.999.1.1",
		Patient: Patient{NHSNumber: "9434765919", LocalID: "MRN1", Name: "TEST^ONE", BirthDate: "19700101", Sex: "O"},
		Date:    "20200101", Time: "120000", AccessionNumber: "ACC1", StudyID: "1", Description: "TEST",
		Series: []SeriesSpec{
			{Number: 1, Modality: "CT", Instances: 2, Rows: 16, Columns: 16},
			{Number: 2, Modality: "US", Instances: 1, Frames: 3, Rows: 8, Columns: 10, Pixels: Mono8},
			{Number: 3, Modality: "US", Instances: 1, Rows: 6, Columns: 6, Pixels: RGB8},
			{Number: 4, Modality: "DX", Instances: 1, Rows: 9, Columns: 7},
		},
	}
}

func TestSynthesizeDeterministic(t *testing.T) {
	a, err := Synthesize(7, testStudy(), PatientIDScheme{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		seed     uint64
		wantSame bool
	}{
		{name: "same seed gives the same bytes", seed: 7, wantSame: true},
		{name: "another seed gives other pixels", seed: 8, wantSame: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Synthesize(tc.seed, testStudy(), PatientIDScheme{})
			if err != nil {
				t.Fatal(err)
			}
			if len(a) != len(b) {
				t.Fatalf("%d instances, then %d", len(a), len(b))
			}
			for i := range a {
				if same := bytes.Equal(a[i].Bytes(), b[i].Bytes()); same != tc.wantSame {
					t.Errorf("instance %s: same bytes = %v, want %v", a[i].SOPInstanceUID, same, tc.wantSame)
				}
			}
		})
	}
}

// TestSynthesizeParses parses every file fully (pixel data included) with the library
// and checks what the PACS indexed against it.
func TestSynthesizeParses(t *testing.T) {
	instances, err := Synthesize(1, testStudy(), PatientIDScheme{InOtherPatientIDs: true, Issuer: "NHS", LocalIssuer: "XX"})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		uid, class, photometric string
		frames, samples, bits   int
	}{
		{"1.2.999.1.1.1.1", "1.2.840.10008.5.1.4.1.1.2", "MONOCHROME2", 1, 1, 16},
		{"1.2.999.1.1.1.2", "1.2.840.10008.5.1.4.1.1.2", "MONOCHROME2", 1, 1, 16},
		{"1.2.999.1.1.2.1", "1.2.840.10008.5.1.4.1.1.3.1", "MONOCHROME2", 3, 1, 8},
		{"1.2.999.1.1.3.1", "1.2.840.10008.5.1.4.1.1.6.1", "RGB", 1, 3, 8},
		{"1.2.999.1.1.4.1", "1.2.840.10008.5.1.4.1.1.1.1", "MONOCHROME2", 1, 1, 16},
	}
	if len(instances) != len(want) {
		t.Fatalf("%d instances, want %d", len(instances), len(want))
	}
	for i, w := range want {
		in := instances[i]
		t.Run(w.uid, func(t *testing.T) {
			if in.SOPInstanceUID != w.uid || in.SOPClassUID != w.class || in.frames != w.frames {
				t.Fatalf("got %s %s %d frames, want %s %s %d", in.SOPInstanceUID, in.SOPClassUID, in.frames, w.uid, w.class, w.frames)
			}
			ds, err := dicom.Parse(bytes.NewReader(in.Bytes()), int64(len(in.Bytes())), nil)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			var prev uint32
			for _, e := range ds.Elements {
				cur := uint32(e.Tag.Group)<<16 | uint32(e.Tag.Element)
				if cur < prev {
					t.Errorf("element %v after %08X: not in ascending order", e.Tag, prev)
				}
				prev = cur
			}
			ts, err := ds.FindElementByTag(tag.TransferSyntaxUID)
			if err != nil || dicom.MustGetStrings(ts.Value)[0] != ExplicitVRLittleEndian {
				t.Errorf("transfer syntax: %v %v", ts, err)
			}
			pm, _ := ds.FindElementByTag(tag.PhotometricInterpretation)
			if got := dicom.MustGetStrings(pm.Value)[0]; got != w.photometric {
				t.Errorf("photometric %q, want %q", got, w.photometric)
			}
			pd, err := ds.FindElementByTag(tag.PixelData)
			if err != nil {
				t.Fatalf("no pixel data: %v", err)
			}
			info := dicom.MustGetPixelDataInfo(pd.Value)
			if len(info.Frames) != w.frames {
				t.Fatalf("parsed %d frames, want %d", len(info.Frames), w.frames)
			}
			for f, fr := range info.Frames {
				nf, err := fr.GetNativeFrame()
				if err != nil {
					t.Fatalf("frame %d: %v", f+1, err)
				}
				if nf.SamplesPerPixel() != w.samples || nf.BitsPerSample() != w.bits {
					t.Errorf("frame %d: %d samples of %d bits, want %d of %d", f+1, nf.SamplesPerPixel(), nf.BitsPerSample(), w.samples, w.bits)
				}
				raw, err := in.Frame(f + 1)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(raw, frameBytes(nf)) {
					t.Errorf("frame %d: the served bytes differ from what the library parsed", f+1)
				}
			}
			if id := in.meta.String(dcmjson.TagPatientID); id != "MRN1" {
				t.Errorf("PatientID %q, want the local number", id)
			}
			items := in.meta.Items(dcmjson.TagOtherPatientIDsSequence)
			if len(items) != 1 || items[0].String(dcmjson.TagPatientID) != "9434765919" || items[0].String(dcmjson.TagIssuerOfPatientID) != "NHS" {
				t.Errorf("OtherPatientIDsSequence = %s", mustJSON(items))
			}
		})
	}
}

// frameBytes encodes a parsed native frame as little-endian bytes.
func frameBytes(nf interface{ RawDataSlice() any }) []byte {
	var buf bytes.Buffer
	switch raw := nf.RawDataSlice().(type) {
	case []uint8:
		buf.Write(raw)
	case []uint16:
		for _, v := range raw {
			buf.WriteByte(byte(v))
			buf.WriteByte(byte(v >> 8))
		}
	}
	return buf.Bytes()
}

func TestSynthesizeRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*StudySpec)
	}{
		{name: "bad study UID", mutate: func(s *StudySpec) { s.UID = "1.2.abc" }},
		{name: "UID too long for instances", mutate: func(s *StudySpec) { s.UID = "1." + string(bytes.Repeat([]byte("9"), 60)) }},
		{name: "no series", mutate: func(s *StudySpec) { s.Series = nil }},
		{name: "empty series", mutate: func(s *StudySpec) { s.Series[0].Instances = 0 }},
		{name: "no rows", mutate: func(s *StudySpec) { s.Series[1].Rows = 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testStudy()
			tc.mutate(&s)
			if _, err := Synthesize(1, s, PatientIDScheme{}); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// metaElement is one explicit-VR little-endian element, for building test files by hand.
func metaElement(element uint16, vr string, value []byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint16(b, 0x0002)
	b = binary.LittleEndian.AppendUint16(b, element)
	b = append(b, vr...)
	if longLengthVR([]byte(vr)) {
		b = append(b, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(value)))
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(value)))
	}
	return append(b, value...)
}

// uiValue pads a UID to an even length with a NUL, as PS3.5 requires.
func uiValue(uid string) []byte {
	if len(uid)%2 == 1 {
		return append([]byte(uid), 0)
	}
	return []byte(uid)
}

// handMadeFile is a minimal PS3.10 file: preamble, "DICM", a meta group with a group
// length, then the data set bytes given.
func handMadeFile(sop string, dataset []byte) []byte {
	var group []byte
	group = append(group, metaElement(0x0001, "OB", []byte{0, 1})...)
	group = append(group, metaElement(0x0002, "UI", uiValue("1.2.840.10008.5.1.4.1.1.7"))...)
	group = append(group, metaElement(0x0003, "UI", uiValue(sop))...)
	group = append(group, metaElement(0x0010, "UI", uiValue("1.2.840.10008.1.2.1"))...)
	f := make([]byte, 128, 128+4+12+len(group)+len(dataset))
	f = append(f, "DICM"...)
	f = append(f, metaElement(0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(group))))...)
	f = append(f, group...)
	return append(f, dataset...)
}

// someDataset is the start of a data set: (0008,0016) SOPClassUID in explicit VR.
var someDataset = []byte{0x08, 0x00, 0x16, 0x00, 'U', 'I', 2, 0, '1', 0}

func libraryFile(t testing.TB, sop string) []byte {
	t.Helper()
	var elems []*dicom.Element
	for _, e := range []struct {
		t tag.Tag
		v any
	}{
		{tag.FileMetaInformationVersion, []byte{0, 1}},
		{tag.MediaStorageSOPClassUID, []string{"1.2.840.10008.5.1.4.1.1.7"}},
		{tag.MediaStorageSOPInstanceUID, []string{sop}},
		{tag.TransferSyntaxUID, []string{"1.2.840.10008.1.2.1"}},
		{tag.ImplementationClassUID, []string{"1.2.999.1"}},
		{tag.SOPClassUID, []string{"1.2.840.10008.5.1.4.1.1.7"}},
		{tag.SOPInstanceUID, []string{sop}},
		{tag.PatientName, []string{"TEST^ONLY"}},
	} {
		el, err := dicom.NewElement(e.t, e.v)
		if err != nil {
			t.Fatal(err)
		}
		elems = append(elems, el)
	}
	var buf bytes.Buffer
	if err := dicom.Write(&buf, dicom.Dataset{Elements: elems}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseFileMeta(t *testing.T) {
	good := handMadeFile("1.2.3.4.5", someDataset)
	metaEnd := len(good) - len(someDataset)
	noSOP := make([]byte, 128)
	noSOP = append(noSOP, "DICM"...)
	noSOP = append(noSOP, metaElement(0x0010, "UI", uiValue("1.2.840.10008.1.2.1"))...)
	noSOP = append(noSOP, someDataset...)
	implicit := make([]byte, 128)
	implicit = append(implicit, "DICM"...)
	implicit = append(implicit, 0x02, 0x00, 0x03, 0x00, 4, 0, 0, 0, '1', '.', '2', 0)
	hugeLength := make([]byte, 128)
	hugeLength = append(hugeLength, "DICM"...)
	hugeLength = append(hugeLength, 0x02, 0x00, 0x01, 0x00, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF)
	tests := []struct {
		name    string
		in      []byte
		wantSOP string
		wantEnd int
		wantErr error
	}{
		{name: "hand-made file", in: good, wantSOP: "1.2.3.4.5", wantEnd: metaEnd},
		{name: "even-length UID without padding", in: handMadeFile("1.2.3.4", someDataset), wantSOP: "1.2.3.4", wantEnd: metaEnd - 2},
		{name: "written by suyashkumar/dicom", in: libraryFile(t, "1.2.826.0.1.3680043.2.1125.1"), wantSOP: "1.2.826.0.1.3680043.2.1125.1"},
		{name: "empty", in: nil, wantErr: ErrShortFileMeta},
		{name: "preamble only", in: make([]byte, 128), wantErr: ErrShortFileMeta},
		{name: "cut inside DICM", in: good[:130], wantErr: ErrShortFileMeta},
		{name: "cut inside an element header", in: good[:preambleLen+5], wantErr: ErrShortFileMeta},
		{name: "cut inside a value", in: good[:metaEnd-3], wantErr: ErrShortFileMeta},
		{name: "ends with the meta group", in: good[:metaEnd], wantErr: ErrShortFileMeta},
		{name: "one byte of the data set", in: good[:metaEnd+1], wantErr: ErrShortFileMeta},
		{name: "no DICM", in: append(make([]byte, 128), "DICX...."...), wantErr: ErrNotPart10},
		{name: "wrong byte inside a partial DICM", in: append(make([]byte, 128), "DX"...), wantErr: ErrNotPart10},
		{name: "a test body, not a file", in: []byte(strings.Repeat("DICM-1.2.3 ", 20)), wantErr: ErrNotPart10},
		{name: "data set straight after DICM", in: append(append(make([]byte, 128), "DICM"...), someDataset...), wantErr: ErrNotPart10},
		{name: "no MediaStorageSOPInstanceUID", in: noSOP, wantErr: ErrNotPart10},
		{name: "implicit VR meta group", in: implicit, wantErr: ErrNotPart10},
		{name: "value longer than the bound", in: hugeLength, wantErr: ErrNotPart10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			meta, end, err := ParseFileMeta(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if meta.SOPInstanceUID != tc.wantSOP || meta.TransferSyntaxUID != "1.2.840.10008.1.2.1" || meta.SOPClassUID != "1.2.840.10008.5.1.4.1.1.7" {
				t.Fatalf("meta %+v, want SOP instance %s", meta, tc.wantSOP)
			}
			if tc.wantEnd != 0 && end != tc.wantEnd {
				t.Fatalf("data set starts at %d, want %d", end, tc.wantEnd)
			}
			if binary.LittleEndian.Uint16(tc.in[end:]) == 0x0002 {
				t.Fatalf("data set starts at %d, inside the meta group", end)
			}
		})
	}
}

func TestReadFileMeta(t *testing.T) {
	big := handMadeFile("1.2.3.4.5", bytes.Repeat([]byte{0x08, 0, 0x16, 0, 'U', 'I', 2, 0, '1', 0}, 20000))
	long := make([]byte, 128)
	long = append(long, "DICM"...)
	long = append(long, metaElement(0x0003, "UI", uiValue("1.2.3"))...)
	long = append(long, metaElement(0x0100, "OB", make([]byte, 100<<10))...)
	tests := []struct {
		name    string
		r       io.Reader
		buf     int
		wantSOP string
		wantErr error
	}{
		{name: "whole reads", r: bytes.NewReader(big), buf: MaxFileMetaBytes, wantSOP: "1.2.3.4.5"},
		{name: "one byte at a time", r: iotest.OneByteReader(bytes.NewReader(big)), buf: MaxFileMetaBytes, wantSOP: "1.2.3.4.5"},
		{name: "half reads", r: iotest.HalfReader(bytes.NewReader(big)), buf: MaxFileMetaBytes, wantSOP: "1.2.3.4.5"},
		{name: "reads that end with EOF", r: iotest.DataErrReader(bytes.NewReader(handMadeFile("1.2.3.4.5", someDataset))), buf: MaxFileMetaBytes, wantSOP: "1.2.3.4.5"},
		{name: "small buffer that holds the meta group", r: bytes.NewReader(big), buf: 300, wantSOP: "1.2.3.4.5"},
		{name: "buffer smaller than the meta group", r: bytes.NewReader(big), buf: 150, wantErr: ErrNotPart10},
		{name: "meta group longer than the bound", r: bytes.NewReader(long), buf: MaxFileMetaBytes, wantErr: ErrNotPart10},
		{name: "file ends inside its meta group", r: bytes.NewReader(big[:200]), buf: MaxFileMetaBytes, wantErr: ErrNotPart10},
		{name: "read error", r: iotest.TimeoutReader(iotest.OneByteReader(bytes.NewReader(big))), buf: MaxFileMetaBytes, wantErr: iotest.ErrTimeout},
		{name: "truncated multipart part", r: io.MultiReader(bytes.NewReader(big[:140]), iotest.ErrReader(ErrTruncated)), buf: MaxFileMetaBytes, wantErr: ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			meta, head, err := ReadFileMeta(tc.r, make([]byte, tc.buf))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				if tc.wantErr != ErrNotPart10 && errors.Is(err, ErrNotPart10) {
					t.Fatalf("a read error reported as a format error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if meta.SOPInstanceUID != tc.wantSOP {
				t.Fatalf("SOP instance %q, want %q", meta.SOPInstanceUID, tc.wantSOP)
			}
			if len(head) > tc.buf || !bytes.HasPrefix(big, head) {
				t.Fatalf("head of %d bytes is not a prefix of the file within the buffer", len(head))
			}
		})
	}
}

// FuzzParseFileMeta feeds arbitrary bytes to ParseFileMeta, alone and after a valid
// preamble, and checks that ReadFileMeta, reading the same bytes one at a time, agrees:
// no panic, no read past the bound, the same SOP instance.
func FuzzParseFileMeta(f *testing.F) {
	f.Add(handMadeFile("1.2.3.4.5", someDataset))
	f.Add(handMadeFile("1.2", nil))
	f.Add(libraryFile(f, "1.2.3"))
	f.Add([]byte("DICM-1.1.1.1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, append(append(make([]byte, 128), "DICM"...), data...)} {
			meta, end, err := ParseFileMeta(in)
			switch {
			case err == nil:
				if meta.SOPInstanceUID == "" || end < preambleLen || end+2 > len(in) || end > MaxFileMetaBytes {
					t.Fatalf("meta %+v ending at %d of %d bytes", meta, end, len(in))
				}
			case err != ErrShortFileMeta && !errors.Is(err, ErrNotPart10):
				t.Fatalf("unexpected error %v", err)
			}
			rmeta, head, rerr := ReadFileMeta(iotest.OneByteReader(bytes.NewReader(in)), make([]byte, MaxFileMetaBytes))
			if !bytes.HasPrefix(in, head) {
				t.Fatal("ReadFileMeta returned bytes that are not the input's head")
			}
			switch {
			case err == nil && (rerr != nil || rmeta != meta):
				t.Fatalf("ParseFileMeta read %+v; ReadFileMeta %+v, %v", meta, rmeta, rerr)
			case err != nil && rerr == nil:
				if pm, _, perr := ParseFileMeta(head); perr != nil || pm != rmeta {
					t.Fatalf("ReadFileMeta read %+v from a head ParseFileMeta reads as %+v, %v", rmeta, pm, perr)
				}
			case rerr != nil && !errors.Is(rerr, ErrNotPart10):
				t.Fatalf("ReadFileMeta of a byte slice failed with %v", rerr)
			}
		}
	})
}

func BenchmarkParseFileMeta(b *testing.B) {
	file := libraryFile(b, "1.2.826.0.1.3680043.8.498.12345678901234567890")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseFileMeta(file); err != nil {
			b.Fatal(err)
		}
	}
}

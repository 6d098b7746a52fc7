package media

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

func FuzzParseAccept(f *testing.F) {
	for _, s := range []string{
		`multipart/related; type="application/dicom"; transfer-syntax=*`,
		`multipart/related; type=application/octet-stream; transfer-syntax=*`,
		`application/dicom+json, application/json;q=0.9`,
		`*/*`, `image/*;q=0.5, image/png`, `text/plain; x="a,b\"c"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ranges, err := ParseAccept(s)
		if err != nil {
			return
		}
		// What parses formats back to something that parses the same.
		for _, r := range ranges {
			back, err := ParseAccept(r.String())
			if err != nil || len(back) != 1 || !reflect.DeepEqual(back[0], r) {
				t.Fatalf("%q: range %#v formats as %q, which parses as %#v, %v", s, r, r.String(), back, err)
			}
		}
		Acceptable(ranges, frameOffers)
	})
}

// FuzzReader writes parts cut from the input with a Writer and reads them back with a
// Reader, whole and one byte at a time; it also reads the raw input as a body, which must end
// in parts, io.EOF or an error, never a panic or a hang.
func FuzzReader(f *testing.F) {
	f.Add([]byte("hello\x00world\r\n--x\x00\r\n--nirproxy"), uint8(3))
	f.Add([]byte("--b\r\n\r\nx\r\n--b--"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, cuts uint8) {
		var parts [][]byte
		rest := data
		for i := 0; i < int(cuts%8) && len(rest) > 0; i++ {
			n := int(rest[0]) % (len(rest) + 1)
			parts = append(parts, rest[:n])
			rest = rest[n:]
		}
		parts = append(parts, rest)

		var body bytes.Buffer
		w := NewWriter(&body)
		for _, p := range parts {
			if _, err := w.writePart("application/octet-stream", "", bytes.NewReader(p)); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
		for _, mk := range []func() io.Reader{
			func() io.Reader { return bytes.NewReader(body.Bytes()) },
			func() io.Reader { return iotest.OneByteReader(bytes.NewReader(body.Bytes())) },
		} {
			r := NewReader(mk(), w.Boundary())
			for i := 0; ; i++ {
				p, err := r.NextPart()
				if err == io.EOF {
					if i != len(parts) {
						t.Fatalf("read %d parts, wrote %d", i, len(parts))
					}
					break
				}
				if err != nil {
					t.Fatalf("part %d: %v", i, err)
				}
				got, err := io.ReadAll(p)
				if err != nil || !bytes.Equal(got, parts[i]) {
					t.Fatalf("part %d = %q, %v; want %q", i, got, err, parts[i])
				}
			}
		}

		// The raw input as a body with a short boundary.
		r := NewReader(bytes.NewReader(data), "x")
		for {
			p, err := r.NextPart()
			if err != nil {
				if err != io.EOF && errors.Is(err, io.EOF) {
					t.Fatalf("an error that looks like a clean end: %v", err)
				}
				break
			}
			io.Copy(io.Discard, p)
		}
	})
}

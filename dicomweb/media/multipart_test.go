package media

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"
	"testing/iotest"
)

type testPart struct {
	contentType, location string
	body                  string
}

// readAll reads every part with a Reader; it returns what it read and the error that ended it
// (nil for a clean io.EOF).
func readAll(t *testing.T, r *Reader) ([]testPart, error) {
	t.Helper()
	var parts []testPart
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			return parts, err
		}
		body, err := io.ReadAll(p)
		parts = append(parts, testPart{p.Header.Get("Content-Type"), p.ContentLocation(), string(body)})
		if err != nil {
			return parts, err
		}
	}
}

func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.setBoundary("b0und"); err != nil {
		t.Fatal(err)
	}
	pw, err := w.CreatePart("application/dicom", "/studies/1/series/2/instances/3")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(pw, "DICM-one")
	if _, err := w.writePart("application/dicom", "", strings.NewReader("DICM-two")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := "--b0und\r\nContent-Type: application/dicom\r\nContent-Location: /studies/1/series/2/instances/3\r\n\r\nDICM-one" +
		"\r\n--b0und\r\nContent-Type: application/dicom\r\n\r\nDICM-two" +
		"\r\n--b0und--\r\n"
	if buf.String() != want {
		t.Fatalf("body =\n%q\nwant\n%q", buf.String(), want)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := w.CreatePart("application/dicom", ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("CreatePart after Close: %v, want ErrClosed", err)
	}

	// The standard library reads what we write.
	mr := multipart.NewReader(strings.NewReader(want), "b0und")
	for i, body := range []string{"DICM-one", "DICM-two"} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("stdlib part %d: %v", i, err)
		}
		got, _ := io.ReadAll(p)
		if string(got) != body {
			t.Fatalf("stdlib part %d = %q", i, got)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("stdlib end: %v", err)
	}
}

func TestWriterRandomBoundaryAndContentType(t *testing.T) {
	a, b := NewWriter(io.Discard), NewWriter(io.Discard)
	if a.Boundary() == b.Boundary() {
		t.Fatal("two writers share a boundary")
	}
	ct := a.ContentType("application/dicom")
	mt, err := ParseMediaType(ct)
	if err != nil {
		t.Fatal(err)
	}
	if mt.Essence() != "multipart/related" || mt.Param("type") != "application/dicom" || mt.Param("boundary") != a.Boundary() {
		t.Fatalf("content type %q parsed as %+v", ct, mt)
	}
	if got, err := Boundary(ct); err != nil || got != a.Boundary() {
		t.Fatalf("Boundary(%q) = %q, %v", ct, got, err)
	}
}

func TestWriterAbort(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	pw, _ := w.CreatePart("application/dicom", "")
	io.WriteString(pw, "half an inst")
	w.Abort()
	if w.state != writerAborted {
		t.Fatal("not aborted after Abort")
	}
	if _, err := pw.Write([]byte("ance")); !errors.Is(err, ErrAborted) {
		t.Fatalf("part write after Abort: %v", err)
	}
	if _, err := w.CreatePart("application/dicom", ""); !errors.Is(err, ErrAborted) {
		t.Fatalf("CreatePart after Abort: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrAborted) {
		t.Fatalf("Close after Abort: %v", err)
	}
	if strings.Contains(buf.String(), w.Boundary()+"--") {
		t.Fatalf("aborted body has a closing delimiter: %q", buf.String())
	}
	// What a client reads is truncated.
	if _, err := readAll(t, NewReader(bytes.NewReader(buf.Bytes()), w.Boundary())); !errors.Is(err, ErrTruncated) {
		t.Fatalf("reading an aborted body: %v, want ErrTruncated", err)
	}
}

func TestWriterRefusesBadHeaders(t *testing.T) {
	tests := []struct {
		name string
		h    textproto.MIMEHeader
	}{
		{name: "line break in value", h: textproto.MIMEHeader{"Content-Type": {"application/dicom\r\nX-Evil: 1"}}},
		{name: "NUL in value", h: textproto.MIMEHeader{"Content-Location": {"a\x00b"}}},
		{name: "bad name", h: textproto.MIMEHeader{"Bad Name": {"x"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWriter(io.Discard)
			if _, err := w.CreatePartHeader(tc.h); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestWriterHeaderOrder(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.setBoundary("x")
	w.CreatePartHeader(textproto.MIMEHeader{
		"Mime-Version":     {"1.0"},
		"Content-Location": {"/a"},
		"Content-Type":     {"application/dicom"},
		"Content-Length":   {"3"},
	})
	want := "--x\r\nContent-Type: application/dicom\r\nContent-Location: /a\r\nContent-Length: 3\r\nMime-Version: 1.0\r\n\r\n"
	if buf.String() != want {
		t.Fatalf("got %q, want %q", buf.String(), want)
	}
}

func TestWriterEmpty(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.setBoundary("x")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "--x--\r\n" {
		t.Fatalf("got %q", buf.String())
	}
	parts, err := readAll(t, NewReader(&buf, "x"))
	if err != nil || len(parts) != 0 {
		t.Fatalf("read back %v, %v", parts, err)
	}
}

func TestCopyIntoPartFlushes(t *testing.T) {
	rec := httptest.NewRecorder()
	w := NewWriter(rec)
	if _, err := w.writePart("application/dicom", "", iotest.HalfReader(strings.NewReader("abcdef"))); err != nil {
		t.Fatal(err)
	}
	if !rec.Flushed {
		t.Fatal("response was not flushed")
	}
}

func TestReader(t *testing.T) {
	twoParts := []testPart{
		{"application/dicom", "/studies/1", "first body"},
		{"application/dicom", "", "second\r\nbody with\r\n--bound lookalike and \r\n--boundaryX too"},
	}
	wellFormed := "--boundary\r\nContent-Type: application/dicom\r\nContent-Location: /studies/1\r\n\r\nfirst body" +
		"\r\n--boundary\r\nContent-Type: application/dicom\r\n\r\nsecond\r\nbody with\r\n--bound lookalike and \r\n--boundaryX too" +
		"\r\n--boundary--\r\n"
	tests := []struct {
		name      string
		body      string
		boundary  string
		want      []testPart
		wantTrunc bool
		wantErr   bool // an error other than truncation
	}{
		{name: "well formed", body: wellFormed, want: twoParts},
		{name: "preamble and epilogue", body: "This is a preamble.\r\n--not it\r\n" + wellFormed + "epilogue text\r\n", want: twoParts},
		{name: "no CRLF after closing delimiter", body: strings.TrimSuffix(wellFormed, "\r\n"), want: twoParts},
		{
			name: "LF framing", body: "--boundary\nContent-Type: a/b\n\none\n--boundary\nContent-Type: a/c\n\ntwo\n--boundary--\n",
			want: []testPart{{"a/b", "", "one"}, {"a/c", "", "two"}},
		},
		{
			name: "transport padding", body: "--boundary  \r\nContent-Type: a/b\r\n\r\none\r\n--boundary\t\r\n\r\ntwo\r\n--boundary--",
			want: []testPart{{"a/b", "", "one"}, {"", "", "two"}},
		},
		{
			name: "folded header", body: "--boundary\r\nContent-Type: multipart/related;\r\n type=a/b\r\n\r\nx\r\n--boundary--",
			want: []testPart{{"multipart/related; type=a/b", "", "x"}},
		},
		{name: "empty part body", body: "--boundary\r\n\r\n\r\n--boundary--", want: []testPart{{"", "", ""}}},
		{name: "no parts", body: "--boundary--\r\n", want: nil},
		{name: "truncated mid-part", body: wellFormed[:strings.Index(wellFormed, "first")+5], want: []testPart{{"application/dicom", "/studies/1", "first"}}, wantTrunc: true},
		{name: "truncated before closing delimiter", body: strings.TrimSuffix(wellFormed, "\r\n--boundary--\r\n"), want: twoParts, wantTrunc: true},
		{name: "truncated after boundary of closing delimiter", body: strings.TrimSuffix(wellFormed, "--\r\n"), want: twoParts, wantTrunc: true},
		{name: "truncated inside closing dashes", body: strings.TrimSuffix(wellFormed, "-\r\n"), want: twoParts, wantTrunc: true},
		{
			name: "truncated after a delimiter line", body: "--boundary\r\n\r\none\r\n--boundary\r\n",
			want: []testPart{{"", "", "one"}}, wantTrunc: true,
		},
		{
			name: "truncated inside part headers", body: "--boundary\r\nContent-Type: a/b\r\nContent-Loc",
			want: nil, wantTrunc: true,
		},
		{
			name: "truncated inside a delimiter", body: "--boundary\r\n\r\none\r\n--bou",
			want: []testPart{{"", "", "one"}}, wantTrunc: true,
		},
		{name: "no delimiter at all", body: "<html>502 Bad Gateway</html>", want: nil, wantTrunc: true},
		{name: "empty body", body: "", want: nil, wantTrunc: true},
		{name: "wrong boundary", body: wellFormed, boundary: "other", want: nil, wantTrunc: true},
		{name: "malformed header line", body: "--boundary\r\nno colon here\r\n\r\nx\r\n--boundary--", wantErr: true},
		{name: "junk after boundary", body: "--boundary\r\n\r\nx\r\n--boundary junk\r\n", want: []testPart{{"", "", "x"}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			boundary := tc.boundary
			if boundary == "" {
				boundary = "boundary"
			}
			// Every way of chunking the input must give the same answer.
			readers := map[string]func() io.Reader{
				"whole":    func() io.Reader { return strings.NewReader(tc.body) },
				"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(tc.body)) },
				"data+EOF": func() io.Reader { return iotest.DataErrReader(strings.NewReader(tc.body)) },
			}
			for name, mk := range readers {
				got, err := readAll(t, NewReader(mk(), boundary))
				switch {
				case tc.wantTrunc:
					if !errors.Is(err, ErrTruncated) {
						t.Fatalf("%s: err = %v, want ErrTruncated", name, err)
					}
				case tc.wantErr:
					if err == nil || errors.Is(err, ErrTruncated) {
						t.Fatalf("%s: err = %v, want a non-truncation error", name, err)
					}
					continue
				default:
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
				}
				if !equalParts(got, tc.want) {
					t.Fatalf("%s: parts =\n%q\nwant\n%q", name, got, tc.want)
				}
			}
		})
	}
}

func equalParts(a, b []testPart) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReaderSplitEverywhere cuts a body into two reads at every possible offset, so that the
// delimiter is split across reads in every way.
func TestReaderSplitEverywhere(t *testing.T) {
	body := "pre\r\n--bnd\r\nContent-Type: a/b\r\n\r\nhello\r\n--bn\r\n--bnd\r\n\r\nworld\r\n--bnd--\r\n"
	want := []testPart{{"a/b", "", "hello\r\n--bn"}, {"", "", "world"}}
	for i := 0; i <= len(body); i++ {
		r := io.MultiReader(strings.NewReader(body[:i]), strings.NewReader(body[i:]))
		got, err := readAll(t, NewReader(r, "bnd"))
		if err != nil || !equalParts(got, want) {
			t.Fatalf("split at %d: parts %q, err %v", i, got, err)
		}
	}
}

// TestReaderLargeParts reads parts bigger than the read buffer, with small reads, and
// checks every byte.
func TestReaderLargeParts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bodies := make([][]byte, 3)
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for i := range bodies {
		bodies[i] = make([]byte, 200_000+i*7919)
		for j := range bodies[i] {
			bodies[i][j] = byte(rng.UintN(256))
		}
		w.writePart("application/octet-stream", "", bytes.NewReader(bodies[i]))
	}
	w.Close()

	r, err := NewReaderFromContentType(iotest.HalfReader(&buf), w.ContentType("application/octet-stream"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range bodies {
		p, err := r.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		// Read in odd-sized pieces.
		var got []byte
		chunk := make([]byte, 1000+i)
		for {
			n, err := p.Read(chunk)
			got = append(got, chunk[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
		}
		if !bytes.Equal(got, bodies[i]) {
			t.Fatalf("part %d differs (len %d, want %d)", i, len(got), len(bodies[i]))
		}
	}
	if _, err := r.NextPart(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if _, err := r.NextPart(); err != io.EOF {
		t.Fatalf("after end: %v", err)
	}
}

func TestReaderSkipsUnreadPart(t *testing.T) {
	body := "--b\r\n\r\nunread body\r\n--b\r\nContent-Type: a/b\r\n\r\nsecond\r\n--b--"
	r := NewReader(strings.NewReader(body), "b")
	if _, err := r.NextPart(); err != nil {
		t.Fatal(err)
	}
	p, err := r.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(p)
	if p.Header.Get("Content-Type") != "a/b" || string(got) != "second" {
		t.Fatalf("second part = %q %q", p.Header.Get("Content-Type"), got)
	}
}

func TestReaderErrorsAreSticky(t *testing.T) {
	r := NewReader(strings.NewReader("--b\r\n\r\nhalf"), "b")
	p, err := r.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(p); !errors.Is(err, ErrTruncated) {
		t.Fatalf("part read: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := r.NextPart(); !errors.Is(err, ErrTruncated) {
			t.Fatalf("NextPart %d: %v", i, err)
		}
	}
}

func TestReaderPassesReadErrors(t *testing.T) {
	boom := errors.New("connection reset")
	r := NewReader(io.MultiReader(strings.NewReader("--b\r\n\r\nsome"), iotest.ErrReader(boom)), "b")
	p, err := r.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(p); !errors.Is(err, boom) || errors.Is(err, ErrTruncated) {
		t.Fatalf("part read: %v, want the read error", err)
	}
}

func TestNewReaderFromContentType(t *testing.T) {
	body := "--a:b c\r\n\r\nx\r\n--a:b c--\r\n"
	r, err := NewReaderFromContentType(strings.NewReader(body), `multipart/related; type="application/dicom"; boundary="a:b c"`)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := readAll(t, r)
	if err != nil || len(parts) != 1 || parts[0].body != "x" {
		t.Fatalf("parts %q, %v", parts, err)
	}
	if _, err := NewReaderFromContentType(strings.NewReader(body), "application/dicom"); err == nil {
		t.Fatal("single-part content type accepted")
	}
}

// BenchmarkReader reads the parts of a 50 MB body, against mime/multipart on the same body.
func BenchmarkReader(b *testing.B) {
	body := benchBody()
	b.Run("media.Reader", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			r := NewReader(onlyReader{bytes.NewReader(body)}, "nirproxy-BENCH")
			for {
				p, err := r.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(onlyWriter{io.Discard}, p); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("mime/multipart", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			r := multipart.NewReader(onlyReader{bytes.NewReader(body)}, "nirproxy-BENCH")
			for {
				p, err := r.NextRawPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(onlyWriter{io.Discard}, p); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

package media

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"sort"
	"strings"
)

// ErrTruncated reports a multipart body that ended before its closing delimiter: inside a
// part or between parts, anywhere before "--boundary--". A stream that fails with it must
// never be passed on as complete.
var ErrTruncated = errors.New("multipart body truncated before its closing delimiter")

// ErrAborted is returned by a Writer used after Abort.
var ErrAborted = errors.New("multipart response aborted")

// ErrClosed is returned by a Writer used after Close.
var ErrClosed = errors.New("multipart response already closed")

// Writer writes a multipart/related body (RFC 2387) part by part, straight to the underlying
// writer: nothing is buffered beyond one part's header lines.
//
// # Ending the body
//
// Close writes the closing delimiter and must be called only when every part was written in
// full. When a part cannot be completed (an upstream failed mid-stream) call Abort instead:
// the closing delimiter is then never written, so a client parsing the body sees it as
// truncated. Abort does not touch the connection; an HTTP handler must still end the
// response as broken (panic(http.ErrAbortHandler) in net/http and Echo), because a chunked
// HTTP/1.1 response that ends normally looks complete at the HTTP layer.
//
// A Writer is not safe for concurrent use.
type Writer struct {
	w        io.Writer
	boundary string
	parts    int
	state    writerState
	hdr      []byte       // reused for part headers
	flush    func() error // how to flush w; nil when it cannot be
}

type writerState int

const (
	writerOpen writerState = iota
	writerClosed
	writerAborted
)

// NewWriter returns a Writer with a random boundary of 35 characters from crypto/rand, which
// no part body will contain by chance.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, boundary: "nirproxy-" + rand.Text(), flush: flusherOf(w)}
}

// Boundary returns the boundary, for the response's Content-Type.
func (w *Writer) Boundary() string { return w.boundary }

// ContentType returns the Content-Type of the body: `multipart/related;
// type="application/dicom"; boundary=...`. The boundary is left bare when it is a token (the
// random one always is) because some clients split the header on "boundary=" naively.
func (w *Writer) ContentType(partType string) string {
	var b strings.Builder
	b.WriteString(`multipart/related; type="`)
	b.WriteString(partType)
	b.WriteString(`"; boundary=`)
	writeParamValue(&b, "boundary", w.boundary)
	return b.String()
}

// CreatePart starts a part with the given Content-Type and, when location is not "",
// Content-Location; it returns the writer for the part's body, valid until the next part.
func (w *Writer) CreatePart(contentType, location string) (io.Writer, error) {
	fields := [][2]string{{"Content-Type", contentType}}
	if location != "" {
		fields = append(fields, [2]string{"Content-Location", location})
	}
	return w.createPart(fields)
}

// CreatePartHeader starts a part with arbitrary header fields. Content-Type and
// Content-Location come first, the rest in name order, so output is reproducible.
func (w *Writer) CreatePartHeader(h textproto.MIMEHeader) (io.Writer, error) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		switch textproto.CanonicalMIMEHeaderKey(k) {
		case "Content-Type":
			return 0
		case "Content-Location":
			return 1
		}
		return 2
	}
	sort.Slice(keys, func(i, j int) bool {
		if ri, rj := rank(keys[i]), rank(keys[j]); ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	var fields [][2]string
	for _, k := range keys {
		for _, v := range h[k] {
			fields = append(fields, [2]string{textproto.CanonicalMIMEHeaderKey(k), v})
		}
	}
	return w.createPart(fields)
}

func (w *Writer) createPart(fields [][2]string) (io.Writer, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	b := w.hdr[:0]
	if w.parts > 0 {
		b = append(b, "\r\n"...)
	}
	b = append(b, "--"...)
	b = append(b, w.boundary...)
	b = append(b, "\r\n"...)
	for _, f := range fields {
		if !isToken(f[0]) {
			return nil, fmt.Errorf("create multipart part: header name %q is not a token", f[0])
		}
		if strings.ContainsAny(f[1], "\r\n\x00") {
			return nil, fmt.Errorf("create multipart part: header %s has a line break or NUL", f[0])
		}
		b = append(b, f[0]...)
		b = append(b, ": "...)
		b = append(b, f[1]...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	w.hdr = b
	w.parts++
	if _, err := w.w.Write(b); err != nil {
		return nil, &WriteError{Err: err}
	}
	return partWriter{w}, nil
}

// Flush flushes the underlying writer when it can (an http.ResponseWriter); it is a no-op
// otherwise.
func (w *Writer) Flush() error {
	if w.flush == nil {
		return nil
	}
	if err := w.flush(); err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			w.flush = nil
			return nil
		}
		return &WriteError{Err: err}
	}
	return nil
}

// Close writes the closing delimiter. It fails with ErrAborted after Abort; a second Close
// does nothing.
func (w *Writer) Close() error {
	switch w.state {
	case writerAborted:
		return ErrAborted
	case writerClosed:
		return nil
	}
	w.state = writerClosed
	b := w.hdr[:0]
	if w.parts > 0 {
		b = append(b, "\r\n"...)
	}
	b = append(b, "--"...)
	b = append(b, w.boundary...)
	b = append(b, "--\r\n"...)
	w.hdr = b
	if _, err := w.w.Write(b); err != nil {
		return &WriteError{Err: err}
	}
	return nil
}

// Abort marks the body as incomplete: the closing delimiter will never be written, and every
// later call fails with ErrAborted. See the type's documentation for ending the response.
func (w *Writer) Abort() {
	if w.state == writerOpen {
		w.state = writerAborted
	}
}

func (w *Writer) usable() error {
	switch w.state {
	case writerAborted:
		return ErrAborted
	case writerClosed:
		return ErrClosed
	}
	return nil
}

// partWriter writes a part's body straight through, refusing writes after Abort or Close.
// It passes Flush on so that copies into a part still reach the client promptly.
type partWriter struct{ w *Writer }

func (p partWriter) Write(b []byte) (int, error) {
	if err := p.w.usable(); err != nil {
		return 0, err
	}
	n, err := p.w.w.Write(b)
	if err != nil {
		return n, &WriteError{Err: err}
	}
	return n, nil
}

func (p partWriter) FlushError() error { return p.w.Flush() }

// WriteError is a failure to write to our own client (who may have gone away), as opposed to
// a failure of the upstream we read from. It is not an upstream fault: no retry, no breaker
// penalty.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "write to client: " + e.Err.Error() }

func (e *WriteError) Unwrap() error { return e.Err }

// readerBufferSize is the read-ahead of a Reader: parts are scanned for the delimiter in
// windows of this size.
const readerBufferSize = 64 << 10

// Limits on part headers, against an upstream that sends endless header lines.
const (
	maxPartHeaderBytes  = 64 << 10
	maxPartHeaderFields = 100
)

// Reader iterates the parts of a multipart body (RFC 2046 §5.1) as they arrive. Unlike
// mime/multipart it reports a body that ends early as ErrTruncated (never as a clean end),
// scans in 64 KiB windows, and leaves Content-Transfer-Encoding alone.
//
// The preamble before the first delimiter and the epilogue after the closing one are
// skipped. Delimiters are CRLF-framed; a body whose first delimiter line ends in a bare LF is
// read with LF framing throughout, as some origins write it.
type Reader struct {
	br      *bufio.Reader
	dash    []byte // "--" + boundary
	nlDash  []byte // "\r\n--" + boundary (or "\n--" + boundary with LF framing)
	part    *Part
	started bool
	done    bool
	err     error
}

// NewReader returns a Reader for a body framed with the given boundary.
func NewReader(r io.Reader, boundary string) *Reader {
	return &Reader{
		br:     bufio.NewReaderSize(r, readerBufferSize),
		dash:   []byte("--" + boundary),
		nlDash: []byte("\r\n--" + boundary),
	}
}

// NewReaderFromContentType returns a Reader for a body with the given multipart Content-Type.
func NewReaderFromContentType(r io.Reader, contentType string) (*Reader, error) {
	b, err := Boundary(contentType)
	if err != nil {
		return nil, err
	}
	return NewReader(r, b), nil
}

// Part is one body part. Its Read returns the body and then io.EOF at the next delimiter, or
// ErrTruncated if the stream ends first. A Part is valid until the next call to NextPart.
type Part struct {
	// Header holds the part's header fields with canonical names.
	Header textproto.MIMEHeader
	r      *Reader
	n      int // bytes at the head of the buffer known to be body
	eof    bool
	err    error
}

// ContentLocation returns the part's Content-Location field.
func (p *Part) ContentLocation() string { return p.Header.Get("Content-Location") }

// NextPart skips what is left of the current part and returns the next one. It returns
// io.EOF after the closing delimiter and an error wrapping ErrTruncated when the body ends
// before it; any error is returned again by later calls.
func (r *Reader) NextPart() (*Part, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.done {
		return nil, io.EOF
	}
	p, err := r.nextPart()
	if err != nil {
		if err == io.EOF {
			r.done = true
		} else {
			r.err = err
		}
		return nil, err
	}
	r.part = p
	return p, nil
}

func (r *Reader) nextPart() (*Part, error) {
	if !r.started {
		final, err := r.skipPreamble()
		if err != nil {
			return nil, err
		}
		r.started = true
		if final {
			return nil, io.EOF
		}
	} else {
		if r.part != nil && !r.part.eof {
			if _, err := io.Copy(io.Discard, r.part); err != nil {
				return nil, err
			}
		}
		final, err := r.readDelimiterRest()
		if err != nil {
			return nil, err
		}
		if final {
			return nil, io.EOF
		}
	}
	h, err := r.readHeader()
	if err != nil {
		return nil, err
	}
	return &Part{Header: h, r: r}, nil
}

// skipPreamble reads lines up to the first delimiter line and reports whether that was the
// closing one (a body with no parts). It picks CRLF or LF framing from that line.
func (r *Reader) skipPreamble() (final bool, err error) {
	lineStart := true
	for {
		line, err := r.br.ReadSlice('\n')
		if lineStart && bytes.HasPrefix(line, r.dash) {
			rest := line[len(r.dash):]
			if len(rest) >= 2 && rest[0] == '-' && rest[1] == '-' {
				return true, nil
			}
			rest = bytes.TrimLeft(rest, " \t")
			switch {
			case bytes.Equal(rest, []byte("\r\n")):
				return false, nil
			case bytes.Equal(rest, []byte("\n")):
				r.nlDash = r.nlDash[1:] // "\n--boundary"
				return false, nil
			}
		}
		switch err {
		case nil:
			lineStart = true
		case bufio.ErrBufferFull:
			lineStart = false
		case io.EOF:
			return false, fmt.Errorf("read multipart body: no delimiter line before the end: %w", ErrTruncated)
		default:
			return false, fmt.Errorf("read multipart preamble: %w", err)
		}
	}
}

// readDelimiterRest consumes a delimiter whose "\r\n--boundary" starts the buffer (where a
// part's body stopped) up to the end of its line, and reports whether it was the closing one.
func (r *Reader) readDelimiterRest() (final bool, err error) {
	if _, err := r.br.Discard(len(r.nlDash)); err != nil {
		return false, r.truncatedOr(err, "read multipart delimiter")
	}
	next, err := r.br.Peek(2)
	if len(next) == 2 && next[0] == '-' && next[1] == '-' {
		return true, nil
	}
	if err != nil {
		return false, r.truncatedOr(err, "read multipart delimiter")
	}
	// Transport padding, then the line break.
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			return false, r.truncatedOr(err, "read multipart delimiter")
		}
		switch c {
		case ' ', '\t':
			continue
		case '\n':
			return false, nil
		case '\r':
			c, err := r.br.ReadByte()
			if err != nil {
				return false, r.truncatedOr(err, "read multipart delimiter")
			}
			if c == '\n' {
				return false, nil
			}
		}
		return false, errors.New("read multipart delimiter: junk after the boundary")
	}
}

// readHeader reads a part's header fields up to the empty line, unfolding continuation lines.
func (r *Reader) readHeader() (textproto.MIMEHeader, error) {
	h := make(textproto.MIMEHeader, 4)
	var lastKey string
	total, fields := 0, 0
	for {
		line, err := r.br.ReadSlice('\n')
		switch err {
		case nil:
		case bufio.ErrBufferFull:
			return nil, errors.New("read multipart part header: line longer than 64 KiB")
		case io.EOF:
			return nil, fmt.Errorf("read multipart part header: %w", ErrTruncated)
		default:
			return nil, fmt.Errorf("read multipart part header: %w", err)
		}
		total += len(line)
		if total > maxPartHeaderBytes {
			return nil, errors.New("read multipart part header: more than 64 KiB of header")
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return h, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if lastKey == "" {
				return nil, errors.New("read multipart part header: continuation line before any field")
			}
			vs := h[lastKey]
			vs[len(vs)-1] += " " + string(bytes.TrimSpace(line))
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(k) == 0 || !isToken(string(k)) {
			return nil, fmt.Errorf("read multipart part header: malformed line %s", quoteShort(string(line)))
		}
		if fields++; fields > maxPartHeaderFields {
			return nil, fmt.Errorf("read multipart part header: more than %d fields", maxPartHeaderFields)
		}
		lastKey = textproto.CanonicalMIMEHeaderKey(string(k))
		h[lastKey] = append(h[lastKey], string(bytes.TrimSpace(v)))
	}
}

// truncatedOr turns the end of the stream into ErrTruncated and wraps other errors.
func (r *Reader) truncatedOr(err error, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%s: %w", what, ErrTruncated)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Read reads the part's body. It returns io.EOF at the delimiter that ends the part.
func (p *Part) Read(b []byte) (int, error) {
	if p.eof {
		return 0, io.EOF
	}
	if p.err != nil {
		return 0, p.err
	}
	if len(b) == 0 {
		return 0, nil
	}
	r := p.r
	for p.n == 0 {
		if err := p.scan(); err != nil {
			if err == io.EOF {
				p.eof = true
			} else {
				p.err = err
			}
			return 0, err
		}
	}
	n, _ := r.br.Read(b[:min(len(b), p.n)]) // the bytes are buffered: no error, no short read
	p.n -= n
	return n, nil
}

// scan looks at the buffered bytes and sets p.n to how many of them are certainly body. It
// returns io.EOF when the buffer starts with the delimiter that ends the part, and reads more
// from the stream when it cannot yet tell.
func (p *Part) scan() error {
	r := p.r
	nd := r.nlDash
	for {
		buf, _ := r.br.Peek(r.br.Buffered())
		if i := bytes.Index(buf, nd); i > 0 {
			p.n = i
			return nil
		} else if i == 0 {
			// A delimiter must be followed by "--", padding or a line break; anything else
			// (a boundary that only starts the same) is body.
			switch isDelimiterEnd(buf[len(nd):]) {
			case yes:
				return io.EOF
			case no:
				p.n = 1
				return nil
			}
		} else if safe := len(buf) - len(nd) + 1; safe > 0 {
			// No delimiter starts before safe; a partial one may end the buffer.
			p.n = safe
			return nil
		}
		if _, err := r.br.Peek(len(buf) + 1); err != nil {
			if err == io.EOF {
				// The part is truncated. Hand out what is certainly body first, then fail.
				// (Peek may have moved the buffered bytes: look at them again.)
				buf, _ = r.br.Peek(r.br.Buffered())
				if keep := len(buf) - partialSuffix(buf, nd); keep > 0 && !bytes.HasPrefix(buf, nd) {
					p.n = keep
					return nil
				}
				return fmt.Errorf("read multipart part: body ended inside a part: %w", ErrTruncated)
			}
			if err == bufio.ErrBufferFull {
				// Only possible with a boundary longer than the buffer, which Boundary refuses.
				return errors.New("read multipart part: boundary longer than the read buffer")
			}
			return fmt.Errorf("read multipart part: %w", err)
		}
	}
}

// partialSuffix returns the length of the longest end of buf that is a proper start of
// delim: the bytes that may be the beginning of a delimiter cut off by the end of the stream.
func partialSuffix(buf, delim []byte) int {
	for k := min(len(buf), len(delim)-1); k > 0; k-- {
		if bytes.HasSuffix(buf, delim[:k]) {
			return k
		}
	}
	return 0
}

type tristate int

const (
	unknown tristate = iota
	yes
	no
)

// isDelimiterEnd tells whether the bytes after "\r\n--boundary" make it a delimiter.
func isDelimiterEnd(after []byte) tristate {
	if len(after) == 0 {
		return unknown
	}
	switch after[0] {
	case '-':
		if len(after) < 2 {
			return unknown
		}
		if after[1] == '-' {
			return yes
		}
		return no
	case ' ', '\t', '\r', '\n':
		return yes
	}
	return no
}

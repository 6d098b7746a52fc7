package media

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// copyBufferSize is the size of the pooled buffers that bodies are copied through.
const copyBufferSize = 32 << 10

// tailSize is how many of the last bytes of a pass-through body CheckedCopy keeps: enough for
// "\r\n--" + a 70-character boundary + "--" and 80 bytes of trailing white space.
const tailSize = 2 + 2 + 70 + 2 + 80

// copyBuffers is a pool of copy buffers with their tail windows, shared by every copy in the
// process. It holds no configuration and nothing a caller can observe, which is why it is the
// one package-level variable here: per-request buffers of 32 KiB would cost the hot path of
// whole-study retrieves an allocation each.
var copyBuffers = sync.Pool{New: func() any { return new(copyBuffer) }}

type copyBuffer struct {
	buf  [copyBufferSize]byte
	tail [tailSize]byte
}

// Copy copies src to dst through a pooled 32 KiB buffer, flushing dst (when it is an
// http.ResponseWriter or otherwise can flush) whenever src has nothing more ready, so that a
// slow upstream's bytes reach the client without waiting for the next read. It is for bodies
// that carry no framing to check: single-part answers, and part bodies.
//
// Read errors are returned wrapped (an early end of a body with a Content-Length wraps
// io.ErrUnexpectedEOF); write and flush errors are returned as *WriteError.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	cb := copyBuffers.Get().(*copyBuffer)
	defer copyBuffers.Put(cb)
	c := copier{dst: dst, flush: flusherOf(dst), buf: cb.buf[:]}
	return c.copy(src, nil)
}

// CheckedCopy passes a multipart body through byte for byte, as Copy does, and then checks
// that it ended with the closing delimiter "--boundary--" (which may be followed by white
// space). A body that ends without it, or with a read error, fails with an error wrapping
// ErrTruncated or the read error: the caller must then abort its response rather than end
// it, because every byte read has already been written.
//
// It is the fast path of single-source retrieves: no allocation per read and a fixed window
// of the last tailSize bytes; the body is never parsed.
func CheckedCopy(dst io.Writer, src io.Reader, boundary string) (int64, error) {
	if err := validBoundary(boundary); err != nil {
		return 0, fmt.Errorf("check multipart body: %w", err)
	}
	cb := copyBuffers.Get().(*copyBuffer)
	defer copyBuffers.Put(cb)
	c := copier{dst: dst, flush: flusherOf(dst), buf: cb.buf[:]}
	t := tailWindow{buf: cb.tail[:0]}
	n, err := c.copy(src, &t)
	if err != nil {
		return n, err
	}
	if !t.endsWithClose(boundary, n) {
		return n, fmt.Errorf("check multipart body after %d bytes: %w", n, ErrTruncated)
	}
	return n, nil
}

// copier is one copy's state.
type copier struct {
	dst   io.Writer
	flush func() error
	buf   []byte
}

func (c *copier) copy(src io.Reader, tail *tailWindow) (int64, error) {
	var written int64
	for {
		nr, rerr := src.Read(c.buf)
		if nr > 0 {
			chunk := c.buf[:nr]
			if tail != nil {
				tail.push(chunk)
			}
			nw, werr := c.dst.Write(chunk)
			written += int64(nw)
			if werr == nil && nw < nr {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return written, asWriteError(werr)
			}
			// A short read means the source had nothing more buffered: the next Read may
			// block, so hand what we wrote to the client now. Full reads mean more is
			// already waiting and the write itself went out.
			if c.flush != nil && nr < len(c.buf) {
				if ferr := c.flush(); ferr != nil {
					if errors.Is(ferr, http.ErrNotSupported) {
						c.flush = nil
					} else {
						return written, asWriteError(ferr)
					}
				}
			}
		}
		switch {
		case rerr == nil:
		case rerr == io.EOF:
			return written, nil
		case errors.Is(rerr, io.ErrUnexpectedEOF) && tail != nil:
			return written, fmt.Errorf("read upstream body after %d bytes: %w: %w", written, ErrTruncated, rerr)
		default:
			return written, fmt.Errorf("read upstream body after %d bytes: %w", written, rerr)
		}
	}
}

func asWriteError(err error) error {
	var we *WriteError
	if errors.As(err, &we) {
		return err
	}
	return &WriteError{Err: err}
}

// flusherOf returns how to flush w, or nil when it cannot be flushed. The outermost writer
// that can flush is used, so that a wrapper's own buffer (an Echo response, a compressor)
// is flushed along with what it wraps.
func flusherOf(w io.Writer) func() error {
	switch f := w.(type) {
	case interface{ FlushError() error }:
		return f.FlushError
	case http.Flusher:
		return func() error { f.Flush(); return nil }
	case http.ResponseWriter:
		return http.NewResponseController(f).Flush
	}
	return nil
}

// tailWindow keeps the last bytes of a stream, up to its capacity.
type tailWindow struct {
	buf []byte
}

func (t *tailWindow) push(p []byte) {
	c := cap(t.buf)
	if len(p) >= c {
		t.buf = append(t.buf[:0], p[len(p)-c:]...)
		return
	}
	if over := len(t.buf) + len(p) - c; over > 0 {
		n := copy(t.buf, t.buf[over:])
		t.buf = t.buf[:n]
	}
	t.buf = append(t.buf, p...)
}

// endsWithClose reports whether the stream, total bytes long, ended with the closing
// delimiter "--boundary--" at the start of a line, followed only by white space.
func (t *tailWindow) endsWithClose(boundary string, total int64) bool {
	b := t.buf
	for len(b) > 0 && isSpaceByte(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	cut := func(suffix string) bool {
		if len(b) < len(suffix) || string(b[len(b)-len(suffix):]) != suffix {
			return false
		}
		b = b[:len(b)-len(suffix)]
		return true
	}
	if !cut("--") || !cut(boundary) || !cut("--") {
		return false
	}
	if len(b) == 0 {
		// Nothing before the delimiter in the window: fine only if the window holds the
		// whole stream (a body of the closing delimiter alone).
		return total == int64(len(t.buf))
	}
	return b[len(b)-1] == '\n'
}

func isSpaceByte(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

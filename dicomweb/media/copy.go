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

// copyBuffers is a pool of copy buffers, shared by every copy in the process. It holds no
// configuration and nothing a caller can observe, which is why it is the one package-level
// variable here: per-request buffers of 32 KiB would cost the hot path of whole-study
// retrieves an allocation each.
var copyBuffers = sync.Pool{New: func() any { return new(copyBuffer) }}

type copyBuffer struct {
	buf [copyBufferSize]byte
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
	return c.copy(src)
}

// copier is one copy's state.
type copier struct {
	dst   io.Writer
	flush func() error
	buf   []byte
}

func (c *copier) copy(src io.Reader) (int64, error) {
	var written int64
	for {
		nr, rerr := src.Read(c.buf)
		if nr > 0 {
			chunk := c.buf[:nr]
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

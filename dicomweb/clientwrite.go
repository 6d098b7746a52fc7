package dicomweb

import (
	"errors"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v5"
)

// clientWriteChunk is the most written to a client under one write deadline: a client that
// takes in at least this much per ClientWriteTimeout keeps its stream, however slow its link.
const clientWriteChunk = 64 << 10

// deadlineWriter gives every write to a client its own deadline, extended on progress. The
// server has no WriteTimeout (a study streams for as long as it takes), so without this a
// viewer that stops reading would hold its request, its connection slot at the trust and the
// trust's answer for ever. A write that misses its deadline fails (the stream is then aborted
// as the client's failure, see Server.abort), and the writer remembers that the client was
// cut off, so that the cut is counted and logged as the client's, never as the trust's.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	now     func() time.Time
	cut     atomic.Bool
}

// writeDeadline is the middleware that installs a deadlineWriter on every request. After the
// handler it sets one last deadline, which bounds net/http's final flush of the response.
func (s *Server) writeDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		w := &deadlineWriter{ResponseWriter: c.Response(), timeout: s.cfg.ClientWriteTimeout, now: s.now}
		// Deadlines and flushes go to the writer beneath Echo's Response, whose Flush drops
		// errors: a flush that misses its deadline must be seen, as a write's is. Writes still
		// pass through Echo's Response, which keeps the status and size for the access log.
		beneath := w.ResponseWriter
		if u, ok := beneath.(interface{ Unwrap() http.ResponseWriter }); ok {
			beneath = u.Unwrap()
		}
		w.rc = http.NewResponseController(beneath)
		c.SetResponse(w)
		defer w.extend()
		return next(c)
	}
}

// extend moves the connection's write deadline to timeout from now. A writer that cannot
// take deadlines (a test recorder) is written to without them.
func (w *deadlineWriter) extend() {
	_ = w.rc.SetWriteDeadline(w.now().Add(w.timeout))
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), clientWriteChunk)
		w.extend()
		m, err := w.ResponseWriter.Write(p[:n])
		written += m
		if err != nil {
			w.note(err)
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// Flush implements http.Flusher, under a fresh deadline.
func (w *deadlineWriter) Flush() {
	_ = w.FlushError()
}

// FlushError is what http.ResponseController calls to flush.
func (w *deadlineWriter) FlushError() error {
	w.extend()
	err := w.rc.Flush()
	if err != nil {
		w.note(err)
	}
	return err
}

// Unwrap lets http.ResponseController and echo.UnwrapResponse reach the writer beneath.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *deadlineWriter) note(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		w.cut.Store(true)
	}
}

// clientCutOff reports whether the request's client missed a write deadline: it stopped
// reading, or read too slowly, for ClientWriteTimeout.
func clientCutOff(c *echo.Context) bool {
	rw := c.Response()
	for rw != nil {
		if w, ok := rw.(*deadlineWriter); ok {
			return w.cut.Load()
		}
		u, ok := rw.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		rw = u.Unwrap()
	}
	return false
}

package upstream

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// readAheadChunk is how much one read of the source asks for.
const readAheadChunk = 32 << 10

// errReadAheadClosed is what a Read after Close returns.
var errReadAheadClosed = errors.New("read ahead: body closed")

// ReadAhead returns a body that reads body in the background into a buffer of up to limit
// bytes, for a response the caller will read later: a second holder's metadata while the first
// holder's is sent, say. Left unread, such a response would sit in the source's send buffers
// while the source waits on the proxy, and a PACS that times out slow readers would break it
// through no fault of its own. The buffer bounds the memory one body may take; when it is
// full, reading pauses until the caller reads, and (because the source's idle timer runs only
// while a read waits on the source) the pause is not charged to the source.
//
// Read errors of the source reach the caller after the bytes read before them. Close stops the
// background reader, closes body and waits for the reader to end. MarkFailed on the returned
// body reaches body's own wrappers.
func ReadAhead(body io.ReadCloser, limit int) io.ReadCloser {
	if limit < readAheadChunk {
		limit = readAheadChunk
	}
	r := &readAhead{src: body, limit: limit, done: make(chan struct{})}
	r.cond = sync.NewCond(&r.mu)
	go r.fill()
	return r
}

type readAhead struct {
	src   io.ReadCloser
	limit int
	done  chan struct{}

	mu     sync.Mutex
	cond   *sync.Cond
	buf    bytes.Buffer
	err    error // the source's terminal read error, io.EOF included
	closed bool
}

// fill is the background reader: it reads the source until an error, or until Close, pausing
// while the buffer holds limit bytes.
func (r *readAhead) fill() {
	defer close(r.done)
	chunk := make([]byte, readAheadChunk)
	for {
		r.mu.Lock()
		for r.buf.Len() >= r.limit && !r.closed {
			r.cond.Wait()
		}
		closed := r.closed
		r.mu.Unlock()
		if closed {
			return
		}
		n, err := r.src.Read(chunk)
		r.mu.Lock()
		r.buf.Write(chunk[:n])
		if err != nil {
			r.err = err
		}
		r.cond.Broadcast()
		r.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (r *readAhead) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.buf.Len() == 0 && r.err == nil && !r.closed {
		r.cond.Wait()
	}
	if r.closed {
		return 0, errReadAheadClosed
	}
	if r.buf.Len() > 0 {
		n, _ := r.buf.Read(p)
		r.cond.Broadcast()
		return n, nil
	}
	return 0, r.err
}

// Close stops the background reader and closes the source. A read in flight is ended by the
// source's Close; its error is the Close's doing, not the source's (closeHook ignores it).
func (r *readAhead) Close() error {
	r.mu.Lock()
	r.closed = true
	r.buf = bytes.Buffer{}
	r.cond.Broadcast()
	r.mu.Unlock()
	err := r.src.Close()
	<-r.done
	return err
}

func (r *readAhead) markFailed(err error) { MarkFailed(r.src, err) }

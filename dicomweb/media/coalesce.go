package media

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// CoalesceSize is how much a Coalescer gathers before writing: large enough that a study
// streams in a few syscalls per megabyte, small enough to keep a stream's memory flat.
const CoalesceSize = 256 << 10

// CoalesceLatency is the longest a byte waits in a Coalescer before it is sent.
const CoalesceLatency = 20 * time.Millisecond

// coalescerBuffers pools the Coalescers' buffers, for the same reason as copyBuffers.
var coalescerBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, CoalesceSize) }}

// Coalescer gathers small writes to a response into large ones. Upstreams send a study in
// pieces of a few kilobytes; writing (and flushing) each one as it arrives costs a syscall and
// a chunk header per piece. A Coalescer writes when CoalesceSize bytes are pending, and at the
// latest CoalesceLatency after the first unsent byte, so a slow upstream's bytes still reach the
// client promptly.
//
// The latency flush runs on a timer goroutine; a mutex keeps it and Write apart. Nothing else
// may write to the destination while the Coalescer is in use. Close (or Discard) must be called
// before the destination is abandoned: a timer that fires after a handler returned would write
// to a finished response.
type Coalescer struct {
	mu     sync.Mutex
	dst    io.Writer
	bw     *bufio.Writer
	flush  func() error
	timer  *time.Timer
	armed  bool
	done   bool
	err    error
	latest time.Duration
}

// NewCoalescer returns a Coalescer writing to dst, flushing dst (when it can) with each write.
func NewCoalescer(dst io.Writer) *Coalescer {
	bw := coalescerBuffers.Get().(*bufio.Writer)
	bw.Reset(dst)
	c := &Coalescer{dst: dst, bw: bw, flush: flusherOf(dst), latest: CoalesceLatency}
	c.timer = time.AfterFunc(time.Hour, c.onTimer)
	c.timer.Stop()
	return c
}

// Write implements io.Writer. Errors writing to the destination come back as *WriteError.
func (c *Coalescer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.done {
		return 0, ErrClosed
	}
	n, err := c.bw.Write(p)
	if err != nil {
		c.err = asWriteError(err)
		return n, c.err
	}
	if c.bw.Buffered() > 0 && !c.armed {
		c.armed = true
		c.timer.Reset(c.latest)
	}
	return n, nil
}

func (c *Coalescer) onTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	if c.done || c.err != nil {
		return
	}
	c.err = c.flushLocked()
}

func (c *Coalescer) flushLocked() error {
	if err := c.bw.Flush(); err != nil {
		return asWriteError(err)
	}
	if c.flush != nil {
		if err := c.flush(); err != nil {
			return asWriteError(err)
		}
	}
	return nil
}

// Close sends what is pending and stops the timer. It returns the first write error.
func (c *Coalescer) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return c.err
	}
	c.done = true
	c.timer.Stop()
	if c.err == nil {
		c.err = c.flushLocked()
	}
	c.release()
	return c.err
}

// Discard stops the timer and drops what is pending, for a response being aborted.
func (c *Coalescer) Discard() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	c.timer.Stop()
	c.release()
}

func (c *Coalescer) release() {
	c.bw.Reset(nil)
	coalescerBuffers.Put(c.bw)
	c.bw = nil
}

package media

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder counts the writes that reach it.
type recorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	fail   bool
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return 0, errors.New("client went away")
	}
	r.writes++
	return r.buf.Write(p)
}

func (r *recorder) snapshot() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String(), r.writes
}

func TestCoalescer(t *testing.T) {
	t.Run("small writes become few large ones", func(t *testing.T) {
		r := &recorder{}
		c := NewCoalescer(r)
		want := strings.Repeat("x", 3000)
		for i := 0; i < 1000; i++ {
			c.Write([]byte(want))
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		got, writes := r.snapshot()
		if len(got) != 3000*1000 {
			t.Fatalf("%d bytes arrived, want %d", len(got), 3000*1000)
		}
		// 1000 writes arrive as about 12 of CoalesceSize; latency flushes on a slow (race
		// detector) run may add a few, but nowhere near one per write.
		if writes > 2*(3000*1000/CoalesceSize)+4 {
			t.Fatalf("%d writes for 3 MB; want about one per %d bytes", writes, CoalesceSize)
		}
	})
	t.Run("a pending byte is sent within the latency", func(t *testing.T) {
		r := &recorder{}
		c := NewCoalescer(r)
		defer c.Close()
		c.Write([]byte("first part"))
		deadline := time.Now().Add(2 * time.Second)
		for {
			if got, _ := r.snapshot(); got == "first part" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("a pending write was not sent by the latency timer")
			}
			time.Sleep(time.Millisecond)
		}
	})
	t.Run("discard sends nothing more", func(t *testing.T) {
		r := &recorder{}
		c := NewCoalescer(r)
		c.Write([]byte("never"))
		c.Discard()
		time.Sleep(3 * CoalesceLatency)
		if got, _ := r.snapshot(); got != "" {
			t.Fatalf("%q was written after Discard", got)
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, ErrClosed) {
			t.Fatalf("write after Discard: %v", err)
		}
	})
	t.Run("write errors are write errors", func(t *testing.T) {
		r := &recorder{fail: true}
		c := NewCoalescer(r)
		c.Write(make([]byte, CoalesceSize+1))
		var we *WriteError
		if err := c.Close(); !errors.As(err, &we) {
			t.Fatalf("Close: %v; want *WriteError", err)
		}
	})
}

package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// chunkSource is a body that hands out its data in fixed chunks, then err, and counts reads.
type chunkSource struct {
	mu     sync.Mutex
	data   []byte
	chunk  int
	err    error
	reads  int
	closed bool
	block  chan struct{} // when set, a read after the data waits on it (or on Close)
}

func (s *chunkSource) Read(p []byte) (int, error) {
	s.mu.Lock()
	s.reads++
	if len(s.data) == 0 {
		block := s.block
		s.mu.Unlock()
		if block != nil {
			<-block
			return 0, errors.New("read on closed body")
		}
		return 0, s.err
	}
	n := copy(p[:min(len(p), s.chunk)], s.data)
	s.data = s.data[n:]
	s.mu.Unlock()
	return n, nil
}

func (s *chunkSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed && s.block != nil {
		close(s.block)
	}
	s.closed = true
	return nil
}

func (s *chunkSource) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

func TestReadAhead(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100_000) // 1 MB

	t.Run("delivers every byte, then the source's error", func(t *testing.T) {
		boom := errors.New("connection reset")
		src := &chunkSource{data: append([]byte(nil), data...), chunk: 7000, err: boom}
		r := ReadAhead(src, 64<<10)
		got, err := io.ReadAll(r)
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want the source's error after its bytes", err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("got %d bytes, want the source's %d unchanged", len(got), len(data))
		}
		if err := r.Close(); err != nil || !src.closed {
			t.Fatalf("Close: %v, source closed %v", err, src.closed)
		}
	})

	t.Run("reads ahead up to its limit without a reader, then waits", func(t *testing.T) {
		src := &chunkSource{data: append([]byte(nil), data...), chunk: 4096, err: io.EOF}
		r := ReadAhead(src, 64<<10)
		defer r.Close()
		// The background reader fills the buffer: 64 KiB in 4 KiB reads is 16 reads, perhaps
		// one more as the last chunk lands; then it must stop while nobody reads.
		deadline := time.Now().Add(30 * time.Second)
		for src.readCount() < 16 {
			if time.Now().After(deadline) {
				t.Fatalf("only %d reads of the source without a reader; want it read ahead", src.readCount())
			}
			time.Sleep(time.Millisecond)
		}
		settled := src.readCount()
		time.Sleep(50 * time.Millisecond)
		if n := src.readCount(); n > 17 || n != settled {
			t.Fatalf("the source was read %d times with nobody reading; want it to stop at the 64 KiB limit (16 reads)", n)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("after the pause: %d bytes, %v; want all %d", len(got), err, len(data))
		}
	})

	t.Run("Close ends a read in flight", func(t *testing.T) {
		src := &chunkSource{data: []byte("abc"), chunk: 10, block: make(chan struct{})}
		r := ReadAhead(src, 64<<10)
		buf := make([]byte, 3)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- r.Close() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("Close did not end the background read")
		}
		if _, err := r.Read(buf); err == nil {
			t.Fatal("a read after Close succeeded")
		}
	})
}

// TestReadAheadOfSourceBody: a source's body read ahead and then abandoned by Close, while the
// background read waits on the source, is not the source's failure (the read's error is the
// Close's doing); a failure the caller marks still reaches it.
func TestReadAheadOfSourceBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/dicom+json")
		io.WriteString(w, "["+strings.Repeat(" ", 999))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	src := NewSource(SourceConfig{ID: "RXA", Name: "A", BaseURL: mustParse(t, srv.URL+"/dicom-web"), Timeout: testTimeout},
		with(testOptions(), func(o *Options) { o.HTTP.IdleTimeout = time.Minute }), discard())

	resp, err := src.Fetch(context.Background(), "studies/1/metadata", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	body := ReadAhead(resp.Body, 64<<10)
	if _, err := io.ReadFull(body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	// Everything sent has been read; the background reader's next read now waits on the
	// source (the pause lets it get there; were it not there yet, Close would still be right,
	// only this test would prove less).
	time.Sleep(100 * time.Millisecond)
	body.Close()
	if st := src.Status(); st.Failures != 0 || st.InFlight != 0 {
		t.Fatalf("status %+v after an abandoned read-ahead; want no failure and nothing in flight", st)
	}

	resp, err = src.Fetch(context.Background(), "studies/1/metadata", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	body = ReadAhead(resp.Body, 64<<10)
	MarkFailed(body, &InvalidResponseError{Source: "RXA", Err: errors.New("metadata array does not end")})
	body.Close()
	if st := src.Status(); st.Failures != 1 {
		t.Fatalf("status %+v; want the marked failure counted", st)
	}
}

// TestIdleTimerRunsOnlyWhileReading: a body the proxy does not read for many idle timeouts
// (it is writing to a slow client) is not cut off, and the source is not charged; only a read
// that waits on the source is timed.
func TestIdleTimerRunsOnlyWhileReading(t *testing.T) {
	// The source sends the rest of its body when the test says so, after the pause: until
	// then nothing is left to read, so a timer that ran while the proxy did not read would
	// find the source silent and cut it off.
	resume := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(bytes.Repeat([]byte("x"), 4096))
		w.(http.Flusher).Flush()
		select {
		case <-resume:
		case <-r.Context().Done():
			return
		}
		w.Write(bytes.Repeat([]byte("y"), 4096))
	}))
	defer srv.Close()
	const idle = 100 * time.Millisecond
	src := NewSource(SourceConfig{ID: "RXA", Name: "A", BaseURL: mustParse(t, srv.URL+"/dicom-web"), Timeout: testTimeout},
		with(testOptions(), func(o *Options) { o.HTTP.IdleTimeout = idle }), discard())
	resp, err := src.Fetch(context.Background(), "studies/1.2", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 4096)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * idle) // the proxy is busy elsewhere, not waiting on the source
	close(resume)
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(rest) != 4096 {
		t.Fatalf("after a pause in reading: %d bytes, %v; want the rest of the body", len(rest), err)
	}
	if st := src.Status(); st.Failures != 0 {
		t.Fatalf("status %+v; the source was charged for the proxy's own pause", st)
	}
}

// closeRacingBody is a body whose Read waits until Close, then fails; its Close lets the
// failed Read return before it does, as a network body's can. It makes the read's error
// reach the wrappers before Close has finished: the order in which a wrapper would take a
// failure caused by the Close itself for the source's.
type closeRacingBody struct {
	closed   chan struct{}
	readDone chan struct{}
}

func (b *closeRacingBody) Read(p []byte) (int, error) {
	<-b.closed
	defer close(b.readDone)
	return 0, errors.New("read on closed body")
}

func (b *closeRacingBody) Close() error {
	close(b.closed)
	<-b.readDone
	time.Sleep(50 * time.Millisecond) // the reader's wrappers take in the error meanwhile
	return nil
}

// TestCloseDuringReadIsNoFailure: a read that fails because the body was closed while it
// waited (a read-ahead being abandoned) is not the source's failure, for its breaker or its
// /status.
func TestCloseDuringReadIsNoFailure(t *testing.T) {
	f := &fakeClient{fetch: func(ctx context.Context, path string, q url.Values, accept string) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: &closeRacingBody{closed: make(chan struct{}), readDone: make(chan struct{})}}, nil
	}}
	src := NewSourceWithClient(SourceConfig{ID: "RXA", Name: "A", Timeout: testTimeout}, f, testOptions(), discard())
	resp, err := src.Fetch(context.Background(), "studies/1/metadata", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 10))
		read <- err
	}()
	resp.Body.Close()
	if err := <-read; err == nil {
		t.Fatal("the read did not fail when its body was closed")
	}
	if st := src.Status(); st.Failures != 0 || st.Breaker != "closed" {
		t.Fatalf("status %+v; a read ended by our own Close was charged to the source", st)
	}
}

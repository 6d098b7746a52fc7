package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
)

// ErrCircuitOpen is returned without calling the source when its breaker is open.
var ErrCircuitOpen = errors.New("circuit open")

// ErrStalled is a response body that sent nothing for longer than the source's idle timeout.
// It is a time-out: IsTimeout reports true for it.
var ErrStalled error = stalledError{}

type stalledError struct{}

func (stalledError) Error() string {
	return "response stalled: nothing received within the idle timeout"
}
func (stalledError) Timeout() bool   { return true }
func (stalledError) Temporary() bool { return true }

// StatusError is a non-2xx answer from a source.
type StatusError struct {
	Source string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("source %s answered %d %s", e.Source, e.Status, http.StatusText(e.Status))
}

// InvalidResponseError is an answer that does not parse as what was asked for: invalid JSON,
// a broken multipart body, the wrong content type. Such a source counts as failed.
type InvalidResponseError struct {
	Source string
	Err    error
}

func (e *InvalidResponseError) Error() string {
	return fmt.Sprintf("source %s sent an invalid answer: %v", e.Source, e.Err)
}

func (e *InvalidResponseError) Unwrap() error { return e.Err }

// TransportError is a failure to get an answer at all: refused connection, DNS, reset,
// time-out waiting for headers.
type TransportError struct {
	Source string
	Err    error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("call source %s: %v", e.Source, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// IsNotFound reports whether err is a source saying it does not have the resource (404).
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == http.StatusNotFound
}

// IsTimeout reports whether err is a time-out, ours or the network's.
func IsTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// IsClientGone reports whether err comes from our own client hanging up (context cancelled).
// It is neutral: not the source's fault, never retried, never counted against its breaker.
func IsClientGone(err error) bool {
	return errors.Is(err, context.Canceled)
}

// IsUnreachable reports whether err is a failure to connect to a source at all: a refused
// connection, an unknown host, no route, a connection attempt that timed out. Nothing of the
// request reached the source, so nothing in it (no client's query) can have caused the failure.
// A reset or time-out once connected is not unreachable: the source may have choked on the
// request.
func IsUnreachable(err error) bool {
	if err == nil || IsClientGone(err) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

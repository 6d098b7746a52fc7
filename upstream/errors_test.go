package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
)

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		class      Failure
		timeout    bool
		clientGone bool
		notFound   bool
		counts     bool
		// unreachable: the request never reached the source.
		unreachable bool
	}{
		{name: "nil", err: nil, class: Failure{Class: ClassOK}},
		{name: "circuit open", err: ErrCircuitOpen, class: Failure{Class: ClassCircuitOpen}, counts: true},
		{name: "circuit open, wrapped", err: fmt.Errorf("search RXA: %w", ErrCircuitOpen), class: Failure{Class: ClassCircuitOpen}, counts: true},
		{name: "header time-out", err: &TransportError{Source: "RXA", Err: headerTimeout{}}, class: Failure{Class: ClassTimeout}, timeout: true, counts: true},
		{name: "deadline", err: &TransportError{Source: "RXA", Err: context.DeadlineExceeded}, class: Failure{Class: ClassTimeout}, timeout: true, counts: true},
		{name: "bare deadline", err: context.DeadlineExceeded, class: Failure{Class: ClassTimeout}, timeout: true, counts: true},
		{name: "client gone", err: &TransportError{Source: "RXA", Err: context.Canceled}, class: Failure{Class: ClassCancelled}, clientGone: true},
		{name: "bare cancellation", err: context.Canceled, class: Failure{Class: ClassCancelled}, clientGone: true},
		{name: "404", err: &StatusError{Source: "RXA", Status: 404}, class: Failure{Class: ClassNotFound, Status: 404}, notFound: true},
		{name: "404, wrapped", err: fmt.Errorf("fetch study: %w", &StatusError{Source: "RXA", Status: 404}), class: Failure{Class: ClassNotFound, Status: 404}, notFound: true},
		{name: "400", err: &StatusError{Source: "RXA", Status: 400}, class: Failure{Class: ClassRefused, Status: 400}},
		{name: "429", err: &StatusError{Source: "RXA", Status: 429}, class: Failure{Class: ClassRefused, Status: 429}, counts: true},
		{name: "502", err: &StatusError{Source: "RXA", Status: 502}, class: Failure{Class: ClassServerError, Status: 502}, counts: true},
		{name: "invalid answer", err: &InvalidResponseError{Source: "RXA", Err: errors.New("bad JSON")}, class: Failure{Class: ClassInvalid}, counts: true},
		{name: "connection refused", err: &TransportError{Source: "RXA", Err: syscall.ECONNREFUSED}, class: Failure{Class: ClassUnreachable}, counts: true, unreachable: true},
		{name: "dial refused", err: &TransportError{Source: "RXA", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, class: Failure{Class: ClassUnreachable}, counts: true, unreachable: true},
		{name: "dial timed out", err: &TransportError{Source: "RXA", Err: &net.OpError{Op: "dial", Net: "tcp", Err: headerTimeout{}}}, class: Failure{Class: ClassTimeout}, timeout: true, counts: true, unreachable: true},
		{name: "unknown host", err: &TransportError{Source: "RXA", Err: &net.DNSError{Err: "no such host", Name: "pacs.example", IsNotFound: true}}, class: Failure{Class: ClassUnreachable}, counts: true, unreachable: true},
		{name: "no route", err: &TransportError{Source: "RXA", Err: syscall.EHOSTUNREACH}, class: Failure{Class: ClassUnreachable}, counts: true, unreachable: true},
		{name: "reset once connected", err: &TransportError{Source: "RXA", Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}, class: Failure{Class: ClassUnreachable}, counts: true},
		{name: "cancelled while dialling", err: &TransportError{Source: "RXA", Err: &net.OpError{Op: "dial", Net: "tcp", Err: context.Canceled}}, class: Failure{Class: ClassCancelled}, clientGone: true},
		{name: "stalled", err: &TransportError{Source: "RXA", Err: ErrStalled}, class: Failure{Class: ClassStalled}, timeout: true, counts: true},
		{name: "busy", err: &TransportError{Source: "RXA", Err: fmt.Errorf("wait: %w", ErrBusy)}, class: Failure{Class: ClassBusy}, counts: true},
		{name: "unknown error", err: errors.New("something else"), class: Failure{Class: ClassUnreachable}, counts: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.class {
				t.Errorf("Classify = %+v; want %+v", got, tc.class)
			}
			if got := IsTimeout(tc.err); got != tc.timeout {
				t.Errorf("IsTimeout = %v; want %v", got, tc.timeout)
			}
			if got := IsClientGone(tc.err); got != tc.clientGone {
				t.Errorf("IsClientGone = %v; want %v", got, tc.clientGone)
			}
			if got := IsNotFound(tc.err); got != tc.notFound {
				t.Errorf("IsNotFound = %v; want %v", got, tc.notFound)
			}
			if got := IsUnreachable(tc.err); got != tc.unreachable {
				t.Errorf("IsUnreachable = %v; want %v", got, tc.unreachable)
			}
			if got := Classify(tc.err).CountsAgainstBreaker(); got != tc.counts {
				t.Errorf("CountsAgainstBreaker = %v; want %v", got, tc.counts)
			}
		})
	}
}

func TestErrorTextNamesSource(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "status", err: &StatusError{Source: "RXA", Status: 503}, want: "source RXA answered 503 Service Unavailable"},
		{name: "invalid", err: &InvalidResponseError{Source: "RXA", Err: errors.New("bad JSON")}, want: "source RXA sent an invalid answer: bad JSON"},
		{name: "transport", err: &TransportError{Source: "RXA", Err: syscall.ECONNREFUSED}, want: "call source RXA: connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Fatalf("Error() = %q; want %q", got, tc.want)
			}
		})
	}
}

package upstream

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Class is the kind of a call's outcome at a source. Classify decides it once, from the small
// error types of the transport boundary; the metric labels, the breaker's accounting, /status,
// the words fallback gives clients and what dicomweb does next all read it, and nothing else
// looks at a source's error to decide.
type Class uint8

// The classes of outcome.
const (
	// ClassOK is a call that answered.
	ClassOK Class = iota
	// ClassCancelled is our own client going away (the request's context cancelled): neutral,
	// never the source's failure, never retried.
	ClassCancelled
	// ClassNotFound is the source answering 404: it does not hold the resource.
	ClassNotFound
	// ClassRefused is any other non-2xx answer below 500 (400, 406, 429, 501 is a server
	// error): the source's verdict on the request.
	ClassRefused
	// ClassCircuitOpen is a call the source's breaker refused without calling it.
	ClassCircuitOpen
	// ClassBusy is a call refused because every connection to the source was in use.
	ClassBusy
	// ClassStalled is a body that sent nothing for longer than the idle timeout.
	ClassStalled
	// ClassTimeout is a time-out, ours or the network's.
	ClassTimeout
	// ClassServerError is an answer of 500 or above.
	ClassServerError
	// ClassInvalid is an answer that is not what was asked for (InvalidResponseError).
	ClassInvalid
	// ClassUnreachable is every other failure to get an answer: refused or reset
	// connections, unknown hosts.
	ClassUnreachable
)

// Failure is a classified outcome: its class and, for an answer, the source's HTTP status.
type Failure struct {
	Class Class
	// Status is the source's HTTP status for ClassNotFound, ClassRefused and ClassServerError.
	Status int
}

// Classify classifies the outcome of a call to a source; err nil is ClassOK. A stale cached
// copy's StaleError is classified by the failure it stands in for.
func Classify(err error) Failure {
	var se *StatusError
	var ie *InvalidResponseError
	switch {
	case err == nil:
		return Failure{Class: ClassOK}
	case errors.Is(err, ErrCircuitOpen):
		return Failure{Class: ClassCircuitOpen}
	case errors.Is(err, ErrBusy):
		return Failure{Class: ClassBusy}
	case errors.Is(err, ErrStalled):
		return Failure{Class: ClassStalled}
	case IsTimeout(err):
		return Failure{Class: ClassTimeout}
	case IsClientGone(err):
		return Failure{Class: ClassCancelled}
	case errors.As(err, &se):
		switch {
		case se.Status == http.StatusNotFound:
			return Failure{Class: ClassNotFound, Status: se.Status}
		case se.Status >= 500:
			return Failure{Class: ClassServerError, Status: se.Status}
		}
		return Failure{Class: ClassRefused, Status: se.Status}
	case errors.As(err, &ie):
		return Failure{Class: ClassInvalid}
	}
	return Failure{Class: ClassUnreachable}
}

// Label is the outcome's label on the calls metric.
func (f Failure) Label() string {
	switch f.Class {
	case ClassOK:
		return "ok"
	case ClassCancelled:
		return "cancelled"
	case ClassNotFound:
		return "not_found"
	case ClassRefused:
		return "client_error"
	case ClassCircuitOpen:
		return "circuit_open"
	case ClassBusy:
		return "busy"
	case ClassStalled, ClassTimeout:
		return "timeout"
	case ClassServerError:
		return "server_error"
	case ClassInvalid:
		return "invalid"
	}
	return "unreachable"
}

// CountsAgainstBreaker says whether the outcome counts against the source's breaker: transport
// failures, time-outs, 429, 5xx answers and garbage do. Other 4xx answers don't: they are the
// source's verdict on a client's request (400, 404, 406, 413, ...), which says nothing of the
// source's health; nor do our own cancellations.
func (f Failure) CountsAgainstBreaker() bool {
	switch f.Class {
	case ClassOK, ClassCancelled, ClassNotFound:
		return false
	case ClassRefused:
		return f.Status == http.StatusTooManyRequests
	}
	return true
}

// Reached says whether the call was made at all: the breaker and the concurrency limit refuse
// calls without making them.
func (f Failure) Reached() bool { return f.Class != ClassCircuitOpen && f.Class != ClassBusy }

// Failed says whether /status counts the outcome as a failure: anything but an answer, a 404
// (copies differ) and our own cancellation.
func (f Failure) Failed() bool {
	return f.Class != ClassOK && f.Class != ClassCancelled && f.Class != ClassNotFound
}

// RefusedAs reports whether the outcome is the source refusing the request with one of the
// given statuses.
func (f Failure) RefusedAs(statuses ...int) bool {
	if f.Class != ClassRefused && f.Class != ClassNotFound && f.Class != ClassServerError {
		return false
	}
	for _, s := range statuses {
		if f.Status == s {
			return true
		}
	}
	return false
}

// ErrGiveUp, returned (wrapped or not) by an attempt of FirstOf, ends the failover at once: no
// later holder can serve the request either. The attempt's source is not recorded as failed.
var ErrGiveUp = errors.New("no later holder can serve the request")

// FirstOf tries the holders one at a time, in order, until an attempt succeeds, and returns the
// winning holder's result and the outcomes of the holders tried before it (404s included:
// fallback judges them). It is the one failover loop of the proxy: the holders' order is
// fallback's, and try decides what a holder's answer must be to win (it closes whatever it
// opened when it fails).
//
// FirstOf stops early, returning the error, when our client has gone (ctx done, or an attempt
// failing with ClassCancelled), or when an attempt returns ErrGiveUp; the error is otherwise
// nil, and won.Source is nil when no holder answered.
func FirstOf[T any](ctx context.Context, holders []*Source, try func(ctx context.Context, src *Source) (T, error)) (won Result[T], tried []Outcome, err error) {
	for _, src := range holders {
		if err := ctx.Err(); err != nil {
			return won, tried, err
		}
		start := time.Now()
		v, err := try(ctx, src)
		o := Outcome{Source: src, Err: err, Duration: time.Since(start)}
		switch {
		case err == nil:
			return Result[T]{Outcome: o, Value: v}, tried, nil
		case errors.Is(err, ErrGiveUp):
			return won, tried, nil
		case Classify(err).Class == ClassCancelled:
			return won, tried, err
		}
		tried = append(tried, o)
	}
	return won, tried, nil
}

package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/forward"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// The classes of a failed Send. ErrRetry is a failure that may pass (no answer, a 5xx, 408,
// 429, no token): send the record again later. ErrRejected is the receiver refusing this
// record (any other 4xx) or an event PARS cannot take (ErrIncomplete): sending it again will
// not help, so the forwarder stops the sink at it and alerts rather than retry for ever; it is
// forward.ErrRejected, which the forwarder looks for.
var (
	ErrRetry    = errors.New("audit sink unavailable")
	ErrRejected = forward.ErrRejected
)

// MediaType is the FHIR JSON media type the sink sends and accepts.
const MediaType = "application/fhir+json"

// SinkOptions configure a Sink.
type SinkOptions struct {
	// Name is the sink's name: its spool cursor's, and in its errors. "" is "pars".
	Name string
	// BaseURL is the FHIR server's base URL: events go to [base]/AuditEvent. Required.
	BaseURL string
	// Client sends the requests; mutual TLS is set on its Transport. Nil is a client on
	// http.DefaultTransport.
	Client *http.Client
	// Token returns the bearer token for a request, fetching or refreshing it as it needs.
	// Nil sends no Authorization header (mutual TLS alone).
	Token func(ctx context.Context) (string, error)
	// Put sends each event by PUT [base]/AuditEvent/{id} (update as create) instead of POST
	// [base]/AuditEvent, so that a server that allows client ids holds one resource per
	// record whatever is re-sent. PARS's interaction is POST, the default.
	Put bool
	// Timeout bounds one Send. Required: the package has no defaults of its own.
	Timeout time.Duration
	// Event is how events are mapped.
	Event Options
}

// Sink sends audit events to a FHIR server as AuditEvents, one request a record. Each carries
// its record's stable id (RecordID), so a record sent again after a crash or a lost answer is
// the same resource. It is safe for concurrent use.
//
// By default Sink POSTs, as PARS has it; de-duplication then rests on the receiver honouring
// the id it is given, which a FHIR server that assigns its own ids does not. With
// SinkOptions.Put the resource is written at its id, which makes a re-send an update of the
// same resource on any server that allows client ids. Either way, a 409 (Conflict) or 412
// (Precondition Failed) answer is taken as the server already having the record, and counts
// as delivered.
type Sink struct {
	name     string
	endpoint string
	client   *http.Client
	token    func(ctx context.Context) (string, error)
	put      bool
	timeout  time.Duration
	event    Options
	log      *slog.Logger
}

// NewSink checks opts and makes a Sink; log gets a debug line per record (its sequence number
// and the answer's status, never a patient's identifier), and may be nil.
func NewSink(opts SinkOptions, log *slog.Logger) (*Sink, error) {
	if err := opts.Event.Validate(); err != nil {
		return nil, err
	}
	base, err := url.Parse(opts.BaseURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("fhir sink: BaseURL %q is not an http(s) URL: set the FHIR server's base, e.g. https://host/FHIR/R4", opts.BaseURL)
	}
	if opts.Timeout <= 0 {
		return nil, fmt.Errorf("fhir sink: Timeout is %v; set how long one Send may take", opts.Timeout)
	}
	s := &Sink{
		name:     opts.Name,
		endpoint: strings.TrimSuffix(base.String(), "/") + "/AuditEvent",
		client:   opts.Client,
		token:    opts.Token,
		put:      opts.Put,
		timeout:  opts.Timeout,
		event:    opts.Event,
		log:      log,
	}
	if s.name == "" {
		s.name = "pars"
	}
	if s.client == nil {
		s.client = &http.Client{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Name is the sink's name.
func (s *Sink) Name() string { return s.name }

// Concurrent reports that the forwarder may have several records in flight to the sink (up
// to forward.Options.MaxInFlight): its Send is safe for concurrent use, and each AuditEvent is
// a resource of its own, with its own id, which the server takes in any order.
func (s *Sink) Concurrent() bool { return true }

// Send delivers the event e of the spool record rec. It returns nil once the server has the
// record (2xx, or 409/412 for one it already had), and nil without sending for an event that
// names no patient, which is not PARS's to record. Otherwise the error is a *DeliveryError
// that wraps ErrRetry or ErrRejected.
func (s *Sink) Send(ctx context.Context, rec spool.Record, e audit.Event) error {
	ae, err := AuditEvent(rec, e, s.event)
	switch {
	case errors.Is(err, ErrNoPatient):
		s.log.Debug("audit record names no patient: nothing to send", "sink", s.name, "seq", rec.Seq)
		return nil
	case err != nil:
		return &DeliveryError{Sink: s.name, Seq: rec.Seq, Class: ErrRejected, Err: err}
	}
	body, err := json.Marshal(ae)
	if err != nil {
		return &DeliveryError{Sink: s.name, Seq: rec.Seq, Class: ErrRejected, Err: fmt.Errorf("encode AuditEvent: %w", err)}
	}

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	method, target := http.MethodPost, s.endpoint
	if s.put {
		method, target = http.MethodPut, s.endpoint+"/"+*ae.Id
	}
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return &DeliveryError{Sink: s.name, Seq: rec.Seq, Class: ErrRejected, Err: err}
	}
	req.Header.Set("Content-Type", MediaType)
	req.Header.Set("Accept", MediaType)
	req.Header.Set("Prefer", "return=minimal")
	if s.token != nil {
		token, err := s.token(ctx)
		if err != nil {
			return &DeliveryError{Sink: s.name, Seq: rec.Seq, Class: ErrRetry, Err: fmt.Errorf("get a bearer token: %w", err)}
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return &DeliveryError{Sink: s.name, Seq: rec.Seq, Class: ErrRetry, Err: err}
	}
	// The body is drained so the connection is reused, and not read further: an
	// OperationOutcome may quote the patient, and errors end up in logs.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()

	s.log.Debug("audit record answered", "sink", s.name, "seq", rec.Seq, "status", resp.StatusCode)
	class := classify(resp.StatusCode)
	if class == nil {
		return nil
	}
	return &DeliveryError{Sink: s.name, Seq: rec.Seq, Class: class, Status: resp.StatusCode,
		RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
}

// classify is the class of an answer's status: nil when the server has the record.
func classify(status int) error {
	switch {
	case status >= 200 && status < 300, status == http.StatusConflict, status == http.StatusPreconditionFailed:
		return nil
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return ErrRetry
	}
	return ErrRejected
}

// retryAfter is the wait a Retry-After header asks for (seconds or an HTTP date), or 0.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// DeliveryError is a record a Sink could not deliver.
type DeliveryError struct {
	// Sink and Seq name the sink and the record.
	Sink string
	Seq  uint64
	// Class is ErrRetry or ErrRejected.
	Class error
	// Status is the server's answer; 0 when there was none.
	Status int
	// RetryAfter is the wait the server asked for, 0 when it asked none.
	RetryAfter time.Duration
	// Err is the cause when there was no answer, or the record could not be sent.
	Err error
}

// Error implements error.
func (e *DeliveryError) Error() string {
	cause := fmt.Sprintf("HTTP %d", e.Status)
	if e.Err != nil {
		cause = e.Err.Error()
	}
	return fmt.Sprintf("deliver audit record %d to %s: %s", e.Seq, e.Sink, cause)
}

// Unwrap is the class and the cause, for errors.Is and errors.As.
func (e *DeliveryError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Class}
	}
	return []error{e.Class, e.Err}
}

// Package audit records every access to patient data. The governance issue adds the durable,
// tamper-evident spool; this version fixes the event shape and the step in the request path:
// an event is recorded before the response body is sent, and a failure to record refuses
// the request.
package audit

import (
	"context"
	"time"
)

// Event is one access to patient data.
type Event struct {
	Time      time.Time
	RequestID string
	Subject   string
	Role      string
	Org       string
	Purpose   string
	Action    string // "search" or "retrieve"
	Resource  string // route template
	PatientID string // NHS number, when the request named one
	StudyUIDs []string
	Sources   []string // trusts that contributed
	Status    int
}

// Recorder stores audit events durably. Record must return an error rather than lose an event.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// Discard drops events. It is the placeholder until the audit spool lands and is never used
// once governance is configured.
type Discard struct{}

// Record implements Recorder.
func (Discard) Record(context.Context, Event) error { return nil }

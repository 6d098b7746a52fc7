package ratelimit

import (
	"context"
	"time"
)

// Store keeps the counts a Limiter decides on. Keys and members reach it already hashed; a
// Store never sees an identifier.
type Store interface {
	// Take counts one request under r for key, unless r refuses it.
	Take(ctx context.Context, key string, r Rate) (Decision, error)
	// SeePatient counts patient in the window at key, unless that would take the window over
	// p.Patients distinct patients. A patient already in the window is always admitted, and
	// counts from now.
	SeePatient(ctx context.Context, key, patient string, p PatientLimit) (Decision, error)
}

// Decision is a Store's answer for one limit.
type Decision struct {
	// Allowed is true when the limit admitted the request (and counted it).
	Allowed bool
	// RetryAfter is, for a refused request, how long until the limit would admit it.
	RetryAfter time.Duration
}

package audit

import (
	"context"
	"fmt"

	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// Spooled records events in a spool: each is encoded (Encode) and appended, and Record returns
// only once it is on disk (spool.Append's group commit shares one fsync among concurrent
// requests). It is safe for concurrent use.
type Spooled struct {
	spool *spool.Spool
}

// NewSpooled records into s, which the caller keeps and closes.
func NewSpooled(s *spool.Spool) *Spooled {
	if s == nil {
		panic("audit: NewSpooled needs a spool")
	}
	return &Spooled{spool: s}
}

// Record implements Recorder.
func (r *Spooled) Record(ctx context.Context, e Event) error {
	b, err := Encode(e)
	if err != nil {
		return err
	}
	if _, err := r.spool.Append(ctx, b); err != nil {
		return fmt.Errorf("record audit event: %w", err)
	}
	return nil
}

// Healthy implements Recorder: the spool's health.
func (r *Spooled) Healthy() error { return r.spool.Healthy() }

// Accesses implements Log: it reads the records the spool keeps, oldest first; once retention
// has deleted old segments (spool.Spool.Prune), that is the period retained, and earlier
// accesses are only in the sinks (PARS, ATNA). When the spool was opened with PatientKeys as
// its Options.Keys it reads only the segments that may hold the patient's records
// (spool.Spool.ScanKey); otherwise every segment.
func (r *Spooled) Accesses(ctx context.Context, nhs string) ([]Event, error) {
	var out []Event
	var bad error
	err := r.spool.ScanKey(ctx, []byte(nhs), func(rec spool.Record) bool {
		if !MayConcern(rec.Payload, nhs) {
			return true
		}
		e, err := Decode(rec.Payload)
		if err != nil {
			bad = fmt.Errorf("record %d: %w", rec.Seq, err)
			return false
		}
		if e.PatientID == nhs && e.Action != ActionAuditRead && (e.Outcome == OutcomeSuccess || e.Outcome == OutcomePartial) {
			out = append(out, e)
		}
		return true
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, fmt.Errorf("read the patient's accesses: %w", err)
	}
	return out, nil
}

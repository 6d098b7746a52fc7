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

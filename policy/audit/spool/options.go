package spool

import (
	"errors"
	"fmt"
	"time"
)

// Errors Append and Healthy return, tested with errors.Is.
var (
	// ErrFull means the record would take the spool past Options.MaxBytes; nothing was
	// written.
	ErrFull = errors.New("audit spool is full")
	// ErrUnwritable means a write or fsync failed, or the directory cannot be written; the
	// record is not on disk. The cause is wrapped with it.
	ErrUnwritable = errors.New("audit spool cannot be written")
	// ErrTooLarge means the payload does not fit in one segment.
	ErrTooLarge = errors.New("audit record is larger than a segment")
	// ErrClosed means the Spool was closed.
	ErrClosed = errors.New("audit spool is closed")
)

// maxSegmentBytes is the largest Options.SegmentBytes: a record's length field must hold it.
const maxSegmentBytes = 1 << 30

// probeInterval is the least time between two attempts to repair a broken spool.
const probeInterval = time.Second

// Options configures a Spool. It has no defaults: the configuration supplies every field.
type Options struct {
	// Dir is the spool's directory, created with mode 0700 when missing.
	Dir string
	// SegmentBytes is the most bytes a segment holds: a record that would take the current
	// segment past it starts a new one. It must exceed 97 (one record with an empty payload)
	// and be at most 1 GiB; a payload must fit, with 97 bytes of framing, in one segment.
	SegmentBytes int64
	// MaxBytes bounds the bytes of all segments together; at least SegmentBytes.
	MaxBytes int64
	// Clock stamps records and paces the probes of a broken spool.
	Clock func() time.Time
	// Keys, when not nil, calls add with each key a record's payload may be looked up by
	// (ScanKey); a key it leaves out is never found in that record's segment. The audit gives
	// the patient a record names. It is called in Open for every record, and for each record
	// written, so it must be quick and must not keep add or the payload.
	Keys func(payload []byte, add func(key []byte))
}

// validate reports the first missing or wrong field of o, by name.
func (o Options) validate() error {
	switch {
	case o.Dir == "":
		return errors.New("Options.Dir is not set")
	case o.SegmentBytes == 0:
		return errors.New("Options.SegmentBytes is not set")
	case o.MaxBytes == 0:
		return errors.New("Options.MaxBytes is not set")
	case o.Clock == nil:
		return errors.New("Options.Clock is not set")
	case o.SegmentBytes <= overhead || o.SegmentBytes > maxSegmentBytes:
		return fmt.Errorf("Options.SegmentBytes is %d; it must be more than %d and at most %d",
			o.SegmentBytes, overhead, maxSegmentBytes)
	case o.MaxBytes < o.SegmentBytes:
		return fmt.Errorf("Options.MaxBytes is %d; it must be at least Options.SegmentBytes (%d)",
			o.MaxBytes, o.SegmentBytes)
	}
	return nil
}

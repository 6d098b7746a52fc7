package config

import (
	"time"

	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// Audit says where the patient audit record is kept: a spool of hash-chained, fsynced segments
// (package policy/audit/spool) that every access is appended to before its answer is sent.
type Audit struct {
	// SpoolDir is the spool's directory, created (mode 0700) when missing; a relative path is
	// taken from the config file's directory. One nirproxy process may use it at a time: give
	// each replica its own. Required: nirproxy answers nothing it cannot record.
	SpoolDir string `yaml:"spoolDir"`
	// SegmentBytes is the size a segment file grows to before the next is started: from 1 MiB
	// to 1 GiB. Default 64 MiB.
	SegmentBytes int `yaml:"segmentBytes"`
	// MaxBytes bounds the spool on disk. When it is reached every data request is refused
	// (503) rather than a record dropped, until forwarded records are removed. At least
	// SegmentBytes. Default 10 GiB.
	MaxBytes int `yaml:"maxBytes"`
}

// The bounds of audit.segmentBytes.
const (
	minSegmentBytes = 1 << 20
	maxSegmentBytes = 1 << 30
)

// checkAudit checks the audit section.
func checkAudit(ps *Problems, a Audit) {
	if a.SpoolDir == "" {
		ps.add("audit.spoolDir", "is empty; nirproxy records every access before it answers: name a directory for the audit spool, like /var/lib/nirproxy/audit")
	}
	if a.SegmentBytes < minSegmentBytes || a.SegmentBytes > maxSegmentBytes {
		ps.add("audit.segmentBytes", "is %d; use %d (1 MiB) to %d (1 GiB), like 67108864 (64 MiB)", a.SegmentBytes, minSegmentBytes, maxSegmentBytes)
	} else if a.MaxBytes < a.SegmentBytes {
		ps.add("audit.maxBytes", "is %d, less than audit.segmentBytes (%d); give room for many segments, like 10737418240 (10 GiB)", a.MaxBytes, a.SegmentBytes)
	}
}

// SpoolOptions is the audit section as package spool takes it, with clock.
func (a Audit) SpoolOptions(clock func() time.Time) spool.Options {
	return spool.Options{Dir: a.SpoolDir, SegmentBytes: int64(a.SegmentBytes), MaxBytes: int64(a.MaxBytes), Clock: clock}
}

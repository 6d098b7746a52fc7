package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// retention deletes, every audit.retentionInterval, the audit spool's segments older than
// audit.retention that every sink has acknowledged, leaving a signed checkpoint
// (spool.Spool.Prune). It logs counts and sequence numbers only, never a patient.
type retention struct {
	sp      *spool.Spool
	rule    spool.Retention
	keep    time.Duration
	every   time.Duration
	now     func() time.Time
	log     *slog.Logger
	metrics retentionMetrics
	cancel  context.CancelFunc
	done    chan struct{}
}

// retentionMetrics count what retention does.
type retentionMetrics struct {
	records, segments, bytes, failures prometheus.Counter
}

// newRetentionMetrics registers retention's counters with reg.
func newRetentionMetrics(reg prometheus.Registerer) retentionMetrics {
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	return retentionMetrics{
		records:  counter("nirproxy_audit_retention_deleted_records_total", "Audit records deleted from the spool by retention, every sink having them."),
		segments: counter("nirproxy_audit_retention_deleted_segments_total", "Audit spool segments deleted by retention."),
		bytes:    counter("nirproxy_audit_retention_deleted_bytes_total", "Bytes of audit spool segments deleted by retention."),
		failures: counter("nirproxy_audit_retention_failures_total", "Retention passes that failed (the spool keeps its records)."),
	}
}

// startRetention runs retention over sp in the background as cfg.Audit says, telling the time
// by now; nil when it deletes nothing: retention is off, or no sink holds the records. Close
// it before the spool.
func startRetention(cfg config.Config, sp *spool.Spool, now func() time.Time, reg prometheus.Registerer, log *slog.Logger) (*retention, error) {
	a := cfg.Audit
	if err := checkSigner(a, sp); err != nil {
		return nil, err
	}
	if !a.Prunes() {
		if a.Retention > 0 {
			log.Warn("audit retention deletes nothing: no sink (audit.pars.url, audit.atna.address) holds the records, so the spool keeps the only copy")
		}
		return nil, nil
	}
	key, err := a.RetentionKey()
	if err != nil {
		return nil, fmt.Errorf("start audit retention: audit.checkpointKey: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &retention{sp: sp, rule: spool.Retention{Sinks: a.SinkNames(), Key: key}, keep: a.Retention.Std(),
		every: a.RetentionInterval.Std(), now: now, log: log, metrics: newRetentionMetrics(reg), cancel: cancel, done: make(chan struct{})}
	log.Info("audit retention on", "retention", a.Retention.String(), "every", a.RetentionInterval.String(),
		"sinks", r.rule.Sinks, "key", spool.Fingerprint(key.Public().(ed25519.PublicKey)))
	go r.run(ctx)
	return r, nil
}

// checkSigner refuses a spool whose checkpoint was signed by a key that is neither
// audit.checkpointKey nor one of audit.trustedCheckpointKeys: someone who deleted records and
// wrote a checkpoint of their own would otherwise have it continued, and re-signed by the
// next retention pass. Without a checkpoint key nothing can be judged (and nothing is
// re-signed).
func checkSigner(a config.Audit, sp *spool.Spool) error {
	cp := sp.Checkpoint()
	if cp == nil || a.CheckpointKey == "" {
		return nil
	}
	key, err := a.RetentionKey()
	if err != nil {
		return fmt.Errorf("check the audit spool's checkpoint: audit.checkpointKey: %w", err)
	}
	signer, ours := cp.KeyFingerprint(), spool.Fingerprint(key.Public().(ed25519.PublicKey))
	if signer == ours || slices.Contains(a.TrustedCheckpointKeys, signer) {
		return nil
	}
	return fmt.Errorf("the audit spool's checkpoint (records 1 to %d deleted) was signed by the key with fingerprint %s, "+
		"which is neither audit.checkpointKey's (%s) nor in audit.trustedCheckpointKeys: check the spool with "+
		"`nirproxy audit verify --key` and the public key that signed it; if the checkpoint key was changed on purpose, "+
		"add %s to audit.trustedCheckpointKeys", cp.LastSeq, signer, ours, signer)
}

// fullPassGap is the least time between two passes made because the spool filled: a spool
// that is full of records no sink has yet, or too recent to go, refuses every Append, and a
// pass for each would read the spool over and over for nothing.
const fullPassGap = time.Minute

// run makes a pass at once, then one every interval, and one as soon as the spool refuses a
// record for room (at most one per fullPassGap), until ctx ends.
func (r *retention) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.every)
	defer t.Stop()
	var lastFull time.Time
	for {
		r.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.sp.Filled():
			if wait := fullPassGap - time.Since(lastFull); !lastFull.IsZero() && wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			lastFull = time.Now()
			r.log.Warn("the audit spool is full and data requests are refused: retention runs now")
		}
	}
}

// pass deletes what may go now.
func (r *retention) pass(ctx context.Context) {
	rule := r.rule
	rule.Before = r.now().Add(-r.keep)
	p, err := r.sp.Prune(ctx, rule)
	r.metrics.records.Add(float64(p.Records))
	r.metrics.segments.Add(float64(p.Segments))
	r.metrics.bytes.Add(float64(p.Bytes))
	if err != nil && ctx.Err() == nil {
		r.metrics.failures.Inc()
		r.log.Error("audit retention failed; the spool keeps its records", "err", err, "segments", p.Segments, "records", p.Records)
		return
	}
	if p.Segments > 0 {
		r.log.Info("audit retention deleted segments every sink has", "segments", p.Segments, "records", p.Records,
			"bytes", p.Bytes, "checkpoint", p.Checkpoint.LastSeq)
	}
}

// Close stops retention, waiting for a pass under way.
func (r *retention) Close() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/dicomweb"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/fhir"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
	"github.com/nirproxy/nirproxy/policy/authn"
)

// auditUsage is how the audit commands are called.
const auditUsage = "usage: nirproxy audit verify [--key PUBLICKEY] DIR, or nirproxy audit export --config FILE --patient NHSNUMBER [--from WHEN] [--to WHEN]"

// auditCommand runs `nirproxy audit verify [--key PUBLICKEY] DIR`: it checks the hash chain of
// the audit spool in DIR and reports its extent, or the first break (a record edited, deleted,
// reordered or cut short in the middle), with exit status 1. When retention has deleted
// records, the chain starts from its checkpoint, and the command says what that covers; with
// --key (the PEM file of the public half of audit.checkpointKey) it also checks that the
// checkpoint was signed by that key, and without it says that it did not. It only reads, so it
// may run beside a serving proxy; for a report on a fixed state, run it on a copy or a
// read-only snapshot.
func auditCommand(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New(auditUsage)
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	keyFile := fs.String("key", "", "")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 1 {
		return errors.New(auditUsage)
	}
	dir := fs.Arg(0)
	r, err := verifySpool(dir, *keyFile)
	var brk *spool.Break
	switch {
	case errors.As(err, &brk):
		fmt.Fprintf(stdout, "%s: the chain holds for %d records, then breaks in %s at byte %d (record %d): %s\n",
			dir, r.Records, brk.Segment, brk.Offset, brk.Seq, brk.Problem)
		return fmt.Errorf("the audit record in %s does not verify", dir)
	case err != nil:
		return fmt.Errorf("verify the audit record: %w", err)
	}
	switch {
	case r.Records == 0 && r.Checkpoint == nil:
		fmt.Fprintf(stdout, "%s: no records; the chain holds\n", dir)
		return nil
	case r.Records == 0:
		fmt.Fprintf(stdout, "%s: the chain holds: no records after the checkpoint, in %d segment\n", dir, r.Segments)
	default:
		fmt.Fprintf(stdout, "%s: the chain holds: %d records (%d to %d) in %d segments, %d bytes, from %s to %s\n",
			dir, r.Records, r.FirstSeq, r.LastSeq, r.Segments, r.Bytes, r.FirstTime.Format(time.RFC3339), r.LastTime.Format(time.RFC3339))
	}
	if cp := r.Checkpoint; cp != nil {
		fmt.Fprintf(stdout, "%s: records 1 to %d (%d segments, from %s to %s) were deleted by retention; the chain continues from their checkpoint, signed at %s by the key with SHA-256 fingerprint %s\n",
			dir, cp.LastSeq, cp.Segments, cp.FirstTime.Format(time.RFC3339), cp.LastTime.Format(time.RFC3339), cp.Created.Format(time.RFC3339), cp.KeyFingerprint())
		if r.KeyChecked {
			fmt.Fprintf(stdout, "%s: the checkpoint's signature was checked with the key in %s\n", dir, *keyFile)
		} else {
			fmt.Fprintf(stdout, "%s: the checkpoint's signer was NOT checked: give --key with the public half of audit.checkpointKey\n", dir)
		}
	}
	if r.Covered > 0 {
		fmt.Fprintf(stdout, "%s: %d segments the checkpoint covers are still on disk (retention cut short), which the proxy deletes when it next opens the spool\n", dir, r.Covered)
	}
	if r.Torn > 0 {
		fmt.Fprintf(stdout, "%s: the last %d bytes are a record cut short by a crash, which the proxy discards when it next opens the spool\n", dir, r.Torn)
	}
	return nil
}

// verifySpool verifies the spool in dir, with the public key in keyFile when it is not "".
func verifySpool(dir, keyFile string) (spool.Report, error) {
	if keyFile == "" {
		return spool.Verify(dir)
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return spool.Report{}, fmt.Errorf("read --key: %w", err)
	}
	key, err := spool.ParsePublicKey(data)
	if err != nil {
		return spool.Report{}, fmt.Errorf("--key %s: %w", keyFile, err)
	}
	return spool.VerifyKey(dir, key)
}

// auditExportCommand runs `nirproxy audit export --config FILE --patient N [--from WHEN]
// [--to WHEN]`: the patient's right of access. It prints to stdout a FHIR R4 Bundle of type
// collection (a set of resources gathered for a reader, not the answer to a FHIR search) that
// holds, as AuditEvents, every recorded access to the patient's imaging: searches, retrieves,
// metadata, rendered and bulk data requests, whether answered, refused or failed, each
// event's outcome saying which. Reads of the patient's audit record (GET /audit/patients/...)
// are left out, as the patient access page leaves them out: they are the privacy office's
// reads of this record, not accesses to the imaging.
//
// Each AuditEvent is the one PARS is sent for the record (policy/audit/fhir, with the options
// of audit.pars), so it carries the same id; audit.pars.observer must therefore be set, even
// where audit.pars.url is not. The entries are in the order of their recorded time (the event's
// time), which --from and --to bound, inclusively: each takes an RFC 3339 time, or a date,
// which stands for the whole of that day in UTC.
//
// The spool (audit.spoolDir) is read with spool.ReadDir: it is not opened for writing, so the
// export runs beside a serving nirproxy, and its chain is checked as `audit verify` checks it.
// A broken chain fails the export with nothing printed. Once retention has deleted old segments
// (audit.retention), the export covers only the records kept, from the checkpoint on; earlier
// accesses are in PARS. The NHS number is never written to
// stderr, and the export, which only reads, is not itself recorded in the spool.
func auditExportCommand(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration `FILE` (YAML) naming the audit spool (audit.spoolDir)")
	patient := fs.String("patient", "", "the patient's `NHSNUMBER` (10 digits)")
	fromFlag := fs.String("from", "", "only events at or after `WHEN`: an RFC 3339 time, or a date (from its start, UTC)")
	toFlag := fs.String("to", "", "only events at or before `WHEN`: an RFC 3339 time, or a date (to its end, UTC)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *patient == "" || fs.NArg() > 0 {
		// The arguments are not repeated: one of them may be the NHS number.
		return errors.New("usage: nirproxy audit export --config FILE --patient NHSNUMBER [--from WHEN] [--to WHEN]")
	}
	nhs, err := dicomweb.NormaliseNHSNumber(*patient)
	if err != nil {
		return errors.New("--patient is not a valid NHS number (10 digits with a correct check digit)")
	}
	from, err := parseWhen("--from", *fromFlag, false)
	if err != nil {
		return err
	}
	to, err := parseWhen("--to", *toFlag, true)
	if err != nil {
		return err
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		return errors.New("--to is before --from")
	}
	cfg, err := loadConfig(*path, environ, stderr)
	if err != nil {
		return err
	}
	opts, err := exportOptions(cfg)
	if err != nil {
		return err
	}
	events, rep, err := patientEvents(ctx, cfg.Audit.SpoolDir, nhs, from, to, opts)
	if err != nil {
		return err
	}
	if err := writeBundle(stdout, events, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "audit export: %d AuditEvents of the patient, from %d records whose chain holds\n", len(events), rep.Records)
	return nil
}

// parseWhen reads the value of --from or --to (name): an RFC 3339 time, or a date, which is
// its day's first instant, or with end its last. "" is the zero time, no bound.
func parseWhen(name, value string, end bool) (time.Time, error) {
	if value == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, value); err == nil {
		return t, nil
	}
	day, err := time.Parse(time.DateOnly, value)
	if err != nil {
		// The value is not repeated: it may be an NHS number given in the wrong place.
		return time.Time{}, fmt.Errorf("%s is neither a date like 2026-03-01 nor an RFC 3339 time like 2026-03-01T09:30:00Z", name)
	}
	if end {
		return day.AddDate(0, 0, 1).Add(-time.Nanosecond), nil
	}
	return day, nil
}

// exportOptions are the options of the AuditEvent mapping that PARS gets: audit.pars's.
func exportOptions(cfg config.Config) (fhir.Options, error) {
	if cfg.Audit.PARS.Observer == "" {
		return fhir.Options{}, errors.New("audit.pars.observer is empty: the AuditEvents name this nirproxy as their source " +
			"as PARS knows it; set audit.pars.observer to its ASID (under audit.pars.observerSystem), even without audit.pars.url")
	}
	so, err := cfg.PARSSink(cis2Issuers(cfg))
	if err == nil {
		err = so.Event.Validate()
	}
	if err != nil {
		return fhir.Options{}, fmt.Errorf("configure the AuditEvents as audit.pars says: %w", err)
	}
	return so.Event, nil
}

// cis2Issuers are the issuers of authentication profile cis2, whose users PARS knows by SDS
// user id.
func cis2Issuers(cfg config.Config) []string {
	var out []string
	for _, iss := range cfg.Authentication.Issuers {
		if iss.Profile == authn.ProfileCIS2 {
			out = append(out, iss.Issuer)
		}
	}
	return out
}

// patientEvents reads the spool in dir and returns the AuditEvents of the patient nhs whose
// time is within from and to (a zero bound is none), in time order, with the Report of the
// reading. It fails, returning nothing, at a break in the chain or at a record of the patient
// that cannot be mapped: an export that leaves out an access is worse than none.
func patientEvents(ctx context.Context, dir, nhs string, from, to time.Time, opts fhir.Options) ([]*r4.AuditEvent, spool.Report, error) {
	type event struct {
		time time.Time
		ae   *r4.AuditEvent
	}
	var events []event
	var bad error
	rep, err := spool.ReadDir(dir, func(rec spool.Record) bool {
		if bad = ctx.Err(); bad != nil {
			return false
		}
		if !audit.MayConcern(rec.Payload, nhs) {
			return true
		}
		e, err := audit.Decode(rec.Payload)
		if err != nil {
			bad = fmt.Errorf("read audit record %d: %w", rec.Seq, err)
			return false
		}
		if e.PatientID != nhs || e.Action == audit.ActionAuditRead ||
			!from.IsZero() && e.Time.Before(from) || !to.IsZero() && e.Time.After(to) {
			return true
		}
		ae, err := fhir.AuditEvent(rec, e, opts)
		if err != nil {
			bad = err // names the record and the field, never the patient
			return false
		}
		events = append(events, event{e.Time, ae})
		return true
	})
	var brk *spool.Break
	switch {
	case errors.As(err, &brk):
		return nil, rep, fmt.Errorf("the audit record in %s does not verify, so nothing is exported: %w; "+
			"nirproxy audit verify %s reports it", dir, brk, dir)
	case err != nil:
		return nil, rep, fmt.Errorf("export the patient's audit record: %w", err)
	case bad != nil:
		return nil, rep, fmt.Errorf("export the patient's audit record: %w", bad)
	}
	// The spool is in the order of appending; an event's time is taken a moment before, so
	// concurrent requests' events may stand slightly out of time order.
	slices.SortStableFunc(events, func(a, b event) int { return a.time.Compare(b.time) })
	out := make([]*r4.AuditEvent, len(events))
	for i, e := range events {
		out[i] = e.ae
	}
	return out, rep, nil
}

// writeBundle writes the events as a FHIR R4 Bundle of type collection, assembled at now, in
// indented JSON. Each entry's fullUrl is its AuditEvent's id as a urn:uuid.
func writeBundle(w io.Writer, events []*r4.AuditEvent, now time.Time) error {
	timestamp := now.UTC().Format(time.RFC3339Nano)
	b := r4.Bundle{Type: r4.BundleTypeCollection, Timestamp: &timestamp}
	for _, ae := range events {
		raw, err := json.Marshal(ae)
		if err != nil {
			return fmt.Errorf("encode AuditEvent %s: %w", *ae.Id, err)
		}
		fullURL := "urn:uuid:" + *ae.Id
		b.Entry = append(b.Entry, r4.BundleEntry{FullUrl: &fullURL, Resource: raw})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return fmt.Errorf("write the Bundle: %w", err)
	}
	return nil
}

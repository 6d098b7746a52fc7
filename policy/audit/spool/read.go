package spool

import "fmt"

// ReadDir reads the records of the spool in dir, in order, and calls fn with each sound record
// until fn returns false; fn may keep the record, and a nil fn only checks. It checks the
// chain as it goes, exactly as Verify does, and like Verify it only reads: it opens nothing
// for writing and creates no file, so it may run while a Spool in another process appends.
//
// A torn tail (a record at the end of the last segment cut short, or still being written) is
// passed over and counted in Report.Torn, as Verify does. At a break, fn has had every record
// before it, and the break is returned both as the error (a *Break) and in Report.Break; the
// last of those records may be the one at fault (one rewritten with a hash of its own shows
// only at the record after it), so act on what was read only once ReadDir returns nil. When
// fn stops the reading, the error is nil and the Report covers the records read up to then.
// Any other error means the directory could not be read, or holds no segment.
//
// On a spool being written, ReadDir reads what the segments hold when it reaches them: records
// appended after that are not read. A record is there once written, which may be before the
// writing Spool has synced it; should that sync fail, the Spool cuts the record away (and its
// Append fails), so a later ReadDir may not find a record an earlier one did.
func ReadDir(dir string, fn func(Record) bool) (Report, error) {
	return readDir(dir, "read", fn)
}

// readDir is Verify and ReadDir: it checks the chain of the spool in dir, calling visit (when
// not nil) with each sound record; what names the reading in errors.
func readDir(dir, what string, visit func(Record) bool) (Report, error) {
	c, err := scanDir(osFS{}, dir, visit)
	if err != nil {
		return Report{}, fmt.Errorf("%s audit spool %s: %w", what, dir, err)
	}
	if c.report.Break != nil {
		return c.report, c.report.Break
	}
	if len(c.segs) == 0 {
		return Report{}, fmt.Errorf("%s audit spool %s: no segments (seg-*.log) in the directory", what, dir)
	}
	return c.report, nil
}

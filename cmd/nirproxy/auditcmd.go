package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// auditCommand runs `nirproxy audit verify DIR`: it checks the hash chain of the audit spool in
// DIR and reports its extent, or the first break (a record edited, deleted, reordered or cut
// short in the middle), with exit status 1. It only reads: run it on a copy, or on a read-only
// mount, of a spool a proxy is writing.
func auditCommand(args []string, stdout io.Writer) error {
	if len(args) != 2 || args[0] != "verify" {
		return errors.New("usage: nirproxy audit verify DIR")
	}
	dir := args[1]
	r, err := spool.Verify(dir)
	var brk *spool.Break
	switch {
	case errors.As(err, &brk):
		fmt.Fprintf(stdout, "%s: the chain holds for %d records, then breaks in %s at byte %d (record %d): %s\n",
			dir, r.Records, brk.Segment, brk.Offset, brk.Seq, brk.Problem)
		return fmt.Errorf("the audit record in %s does not verify", dir)
	case err != nil:
		return fmt.Errorf("verify the audit record: %w", err)
	}
	if r.Records == 0 {
		fmt.Fprintf(stdout, "%s: no records; the chain holds\n", dir)
		return nil
	}
	fmt.Fprintf(stdout, "%s: the chain holds: %d records (%d to %d) in %d segments, %d bytes, from %s to %s\n",
		dir, r.Records, r.FirstSeq, r.LastSeq, r.Segments, r.Bytes, r.FirstTime.Format(time.RFC3339), r.LastTime.Format(time.RFC3339))
	if r.Torn > 0 {
		fmt.Fprintf(stdout, "%s: the last %d bytes are a record cut short by a crash, which the proxy discards when it next opens the spool\n", dir, r.Torn)
	}
	return nil
}

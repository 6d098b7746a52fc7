// Package spool is the audit record's durable, tamper-evident spool: an append-only log of
// opaque payloads (the encoded audit events) in segment files on a local disk, each record
// hash-chained to the one before it. [Spool.Append] returns only once its record is on disk,
// so the request path can refuse to answer when it cannot record (hazard H15). Sinks read the
// spool through named [Cursor]s that remember what they have forwarded. [Verify] checks a
// spool directory, and [ReadDir] reads its records, without opening it for writing, so that
// another process may use them on the directory of a running Spool.
//
// The package knows nothing of DICOM or of the events' encoding.
//
// # Directory
//
// A spool is one directory (mode 0700) holding:
//
//   - seg-NNNNNNNNNNNNNNNNNNNN.log (mode 0600): a segment, named by the sequence number of its
//     first record in 20 decimal digits. Segments are read in the order of their names.
//   - cursor-NAME (mode 0600): the last sequence number the sink NAME acknowledged, in decimal
//     followed by a newline; replaced atomically (cursor-NAME.tmp written, synced, renamed,
//     the directory synced).
//   - checkpoint (mode 0600): once retention has deleted segments, the signed statement of what
//     it deleted (below); replaced atomically as the cursor files are.
//   - .healthy-probe: created and removed by [Spool.Healthy] to test that the directory is
//     writable.
//
// Only one Spool may have a directory open at a time; nothing locks it.
//
// # Record format
//
// A segment is a sequence of records with no file header. All integers are big-endian. A
// record is a 16-byte header followed by a body of n bytes:
//
//	offset  size  field
//	0       4     magic "NPA1"
//	4       4     n, the length of the body (uint32, 81 <= n <= 1 GiB)
//	8       4     CRC-32C (Castagnoli) of bytes 0-7 (magic and n)
//	12      4     CRC-32C of the n bytes of the body
//	16      1     kind: 1 an event, 2 a checkpoint
//	17      8     sequence number (uint64): 1 for the first record, one more for each after,
//	              across segments
//	25      8     time, milliseconds since 1970-01-01T00:00:00Z (int64), from Options.Clock
//	33      32    prev: the SHA-256 hash of the previous record (its field at offset 65);
//	              32 zero bytes for record 1
//	65      32    hash: SHA-256 of the 49 bytes at offsets 16-64 (kind, sequence number, time,
//	              prev) followed by the payload
//	97      n-81  payload, as given to Append
//
// A record therefore takes 97 bytes more than its payload. The checksums find torn and
// damaged records; the hashes make the chain: a record edited, deleted, inserted or moved
// breaks the hash or sequence number of itself or of the record after it. (Whoever can
// rewrite the last record and its checksums consistently cannot be detected by the chain
// alone; the copies the sinks hold are the check on that.)
//
// Kind 2 is reserved and never written: a segment holding one does not verify. The checkpoint
// is a file of its own (below), so that no segment is ever rewritten.
//
// # Retention and the checkpoint
//
// [Spool.Prune] deletes the oldest closed segments whose every record is older than a cut-off
// and acknowledged by every sink's cursor (a sink with no cursor yet holds everything back);
// never the segment being written. Before it deletes anything it replaces the file checkpoint
// (written, synced, renamed, the directory synced) with three lines of text:
//
//	nirproxy-audit-checkpoint-v1
//	{"lastSeq":6,"lastHash":"<64 hex>","records":6,"segments":2,"firstTime":"<RFC 3339>",
//	 "lastTime":"<RFC 3339>","created":"<RFC 3339>","publicKey":"<base64>","keySha256":"<64 hex>"}
//	<base64 Ed25519 signature>
//
// The statement (one line of JSON; wrapped above) covers every record deleted so far, 1 to
// lastSeq: lastHash is the hash of record lastSeq, records how many (always lastSeq), segments
// how many files, firstTime and lastTime the times of the first and last of them, created when
// it was signed. publicKey is the raw Ed25519 public key that signed it, keySha256 the SHA-256
// of that key's PKIX DER form. The signature is over the bytes of the first two lines, each
// with its newline.
//
// The chain then starts from the checkpoint: the first segment left must be named lastSeq+1,
// and its first record must name lastHash as its prev. Open, Verify, ReadDir, Scan and cursors
// all start there. A checkpoint whose signature does not hold for the key it names, or that no
// segment follows, is a break; [VerifyKey] also checks that the key is the spool's, since
// whoever can write the disk can sign with a key of their own. Deleting the checkpoint, or a
// segment after it, breaks the chain as deleting records does.
//
// A crash after the checkpoint is written and before every segment it covers is deleted leaves
// segments wholly before lastSeq+1: Verify and ReadDir pass over them (Report.Covered), and
// Open deletes them. A Cursor of a name that has acknowledged nothing starts at the first
// record kept; one whose name acknowledged less than the checkpoint covers gets [ErrPruned].
// Scan from 1 starts at the first record kept; Scan from a later deleted record gets
// ErrPruned.
//
// # Durability
//
// Append queues its record for one goroutine of the Spool's own, the flusher, and waits for
// its answer. The flusher takes every record queued (group commit), gives them their sequence
// numbers and chain in queue order, writes them with one write and syncs the segment with one
// fsync, then answers each Append alone: on disk, or why not. While it syncs, the next records
// queue, so the busier the spool, the more records share a sync; nothing waits on a timer, so
// a lone Append costs one write and one fsync. Appenders never wait for one another on a lock,
// which under load would hand the lock from one descheduled goroutine to the next. Creating a
// segment syncs the new file and the directory; rotating to a new one first writes and syncs
// the old.
//
// When a write or an fsync fails, the spool is broken: Append and Healthy return
// [ErrUnwritable] with the cause, and no Append whose record that sync was to cover, or that
// was written after it, returns success, since after a failed fsync the kernel may have dropped the unwritten data
// while a later fsync succeeds (fsyncgate). At most once a second (by Options.Clock) the next
// Append or Healthy call probes: it cuts the segment back to the end of the last record known
// to be on disk, syncs it, and starts a new segment (synced, with the directory). If the probe
// succeeds the spool goes on from that record; the sequence numbers of the records that were
// cut away are used again. If it fails the spool stays broken until the next probe or until
// the process opens the directory again.
//
// # Recovery
//
// Open reads every segment and checks the whole chain as Verify does. The final record of the
// last segment may be torn (a write cut short by a crash or power loss): when no valid record
// follows a bad one in the last segment, the bad bytes are cut away and logged. Any other
// break (a bad checksum followed by valid records, a chain that does not link, a missing
// segment) makes Open fail with a [*Break] naming the segment and offset: that is corruption
// or tampering, for Verify and a person to look at, and the spool is never extended over it.
// Open also fails when a cursor has acknowledged a record the spool no longer holds, and
// finishes a prune cut short (above).
//
// # Size
//
// Options.MaxBytes bounds the bytes of all segments together. Append refuses a record that
// would pass it with [ErrFull] rather than drop anything; a full spool stays full until
// [Spool.Prune] deletes segments, which only those every sink has acknowledged can be.
// [Spool.Filled] tells whoever runs retention that an Append was refused for room.
package spool

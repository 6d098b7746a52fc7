package spool

import (
	"crypto/ed25519"
	"fmt"
	"time"
)

// Report is what Verify or ReadDir found in a spool directory.
type Report struct {
	// Segments is how many segments were read (up to and including the one with the break).
	Segments int
	// Records is how many records were checked and found sound, before any break.
	Records uint64
	// FirstSeq and LastSeq are the sequence numbers of the first and last sound records;
	// FirstTime and LastTime their times. All are zero when there is none.
	FirstSeq, LastSeq   uint64
	FirstTime, LastTime time.Time
	// Bytes is the size of the segments read.
	Bytes int64
	// Torn is how many bytes at the end of the last segment do not form a record: a write cut
	// short by a crash, which Open cuts away. It is not a break.
	Torn int64
	// Break is the first place where the chain does not hold; nil when it holds throughout.
	Break *Break
	// Checkpoint is the signed checkpoint the chain starts from, after the records retention
	// deleted; nil when none were deleted. Its signature holds for the key it names; whether
	// that is the spool's key only VerifyKey checks, and says in KeyChecked.
	Checkpoint *Checkpoint
	// KeyChecked is true when VerifyKey found the checkpoint signed by the key it was given.
	KeyChecked bool
	// Covered is how many segments the checkpoint covers that are still on disk (a prune cut
	// short by a crash); they are not read, and Open deletes them. They are not counted above.
	Covered int
}

// Break is the first place where a spool's chain does not hold.
type Break struct {
	// Segment is the segment's file name.
	Segment string
	// Offset is the byte offset in the segment of the record (or the place) at fault.
	Offset int64
	// Seq is the sequence number the chain expected at that place.
	Seq uint64
	// Problem says what is wrong there, and what it suggests: a record edited, deleted,
	// reordered, or a segment truncated in the middle.
	Problem string
}

// Error describes the break with its place.
func (b *Break) Error() string {
	if b.Segment == checkpointFile {
		return fmt.Sprintf("audit chain broken at its checkpoint (file %s): %s", checkpointFile, b.Problem)
	}
	return fmt.Sprintf("audit chain broken in segment %s at offset %d (record %d): %s",
		b.Segment, b.Offset, b.Seq, b.Problem)
}

// Verify reads every segment of the spool in dir, without opening it for writing, and checks
// the chain: checksums, each record's hash, sequence numbers continuous from 1 across
// segments, and each record naming the hash of the one before. It stops at the first break,
// which it returns both as the error (a *Break) and in Report.Break, with the counts of what
// came before. Any other error means the directory could not be read. Verify takes the
// directory as it finds it, and may run while a Spool appends to it, as ReadDir says; for a
// report on a fixed state, run it on a copy or a read-only snapshot.
//
// When retention has deleted records, the chain starts from the checkpoint it left: the first
// record kept must follow it. Verify checks that the checkpoint's signature holds for the key
// the checkpoint names, which finds damage and edits by anyone without a key of their own;
// VerifyKey also checks that the key is the spool's.
func Verify(dir string) (Report, error) {
	return readDir(dir, "verify", nil)
}

// VerifyKey is Verify that also checks that the checkpoint, if there is one, was signed by key
// (Report.KeyChecked); one signed by another key is a Break at the checkpoint, as is a
// checkpoint replaced, by whoever holds a key, with one covering more or fewer records than
// the segments left.
func VerifyKey(dir string, key ed25519.PublicKey) (Report, error) {
	rep, err := Verify(dir)
	if err != nil || rep.Checkpoint == nil {
		return rep, err
	}
	if kerr := rep.Checkpoint.checkKey(key); kerr != nil {
		rep.Break = &Break{Segment: checkpointFile, Seq: rep.Checkpoint.LastSeq + 1, Problem: kerr.Error()}
		return rep, rep.Break
	}
	rep.KeyChecked = true
	return rep, nil
}

package spool

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"slices"
	"time"
)

// The record layout; the package doc describes it.
const (
	magic      = "NPA1"
	headerSize = 16
	fixedBody  = 81 // kind, sequence number, time, prev, hash
	overhead   = headerSize + fixedBody
	maxBody    = maxSegmentBytes

	kindEvent      = 1
	kindCheckpoint = 2
)

// Record is one record of the spool.
type Record struct {
	// Seq is the record's sequence number: 1 for the first record, one more for each after.
	Seq uint64
	// Time is when the record was appended, by Options.Clock, in UTC to the millisecond.
	Time time.Time
	// Prev is the Hash of the record before; 32 zero bytes for record 1.
	Prev [32]byte
	// Hash is the record's SHA-256 hash, over its kind, Seq, Time, Prev and Payload.
	Hash [32]byte
	// Payload is what was appended. A Record that Append returns holds the caller's slice.
	Payload []byte
}

// frame is a record as read from a segment, with what its reader found of it.
type frame struct {
	rec    Record
	kind   byte
	size   int64 // header and body
	hashOK bool  // the stored hash matches the content
}

// frameError is a record whose framing is broken: a checksum fails, or the segment ends
// inside it. At the end of the last segment it is a torn write; anywhere else, damage.
type frameError struct {
	problem string
	short   bool // the segment ends inside the record
}

func (e *frameError) Error() string { return e.problem }

// checksum is the CRC-32C of b.
func checksum(b []byte) uint32 {
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}

// recordHash is the SHA-256 of a body's fixed fields before the hash, then the payload.
func recordHash(fixed, payload []byte) [32]byte {
	h := sha256.New()
	h.Write(fixed)
	h.Write(payload)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// encode lays out a record of the given kind; it returns the bytes and the record's hash.
func encode(kind byte, seq uint64, t time.Time, prev [32]byte, payload []byte) ([]byte, [32]byte) {
	return appendRecord(nil, kind, seq, t, prev, payload)
}

// appendRecord appends to dst the record encode lays out, and returns the extended slice and
// the record's hash.
func appendRecord(dst []byte, kind byte, seq uint64, t time.Time, prev [32]byte, payload []byte) ([]byte, [32]byte) {
	n := fixedBody + len(payload)
	start := len(dst)
	dst = slices.Grow(dst, headerSize+n)[:start+headerSize+n]
	buf := dst[start:]
	body := buf[headerSize:]
	body[0] = kind
	binary.BigEndian.PutUint64(body[1:9], seq)
	binary.BigEndian.PutUint64(body[9:17], uint64(t.UnixMilli()))
	copy(body[17:49], prev[:])
	copy(body[81:], payload)
	sum := recordHash(body[:49], payload)
	copy(body[49:81], sum[:])
	copy(buf[0:4], magic)
	binary.BigEndian.PutUint32(buf[4:8], uint32(n))
	binary.BigEndian.PutUint32(buf[8:12], checksum(buf[0:8]))
	binary.BigEndian.PutUint32(buf[12:16], checksum(body))
	return dst, sum
}

// bodyLength checks a header and returns the length of the body it declares, which must fit
// in the remaining bytes of the segment (header included).
func bodyLength(hdr []byte, remaining int64) (int64, error) {
	if string(hdr[0:4]) != magic || binary.BigEndian.Uint32(hdr[8:12]) != checksum(hdr[0:8]) {
		return 0, &frameError{problem: "the record header is damaged (magic or header checksum)"}
	}
	n := int64(binary.BigEndian.Uint32(hdr[4:8]))
	if n < fixedBody || n > maxBody {
		return 0, &frameError{problem: "the record header declares an impossible length"}
	}
	if headerSize+n > remaining {
		return 0, &frameError{problem: "the segment ends inside a record", short: true}
	}
	return n, nil
}

// readFrame reads the record at the start of r, which has remaining bytes left in its
// segment. It returns io.EOF at a clean end, a *frameError for broken framing, and any other
// error as the reader's.
func readFrame(r io.Reader, remaining int64) (frame, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, endError(err)
	}
	n, err := bodyLength(hdr[:], remaining)
	if err != nil {
		return frame{}, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return frame{}, endError(err)
	}
	if binary.BigEndian.Uint32(hdr[12:16]) != checksum(body) {
		return frame{}, &frameError{problem: "the record's checksum does not match (damaged or edited)"}
	}
	return decodeBody(body), nil
}

// endError turns a short read into a frameError; io.EOF and other errors pass through.
func endError(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &frameError{problem: "the segment ends inside a record", short: true}
	}
	return err
}

// decodeBody reads a body whose checksum has been checked.
func decodeBody(body []byte) frame {
	rec := Record{
		Seq:     binary.BigEndian.Uint64(body[1:9]),
		Time:    time.UnixMilli(int64(binary.BigEndian.Uint64(body[9:17]))).UTC(),
		Payload: body[fixedBody:],
	}
	copy(rec.Prev[:], body[17:49])
	copy(rec.Hash[:], body[49:81])
	sum := recordHash(body[:49], rec.Payload)
	return frame{rec: rec, kind: body[0], size: int64(headerSize + len(body)), hashOK: sum == rec.Hash}
}

// frameAt reports whether data holds, at any offset, a record whose header and body
// checksums both hold: after a bad record, one means the bad one is not a torn tail.
func frameAt(data []byte) bool {
	for p := 0; p+headerSize <= len(data); p++ {
		q := bytes.Index(data[p:], []byte(magic))
		if q < 0 {
			return false
		}
		p += q
		if p+headerSize > len(data) {
			return false
		}
		n, err := bodyLength(data[p:p+headerSize], int64(len(data)-p))
		if err == nil && checksum(data[p+headerSize:p+headerSize+int(n)]) == binary.BigEndian.Uint32(data[p+12:p+16]) {
			return true
		}
	}
	return false
}

package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FileMeta is what a DICOM PS3.10 file says about itself in its file meta information
// (group 0002), which every application/dicom part of a WADO-RS answer starts with.
type FileMeta struct {
	// SOPClassUID is (0002,0002) MediaStorageSOPClassUID, "" when absent.
	SOPClassUID string
	// SOPInstanceUID is (0002,0003) MediaStorageSOPInstanceUID; never "" in a FileMeta
	// returned without error.
	SOPInstanceUID string
	// TransferSyntaxUID is (0002,0010), "" when absent.
	TransferSyntaxUID string
}

// MaxFileMetaBytes bounds the head of a file that ParseFileMeta and ReadFileMeta look at:
// the 128-byte preamble, "DICM" and the whole meta group must fit in it. Real meta groups
// are a few hundred bytes.
const MaxFileMetaBytes = 64 << 10

// ErrNotPart10 reports bytes that are not a PS3.10 file whose file meta information names
// its SOP instance: no "DICM" after the preamble, a malformed meta group, a meta group
// longer than MaxFileMetaBytes, or no MediaStorageSOPInstanceUID.
var ErrNotPart10 = errors.New("not a DICOM PS3.10 file")

// ErrShortFileMeta is returned by ParseFileMeta when its input ends before the meta group
// does: more of the file is needed to tell.
var ErrShortFileMeta = errors.New("file meta information continues past the bytes given")

// preambleLen is the preamble and the "DICM" prefix.
const preambleLen = 128 + 4

// ParseFileMeta reads the file meta information at the start of b, the first bytes of a
// PS3.10 file, and returns it with the offset in b where the data set starts. The meta group
// is read as PS3.10 §7.1 requires it to be written, in Explicit VR Little Endian; its end is
// the first element of another group, so b must reach at least two bytes past the group.
//
// It fails with ErrShortFileMeta (unwrapped) when b ends too early, and with an error
// wrapping ErrNotPart10 when b cannot be the start of a PS3.10 file. It never reads past
// MaxFileMetaBytes and never panics, whatever b holds.
func ParseFileMeta(b []byte) (FileMeta, int, error) {
	meta, end, _, err := parseFileMeta(b)
	return meta, end, err
}

// parseFileMeta is ParseFileMeta; when it fails with ErrShortFileMeta, need is a length of
// input that lets it get further, so a reader can wait for that many bytes before trying
// again instead of parsing again after every read.
func parseFileMeta(b []byte) (meta FileMeta, end, need int, err error) {
	if len(b) > MaxFileMetaBytes {
		b = b[:MaxFileMetaBytes]
	}
	if need, err := checkPreamble(b); err != nil {
		return fileMetaFailure(need, err)
	}
	i := preambleLen
	for {
		if len(b) < i+2 {
			return fileMetaFailure(i+2, ErrShortFileMeta)
		}
		if binary.LittleEndian.Uint16(b[i:]) != 0x0002 {
			break
		}
		element, value, next, need, err := readMetaElement(b, i)
		if err != nil {
			return fileMetaFailure(need, err)
		}
		switch element {
		case 0x0002:
			meta.SOPClassUID = trimUI(value)
		case 0x0003:
			meta.SOPInstanceUID = trimUI(value)
		case 0x0010:
			meta.TransferSyntaxUID = trimUI(value)
		}
		i = next
	}
	switch {
	case i == preambleLen:
		return FileMeta{}, 0, 0, fmt.Errorf("%w: the file meta information group is missing", ErrNotPart10)
	case meta.SOPInstanceUID == "":
		return FileMeta{}, 0, 0, fmt.Errorf("%w: the file meta information has no MediaStorageSOPInstanceUID", ErrNotPart10)
	}
	return meta, i, 0, nil
}

// fileMetaFailure is what parseFileMeta returns when one of its parts fails with err and
// need: those two as they are, except that ErrShortFileMeta with a need past
// MaxFileMetaBytes becomes an error wrapping ErrNotPart10, since no longer input would do.
func fileMetaFailure(need int, err error) (FileMeta, int, int, error) {
	if err == ErrShortFileMeta && need > MaxFileMetaBytes {
		return FileMeta{}, 0, 0, fmt.Errorf("%w: file meta information longer than %d bytes", ErrNotPart10, MaxFileMetaBytes)
	}
	return FileMeta{}, 0, need, err
}

// checkPreamble checks that b starts with the 128-byte preamble and "DICM". It fails with
// an error wrapping ErrNotPart10 as soon as the bytes after the preamble cannot start
// "DICM", and with ErrShortFileMeta and need = preambleLen when b is too short to tell.
func checkPreamble(b []byte) (need int, err error) {
	if n := min(len(b), preambleLen); n > 128 && !bytes.HasPrefix([]byte("DICM"), b[128:n]) {
		return 0, fmt.Errorf("%w: no \"DICM\" after the 128-byte preamble", ErrNotPart10)
	}
	if len(b) < preambleLen {
		return preambleLen, ErrShortFileMeta
	}
	return 0, nil
}

// readMetaElement reads the Explicit VR Little Endian element whose header starts at b[i],
// the caller having seen group 0002 there, and returns its element number, its value (a
// slice of b, not a copy) and the offset just past it. When b ends inside the element it
// fails with ErrShortFileMeta and need, the length b must reach to read it; an element
// without an explicit VR, or whose length is over MaxFileMetaBytes, fails with an error
// wrapping ErrNotPart10.
func readMetaElement(b []byte, i int) (element uint16, value []byte, next, need int, err error) {
	if len(b) < i+8 {
		return 0, nil, 0, i + 8, ErrShortFileMeta
	}
	element = binary.LittleEndian.Uint16(b[i+2:])
	vr := b[i+4 : i+6]
	if !isUpper(vr[0]) || !isUpper(vr[1]) {
		return 0, nil, 0, 0, fmt.Errorf("%w: element (0002,%04X) has no explicit VR", ErrNotPart10, element)
	}
	length, start := int(binary.LittleEndian.Uint16(b[i+6:])), i+8
	if longLengthVR(vr) {
		if len(b) < i+12 {
			return 0, nil, 0, i + 12, ErrShortFileMeta
		}
		l := binary.LittleEndian.Uint32(b[i+8:])
		if l > MaxFileMetaBytes {
			return 0, nil, 0, 0, fmt.Errorf("%w: element (0002,%04X) is longer than %d bytes", ErrNotPart10, element, MaxFileMetaBytes)
		}
		length, start = int(l), i+12
	}
	if len(b) < start+length {
		return 0, nil, 0, start + length, ErrShortFileMeta
	}
	return element, b[start : start+length], start + length, 0, nil
}

// ReadFileMeta reads the head of a PS3.10 file from r into buf, as far as the end of its
// file meta information and perhaps a little further, and returns the meta with the bytes
// it read (a prefix of buf). The caller must pass those bytes on before the rest of r:
// nothing is pushed back. At most len(buf) bytes are read, and a file whose meta group does
// not fit fails with ErrNotPart10; pass a buffer of MaxFileMetaBytes to accept every file
// ParseFileMeta can read.
//
// Errors reading r are returned wrapped, as they are; a file that ends inside its meta
// information fails with ErrNotPart10.
func ReadFileMeta(r io.Reader, buf []byte) (FileMeta, []byte, error) {
	if len(buf) > MaxFileMetaBytes {
		buf = buf[:MaxFileMetaBytes]
	}
	n, need := 0, preambleLen
	for {
		m, rerr := r.Read(buf[n:])
		n += m
		if n >= need || rerr != nil || n == len(buf) {
			meta, _, next, err := parseFileMeta(buf[:n])
			switch {
			case err == nil:
				return meta, buf[:n], nil
			case err != ErrShortFileMeta:
				return FileMeta{}, buf[:n], err
			}
			need = next
		}
		switch {
		case rerr == io.EOF:
			return FileMeta{}, buf[:n], fmt.Errorf("%w: the file ends inside its file meta information, after %d bytes", ErrNotPart10, n)
		case rerr != nil:
			return FileMeta{}, buf[:n], fmt.Errorf("read file meta information: %w", rerr)
		case need > len(buf):
			return FileMeta{}, buf[:n], fmt.Errorf("%w: file meta information longer than %d bytes", ErrNotPart10, len(buf))
		}
	}
}

// longLengthVR reports the VRs whose explicit-VR header has two reserved bytes and a 32-bit
// length (PS3.5 §7.1.2).
func longLengthVR(vr []byte) bool {
	switch string(vr) {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// trimUI removes the padding of a UI value: a trailing NUL, and the spaces some writers
// use instead.
func trimUI(v []byte) string {
	return string(bytes.TrimRight(v, "\x00 "))
}

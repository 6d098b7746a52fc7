package spool

import (
	"context"
	"hash/maphash"
	"math/bits"
)

// This file is the spool's key index: with Options.Keys set, each segment has a filter, in
// memory, of the keys of its records (for the audit, the patient each names), so that a
// report on one key (ScanKey: one patient's accesses) reads only the segments that may hold
// it instead of the whole retained record. The filters are built from the segments Open
// verifies and from the records the Spool writes; nothing of them is on disk, so there is no
// index to lose, damage or forge. A filter may answer "maybe" for a key a segment lacks (a
// segment read for nothing), never "no" for a key it holds.

// keyFilter is a Bloom filter of the keys written to one segment.
type keyFilter struct {
	bits []uint64
	mask uint64 // the number of bits less one (a power of two)
}

// keyFilterProbes is the number of bits a key sets (see filterBits).
const keyFilterProbes = 4

// Bounds of a filter's size in bits.
const (
	minFilterBits = 1 << 12
	maxFilterBits = 1 << 24
)

// filterBits is the size of each segment's filter for segments of segmentBytes: a bit for
// every 64 bytes, rounded up to a power of two, so all filters together take about
// MaxBytes/512 bytes of memory (20 MiB for a spool of 10 GiB). An audit record that names a
// patient takes about 500 bytes or more with its framing (the caller, organisation, purpose,
// study and trusts are in it), so a segment full of records each naming another patient has
// about 8 bits for each, and answers "maybe" for an absent patient about once in 40 or less.
func filterBits(segmentBytes int64) uint64 {
	n := uint64(max(segmentBytes/64, minFilterBits))
	n = min(uint64(1)<<bits.Len64(n-1), maxFilterBits)
	return n
}

func newKeyFilter(nbits uint64) *keyFilter {
	return &keyFilter{bits: make([]uint64, nbits/64), mask: nbits - 1}
}

// probes calls fn with each bit of key's hash h (double hashing).
func (f *keyFilter) probes(h uint64, fn func(bit uint64) bool) bool {
	step := h>>32 | h<<32 | 1
	for i := range uint64(keyFilterProbes) {
		if !fn((h + i*step) & f.mask) {
			return false
		}
	}
	return true
}

func (f *keyFilter) add(h uint64) {
	f.probes(h, func(b uint64) bool { f.bits[b/64] |= 1 << (b % 64); return true })
}

func (f *keyFilter) mayHold(h uint64) bool {
	return f.probes(h, func(b uint64) bool { return f.bits[b/64]&(1<<(b%64)) != 0 })
}

// keyHash is the hash of key the Spool's filters use.
func (s *Spool) keyHash(key []byte) uint64 { return maphash.Bytes(s.keySeed, key) }

// index adds the keys of payload, a record of the segment whose first record is first, to its
// filter; with mu held (or before the Spool is shared, in Open).
func (s *Spool) index(first uint64, payload []byte) {
	if s.opts.Keys == nil {
		return
	}
	f := s.filters[first]
	if f == nil {
		f = newKeyFilter(filterBits(s.opts.SegmentBytes))
		s.filters[first] = f
	}
	s.opts.Keys(payload, func(key []byte) { f.add(s.keyHash(key)) })
}

// indexer returns a visit function for Open's scan of dir, whose segments begin at firsts
// (oldest first), that indexes each record in the segment it is in.
func (s *Spool) indexer(firsts []uint64) func(Record) bool {
	i := 0
	return func(r Record) bool {
		for i+1 < len(firsts) && firsts[i+1] <= r.Seq {
			i++
		}
		s.index(firsts[i], r.Payload)
		return true
	}
}

// ScanKey is Scan from the first record kept, over only the segments whose records may
// include one with key among its keys (Options.Keys); fn is still called with every record of
// each segment read, and must check its records for the key itself. Without Options.Keys it
// reads every segment, as Scan does.
func (s *Spool) ScanKey(ctx context.Context, key []byte, fn func(Record) bool) error {
	if s.opts.Keys == nil {
		return s.scan(ctx, 1, nil, fn)
	}
	h := s.keyHash(key)
	return s.scan(ctx, 1, func(first uint64) bool {
		f := s.filters[first]
		return f != nil && f.mayHold(h) // no filter: no record of the segment was indexed
	}, fn)
}

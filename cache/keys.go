package cache

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// MinKeyerSecret is the shortest HMAC secret NewKeyer accepts, in bytes.
const MinKeyerSecret = 32

// Keyer turns normalised requests into opaque cache keys: prefix followed by the hex HMAC-SHA256
// of the parts under a secret. Without the secret nobody reading Redis can tell which NHS number,
// name or UID a key belongs to, nor test a guess. Callers normalise the request (sort query
// parameters, canonicalise case) before passing its parts.
//
// A Keyer is safe for concurrent use.
type Keyer struct {
	secret []byte
	prefix string
}

// NewKeyer returns a Keyer using secret (at least MinKeyerSecret bytes) and prefix (for example
// "nirproxy:v1:"; it is stored in clear, so it must not hold identifiers).
func NewKeyer(secret []byte, prefix string) (*Keyer, error) {
	if len(secret) < MinKeyerSecret {
		return nil, fmt.Errorf("create keyer: secret is %d bytes, want at least %d", len(secret), MinKeyerSecret)
	}
	if prefix == "" {
		return nil, errors.New("create keyer: empty prefix; set one such as \"nirproxy:v1:\"")
	}
	return &Keyer{secret: append([]byte(nil), secret...), prefix: prefix}, nil
}

// Key returns prefix + hex(HMAC) of parts. Parts are length-prefixed before hashing, so
// ("ab", "c") and ("a", "bc") give different keys.
func (k *Keyer) Key(parts ...string) string {
	return k.prefix + k.sum("entry", parts...)
}

// PatientIndexKey returns the key of the index listing a patient's cache entries (and the
// indexes of the patient's studies), used by purge. Spaces and dashes in nhsNumber are
// ignored, so "943 476 5919" and "9434765919" share an index. Its HMAC is domain-separated from
// Key, so no entry key can equal an index key.
func (k *Keyer) PatientIndexKey(nhsNumber string) string {
	n := strings.NewReplacer(" ", "", "-", "").Replace(strings.TrimSpace(nhsNumber))
	return k.prefix + patientIndex + k.sum("patient", n)
}

// StudyIndexKey returns the key of the index listing a study's cache entries (its metadata,
// rendered images and location), which the study's patients' indexes link to.
func (k *Keyer) StudyIndexKey(studyUID string) string {
	return k.prefix + studyIndex + k.sum("study", strings.TrimSpace(studyUID))
}

// IsIndexKey reports whether key names an index set rather than an entry.
func (k *Keyer) IsIndexKey(key string) bool { return k.indexKind(key) != "" }

// indexKind is "patient" or "study" for an index key, "" for anything else.
func (k *Keyer) indexKind(key string) string {
	rest, ok := strings.CutPrefix(key, k.prefix)
	switch {
	case !ok:
		return ""
	case strings.HasPrefix(rest, patientIndex):
		return "patient"
	case strings.HasPrefix(rest, studyIndex):
		return "study"
	}
	return ""
}

const (
	patientIndex = "patient:"
	studyIndex   = "study:"
)

func (k *Keyer) sum(domain string, parts ...string) string {
	m := hmac.New(sha256.New, k.secret)
	writePart(m, domain)
	for _, p := range parts {
		writePart(m, p)
	}
	return hex.EncodeToString(m.Sum(nil))
}

func writePart(h hash.Hash, p string) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
	h.Write([]byte(p))
}

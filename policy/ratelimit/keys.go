package ratelimit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// hashBytes is how much of an HMAC-SHA256 a key keeps: 128 bits, far beyond any collision the
// number of users or patients could cause, at half the memory of the whole sum.
const hashBytes = 16

// keyer names what the stores count: keys for users and organisations, members for patients,
// each an HMAC of the identifier under a secret, domain-separated so that no two kinds of
// identifier can share a hash.
type keyer struct {
	secret []byte
	prefix string
}

func newKeyer(secret []byte, prefix string) keyer {
	return keyer{secret: append([]byte(nil), secret...), prefix: prefix}
}

// hash is the hex of the first hashBytes of HMAC(domain, parts...), each part preceded by its
// length so that ("ab", "c") and ("a", "bc") differ.
func (k keyer) hash(domain string, parts ...string) string {
	m := hmac.New(sha256.New, k.secret)
	var buf []byte
	for _, p := range append([]string{domain}, parts...) {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(p)))
		buf = append(buf, p...)
	}
	m.Write(buf)
	return hex.EncodeToString(m.Sum(nil)[:hashBytes])
}

// userKeys are the keys of one user, which share a Redis Cluster hash tag.
type userKeys string

// user returns the keys of the user issuer and subject name.
func (k keyer) user(issuer, subject string) userKeys {
	return userKeys(k.prefix + "{u:" + k.hash("user", issuer, subject) + "}:")
}

// rate is the key of the user's request rate.
func (u userKeys) rate() string { return string(u) + "rate" }

// patients is the key of the user's window of distinct patients.
func (u userKeys) patients() string { return string(u) + "patients" }

// organisation is the key of the request rate of the organisation with ODS code ods.
func (k keyer) organisation(ods string) string {
	return k.prefix + "{o:" + k.hash("organisation", strings.ToUpper(strings.TrimSpace(ods))) + "}:rate"
}

// patient is the member standing for nhsNumber in a user's window. Spaces and dashes are
// ignored, so "943 476 5919" and "9434765919" are one patient.
func (k keyer) patient(nhsNumber string) string {
	return k.hash("patient", strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, strings.TrimSpace(nhsNumber)))
}

package cache

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// KeySize is the length in bytes of a Sealer key (AES-256).
const KeySize = 32

// ErrUnsealable reports a sealed value that cannot be opened: truncated, tampered with, bound to
// another cache key, or sealed under a key that is no longer configured. Callers treat it as a miss.
var ErrUnsealable = errors.New("cannot open sealed value")

// Sealer encrypts and authenticates cache values with AES-256-GCM, with key rotation: the first
// key seals, every key opens. A sealed value is laid out as
//
//	key id (1 byte) | nonce (12 bytes) | ciphertext and GCM tag
//
// where the key id is derived from the key itself (not its position in the list), so reordering,
// adding or retiring keys never makes a stored value open under the wrong key. Nonces are random;
// with 96-bit random nonces a key should seal well under 2^32 values before it is rotated.
//
// A Sealer is safe for concurrent use.
type Sealer struct {
	sealID byte
	aeads  map[byte]cipher.AEAD
}

// NewSealer returns a Sealer that seals with keys[0] and opens with any of keys. Each key must be
// KeySize bytes; two keys whose derived ids collide are refused (generate another key).
func NewSealer(keys [][]byte) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("create sealer: no key configured")
	}
	s := &Sealer{aeads: make(map[byte]cipher.AEAD, len(keys))}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("create sealer: key %d is %d bytes, want %d", i, len(k), KeySize)
		}
		id := keyID(k)
		if _, dup := s.aeads[id]; dup {
			return nil, fmt.Errorf("create sealer: key %d repeats an earlier key or collides with its id; generate another key", i)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("create sealer: key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("create sealer: key %d: %w", i, err)
		}
		s.aeads[id] = aead
		if i == 0 {
			s.sealID = id
		}
	}
	return s, nil
}

// keyID derives the one-byte id stored in front of each sealed value. It reveals nothing useful
// about the key (8 bits of a domain-separated hash).
func keyID(key []byte) byte {
	h := sha256.New()
	h.Write([]byte("nirproxy cache key id\x00"))
	h.Write(key)
	return h.Sum(nil)[0]
}

// Seal encrypts plaintext under the current key. binding (typically the cache key) is
// authenticated but not stored: Open succeeds only with the same binding, so a value copied under
// another cache key does not open.
func (s *Sealer) Seal(plaintext, binding []byte) ([]byte, error) {
	aead := s.aeads[s.sealID]
	ns := aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+aead.Overhead())
	out[0] = s.sealID
	if _, err := rand.Read(out[1 : 1+ns]); err != nil {
		return nil, fmt.Errorf("seal value: read nonce: %w", err)
	}
	return aead.Seal(out, out[1:1+ns], plaintext, additionalData(out[0], binding)), nil
}

// Open decrypts a value made by Seal (under any configured key) with the same binding. Any
// problem with the value is reported as an error wrapping ErrUnsealable, never a panic.
func (s *Sealer) Open(sealed, binding []byte) ([]byte, error) {
	if len(sealed) < 1 {
		return nil, fmt.Errorf("open value: empty: %w", ErrUnsealable)
	}
	aead, ok := s.aeads[sealed[0]]
	if !ok {
		return nil, fmt.Errorf("open value: sealed under unknown key id %d: %w", sealed[0], ErrUnsealable)
	}
	ns := aead.NonceSize()
	if len(sealed) < 1+ns+aead.Overhead() {
		return nil, fmt.Errorf("open value: %d bytes is too short: %w", len(sealed), ErrUnsealable)
	}
	plain, err := aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], additionalData(sealed[0], binding))
	if err != nil {
		return nil, fmt.Errorf("open value: authenticate: %w", errors.Join(ErrUnsealable, err))
	}
	return plain, nil
}

func additionalData(id byte, binding []byte) []byte {
	ad := make([]byte, 0, 1+len(binding))
	ad = append(ad, id)
	return append(ad, binding...)
}

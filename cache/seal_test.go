package cache

import (
	"bytes"
	"errors"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func TestNewSealerRejects(t *testing.T) {
	tests := []struct {
		name string
		keys [][]byte
	}{
		{name: "no key", keys: nil},
		{name: "short key", keys: [][]byte{make([]byte, 16)}},
		{name: "long key", keys: [][]byte{make([]byte, 33)}},
		{name: "repeated key", keys: [][]byte{testKey(1), testKey(1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewSealer(tc.keys); err == nil {
				t.Fatal("NewSealer succeeded; want an error")
			}
		})
	}
}

func TestSealer(t *testing.T) {
	plain := []byte(`{"00100010":{"vr":"PN","Value":[{"Alphabetic":"DEMO^ALICE"}]}}`)
	oldKey, newKey := testKey(1), testKey(2)
	old, err := NewSealer([][]byte{oldKey})
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := NewSealer([][]byte{newKey, oldKey})
	if err != nil {
		t.Fatal(err)
	}
	onlyNew, err := NewSealer([][]byte{newKey})
	if err != nil {
		t.Fatal(err)
	}
	sealedOld, err := old.Seal(plain, []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	sealedNew, err := rotated.Seal(plain, []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name    string
		sealer  *Sealer
		sealed  []byte
		binding string
		wantErr bool
	}{
		{name: "same key", sealer: old, sealed: sealedOld, binding: "k1"},
		{name: "rotated sealer opens old value", sealer: rotated, sealed: sealedOld, binding: "k1"},
		{name: "rotated sealer opens new value", sealer: rotated, sealed: sealedNew, binding: "k1"},
		{name: "old-only sealer cannot open new value", sealer: old, sealed: sealedNew, binding: "k1", wantErr: true},
		{name: "retired key", sealer: onlyNew, sealed: sealedOld, binding: "k1", wantErr: true},
		{name: "other binding", sealer: old, sealed: sealedOld, binding: "k2", wantErr: true},
		{name: "flipped ciphertext byte", sealer: old, sealed: flip(sealedOld, len(sealedOld)-20), binding: "k1", wantErr: true},
		{name: "flipped nonce byte", sealer: old, sealed: flip(sealedOld, 3), binding: "k1", wantErr: true},
		{name: "flipped key id", sealer: rotated, sealed: flip(sealedOld, 0), binding: "k1", wantErr: true},
		{name: "truncated", sealer: old, sealed: sealedOld[:20], binding: "k1", wantErr: true},
		{name: "key id only", sealer: old, sealed: sealedOld[:1], binding: "k1", wantErr: true},
		{name: "empty", sealer: old, sealed: nil, binding: "k1", wantErr: true},
		{name: "plaintext", sealer: old, sealed: plain, binding: "k1", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.sealer.Open(tc.sealed, []byte(tc.binding))
			if tc.wantErr {
				if !errors.Is(err, ErrUnsealable) {
					t.Fatalf("Open error = %v; want ErrUnsealable", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("Open = %q, %v; want the plaintext", got, err)
			}
		})
	}
	if sealedNew[0] != keyID(newKey) {
		t.Errorf("rotated sealer sealed with key id %d; want the new key's %d", sealedNew[0], keyID(newKey))
	}
	if bytes.Contains(sealedOld, []byte("DEMO^ALICE")) {
		t.Error("sealed value holds the name in clear")
	}
	again, _ := old.Seal(plain, []byte("k1"))
	if bytes.Equal(again, sealedOld) {
		t.Error("sealing twice gave the same bytes; nonces must differ")
	}
}

func FuzzSealerOpen(f *testing.F) {
	s, err := NewSealer([][]byte{testKey(1)})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := s.Seal([]byte("v"), nil)
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s.Open(b, nil) // Must not panic.
	})
}

package cache

import (
	"bytes"
	"strings"
	"testing"
)

func TestNewKeyerRejects(t *testing.T) {
	tests := []struct {
		name   string
		secret []byte
		prefix string
	}{
		{name: "short secret", secret: make([]byte, MinKeyerSecret-1), prefix: "p:"},
		{name: "empty prefix", secret: make([]byte, MinKeyerSecret), prefix: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewKeyer(tc.secret, tc.prefix); err == nil {
				t.Fatal("NewKeyer succeeded; want an error")
			}
		})
	}
}

func TestKeyer(t *testing.T) {
	k, _ := NewKeyer(bytes.Repeat([]byte{7}, 32), "np:")
	other, _ := NewKeyer(bytes.Repeat([]byte{8}, 32), "np:")
	tests := []struct {
		name     string
		a, b     string
		wantSame bool
	}{
		{name: "deterministic", a: k.Key("qido", "PatientID=9434765919"), b: k.Key("qido", "PatientID=9434765919"), wantSame: true},
		{name: "part boundaries matter", a: k.Key("ab", "c"), b: k.Key("a", "bc")},
		{name: "no parts differs from one empty part", a: k.Key(), b: k.Key("")},
		{name: "secret matters", a: k.Key("qido", "x"), b: other.Key("qido", "x")},
		{name: "index ignores spaces and dashes", a: k.PatientIndexKey("943 476 5919"), b: k.PatientIndexKey("943-476-5919"), wantSame: true},
		{name: "index differs from entry key", a: k.PatientIndexKey("9434765919"), b: k.Key("9434765919")},
		{name: "index differs per patient", a: k.PatientIndexKey("9434765919"), b: k.PatientIndexKey("9434765920")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.a == tc.b) != tc.wantSame {
				t.Fatalf("keys %q and %q: same = %v, want %v", tc.a, tc.b, tc.a == tc.b, tc.wantSame)
			}
			for _, key := range []string{tc.a, tc.b} {
				if !strings.HasPrefix(key, "np:") || strings.Contains(key, "9434765919") {
					t.Fatalf("key %q lacks the prefix or shows the NHS number", key)
				}
			}
		})
	}
}

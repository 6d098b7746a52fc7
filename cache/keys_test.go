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

func TestIndexKeys(t *testing.T) {
	k, _ := NewKeyer(bytes.Repeat([]byte{7}, 32), "np:")
	// hmacOf is the part of a key after its prefix and index kind.
	hmacOf := func(key string) string {
		rest := strings.TrimPrefix(key, "np:")
		for _, kind := range []string{patientIndex, studyIndex} {
			rest = strings.TrimPrefix(rest, kind)
		}
		return rest
	}
	const uid = "1.2.826.0.1.3680043.8.498.1"
	tests := []struct {
		name     string
		a, b     string
		wantSame bool
	}{
		{name: "study index differs from entry key of the UID", a: k.StudyIndexKey(uid), b: k.Key(uid)},
		{name: "study index differs from entry key with the study domain", a: k.StudyIndexKey(uid), b: k.Key("study", uid)},
		{name: "patient index differs from entry key with the patient domain", a: k.PatientIndexKey(testNHS), b: k.Key("patient", testNHS)},
		{name: "patient and study indexes of the same text differ", a: k.PatientIndexKey(testNHS), b: k.StudyIndexKey(testNHS)},
		{name: "study index deterministic", a: k.StudyIndexKey(uid), b: k.StudyIndexKey(uid), wantSame: true},
		{name: "study index ignores surrounding spaces", a: k.StudyIndexKey(" " + uid + "\t"), b: k.StudyIndexKey(uid), wantSame: true},
		{name: "study index differs per study", a: k.StudyIndexKey(uid), b: k.StudyIndexKey(uid + "1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The HMACs themselves must differ, not only the clear kind before them.
			if (hmacOf(tc.a) == hmacOf(tc.b)) != tc.wantSame {
				t.Fatalf("keys %q and %q: same HMAC = %v, want %v", tc.a, tc.b, !tc.wantSame, tc.wantSame)
			}
			for _, key := range []string{tc.a, tc.b} {
				if strings.Contains(key, testNHS) || strings.Contains(key, uid) {
					t.Fatalf("key %q shows the identifier in clear", key)
				}
			}
		})
	}
}

func TestIsIndexKey(t *testing.T) {
	k, _ := NewKeyer(bytes.Repeat([]byte{7}, 32), "np:")
	other, _ := NewKeyer(bytes.Repeat([]byte{7}, 32), "other:")
	tests := []struct {
		name string
		key  string
		want bool
	}{
		{name: "patient index", key: k.PatientIndexKey(testNHS), want: true},
		{name: "study index", key: k.StudyIndexKey("1.2.3"), want: true},
		{name: "entry key", key: k.Key("search", "PatientID="+testNHS)},
		{name: "entry key of an index kind's name", key: k.Key("patient:", testNHS)},
		{name: "entry key without parts", key: k.Key()},
		{name: "patient index under another prefix", key: other.PatientIndexKey(testNHS)},
		{name: "study index under another prefix", key: other.StudyIndexKey("1.2.3")},
		{name: "index kind without the prefix", key: "patient:" + strings.TrimPrefix(k.PatientIndexKey(testNHS), "np:patient:")},
		{name: "empty", key: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := k.IsIndexKey(tc.key); got != tc.want {
				t.Fatalf("IsIndexKey(%q) = %v; want %v", tc.key, got, tc.want)
			}
		})
	}
}

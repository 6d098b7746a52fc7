package ratelimit

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestMemoryBounded checks that the in-process store never holds more than its bound: expired
// counts go first, then the one nearest expiry.
func TestMemoryBounded(t *testing.T) {
	clock := &fakeClock{now: start}
	m, err := NewMemory(2, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	slow := Rate{Requests: 1, Period: time.Hour, Burst: 1}
	fast := Rate{Requests: 1, Period: time.Minute, Burst: 1}
	m.Take(ctx, "slow", slow)
	m.Take(ctx, "fast", fast)
	m.Take(ctx, "third", slow) // full of live counts: "fast", nearest expiry, goes
	if _, ok := m.rates.entries["fast"]; ok || len(m.rates.entries) != 2 {
		t.Fatalf("rates = %v; want slow and third, fast evicted", m.rates.entries)
	}
	if d, _ := m.Take(ctx, "slow", slow); d.Allowed {
		t.Fatal("slow admitted again at once: its count was lost")
	}
	clock.advance(time.Hour)
	m.Take(ctx, "fourth", fast) // both others have expired
	if len(m.rates.entries) != 1 {
		t.Fatalf("rates = %v; want only fourth: expired counts dropped", m.rates.entries)
	}

	window := PatientLimit{Patients: 2, Window: time.Minute}
	for _, user := range []string{"u1", "u2", "u3"} {
		m.SeePatient(ctx, user, "p", window)
		clock.advance(time.Second)
	}
	if _, ok := m.windows.entries["u1"]; ok || len(m.windows.entries) != 2 {
		t.Fatalf("windows = %v; want u2 and u3, u1 evicted", m.windows.entries)
	}
	m.SeePatient(ctx, "u2", "q", window)
	if d, _ := m.SeePatient(ctx, "u2", "r", window); d.Allowed || d.RetryAfter != time.Minute-2*time.Second {
		t.Fatalf("u2's third patient = %+v; want refused, retry after 58s", d)
	}
	if n := len(m.windows.entries["u2"].seen); n != 2 {
		t.Fatalf("u2's window holds %d patients; want 2: a refused one is not kept", n)
	}
}

// TestNewMemoryRefusesBadArguments checks NewMemory's arguments.
func TestNewMemoryRefusesBadArguments(t *testing.T) {
	if _, err := NewMemory(0, time.Now); err == nil {
		t.Error("NewMemory(0, ...) succeeded")
	}
	if _, err := NewMemory(1, nil); err == nil {
		t.Error("NewMemory without a clock succeeded")
	}
}

// TestKeys checks how identifiers become keys: hashed, domain-separated, length-prefixed,
// dependent on the secret, and NHS numbers compared without spaces or dashes.
func TestKeys(t *testing.T) {
	k := newKeyer(bytes.Repeat([]byte{1}, MinKeySecret), "p:")
	other := newKeyer(bytes.Repeat([]byte{2}, MinKeySecret), "p:")
	distinct := []struct {
		name string
		a, b string
	}{
		{"issuer and subject boundaries", k.user("ab", "c").rate(), k.user("a", "bc").rate()},
		{"issuers", k.user("https://a", alice).rate(), k.user("https://b", alice).rate()},
		{"user rate and patients", k.user(issuer, alice).rate(), k.user(issuer, alice).patients()},
		{"organisation and user", k.organisation(orgA), k.user("", orgA).rate()},
		{"patients", k.patient("9434765919"), k.patient("9434765920")},
		{"secrets", k.patient(nhsNumber), other.patient(nhsNumber)},
	}
	for _, tt := range distinct {
		if tt.a == tt.b {
			t.Errorf("%s: both %q; want different keys", tt.name, tt.a)
		}
	}
	same := []struct {
		name string
		a, b string
	}{
		{"spaced NHS number", k.patient("943 476 5919"), k.patient(nhsNumber)},
		{"dashed NHS number", k.patient("943-476-5919 "), k.patient(nhsNumber)},
		{"ODS code case", k.organisation("rx1ab"), k.organisation(orgA)},
	}
	for _, tt := range same {
		if tt.a != tt.b {
			t.Errorf("%s: %q and %q; want one key", tt.name, tt.a, tt.b)
		}
	}
	u := k.user(issuer, alice)
	if tag := strings.TrimSuffix(u.rate(), "rate"); !strings.HasPrefix(u.patients(), tag) || !strings.HasSuffix(tag, "}:") {
		t.Errorf("user keys %q and %q do not share the hash tag %q", u.rate(), u.patients(), tag)
	}
	if got := len(k.patient(nhsNumber)); got != 2*hashBytes {
		t.Errorf("patient member is %d characters; want %d", got, 2*hashBytes)
	}
}

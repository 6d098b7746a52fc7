package cache

import (
	"context"
	"testing"
	"time"
)

func TestMemory(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	tests := []struct {
		name string
		run  func(t *testing.T, m *Memory)
	}{
		{name: "hit before expiry, miss after", run: func(t *testing.T, m *Memory) {
			m.Set(ctx, "k", []byte("v"), time.Minute)
			if v, ok, _ := m.Get(ctx, "k"); !ok || string(v) != "v" {
				t.Fatalf("Get = %q, %v; want v, true", v, ok)
			}
			now = now.Add(time.Minute)
			if _, ok, _ := m.Get(ctx, "k"); ok {
				t.Fatal("entry outlived its TTL")
			}
		}},
		{name: "least recently used evicted first", run: func(t *testing.T, m *Memory) {
			// Each entry is 1+100+64 bytes; the cache holds two.
			val := make([]byte, 100)
			m.Set(ctx, "a", val, time.Hour)
			m.Set(ctx, "b", val, time.Hour)
			m.Get(ctx, "a")
			m.Set(ctx, "c", val, time.Hour)
			if _, ok, _ := m.Get(ctx, "b"); ok {
				t.Fatal("b should have been evicted")
			}
			for _, k := range []string{"a", "c"} {
				if _, ok, _ := m.Get(ctx, k); !ok {
					t.Fatalf("%s evicted; want kept", k)
				}
			}
		}},
		{name: "delete", run: func(t *testing.T, m *Memory) {
			m.Set(ctx, "k", []byte("v"), time.Hour)
			m.Delete(ctx, "k")
			if _, ok, _ := m.Get(ctx, "k"); ok {
				t.Fatal("deleted key still present")
			}
			if m.used != 0 {
				t.Fatalf("used = %d after delete, want 0", m.used)
			}
		}},
		{name: "oversized value not stored", run: func(t *testing.T, m *Memory) {
			m.Set(ctx, "big", make([]byte, 1000), time.Hour)
			if _, ok, _ := m.Get(ctx, "big"); ok {
				t.Fatal("value larger than the cache was stored")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, NewMemory(2*(1+100+64), clock))
		})
	}
}

package cache

import (
	"context"
	"fmt"
	"slices"
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

func TestMemoryIndex(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, m *Memory, clock *testClock)
	}{
		{name: "members added per index", run: func(t *testing.T, m *Memory, _ *testClock) {
			err := m.Index(ctx, []Link{{Index: "i", Member: "a"}, {Index: "j", Member: "c"}, {Index: "i", Member: "b"}}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			wantMembers(t, m, "i", "a", "b")
			wantMembers(t, m, "j", "c")
		}},
		{name: "duplicate members kept once", run: func(t *testing.T, m *Memory, _ *testClock) {
			m.Index(ctx, []Link{{Index: "i", Member: "a"}, {Index: "i", Member: "a"}}, time.Minute)
			used := m.used
			m.Index(ctx, []Link{{Index: "i", Member: "a"}}, time.Minute)
			wantMembers(t, m, "i", "a")
			if m.used != used {
				t.Fatalf("used = %d after re-adding a member; want %d", m.used, used)
			}
		}},
		{name: "index expires after its ttl", run: func(t *testing.T, m *Memory, clock *testClock) {
			m.Index(ctx, []Link{{Index: "i", Member: "a"}}, time.Minute)
			clock.Advance(time.Minute - time.Millisecond)
			wantMembers(t, m, "i", "a")
			clock.Advance(time.Millisecond)
			wantMembers(t, m, "i")
			if held(m) != 0 || m.used != 0 {
				t.Fatalf("held, used = %d, %d after expiry; want 0, 0", held(m), m.used)
			}
		}},
		{name: "adding to an index extends its ttl", run: func(t *testing.T, m *Memory, clock *testClock) {
			m.Index(ctx, []Link{{Index: "i", Member: "a"}}, time.Minute)
			clock.Advance(50 * time.Second)
			m.Index(ctx, []Link{{Index: "i", Member: "b"}}, time.Minute)
			clock.Advance(59 * time.Second)
			wantMembers(t, m, "i", "a", "b")
			clock.Advance(time.Second)
			wantMembers(t, m, "i")
		}},
		{name: "zero ttl indexes nothing", run: func(t *testing.T, m *Memory, _ *testClock) {
			m.Index(ctx, []Link{{Index: "i", Member: "a"}}, 0)
			wantMembers(t, m, "i")
			if held(m) != 0 {
				t.Fatalf("held = %d; want 0", held(m))
			}
		}},
		{name: "members of a missing index is empty", run: func(t *testing.T, m *Memory, _ *testClock) {
			wantMembers(t, m, "absent")
		}},
		{name: "members of an entry is empty", run: func(t *testing.T, m *Memory, _ *testClock) {
			m.Set(ctx, "k", []byte("v"), time.Minute)
			wantMembers(t, m, "k")
		}},
		{name: "get of an index key is a miss", run: func(t *testing.T, m *Memory, _ *testClock) {
			m.Index(ctx, []Link{{Index: "i", Member: "a"}}, time.Minute)
			if v, ok, err := m.Get(ctx, "i"); ok || v != nil || err != nil {
				t.Fatalf("Get(index) = %q, %v, %v; want nil, false, nil", v, ok, err)
			}
		}},
		{name: "an entry under an index's name is not made an index", run: func(t *testing.T, m *Memory, _ *testClock) {
			m.Set(ctx, "k", []byte("v"), time.Minute)
			m.Index(ctx, []Link{{Index: "k", Member: "a"}}, time.Minute)
			if v, ok, _ := m.Get(ctx, "k"); !ok || string(v) != "v" {
				t.Fatalf("Get = %q, %v; want the entry v unchanged", v, ok)
			}
			wantMembers(t, m, "k")
		}},
		{name: "deleting an index drops its members", run: func(t *testing.T, m *Memory, _ *testClock) {
			m.Index(ctx, []Link{{Index: "i", Member: "a"}}, time.Minute)
			m.Delete(ctx, "i")
			wantMembers(t, m, "i")
			if m.used != 0 {
				t.Fatalf("used = %d after deleting the only index; want 0", m.used)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newTestClock()
			tc.run(t, NewMemory(1<<20, clock.Now), clock)
		})
	}
}

// wantMembers fails the test unless index lists exactly want, in any order.
func wantMembers(t *testing.T, m *Memory, index string, want ...string) {
	t.Helper()
	got, err := m.Members(context.Background(), index)
	if err != nil {
		t.Fatalf("Members(%s): %v", index, err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Members(%s) = %q; want %q", index, got, want)
	}
}

// held reports how many entries and index sets m holds.
func held(m *Memory) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

// checkAccounting fails the test unless used is the sum of what is held and within the bound.
func checkAccounting(t *testing.T, m *Memory) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum int64
	for key, el := range m.items {
		e := el.Value.(*memEntry)
		size := entrySize(key, e.value)
		for member := range e.members {
			size += int64(len(member) + 16)
		}
		if e.size != size {
			t.Fatalf("entry %s accounts %d bytes; it holds %d", key, e.size, size)
		}
		sum += size
	}
	if m.used != sum {
		t.Fatalf("used = %d; entries and indexes add up to %d", m.used, sum)
	}
	if m.order.Len() != len(m.items) {
		t.Fatalf("LRU list has %d elements for %d keys", m.order.Len(), len(m.items))
	}
	if m.used > m.maxBytes {
		t.Fatalf("used = %d; above the %d byte bound", m.used, m.maxBytes)
	}
}

func TestMemoryBounded(t *testing.T) {
	ctx := context.Background()
	const maxBytes = 4096
	tests := []struct {
		name string
		run  func(t *testing.T, m *Memory)
	}{
		{name: "entries and indexes stay within the bound", run: func(t *testing.T, m *Memory) {
			val := make([]byte, 50)
			for i := range 2000 {
				key := fmt.Sprintf("entry-%04d", i)
				m.Index(ctx, []Link{{Index: fmt.Sprintf("index-%d", i%7), Member: key}}, time.Hour)
				m.Set(ctx, key, val, time.Hour)
				checkAccounting(t, m)
			}
			// Each entry takes at least 10+50+64 bytes.
			if n := held(m); n == 0 || n > maxBytes/(10+50+64)+7 {
				t.Fatalf("held = %d after filling; want some, and no more than fit", n)
			}
		}},
		{name: "an index being added to is not evicted by its own growth", run: func(t *testing.T, m *Memory) {
			// 23 entries of 8+100+64 bytes and the new index (5+64+22) nearly fill 4096 bytes.
			val := make([]byte, 100)
			var entries []string
			for i := range 23 {
				key := fmt.Sprintf("entry-%02d", i)
				m.Set(ctx, key, val, time.Hour)
				entries = append(entries, key)
			}
			m.Index(ctx, []Link{{Index: "index", Member: "m-0000"}}, time.Hour)
			var members []string
			// The cache is full: each member makes room by evicting entries, oldest first,
			// until the index (5+64 bytes and 22 per member) holds nearly all of it.
			for i := range 170 {
				member := fmt.Sprintf("m-%04d", i)
				members = append(members, member)
				m.Index(ctx, []Link{{Index: "index", Member: member}}, time.Hour)
				checkAccounting(t, m)
			}
			wantMembers(t, m, "index", members...)
			if _, ok, _ := m.Get(ctx, entries[0]); ok {
				t.Fatal("oldest entry kept; the index grew without making room")
			}
			if _, ok, _ := m.Get(ctx, entries[len(entries)-1]); !ok {
				t.Fatal("newest entry evicted; the index should take only the room it needs")
			}
		}},
		{name: "one index cannot outgrow the bound", run: func(t *testing.T, m *Memory) {
			// A study index that keeps being added to (each rendered frame, each search)
			// must not take more than the whole cache once nothing else is left to evict.
			for i := range 500 {
				m.Index(ctx, []Link{{Index: "study-index", Member: fmt.Sprintf("np:v1:%064d", i)}}, time.Hour)
			}
			checkAccounting(t, m)
		}},
		{name: "an index larger than the cache is not stored", run: func(t *testing.T, m *Memory) {
			m.Index(ctx, []Link{{Index: string(make([]byte, maxBytes)), Member: "a"}}, time.Hour)
			if held(m) != 0 {
				t.Fatalf("held = %d; want 0", held(m))
			}
			checkAccounting(t, m)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, NewMemory(maxBytes, newTestClock().Now))
		})
	}
}

func TestMemoryDelete(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		del      []string
		wantKept []string
	}{
		{name: "several keys", del: []string{"a", "c"}, wantKept: []string{"b", "i"}},
		{name: "absent keys ignored", del: []string{"a", "absent", "c", "absent"}, wantKept: []string{"b", "i"}},
		{name: "no keys", del: nil, wantKept: []string{"a", "b", "c", "i"}},
		{name: "entries and an index together", del: []string{"a", "b", "c", "i"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemory(1<<20, newTestClock().Now)
			for _, k := range []string{"a", "b", "c"} {
				m.Set(ctx, k, []byte("value of "+k), time.Hour)
			}
			m.Index(ctx, []Link{{Index: "i", Member: "a"}}, time.Hour)
			if err := m.Delete(ctx, tc.del...); err != nil {
				t.Fatal(err)
			}
			var kept []string
			for _, k := range []string{"a", "b", "c", "i"} {
				if _, ok := m.items[k]; ok {
					kept = append(kept, k)
				}
			}
			if !slices.Equal(kept, tc.wantKept) {
				t.Fatalf("kept %q; want %q", kept, tc.wantKept)
			}
			if held(m) != len(tc.wantKept) {
				t.Fatalf("held = %d; want %d", held(m), len(tc.wantKept))
			}
			checkAccounting(t, m)
		})
	}
}

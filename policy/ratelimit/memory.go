package ratelimit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Memory is a Store in process: the counts of one replica. It is bounded: at most maxKeys rate
// keys and maxKeys patient windows, dropping expired counts first and then the one nearest expiry
// when full. Its methods never fail. It is safe for concurrent use.
type Memory struct {
	clock func() time.Time

	mu sync.Mutex
	// rates holds each key's GCRA theoretical arrival time: the key is back to its full burst
	// once that time has passed.
	rates bounded[time.Time]
	// windows holds each user's patients.
	windows bounded[*window]
}

// window is the patients one user requested recently, each with when they last did.
type window struct {
	seen map[string]time.Time
	// until is when every patient in seen has left the window.
	until time.Time
}

// NewMemory returns an empty Memory holding at most maxKeys keys of each kind, telling the time
// with clock.
func NewMemory(maxKeys int, clock func() time.Time) (*Memory, error) {
	if maxKeys < 1 || clock == nil {
		return nil, errors.New("create in-process rate limit store: maxKeys must be at least 1 and clock set")
	}
	return &Memory{
		clock:   clock,
		rates:   newBounded(maxKeys, func(tat time.Time) time.Time { return tat }),
		windows: newBounded(maxKeys, func(w *window) time.Time { return w.until }),
	}, nil
}

// Take implements Store with GCRA, as the Redis store's script does.
func (m *Memory) Take(_ context.Context, key string, r Rate) (Decision, error) {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	interval := r.Period / time.Duration(r.Requests)
	tat, ok := m.rates.get(key, now)
	if !ok || tat.Before(now) {
		tat = now
	}
	next := tat.Add(interval)
	allowAt := next.Add(-interval * time.Duration(r.Burst))
	if now.Before(allowAt) {
		return Decision{RetryAfter: allowAt.Sub(now)}, nil
	}
	m.rates.put(key, next, now)
	return Decision{Allowed: true}, nil
}

// SeePatient implements Store with a sliding window, as the Redis store's script does.
func (m *Memory) SeePatient(_ context.Context, key, patient string, p PatientLimit) (Decision, error) {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.windows.get(key, now)
	if !ok {
		w = &window{seen: make(map[string]time.Time)}
	}
	var oldest time.Time
	for id, at := range w.seen {
		switch {
		case !now.Before(at.Add(p.Window)):
			delete(w.seen, id)
		case oldest.IsZero() || at.Before(oldest):
			oldest = at
		}
	}
	if _, counted := w.seen[patient]; !counted && len(w.seen) >= p.Patients {
		return Decision{RetryAfter: oldest.Add(p.Window).Sub(now)}, nil
	}
	w.seen[patient] = now
	w.until = now.Add(p.Window)
	m.windows.put(key, w, now)
	return Decision{Allowed: true}, nil
}

// bounded is a map of at most capacity entries, each of which expires at the time until tells.
type bounded[V any] struct {
	capacity int
	entries  map[string]V
	until    func(V) time.Time
}

func newBounded[V any](capacity int, until func(V) time.Time) bounded[V] {
	return bounded[V]{capacity: capacity, entries: make(map[string]V), until: until}
}

// get returns key's entry unless it has expired at now.
func (b *bounded[V]) get(key string, now time.Time) (V, bool) {
	v, ok := b.entries[key]
	if ok && !now.Before(b.until(v)) {
		delete(b.entries, key)
		var zero V
		return zero, false
	}
	return v, ok
}

// put stores v at key, making room first when key is new and the map is full.
func (b *bounded[V]) put(key string, v V, now time.Time) {
	if _, ok := b.entries[key]; !ok && len(b.entries) >= b.capacity {
		b.makeRoom(now)
	}
	b.entries[key] = v
}

// makeRoom drops every expired entry, and when none has expired, the one nearest expiry. It
// walks the whole map: a cost paid only when the map is full.
func (b *bounded[V]) makeRoom(now time.Time) {
	var nearest string
	var nearestUntil time.Time
	for k, v := range b.entries {
		u := b.until(v)
		switch {
		case !now.Before(u):
			delete(b.entries, k)
		case nearest == "" || u.Before(nearestUntil):
			nearest, nearestUntil = k, u
		}
	}
	if len(b.entries) >= b.capacity {
		delete(b.entries, nearest)
	}
}

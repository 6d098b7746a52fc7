// Package cache keeps short-lived copies of upstream answers and locator entries, keyed by
// opaque strings. It knows nothing of DICOM.
//
// Errors from a cache never fail a request: callers treat them as misses.
package cache

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// Cache stores opaque values under opaque keys, each for at most its TTL.
type Cache interface {
	// Get returns the value stored under key and true, or false when there is none or it expired.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores value under key for ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key; removing an absent key is not an error.
	Delete(ctx context.Context, key string) error
}

// Memory is an in-process Cache bounded in bytes, evicting the least recently used entry first.
// It is safe for concurrent use.
type Memory struct {
	mu       sync.Mutex
	maxBytes int64
	used     int64
	order    *list.List // front = most recently used
	items    map[string]*list.Element
	now      func() time.Time
}

type memEntry struct {
	key     string
	value   []byte
	expires time.Time
}

// NewMemory returns an in-process cache holding at most maxBytes of keys and values.
// now is the clock (time.Now when nil).
func NewMemory(maxBytes int64, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{maxBytes: maxBytes, order: list.New(), items: make(map[string]*list.Element), now: now}
}

func entrySize(key string, value []byte) int64 { return int64(len(key) + len(value) + 64) }

// Get implements Cache.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if !ok {
		return nil, false, nil
	}
	e := el.Value.(*memEntry)
	if !m.now().Before(e.expires) {
		m.remove(el)
		return nil, false, nil
	}
	m.order.MoveToFront(el)
	return e.value, true, nil
}

// Set implements Cache. A value larger than the whole cache is not stored.
func (m *Memory) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	size := entrySize(key, value)
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[key]; ok {
		m.remove(el)
	}
	if size > m.maxBytes || ttl <= 0 {
		return nil
	}
	for m.used+size > m.maxBytes {
		m.remove(m.order.Back())
	}
	v := append([]byte(nil), value...)
	m.items[key] = m.order.PushFront(&memEntry{key: key, value: v, expires: m.now().Add(ttl)})
	m.used += size
	return nil
}

// Delete implements Cache.
func (m *Memory) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[key]; ok {
		m.remove(el)
	}
	return nil
}

func (m *Memory) remove(el *list.Element) {
	e := el.Value.(*memEntry)
	m.order.Remove(el)
	delete(m.items, e.key)
	m.used -= entrySize(e.key, e.value)
}

// Package cache keeps short-lived copies of upstream answers and locator entries, keyed by
// opaque strings. It knows nothing of DICOM.
//
// Two backends implement [Cache]: [Memory], a bounded in-process LRU (the default, and what the
// demo uses), and [Redis], shared by every replica, whose values are sealed with AES-GCM
// ([Sealer]) and whose keys are HMACs ([Keyer]). [Store] sits on either and adds what callers
// need: a fresh period and a stale window per entry, a retention cap, the patient and study
// indexes that purge walks, and metrics. [Flight] coalesces concurrent identical misses.
//
// Errors from a cache never fail a request: callers treat them as misses.
package cache

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// Cache stores opaque values under opaque keys, each for at most its TTL, and index sets that
// list which keys belong to whom (a patient, a study) so they can be purged together.
type Cache interface {
	// Get returns the value stored under key and true, or false when there is none or it expired.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores value under key for ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes keys; removing an absent key is not an error.
	Delete(ctx context.Context, keys ...string) error
	// Index adds each link's member to the index set named by its Index, and keeps every index
	// it touches for ttl from now.
	Index(ctx context.Context, links []Link, ttl time.Duration) error
	// Members lists the members of the index set at indexKey (none when it does not exist).
	Members(ctx context.Context, indexKey string) ([]string, error)
}

// Link says that Member (an entry key or another index key) belongs to the index set Index.
type Link struct {
	Index, Member string
}

// ErrIndexFull reports an index set that cannot grow within the in-process cache's bound.
var ErrIndexFull = errors.New("in-process cache is too small for this index; raise cache.memoryMaxBytes")

// Memory is an in-process Cache bounded in bytes, evicting the least recently used entry first.
// Index sets count against the same bound. It is safe for concurrent use.
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
	members map[string]struct{} // non-nil for an index set
	size    int64
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

// entryOverhead approximates the bookkeeping of one entry (list element, map slot, header).
const entryOverhead = 64

func entrySize(key string, value []byte) int64 { return int64(len(key) + len(value) + entryOverhead) }

// Get implements Cache. The value returned is the cache's own copy: callers must not modify it.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.live(key)
	if e == nil || e.members != nil {
		return nil, false, nil
	}
	m.order.MoveToFront(m.items[key])
	return e.value, true, nil
}

// live returns the unexpired entry under key, removing an expired one.
func (m *Memory) live(key string) *memEntry {
	el, ok := m.items[key]
	if !ok {
		return nil
	}
	e := el.Value.(*memEntry)
	if !m.now().Before(e.expires) {
		m.remove(el)
		return nil
	}
	return e
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
	m.makeRoom(size)
	v := append([]byte(nil), value...)
	m.items[key] = m.order.PushFront(&memEntry{key: key, value: v, size: size, expires: m.now().Add(ttl)})
	m.used += size
	return nil
}

func (m *Memory) makeRoom(size int64) {
	for m.used+size > m.maxBytes && m.order.Len() > 0 {
		m.remove(m.order.Back())
	}
}

// Delete implements Cache.
func (m *Memory) Delete(_ context.Context, keys ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, key := range keys {
		if el, ok := m.items[key]; ok {
			m.remove(el)
		}
	}
	return nil
}

// Index implements Cache. An index evicted for room loses its members; the entries it listed
// are still bounded by their own TTLs.
func (m *Memory) Index(_ context.Context, links []Link, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	expires := m.now().Add(ttl)
	for _, l := range links {
		e := m.live(l.Index)
		if e != nil && e.members == nil {
			// An entry under an index's name: indexes are domain-separated, so this is a bug.
			continue
		}
		if e == nil {
			size := entrySize(l.Index, nil)
			if size > m.maxBytes {
				return nil
			}
			m.makeRoom(size)
			e = &memEntry{key: l.Index, members: map[string]struct{}{}, size: size}
			m.items[l.Index] = m.order.PushFront(e)
			m.used += size
		} else {
			m.order.MoveToFront(m.items[l.Index])
		}
		e.expires = expires
		if _, ok := e.members[l.Member]; ok {
			continue
		}
		grow := int64(len(l.Member) + 16)
		m.makeRoomKeeping(grow, l.Index)
		if m.used+grow > m.maxBytes {
			// The index alone fills the cache: refuse, so the caller does not store an entry
			// that purge could not find.
			return ErrIndexFull
		}
		e.members[l.Member] = struct{}{}
		e.size += grow
		m.used += grow
	}
	return nil
}

// makeRoomKeeping is makeRoom that never evicts keep.
func (m *Memory) makeRoomKeeping(size int64, keep string) {
	for el := m.order.Back(); m.used+size > m.maxBytes && el != nil; {
		prev := el.Prev()
		if el.Value.(*memEntry).key != keep {
			m.remove(el)
		}
		el = prev
	}
}

// Members implements Cache.
func (m *Memory) Members(_ context.Context, indexKey string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.live(indexKey)
	if e == nil || e.members == nil {
		return nil, nil
	}
	out := make([]string, 0, len(e.members))
	for k := range e.members {
		out = append(out, k)
	}
	return out, nil
}

func (m *Memory) remove(el *list.Element) {
	e := el.Value.(*memEntry)
	m.order.Remove(el)
	delete(m.items, e.key)
	m.used -= e.size
}

package authn

import (
	"crypto/sha256"
	"sync"
	"time"
)

// tokenHash identifies a token in the caches without keeping the token itself.
type tokenHash [sha256.Size]byte

// hashToken returns the SHA-256 of a token.
func hashToken(token string) tokenHash { return sha256.Sum256([]byte(token)) }

// ttlCache holds values by token hash until a per-entry deadline, with at most limit entries.
// When full it drops expired entries, then an arbitrary one: losing an entry costs one
// verification, never a wrong answer. It is safe for concurrent use.
type ttlCache[V any] struct {
	mu      sync.Mutex
	limit   int
	entries map[tokenHash]ttlEntry[V]
}

type ttlEntry[V any] struct {
	value V
	until time.Time
}

func newTTLCache[V any](limit int) *ttlCache[V] {
	return &ttlCache[V]{limit: limit, entries: make(map[tokenHash]ttlEntry[V])}
}

// get returns the value stored under k while now is before its deadline.
func (c *ttlCache[V]) get(k tokenHash, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		var zero V
		return zero, false
	}
	if !now.Before(e.until) {
		delete(c.entries, k)
		var zero V
		return zero, false
	}
	return e.value, true
}

// put stores v under k until until; a deadline not after now stores nothing.
func (c *ttlCache[V]) put(k tokenHash, v V, until, now time.Time) {
	if !now.Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.limit {
		for h, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, h)
			}
		}
		for h := range c.entries {
			if len(c.entries) < c.limit {
				break
			}
			delete(c.entries, h)
		}
	}
	c.entries[k] = ttlEntry[V]{value: v, until: until}
}

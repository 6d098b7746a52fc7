package cache

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Freshness is how long an entry answers directly (Fresh), then how much longer it is kept for
// use only when its source cannot answer (Stale). A zero Fresh means the kind is not cached.
type Freshness struct {
	Fresh, Stale time.Duration
}

// Enabled reports whether entries of this kind are stored at all.
func (f Freshness) Enabled() bool { return f.Fresh > 0 }

// Entry is a value read from a Store, with when it was stored and until when it is fresh.
type Entry struct {
	Value      []byte
	Stored     time.Time
	FreshUntil time.Time
}

// Fresh reports whether the entry may answer directly at now.
func (e Entry) Fresh(now time.Time) bool { return now.Before(e.FreshUntil) }

// Age is how long ago the entry was stored, in whole seconds.
func (e Entry) Age(now time.Time) time.Duration { return now.Sub(e.Stored).Truncate(time.Second) }

// StoreOptions configures a Store.
type StoreOptions struct {
	// MaxRetention caps every entry's fresh period and stale window together, and every
	// index's lifetime. Required.
	MaxRetention time.Duration
	// Metrics receives hit, miss, stale and error counts; nil records none.
	Metrics *Metrics
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Log receives debug lines about damaged entries (never their keys or values); nil logs
	// nothing.
	Log *slog.Logger
}

// Store adds freshness, retention, indexes and purge to a Cache. Its keys come from its Keyer,
// so nothing a Store writes names a patient or study in clear. Every error of the backend is a
// miss to callers (counted, never returned) except from Purge, whose caller must know.
//
// A Store is safe for concurrent use.
type Store struct {
	backend      Cache
	keyer        *Keyer
	maxRetention time.Duration
	metrics      *Metrics
	now          func() time.Time
	log          *slog.Logger
}

// NewStore returns a Store over backend with keys from keyer.
func NewStore(backend Cache, keyer *Keyer, opts StoreOptions) (*Store, error) {
	if backend == nil || keyer == nil {
		return nil, errors.New("create cache store: backend and keyer are required")
	}
	if opts.MaxRetention <= 0 {
		return nil, errors.New("create cache store: maxRetention must be positive; set cache.maxRetention")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Store{backend: backend, keyer: keyer, maxRetention: opts.MaxRetention, metrics: opts.Metrics, now: opts.Now, log: opts.Log}, nil
}

// Now is the Store's clock.
func (s *Store) Now() time.Time { return s.now() }

// Key is the entry key of a request of the given kind ("search", "metadata", ...), from its
// normalised parts.
func (s *Store) Key(kind string, parts ...string) string {
	return s.keyer.Key(append([]string{kind}, parts...)...)
}

// PatientIndex is the index key of a patient, by NHS number.
func (s *Store) PatientIndex(nhsNumber string) string { return s.keyer.PatientIndexKey(nhsNumber) }

// StudyIndex is the index key of a study, by Study Instance UID.
func (s *Store) StudyIndex(studyUID string) string { return s.keyer.StudyIndexKey(studyUID) }

// envelope layout: version (1) | stored (8, Unix ms) | fresh until (8, Unix ms) | value.
const (
	envelopeVersion = 1
	envelopeHeader  = 17
)

// Lookup returns the entry under key, fresh or stale, and whether there is one. kind labels
// the metrics. A backend error or a damaged entry is a miss.
func (s *Store) Lookup(ctx context.Context, kind, key string) (Entry, bool) {
	raw, ok, err := s.backend.Get(ctx, key)
	if err != nil {
		s.metrics.backendError("get", err)
		s.metrics.lookup(kind, "error")
		return Entry{}, false
	}
	if !ok {
		s.metrics.lookup(kind, "miss")
		return Entry{}, false
	}
	if len(raw) < envelopeHeader || raw[0] != envelopeVersion {
		s.metrics.lookup(kind, "error")
		s.log.Debug("cache entry not in a known layout; treated as a miss", "kind", kind, "bytes", len(raw))
		return Entry{}, false
	}
	e := Entry{
		Stored:     time.UnixMilli(int64(binary.BigEndian.Uint64(raw[1:9]))),
		FreshUntil: time.UnixMilli(int64(binary.BigEndian.Uint64(raw[9:17]))),
		Value:      raw[envelopeHeader:],
	}
	if e.Fresh(s.now()) {
		s.metrics.lookup(kind, "hit")
	} else {
		s.metrics.lookup(kind, "stale")
	}
	return e, true
}

// Put stores value under key, fresh for f.Fresh and kept f.Stale longer, both together capped
// at MaxRetention, and links key into each of the given indexes. Links whose Member is empty
// mean key itself. A backend error is counted and otherwise ignored.
func (s *Store) Put(ctx context.Context, key string, value []byte, f Freshness, links ...Link) {
	if !f.Enabled() {
		return
	}
	ttl := min(f.Fresh+max(f.Stale, 0), s.maxRetention)
	now := s.now()
	fresh := now.Add(min(f.Fresh, ttl))
	buf := make([]byte, envelopeHeader, envelopeHeader+len(value))
	buf[0] = envelopeVersion
	binary.BigEndian.PutUint64(buf[1:9], uint64(now.UnixMilli()))
	binary.BigEndian.PutUint64(buf[9:17], uint64(fresh.UnixMilli()))
	buf = append(buf, value...)
	// Index first: an entry must never exist that purge cannot find.
	if len(links) > 0 {
		if err := s.backend.Index(ctx, s.completeLinks(ctx, key, links), s.maxRetention); err != nil {
			s.metrics.backendError("index", err)
			return
		}
	}
	if err := s.backend.Set(ctx, key, buf, ttl); err != nil {
		s.metrics.backendError("set", err)
	}
}

// completeLinks returns a copy of links with empty members filled in as key, plus what keeps
// every entry reachable from its patients for as long as it lives:
//
//   - each patient → study link is mirrored by a study → patient link, so a study's index
//     knows its patients;
//   - an entry linked to a study but to none of its patients (a rendered image) refreshes the
//     links of the patients that study's index knows, so none of them expires before the entry.
//
// Purge follows only patient → study links, so the mirrors never spread one patient's purge to
// another's entries.
func (s *Store) completeLinks(ctx context.Context, key string, links []Link) []Link {
	out := make([]Link, 0, len(links)+2)
	withPatient := map[string]bool{}
	for _, l := range links {
		if l.Member == "" {
			l.Member = key
		}
		out = append(out, l)
		if s.keyer.indexKind(l.Index) == "patient" && s.keyer.indexKind(l.Member) == "study" {
			out = append(out, Link{Index: l.Member, Member: l.Index})
			withPatient[l.Member] = true
		}
	}
	for _, l := range links {
		if s.keyer.indexKind(l.Index) != "study" || withPatient[l.Index] {
			continue
		}
		withPatient[l.Index] = true
		members, err := s.backend.Members(ctx, l.Index)
		if err != nil {
			s.metrics.backendError("index", err)
			continue
		}
		for _, m := range members {
			if s.keyer.indexKind(m) == "patient" {
				out = append(out, Link{Index: m, Member: l.Index})
			}
		}
	}
	return out
}

// Forget removes key. A backend error is counted and otherwise ignored.
func (s *Store) Forget(ctx context.Context, key string) {
	if err := s.backend.Delete(ctx, key); err != nil {
		s.metrics.backendError("delete", err)
	}
}

// maxPurgeDepth bounds how far Purge follows index links: patient → study → entries.
const maxPurgeDepth = 2

// PurgePatient removes every entry indexed under the patient with this NHS number, and under
// the indexes of the studies linked to the patient, and the indexes themselves. It returns how
// many keys it removed. Unlike the rest of Store, it reports backend errors: an operator
// purging a patient's data must know whether it worked.
func (s *Store) PurgePatient(ctx context.Context, nhsNumber string) (int, error) {
	seen := map[string]bool{}
	n, err := s.purge(ctx, s.PatientIndex(nhsNumber), 0, seen)
	if err != nil {
		return n, fmt.Errorf("purge patient's cache entries: %w", err)
	}
	return n, nil
}

func (s *Store) purge(ctx context.Context, index string, depth int, seen map[string]bool) (int, error) {
	if seen[index] {
		return 0, nil
	}
	seen[index] = true
	members, err := s.backend.Members(ctx, index)
	if err != nil {
		return 0, err
	}
	removed := 0
	var entries []string
	for _, m := range members {
		if kind := s.keyer.indexKind(m); kind != "" {
			// Only patient → study: a study's index lists its patients too, and purging one
			// patient must not purge another's entries.
			if kind == "study" && depth+1 < maxPurgeDepth {
				n, err := s.purge(ctx, m, depth+1, seen)
				removed += n
				if err != nil {
					return removed, err
				}
			}
			continue
		}
		if !seen[m] {
			seen[m] = true
			entries = append(entries, m)
		}
	}
	// Entries go in batches so one purge does not hold a huge pipeline.
	for len(entries) > 0 {
		batch := entries[:min(len(entries), 256)]
		entries = entries[len(batch):]
		if err := s.backend.Delete(ctx, batch...); err != nil {
			return removed, err
		}
		removed += len(batch)
	}
	if err := s.backend.Delete(ctx, index); err != nil {
		return removed, err
	}
	if len(members) > 0 {
		removed++
	}
	return removed, nil
}

// NewLocalStore returns a Store over a new in-process Memory of maxBytes, with keys derived
// under secret, or under a random secret when secret is empty (entries then mean nothing to
// another process, which is all an in-process cache needs).
func NewLocalStore(maxBytes int64, secret []byte, opts StoreOptions) (*Store, error) {
	if len(secret) == 0 {
		secret = make([]byte, MinKeyerSecret)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("create cache store: make key secret: %w", err)
		}
	}
	keyer, err := NewKeyer(secret, "nirproxy:v1:")
	if err != nil {
		return nil, err
	}
	return NewStore(NewMemory(maxBytes, opts.Now), keyer, opts)
}

// Backend names the Store's backend ("memory" or "redis") and reports whether it is in use
// (false while the Redis breaker is open), for GET /status.
func (s *Store) Backend() (name string, available bool) {
	switch b := s.backend.(type) {
	case *Memory:
		return "memory", true
	case *Redis:
		return "redis", b.Available()
	}
	return "other", true
}

package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testClock is a clock that only moves when a test moves it.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Unix(1_800_000_000, 0)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// faultyCache is a Cache that fails the operations whose error is set and passes the others
// to the Cache it wraps.
type faultyCache struct {
	Cache
	getErr, setErr, deleteErr, indexErr, membersErr error
}

func (c *faultyCache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if c.getErr != nil {
		return nil, false, c.getErr
	}
	return c.Cache.Get(ctx, key)
}

func (c *faultyCache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if c.setErr != nil {
		return c.setErr
	}
	return c.Cache.Set(ctx, key, value, ttl)
}

func (c *faultyCache) Delete(ctx context.Context, keys ...string) error {
	if c.deleteErr != nil {
		return c.deleteErr
	}
	return c.Cache.Delete(ctx, keys...)
}

func (c *faultyCache) Index(ctx context.Context, links []Link, ttl time.Duration) error {
	if c.indexErr != nil {
		return c.indexErr
	}
	return c.Cache.Index(ctx, links, ttl)
}

func (c *faultyCache) Members(ctx context.Context, indexKey string) ([]string, error) {
	if c.membersErr != nil {
		return nil, c.membersErr
	}
	return c.Cache.Members(ctx, indexKey)
}

// storeBackend opens one kind of backend for Store tests. advance moves the backend's own
// clock where it has one (miniredis expires keys only when fast-forwarded).
type storeBackend struct {
	name string
	open func(t *testing.T, clock *testClock) (c Cache, advance func(time.Duration))
}

func storeBackends() []storeBackend {
	return []storeBackend{
		{name: "memory", open: func(_ *testing.T, clock *testClock) (Cache, func(time.Duration)) {
			return NewMemory(1<<20, clock.Now), func(time.Duration) {}
		}},
		{name: "redis", open: func(t *testing.T, _ *testClock) (Cache, func(time.Duration)) {
			// Redis's own cap is well above the Store's, so the Store's is the one tested.
			f := newRedisFixture(t, nil, [][]byte{testKey(1)}, func(o *RedisOptions) { o.MaxRetention = 24 * time.Hour })
			return f.r, f.mr.FastForward
		}},
	}
}

// testRetention is the Store's MaxRetention in these tests.
const testRetention = time.Hour

type storeFixture struct {
	store   *Store
	backend *faultyCache // errors injected here reach the Store
	clock   *testClock
	metrics *Metrics
	forward func(time.Duration)
}

func newStoreFixture(t *testing.T, b storeBackend) *storeFixture {
	t.Helper()
	clock := newTestClock()
	c, forward := b.open(t, clock)
	keyer, err := NewKeyer(bytes.Repeat([]byte{5}, 32), "np:v1:")
	if err != nil {
		t.Fatal(err)
	}
	backend := &faultyCache{Cache: c}
	m := NewMetrics(prometheus.NewRegistry())
	s, err := NewStore(backend, keyer, StoreOptions{MaxRetention: testRetention, Metrics: m, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &storeFixture{store: s, backend: backend, clock: clock, metrics: m, forward: forward}
}

// advance moves the Store's clock and the backend's together.
func (f *storeFixture) advance(d time.Duration) {
	f.clock.Advance(d)
	f.forward(d)
}

func (f *storeFixture) lookups(kind, result string) float64 {
	return testutil.ToFloat64(f.metrics.lookups.WithLabelValues(kind, result))
}

func (f *storeFixture) backendErrors(op, reason string) float64 {
	return testutil.ToFloat64(f.metrics.errors.WithLabelValues(op, reason))
}

// members is the sorted member list of an index, failing the test on a backend error.
func (f *storeFixture) members(t *testing.T, index string) []string {
	t.Helper()
	m, err := f.backend.Cache.Members(context.Background(), index)
	if err != nil {
		t.Fatalf("Members(%s): %v", index, err)
	}
	slices.Sort(m)
	return m
}

// present reports whether Lookup finds key, fresh or stale.
func (f *storeFixture) present(key string) bool {
	_, ok := f.store.Lookup(context.Background(), "test", key)
	return ok
}

func TestNewStoreRejects(t *testing.T) {
	keyer, _ := NewKeyer(bytes.Repeat([]byte{5}, 32), "np:v1:")
	mem := NewMemory(1024, nil)
	tests := []struct {
		name    string
		backend Cache
		keyer   *Keyer
		opts    StoreOptions
	}{
		{name: "no backend", keyer: keyer, opts: StoreOptions{MaxRetention: time.Hour}},
		{name: "no keyer", backend: mem, opts: StoreOptions{MaxRetention: time.Hour}},
		{name: "no retention", backend: mem, keyer: keyer},
		{name: "negative retention", backend: mem, keyer: keyer, opts: StoreOptions{MaxRetention: -time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewStore(tc.backend, tc.keyer, tc.opts); err == nil {
				t.Fatal("NewStore succeeded; want an error")
			}
		})
	}
}

func TestStoreFreshness(t *testing.T) {
	ctx := context.Background()
	value := []byte(`[{"0020000D":{"vr":"UI","Value":["1.2.3"]}}]`)
	// Each case stores value under f at the start, then looks it up after each step's elapsed
	// time (counted from the Put).
	type step struct {
		at                time.Duration
		found, fresh      bool
		wantAge           time.Duration // checked when found
		wantFreshUntilAdd time.Duration // FreshUntil - Put time, checked when found
	}
	tests := []struct {
		name  string
		f     Freshness
		steps []step
	}{
		{name: "fresh within the fresh period", f: Freshness{Fresh: 10 * time.Minute, Stale: 20 * time.Minute}, steps: []step{
			{at: 0, found: true, fresh: true, wantAge: 0, wantFreshUntilAdd: 10 * time.Minute},
			{at: 4*time.Minute + 30*time.Second + 700*time.Millisecond, found: true, fresh: true, wantAge: 4*time.Minute + 30*time.Second, wantFreshUntilAdd: 10 * time.Minute},
			{at: 10*time.Minute - time.Millisecond, found: true, fresh: true, wantAge: 9*time.Minute + 59*time.Second, wantFreshUntilAdd: 10 * time.Minute},
		}},
		{name: "stale after the fresh period, within the stale window", f: Freshness{Fresh: 10 * time.Minute, Stale: 20 * time.Minute}, steps: []step{
			{at: 10 * time.Minute, found: true, wantAge: 10 * time.Minute, wantFreshUntilAdd: 10 * time.Minute},
			{at: 30*time.Minute - time.Millisecond, found: true, wantAge: 29*time.Minute + 59*time.Second, wantFreshUntilAdd: 10 * time.Minute},
		}},
		{name: "gone after fresh and stale", f: Freshness{Fresh: 10 * time.Minute, Stale: 20 * time.Minute}, steps: []step{
			{at: 30 * time.Minute},
		}},
		{name: "no stale window", f: Freshness{Fresh: 10 * time.Minute}, steps: []step{
			{at: 10*time.Minute - time.Millisecond, found: true, fresh: true, wantAge: 9*time.Minute + 59*time.Second, wantFreshUntilAdd: 10 * time.Minute},
			{at: 10 * time.Minute},
		}},
		{name: "negative stale window counts as none", f: Freshness{Fresh: 10 * time.Minute, Stale: -5 * time.Minute}, steps: []step{
			{at: 10*time.Minute - time.Millisecond, found: true, fresh: true, wantAge: 9*time.Minute + 59*time.Second, wantFreshUntilAdd: 10 * time.Minute},
			{at: 10 * time.Minute},
		}},
		{name: "stale window cut at max retention", f: Freshness{Fresh: 10 * time.Minute, Stale: 5 * time.Hour}, steps: []step{
			{at: testRetention - time.Millisecond, found: true, wantAge: testRetention - time.Second, wantFreshUntilAdd: 10 * time.Minute},
			{at: testRetention},
		}},
		{name: "fresh period cut at max retention", f: Freshness{Fresh: 3 * testRetention, Stale: time.Hour}, steps: []step{
			{at: testRetention - time.Millisecond, found: true, fresh: true, wantAge: testRetention - time.Second, wantFreshUntilAdd: testRetention},
			{at: testRetention},
		}},
		{name: "zero fresh stores nothing", f: Freshness{Stale: time.Hour}, steps: []step{
			{at: 0},
		}},
		{name: "negative fresh stores nothing", f: Freshness{Fresh: -time.Minute, Stale: time.Hour}, steps: []step{
			{at: 0},
		}},
	}
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					fx := newStoreFixture(t, b)
					key := fx.store.Key("search", "PatientID=9434765919")
					index := fx.store.PatientIndex("9434765919")
					put := fx.clock.Now()
					fx.store.Put(ctx, key, value, tc.f, Link{Index: index})
					if !tc.f.Enabled() {
						if got := fx.members(t, index); len(got) != 0 {
							t.Errorf("index of a kind that is not cached lists %q; want nothing indexed", got)
						}
					}
					elapsed := time.Duration(0)
					for _, st := range tc.steps {
						fx.advance(st.at - elapsed)
						elapsed = st.at
						now := fx.clock.Now()
						e, ok := fx.store.Lookup(ctx, "search", key)
						if ok != st.found {
							t.Fatalf("at +%v: Lookup found = %v; want %v", st.at, ok, st.found)
						}
						if !ok {
							continue
						}
						if got := e.Fresh(now); got != st.fresh {
							t.Errorf("at +%v: Fresh = %v; want %v", st.at, got, st.fresh)
						}
						if !bytes.Equal(e.Value, value) {
							t.Errorf("at +%v: Value = %q; want %q", st.at, e.Value, value)
						}
						if got := e.Age(now); got != st.wantAge {
							t.Errorf("at +%v: Age = %v; want %v", st.at, got, st.wantAge)
						}
						if !e.Stored.Equal(put) {
							t.Errorf("at +%v: Stored = %v; want the Put time %v", st.at, e.Stored, put)
						}
						if got := e.FreshUntil.Sub(put); got != st.wantFreshUntilAdd {
							t.Errorf("at +%v: FreshUntil = Put%+v; want Put+%v", st.at, got, st.wantFreshUntilAdd)
						}
					}
				})
			}
		})
	}
}

func TestStoreFailures(t *testing.T) {
	ctx := context.Background()
	fresh := Freshness{Fresh: 10 * time.Minute, Stale: 10 * time.Minute}
	boom := errors.New("connection reset")
	tests := []struct {
		name string
		run  func(t *testing.T, fx *storeFixture)
	}{
		{name: "damaged envelopes are misses", run: func(t *testing.T, fx *storeFixture) {
			damaged := []struct {
				name string
				raw  []byte
			}{
				{name: "empty", raw: []byte{}},
				{name: "shorter than the header", raw: []byte{envelopeVersion, 0, 0, 0}},
				{name: "unknown version", raw: append([]byte{envelopeVersion + 1}, make([]byte, envelopeHeader)...)},
				{name: "plain text", raw: []byte("not made by Put")},
			}
			for i, d := range damaged {
				key := fx.store.Key("metadata", d.name)
				if err := fx.backend.Set(ctx, key, d.raw, time.Minute); err != nil {
					t.Fatal(err)
				}
				if e, ok := fx.store.Lookup(ctx, "metadata", key); ok {
					t.Errorf("%s: Lookup = %+v, true; want a miss", d.name, e)
				}
				if got := fx.lookups("metadata", "error"); got != float64(i+1) {
					t.Errorf("%s: metadata lookups counted as error = %v; want %d", d.name, got, i+1)
				}
			}
			if got := fx.lookups("metadata", "hit") + fx.lookups("metadata", "stale") + fx.lookups("metadata", "miss"); got != 0 {
				t.Errorf("damaged entries counted %v times as hit, stale or miss; want 0", got)
			}
		}},
		{name: "get error is a miss counted as an error", run: func(t *testing.T, fx *storeFixture) {
			key := fx.store.Key("search", "q")
			fx.store.Put(ctx, key, []byte("v"), fresh)
			fx.backend.getErr = fmt.Errorf("get cache entry from redis: %w", boom)
			if _, ok := fx.store.Lookup(ctx, "search", key); ok {
				t.Fatal("Lookup with a failing backend found an entry; want a miss")
			}
			if got := fx.backendErrors("get", "error"); got != 1 {
				t.Errorf("backend get errors = %v; want 1", got)
			}
			if got := fx.lookups("search", "error"); got != 1 {
				t.Errorf("search lookups counted as error = %v; want 1", got)
			}
			fx.backend.getErr = nil
			if _, ok := fx.store.Lookup(ctx, "search", key); !ok {
				t.Fatal("Lookup after the backend recovered missed; want the entry")
			}
		}},
		{name: "unavailable and unsealable errors keep their reason", run: func(t *testing.T, fx *storeFixture) {
			key := fx.store.Key("search", "q")
			for _, err := range []error{ErrUnavailable, ErrUnsealable, ErrUnavailable} {
				fx.backend.getErr = fmt.Errorf("get cache entry from redis: %w", err)
				fx.store.Lookup(ctx, "search", key)
			}
			if got := fx.backendErrors("get", "unavailable"); got != 2 {
				t.Errorf("get errors with reason unavailable = %v; want 2", got)
			}
			if got := fx.backendErrors("get", "unsealable"); got != 1 {
				t.Errorf("get errors with reason unsealable = %v; want 1", got)
			}
		}},
		{name: "set error is counted and stores nothing", run: func(t *testing.T, fx *storeFixture) {
			key := fx.store.Key("search", "q")
			fx.backend.setErr = boom
			fx.store.Put(ctx, key, []byte("v"), fresh)
			fx.backend.setErr = nil
			if fx.present(key) {
				t.Fatal("entry found after a failed Set")
			}
			if got := fx.backendErrors("set", "error"); got != 1 {
				t.Errorf("backend set errors = %v; want 1", got)
			}
		}},
		{name: "index error is counted and the entry is not stored", run: func(t *testing.T, fx *storeFixture) {
			key := fx.store.Key("search", "q")
			fx.backend.indexErr = boom
			fx.store.Put(ctx, key, []byte("v"), fresh, Link{Index: fx.store.PatientIndex("9434765919")})
			fx.backend.indexErr = nil
			if fx.present(key) {
				t.Fatal("entry stored although its index failed; purge could never find it")
			}
			if got := fx.backendErrors("index", "error"); got != 1 {
				t.Errorf("backend index errors = %v; want 1", got)
			}
		}},
		{name: "forget removes the entry", run: func(t *testing.T, fx *storeFixture) {
			key, other := fx.store.Key("locator", "1.2.3"), fx.store.Key("locator", "1.2.4")
			fx.store.Put(ctx, key, []byte("a,b"), fresh)
			fx.store.Put(ctx, other, []byte("a"), fresh)
			fx.store.Forget(ctx, key)
			if fx.present(key) {
				t.Fatal("forgotten entry still found")
			}
			if !fx.present(other) {
				t.Fatal("Forget removed another entry")
			}
		}},
		{name: "forget error is counted", run: func(t *testing.T, fx *storeFixture) {
			fx.backend.deleteErr = boom
			fx.store.Forget(ctx, fx.store.Key("locator", "1.2.3"))
			if got := fx.backendErrors("delete", "error"); got != 1 {
				t.Errorf("backend delete errors = %v; want 1", got)
			}
		}},
	}
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, newStoreFixture(t, b))
				})
			}
		})
	}
}

func TestStoreLookupMetrics(t *testing.T) {
	ctx := context.Background()
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			fx := newStoreFixture(t, b)
			search := fx.store.Key("search", "q")
			metadata := fx.store.Key("metadata", "1.2.3")
			fx.store.Put(ctx, search, []byte("s"), Freshness{Fresh: time.Hour})
			fx.store.Put(ctx, metadata, []byte("m"), Freshness{Fresh: time.Minute, Stale: time.Hour})

			fx.store.Lookup(ctx, "search", search)                         // hit
			fx.store.Lookup(ctx, "metadata", metadata)                     // hit
			fx.store.Lookup(ctx, "rendered", fx.store.Key("rendered", "")) // miss
			fx.advance(time.Minute)
			fx.store.Lookup(ctx, "search", search)     // hit
			fx.store.Lookup(ctx, "metadata", metadata) // stale
			fx.store.Lookup(ctx, "metadata", metadata) // stale
			fx.store.Lookup(ctx, "locator", fx.store.Key("locator", "1.2.3"))

			tests := []struct {
				name         string
				kind, result string
				want         float64
			}{
				{name: "search hits", kind: "search", result: "hit", want: 2},
				{name: "search stale", kind: "search", result: "stale"},
				{name: "search misses", kind: "search", result: "miss"},
				{name: "metadata hits", kind: "metadata", result: "hit", want: 1},
				{name: "metadata stale", kind: "metadata", result: "stale", want: 2},
				{name: "metadata misses", kind: "metadata", result: "miss"},
				{name: "rendered misses", kind: "rendered", result: "miss", want: 1},
				{name: "locator misses", kind: "locator", result: "miss", want: 1},
				{name: "no errors", kind: "search", result: "error"},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					if got := fx.lookups(tc.kind, tc.result); got != tc.want {
						t.Fatalf("lookups{kind=%q,result=%q} = %v; want %v", tc.kind, tc.result, got, tc.want)
					}
				})
			}
		})
	}
}

func TestStoreWithoutMetrics(t *testing.T) {
	ctx := context.Background()
	s, err := NewLocalStore(1<<20, nil, StoreOptions{MaxRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if s.Metrics() != nil {
		t.Fatal("Metrics() of a Store made without metrics is not nil")
	}
	key := s.Key("search", "q")
	s.Lookup(ctx, "search", key)
	s.Put(ctx, key, []byte("v"), Freshness{Fresh: time.Minute}, Link{Index: s.PatientIndex("9434765919")})
	s.Metrics().Coalesced("search")
	if e, ok := s.Lookup(ctx, "search", key); !ok || string(e.Value) != "v" {
		t.Fatalf("Lookup = %q, %v; want v, true", e.Value, ok)
	}
	if _, err := s.PurgePatient(ctx, "9434765919"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup(ctx, "search", key); ok {
		t.Fatal("entry still found after purge")
	}
}

func TestStorePurgePatient(t *testing.T) {
	ctx := context.Background()
	fresh := Freshness{Fresh: 10 * time.Minute, Stale: 10 * time.Minute}
	const (
		alice = "9434765919"
		bob   = "9876543210"
	)
	// world is what each case starts from: alice's search answer (linked to her and to her
	// study), her study's metadata and rendered frame (linked to the study), and the same for
	// bob with another study.
	type world struct {
		aliceSearch, aliceMeta, aliceFrame string
		bobSearch, bobMeta                 string
		aliceIndex, aliceStudy             string
		bobIndex, bobStudy                 string
	}
	build := func(fx *storeFixture) world {
		s := fx.store
		w := world{
			aliceSearch: s.Key("search", "PatientID="+alice),
			aliceMeta:   s.Key("metadata", "studies/1.2.826.1/metadata"),
			aliceFrame:  s.Key("rendered", "studies/1.2.826.1/rendered"),
			bobSearch:   s.Key("search", "PatientID="+bob),
			bobMeta:     s.Key("metadata", "studies/1.2.826.2/metadata"),
			aliceIndex:  s.PatientIndex(alice),
			aliceStudy:  s.StudyIndex("1.2.826.1"),
			bobIndex:    s.PatientIndex(bob),
			bobStudy:    s.StudyIndex("1.2.826.2"),
		}
		s.Put(ctx, w.aliceSearch, []byte("a"), fresh,
			Link{Index: w.aliceIndex}, Link{Index: w.aliceStudy}, Link{Index: w.aliceIndex, Member: w.aliceStudy})
		s.Put(ctx, w.aliceMeta, []byte("am"), fresh, Link{Index: w.aliceStudy})
		s.Put(ctx, w.aliceFrame, []byte("af"), fresh, Link{Index: w.aliceStudy})
		s.Put(ctx, w.bobSearch, []byte("b"), fresh,
			Link{Index: w.bobIndex}, Link{Index: w.bobStudy}, Link{Index: w.bobIndex, Member: w.bobStudy})
		s.Put(ctx, w.bobMeta, []byte("bm"), fresh, Link{Index: w.bobStudy})
		return w
	}
	boom := errors.New("connection reset")
	tests := []struct {
		name string
		run  func(t *testing.T, fx *storeFixture, w world)
	}{
		{name: "removes the patient's entries, their studies' entries and the indexes", run: func(t *testing.T, fx *storeFixture, w world) {
			if _, err := fx.store.PurgePatient(ctx, alice); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{w.aliceSearch, w.aliceMeta, w.aliceFrame} {
				if fx.present(k) {
					t.Errorf("entry %s still found after purge", k)
				}
			}
			for _, idx := range []string{w.aliceIndex, w.aliceStudy} {
				if got := fx.members(t, idx); len(got) != 0 {
					t.Errorf("index %s still lists %q after purge", idx, got)
				}
			}
		}},
		{name: "leaves another patient alone", run: func(t *testing.T, fx *storeFixture, w world) {
			if _, err := fx.store.PurgePatient(ctx, alice); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{w.bobSearch, w.bobMeta} {
				if !fx.present(k) {
					t.Errorf("bob's entry %s gone after purging alice", k)
				}
			}
			if got, want := fx.members(t, w.bobIndex), sorted(w.bobSearch, w.bobStudy); !slices.Equal(got, want) {
				t.Errorf("bob's index = %q; want %q", got, want)
			}
			// A study's index also lists its patients (the mirror of patient → study).
			if got, want := fx.members(t, w.bobStudy), sorted(w.bobSearch, w.bobMeta, w.bobIndex); !slices.Equal(got, want) {
				t.Errorf("bob's study index = %q; want %q", got, want)
			}
		}},
		{name: "counts each key once", run: func(t *testing.T, fx *storeFixture, w world) {
			// Three entries (the search is in both indexes) and two indexes.
			n, err := fx.store.PurgePatient(ctx, alice)
			if err != nil || n != 5 {
				t.Fatalf("PurgePatient = %d, %v; want 5, nil", n, err)
			}
			n, err = fx.store.PurgePatient(ctx, alice)
			if err != nil || n != 0 {
				t.Fatalf("second PurgePatient = %d, %v; want 0, nil", n, err)
			}
		}},
		{name: "unknown patient removes nothing", run: func(t *testing.T, fx *storeFixture, w world) {
			n, err := fx.store.PurgePatient(ctx, "4010232137")
			if err != nil || n != 0 {
				t.Fatalf("PurgePatient = %d, %v; want 0, nil", n, err)
			}
			for _, k := range []string{w.aliceSearch, w.aliceMeta, w.aliceFrame, w.bobSearch, w.bobMeta} {
				if !fx.present(k) {
					t.Errorf("entry %s gone after purging another patient", k)
				}
			}
		}},
		{name: "NHS number with spaces or dashes shares the index", run: func(t *testing.T, fx *storeFixture, w world) {
			spaced := fx.store.Key("search", "PatientID=943 476 5919")
			dashed := fx.store.Key("search", "PatientID=943-476-5919")
			fx.store.Put(ctx, spaced, []byte("s"), fresh, Link{Index: fx.store.PatientIndex("943 476 5919")})
			fx.store.Put(ctx, dashed, []byte("d"), fresh, Link{Index: fx.store.PatientIndex(" 943-476-5919 ")})
			if n, err := fx.store.PurgePatient(ctx, alice); err != nil || n != 7 {
				t.Fatalf("PurgePatient = %d, %v; want 7, nil", n, err)
			}
			for _, k := range []string{spaced, dashed} {
				if fx.present(k) {
					t.Errorf("entry %s indexed under a spaced NHS number survived the purge", k)
				}
			}
		}},
		{name: "cycles in links do not loop", run: func(t *testing.T, fx *storeFixture, w world) {
			// alice's second study links back to her (the mirror of patient → study), to
			// her first study, and each index to itself: purge follows only patient → study.
			second := fx.store.StudyIndex("1.2.826.3")
			secondMeta := fx.store.Key("metadata", "studies/1.2.826.3/metadata")
			fx.store.Put(ctx, secondMeta, []byte("sm"), fresh,
				Link{Index: second},
				Link{Index: w.aliceIndex, Member: second},
				Link{Index: w.aliceStudy, Member: second},
				Link{Index: second, Member: w.aliceStudy},
				Link{Index: second, Member: second},
				Link{Index: w.aliceIndex, Member: w.aliceIndex})
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			n, err := fx.store.PurgePatient(pctx, alice)
			if err != nil || n != 7 {
				t.Fatalf("PurgePatient = %d, %v; want 7 (4 entries, 3 indexes), nil", n, err)
			}
			for _, k := range []string{w.aliceSearch, w.aliceMeta, w.aliceFrame, secondMeta} {
				if fx.present(k) {
					t.Errorf("entry %s survived the purge", k)
				}
			}
		}},
		{name: "members error is reported", run: func(t *testing.T, fx *storeFixture, w world) {
			fx.backend.membersErr = boom
			if _, err := fx.store.PurgePatient(ctx, alice); !errors.Is(err, boom) {
				t.Fatalf("PurgePatient error = %v; want one wrapping %v", err, boom)
			}
		}},
		{name: "delete error is reported", run: func(t *testing.T, fx *storeFixture, w world) {
			fx.backend.deleteErr = boom
			if _, err := fx.store.PurgePatient(ctx, alice); !errors.Is(err, boom) {
				t.Fatalf("PurgePatient error = %v; want one wrapping %v", err, boom)
			}
			fx.backend.deleteErr = nil
			if !fx.present(w.aliceSearch) {
				t.Fatal("entry gone although every delete failed")
			}
		}},
		{name: "study entries put late are still found through the patient", run: func(t *testing.T, fx *storeFixture, w world) {
			// A frame of alice's study is cached near the end of her index's lifetime. The
			// study's index is kept alive by the frame, but nothing extends alice's index,
			// which alone leads purge to the study.
			fx.advance(testRetention - 10*time.Minute)
			late := fx.store.Key("rendered", "studies/1.2.826.1/rendered/late")
			fx.store.Put(ctx, late, []byte("late"), Freshness{Fresh: 30 * time.Minute}, Link{Index: w.aliceStudy})
			fx.advance(15 * time.Minute)
			if !fx.present(late) {
				t.Fatal("late frame not found before purge")
			}
			if _, err := fx.store.PurgePatient(ctx, alice); err != nil {
				t.Fatal(err)
			}
			if fx.present(late) {
				t.Fatal("frame of alice's study still served after PurgePatient: her index expired before the study's entries")
			}
		}},
		{name: "a links slice reused across Puts indexes each key", run: func(t *testing.T, fx *storeFixture, w world) {
			links := []Link{{Index: w.aliceIndex}}
			first, second := fx.store.Key("search", "one"), fx.store.Key("search", "two")
			fx.store.Put(ctx, first, []byte("1"), fresh, links...)
			fx.store.Put(ctx, second, []byte("2"), fresh, links...)
			if links[0].Member != "" {
				t.Errorf("Put changed the caller's link to Member %q", links[0].Member)
			}
			if _, err := fx.store.PurgePatient(ctx, alice); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{first, second} {
				if fx.present(k) {
					t.Errorf("entry %s survived the purge", k)
				}
			}
		}},
	}
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					fx := newStoreFixture(t, b)
					tc.run(t, fx, build(fx))
				})
			}
		})
	}
}

func TestStorePurgeRedisDown(t *testing.T) {
	ctx := context.Background()
	mr := miniredis.RunT(t)
	f := newRedisFixture(t, mr, [][]byte{testKey(1)}, nil)
	s, err := NewStore(f.r, f.keyer, StoreOptions{MaxRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	key := s.Key("search", "q")
	s.Put(ctx, key, []byte("v"), Freshness{Fresh: time.Minute}, Link{Index: s.PatientIndex("9434765919")})
	mr.Close()
	if _, ok := s.Lookup(ctx, "search", key); ok {
		t.Fatal("Lookup with redis down found an entry")
	}
	if _, err := s.PurgePatient(ctx, "9434765919"); err == nil {
		t.Fatal("PurgePatient with redis down succeeded; want an error the operator sees")
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

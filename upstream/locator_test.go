package upstream

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

const studyUID = "1.2.826.0.1.3680043.8.498.1"

// holder describes one fake trust for the locator: its priority, where it keeps the NHS
// number (PatientID when empty), and what its search answers.
type holder struct {
	id        string
	priority  int
	patientIn PatientIDAttribute
	answer    []dcmjson.Dataset
	err       error
}

// locatorFixture builds sources over fake clients and a locator over them with an in-process
// cache. It returns the locator and each source's fake, by id.
func locatorFixture(t *testing.T, c cache.Cache, holders ...holder) (*Locator, map[string]*fakeClient) {
	t.Helper()
	var sources []*Source
	fakes := make(map[string]*fakeClient)
	for _, h := range holders {
		f := &fakeClient{search: func(_ context.Context, path string, q url.Values) ([]dcmjson.Dataset, error) {
			if path != "studies" || q.Get(dcmjson.TagStudyInstanceUID) != studyUID {
				t.Errorf("%s searched %q %v; want studies with the StudyInstanceUID", h.id, path, q)
			}
			// The answer must say whose study it is, wherever the trust keeps the NHS number.
			want := dcmjson.TagPatientID + "," + dcmjson.TagIssuerOfPatientID
			if h.patientIn == InOtherPatientIDsSequence {
				want += "," + dcmjson.TagOtherPatientIDsSequence
			}
			if got := q.Get("includefield"); got != want {
				t.Errorf("%s was asked for includefield %q; want %q", h.id, got, want)
			}
			return h.answer, h.err
		}}
		fakes[h.id] = f
		cfg := SourceConfig{ID: h.id, Name: h.id + " Trust", Priority: h.priority, Timeout: testTimeout, PatientID: h.patientIn}
		sources = append(sources, NewSourceWithClient(cfg, f, testOptions(), discard()))
	}
	return NewLocator(sources, storeOver(t, c), time.Hour, discard()), fakes
}

// storeOver is a cache Store over c, or nil for a nil c.
func storeOver(t *testing.T, c cache.Cache) *cache.Store {
	t.Helper()
	if c == nil {
		return nil
	}
	keyer, err := cache.NewKeyer(make([]byte, cache.MinKeyerSecret), "test:")
	if err != nil {
		t.Fatal(err)
	}
	st, err := cache.NewStore(c, keyer, cache.StoreOptions{MaxRetention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func holderIDs(l Location) []string {
	var ids []string
	for _, s := range l.Holders {
		ids = append(ids, s.ID)
	}
	return ids
}

func totalCalls(fakes map[string]*fakeClient) int32 {
	var n int32
	for _, f := range fakes {
		n += f.calls.Load()
	}
	return n
}

func TestLocate(t *testing.T) {
	has := []dcmjson.Dataset{studyDS(studyUID)}
	down := &TransportError{Source: "x", Err: errors.New("connection refused")}
	tests := []struct {
		name          string
		holders       []holder
		wantHolders   []string
		wantUnreached []string
		wantRemember  bool
	}{
		{
			name: "holders in priority order, remembered",
			holders: []holder{
				{id: "C", priority: 2, answer: has},
				{id: "A", priority: 1, answer: has},
				{id: "B", priority: 1},
				{id: "D", priority: 1, answer: has},
			},
			wantHolders:  []string{"A", "D", "C"},
			wantRemember: true,
		},
		{
			name: "another study in the answer is not a holder",
			holders: []holder{
				{id: "A", answer: []dcmjson.Dataset{studyDS("1.2.826.0.1.3680043.8.498.10")}},
				{id: "B", answer: has},
			},
			wantHolders:  []string{"B"},
			wantRemember: true,
		},
		{
			name: "a failed source is unreached and the answer not remembered",
			holders: []holder{
				{id: "A", answer: has},
				{id: "B", err: down},
			},
			wantHolders:   []string{"A"},
			wantUnreached: []string{"B"},
		},
		{
			name:          "every source failed",
			holders:       []holder{{id: "A", err: down}, {id: "B", err: &StatusError{Source: "B", Status: 503}}},
			wantUnreached: []string{"A", "B"},
		},
		{
			name:    "nobody holds it",
			holders: []holder{{id: "A"}, {id: "B", answer: []dcmjson.Dataset{}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			l, fakes := locatorFixture(t, cache.NewMemory(1<<20, nil), tc.holders...)
			loc := l.Locate(ctx, studyUID)
			if got := holderIDs(loc); !slices.Equal(got, tc.wantHolders) {
				t.Fatalf("holders = %v; want %v", got, tc.wantHolders)
			}
			var unreached []string
			for _, o := range loc.Unreached() {
				unreached = append(unreached, o.Source.ID)
				if o.Err == nil {
					t.Errorf("unreached %s has no error", o.Source.ID)
				}
			}
			if !slices.Equal(unreached, tc.wantUnreached) {
				t.Fatalf("unreached = %v; want %v", unreached, tc.wantUnreached)
			}
			if len(loc.Outcomes) != len(tc.holders) {
				t.Fatalf("%d outcomes; want one per source (%d)", len(loc.Outcomes), len(tc.holders))
			}
			if n := totalCalls(fakes); n != int32(len(tc.holders)) {
				t.Fatalf("first Locate made %d calls; want one per source", n)
			}

			again := l.Locate(ctx, studyUID)
			if got := holderIDs(again); !slices.Equal(got, tc.wantHolders) {
				t.Fatalf("second Locate holders = %v; want %v", got, tc.wantHolders)
			}
			calls := totalCalls(fakes) - int32(len(tc.holders))
			switch {
			case tc.wantRemember && calls != 0:
				t.Fatalf("second Locate made %d upstream calls; want 0 (remembered)", calls)
			case tc.wantRemember && len(again.Outcomes) != 0:
				t.Fatalf("remembered location has outcomes %v; want none", again.Outcomes)
			case !tc.wantRemember && calls != int32(len(tc.holders)):
				t.Fatalf("second Locate made %d upstream calls; want %d (not remembered)", calls, len(tc.holders))
			}
		})
	}
}

func TestLocatorForget(t *testing.T) {
	ctx := context.Background()
	l, fakes := locatorFixture(t, cache.NewMemory(1<<20, nil), holder{id: "A", answer: []dcmjson.Dataset{studyDS(studyUID)}})
	l.Locate(ctx, studyUID)
	l.Locate(ctx, studyUID)
	if n := totalCalls(fakes); n != 1 {
		t.Fatalf("%d calls before Forget; want 1", n)
	}
	l.Forget(ctx, studyUID)
	if got := holderIDs(l.Locate(ctx, studyUID)); !slices.Equal(got, []string{"A"}) {
		t.Fatalf("holders after Forget = %v; want [A]", got)
	}
	if n := totalCalls(fakes); n != 2 {
		t.Fatalf("%d calls after Forget; want 2 (asked again)", n)
	}
}

func TestLocatorRemember(t *testing.T) {
	ctx := context.Background()
	l, fakes := locatorFixture(t, cache.NewMemory(1<<20, nil),
		holder{id: "A", priority: 2}, holder{id: "B", priority: 1}, holder{id: "C", priority: 3})
	l.Remember(ctx, studyUID, []string{"C", "A", "gone"})
	loc := l.Locate(ctx, studyUID)
	if got := holderIDs(loc); !slices.Equal(got, []string{"A", "C"}) {
		t.Fatalf("holders = %v; want [A C] (priority order, unknown ids dropped)", got)
	}
	if n := totalCalls(fakes); n != 0 {
		t.Fatalf("%d upstream calls; want 0", n)
	}
	if got := l.Sources(); got[0].ID != "B" || got[1].ID != "A" || got[2].ID != "C" {
		t.Fatalf("Sources() not in priority order")
	}
	if s, ok := l.Source("C"); !ok || s.ID != "C" {
		t.Fatalf("Source(C) = %v, %v", s, ok)
	}
	if _, ok := l.Source("Z"); ok {
		t.Fatal("Source(Z) found a source that is not configured")
	}
}

// brokenCache fails every operation, as Redis does when it is down.
type brokenCache struct {
	mu   sync.Mutex
	sets int
}

func (c *brokenCache) Get(context.Context, string) ([]byte, bool, error) {
	return nil, false, errors.New("redis down")
}

func (c *brokenCache) Set(context.Context, string, []byte, time.Duration) error {
	c.mu.Lock()
	c.sets++
	c.mu.Unlock()
	return errors.New("redis down")
}

func (c *brokenCache) Delete(context.Context, ...string) error { return errors.New("redis down") }

func (c *brokenCache) Index(context.Context, []cache.Link, time.Duration) error {
	return errors.New("redis down")
}

func (c *brokenCache) Members(context.Context, string) ([]string, error) {
	return nil, errors.New("redis down")
}

func TestLocatorWithoutWorkingCache(t *testing.T) {
	has := []dcmjson.Dataset{studyDS(studyUID)}
	tests := []struct {
		name  string
		cache cache.Cache
	}{
		{name: "no cache", cache: nil},
		{name: "cache down", cache: &brokenCache{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			l, fakes := locatorFixture(t, tc.cache, holder{id: "A", answer: has}, holder{id: "B", answer: has})
			for range 2 {
				if got := holderIDs(l.Locate(ctx, studyUID)); !slices.Equal(got, []string{"A", "B"}) {
					t.Fatalf("holders = %v; want [A B]", got)
				}
			}
			l.Forget(ctx, studyUID)
			if n := totalCalls(fakes); n != 4 {
				t.Fatalf("%d upstream calls; want 4 (nothing remembered)", n)
			}
		})
	}
}

func TestLocateOpenBreaker(t *testing.T) {
	ctx := context.Background()
	l, fakes := locatorFixture(t, cache.NewMemory(1<<20, nil),
		holder{id: "A", answer: []dcmjson.Dataset{studyDS(studyUID)}},
		holder{id: "B", err: &StatusError{Source: "B", Status: 503}})
	for range 20 { // the default minRequests, every one failed
		l.Locate(ctx, studyUID)
	}
	b, _ := l.Source("B")
	if b.State() != "open" {
		t.Fatalf("B state %q; want open", b.State())
	}
	before := fakes["B"].calls.Load()
	loc := l.Locate(ctx, studyUID)
	if fakes["B"].calls.Load() != before {
		t.Fatal("a source with an open breaker was called")
	}
	un := loc.Unreached()
	if len(un) != 1 || un[0].Source.ID != "B" || !errors.Is(un[0].Err, ErrCircuitOpen) {
		t.Fatalf("unreached = %v; want B with ErrCircuitOpen", un)
	}
}

func TestLocateStaleHolder(t *testing.T) {
	has := []dcmjson.Dataset{studyDS(studyUID)}
	stale := func(id string) error {
		return &StaleError{Source: id, Age: time.Minute, Err: &TransportError{Source: id, Err: errors.New("refused")}}
	}
	ctx := context.Background()
	// What a source's cache returns to a caller that accepts stale copies: the old answer
	// and a StaleError.
	l, fakes := locatorFixture(t, cache.NewMemory(1<<20, nil),
		holder{id: "A", answer: has},
		holder{id: "B", answer: has, err: stale("B")},
		holder{id: "C", answer: nil, err: stale("C")})
	loc := l.Locate(ctx, studyUID)
	if got := holderIDs(loc); !slices.Equal(got, []string{"A"}) {
		t.Fatalf("holders = %v; want [A]: only A answered now", got)
	}
	if len(loc.Stale) != 1 || loc.Stale[0].Source.ID != "B" {
		t.Fatalf("stale = %v; want [B]: B's cached answer says it holds the study (fallback.Locate judges it)", loc.Stale)
	}
	var unreached []string
	for _, o := range loc.Unreached() {
		unreached = append(unreached, o.Source.ID)
	}
	if !slices.Equal(unreached, []string{"C"}) {
		t.Fatalf("unreached = %v; want [C]: a stale 'not here' proves nothing now", unreached)
	}
	l.Locate(ctx, studyUID)
	if n := totalCalls(fakes); n != 6 {
		t.Fatalf("%d calls for two Locates; want 6 (an answer with a stale part is not remembered)", n)
	}
}

// countingCache counts the entries written to a Memory.
type countingCache struct {
	*cache.Memory
	sets atomic.Int32
}

func (c *countingCache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	c.sets.Add(1)
	return c.Memory.Set(ctx, key, value, ttl)
}

func TestLocatorRememberOnceAndPurge(t *testing.T) {
	ctx := context.Background()
	cc := &countingCache{Memory: cache.NewMemory(1<<20, nil)}
	l, fakes := locatorFixture(t, cc, holder{id: "A", answer: []dcmjson.Dataset{studyDS(studyUID)}})
	for range 5 {
		l.Remember(ctx, studyUID, []string{"A"}, "9434765919")
	}
	if n := cc.sets.Load(); n != 1 {
		t.Fatalf("five Remembers of the same location wrote %d entries; want 1", n)
	}
	l.Remember(ctx, studyUID, []string{"A", "B"}, "9434765919")
	if n := cc.sets.Load(); n != 2 {
		t.Fatalf("a changed location was not written (%d writes)", n)
	}
	if got := holderIDs(l.Locate(ctx, studyUID)); !slices.Equal(got, []string{"A"}) || totalCalls(fakes) != 0 {
		t.Fatalf("remembered holders %v after %d calls; want [A] (B is not configured) from memory", got, totalCalls(fakes))
	}
	// The location is indexed under the patient: purging them removes it.
	if n, err := l.store.PurgePatient(ctx, "9434765919"); err != nil || n == 0 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	l.Locate(ctx, studyUID)
	if n := totalCalls(fakes); n != 1 {
		t.Fatalf("after purging the patient Locate made %d calls; want 1 (location gone)", n)
	}
}

const (
	alice = "9434765919"
	bob   = "9449306052"
)

// heldBy is an answer holding the study, filed under patientID ("" for none).
func heldBy(patientID string) []dcmjson.Dataset {
	ds := studyDS(studyUID)
	if patientID != "" {
		ds.SetStrings(dcmjson.TagPatientID, "LO", patientID)
	}
	return []dcmjson.Dataset{ds}
}

// TestLocatePatients: a location names each NHS number the holders file the study under,
// normalised, once, the preferred holder's first, and remembers them with the holders: a
// second Locate answers the same patients without asking any trust. A copy under a local
// number, or under none, adds nothing; disagreeing holders give both (the front refuses).
func TestLocatePatients(t *testing.T) {
	other := studyDS("1.2.826.0.1.3680043.8.498.10")
	other.SetStrings(dcmjson.TagPatientID, "LO", bob)
	inSequence := studyDS(studyUID)
	inSequence.SetStrings(dcmjson.TagPatientID, "LO", "MRN12345")
	item := dcmjson.Dataset{}
	item.SetStrings(dcmjson.TagPatientID, "LO", alice)
	inSequence.SetItems(dcmjson.TagOtherPatientIDsSequence, item)
	stale := &StaleError{Source: "B", Age: time.Minute, Err: &TransportError{Source: "B", Err: errors.New("refused")}}
	tests := []struct {
		name         string
		holders      []holder
		want         []string
		wantRemember bool
	}{
		{name: "holders agree", holders: []holder{{id: "A", answer: heldBy(alice)}, {id: "B", answer: heldBy(alice)}},
			want: []string{alice}, wantRemember: true},
		{name: "written with spaces", holders: []holder{{id: "A", answer: heldBy("943 476 5919")}, {id: "B", answer: heldBy(alice)}},
			want: []string{alice}, wantRemember: true},
		{name: "holders disagree", holders: []holder{{id: "B", priority: 2, answer: heldBy(bob)}, {id: "A", priority: 1, answer: heldBy(alice)}},
			want: []string{alice, bob}, wantRemember: true},
		{name: "a copy under a local number names no patient", holders: []holder{{id: "A", answer: heldBy("LOCAL-77")}, {id: "B", answer: heldBy(alice)}},
			want: []string{alice}, wantRemember: true},
		{name: "no holder names one", holders: []holder{{id: "A", answer: heldBy("")}, {id: "B", answer: heldBy("LOCAL-77")}},
			wantRemember: true},
		{name: "another study's patient is not this one's", holders: []holder{{id: "A", answer: append(heldBy(alice), other)}},
			want: []string{alice}, wantRemember: true},
		{name: "NHS number in OtherPatientIDsSequence", holders: []holder{{id: "A", patientIn: InOtherPatientIDsSequence, answer: []dcmjson.Dataset{inSequence}}},
			want: []string{alice}, wantRemember: true},
		{name: "a stale holder's patient counts", holders: []holder{{id: "A", answer: heldBy(alice)}, {id: "B", answer: heldBy(bob), err: stale}},
			want: []string{alice, bob}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			l, fakes := locatorFixture(t, cache.NewMemory(1<<20, nil), tc.holders...)
			if got := l.Locate(ctx, studyUID).Patients; !slices.Equal(got, tc.want) {
				t.Fatalf("patients = %v; want %v", got, tc.want)
			}
			before := totalCalls(fakes)
			again := l.Locate(ctx, studyUID)
			if remembered := totalCalls(fakes) == before; remembered != tc.wantRemember {
				t.Fatalf("second Locate remembered: %v; want %v", remembered, tc.wantRemember)
			}
			if !slices.Equal(again.Patients, tc.want) {
				t.Fatalf("second Locate's patients = %v; want %v", again.Patients, tc.want)
			}
		})
	}
}

// TestRememberPatients: a location remembered from a search carries the patients it was
// given, NHS numbers only, normalised.
func TestRememberPatients(t *testing.T) {
	ctx := context.Background()
	l, fakes := locatorFixture(t, cache.NewMemory(1<<20, nil), holder{id: "A"}, holder{id: "B"})
	l.Remember(ctx, studyUID, []string{"A", "B"}, "943 476 5919", "LOCAL-77", alice)
	loc := l.Locate(ctx, studyUID)
	if got := holderIDs(loc); !slices.Equal(got, []string{"A", "B"}) || totalCalls(fakes) != 0 {
		t.Fatalf("holders %v after %d calls; want [A B] from memory", got, totalCalls(fakes))
	}
	if !slices.Equal(loc.Patients, []string{alice}) {
		t.Fatalf("patients = %v; want [%s]", loc.Patients, alice)
	}
}

// TestLocatorEntryFormat: a location is stored under a key of its format's version, as the
// holders and the patients; an entry without the patient, under the key or in the format of
// the locator before it carried one, is a miss (the trusts are asked), never a location of
// unknown patient.
func TestLocatorEntryFormat(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		key   func(st *cache.Store) string
		value string
	}{
		{name: "the old key and format", key: func(st *cache.Store) string { return st.Key("locator", studyUID) }, value: "A"},
		{name: "the old format under the new key", key: func(st *cache.Store) string { return st.Key("locator", locatorFormat, studyUID) }, value: "A"},
		{name: "no holders", key: func(st *cache.Store) string { return st.Key("locator", locatorFormat, studyUID) }, value: `{"p":["` + alice + `"]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, fakes := locatorFixture(t, cache.NewMemory(1<<20, nil), holder{id: "A", answer: heldBy(alice)})
			l.store.Put(ctx, tc.key(l.store), []byte(tc.value), cache.Freshness{Fresh: time.Hour})
			loc := l.Locate(ctx, studyUID)
			if totalCalls(fakes) != 1 || !slices.Equal(loc.Patients, []string{alice}) {
				t.Fatalf("Locate made %d calls and found patients %v; want the trust asked (1) and [%s]", totalCalls(fakes), loc.Patients, alice)
			}
		})
	}
	l, _ := locatorFixture(t, cache.NewMemory(1<<20, nil), holder{id: "A", answer: heldBy(alice)})
	l.Locate(ctx, studyUID)
	e, ok := l.store.Lookup(ctx, "locator", l.store.Key("locator", locatorFormat, studyUID))
	if !ok || string(e.Value) != `{"h":["A"],"p":["`+alice+`"]}` {
		t.Fatalf("stored location %q (found %v); want the holders and the patient", e.Value, ok)
	}
}

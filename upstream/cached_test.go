package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// clock is a settable time source shared by the store and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cachedFixture is one source over a fake client, with a cache in front of it.
type cachedFixture struct {
	src   *Source
	fake  *fakeClient
	store *cache.Store
	mem   *cache.Memory
	clock *clock
}

func newCachedFixture(t *testing.T, fake *fakeClient, opts CacheOptions) *cachedFixture {
	t.Helper()
	clk := &clock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	mem := cache.NewMemory(8<<20, clk.now)
	keyer, err := cache.NewKeyer(bytes.Repeat([]byte{7}, cache.MinKeyerSecret), "t:")
	if err != nil {
		t.Fatal(err)
	}
	st, err := cache.NewStore(mem, keyer, cache.StoreOptions{MaxRetention: 24 * time.Hour, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	opts.Store = st
	cfg := SourceConfig{ID: "RXA", Name: "RXA Trust", BaseURL: mustParse(t, "http://pacs.example/dicom-web"), Timeout: testTimeout}
	src := NewSourceWithClient(cfg, fake, with(testOptions(), func(o *Options) {
		o.Cache, o.Breaker.MinRequests, o.Breaker.ConsecutiveUnreachable = opts, 1000, 1000
	}), discard())
	return &cachedFixture{src: src, fake: fake, store: st, mem: mem, clock: clk}
}

func patientStudy(nhs, uid string) dcmjson.Dataset {
	ds := studyDS(uid)
	ds.SetStrings(dcmjson.TagPatientID, "LO", nhs)
	return ds
}

var searchFreshness = CacheOptions{Search: cache.Freshness{Fresh: 30 * time.Second, Stale: 10 * time.Minute}}

func TestCachedSearch(t *testing.T) {
	q := url.Values{dcmjson.TagPatientID: {"9434765919"}}
	down := &TransportError{Source: "RXA", Err: errors.New("connection refused")}
	tests := []struct {
		name string
		// advance is how long after the first (successful) search the second one runs.
		advance time.Duration
		// fail makes the source fail from the second search on.
		fail        bool
		acceptStale bool
		wantCalls   int32
		wantStale   bool
		wantErr     bool
	}{
		{name: "fresh copy answers without the source", advance: 10 * time.Second, wantCalls: 1},
		{name: "fresh copy answers while the source is down", advance: 10 * time.Second, fail: true, wantCalls: 1},
		{name: "after the fresh period the source is asked again", advance: 31 * time.Second, wantCalls: 2},
		{name: "stale copy stands in when the caller accepts it", advance: 5 * time.Minute, fail: true, acceptStale: true, wantCalls: 2, wantStale: true},
		{name: "no stale copy for a caller that did not ask", advance: 5 * time.Minute, fail: true, wantCalls: 2, wantErr: true},
		{name: "nothing after the stale window", advance: 11 * time.Minute, fail: true, acceptStale: true, wantCalls: 2, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var failing atomic.Bool
			fake := &fakeClient{search: func(context.Context, string, url.Values) ([]dcmjson.Dataset, error) {
				if failing.Load() {
					return nil, down
				}
				return []dcmjson.Dataset{patientStudy("9434765919", "1.2.3")}, nil
			}}
			fx := newCachedFixture(t, fake, searchFreshness)
			ctx := context.Background()
			first, err := fx.src.Search(ctx, "studies", q)
			if err != nil || len(first) != 1 {
				t.Fatalf("first search: %v %v", first, err)
			}
			// The caller owns what it got: changing it must not change the cache.
			first[0].SetStrings(dcmjson.TagStudyInstanceUID, "UI", "9.9.9")
			fx.clock.add(tc.advance)
			failing.Store(tc.fail)
			if tc.acceptStale {
				ctx = AcceptStale(ctx)
			}
			got, err := fx.src.Search(ctx, "studies", q)
			if n := fake.calls.Load(); n != tc.wantCalls {
				t.Errorf("%d calls reached the source; want %d", n, tc.wantCalls)
			}
			se, stale := AsStale(err)
			switch {
			case tc.wantStale:
				if !stale || len(got) != 1 || got[0].String(dcmjson.TagStudyInstanceUID) != "1.2.3" {
					t.Fatalf("got %v, %v; want the stale copy with a StaleError", got, err)
				}
				if se.Age != tc.advance || se.Source != "RXA" || !errors.Is(err, down) || Classify(err).Class != ClassUnreachable {
					t.Errorf("StaleError %+v (class %v); want age %v, source RXA, wrapping the failure", se, Classify(err).Class, tc.advance)
				}
			case tc.wantErr:
				if err == nil || stale || got != nil {
					t.Fatalf("got %v, %v; want the source's error and no answer", got, err)
				}
			default:
				if err != nil || len(got) != 1 || got[0].String(dcmjson.TagStudyInstanceUID) != "1.2.3" {
					t.Fatalf("got %v, %v; want the study as first answered", got, err)
				}
			}
		})
	}
}

func TestCachedSearchKeys(t *testing.T) {
	fake := &fakeClient{search: func(context.Context, string, url.Values) ([]dcmjson.Dataset, error) {
		return []dcmjson.Dataset{patientStudy("9434765919", "1.2.3")}, nil
	}}
	fx := newCachedFixture(t, fake, searchFreshness)
	ctx := context.Background()
	a := url.Values{dcmjson.TagPatientID: {"9434765919"}}
	for _, q := range []url.Values{a, {dcmjson.TagPatientID: {"9449306052"}}, a, {dcmjson.TagPatientID: {"9434765919"}, "includefield": {"00081030"}}} {
		if _, err := fx.src.Search(ctx, "studies", q); err != nil {
			t.Fatal(err)
		}
	}
	if n := fake.calls.Load(); n != 3 {
		t.Errorf("%d calls for 3 distinct searches (one repeated); want 3", n)
	}
	if _, err := fx.src.Search(BypassCache(ctx), "studies", a); err != nil {
		t.Fatal(err)
	}
	if n := fake.calls.Load(); n != 4 {
		t.Errorf("BypassCache did not reach the source (%d calls)", n)
	}
}

func TestCachedSearchCoalesces(t *testing.T) {
	release := make(chan struct{})
	fake := &fakeClient{search: func(ctx context.Context, _ string, _ url.Values) ([]dcmjson.Dataset, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []dcmjson.Dataset{patientStudy("9434765919", "1.2.3")}, nil
	}}
	fx := newCachedFixture(t, fake, searchFreshness)
	q := url.Values{dcmjson.TagPatientID: {"9434765919"}}
	const n = 20
	var wg sync.WaitGroup
	results := make([][]dcmjson.Dataset, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { results[i], errs[i] = fx.src.Search(context.Background(), "studies", q) })
	}
	// Let every caller join before the one upstream call answers.
	deadline := time.Now().Add(5 * time.Second)
	for fx.src.Status().InFlight < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if c := fake.calls.Load(); c != 1 {
		t.Fatalf("%d concurrent identical searches made %d upstream calls; want 1", n, c)
	}
	for i := range n {
		if errs[i] != nil || len(results[i]) != 1 {
			t.Fatalf("caller %d: %v %v", i, results[i], errs[i])
		}
		if i > 0 && &results[i][0] == &results[0][0] {
			t.Fatal("callers share one slice; each must get its own copy")
		}
	}
}

func TestCachedSearchIndexesPatientAndStudies(t *testing.T) {
	fake := &fakeClient{search: func(_ context.Context, _ string, q url.Values) ([]dcmjson.Dataset, error) {
		if q.Get(dcmjson.TagPatientID) == "9449306052" {
			return []dcmjson.Dataset{patientStudy("9449306052", "7.7")}, nil
		}
		return []dcmjson.Dataset{patientStudy("9434765919", "1.1"), patientStudy("9434765919", "1.2")}, nil
	}}
	fx := newCachedFixture(t, fake, searchFreshness)
	ctx := context.Background()
	alpha := url.Values{dcmjson.TagPatientID: {"9434765919"}}
	bravo := url.Values{dcmjson.TagPatientID: {"9449306052"}}
	byUID := url.Values{dcmjson.TagStudyInstanceUID: {"1.2"}}
	for _, q := range []url.Values{alpha, bravo, byUID} {
		if _, err := fx.src.Search(ctx, "studies", q); err != nil {
			t.Fatal(err)
		}
	}
	n, err := fx.store.PurgePatient(ctx, "943 476 5919")
	if err != nil || n == 0 {
		t.Fatalf("purge removed %d keys, %v", n, err)
	}
	for _, q := range []url.Values{alpha, byUID, bravo} {
		if _, err := fx.src.Search(ctx, "studies", q); err != nil {
			t.Fatal(err)
		}
	}
	// The patient's search and the search by one of their studies' UIDs (whose answer names
	// them) are gone; the other patient's is still cached.
	if c := fake.calls.Load(); c != 5 {
		t.Errorf("%d calls after purge; want 5 (3 first, then the 2 purged again)", c)
	}
}

// TestCachedSearchAboutAStudyIsPurgedWithItsPatient: searches about a study whose answers do
// not name it (an instance listing's pages, the last one empty; a series search whose results
// name neither study nor patient; a search by study UID at a trust that does not hold it, as
// the locator makes) are cached under the study, so purging the patient whose search listed
// the study removes them too.
func TestCachedSearchAboutAStudyIsPurgedWithItsPatient(t *testing.T) {
	fake := &fakeClient{search: func(_ context.Context, path string, q url.Values) ([]dcmjson.Dataset, error) {
		switch {
		case path == "studies" && q.Get(dcmjson.TagPatientID) != "":
			return []dcmjson.Dataset{patientStudy("9434765919", "1.1")}, nil
		case path == "studies/1.1/series":
			ds := dcmjson.Dataset{}
			ds.SetStrings(dcmjson.TagSeriesInstanceUID, "UI", "1.1.1")
			return []dcmjson.Dataset{ds}, nil
		}
		return []dcmjson.Dataset{}, nil
	}}
	fx := newCachedFixture(t, fake, searchFreshness)
	ctx := context.Background()
	searches := []struct {
		path  string
		query url.Values
	}{
		{"studies", url.Values{dcmjson.TagPatientID: {"9434765919"}}},
		{"studies/1.1/instances", url.Values{"offset": {"1000"}}},
		{"studies/1.1/series", nil},
		{"studies", url.Values{dcmjson.TagStudyInstanceUID: {"1.1"}}},
	}
	for _, s := range searches {
		if _, err := fx.src.Search(ctx, s.path, s.query); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := fx.store.PurgePatient(ctx, "9434765919"); err != nil || n == 0 {
		t.Fatalf("purge removed %d keys, %v", n, err)
	}
	for _, s := range searches {
		before := fake.calls.Load()
		if _, err := fx.src.Search(ctx, s.path, s.query); err != nil {
			t.Fatal(err)
		}
		if fake.calls.Load() == before {
			t.Errorf("GET %s answered from the cache after its patient was purged", s.path)
		}
	}
}

// metadataFetch answers a metadata request with a JSON array naming the patient.
func metadataFetch(body string, calls *atomic.Int32, fail *atomic.Bool) func(context.Context, string, url.Values, string) (*http.Response, error) {
	return func(_ context.Context, path string, _ url.Values, _ string) (*http.Response, error) {
		calls.Add(1)
		if fail.Load() {
			return nil, &StatusError{Source: "RXA", Status: http.StatusBadGateway}
		}
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/dicom+json"}},
			Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}, nil
	}
}

func TestCachedMetadata(t *testing.T) {
	ds := patientStudy("9434765919", "1.2.3")
	ds.SetStrings(dcmjson.TagSOPInstanceUID, "UI", "1.2.3.4.5")
	body := string(encodeDatasets([]dcmjson.Dataset{ds}))
	var calls atomic.Int32
	var fail atomic.Bool
	fake := &fakeClient{}
	fake.fetch = metadataFetch(body, &calls, &fail)
	fx := newCachedFixture(t, fake, CacheOptions{Metadata: cache.Freshness{Fresh: time.Minute, Stale: time.Hour}})
	ctx := context.Background()
	read := func(ctx context.Context) (string, error) {
		resp, err := fx.src.Fetch(ctx, "studies/1.2.3/metadata", nil, "application/dicom+json")
		if resp == nil {
			return "", err
		}
		defer resp.Body.Close()
		b, rerr := io.ReadAll(resp.Body)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if resp.Header.Get("Content-Type") != "application/dicom+json" {
			t.Errorf("content type %q", resp.Header.Get("Content-Type"))
		}
		return string(b), err
	}
	for range 2 {
		if got, err := read(ctx); err != nil || got != body {
			t.Fatalf("metadata %q, %v; want the source's body", got, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("%d fetches for two reads within the fresh period; want 1", calls.Load())
	}
	fx.clock.add(2 * time.Minute)
	fail.Store(true)
	if _, err := read(ctx); err == nil {
		t.Fatal("a failed source with no AcceptStale answered")
	}
	got, err := read(AcceptStale(ctx))
	if se, ok := AsStale(err); !ok || got != body || se.Age != 2*time.Minute {
		t.Fatalf("with AcceptStale: %q, %v; want the stale copy, 2m old", got, err)
	}
	// A source that answers 404 has answered: the study is gone, and no copy stands in.
	fake.fetch = func(context.Context, string, url.Values, string) (*http.Response, error) {
		return nil, &StatusError{Source: "RXA", Status: http.StatusNotFound}
	}
	if got, err := read(AcceptStale(ctx)); !IsNotFound(err) || got != "" {
		t.Fatalf("after a 404 with AcceptStale: %q, %v; want the 404 and no copy", got, err)
	}
	// Frames and whole instances are never cached.
	other := &fakeClient{fetch: func(context.Context, string, url.Values, string) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("x"))}, nil
	}}
	fx2 := newCachedFixture(t, other, CacheOptions{Metadata: cache.Freshness{Fresh: time.Minute}, Rendered: cache.Freshness{Fresh: time.Minute}, RenderedMaxBytes: 2 << 20})
	for range 2 {
		for _, p := range []string{"studies/1.2.3/series/4/instances/5/frames/1", "studies/1.2.3"} {
			resp, err := fx2.src.Fetch(ctx, p, nil, "multipart/related")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	if n := other.calls.Load(); n != 4 {
		t.Errorf("%d fetches of frames and a study, each twice; want 4 (never cached)", n)
	}
}

func TestCachedRenderedSizeCap(t *testing.T) {
	small, large := bytes.Repeat([]byte{0xff}, 100), bytes.Repeat([]byte{0xee}, 5000)
	fake := &fakeClient{fetch: func(_ context.Context, path string, _ url.Values, _ string) (*http.Response, error) {
		b := small
		if strings.Contains(path, "/large/") {
			b = large
		}
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"image/jpeg"}}, Body: io.NopCloser(bytes.NewReader(b))}, nil
	}}
	fx := newCachedFixture(t, fake, CacheOptions{Rendered: cache.Freshness{Fresh: time.Hour}, RenderedMaxBytes: 1000})
	ctx := context.Background()
	for _, tc := range []struct {
		path      string
		want      []byte
		wantCalls int32
	}{
		{"studies/1.2/series/3/instances/small/rendered", small, 1},
		{"studies/1.2/series/3/instances/small/rendered", small, 1},
		{"studies/1.2/series/3/instances/large/rendered", large, 2},
		{"studies/1.2/series/3/instances/large/rendered", large, 3},
	} {
		resp, err := fx.src.Fetch(ctx, tc.path, url.Values{"quality": {"90"}}, "image/jpeg")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Fatalf("%s: %d bytes, %v; want %d", tc.path, len(got), err, len(tc.want))
		}
		if n := fake.calls.Load(); n != tc.wantCalls {
			t.Errorf("%s: %d calls; want %d", tc.path, n, tc.wantCalls)
		}
	}
}

func TestCachedSourceCacheDown(t *testing.T) {
	// Every cache operation fails: requests still go to the source and succeed.
	keyer, err := cache.NewKeyer(bytes.Repeat([]byte{7}, cache.MinKeyerSecret), "t:")
	if err != nil {
		t.Fatal(err)
	}
	st, err := cache.NewStore(&brokenCache{}, keyer, cache.StoreOptions{MaxRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeClient{search: func(context.Context, string, url.Values) ([]dcmjson.Dataset, error) {
		return []dcmjson.Dataset{studyDS("1.2.3")}, nil
	}}
	opts := searchFreshness
	opts.Store = st
	cfg := SourceConfig{ID: "RXA", BaseURL: mustParse(t, "http://pacs.example/dicom-web"), Timeout: testTimeout}
	src := NewSourceWithClient(cfg, fake, with(testOptions(), func(o *Options) { o.Cache = opts }), discard())
	for range 3 {
		got, err := src.Search(context.Background(), "studies", url.Values{dcmjson.TagStudyInstanceUID: {"1.2.3"}})
		if err != nil || len(got) != 1 {
			t.Fatalf("search with the cache down: %v %v", got, err)
		}
	}
	if n := fake.calls.Load(); n != 3 {
		t.Errorf("%d calls; want 3 (nothing cached)", n)
	}
}

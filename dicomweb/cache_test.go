package dicomweb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/upstream"
)

// testClock is a settable clock for the sources' cache.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cachingProxy is the test proxy with an in-process cache in front of each source, on clk.
func cachingProxy(t *testing.T, clk *testClock, serveStale bool, origins ...*fakeOrigin) *testProxy {
	t.Helper()
	return cachingProxyWith(t, clk, serveStale, false, origins...)
}

// cachingProxyWith is cachingProxy whose locator shares the sources' cache and clock when
// sharedLocator, so its entries expire as the clock moves.
func cachingProxyWith(t *testing.T, clk *testClock, serveStale, sharedLocator bool, origins ...*fakeOrigin) *testProxy {
	t.Helper()
	keyer, err := cache.NewKeyer(bytes.Repeat([]byte{1}, cache.MinKeyerSecret), "t:")
	if err != nil {
		t.Fatal(err)
	}
	st, err := cache.NewStore(cache.NewMemory(8<<20, clk.now), keyer, cache.StoreOptions{MaxRetention: 24 * time.Hour, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	var loc *cache.Store
	if sharedLocator {
		loc = st
	}
	return newTestProxyWith(t, proxyOptions{serveStale: serveStale, locator: loc, cache: upstream.CacheOptions{
		Store:    st,
		Search:   cache.Freshness{Fresh: 30 * time.Second, Stale: time.Hour},
		Metadata: cache.Freshness{Fresh: 30 * time.Second, Stale: time.Hour},
	}}, origins...)
}

// bulkLinkPattern matches a bulk data link the proxy signed.
var bulkLinkPattern = regexp.MustCompile(`/dicom-web/bulkdata/[A-Za-z0-9_.-]+`)

// sameMetadata reports whether two metadata answers are the same once each bulk data link is
// replaced by what it verifies to (the trust, study, path, series and instance). Links are
// signed for each answer with their own expiry, so a copy served from the cache carries
// different bytes for the same link; a link that fails to verify fails the test.
func (p *testProxy) sameMetadata(t *testing.T, a, b []byte) bool {
	t.Helper()
	resolve := func(body []byte) []byte {
		return bulkLinkPattern.ReplaceAllFunc(body, func(link []byte) []byte {
			token := strings.TrimPrefix(string(link), "/dicom-web/bulkdata/")
			l, err := p.signer.Verify(token)
			if err != nil {
				t.Errorf("bulk data link %s does not verify: %v", link, err)
				return link
			}
			return fmt.Appendf(nil, "/dicom-web/bulkdata/{%s %s %s %s %s}", l.Source, l.Study, l.Rel, l.Series, l.Instance)
		})
	}
	ra, rb := resolve(a), resolve(b)
	if !bulkLinkPattern.Match(a) {
		t.Errorf("metadata carries no bulk data link: %s", a)
	}
	return bytes.Equal(ra, rb)
}

func studiesOf(t *testing.T, body []byte) []string {
	t.Helper()
	var list []map[string]struct {
		Value []any `json:"Value"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("answer is not DICOM JSON: %v: %s", err, body)
	}
	var out []string
	for _, ds := range list {
		if v := ds["0020000D"].Value; len(v) == 1 {
			out = append(out, v[0].(string))
		}
	}
	return out
}

func TestSearchFromCache(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	a, b := twoTrusts(t)
	p := cachingProxy(t, clk, true, a, b)
	path := "/dicom-web/studies?PatientID=" + alice

	resp, first := p.get(t, path)
	if resp.StatusCode != http.StatusOK || len(resp.Header.Values("Warning")) != 0 {
		t.Fatalf("first search: %d %q", resp.StatusCode, resp.Header.Values("Warning"))
	}
	calls := p.upstreamCalls()

	// Within the fresh period: the same answer, and no trust is asked.
	clk.add(10 * time.Second)
	resp, again := p.get(t, path)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(first, again) || len(resp.Header.Values("Warning")) != 0 {
		t.Fatalf("repeated search: %d, same body %v, warnings %q", resp.StatusCode, bytes.Equal(first, again), resp.Header.Values("Warning"))
	}
	if n := p.upstreamCalls(); n != calls {
		t.Fatalf("a repeated search within the fresh period made %d upstream calls", n-calls)
	}

	// Past the fresh period with TB down: TB's stale copy stands in, marked.
	clk.add(time.Minute)
	b.down.Store(true)
	resp, body := p.get(t, path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("search with TB down: %d %s", resp.StatusCode, body)
	}
	if got, want := strings.Join(studiesOf(t, body), ","), strings.Join(studiesOf(t, first), ","); got != want {
		t.Errorf("studies %s; want %s (TB's from its stale copy)", got, want)
	}
	w := resp.Header.Values("Warning")
	if len(w) != 2 || !strings.HasPrefix(w[0], `110 `) || !strings.Contains(w[0], `"Response is Stale"`) ||
		!strings.Contains(w[1], `Results from TB (TB Trust) are from a copy cached 1m10s ago: its PACS answered 502`) {
		t.Errorf("warnings %q; want 110 and a 299 naming TB and the copy's age", w)
	}
	if p.upstreamCalls() == calls {
		t.Error("past the fresh period the trusts were not asked")
	}

	// The study held only at TB: its metadata is served from the stale copy too... once it was
	// read while TB was up.
	b.down.Store(false)
	resp, meta := p.get(t, "/dicom-web/studies/1.3/metadata")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata: %d %s", resp.StatusCode, meta)
	}
	clk.add(time.Minute)
	b.down.Store(true)
	resp, staleMeta := p.get(t, "/dicom-web/studies/1.3/metadata")
	w = resp.Header.Values("Warning")
	if resp.StatusCode != http.StatusOK || !p.sameMetadata(t, meta, staleMeta) || len(w) != 2 || !strings.HasPrefix(w[0], "110 ") ||
		!strings.Contains(w[1], "The metadata of the study from TB (TB Trust) is a copy cached 1m0s ago") {
		t.Errorf("stale metadata: %d, same metadata %v, warnings %q", resp.StatusCode, p.sameMetadata(t, meta, staleMeta), w)
	}
}

func TestSearchStaleDisabled(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	a, b := twoTrusts(t)
	p := cachingProxy(t, clk, false, a, b)
	path := "/dicom-web/studies?PatientID=" + alice
	if resp, _ := p.get(t, path); resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	clk.add(time.Minute)
	b.down.Store(true)
	resp, body := p.get(t, path)
	w := resp.Header.Values("Warning")
	if resp.StatusCode != http.StatusOK || len(w) != 1 || !strings.Contains(w[0], "Results from TB (TB Trust) are missing") {
		t.Fatalf("%d %q; want TB named as missing, no stale copy", resp.StatusCode, w)
	}
	for _, uid := range studiesOf(t, body) {
		if uid == "1.3" {
			t.Error("TB's study 1.3 was answered from a stale copy with serveStale off")
		}
	}
}

func TestStaleMetadataAfterLocationExpired(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	a, b := twoTrusts(t)
	p := cachingProxyWith(t, clk, true, true, a, b)
	resp, meta := p.get(t, "/dicom-web/studies/1.3/metadata")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata: %d %s", resp.StatusCode, meta)
	}
	// The locator's entry (1 minute) and the metadata's fresh period have passed; TB, the
	// only holder, is down. Its cached answers still say it holds 1.3.
	clk.add(5 * time.Minute)
	b.down.Store(true)
	resp, staleMeta := p.get(t, "/dicom-web/studies/1.3/metadata")
	w := resp.Header.Values("Warning")
	if resp.StatusCode != http.StatusOK || !p.sameMetadata(t, meta, staleMeta) || len(w) != 2 || !strings.HasPrefix(w[0], "110 ") {
		t.Fatalf("stale metadata after the location expired: %d, same metadata %v, warnings %q", resp.StatusCode, p.sameMetadata(t, meta, staleMeta), w)
	}
	// Pixel data is never cached: the study itself cannot be had, and says who holds it.
	resp, body := p.get(t, "/dicom-web/studies/1.3", "Accept", `multipart/related; type="application/dicom"`)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "TB") {
		t.Errorf("retrieve with the only holder down: %d %s; want 503 naming TB", resp.StatusCode, body)
	}
}

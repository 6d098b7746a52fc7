package cacheint

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/test/orthanc"
	"github.com/nirproxy/nirproxy/test/redisserver"
)

// topology is a Redis as a test gives it to nirproxy: the addresses of its configuration and a
// client that reads Redis directly, around the proxy.
type topology struct {
	name  string
	addrs []string
	raw   redis.UniversalClient
}

// flush empties every node, so a subtest's scan sees only its own keys.
func (tp topology) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if cc, ok := tp.raw.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.FlushAll(ctx).Err() })
	} else {
		err = tp.raw.FlushAll(ctx).Err()
	}
	if err != nil {
		t.Fatalf("flush redis %s: %v", tp.name, err)
	}
}

// scanCache returns the cache's keys (those under its prefix, not the rate limits', which share
// its Redis) with their raw values, on every node of a cluster.
func (tp topology) scanCache(t *testing.T) map[string][]byte {
	t.Helper()
	kv := tp.scan(t)
	for k := range kv {
		if !strings.HasPrefix(k, keyPrefix) {
			delete(kv, k)
		}
	}
	return kv
}

// scan returns every key Redis holds with its raw value (on every node of a cluster).
func (tp topology) scan(t *testing.T) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := redisserver.ScanAll(ctx, tp.raw)
	if err != nil {
		t.Fatalf("scan redis %s: %v", tp.name, err)
	}
	return kv
}

// keyRE is the shape of every cache key nirproxy may write: its prefix and a hex HMAC, for an
// entry or a patient's or study's index.
var keyRE = regexp.MustCompile(`^nirproxy:v1:((patient|study):)?[0-9a-f]{64}$`)

// rateKeyRE is the shape of every key of the rate limits, which share the cache's Redis: a
// user's ({u:HMAC}) or organisation's ({o:HMAC}) request rate, or a user's patients.
var rateKeyRE = regexp.MustCompile(`^(rate:)?nirproxy:rl:v1:\{[uo]:[0-9a-f]{32}\}:(rate|patients)$`)

// TestCacheRedis runs the cache's promises against one Redis node and a 3-node Redis Cluster.
func TestCacheRedis(t *testing.T) {
	needRedis(t)
	for _, start := range []struct {
		name  string
		start func(t *testing.T) topology
	}{
		{"single node", func(t *testing.T) topology {
			s := redisserver.StartT(t, redisserver.Options{})
			return topology{name: "single node " + s.Addr(), addrs: []string{s.Addr()}, raw: s.Client()}
		}},
		{"3-node cluster", func(t *testing.T) topology {
			c := redisserver.StartClusterT(t, 3, redisserver.Options{})
			return topology{name: fmt.Sprintf("cluster %v", c.Addrs()), addrs: c.Addrs(), raw: c.ClusterClient()}
		}},
	} {
		t.Run(start.name, func(t *testing.T) {
			tp := start.start(t)
			for _, tc := range []struct {
				name string
				run  func(t *testing.T, tp topology)
			}{
				{"hit", testHit},
				{"expiry", testExpiry},
				{"coalescing", testCoalescing},
				{"stale", testStale},
				{"encryption at rest", testEncryptionAtRest},
				{"retention", testRetention},
				{"purge", testPurge},
			} {
				t.Run(tc.name, func(t *testing.T) {
					tp.flush(t)
					tc.run(t, tp)
				})
			}
		})
	}
}

// testHit: the same search twice within the fresh period reaches each trust once, and the
// second answer, from the cache, is the first's bytes.
func testHit(t *testing.T, tp topology) {
	r := startRig(t, cacheConfig{redisAddrs: tp.addrs, search: freshness{30 * time.Second, 10 * time.Minute}})
	checkHit(t, r)
	if n := len(tp.scan(t)); n == 0 {
		t.Errorf("redis %s holds no key after a cached search: the answers were not cached in Redis", tp.name)
	}
}

// checkHit searches for PatientAlpha twice and checks that the second answer came from the
// cache: no request reached either trust, the bytes are the same, and the hit counter rose.
func checkHit(t *testing.T, r *rig) {
	t.Helper()
	want := studiesOf(orthanc.PatientAlpha, "")
	hits0 := r.metric(searchHits)
	first := r.search(orthanc.PatientAlpha)
	wantStudies(t, first, want)
	r.wantNoWarnings(first)
	before := map[string]int{}
	for id, tp := range r.taps {
		if n := tp.count(studySearch(orthanc.PatientAlpha, "")); n != 1 {
			t.Errorf("first search: %s received %d study searches for the patient, want 1: %q", id, n, tp.requests())
		}
		before[id] = tp.total()
	}
	hits1 := r.metric(searchHits)

	second := r.search(orthanc.PatientAlpha)
	wantStudies(t, second, want)
	r.wantNoWarnings(second)
	for id, tp := range r.taps {
		if n := tp.total(); n != before[id] {
			t.Errorf("second search within the fresh period reached %s: %d requests, %d before; all: %q", id, n, before[id], tp.requests())
		}
	}
	if string(first.body) != string(second.body) {
		t.Errorf("the cached answer differs from the first:\nfirst:  %.500s\nsecond: %.500s", first.body, second.body)
	}
	hits2 := r.metric(searchHits)
	// One study search per trust at least; the per-holder series counts of the shared study
	// are cached searches too.
	if hits2-hits1 < 2 {
		t.Errorf("%s rose by %v over the second search (from %v to %v), want at least 2 (one per trust)", searchHits, hits2-hits1, hits1, hits2)
	}
	t.Logf("search hits: %v before, %v after the first search, %v after the second", hits0, hits1, hits2)
}

// testExpiry: within the fresh period the same search is answered from the cache; once the
// period has passed it reaches the trusts again.
//
// The period is long, so that the two searches certainly fall within it however slow the
// machine, and its passing is driven rather than waited for: every entry in Redis is aged as
// if fresh+1s had passed (ageEntries), so both checks always run.
func testExpiry(t *testing.T, tp topology) {
	const fresh = 30 * time.Second
	r := startRig(t, cacheConfig{redisAddrs: tp.addrs, search: freshness{fresh, 10 * time.Minute}})
	want := studiesOf(orthanc.PatientAlpha, "")
	// The entry is stored after sent and before its answer is received.
	sent := time.Now()
	wantStudies(t, r.search(orthanc.PatientAlpha), want)
	a := r.search(orthanc.PatientAlpha)
	wantStudies(t, a, want)
	if elapsed := time.Since(sent); elapsed >= fresh {
		t.Fatalf("the two searches took %v, past the fresh period %v: the check of the fresh period cannot be judged", elapsed, fresh)
	}
	for id, tp := range r.taps {
		if n := tp.count(studySearch(orthanc.PatientAlpha, "")); n != 1 {
			t.Errorf("within the fresh period %s received %d study searches, want 1", id, n)
		}
	}

	if n := ageEntries(t, tp, r, fresh+time.Second); n == 0 {
		t.Fatalf("redis %s holds no cache entry to age after two searches", tp.name)
	}
	a = r.search(orthanc.PatientAlpha)
	wantStudies(t, a, want)
	r.wantNoWarnings(a)
	for id, tp := range r.taps {
		if n := tp.count(studySearch(orthanc.PatientAlpha, "")); n != 2 {
			t.Errorf("after the fresh period (%v) %s received %d study searches in all, want 2: %q", fresh, id, n, tp.requests())
		}
	}
}

// ageEntries makes every cache entry in Redis look by as much older as if by had passed: it
// opens each entry with the proxy's key, moves back the two times at the head of its envelope
// (version 1 | stored, Unix ms | fresh until, Unix ms | value, as cache.Store writes it), and
// writes it back sealed, keeping its TTL. Indexes are left alone. It returns how many entries
// it aged.
func ageEntries(t *testing.T, tp topology, r *rig, by time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 0
	for k, v := range tp.scanCache(t) {
		if r.keyer.IsIndexKey(k) {
			continue
		}
		plain, err := r.sealer.Open(v, []byte(k))
		if err != nil {
			t.Fatalf("open cache entry %s with the proxy's key: %v", k, err)
		}
		if len(plain) < 17 || plain[0] != 1 {
			t.Fatalf("cache entry %s is not in envelope layout 1 (%.1x...): update ageEntries to the layout cache.Store writes", k, plain)
		}
		for _, at := range []int{1, 9} {
			ms := int64(binary.BigEndian.Uint64(plain[at : at+8]))
			binary.BigEndian.PutUint64(plain[at:at+8], uint64(ms-by.Milliseconds()))
		}
		sealed, err := r.sealer.Seal(plain, []byte(k))
		if err != nil {
			t.Fatalf("seal aged cache entry %s: %v", k, err)
		}
		if err := tp.raw.SetArgs(ctx, k, sealed, redis.SetArgs{KeepTTL: true}).Err(); err != nil {
			t.Fatalf("write aged cache entry %s: %v", k, err)
		}
		n++
	}
	return n
}

// testCoalescing: 20 identical searches at once, with both trusts slow, make one upstream call
// per trust, and all 20 get the same answer.
func testCoalescing(t *testing.T, tp topology) {
	const n = 20
	r := startRig(t, cacheConfig{redisAddrs: tp.addrs, search: freshness{30 * time.Second, 10 * time.Minute}})
	for _, tp := range r.taps {
		tp.setDelay(300 * time.Millisecond)
	}
	coalesced0 := r.metric(searchCoalesced)
	answers := make([]answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			answers[i] = r.search(orthanc.PatientAlpha)
		})
	}
	close(start)
	wg.Wait()
	want := studiesOf(orthanc.PatientAlpha, "")
	for i, a := range answers {
		if a.err != nil || a.status != http.StatusOK {
			t.Errorf("search %d of %d: status %d, %v; Warning %q; body %.300s", i+1, n, a.status, a.err, a.header.Values("Warning"), a.body)
			continue
		}
		if string(a.body) != string(answers[0].body) {
			t.Errorf("search %d of %d answered other bytes than the first:\n%.400s\nvs\n%.400s", i+1, n, a.body, answers[0].body)
		}
	}
	if !t.Failed() {
		wantStudies(t, answers[0], want)
	}
	for id, tp := range r.taps {
		if got := tp.count(studySearch(orthanc.PatientAlpha, "")); got != 1 {
			t.Errorf("%d concurrent identical searches made %d study searches at %s, want 1: %q", n, got, id, tp.requests())
		}
	}
	coalesced := r.metric(searchCoalesced) - coalesced0
	if coalesced < 2 {
		t.Errorf("%s rose by %v, want at least 2: the searches were not coalesced", searchCoalesced, coalesced)
	}
	t.Logf("%s rose by %v over %d concurrent searches of 2 trusts", searchCoalesced, coalesced, n)
}

// downMethod is a way of making a trust unable to answer, and of undoing it.
type downMethod struct {
	name string
	down func(t *testing.T, r *rig, id string)
}

// downMethods are the outages the stale tests cover: the trust's front end failing, its
// connections dropping, and its PACS process gone.
var downMethods = []downMethod{
	{"tap answers 502", func(t *testing.T, r *rig, id string) { r.tap(id).setMode(fail502) }},
	{"tap closes connections", func(t *testing.T, r *rig, id string) { r.tap(id).setMode(hangUp) }},
	{"Orthanc killed", func(t *testing.T, r *rig, id string) {
		if err := fx.orthancs[id].Kill(); err != nil {
			t.Fatalf("kill Orthanc %s: %v", id, err)
		}
		t.Cleanup(func() { restartOrthanc(t, id) })
	}},
}

// testStale: with ORA down once the fresh period has passed, its stale copies answer, marked;
// with serveStale false they do not.
func testStale(t *testing.T, tp topology) {
	for _, dm := range downMethods {
		t.Run(dm.name, func(t *testing.T) { checkStale(t, tp, dm) })
	}
	t.Run("serveStale false", func(t *testing.T) { checkNoStale(t, tp) })
}

// staleFresh is the fresh period of the stale tests: short, so they wait little.
const staleFresh = time.Second

// checkStale caches PatientAlpha's search and StudyAlphaA's metadata, takes ORA down as dm
// says, and checks that after the fresh period both answer 200 from ORA's stale copies, with
// Warning 110 and a 299 naming ORA and the copy's age.
func checkStale(t *testing.T, tp topology, dm downMethod) {
	r := startRig(t, cacheConfig{
		redisAddrs: tp.addrs,
		search:     freshness{staleFresh, 10 * time.Minute},
		metadata:   freshness{staleFresh, 10 * time.Minute},
	})
	st := fx.manifest.Study(orthanc.StudyAlphaA)
	// Both entries are stored after sent and before the metadata answer is received.
	sent := time.Now()
	wantStudies(t, r.search(orthanc.PatientAlpha), studiesOf(orthanc.PatientAlpha, ""))
	meta := r.get(metadataPath(st.StudyInstanceUID))
	received := time.Now()
	wantOK(t, meta)
	r.wantNoWarnings(meta)
	if got := sortedUIDs(t, meta.what, meta.body, dcmjson.TagSOPInstanceUID); !slices.Equal(got, instancesOf(orthanc.StudyAlphaA)) {
		t.Fatalf("%s: instances %q, want %q", meta.what, got, instancesOf(orthanc.StudyAlphaA))
	}
	ora := r.tap(orthanc.SourceA)
	searches0, fetches0 := ora.count(studySearch(orthanc.PatientAlpha, "")), ora.count(metadataFetch(st.StudyInstanceUID))
	if fetches0 != 1 {
		t.Fatalf("ORA received %d metadata requests for the study, want 1: %q", fetches0, ora.requests())
	}

	dm.down(t, r, orthanc.SourceA)
	time.Sleep(time.Until(received.Add(staleFresh + 200*time.Millisecond)))

	a := r.search(orthanc.PatientAlpha)
	wantStudies(t, a, studiesOf(orthanc.PatientAlpha, ""))
	t.Logf("%s with ORA down: Warning %q", a.what, a.header.Values("Warning"))
	r.wantStale(a, "Results from ORA (Orthanc A Test Trust) are from a copy cached ", staleFresh, time.Since(sent)+time.Second)
	if n := ora.count(studySearch(orthanc.PatientAlpha, "")); n <= searches0 {
		t.Errorf("the stale answer was given without asking ORA (%d study searches, %d before): it is not a fallback", n, searches0)
	}

	m := r.get(metadataPath(st.StudyInstanceUID))
	wantOK(t, m)
	t.Logf("%s with ORA down: Warning %q", m.what, m.header.Values("Warning"))
	r.wantStale(m, "The metadata of the study from ORA (Orthanc A Test Trust) is a copy cached ", staleFresh, time.Since(sent)+time.Second)
	if got := sortedUIDs(t, m.what, m.body, dcmjson.TagSOPInstanceUID); !slices.Equal(got, instancesOf(orthanc.StudyAlphaA)) {
		t.Errorf("%s: stale metadata lists instances %q, want %q", m.what, got, instancesOf(orthanc.StudyAlphaA))
	}
	if n := ora.count(metadataFetch(st.StudyInstanceUID)); n <= fetches0 {
		t.Errorf("the stale metadata was given without asking ORA (%d requests, %d before): it is not a fallback", n, fetches0)
	}
}

// checkNoStale is checkStale with serveStale false: ORA is reported missing, and no stale copy
// is used.
func checkNoStale(t *testing.T, tp topology) {
	r := startRig(t, cacheConfig{
		redisAddrs: tp.addrs,
		noStale:    true,
		search:     freshness{staleFresh, 10 * time.Minute},
		metadata:   freshness{staleFresh, 10 * time.Minute},
	})
	st := fx.manifest.Study(orthanc.StudyAlphaA)
	wantStudies(t, r.search(orthanc.PatientAlpha), studiesOf(orthanc.PatientAlpha, ""))
	wantOK(t, r.get(metadataPath(st.StudyInstanceUID)))
	received := time.Now()
	r.tap(orthanc.SourceA).setMode(fail502)
	time.Sleep(time.Until(received.Add(staleFresh + 200*time.Millisecond)))

	a := r.search(orthanc.PatientAlpha)
	wantStudies(t, a, studiesOf(orthanc.PatientAlpha, orthanc.SourceB))
	missing := 0
	for _, w := range r.warnings(a) {
		if w.code == 110 || strings.Contains(w.text, "cached") {
			t.Errorf("%s: serveStale is false, yet a Warning says a stale copy answered: %d %q", a.what, w.code, w.text)
		}
		if w.code == 299 && strings.HasPrefix(w.text, "Results from ORA (Orthanc A Test Trust) are missing") {
			missing++
		}
	}
	t.Logf("%s with ORA down, serveStale false: Warning %q", a.what, a.header.Values("Warning"))
	if missing != 1 {
		t.Errorf("%s: %d Warning 299 saying ORA's results are missing, want 1; warnings %q", a.what, missing, a.header.Values("Warning"))
	}

	m := r.get(metadataPath(st.StudyInstanceUID))
	if m.err != nil {
		t.Fatalf("%s: %v", m.what, m.err)
	}
	t.Logf("%s with ORA down, serveStale false: status %d, Retry-After %q, Warning %q", m.what, m.status, m.header.Get("Retry-After"), m.header.Values("Warning"))
	if m.status != http.StatusServiceUnavailable {
		t.Errorf("%s: status %d with its only holder down and serveStale false, want 503 (partialRetrieve fail; no stale copy may stand in); Warning %q; body %.300s",
			m.what, m.status, m.header.Values("Warning"), m.body)
	}
	for _, w := range r.warnings(m) {
		if w.code == 110 {
			t.Errorf("%s: serveStale is false, yet Warning 110: %q", m.what, w.text)
		}
	}
}

// cacheAlpha fills the cache with PatientAlpha's search and the metadata of each of their
// studies, and returns their Study Instance UIDs.
func cacheAlpha(t *testing.T, r *rig) []string {
	t.Helper()
	wantStudies(t, r.search(orthanc.PatientAlpha), studiesOf(orthanc.PatientAlpha, ""))
	uids := studiesOf(orthanc.PatientAlpha, "")
	for _, uid := range uids {
		wantOK(t, r.get(metadataPath(uid)))
	}
	return uids
}

// identifiers are the data set's identifiers that Redis must never show: both NHS numbers,
// the patients' names and their parts, and every study, series and instance UID and
// accession number.
func identifiers() []string {
	out := []string{orthanc.PatientAlpha, orthanc.PatientBravo}
	seen := map[string]bool{}
	for _, st := range fx.manifest.Studies {
		if !seen[st.PatientName] {
			seen[st.PatientName] = true
			out = append(out, st.PatientName)
			out = append(out, strings.Split(st.PatientName, "^")...)
		}
		out = append(out, st.StudyInstanceUID, st.AccessionNumber)
		for _, se := range st.Series {
			out = append(out, se.SeriesInstanceUID)
			for _, in := range se.Instances {
				out = append(out, in.SOPInstanceUID)
			}
		}
	}
	return dedupe(out)
}

// testEncryptionAtRest: after a patient's searches and metadata, nothing in Redis, key or
// value, shows an identifier in clear or hex; every value opens only with the proxy's key,
// bound to its key, and what it holds does name the patient.
func testEncryptionAtRest(t *testing.T, tp topology) {
	r := startRig(t, cacheConfig{
		redisAddrs: tp.addrs,
		search:     freshness{30 * time.Second, 10 * time.Minute},
		metadata:   freshness{30 * time.Second, 10 * time.Minute},
	})
	uids := cacheAlpha(t, r)
	kv := tp.scan(t)
	if len(kv) == 0 {
		t.Fatalf("redis %s holds nothing after searches and metadata", tp.name)
	}
	patientIndex := r.keyer.PatientIndexKey(orthanc.PatientAlpha)
	if _, ok := kv[patientIndex]; !ok {
		t.Errorf("redis holds no index of the patient (want the key the proxy's secret gives, %s)", patientIndex)
	}
	for _, id := range identifiers() {
		forms := []string{id, hex.EncodeToString([]byte(id)), strings.ToUpper(hex.EncodeToString([]byte(id)))}
		for k, v := range kv {
			for _, f := range forms {
				if strings.Contains(k, f) {
					t.Errorf("redis key %q contains identifier %q (as %q)", k, id, f)
				}
				if strings.Contains(string(v), f) {
					t.Errorf("the value of redis key %q contains identifier %q (as %q)", k, id, f)
				}
			}
		}
	}
	// What the entries hold, opened with the proxy's key: it must name the patient and every
	// study, or the absence above proves nothing.
	var plain strings.Builder
	entries, indexes := 0, 0
	for k, v := range kv {
		if rateKeyRE.MatchString(k) {
			continue
		}
		if !keyRE.MatchString(k) {
			t.Errorf("redis key %q is not %s, nor %s", k, keyRE, rateKeyRE)
			continue
		}
		if r.keyer.IsIndexKey(k) {
			indexes++
			for _, member := range strings.Split(string(v), "\n") {
				if !keyRE.MatchString(member) {
					t.Errorf("index %q has a member %q that is not %s", k, member, keyRE)
				}
			}
			continue
		}
		entries++
		opened, err := r.sealer.Open(v, []byte(k))
		if err != nil {
			t.Errorf("the value of %q does not open with the proxy's encryption key, bound to its key: %v", k, err)
			continue
		}
		plain.Write(opened)
		if other := otherKey(kv, k); other != "" {
			if _, err := r.sealer.Open(v, []byte(other)); err == nil {
				t.Errorf("the value of %q also opens bound to key %q: values are not bound to their keys", k, other)
			}
		}
	}
	for _, want := range append([]string{orthanc.PatientAlpha}, uids...) {
		if !strings.Contains(plain.String(), want) {
			t.Errorf("no cached value, opened, holds %q: the cache did not store the patient's answers", want)
		}
	}
	t.Logf("redis %s: %d entries and %d indexes, none readable", tp.name, entries, indexes)
}

// otherKey returns some key of kv other than k, or "".
func otherKey(kv map[string][]byte, k string) string {
	for other := range kv {
		if other != k {
			return other
		}
	}
	return ""
}

// testRetention: every key's TTL is positive and at most cache.maxRetention, even where fresh
// and stale together are longer.
func testRetention(t *testing.T, tp topology) {
	const maxRetention = 30 * time.Second
	r := startRig(t, cacheConfig{
		redisAddrs:   tp.addrs,
		maxRetention: maxRetention,
		search:       freshness{2 * time.Second, 10 * time.Minute},
		metadata:     freshness{2 * time.Second, 10 * time.Minute},
	})
	cacheAlpha(t, r)
	kv := tp.scanCache(t)
	if len(kv) == 0 {
		t.Fatalf("redis %s holds nothing after searches and metadata", tp.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var longestEntry time.Duration
	for k := range kv {
		ttl, err := tp.raw.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", k, err)
		}
		if ttl <= 0 || ttl > maxRetention {
			t.Errorf("key %s has PTTL %v, want > 0 and <= cache.maxRetention %v", k, ttl, maxRetention)
		}
		if !r.keyer.IsIndexKey(k) {
			longestEntry = max(longestEntry, ttl)
		}
	}
	// Entries are fresh 2s and stale 10m: only the cap can have given them about 30s.
	if longestEntry < maxRetention-10*time.Second {
		t.Errorf("the longest entry TTL is %v; with stale windows of 10m it should be cut to about cache.maxRetention %v", longestEntry, maxRetention)
	}
	t.Logf("%d keys; the longest entry TTL %v", len(kv), longestEntry)
}

// testPurge: `nirproxy cache purge --patient` removes one patient's entries and indexes and
// leaves another's.
func testPurge(t *testing.T, tp topology) {
	r := startRig(t, cacheConfig{
		redisAddrs: tp.addrs,
		search:     freshness{time.Minute, 10 * time.Minute},
		metadata:   freshness{time.Minute, 10 * time.Minute},
	})
	alphaStudy := fx.manifest.Study(orthanc.StudyAlphaA).StudyInstanceUID
	bravoStudy := fx.manifest.Study(orthanc.StudyBravoA).StudyInstanceUID
	cacheAlpha(t, r)
	wantStudies(t, r.search(orthanc.PatientBravo), studiesOf(orthanc.PatientBravo, ""))
	wantOK(t, r.get(metadataPath(bravoStudy)))

	alphaIndex, bravoIndex := r.keyer.PatientIndexKey(orthanc.PatientAlpha), r.keyer.PatientIndexKey(orthanc.PatientBravo)
	before := tp.scanCache(t)
	for _, k := range []string{alphaIndex, bravoIndex} {
		if _, ok := before[k]; !ok {
			t.Fatalf("before the purge redis has no patient index %s", k)
		}
	}
	alphaEntries := strings.Split(string(before[alphaIndex]), "\n")

	stdout, stderr, err := r.purge(orthanc.PatientAlpha)
	if err != nil {
		t.Fatalf("nirproxy cache purge: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
	}
	m := regexp.MustCompile(`Removed (\d+) cache keys`).FindStringSubmatch(stdout)
	if m == nil || m[1] == "0" {
		t.Errorf("nirproxy cache purge printed %q, want how many keys it removed (more than 0); stderr %q", stdout, stderr)
	}
	for _, s := range patientSecrets {
		if strings.Contains(stdout+stderr, s) {
			t.Errorf("nirproxy cache purge printed the patient's identifier %q: stdout %q, stderr %q", s, stdout, stderr)
		}
	}
	after := tp.scanCache(t)
	if _, ok := after[alphaIndex]; ok {
		t.Errorf("after the purge redis still has the patient's index %s", alphaIndex)
	}
	for _, k := range alphaEntries {
		if _, ok := after[k]; ok {
			t.Errorf("after the purge redis still has %s, which the patient's index listed", k)
		}
	}
	if _, ok := after[bravoIndex]; !ok {
		t.Errorf("the purge of one patient removed the other patient's index %s", bravoIndex)
	}
	// Nothing the purged patient's indexes reached survives, and all that is left is the other
	// patient's: every surviving key is reached from their index.
	alphaReach, bravoReach := reach(r, before, alphaIndex), reach(r, after, bravoIndex)
	for k := range alphaReach {
		if _, ok := after[k]; ok && !bravoReach[k] {
			t.Errorf("after the purge redis still has %s, reached from the purged patient's index", k)
		}
	}
	for k := range after {
		if !bravoReach[k] {
			t.Errorf("after the purge redis has %s, which is not the other patient's: an entry of the purged patient that no index reached", k)
		}
	}
	for k := range reach(r, before, bravoIndex) {
		if _, ok := after[k]; !ok {
			t.Errorf("the purge removed %s, which the other patient's index reached", k)
		}
	}
	t.Logf("purge: %s; redis keys %d before, %d after", strings.TrimSpace(stdout), len(before), len(after))

	// The purged patient's answers come from the trusts again; the other's are still hits.
	counts := func(match func(tapRequest) bool) map[string]int {
		out := map[string]int{}
		for id, tp := range r.taps {
			out[id] = tp.count(match)
		}
		return out
	}
	alpha0, bravo0 := counts(studySearch(orthanc.PatientAlpha, "")), counts(studySearch(orthanc.PatientBravo, ""))
	alphaMeta0, bravoMeta0 := counts(metadataFetch(alphaStudy)), counts(metadataFetch(bravoStudy))
	wantStudies(t, r.search(orthanc.PatientAlpha), studiesOf(orthanc.PatientAlpha, ""))
	wantOK(t, r.get(metadataPath(alphaStudy)))
	wantStudies(t, r.search(orthanc.PatientBravo), studiesOf(orthanc.PatientBravo, ""))
	wantOK(t, r.get(metadataPath(bravoStudy)))
	for id, n := range counts(studySearch(orthanc.PatientAlpha, "")) {
		if n != alpha0[id]+1 {
			t.Errorf("after the purge the patient's search reached %s %d times, want once (the cache is gone)", id, n-alpha0[id])
		}
	}
	if n := counts(metadataFetch(alphaStudy))[orthanc.SourceA]; n != alphaMeta0[orthanc.SourceA]+1 {
		t.Errorf("after the purge the patient's study metadata reached ORA %d times, want once", n-alphaMeta0[orthanc.SourceA])
	}
	for id, n := range counts(studySearch(orthanc.PatientBravo, "")) {
		if n != bravo0[id] {
			t.Errorf("after the purge of another patient, this patient's search reached %s %d times, want 0 (still cached)", id, n-bravo0[id])
		}
	}
	for id, n := range counts(metadataFetch(bravoStudy)) {
		if n != bravoMeta0[id] {
			t.Errorf("after the purge of another patient, this patient's study metadata reached %s %d times, want 0 (still cached)", id, n-bravoMeta0[id])
		}
	}

	// A number with a wrong check digit is refused, and not repeated.
	const bad = "9434765918"
	stdout, stderr, err = r.purge(bad)
	if err == nil {
		t.Errorf("nirproxy cache purge --patient %s (wrong check digit) exited 0; stdout %q", bad, stdout)
	}
	if strings.Contains(stdout+stderr, bad) {
		t.Errorf("nirproxy cache purge echoed the number it refused: stdout %q, stderr %q", stdout, stderr)
	}
	if strings.TrimSpace(stderr) == "" {
		t.Errorf("nirproxy cache purge refused a bad number without saying why")
	}
}

// reach returns the keys of kv reached from the index key: the index, its members, and the
// members of the indexes among them, as far as purge follows them.
func reach(r *rig, kv map[string][]byte, index string) map[string]bool {
	out := map[string]bool{}
	var walk func(k string, depth int)
	walk = func(k string, depth int) {
		if out[k] || depth > 3 {
			return
		}
		if _, ok := kv[k]; !ok {
			return
		}
		out[k] = true
		if r.keyer.IsIndexKey(k) {
			for _, m := range strings.Split(string(kv[k]), "\n") {
				walk(m, depth+1)
			}
		}
	}
	walk(index, 0)
	return out
}

// dedupe returns in without repeats, in order, and without empty strings.
func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

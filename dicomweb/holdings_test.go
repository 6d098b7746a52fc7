package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/upstream"
)

// differingCopies returns two origins holding alice's study 2.1, neither copy a superset of
// the other: TA has series 2.1.1 {2.1.1.1, 2.1.1.2}; TB has 2.1.1 {2.1.1.1, 2.1.1.3} and
// 2.1.2 {2.1.2.1}. The union is 4 instances in 2 series. optsA and optsB set how each searches.
func differingCopies(t *testing.T, optsA, optsB fakeOptions) (*fakeOrigin, *fakeOrigin) {
	a := newFakeOriginWith(t, "TA", optsA,
		fakeInstance{alice, "2.1", "2.1.1", "2.1.1.1", "20240301"},
		fakeInstance{alice, "2.1", "2.1.1", "2.1.1.2", "20240301"},
	)
	b := newFakeOriginWith(t, "TB", optsB,
		fakeInstance{alice, "2.1", "2.1.1", "2.1.1.1", "20240301"},
		fakeInstance{alice, "2.1", "2.1.1", "2.1.1.3", "20240301"},
		fakeInstance{alice, "2.1", "2.1.2", "2.1.2.1", "20240301"},
	)
	return a, b
}

const acceptDICOM = `multipart/related; type="application/dicom"; transfer-syntax=*`

// TestRetrieveListsCappedHoldersCompletely: a PACS that silently returns fewer search results
// than asked (here one per answer, whatever limit says) is listed through every page, so a
// retrieve of a study or series held by it and another trust returns every instance held
// anywhere, each once. Without paging the plan would miss what lies past the first page.
func TestRetrieveListsCappedHoldersCompletely(t *testing.T) {
	tests := []struct {
		name         string
		optsA, optsB fakeOptions
		path         string
		want         []string
	}{
		{name: "second holder capped, study", optsB: fakeOptions{searchCap: 1}, path: "/dicom-web/studies/2.1",
			want: []string{"2.1.1.1", "2.1.1.2", "2.1.1.3", "2.1.2.1"}},
		{name: "both holders capped, study", optsA: fakeOptions{searchCap: 1}, optsB: fakeOptions{searchCap: 1}, path: "/dicom-web/studies/2.1",
			want: []string{"2.1.1.1", "2.1.1.2", "2.1.1.3", "2.1.2.1"}},
		{name: "second holder capped, series", optsB: fakeOptions{searchCap: 1}, path: "/dicom-web/studies/2.1/series/2.1.1",
			want: []string{"2.1.1.1", "2.1.1.2", "2.1.1.3"}},
		{name: "second holder ignores offset but sends all, and its count vouches", optsB: fakeOptions{ignoreOffset: true}, path: "/dicom-web/studies/2.1",
			want: []string{"2.1.1.1", "2.1.1.2", "2.1.1.3", "2.1.2.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := differingCopies(t, tc.optsA, tc.optsB)
			p := newTestProxy(t, a, b)
			resp, body := p.get(t, tc.path, "Accept", acceptDICOM)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := sopsOf(t, resp, body); strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("parts %v, want %v (every instance held anywhere, each once)", got, tc.want)
			}
		})
	}
}

// TestRetrieveRefusesUnprovableListing: a PACS that caps its answers and ignores offset sends
// the same first page again and again. Its listing cannot be proved complete (its count says
// it holds more, or it gives none), so the plan is refused: 503 naming the trust under the
// default partialRetrieve (fail), never a 200 that lacks the instances past its first page.
func TestRetrieveRefusesUnprovableListing(t *testing.T) {
	tests := []struct {
		name  string
		optsB fakeOptions
		path  string
	}{
		{name: "count shows the listing cut short", optsB: fakeOptions{searchCap: 1, ignoreOffset: true}, path: "/dicom-web/studies/2.1"},
		{name: "no count to check", optsB: fakeOptions{searchCap: 1, ignoreOffset: true, omitCounts: true}, path: "/dicom-web/studies/2.1"},
		{name: "series, count shows the listing cut short", optsB: fakeOptions{searchCap: 1, ignoreOffset: true}, path: "/dicom-web/studies/2.1/series/2.1.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := differingCopies(t, fakeOptions{}, tc.optsB)
			p := newTestProxy(t, a, b)
			before := b.calls.Load()
			resp, body := p.get(t, tc.path, "Accept", acceptDICOM)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503 (TB's listing cannot be proved complete): %s", resp.StatusCode, body)
			}
			if w := strings.Join(resp.Header.Values("Warning"), "|"); !strings.Contains(w, "TB (TB Trust)") {
				t.Fatalf("Warning %q; want TB named", w)
			}
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
			if n := b.calls.Load() - before; n > 10 {
				t.Fatalf("%d calls to TB; a PACS repeating its answers must be noticed at once", n)
			}
		})
	}
}

// TestRetrieveRefusesOverlappingPages: a PACS whose order changes between pages sends a page
// that repeats one instance and skips another, then an empty page. Its listing ends short of
// what it holds; only its own count can tell, so it is checked: a count larger than what was
// listed (or none) fails the holder (503 naming it), never a 200 without the skipped instance.
func TestRetrieveRefusesOverlappingPages(t *testing.T) {
	for name, opts := range map[string]fakeOptions{
		"count shows the skip": {searchCap: 2, unstableOrder: true},
		"no count to check":    {searchCap: 2, unstableOrder: true, omitCounts: true},
	} {
		t.Run(name, func(t *testing.T) {
			a, b := differingCopies(t, fakeOptions{}, opts)
			b.instances = append(b.instances, fakeInstance{alice, "2.1", "2.1.2", "2.1.2.2", "20240301"})
			p := newTestProxy(t, a, b)
			resp, body := p.get(t, "/dicom-web/studies/2.1", "Accept", acceptDICOM)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503 (TB's pages overlap and skip): %s", resp.StatusCode, body)
			}
			if w := strings.Join(resp.Header.Values("Warning"), "|"); !strings.Contains(w, "TB (TB Trust)") {
				t.Fatalf("Warning %q; want TB named", w)
			}
		})
	}
}

// TestSearchCountsDoNotChargeTrustsForTheDeadline: when a trust's listing for the counts is
// still running as the request's deadline passes, the listing is given up as a cancellation:
// the answer says the counts are incomplete, and the trust, which answered the search, is not
// charged (its breaker and /status count no failure).
func TestSearchCountsDoNotChargeTrustsForTheDeadline(t *testing.T) {
	a, b := differingCopies(t, fakeOptions{}, fakeOptions{})
	b.hangListing.Store(true)
	p := newTestProxyWith(t, proxyOptions{requestTimeout: 3 * time.Second, sourceTimeout: time.Minute}, a, b)
	resp, body := p.get(t, "/dicom-web/studies?PatientID="+alice)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if w := strings.Join(resp.Header.Values("Warning"), "|"); !strings.Contains(w, "The counts of") {
		t.Fatalf("Warning %q; want the counts of study 2.1 said to be incomplete", w)
	}
	for _, id := range []string{"TA", "TB"} {
		if n := p.sourceFailures(t, id); n != 0 {
			t.Errorf("%s counted %d failures; a listing given up at the request's deadline is no failure of the trust", id, n)
		}
	}
}

// TestListHoldingEndsAfterMaxPages: a PACS that sends new results on every page, for ever, is
// asked for maxListPages pages and no more, and its listing fails as incomplete.
func TestListHoldingEndsAfterMaxPages(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		ds := dcmjson.Dataset{}
		ds.SetStrings(dcmjson.TagSeriesInstanceUID, "UI", "3.1.1")
		ds.SetStrings(dcmjson.TagSOPInstanceUID, "UI", fmt.Sprintf("3.1.1.%d", n))
		writeTestJSON(w, []dcmjson.Dataset{ds})
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL + "/dicom-web")
	src := upstream.NewSource(upstream.SourceConfig{ID: "TE", Name: "TE Trust", BaseURL: u, Timeout: 2 * time.Second}, testSourceOptions(2*time.Second), slog.New(slog.DiscardHandler))

	h := listHoldings(context.Background(), "3.1", "", []*upstream.Source{src})
	if len(h.failed) != 1 || !errors.Is(h.failed[0].Err, fallback.ErrListingIncomplete) {
		t.Fatalf("failed %v; want TE's listing failed as incomplete", h.failed)
	}
	if len(h.listed) != 0 || len(h.holders) != 0 {
		t.Fatalf("listed %v; a failed holder's partial listing must not be used", h.listed)
	}
	if n := calls.Load(); n != maxListPages {
		t.Fatalf("%d pages asked; want exactly maxListPages (%d)", n, maxListPages)
	}
}

// in21 is an instance of alice's study 2.1.
func in21(series, sop string) fakeInstance {
	return fakeInstance{alice, "2.1", series, sop, "20240301"}
}

// seriesModality gives the series of study 2.1 their modalities at every fake origin.
var seriesModality = map[string]string{"2.1.1": "CT", "2.1.2": "MR"}

// resultOf returns the result whose tag is uid in a search answer.
func resultOf(t *testing.T, body []byte, tag, uid string) dcmjson.Dataset {
	t.Helper()
	for _, ds := range decodeList(t, body) {
		if ds.String(tag) == uid {
			return ds
		}
	}
	t.Fatalf("%s %s missing from the answer %s", tag, uid, body)
	return nil
}

// TestSearchCountsAreTheUnion: the counts of a study or series held by two trusts whose copies
// differ are the distinct instances, series and modalities held anywhere, asserted exactly, and
// equal to what a retrieve of the same study or series returns. A copy that omits its counts
// adds what it holds (listed), never 0; a capped copy is listed through every page.
func TestSearchCountsAreTheUnion(t *testing.T) {
	tests := []struct {
		name         string
		optsA, optsB fakeOptions
		atA, atB     []fakeInstance
		// wantInstances and wantSeries are the study's counts; wantModalities its
		// ModalitiesInStudy; wantPerSeries each series' NumberOfSeriesRelatedInstances.
		wantInstances, wantSeries int64
		wantModalities            []string
		wantPerSeries             map[string]int64
	}{
		{name: "overlapping copies",
			atA:           []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.2")},
			atB:           []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.3")},
			wantInstances: 3, wantSeries: 1, wantModalities: []string{"CT"}, wantPerSeries: map[string]int64{"2.1.1": 3}},
		{name: "disjoint copies",
			atA:           []fakeInstance{in21("2.1.1", "2.1.1.1")},
			atB:           []fakeInstance{in21("2.1.2", "2.1.2.1"), in21("2.1.2", "2.1.2.2")},
			wantInstances: 3, wantSeries: 2, wantModalities: []string{"CT", "MR"}, wantPerSeries: map[string]int64{"2.1.1": 1, "2.1.2": 2}},
		{name: "identical copies",
			atA:           []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.2")},
			atB:           []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.2")},
			wantInstances: 2, wantSeries: 1, wantModalities: []string{"CT"}, wantPerSeries: map[string]int64{"2.1.1": 2}},
		{name: "second copy without counts", optsB: fakeOptions{omitCounts: true},
			atA:           []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.2")},
			atB:           []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.3"), in21("2.1.2", "2.1.2.1")},
			wantInstances: 4, wantSeries: 2, wantModalities: []string{"CT", "MR"}, wantPerSeries: map[string]int64{"2.1.1": 3, "2.1.2": 1}},
		{name: "preferred copy without counts", optsA: fakeOptions{omitCounts: true},
			atA:           []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.2"), in21("2.1.2", "2.1.2.1")},
			atB:           []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.3")},
			wantInstances: 4, wantSeries: 2, wantModalities: []string{"CT", "MR"}, wantPerSeries: map[string]int64{"2.1.1": 3, "2.1.2": 1}},
		{name: "both copies without counts", optsA: fakeOptions{omitCounts: true}, optsB: fakeOptions{omitCounts: true},
			atA:           []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.2")},
			atB:           []fakeInstance{in21("2.1.1", "2.1.1.3")},
			wantInstances: 3, wantSeries: 1, wantModalities: []string{"CT"}, wantPerSeries: map[string]int64{"2.1.1": 3}},
		{name: "second copy capped at one result per answer", optsB: fakeOptions{searchCap: 1},
			atA:           []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.2")},
			atB:           []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.3"), in21("2.1.2", "2.1.2.1")},
			wantInstances: 4, wantSeries: 2, wantModalities: []string{"CT", "MR"}, wantPerSeries: map[string]int64{"2.1.1": 3, "2.1.2": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.optsA.modality, tc.optsB.modality = seriesModality, seriesModality
			a := newFakeOriginWith(t, "TA", tc.optsA, tc.atA...)
			b := newFakeOriginWith(t, "TB", tc.optsB, tc.atB...)
			p := newTestProxy(t, a, b)

			resp, body := p.get(t, "/dicom-web/studies?PatientID="+alice)
			if resp.StatusCode != http.StatusOK || len(resp.Header.Values("Warning")) != 0 {
				t.Fatalf("study search: %d %q: %s", resp.StatusCode, resp.Header.Values("Warning"), body)
			}
			st := resultOf(t, body, dcmjson.TagStudyInstanceUID, "2.1")
			inst, iok := st.Int(dcmjson.TagNumberOfStudyRelatedInstances)
			series, sok := st.Int(dcmjson.TagNumberOfStudyRelatedSeries)
			if !iok || !sok || inst != tc.wantInstances || series != tc.wantSeries {
				t.Errorf("study counts %d instances (present %v), %d series (present %v); want the union, %d and %d",
					inst, iok, series, sok, tc.wantInstances, tc.wantSeries)
			}
			if mods := st.Strings(dcmjson.TagModalitiesInStudy); strings.Join(mods, ",") != strings.Join(tc.wantModalities, ",") {
				t.Errorf("ModalitiesInStudy %v, want the union %v", mods, tc.wantModalities)
			}
			resp, body = p.get(t, "/dicom-web/studies/2.1", "Accept", acceptDICOM)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("study retrieve: %d %s", resp.StatusCode, body)
			}
			if got := int64(len(partsOf(t, resp, body))); got != inst {
				t.Errorf("the study retrieve returned %d instances; its search said %d", got, inst)
			}

			resp, body = p.get(t, "/dicom-web/studies/2.1/series")
			if resp.StatusCode != http.StatusOK || len(resp.Header.Values("Warning")) != 0 {
				t.Fatalf("series search: %d %q: %s", resp.StatusCode, resp.Header.Values("Warning"), body)
			}
			for uid, want := range tc.wantPerSeries {
				n, ok := resultOf(t, body, dcmjson.TagSeriesInstanceUID, uid).Int(dcmjson.TagNumberOfSeriesRelatedInstances)
				if !ok || n != want {
					t.Errorf("series %s counts %d instances (present %v); want the union, %d", uid, n, ok, want)
				}
				resp, rb := p.get(t, "/dicom-web/studies/2.1/series/"+uid, "Accept", acceptDICOM)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("series retrieve: %d %s", resp.StatusCode, rb)
				}
				if got := int64(len(partsOf(t, resp, rb))); got != n {
					t.Errorf("the retrieve of series %s returned %d instances; its search said %d", uid, got, n)
				}
			}
		})
	}
}

// TestSearchCountsIncompleteWhenAHolderCannotBeListed: when a holder of a study answers the
// search but its instances cannot be listed, the counts keep the union of what was listed, are
// never lowered below a count a copy gave (nor set where none is known), and the answer carries
// a Warning 299 saying the counts of that study (or series) are incomplete and naming the trust.
// A holder that lists none of what it answered the search with lists wrongly: it counts as one
// that could not be listed, so its own count is never lowered by the others' union.
func TestSearchCountsIncompleteWhenAHolderCannotBeListed(t *testing.T) {
	atA := []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.2")}
	atB := []fakeInstance{in21("2.1.1", "2.1.1.1"), in21("2.1.1", "2.1.1.3"), in21("2.1.2", "2.1.2.1")}
	tests := []struct {
		name         string
		optsA, optsB fakeOptions
		// failA and failB make TA's and TB's instance listings fail (502).
		failA, failB bool
		path         string
		tag, uid     string // the result whose count is checked
		countTag     string
		want         int64 // -1: absent
		wantWarn     string
	}{
		{name: "study: TB's own count stands above what TA listed", failB: true,
			path: "/dicom-web/studies?PatientID=" + alice, tag: dcmjson.TagStudyInstanceUID, uid: "2.1",
			countTag: dcmjson.TagNumberOfStudyRelatedInstances, want: 3, wantWarn: "The counts of study 2.1 are incomplete: TB (TB Trust) could not list its instances: its PACS answered 502"},
		{name: "study: TB gives no count, TA's listing stands", failB: true, optsB: fakeOptions{omitCounts: true},
			path: "/dicom-web/studies?PatientID=" + alice, tag: dcmjson.TagStudyInstanceUID, uid: "2.1",
			countTag: dcmjson.TagNumberOfStudyRelatedInstances, want: 2, wantWarn: "The counts of study 2.1 are incomplete: TB (TB Trust) could not list its instances: its PACS answered 502"},
		{name: "study: no holder listed and no count given, the count stays absent",
			failA: true, failB: true, optsA: fakeOptions{omitCounts: true}, optsB: fakeOptions{omitCounts: true},
			path: "/dicom-web/studies?PatientID=" + alice, tag: dcmjson.TagStudyInstanceUID, uid: "2.1",
			countTag: dcmjson.TagNumberOfStudyRelatedInstances, want: -1, wantWarn: "The counts of study 2.1 are incomplete: TA (TA Trust) could not list its instances: its PACS answered 502; TB (TB Trust) could not"},
		{name: "study: no trust lists any instance, the answers' counts stand",
			optsA: fakeOptions{listNothing: true}, optsB: fakeOptions{listNothing: true},
			path: "/dicom-web/studies?PatientID=" + alice, tag: dcmjson.TagStudyInstanceUID, uid: "2.1",
			countTag: dcmjson.TagNumberOfStudyRelatedInstances, want: 3, wantWarn: "The counts of study 2.1 are incomplete: TA (TA Trust) could not list its instances: its PACS listed none of the instances it holds; TB (TB Trust)"},
		{name: "study: TB lists nothing, its own larger count stands",
			optsB: fakeOptions{listNothing: true},
			path:  "/dicom-web/studies?PatientID=" + alice, tag: dcmjson.TagStudyInstanceUID, uid: "2.1",
			countTag: dcmjson.TagNumberOfStudyRelatedInstances, want: 3, wantWarn: "The counts of study 2.1 are incomplete: TB (TB Trust) could not list its instances: its PACS listed none of the instances it holds"},
		{name: "series: no trust lists any instance, the answers' counts stand",
			optsA: fakeOptions{listNothing: true}, optsB: fakeOptions{listNothing: true},
			path: "/dicom-web/studies/2.1/series", tag: dcmjson.TagSeriesInstanceUID, uid: "2.1.1",
			countTag: dcmjson.TagNumberOfSeriesRelatedInstances, want: 2, wantWarn: "The instance count of series 2.1.1 is incomplete: TA (TA Trust) could not list its instances: its PACS listed none of the instances it holds"},
		{name: "series of the study", failB: true,
			path: "/dicom-web/studies/2.1/series", tag: dcmjson.TagSeriesInstanceUID, uid: "2.1.1",
			countTag: dcmjson.TagNumberOfSeriesRelatedInstances, want: 2, wantWarn: "The instance count of series 2.1.1 is incomplete: TB (TB Trust) could not list its instances"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newFakeOriginWith(t, "TA", tc.optsA, atA...)
			b := newFakeOriginWith(t, "TB", tc.optsB, atB...)
			a.failListing.Store(tc.failA)
			b.failListing.Store(tc.failB)
			p := newTestProxy(t, a, b)
			resp, body := p.get(t, tc.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if w := strings.Join(resp.Header.Values("Warning"), "|"); !strings.HasPrefix(w, "299 ") || !strings.Contains(w, tc.wantWarn) {
				t.Errorf("Warning %q; want a 299 containing %q", w, tc.wantWarn)
			}
			n, ok := resultOf(t, body, tc.tag, tc.uid).Int(tc.countTag)
			switch {
			case tc.want < 0 && ok:
				t.Errorf("%s = %d; want it absent (no copy gave it and it could not be listed)", tc.countTag, n)
			case tc.want >= 0 && (!ok || n != tc.want):
				t.Errorf("%s = %d (present %v); want %d", tc.countTag, n, ok, tc.want)
			}
		})
	}
}

// TestSearchCountsFromAStaleListingAreIncomplete: the counts may come from a holder's stale
// cached listing only when its search answer was itself a stale copy (and said so). When TB
// answers the search now but its listing fails, the listing's stale copy is not used silently:
// the counts are incomplete, raised no lower than TB's own count, and a Warning names TB.
func TestSearchCountsFromAStaleListingAreIncomplete(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	a, b := differingCopies(t, fakeOptions{}, fakeOptions{})
	p := cachingProxy(t, clk, true, a, b)
	path := "/dicom-web/studies?PatientID=" + alice
	resp, body := p.get(t, path)
	if resp.StatusCode != http.StatusOK || len(resp.Header.Values("Warning")) != 0 {
		t.Fatalf("first search: %d %q", resp.StatusCode, resp.Header.Values("Warning"))
	}
	if n, _ := resultOf(t, body, dcmjson.TagStudyInstanceUID, "2.1").Int(dcmjson.TagNumberOfStudyRelatedInstances); n != 4 {
		t.Fatalf("first search counts %d instances, want the union, 4", n)
	}

	clk.add(time.Minute)
	b.failListing.Store(true)
	resp, body = p.get(t, path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("second search: %d %s", resp.StatusCode, body)
	}
	w := resp.Header.Values("Warning")
	if len(w) != 1 || !strings.Contains(w[0], "The counts of study 2.1 are incomplete: TB (TB Trust) could not list its instances: its PACS answered 502") {
		t.Fatalf("warnings %q; want one 299 saying the counts are incomplete and naming TB", w)
	}
	if n, _ := resultOf(t, body, dcmjson.TagStudyInstanceUID, "2.1").Int(dcmjson.TagNumberOfStudyRelatedInstances); n != 3 {
		t.Fatalf("second search counts %d instances; want 3, TB's own count (TA listed 2)", n)
	}
}

// TestSearchCountsAreBounded: the counts of at most maxCountedStudies studies of a page are
// made the union; past the bound a study keeps the largest copy's counts and the answer says
// so, without naming a trust.
func TestSearchCountsAreBounded(t *testing.T) {
	var atA, atB []fakeInstance
	for i := range maxCountedStudies + 1 {
		study := fmt.Sprintf("4.%d", i)
		// Each copy holds one instance of its own: the union is 2, the largest copy 1.
		atA = append(atA, fakeInstance{alice, study, study + ".1", study + ".1.1", "20240401"})
		atB = append(atB, fakeInstance{alice, study, study + ".1", study + ".1.2", "20240401"})
	}
	a := newFakeOrigin(t, "TA", atA...)
	b := newFakeOrigin(t, "TB", atB...)
	p := newTestProxy(t, a, b)
	resp, body := p.get(t, "/dicom-web/studies?PatientID="+alice)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	counts := map[int64]int{}
	for _, ds := range decodeList(t, body) {
		n, _ := ds.Int(dcmjson.TagNumberOfStudyRelatedInstances)
		counts[n]++
	}
	if counts[2] != maxCountedStudies || counts[1] != 1 {
		t.Errorf("studies by instance count %v; want %d counted as the union (2) and 1 left at the largest copy's (1)", counts, maxCountedStudies)
	}
	w := resp.Header.Values("Warning")
	if len(w) != 1 || !strings.Contains(w[0], "The counts of 1 result held by more than one trust are the largest copy's") ||
		strings.Contains(w[0], "TA") || strings.Contains(w[0], "TB") {
		t.Errorf("warnings %q; want one saying 1 result was not counted, naming no trust", w)
	}
}

// TestRetrieveRefusesAHolderThatListsNothing: a trust found to hold a study (by a search on its
// UID) whose PACS then lists none of the study's instances (it does not answer instance
// searches below a study) may hold instances no other trust has. A study or series retrieve is
// refused (503 naming it, by default) rather than answered 200 without them; under
// partialRetrieve: warn it is answered with the other copies and a Warning naming it. A holder
// of the study that lists nothing of a series it does not hold is no failure.
func TestRetrieveRefusesAHolderThatListsNothing(t *testing.T) {
	for what, path := range map[string]string{"study": "/dicom-web/studies/2.1", "series": "/dicom-web/studies/2.1/series/2.1.1"} {
		t.Run(what+", default policy", func(t *testing.T) {
			a, b := differingCopies(t, fakeOptions{}, fakeOptions{listNothing: true})
			p := newTestProxy(t, a, b)
			resp, body := p.get(t, path, "Accept", acceptDICOM)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503 (TB holds it and listed nothing of it): %s", resp.StatusCode, body)
			}
			if w := strings.Join(resp.Header.Values("Warning"), "|"); !strings.Contains(w, "TB (TB Trust)") {
				t.Fatalf("Warning %q; want TB named", w)
			}
		})
	}
	t.Run("a series the empty lister does not hold", func(t *testing.T) {
		a, _ := differingCopies(t, fakeOptions{}, fakeOptions{})
		b := newFakeOriginWith(t, "TB", fakeOptions{listNothing: true},
			fakeInstance{alice, "2.1", "2.1.2", "2.1.2.1", "20240301"})
		a.instances = append(a.instances, fakeInstance{alice, "2.1", "2.1.3", "2.1.3.1", "20240301"})
		p := newTestProxy(t, a, b)
		resp, body := p.get(t, "/dicom-web/studies/2.1/series/2.1.1", "Accept", acceptDICOM)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d; TB does not hold series 2.1.1: %s", resp.StatusCode, body)
		}
		if got := sopsOf(t, resp, body); strings.Join(got, " ") != "2.1.1.1 2.1.1.2" {
			t.Fatalf("instances %v; want TA's series", got)
		}
	})
	t.Run("study, partialRetrieve warn", func(t *testing.T) {
		a, b := differingCopies(t, fakeOptions{}, fakeOptions{listNothing: true})
		p := newTestProxyWith(t, proxyOptions{retrieve: fallback.PartialWarn}, a, b)
		resp, body := p.get(t, "/dicom-web/studies/2.1", "Accept", acceptDICOM)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d under warn: %s", resp.StatusCode, body)
		}
		if w := strings.Join(resp.Header.Values("Warning"), "|"); !strings.Contains(w, "TB (TB Trust)") {
			t.Fatalf("Warning %q; want TB named as possibly holding more", w)
		}
		if got := sopsOf(t, resp, body); strings.Join(got, " ") != "2.1.1.1 2.1.1.2" {
			t.Fatalf("instances %v; want TA's copy", got)
		}
	})
}

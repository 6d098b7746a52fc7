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
			want: []string{"DICM-2.1.1.1", "DICM-2.1.1.2", "DICM-2.1.1.3", "DICM-2.1.2.1"}},
		{name: "both holders capped, study", optsA: fakeOptions{searchCap: 1}, optsB: fakeOptions{searchCap: 1}, path: "/dicom-web/studies/2.1",
			want: []string{"DICM-2.1.1.1", "DICM-2.1.1.2", "DICM-2.1.1.3", "DICM-2.1.2.1"}},
		{name: "second holder capped, series", optsB: fakeOptions{searchCap: 1}, path: "/dicom-web/studies/2.1/series/2.1.1",
			want: []string{"DICM-2.1.1.1", "DICM-2.1.1.2", "DICM-2.1.1.3"}},
		{name: "second holder ignores offset but sends all, and its count vouches", optsB: fakeOptions{ignoreOffset: true}, path: "/dicom-web/studies/2.1",
			want: []string{"DICM-2.1.1.1", "DICM-2.1.1.2", "DICM-2.1.1.3", "DICM-2.1.2.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := differingCopies(t, tc.optsA, tc.optsB)
			p := newTestProxy(t, a, b)
			resp, body := p.get(t, tc.path, "Accept", acceptDICOM)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := partsOf(t, resp, body); strings.Join(got, " ") != strings.Join(tc.want, " ") {
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
	src := upstream.NewSource(upstream.SourceConfig{ID: "TE", Name: "TE Trust", BaseURL: u, Timeout: 2 * time.Second}, upstream.Options{}, slog.New(slog.DiscardHandler))

	h := listHoldings(context.Background(), "3.1", "", []*upstream.Source{src})
	if len(h.failed) != 1 || !errors.Is(h.failed[0].Err, errListingIncomplete) {
		t.Fatalf("failed %v; want TE's listing failed as incomplete", h.failed)
	}
	if len(h.listed) != 0 || len(h.holders) != 0 {
		t.Fatalf("listed %v; a failed holder's partial listing must not be used", h.listed)
	}
	if n := calls.Load(); n != maxListPages {
		t.Fatalf("%d pages asked; want exactly maxListPages (%d)", n, maxListPages)
	}
}

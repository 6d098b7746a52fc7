package dicomweb

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// uidList is a UID list of n UIDs under 1.2, joined by sep.
func uidList(n int, sep string) string {
	uids := make([]string, n)
	for i := range uids {
		uids[i] = fmt.Sprintf("1.2.%d", i+1)
	}
	return strings.Join(uids, sep)
}

// manyKeys is n distinct matching keys with empty values (universal matching), as tags the
// dictionary does not know.
func manyKeys(n int) string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%08X=", 0x0040F000+2*i)
	}
	return strings.Join(keys, "&")
}

// TestBoundedExactQueries: every cap and check of a query is a 400 whose DICOMweb error body
// names what was wrong (and, for a cap, its key and value), and no request reaches a trust.
// The trusts here would answer anything: what is refused is refused by the proxy.
func TestBoundedExactQueries(t *testing.T) {
	a, b := twoTrusts(t)
	p := newTestProxy(t, a, b)
	pat := "/dicom-web/studies?PatientID=" + alice + "&"
	tests := []struct {
		name string
		path string // with its raw query, sent as written
		msg  string // a phrase of the error message
	}{
		// Caps.
		{"query string too long", pat + "StudyDescription=" + strings.Repeat("x", 9000), "at most 8192 are accepted (search.maxQueryLength)"},
		{"more than 10,000 parameters", pat + strings.Repeat("a=1&", 10001), "(search.maxQueryLength)"},
		{"100,000 includefield values", pat + "includefield=" + strings.Repeat("00081030,", 100000), "(search.maxQueryLength)"},
		{"too many matching keys", pat + manyKeys(32), "more than 32 matching keys; at most 32 are accepted (search.maxMatchingKeys)"},
		{"too many includefield attributes", pat + "includefield=" + strings.Repeat("00081030,", 129), "at most 128 are accepted in one search (search.maxIncludeFields)"},
		{"too many includefield parameters", pat + strings.Repeat("includefield=StudyDescription&", 129), "(search.maxIncludeFields)"},
		{"too many UIDs in a list", pat + "StudyInstanceUID=" + uidList(101, ","), "has 101 values; at most 100 are accepted per key (search.maxValuesPerKey)"},
		{"too many values in a list", pat + "ModalitiesInStudy=" + strings.Repeat(`CT%5C`, 100) + "MR", "(search.maxValuesPerKey)"},
		// Private and non-data-set attributes.
		{"private matching key", pat + "00091010=x", "private attribute (0009,1010)"},
		{"private matching key, empty", pat + "00291010=", "private attribute (0029,1010)"},
		{"private includefield", pat + "includefield=00091010", "includefield names the private attribute (0009,1010)"},
		{"group length as key", pat + "00080000=1", "not an attribute of a study"},
		{"file meta as key", pat + "SourceApplicationEntityTitle=X", "not an attribute of a study"},
		// Values against their VR.
		{"CS lower case", pat + "ModalitiesInStudy=ct", "code string has only upper-case"},
		{"CS too long", pat + "ModalitiesInStudy=ABCDEFGHIJKLMNOPQ", "at most 16 characters"},
		{"SH too long", pat + "AccessionNumber=" + strings.Repeat("A", 17), "at most 16 are allowed"},
		{"LO too long", pat + "StudyDescription=" + strings.Repeat("d", 65), "at most 64 are allowed"},
		{"LO with a backslash list item too long", pat + "StudyDescription=ok%5C" + strings.Repeat("d", 65), "at most 64 are allowed"},
		{"PN four groups", pat + "PatientName=A=B=C=D", "three component groups"},
		{"PN six components", pat + "PatientName=A%5EB%5EC%5ED%5EE%5EF", "five components"},
		{"IS not a number", "/dicom-web/studies/1.1/series?SeriesNumber=abc", "must be an integer"},
		{"IS out of range", "/dicom-web/studies/1.1/instances?InstanceNumber=99999999999", "must be an integer within the range of VR IS"},
		{"IS too long", "/dicom-web/studies/1.1/instances?InstanceNumber=0000000000001", "integer string has at most 12"},
		{"IS wildcard", "/dicom-web/studies/1.1/series?SeriesNumber=1*", "does not allow wildcard matching"},
		{"DS NaN", pat + "PatientWeight=NaN", "decimal string"},
		{"DS with a tab", pat + "PatientWeight=%0970", "decimal string"},
		{"IS with a tab", "/dicom-web/studies/1.1/series?SeriesNumber=%091", "integer"},
		{"DS Inf", pat + "PatientWeight=Inf", "decimal string"},
		{"AS malformed", pat + "PatientAge=45", "an age is three digits"},
		{"AE too long", pat + "RetrieveAETitle=" + strings.Repeat("A", 17), "at most 16 are allowed"},
		{"DA wildcard", pat + "StudyDate=2020*", "dates are written YYYYMMDD"},
		{"TM hour 25", pat + "StudyTime=2500", "no such time"},
		{"TM fraction too long", pat + "StudyTime=101010.1234567", "times are written"},
		{"DT range without ends", "/dicom-web/studies/1.1/instances?AcquisitionDateTime=-", "needs at least one end"},
		{"UI wildcard", pat + "StudyInstanceUID=1.2.*", "not a valid DICOM UID"},
		{"UI list with an empty item", pat + "StudyInstanceUID=1.2.3,,1.2.4", "empty value in its list"},
		{"CS list with an empty item", pat + `ModalitiesInStudy=CT%5C%5CMR`, "empty value in its list"},
		{"unknown VR wildcard", pat + "0040F000=ab*", "(VR UN) does not allow wildcard matching"},
		{"unknown VR list", pat + "0040F000=a%5Cb", "unknown VR is matched on one literal value"},
		{"unknown VR too long", pat + "0040F000=" + strings.Repeat("a", 65), "at most 64 are allowed"},
		{"unknown VR not ASCII", pat + "0040F000=%C3%A9", "printable ASCII"},
		{"binary VR", pat + "7FE00010=AAAA", "cannot be matched on"},
		{"binary VR, empty", pat + "PixelData=", "cannot be matched on"},
		{"control character", pat + "StudyDescription=a%01b", "control character"},
		{"not UTF-8", pat + "StudyDescription=%FF%FE", "not valid UTF-8"},
		// Escapes and separators.
		{"malformed escape in a value", pat + "ModalitiesInStudy=%zz", "malformed percent-escape"},
		{"truncated escape in a value", pat + "ModalitiesInStudy=CT%2", "malformed percent-escape"},
		{"malformed escape in a key", pat + "Mod%zzality=CT", "malformed percent-escape"},
		{"semicolon separator", pat + "ModalitiesInStudy=CT;StudyDate=20200101", "';'"},
		{"malformed escape on a rendered image", "/dicom-web/studies/1.1/series/1.1.1/instances/1.1.1.1/rendered?quality=%zz", "malformed percent-escape"},
		{"parameter without a name", pat + "=CT", "has no name"},
		// Duplicates.
		{"PatientID twice, same value", pat + "PatientID=" + alice, "only once"},
		{"PatientID twice, different values", pat + "PatientID=" + bob, "only once"},
		{"limit twice", pat + "limit=1&limit=2", "only once"},
		{"limit in two cases", pat + "limit=1&LIMIT=2", "limit may be given only once"},
		{"StudyInstanceUID twice", "/dicom-web/studies?StudyInstanceUID=1.1&StudyInstanceUID=1.9", "only once"},
		{"keyword and tag", pat + "ModalitiesInStudy=CT&00080061=MR", "twice"},
		{"fuzzymatching twice", pat + "fuzzymatching=false&fuzzymatching=true", "only once"},
		{"quality twice on a rendered image", "/dicom-web/studies/1.1/series/1.1.1/instances/1.1.1.1/rendered?quality=10&quality=90", "only once"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := p.upstreamCalls()
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				resp, body := p.do(t, method, tc.path)
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("%s: status %d, want 400; body %s", method, resp.StatusCode, body)
				}
				if method == http.MethodHead {
					if len(body) != 0 {
						t.Fatalf("HEAD answered with a body: %s", body)
					}
					continue
				}
				var eb errorBody
				if err := json.Unmarshal(body, &eb); err != nil || eb.Status != http.StatusBadRequest || !strings.Contains(eb.Message, tc.msg) {
					t.Fatalf("body %s; want a DICOMweb error whose message says %q", body, tc.msg)
				}
				if strings.Contains(eb.Message, alice) || strings.Contains(eb.Message, bob) {
					t.Fatalf("the error message repeats a patient identifier: %s", eb.Message)
				}
			}
			if got := p.upstreamCalls() - before; got != 0 {
				t.Fatalf("%d requests reached the trusts; a bad query must be refused before any", got)
			}
		})
	}
}

// TestExactQueriesAccepted: what the checks allow still reaches the trusts and is answered:
// wildcards where PS3.4 allows them, value lists within the cap, repeated includefield,
// non-ASCII names, the caps' own values and an empty (universal) value of any VR.
func TestExactQueriesAccepted(t *testing.T) {
	a, b := twoTrusts(t)
	p := newTestProxy(t, a, b)
	pat := "/dicom-web/studies?PatientID=" + alice + "&"
	for _, query := range []string{
		"PatientName=DEMO*",
		"PatientName=M%C3%BCller%5EJ%C3%B6rg",
		"ModalitiesInStudy=CT%5CMR",
		"StudyDescription=CT*HEAD?",
		"StudyInstanceUID=" + uidList(100, "%5C"),
		"includefield=StudyDescription&includefield=00081030,ModalitiesInStudy&includefield=all",
		"includefield=" + strings.TrimSuffix(strings.Repeat("00081030,", 128), ","),
		manyKeys(31),
		"PatientWeight=72.5&PatientAge=045Y&RetrieveAETitle=PACS*",
		"0040F000=abc&StudyDescription=",
		"StudyDate=20200101-20201231&StudyTime=0800-1730.5",
		"limit=10&offset=0&fuzzymatching=false",
	} {
		before := p.upstreamCalls()
		resp, body := p.get(t, pat+query)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", query, resp.StatusCode, body)
		}
		if p.upstreamCalls() == before {
			t.Fatalf("%s: no trust was asked", query)
		}
	}
}

// TestHeadAnswersAsGet: HEAD of a search, a retrieve, metadata and a refused request has the
// status and headers of the GET and no body. (Before, HEAD of a search answered 404.)
func TestHeadAnswersAsGet(t *testing.T) {
	a, b := twoTrusts(t)
	p := newTestProxy(t, a, b)
	for _, path := range []string{
		"/dicom-web/studies?PatientID=" + alice,
		"/dicom-web/studies?PatientID=" + alice + "&limit=1",
		"/dicom-web/studies/1.1/series",
		"/dicom-web/studies/1.1",
		"/dicom-web/studies/1.2",
		"/dicom-web/studies/1.1/series/1.1.1/instances/1.1.1.1",
		"/dicom-web/studies/1.1/metadata",
		"/dicom-web/studies/7.7",
		"/dicom-web/studies?Modality=CT",
	} {
		t.Run(path, func(t *testing.T) {
			get, getBody := p.do(t, http.MethodGet, path)
			head, headBody := p.do(t, http.MethodHead, path)
			if head.StatusCode != get.StatusCode {
				t.Fatalf("HEAD status %d, GET %d", head.StatusCode, get.StatusCode)
			}
			if len(headBody) != 0 {
				t.Fatalf("HEAD sent a body of %d bytes", len(headBody))
			}
			if get.StatusCode == http.StatusOK && len(getBody) == 0 {
				t.Fatalf("GET sent no body")
			}
			for _, h := range []string{"Content-Type", "Cache-Control", "Warning", "X-Content-Type-Options", "Content-Security-Policy"} {
				g, hd := get.Header.Values(h), head.Header.Values(h)
				if h == "Content-Type" {
					g, hd = withoutBoundary(g), withoutBoundary(hd)
				}
				if strings.Join(g, "|") != strings.Join(hd, "|") {
					t.Errorf("%s: HEAD %q, GET %q", h, hd, g)
				}
			}
		})
	}
}

// withoutBoundary drops the boundary parameter of multipart content types: each response
// draws its own.
func withoutBoundary(cts []string) []string {
	out := make([]string, len(cts))
	for i, ct := range cts {
		before, _, _ := strings.Cut(ct, "boundary=")
		out[i] = before
	}
	return out
}

// do sends one request with method and returns the response and its body.
func (p *testProxy) do(t *testing.T, method, path string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, p.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// TestUnknownTagsAreUN guards the bounds tests' assumption that the tags manyKeys makes are
// unknown to the dictionary (VR UN), so any value checks as an unknown VR's.
func TestUnknownTagsAreUN(t *testing.T) {
	a, err := dcmjson.LookupAttribute("0040F000")
	if err != nil || a.VR != "UN" {
		t.Fatalf("0040F000 resolves to %+v, %v; the bounds tests need an unknown tag", a, err)
	}
}

// TestHeadRetrieveReadsNoBody: a HEAD of a retrieve writes nothing of the trust's body, not
// even to a writer that would take it (net/http would drop it, but only after the proxy had
// read it from the trust): the recorder here keeps whatever the handler writes.
func TestHeadRetrieveReadsNoBody(t *testing.T) {
	a, b := twoTrusts(t)
	p := newTestProxy(t, a, b)
	for _, path := range []string{
		"/dicom-web/studies/1.2",
		"/dicom-web/studies/1.1",
		"/dicom-web/studies/1.1/series/1.1.1/instances/1.1.1.1",
	} {
		rec := httptest.NewRecorder()
		p.srv.Config.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, path, nil))
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "multipart/related") {
			t.Fatalf("HEAD %s: status %d, Content-Type %q", path, rec.Code, rec.Header().Get("Content-Type"))
		}
		if rec.Body.Len() != 0 {
			t.Fatalf("HEAD %s: the handler wrote %d bytes of body", path, rec.Body.Len())
		}
	}
}

package dicomweb

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

const (
	alice = "9434765919"
	bob   = "9449306052"
)

// fakeInstance is one instance a fake origin holds.
type fakeInstance struct {
	patient, study, series, sop, date string
}

// fakeOrigin is a minimal DICOMweb origin over a list of instances. It answers study-level
// searches by PatientID or StudyInstanceUID (with the study's counts), series searches within
// a study, instance searches within a study or series (paged by limit and offset), retrieves
// as multipart with one part per instance (the part is fakePart10 of the SOP instance), and
// metadata. Its fakeOptions make it search like PACS that bend QIDO-RS.
type fakeOrigin struct {
	id        string
	instances []fakeInstance
	opts      fakeOptions
	calls     atomic.Int64
	retrieves atomic.Int64 // multipart retrieves answered
	truncate  atomic.Bool  // cut retrieve bodies before the closing delimiter
	down      atomic.Bool  // answer 502 to everything
	duplicate atomic.Bool  // send every retrieved part twice
	notPart10 atomic.Bool  // send part bodies that are not PS3.10 files
	// failListing answers 502 to instance-level searches, and only to them.
	failListing atomic.Bool
	// hangListing holds instance-level searches until the proxy gives up on them.
	hangListing atomic.Bool
	// omit is a SOP instance UID left out of retrieve answers while searches still list it.
	omit atomic.Value
	// extra is a SOP instance UID added to every retrieve answer, which no search lists.
	extra atomic.Value
	srv   *httptest.Server
}

// fakeOptions make a fake origin answer searches as some real PACS do.
type fakeOptions struct {
	// searchCap, when positive, cuts every instance-level search answer to at most that many
	// results, whatever limit asked, without saying so.
	searchCap int
	// ignoreOffset answers instance-level searches from the first match, whatever offset says.
	ignoreOffset bool
	// ignorePatientFilter answers study searches with every patient's studies, whatever
	// PatientID asked for, as a PACS that does not support the key may. (The fake always
	// ignores AccessionNumber.)
	ignorePatientFilter bool
	// accession is each study's AccessionNumber, sent in study answers.
	accession map[string]string
	// unstableOrder lists instances in another order (rotated by one) when offset is not 0,
	// as a PACS without a stable sort may: its pages overlap and skip.
	unstableOrder bool
	// listNothing answers every instance-level search with an empty list, as a PACS that
	// does not support them below a study may.
	listNothing bool
	// omitCounts leaves NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances,
	// NumberOfSeriesRelatedInstances and ModalitiesInStudy out of every answer.
	omitCounts bool
	// modality is the Modality of each series, by Series Instance UID; a series not in it
	// has none.
	modality map[string]string
}

func newFakeOrigin(t *testing.T, id string, inst ...fakeInstance) *fakeOrigin {
	return newFakeOriginWith(t, id, fakeOptions{}, inst...)
}

func newFakeOriginWith(t *testing.T, id string, opts fakeOptions, inst ...fakeInstance) *fakeOrigin {
	f := &fakeOrigin{id: id, instances: inst, opts: opts}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOrigin) serve(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if f.down.Load() {
		http.Error(w, "down", http.StatusBadGateway)
		return
	}
	p := strings.Split(strings.TrimPrefix(r.URL.Path, "/dicom-web/"), "/")
	q := r.URL.Query()
	var sel []fakeInstance
	for _, in := range f.instances {
		if len(p) >= 2 && p[0] == "studies" && in.study != p[1] {
			continue
		}
		if len(p) >= 4 && p[2] == "series" && in.series != p[3] {
			continue
		}
		if len(p) >= 6 && p[4] == "instances" && in.sop != p[5] {
			continue
		}
		if v := q.Get("00100020"); v != "" && in.patient != v && !f.opts.ignorePatientFilter {
			continue
		}
		if v := q.Get("0020000D"); v != "" && in.study != v {
			continue
		}
		if v := q.Get("0020000E"); v != "" && in.series != v {
			continue
		}
		if v := q.Get("00080020"); v != "" && in.date != v {
			continue
		}
		sel = append(sel, in)
	}
	last := p[len(p)-1]
	switch {
	case len(p) == 1 && last == "studies":
		seen := map[string]bool{}
		out := []dcmjson.Dataset{}
		for _, in := range sel {
			if seen[in.study] {
				continue
			}
			seen[in.study] = true
			ds := dcmjson.Dataset{}
			ds.SetStrings(dcmjson.TagStudyInstanceUID, "UI", in.study)
			ds.SetStrings(dcmjson.TagPatientID, "LO", in.patient)
			ds.SetStrings(dcmjson.TagStudyDate, "DA", in.date)
			if acc := f.opts.accession[in.study]; acc != "" {
				ds.SetStrings(dcmjson.TagAccessionNumber, "SH", acc)
			}
			ds.SetStrings(dcmjson.TagRetrieveURL, "UR", "http://"+r.Host+"/dicom-web/studies/"+in.study)
			f.setStudyCounts(ds, in.study)
			out = append(out, ds)
		}
		writeTestJSON(w, out)
	case last == "series" && len(p)%2 == 1:
		count := map[string]int64{}
		studyOf := map[string]string{}
		var order []string
		for _, in := range sel {
			if count[in.series] == 0 {
				order = append(order, in.series)
			}
			count[in.series]++
			studyOf[in.series] = in.study
		}
		out := []dcmjson.Dataset{}
		for _, se := range order {
			ds := dcmjson.Dataset{}
			ds.SetStrings(dcmjson.TagStudyInstanceUID, "UI", studyOf[se])
			ds.SetStrings(dcmjson.TagSeriesInstanceUID, "UI", se)
			if mod := f.opts.modality[se]; mod != "" {
				ds.SetStrings(dcmjson.TagModality, "CS", mod)
			}
			if !f.opts.omitCounts {
				ds.SetInt(dcmjson.TagNumberOfSeriesRelatedInstances, "IS", count[se])
			}
			out = append(out, ds)
		}
		writeTestJSON(w, out)
	case last == "instances" && len(p)%2 == 1:
		if f.failListing.Load() {
			http.Error(w, "listing failed", http.StatusBadGateway)
			return
		}
		if f.hangListing.Load() {
			<-r.Context().Done()
			return
		}
		if f.opts.listNothing {
			sel = nil
		}
		if off, _ := strconv.Atoi(q.Get("offset")); off > 0 && !f.opts.ignoreOffset {
			if f.opts.unstableOrder && len(sel) > 1 {
				sel = append(slices.Clone(sel[1:]), sel[0])
			}
			sel = sel[min(off, len(sel)):]
		}
		if n, _ := strconv.Atoi(q.Get("limit")); n > 0 && n < len(sel) {
			sel = sel[:n]
		}
		if f.opts.searchCap > 0 && f.opts.searchCap < len(sel) {
			sel = sel[:f.opts.searchCap]
		}
		out := []dcmjson.Dataset{}
		for _, in := range sel {
			out = append(out, f.instanceDS(r, in))
		}
		writeTestJSON(w, out)
	case last == "metadata":
		if len(sel) == 0 {
			http.NotFound(w, r)
			return
		}
		out := []dcmjson.Dataset{}
		for _, in := range sel {
			out = append(out, f.instanceDS(r, in))
		}
		writeTestJSON(w, out)
	case len(p) >= 2 && p[0] == "studies":
		if len(sel) == 0 {
			http.NotFound(w, r)
			return
		}
		f.retrieves.Add(1)
		mw := multipart.NewWriter(w)
		w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
		for _, in := range sel {
			if omit, _ := f.omit.Load().(string); omit == in.sop {
				continue
			}
			copies := 1
			if f.duplicate.Load() {
				copies = 2
			}
			for range copies {
				pw, _ := mw.CreatePart(map[string][]string{"Content-Type": {"application/dicom"}})
				if f.notPart10.Load() {
					io.WriteString(pw, "DICM-"+in.sop)
					continue
				}
				pw.Write(fakePart10(in.sop))
			}
		}
		if extra, _ := f.extra.Load().(string); extra != "" {
			pw, _ := mw.CreatePart(map[string][]string{"Content-Type": {"application/dicom"}})
			pw.Write(fakePart10(extra))
		}
		if f.truncate.Load() {
			return
		}
		mw.Close()
	default:
		http.NotFound(w, r)
	}
}

// fakePart10 is a minimal PS3.10 file for a SOP instance: the preamble, "DICM", a file meta
// group in explicit VR little endian naming the instance, and a data set of SOPInstanceUID.
func fakePart10(sop string) []byte {
	elem := func(group, element uint16, vr string, value []byte) []byte {
		if len(value)%2 == 1 {
			value = append(value, 0)
		}
		b := binary.LittleEndian.AppendUint16(nil, group)
		b = binary.LittleEndian.AppendUint16(b, element)
		b = append(b, vr...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(value)))
		return append(b, value...)
	}
	var meta []byte
	meta = append(meta, elem(0x0002, 0x0002, "UI", []byte("1.2.840.10008.5.1.4.1.1.7"))...)
	meta = append(meta, elem(0x0002, 0x0003, "UI", []byte(sop))...)
	meta = append(meta, elem(0x0002, 0x0010, "UI", []byte("1.2.840.10008.1.2.1"))...)
	f := append(make([]byte, 128), "DICM"...)
	f = append(f, elem(0x0002, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(meta))))...)
	f = append(f, meta...)
	return append(f, elem(0x0008, 0x0018, "UI", []byte(sop))...)
}

// setStudyCounts sets a study answer's counts from every instance of the study the origin
// holds, unless the origin omits counts.
func (f *fakeOrigin) setStudyCounts(ds dcmjson.Dataset, study string) {
	if f.opts.omitCounts {
		return
	}
	var n int64
	series := map[string]bool{}
	var mods []string
	for _, in := range f.instances {
		if in.study != study {
			continue
		}
		n++
		series[in.series] = true
		if mod := f.opts.modality[in.series]; mod != "" && !slices.Contains(mods, mod) {
			mods = append(mods, mod)
		}
	}
	ds.SetInt(dcmjson.TagNumberOfStudyRelatedInstances, "IS", n)
	ds.SetInt(dcmjson.TagNumberOfStudyRelatedSeries, "IS", int64(len(series)))
	if len(mods) > 0 {
		sort.Strings(mods)
		ds.SetStrings(dcmjson.TagModalitiesInStudy, "CS", mods...)
	}
}

func (f *fakeOrigin) instanceDS(r *http.Request, in fakeInstance) dcmjson.Dataset {
	ds := dcmjson.Dataset{}
	ds.SetStrings(dcmjson.TagStudyInstanceUID, "UI", in.study)
	ds.SetStrings(dcmjson.TagSeriesInstanceUID, "UI", in.series)
	if mod := f.opts.modality[in.series]; mod != "" {
		ds.SetStrings(dcmjson.TagModality, "CS", mod)
	}
	ds.SetStrings(dcmjson.TagSOPInstanceUID, "UI", in.sop)
	ds.SetStrings(dcmjson.TagPatientID, "LO", in.patient)
	ds[dcmjson.TagPixelData] = &dcmjson.Element{VR: "OW", BulkDataURI: "http://" + r.Host + "/dicom-web/studies/" + in.study + "/series/" + in.series + "/instances/" + in.sop + "/bulk/7FE00010"}
	return ds
}

func writeTestJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/dicom+json")
	json.NewEncoder(w).Encode(v)
}

// deadSource returns a URL on a port where nothing listens.
func deadSource(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/dicom-web"
}

type testProxy struct {
	srv     *httptest.Server
	origins []*fakeOrigin
	sources []*upstream.Source
	signer  *Signer
}

// sourceFailures returns the failed calls the source with the given id has counted.
func (p *testProxy) sourceFailures(t *testing.T, id string) int64 {
	t.Helper()
	for _, s := range p.sources {
		if s.ID == id {
			return int64(s.Status().Failures)
		}
	}
	t.Fatalf("no source %s", id)
	return 0
}

// newTestProxy serves the DICOMweb front over the given origins (nil entries are dead sources),
// priorities in the order given.
func newTestProxy(t *testing.T, origins ...*fakeOrigin) *testProxy {
	t.Helper()
	return newTestProxyWith(t, proxyOptions{}, origins...)
}

// proxyOptions vary the test proxy: a cache in front of each source, and stale use.
type proxyOptions struct {
	cache      upstream.CacheOptions
	serveStale bool
	// locator is the locator's store (a new in-process one when nil).
	locator *cache.Store
	// retrieve is the partialRetrieve policy (fail when empty).
	retrieve fallback.Partial
	// requestTimeout is the proxy's requestTimeout (its default when 0); sourceTimeout each
	// source's header timeout (2 s when 0).
	requestTimeout, sourceTimeout time.Duration
	// authz is the authorizer (policy.AllowAll when nil).
	authz policy.Authorizer
}

func newTestProxyWith(t *testing.T, opts proxyOptions, origins ...*fakeOrigin) *testProxy {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	var sources []*upstream.Source
	for i, o := range origins {
		raw := ""
		id := fmt.Sprintf("DEAD%d", i)
		if o == nil {
			raw = deadSource(t)
		} else {
			raw = o.srv.URL + "/dicom-web"
			id = o.id
		}
		u, _ := url.Parse(raw)
		timeout := cmp.Or(opts.sourceTimeout, 2*time.Second)
		sources = append(sources, upstream.NewSource(upstream.SourceConfig{ID: id, Name: id + " Trust", BaseURL: u, Priority: i, Timeout: timeout}, with(testSourceOptions(timeout), func(o *upstream.Options) { o.Cache = opts.cache }), log))
	}
	locatorStore := opts.locator
	if locatorStore == nil {
		locatorStore = mustLocalStore(t, 1<<20)
	}
	ln, public := listenLoopback(t)
	cfg := testConfig(public)
	cfg.AllowedOrigins = []string{"http://viewer.example"}
	cfg.Search.MaxResultsPerSource, cfg.Search.MaxLimit = 100, 100
	cfg.RequestTimeout = cmp.Or(opts.requestTimeout, cfg.RequestTimeout)
	cfg.Fallback.ServeStale = opts.serveStale
	cfg.Fallback.Retrieve = cmp.Or(opts.retrieve, cfg.Fallback.Retrieve)
	signer := NewSigner([]byte("0123456789abcdef0123456789abcdef"), time.Hour, nil)
	srv := New(cfg, Deps{
		Locator: upstream.NewLocator(sources, locatorStore, time.Minute, log),
		Signer:  signer,
		Auth:    policy.AllowAll{}, Authz: cmp.Or[policy.Authorizer](opts.authz, policy.AllowAll{}), Audit: audit.Discard{}, Log: log,
	})
	e := echo.New()
	srv.Register(e)
	p := &testProxy{srv: serveOn(ln, e), origins: origins, sources: sources, signer: signer}
	t.Cleanup(p.srv.Close)
	return p
}

func (p *testProxy) get(t *testing.T, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.srv.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil
	}
	return resp, body
}

func (p *testProxy) upstreamCalls() int64 {
	var n int64
	for _, o := range p.origins {
		if o != nil {
			n += o.calls.Load()
		}
	}
	return n
}

// twoTrusts: alice has a study at A only, one at B only, and a shared study whose copy at B
// has one series more than A's.
func twoTrusts(t *testing.T) (*fakeOrigin, *fakeOrigin) {
	a := newFakeOrigin(t, "TA",
		fakeInstance{alice, "1.1", "1.1.1", "1.1.1.1", "20240101"},
		fakeInstance{alice, "1.1", "1.1.1", "1.1.1.2", "20240101"},
		fakeInstance{alice, "1.2", "1.2.1", "1.2.1.1", "20230101"},
		fakeInstance{bob, "1.9", "1.9.1", "1.9.1.1", "20220101"},
	)
	b := newFakeOrigin(t, "TB",
		// TB's copy of 1.1 carries a corrected study date: a search by date matches one copy.
		fakeInstance{alice, "1.1", "1.1.1", "1.1.1.1", "20240102"},
		fakeInstance{alice, "1.1", "1.1.1", "1.1.1.2", "20240102"},
		fakeInstance{alice, "1.1", "1.1.2", "1.1.2.1", "20240102"},
		fakeInstance{alice, "1.3", "1.3.1", "1.3.1.1", "20250101"},
	)
	return a, b
}

func decodeList(t *testing.T, body []byte) []dcmjson.Dataset {
	t.Helper()
	list, err := dcmjson.Decode(body)
	if err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return list
}

func TestSearchMergesTrusts(t *testing.T) {
	a, b := twoTrusts(t)
	p := newTestProxy(t, a, b)
	resp, body := p.get(t, "/dicom-web/studies?PatientID="+alice, "Accept", "application/dicom+json")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	list := decodeList(t, body)
	var uids []string
	holders := map[string][]string{}
	for _, ds := range list {
		uid := ds.String(dcmjson.TagStudyInstanceUID)
		uids = append(uids, uid)
		holders[uid] = ds.Strings(dcmjson.TagRetrieveAETitle)
		if got, want := ds.String(dcmjson.TagRetrieveURL), p.srv.URL+"/dicom-web/studies/"+uid; got != want {
			t.Errorf("RetrieveURL = %q, want %q", got, want)
		}
	}
	if want := []string{"1.3", "1.1", "1.2"}; strings.Join(uids, " ") != strings.Join(want, " ") {
		t.Fatalf("studies %v, want %v (each once, newest first; no other patient)", uids, want)
	}
	if strings.Join(holders["1.1"], ",") != "TA,TB" {
		t.Fatalf("holders of the shared study = %v, want TA,TB", holders["1.1"])
	}
	for _, ds := range list {
		if ds.String(dcmjson.TagStudyInstanceUID) != "1.1" {
			continue
		}
		// TA holds 2 instances in 1 series, TB 3 in 2: the union is 3 instances in 2 series.
		series, _ := ds.Int(dcmjson.TagNumberOfStudyRelatedSeries)
		inst, _ := ds.Int(dcmjson.TagNumberOfStudyRelatedInstances)
		if series != 2 || inst != 3 {
			t.Fatalf("shared study counts %d series, %d instances; want the union, 2 and 3", series, inst)
		}
	}
	if bytes.Contains(body, []byte(a.srv.URL)) || bytes.Contains(body, []byte(b.srv.URL)) {
		t.Fatal("an upstream URL leaked into the answer")
	}

	// Paging: pages put together are the whole list, and asking again gives the same page.
	var paged []string
	for off := 0; off < 3; off++ {
		_, pb := p.get(t, fmt.Sprintf("/dicom-web/studies?PatientID=%s&limit=1&offset=%d", alice, off))
		for _, ds := range decodeList(t, pb) {
			paged = append(paged, ds.String(dcmjson.TagStudyInstanceUID))
		}
	}
	if strings.Join(paged, " ") != strings.Join(uids, " ") {
		t.Fatalf("pages %v, want %v", paged, uids)
	}
	resp, _ = p.get(t, "/dicom-web/studies?PatientID="+alice+"&limit=1")
	if w := resp.Header.Get("Warning"); !strings.Contains(w, "2 additional results") {
		t.Fatalf("Warning %q; want the count of further results", w)
	}
}

func TestSearchWithFailedTrusts(t *testing.T) {
	a, _ := twoTrusts(t)
	tests := []struct {
		name       string
		origins    []*fakeOrigin
		query      string
		wantStatus int
		wantWarn   string
	}{
		{name: "one trust down", origins: []*fakeOrigin{a, nil}, wantStatus: 200, wantWarn: "DEAD1 (DEAD1 Trust) are missing"},
		{name: "every trust down", origins: []*fakeOrigin{nil, nil}, wantStatus: 503, wantWarn: "DEAD0"},
		{name: "one trust down, partial=fail", origins: []*fakeOrigin{a, nil}, query: "&partial=fail", wantStatus: 503, wantWarn: "DEAD1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProxy(t, tc.origins...)
			resp, body := p.get(t, "/dicom-web/studies?PatientID="+alice+tc.query)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if w := strings.Join(resp.Header.Values("Warning"), "|"); !strings.Contains(w, tc.wantWarn) || !strings.HasPrefix(w, "299 ") {
				t.Fatalf("Warning %q; want a 299 naming %q", w, tc.wantWarn)
			}
			if tc.wantStatus == 503 && resp.Header.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		})
	}
}

// sopsOf reads a multipart answer of fakePart10 files and returns the SOP instance of each
// part, sorted, duplicates kept; a part that is not exactly fakePart10 of its instance fails
// the test.
func sopsOf(t *testing.T, resp *http.Response, body []byte) []string {
	t.Helper()
	var out []string
	for _, part := range partsOf(t, resp, body) {
		meta, _, err := media.ParseFileMeta([]byte(part))
		if err != nil {
			t.Fatalf("a part of the answer is not a PS3.10 file: %v", err)
		}
		if part != string(fakePart10(meta.SOPInstanceUID)) {
			t.Fatalf("the part for %s is not the bytes its trust holds", meta.SOPInstanceUID)
		}
		out = append(out, meta.SOPInstanceUID)
	}
	sort.Strings(out)
	return out
}

// partsOf reads a multipart answer and returns the part bodies.
func partsOf(t *testing.T, resp *http.Response, body []byte) []string {
	t.Helper()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("content type %q: %v", resp.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out []string
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read multipart answer: %v", err)
		}
		b, _ := io.ReadAll(part)
		out = append(out, string(b))
	}
	sort.Strings(out)
	return out
}

// withDifferingCopies adds study 2.1 of alice to a and b, copies that differ with neither
// holding the other: series 2.1.1 at both with different instances, 2.1.2 only at b, 2.1.3
// only at a. The union is 2.1.1.1-3, 2.1.2.1 and 2.1.3.1.
func withDifferingCopies(a, b *fakeOrigin) {
	a.instances = append(a.instances,
		fakeInstance{alice, "2.1", "2.1.1", "2.1.1.1", "20240301"},
		fakeInstance{alice, "2.1", "2.1.1", "2.1.1.2", "20240301"},
		fakeInstance{alice, "2.1", "2.1.3", "2.1.3.1", "20240301"},
	)
	b.instances = append(b.instances,
		fakeInstance{alice, "2.1", "2.1.1", "2.1.1.2", "20240301"},
		fakeInstance{alice, "2.1", "2.1.1", "2.1.1.3", "20240301"},
		fakeInstance{alice, "2.1", "2.1.2", "2.1.2.1", "20240301"},
	)
}

// TestRetrieveUnionOfDifferingCopies: a study or series held at two trusts is answered with
// every instance held anywhere, each once, whether one copy holds them all (passed through
// from it) or neither does (a composite of both trusts' answers, which must ask both).
func TestRetrieveUnionOfDifferingCopies(t *testing.T) {
	a, b := twoTrusts(t)
	withDifferingCopies(a, b)
	p := newTestProxy(t, a, b)
	tests := []struct {
		name      string
		path      string
		want      []string
		composite bool // neither copy holds every instance: both trusts must be asked
	}{
		{name: "study held at two trusts, neither copy holds all", path: "/dicom-web/studies/2.1",
			want: []string{"2.1.1.1", "2.1.1.2", "2.1.1.3", "2.1.2.1", "2.1.3.1"}, composite: true},
		{name: "series held at two trusts with different instances", path: "/dicom-web/studies/2.1/series/2.1.1",
			want: []string{"2.1.1.1", "2.1.1.2", "2.1.1.3"}, composite: true},
		{name: "study whose second copy holds all", path: "/dicom-web/studies/1.1", want: []string{"1.1.1.1", "1.1.1.2", "1.1.2.1"}},
		{name: "series only at the second trust", path: "/dicom-web/studies/1.1/series/1.1.2", want: []string{"1.1.2.1"}},
		{name: "study at one trust", path: "/dicom-web/studies/1.2", want: []string{"1.2.1.1"}},
		{name: "instance", path: "/dicom-web/studies/1.1/series/1.1.2/instances/1.1.2.1", want: []string{"1.1.2.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			beforeA, beforeB := a.retrieves.Load(), b.retrieves.Load()
			resp, body := p.get(t, tc.path, "Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := sopsOf(t, resp, body); strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("parts %v, want %v (every instance held anywhere, each once)", got, tc.want)
			}
			askedBoth := a.retrieves.Load() > beforeA && b.retrieves.Load() > beforeB
			if tc.composite && !askedBoth {
				t.Fatal("the answer did not come from both trusts: the composite path was not taken")
			}
		})
	}
}

// TestCompositeRetrieveSendsEachInstanceOnce: a composite answer is made of the instances
// named in the parts' file meta information, not of part counts. A trust that sends every
// part twice still gives each instance once. A trust whose answer lacks an instance it listed,
// holds one it did not list (its listing, which planned the answer, cannot be trusted whole),
// or whose parts are not PS3.10 files, has the response aborted (never closed as if complete)
// and is charged with the failure.
func TestCompositeRetrieveSendsEachInstanceOnce(t *testing.T) {
	union := []string{"2.1.1.1", "2.1.1.2", "2.1.1.3", "2.1.2.1", "2.1.3.1"}
	tests := []struct {
		name    string
		fault   func(a, b *fakeOrigin)
		aborted bool
		blamed  string // the trust whose failures must count the broken answer
	}{
		{name: "lead trust sends every part twice", fault: func(a, b *fakeOrigin) { a.duplicate.Store(true) }},
		{name: "second trust sends every part twice", fault: func(a, b *fakeOrigin) { b.duplicate.Store(true) }},
		{name: "second trust sends an instance nobody listed", fault: func(a, b *fakeOrigin) { b.extra.Store("9.9.9.9") }, aborted: true, blamed: "TB"},
		{name: "lead trust's answer lacks an instance it listed", fault: func(a, b *fakeOrigin) { a.omit.Store("2.1.1.2") }, aborted: true, blamed: "TA"},
		{name: "second trust's answer lacks an instance it listed", fault: func(a, b *fakeOrigin) { b.omit.Store("2.1.1.3") }, aborted: true, blamed: "TB"},
		{name: "second trust's parts are not PS3.10 files", fault: func(a, b *fakeOrigin) { b.notPart10.Store(true) }, aborted: true, blamed: "TB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := twoTrusts(t)
			withDifferingCopies(a, b)
			tc.fault(a, b)
			p := newTestProxy(t, a, b)
			resp, err := http.Get(p.srv.URL + "/dicom-web/studies/2.1")
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if tc.aborted {
				if err == nil {
					t.Fatalf("status %d and a complete body of %d parts; want the stream aborted", resp.StatusCode, len(partsOf(t, resp, body)))
				}
				if got := p.sourceFailures(t, tc.blamed); got == 0 {
					t.Fatalf("%s's failures were not counted", tc.blamed)
				}
				return
			}
			if err != nil {
				t.Fatalf("retrieve: %v", err)
			}
			if got := sopsOf(t, resp, body); strings.Join(got, " ") != strings.Join(union, " ") {
				t.Fatalf("parts %v, want %v: each instance once", got, union)
			}
		})
	}
}

func TestMetadataUnion(t *testing.T) {
	a, b := twoTrusts(t)
	p := newTestProxy(t, a, b)
	resp, body := p.get(t, "/dicom-web/studies/1.1/metadata")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	list := decodeList(t, body)
	var sops []string
	for _, ds := range list {
		sops = append(sops, ds.String(dcmjson.TagSOPInstanceUID))
		link := ds[dcmjson.TagPixelData].BulkDataURI
		if !strings.HasPrefix(link, p.srv.URL+"/dicom-web/bulkdata/") {
			t.Fatalf("BulkDataURI %q does not point at the proxy", link)
		}
	}
	sort.Strings(sops)
	if strings.Join(sops, " ") != "1.1.1.1 1.1.1.2 1.1.2.1" {
		t.Fatalf("metadata for %v; want each of the 3 instances once", sops)
	}
}

func TestTruncatedUpstreamStreamIsAborted(t *testing.T) {
	a, _ := twoTrusts(t)
	a.truncate.Store(true)
	p := newTestProxy(t, a)
	// The connection is reset: either before the response head (nothing was sent yet, the
	// proxy gathers small writes) or during the body. Either way the client sees an error.
	resp, err := http.Get(p.srv.URL + "/dicom-web/studies/1.2")
	if err == nil {
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
	}
	if err == nil {
		t.Fatal("a truncated upstream study was delivered as a complete response; want the stream aborted")
	}
}

func TestCapabilitiesAndCORS(t *testing.T) {
	a, b := twoTrusts(t)
	p := newTestProxy(t, a, b)
	req, _ := http.NewRequest(http.MethodOptions, p.srv.URL+"/dicom-web", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `<resource path="studies/{study}/metadata">`) {
		t.Fatalf("OPTIONS: %d %s", resp.StatusCode, body)
	}

	req, _ = http.NewRequest(http.MethodOptions, p.srv.URL+"/dicom-web/studies", nil)
	req.Header.Set("Origin", "http://viewer.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "accept, authorization")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "http://viewer.example" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "authorization") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// Only the headers a viewer needs are allowed (its token, Accept, the purpose of use),
	// never cookies or credentials.
	req, _ = http.NewRequest(http.MethodOptions, p.srv.URL+"/dicom-web/studies", nil)
	req.Header.Set("Origin", "http://viewer.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "Authorization, cookie, X-Purpose-Of-Use, x-forwarded-host")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Headers"); got != "Authorization, X-Purpose-Of-Use" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight allows headers %q (credentials %q); want only Authorization and X-Purpose-Of-Use, no credentials", got, resp.Header.Get("Access-Control-Allow-Credentials"))
	}

	resp, _ = p.get(t, "/dicom-web/studies?PatientID="+alice, "Origin", "http://viewer.example")
	if resp.Header.Get("Access-Control-Allow-Origin") != "http://viewer.example" || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Warning") {
		t.Fatalf("CORS headers missing on a search: %v", resp.Header)
	}
	resp, _ = p.get(t, "/dicom-web/studies?PatientID="+alice, "Origin", "http://evil.example")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("an origin that is not configured was allowed")
	}
}

// TestLocatorRemembersOnlyCompleteLocations: a search that a trust's copy can fail to match
// (by date, by patient) must not teach the locator that the other trust alone holds the study;
// a search by StudyInstanceUID alone, which every holder's copy matches, names both. Either
// way the retrieve that follows returns all 3 instances held anywhere, and asks TB.
func TestLocatorRemembersOnlyCompleteLocations(t *testing.T) {
	tests := []struct {
		name string
		// otherPatient files TB's copy of 1.1 under a local identifier, not alice's NHS number.
		otherPatient bool
		search       string
	}{
		// TB's copy of 1.1 has more instances and another date; the search matches TA's only.
		{name: "study UID and a date one copy lacks", search: "StudyInstanceUID=1.1&StudyDate=20240101"},
		{name: "study UID and the patient, TB's copy under another identifier", otherPatient: true,
			search: "StudyInstanceUID=1.1&PatientID=" + alice},
		{name: "study UID alone", otherPatient: true, search: "StudyInstanceUID=1.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := twoTrusts(t)
			if tc.otherPatient {
				b = sharedUnderAnotherPatient(t)
			}
			p := newTestProxy(t, a, b)
			resp, body := p.get(t, "/dicom-web/studies?"+tc.search)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			before := b.calls.Load()
			resp, body = p.get(t, "/dicom-web/studies/1.1")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := partsOf(t, resp, body); len(got) != 3 {
				t.Fatalf("retrieve returned %d instances, want all 3 held anywhere", len(got))
			}
			if b.calls.Load() == before {
				t.Fatal("the second holder was never asked")
			}
		})
	}
}

// sharedUnderAnotherPatient is TB of twoTrusts with its copy of study 1.1 filed under a local
// identifier instead of alice's NHS number, as a trust that has not matched the patient does.
func sharedUnderAnotherPatient(t *testing.T) *fakeOrigin {
	return newFakeOrigin(t, "TB",
		fakeInstance{"LOCAL-77", "1.1", "1.1.1", "1.1.1.1", "20240102"},
		fakeInstance{"LOCAL-77", "1.1", "1.1.1", "1.1.1.2", "20240102"},
		fakeInstance{"LOCAL-77", "1.1", "1.1.2", "1.1.2.1", "20240102"},
		fakeInstance{alice, "1.3", "1.3.1", "1.3.1.1", "20250101"},
	)
}

// TestPatientSearchDoesNotHideAHolder: TB files its copy of alice's study 1.1 under another
// patient identifier, so a search for alice finds 1.1 at TA only. That search must not make
// the locator believe TA is the sole holder: the retrieve of 1.1 that follows includes TB's
// instances (1.1.2.1 is held by TB alone); and once the locator knows both holders, the
// search's counts are those of both copies.
func TestPatientSearchDoesNotHideAHolder(t *testing.T) {
	a, _ := twoTrusts(t)
	b := sharedUnderAnotherPatient(t)
	p := newTestProxy(t, a, b)
	resp, body := p.get(t, "/dicom-web/studies?PatientID="+alice)
	if resp.StatusCode != 200 {
		t.Fatalf("search: status %d: %s", resp.StatusCode, body)
	}
	if holders := resultOf(t, body, dcmjson.TagStudyInstanceUID, "1.1").Strings(dcmjson.TagRetrieveAETitle); strings.Join(holders, ",") != "TA" {
		t.Fatalf("the patient search found 1.1 at %v; the test needs TA alone", holders)
	}
	resp, body = p.get(t, "/dicom-web/studies/1.1", "Accept", acceptDICOM)
	if resp.StatusCode != 200 {
		t.Fatalf("retrieve: status %d: %s", resp.StatusCode, body)
	}
	if got, want := sopsOf(t, resp, body), []string{"1.1.1.1", "1.1.1.2", "1.1.2.1"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("retrieve returned %v, want %v: TB's copy was forgotten", got, want)
	}

	// Now that the locator knows both holders, the patient search counts both copies: what
	// the retrieve returned, though TB still does not answer that search with the study.
	resp, body = p.get(t, "/dicom-web/studies?PatientID="+alice)
	if resp.StatusCode != 200 {
		t.Fatalf("search: status %d: %s", resp.StatusCode, body)
	}
	if n, _ := resultOf(t, body, dcmjson.TagStudyInstanceUID, "1.1").Int(dcmjson.TagNumberOfStudyRelatedInstances); n != 3 {
		t.Fatalf("the search counts %d instances of 1.1; the retrieve returned 3", n)
	}
}

// mustLocalStore is an in-process cache store of maxBytes for the locator.
func mustLocalStore(t *testing.T, maxBytes int64) *cache.Store {
	t.Helper()
	st, err := cache.NewLocalStore(maxBytes, nil, cache.StoreOptions{MaxRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

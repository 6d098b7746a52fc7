package pacssim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// Options configures a Trust.
type Options struct {
	// PatientIDs says where this PACS keeps the NHS number; the zero value keeps it in PatientID.
	PatientIDs PatientIDScheme
	// Thumbnails enables the thumbnail resources; without it they answer 404, as Orthanc does.
	Thumbnails bool
	// Seed drives the generator's noise. Trusts holding copies of one study need the same
	// seed for the copies to be byte-identical.
	Seed uint64
	// Faults are in force from the start, as if set with Trust.SetFaults.
	Faults []Fault
	// RefuseConnections starts the trust refusing connections, as if
	// Trust.RefuseConnections had been called.
	RefuseConnections bool
	// SearchCap, when positive, caps every search answer at that many results, as a PACS
	// with a result limit does: a larger limit (or none) gets SearchCap results, a smaller
	// limit is honoured, offset is honoured so a client can page through, and nothing in the
	// answer says it was cut. 0 (the default) answers in full.
	SearchCap int
}

// RequestKind classifies requests for the per-kind counters.
type RequestKind string

// The kinds of request a Trust counts.
const (
	KindSearch    RequestKind = "search"
	KindRetrieve  RequestKind = "retrieve"
	KindMetadata  RequestKind = "metadata"
	KindFrames    RequestKind = "frames"
	KindBulk      RequestKind = "bulk"
	KindRendered  RequestKind = "rendered"
	KindThumbnail RequestKind = "thumbnail"
	KindOther     RequestKind = "other"
)

// Trust is one sample trust's PACS, serving its studies under /dicom-web. Its data is made
// once, by NewTrust, and never changes; it is safe for concurrent use.
type Trust struct {
	ID   string // the trust's ODS-like code, e.g. "XA1"
	Name string

	opts    Options
	studies []*study
	byStudy map[string]*study

	routes http.Handler
	wrapMu sync.Mutex
	chain  atomic.Pointer[http.Handler] // routes inside the middleware added with Wrap

	total   atomic.Int64
	perKind map[RequestKind]*atomic.Int64 // keys fixed at construction

	faults faultState // see faults.go
}

type study struct {
	uid       string
	series    []*series
	bySeries  map[string]*series
	instances []*held // every instance, in series order
}

type series struct {
	uid        string
	study      *study
	instances  []*held
	byInstance map[string]*held
}

// held is an instance as this trust holds it: its search record depends on the rest of
// the trust's copy of the study (the number of series, the modalities).
type held struct {
	*Instance
	series *series
	record dcmjson.Dataset // metadata plus computed attributes, for matching and answering searches
}

// NewTrust synthesises the given studies and returns the trust holding them. A study UID
// may appear only once in a trust; the same UID at two trusts makes two copies of a study.
func NewTrust(id, name string, opts Options, studies ...StudySpec) (*Trust, error) {
	t := &Trust{ID: id, Name: name, opts: opts, byStudy: map[string]*study{}, perKind: map[RequestKind]*atomic.Int64{}}
	if opts.SearchCap < 0 {
		return nil, fmt.Errorf("create trust %s: search cap %d is negative", id, opts.SearchCap)
	}
	for _, f := range opts.Faults {
		if err := f.Validate(); err != nil {
			return nil, fmt.Errorf("create trust %s: %w", id, err)
		}
	}
	t.faults.set.Store(newFaultSet(opts.Faults))
	t.faults.refusing.Store(opts.RefuseConnections)
	t.faults.endpoints = map[*endpoint]struct{}{}
	for _, k := range []RequestKind{KindSearch, KindRetrieve, KindMetadata, KindFrames, KindBulk, KindRendered, KindThumbnail, KindOther} {
		t.perKind[k] = new(atomic.Int64)
	}
	for _, spec := range studies {
		if _, dup := t.byStudy[spec.UID]; dup {
			return nil, fmt.Errorf("create trust %s: study %s given twice", id, spec.UID)
		}
		instances, err := Synthesize(opts.Seed, spec, opts.PatientIDs)
		if err != nil {
			return nil, fmt.Errorf("create trust %s: %w", id, err)
		}
		st := &study{uid: spec.UID, bySeries: map[string]*series{}}
		for _, in := range instances {
			se := st.bySeries[in.SeriesUID]
			if se == nil {
				se = &series{uid: in.SeriesUID, study: st, byInstance: map[string]*held{}}
				st.bySeries[se.uid] = se
				st.series = append(st.series, se)
			}
			h := &held{Instance: in, series: se}
			se.instances = append(se.instances, h)
			se.byInstance[in.SOPInstanceUID] = h
			st.instances = append(st.instances, h)
		}
		st.computeRecords()
		t.studies = append(t.studies, st)
		t.byStudy[st.uid] = st
	}
	t.routes = t.newRoutes()
	t.chain.Store(&t.routes)
	return t, nil
}

// computeRecords adds to each instance's record the attributes a PACS computes rather than
// stores: counts, ModalitiesInStudy and InstanceAvailability.
func (st *study) computeRecords() {
	var modalities []string
	for _, h := range st.instances {
		if m := h.Modality; m != "" && !slices.Contains(modalities, m) {
			modalities = append(modalities, m)
		}
	}
	for _, se := range st.series {
		for _, h := range se.instances {
			r := h.meta.Clone()
			r.Walk(func(ds dcmjson.Dataset, tag string, el *dcmjson.Element) dcmjson.ItemFilter {
				if el.BulkDataURI != "" {
					delete(ds, tag)
				}
				return hasBulkData
			})
			r.SetStrings(dcmjson.TagModalitiesInStudy, "CS", modalities...)
			r.SetInt(dcmjson.TagNumberOfStudyRelatedSeries, "IS", int64(len(st.series)))
			r.SetInt(dcmjson.TagNumberOfStudyRelatedInstances, "IS", int64(len(st.instances)))
			r.SetInt(dcmjson.TagNumberOfSeriesRelatedInstances, "IS", int64(len(se.instances)))
			r.SetStrings(dcmjson.TagInstanceAvailability, "CS", "ONLINE")
			h.record = r
		}
	}
}

// Instances returns every instance the trust holds, study by study, series by series.
func (t *Trust) Instances() []*Instance {
	var out []*Instance
	for _, st := range t.studies {
		for _, h := range st.instances {
			out = append(out, h.Instance)
		}
	}
	return out
}

// Handler returns the trust's DICOMweb origin; its resources live under /dicom-web.
// Every request is counted before the trust's faults (SetFaults) and any middleware added
// with Wrap see it, so requests a fault rejects are counted too.
func (t *Trust) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := kindOf(r.URL.Path)
		t.total.Add(1)
		t.perKind[kind].Add(1)
		t.serveWithFaults(w, r, kind)
	})
}

// Wrap puts mw around the trust's routes (inside the request counters and the faults set
// with SetFaults), so tests can add checks or faults of their own. Each call wraps what is
// there already; it is safe to call while the trust is serving.
func (t *Trust) Wrap(mw func(http.Handler) http.Handler) {
	t.wrapMu.Lock()
	defer t.wrapMu.Unlock()
	h := mw(*t.chain.Load())
	t.chain.Store(&h)
}

// Unwrap removes every middleware added with Wrap.
func (t *Trust) Unwrap() {
	t.wrapMu.Lock()
	defer t.wrapMu.Unlock()
	h := t.routes
	t.chain.Store(&h)
}

// Requests returns how many requests the trust has received.
func (t *Trust) Requests() int64 { return t.total.Load() }

// RequestsOf returns how many requests of one kind the trust has received.
func (t *Trust) RequestsOf(kind RequestKind) int64 {
	if c, ok := t.perKind[kind]; ok {
		return c.Load()
	}
	return 0
}

func kindOf(path string) RequestKind {
	switch {
	case !strings.HasPrefix(path, "/dicom-web/"):
		return KindOther
	case strings.HasSuffix(path, "/metadata"):
		return KindMetadata
	case strings.HasSuffix(path, "/rendered"):
		return KindRendered
	case strings.HasSuffix(path, "/thumbnail"):
		return KindThumbnail
	case strings.Contains(path, "/bulk/"):
		return KindBulk
	case strings.Contains(path, "/frames/"):
		return KindFrames
	case strings.HasSuffix(path, "/studies"), strings.HasSuffix(path, "/series"), strings.HasSuffix(path, "/instances"):
		return KindSearch
	case strings.HasPrefix(path, "/dicom-web/studies/"):
		return KindRetrieve
	}
	return KindOther
}

func (t *Trust) newRoutes() http.Handler {
	const (
		st = "GET /dicom-web/studies/{study}"
		se = st + "/series/{series}"
		in = se + "/instances/{instance}"
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dicom-web/studies", t.search(levelStudy))
	mux.HandleFunc("GET /dicom-web/series", t.search(levelSeries))
	mux.HandleFunc("GET /dicom-web/instances", t.search(levelInstance))
	mux.HandleFunc(st+"/series", t.search(levelSeries))
	mux.HandleFunc(st+"/instances", t.search(levelInstance))
	mux.HandleFunc(se+"/instances", t.search(levelInstance))

	mux.HandleFunc(st, t.retrieve)
	mux.HandleFunc(se, t.retrieve)
	mux.HandleFunc(in, t.retrieve)
	mux.HandleFunc(st+"/metadata", t.metadata)
	mux.HandleFunc(se+"/metadata", t.metadata)
	mux.HandleFunc(in+"/metadata", t.metadata)
	mux.HandleFunc(in+"/frames/{frames}", t.frames)
	mux.HandleFunc(in+"/bulk/{path...}", t.bulk)
	mux.HandleFunc(in+"/rendered", t.rendered)
	mux.HandleFunc(in+"/frames/{frames}/rendered", t.rendered)
	mux.HandleFunc(st+"/thumbnail", t.thumbnail)
	mux.HandleFunc(se+"/thumbnail", t.thumbnail)
	mux.HandleFunc(in+"/thumbnail", t.thumbnail)
	mux.HandleFunc(in+"/frames/{frames}/thumbnail", t.thumbnail)

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, r, http.StatusMethodNotAllowed, "this PACS is read-only: %s is not supported", r.Method)
			return
		}
		writeError(w, r, http.StatusNotFound, "no such resource")
	})
	return mux
}

// target is what a WADO-RS path names: a study, and perhaps a series and an instance in it.
type target struct {
	study    *study
	series   *series // nil for a study
	instance *held   // nil for a study or series
}

// instances returns the instances the target covers, in order.
func (tg target) instances() []*held {
	switch {
	case tg.instance != nil:
		return []*held{tg.instance}
	case tg.series != nil:
		return tg.series.instances
	}
	return tg.study.instances
}

// resolve finds the study, series and instance the path names. It answers 400 for a
// malformed UID and 404 for one this trust does not hold, and then returns false.
func (t *Trust) resolve(w http.ResponseWriter, r *http.Request) (target, bool) {
	var tg target
	for _, name := range []string{"study", "series", "instance"} {
		if v := r.PathValue(name); v != "" && !validUID(v) {
			writeError(w, r, http.StatusBadRequest, "%s UID %q is not a valid UID", name, v)
			return tg, false
		}
	}
	if tg.study = t.byStudy[r.PathValue("study")]; tg.study == nil {
		writeError(w, r, http.StatusNotFound, "study %s is not held here", r.PathValue("study"))
		return tg, false
	}
	if uid := r.PathValue("series"); uid != "" {
		if tg.series = tg.study.bySeries[uid]; tg.series == nil {
			writeError(w, r, http.StatusNotFound, "series %s is not held here", uid)
			return tg, false
		}
	}
	if uid := r.PathValue("instance"); uid != "" {
		if tg.instance = tg.series.byInstance[uid]; tg.instance == nil {
			writeError(w, r, http.StatusNotFound, "instance %s is not held here", uid)
			return tg, false
		}
	}
	return tg, true
}

// retrieve answers a study, series or instance retrieve: the Part-10 files as
// multipart/related; type="application/dicom", streamed one part at a time.
func (t *Trust) retrieve(w http.ResponseWriter, r *http.Request) {
	tg, ok := t.resolve(w, r)
	if !ok {
		return
	}
	if !acceptsMultipart(r, "application/dicom") {
		writeError(w, r, http.StatusNotAcceptable,
			`only multipart/related; type="application/dicom" in %s is offered`, ExplicitVRLittleEndian)
		return
	}
	mp := newMultipartStream(w, r, "application/dicom")
	omit := omittedInstance(r.Context())
	for _, h := range tg.instances() {
		if h.SOPInstanceUID == omit {
			continue
		}
		hdr := textproto.MIMEHeader{"Content-Type": {"application/dicom; transfer-syntax=" + ExplicitVRLittleEndian}}
		if err := mp.part(hdr, h.Bytes()); err != nil {
			return // the client has gone; nothing more to say
		}
	}
	mp.close()
}

// metadata answers study, series and instance metadata: DICOM JSON with absolute
// BulkDataURIs and RetrieveURLs.
func (t *Trust) metadata(w http.ResponseWriter, r *http.Request) {
	tg, ok := t.resolve(w, r)
	if !ok {
		return
	}
	if !acceptsDICOMJSON(r) {
		writeError(w, r, http.StatusNotAcceptable, "only application/dicom+json is offered")
		return
	}
	base := baseURL(r)
	out := make([]dcmjson.Dataset, 0, len(tg.instances()))
	for _, h := range tg.instances() {
		out = append(out, h.Metadata(base))
	}
	writeJSON(w, out)
}

// frames answers a frame retrieve: the native pixel bytes of each frame asked for, one
// part each, in the order asked.
func (t *Trust) frames(w http.ResponseWriter, r *http.Request) {
	tg, ok := t.resolve(w, r)
	if !ok {
		return
	}
	list, err := parseFrameList(r.PathValue("frames"))
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	var data [][]byte
	for _, n := range list {
		b, err := tg.instance.Frame(n)
		if err != nil {
			writeError(w, r, http.StatusNotFound, "%v", err)
			return
		}
		data = append(data, b)
	}
	t.sendOctets(w, r, data, func(i int) string {
		return tg.instance.URL(baseURL(r)) + "/frames/" + strconv.Itoa(list[i])
	})
}

// bulk answers the BulkDataURIs handed out in metadata. Only PixelData is sent as bulk
// data; every other attribute is inline.
func (t *Trust) bulk(w http.ResponseWriter, r *http.Request) {
	tg, ok := t.resolve(w, r)
	if !ok {
		return
	}
	if path := strings.ToUpper(r.PathValue("path")); path != dcmjson.TagPixelData {
		writeError(w, r, http.StatusNotFound, "no bulk data at %s", r.PathValue("path"))
		return
	}
	t.sendOctets(w, r, [][]byte{tg.instance.PixelData()}, func(int) string {
		return tg.instance.URL(baseURL(r)) + "/bulk/" + dcmjson.TagPixelData
	})
}

// sendOctets writes frames or bulk data: multipart/related; type="application/octet-stream"
// by default, or a single application/octet-stream body when that alone is asked for and
// there is one part.
func (t *Trust) sendOctets(w http.ResponseWriter, r *http.Request, parts [][]byte, location func(int) string) {
	const partType = "application/octet-stream; transfer-syntax=" + ExplicitVRLittleEndian
	switch {
	case acceptsMultipart(r, "application/octet-stream"):
		mp := newMultipartStream(w, r, "application/octet-stream")
		for i, b := range parts {
			hdr := textproto.MIMEHeader{"Content-Type": {partType}, "Content-Location": {location(i)}}
			if err := mp.part(hdr, b); err != nil {
				return
			}
		}
		mp.close()
	case len(parts) == 1 && acceptsSingle(r, "application/octet-stream"):
		w.Header().Set("Content-Type", partType)
		w.Header().Set("Content-Length", strconv.Itoa(len(parts[0])))
		_, _ = w.Write(parts[0])
	default:
		writeError(w, r, http.StatusNotAcceptable,
			`only multipart/related; type="application/octet-stream" in %s is offered`, ExplicitVRLittleEndian)
	}
}

// parseFrameList reads "1,3,5": frame numbers from 1, in the order given.
func parseFrameList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("frame list %q: %q is not a frame number (1 or more)", s, f)
		}
		out = append(out, n)
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode DICOM JSON: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

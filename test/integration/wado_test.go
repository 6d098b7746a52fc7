package integration_test

import (
	"bytes"
	"crypto/sha256"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/test/orthanc"
)

// located is a manifest instance with its study and series.
type located struct {
	st *orthanc.ManifestStudy
	se *orthanc.ManifestSeries
	in *orthanc.ManifestInstance
}

// path is the instance's WADO-RS path.
func (l located) path() string { return instancePath(l.st, l.se, l.in) }

// locate finds a manifest instance by key.
func locate(m *orthanc.Manifest, key string) located {
	st, se, in := m.Instance(key)
	return located{st, se, in}
}

// allInstances returns every instance of the manifest.
func allInstances(m *orthanc.Manifest) []located {
	var out []located
	for i := range m.Studies {
		st := &m.Studies[i]
		for j := range st.Series {
			se := &st.Series[j]
			for k := range se.Instances {
				out = append(out, located{st, se, &se.Instances[k]})
			}
		}
	}
	return out
}

// expectedBytes caches what Orthanc itself gives for an instance under an Accept header.
type expectedBytes struct {
	mu    sync.Mutex
	cache map[string][]byte
}

// instance returns the bytes Orthanc gives for the instance: the file as stored
// (GET /instances/{id}/file) when accept asks for transfer-syntax=*, otherwise the one part of
// Orthanc's own WADO-RS instance retrieve with the same Accept. It asks the instance's first
// holder; holders of a shared instance were loaded with the same file.
func (e *expectedBytes) instance(t *testing.T, l located, accept string) []byte {
	t.Helper()
	key := l.in.SOPInstanceUID + "|" + accept
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cache == nil {
		e.cache = map[string][]byte{}
	}
	if b, ok := e.cache[key]; ok {
		return b
	}
	holder := fx.orthancs[l.in.Holders[0]]
	var b []byte
	if strings.Contains(accept, "transfer-syntax=*") {
		file, err := holder.InstanceFile(t.Context(), l.in.SOPInstanceUID)
		if err != nil {
			t.Fatal(err)
		}
		b = file
	} else {
		ps := parts(t, direct(t, holder.Name, l.path(), accept))
		if len(ps) != 1 {
			t.Fatalf("Orthanc %s answered %d parts for one instance", holder.Name, len(ps))
		}
		b = ps[0].Body
	}
	e.cache[key] = b
	return b
}

func TestRetrieve(t *testing.T) {
	m := needProxy(t)
	shared := m.Study(orthanc.StudyShared)
	alphaA := m.Study(orthanc.StudyAlphaA)
	alphaB := m.Study(orthanc.StudyAlphaB)
	mr := shared.SeriesByKey("SHARED_MR")
	ot := shared.SeriesByKey("SHARED_OT")
	type testCase struct {
		name   string
		path   string
		accept string
		want   []located
	}
	inStudy := func(st *orthanc.ManifestStudy) []located {
		var out []located
		for _, l := range allInstances(m) {
			if l.st.Key == st.Key {
				out = append(out, l)
			}
		}
		return out
	}
	inSeries := func(se *orthanc.ManifestSeries) []located {
		var out []located
		for _, l := range allInstances(m) {
			if l.se.Key == se.Key {
				out = append(out, l)
			}
		}
		return out
	}
	tests := []testCase{
		{"study held by both, as stored", "/studies/" + shared.StudyInstanceUID, acceptDICOMAsStored, inStudy(shared)},
		{"study held by both", "/studies/" + shared.StudyInstanceUID, acceptDICOM, inStudy(shared)},
		{"study held by both, unquoted type", "/studies/" + shared.StudyInstanceUID, "multipart/related; type=application/dicom", inStudy(shared)},
		{"series held by both, instance at one", "/studies/" + shared.StudyInstanceUID + "/series/" + mr.SeriesInstanceUID, acceptDICOM, inSeries(mr)},
		{"series at the second trust only", "/studies/" + shared.StudyInstanceUID + "/series/" + ot.SeriesInstanceUID, acceptDICOM, inSeries(ot)},
		// JPEG 2000 is asked for as stored only: Orthanc crashes transcoding it (see package orthanc).
		{"study with JPEG 2000, as stored", "/studies/" + alphaA.StudyInstanceUID, acceptDICOMAsStored, inStudy(alphaA)},
		{"study at the second trust, implicit VR", "/studies/" + alphaB.StudyInstanceUID, acceptDICOM, inStudy(alphaB)},
	}
	for _, l := range allInstances(m) {
		tests = append(tests, testCase{"instance " + l.in.Key + ", as stored", l.path(), acceptDICOMAsStored, []located{l}})
		if !l.in.TranscodeUnsafe {
			tests = append(tests, testCase{"instance " + l.in.Key, l.path(), acceptDICOM, []located{l}})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := viaProxy(t, tt.path, tt.accept)
			ps := parts(t, r)
			if _, params, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || params["type"] != "application/dicom" {
				t.Errorf("Content-Type %q, want multipart/related with type=application/dicom", r.Header.Get("Content-Type"))
			}
			// Map each expected instance's bytes to its key, then account for every part.
			byHash := map[[32]byte]string{}
			for _, l := range tt.want {
				byHash[sha256.Sum256(fx.expected.instance(t, l, normaliseAccept(tt.accept)))] = l.in.Key
			}
			seen := map[string]int{}
			for i, p := range ps {
				if ct := p.Header["Content-Type"]; len(ct) == 0 || !strings.HasPrefix(ct[0], "application/dicom") {
					t.Errorf("part %d: Content-Type %v, want application/dicom", i+1, ct)
				}
				key, ok := byHash[sha256.Sum256(p.Body)]
				if !ok {
					t.Errorf("part %d (%d bytes) equals no instance Orthanc gives for %s", i+1, len(p.Body), tt.path)
					continue
				}
				seen[key]++
			}
			for _, l := range tt.want {
				if n := seen[l.in.Key]; n != 1 {
					t.Errorf("instance %s (held by %v) came %d times, want once", l.in.Key, l.in.Holders, n)
				}
			}
			if len(ps) != len(tt.want) {
				t.Errorf("%d parts, want %d", len(ps), len(tt.want))
			}
		})
	}
}

// normaliseAccept maps the Accept variants used in TestRetrieve onto the ones asked of Orthanc.
func normaliseAccept(accept string) string {
	if strings.Contains(accept, "transfer-syntax=*") {
		return acceptDICOMAsStored
	}
	return acceptDICOM
}

func TestMetadata(t *testing.T) {
	m := needProxy(t)
	shared := m.Study(orthanc.StudyShared)
	mr := shared.SeriesByKey("SHARED_MR")
	ot := shared.SeriesByKey("SHARED_OT")
	otInstance := locate(m, "SHARED_OT_1")
	mr2 := locate(m, "SHARED_MR_2")
	tests := []struct {
		name string
		path string
		want []string
	}{
		{"study held by both", "/studies/" + shared.StudyInstanceUID + "/metadata", instanceUIDs(shared.Instances())},
		{"series held by both, instance at one", "/studies/" + shared.StudyInstanceUID + "/series/" + mr.SeriesInstanceUID + "/metadata",
			instanceUIDs(mr.Instances)},
		{"series at the second trust only", "/studies/" + shared.StudyInstanceUID + "/series/" + ot.SeriesInstanceUID + "/metadata",
			instanceUIDs(ot.Instances)},
		{"instance at the second trust only", otInstance.path() + "/metadata", []string{otInstance.in.SOPInstanceUID}},
		{"instance at the first trust only", mr2.path() + "/metadata", []string{mr2.in.SOPInstanceUID}},
		{"study at the first trust only", "/studies/" + m.Study(orthanc.StudyAlphaA).StudyInstanceUID + "/metadata",
			instanceUIDs(m.Study(orthanc.StudyAlphaA).Instances())},
		{"study at the second trust only, nested bulk data", "/studies/" + m.Study(orthanc.StudyAlphaB).StudyInstanceUID + "/metadata",
			instanceUIDs(m.Study(orthanc.StudyAlphaB).Instances())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := datasets(t, viaProxy(t, tt.path, acceptJSON))
			uids := uidsOf(got, dcmjson.TagSOPInstanceUID)
			if !slices.Equal(sorted(uids), sorted(tt.want)) {
				t.Fatalf("instances %v, want the union of every holder's copy %v", sorted(uids), sorted(tt.want))
			}
			_, bySource := holdersByUID(t, tt.path, dcmjson.TagSOPInstanceUID)
			for _, d := range got {
				uid := d.String(dcmjson.TagSOPInstanceUID)
				var ref dcmjson.Dataset
				for _, src := range m.Sources {
					if ref = bySource[src][uid]; ref != nil {
						break
					}
				}
				for _, tag := range ref.Tags() {
					if d[tag] == nil {
						t.Errorf("%s: attribute %s that Orthanc gives is missing", uid, tag)
					}
				}
				for _, tag := range []string{dcmjson.TagSOPClassUID, dcmjson.TagRows, dcmjson.TagColumns, dcmjson.TagNumberOfFrames,
					dcmjson.TagPatientID, dcmjson.TagSeriesInstanceUID} {
					if d.String(tag) != ref.String(tag) {
						t.Errorf("%s: %s = %q, Orthanc says %q", uid, tag, d.String(tag), ref.String(tag))
					}
				}
				gotBulk, refBulk := bulkURIs(d), bulkURIs(ref)
				if !slices.Equal(keysOf(gotBulk), keysOf(refBulk)) {
					t.Errorf("%s: bulk data at %v, Orthanc has it at %v", uid, keysOf(gotBulk), keysOf(refBulk))
				}
				for at, uri := range gotBulk {
					if !strings.HasPrefix(uri, fx.proxy.DICOMwebURL()+"/bulkdata/") {
						t.Errorf("%s: BulkDataURI of %s is %q, want %s/bulkdata/<token>", uid, at, uri, fx.proxy.DICOMwebURL())
					}
				}
			}
		})
	}
}

// bulkURIs returns every BulkDataURI of d by its path ("7FE00010", "54000100[0].54001010").
func bulkURIs(d dcmjson.Dataset) map[string]string {
	out := map[string]string{}
	var walk func(d dcmjson.Dataset, prefix string)
	walk = func(d dcmjson.Dataset, prefix string) {
		for tag, el := range d {
			if el == nil {
				continue
			}
			if el.BulkDataURI != "" {
				out[prefix+tag] = el.BulkDataURI
			}
			for i, item := range d.Items(tag) {
				walk(item, prefix+tag+"["+strconv.Itoa(i)+"].")
			}
		}
	}
	walk(d, "")
	return out
}

func TestBulkData(t *testing.T) {
	m := needProxy(t)
	tests := []struct {
		name string
		key  string
		at   string // where the bulk data sits in the instance's metadata
	}{
		{"pixel data of an instance held by both", "SHARED_CT_1", dcmjson.TagPixelData},
		{"waveform data nested in a sequence", "ALPHA_B_ECG_1", "54000100[1].54001010"},
		{"pixel data at the second trust only", "ALPHA_B_RTDOSE_1", dcmjson.TagPixelData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := locate(m, tt.key)
			// Find the URI the way a viewer does: from the study's metadata.
			var uri string
			for _, d := range datasets(t, viaProxy(t, "/studies/"+l.st.StudyInstanceUID+"/metadata", acceptJSON)) {
				if d.String(dcmjson.TagSOPInstanceUID) == l.in.SOPInstanceUID {
					uri = bulkURIs(d)[tt.at]
				}
			}
			if !strings.HasPrefix(uri, fx.proxy.DICOMwebURL()+"/bulkdata/") {
				t.Fatalf("BulkDataURI of %s is %q, want %s/bulkdata/<token>", tt.at, uri, fx.proxy.DICOMwebURL())
			}
			src := l.in.Holders[0]
			var refURI string
			for _, d := range datasets(t, direct(t, src, l.path()+"/metadata", acceptJSON)) {
				refURI = bulkURIs(d)[tt.at]
			}
			if refURI == "" {
				t.Fatalf("Orthanc %s has no bulk data at %s", src, tt.at)
			}
			want := payloads(t, do(t, http.MethodGet, refURI, acceptHeader(acceptOctets), nil))
			r := do(t, http.MethodGet, uri, acceptHeader(acceptOctets), nil)
			checkNoUpstreamAddress(t, r)
			got := payloads(t, r)
			if !slices.EqualFunc(got, want, bytes.Equal) {
				t.Errorf("bulk data through the proxy: %d parts of %v bytes; Orthanc: %d parts of %v bytes",
					len(got), lens(got), len(want), lens(want))
			}
			// A client may not steer the proxy by editing the token.
			// The first character of the token is changed: a base64 decoder may ignore the
			// low bits of the last one.
			i := len(fx.proxy.DICOMwebURL() + "/bulkdata/")
			swap := byte('A')
			if uri[i] == 'A' {
				swap = 'B'
			}
			tampered := uri[:i] + string(swap) + uri[i+1:]
			tr := do(t, http.MethodGet, tampered, acceptHeader(acceptOctets), nil)
			if tr.Status < 400 || tr.Status >= 500 {
				t.Errorf("tampered bulk data token: status %d, want a 4xx refusal", tr.Status)
			}
		})
	}
}

// lens returns the lengths of bs.
func lens(bs [][]byte) []int {
	out := make([]int, len(bs))
	for i, b := range bs {
		out[i] = len(b)
	}
	return out
}

func TestFrames(t *testing.T) {
	m := needProxy(t)
	tests := []struct {
		name   string
		key    string
		frames string
		accept string
		n      int
		jpeg   bool // each frame is a JPEG bitstream Go can decode
	}{
		{"uncompressed, held by both", "SHARED_CT_1", "1", acceptOctets, 1, false},
		{"no Accept", "SHARED_CT_1", "1", "", 1, false},
		{"JPEG-LS decompressed, first trust only", "SHARED_MR_2", "1", acceptOctets, 1, false},
		{"JPEG-LS as stored, first trust only", "SHARED_MR_2", "1", acceptOctetsStored, 1, false},
		{"RLE two frames, second trust only", "SHARED_OT_1", "1,2", acceptOctets, 2, false},
		{"RLE one frame as stored", "SHARED_OT_1", "2", acceptOctetsStored, 1, false},
		{"RT dose frame list", "ALPHA_B_RTDOSE_1", "1,8,15", acceptOctets, 3, false},
		{"JPEG 2000 as stored", "ALPHA_A_NM_1", "1", acceptOctetsStored, 1, false},
		// image/jpeg alone means JPEG lossless (PS3.18); baseline must be named to get the stored bitstream.
		{"JPEG baseline as JPEG", "ALPHA_A_OT_1", "1", `multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50`, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := locate(m, tt.key)
			path := l.path() + "/frames/" + tt.frames
			want := payloads(t, direct(t, l.in.Holders[0], path, tt.accept))
			got := payloads(t, viaProxy(t, path, tt.accept))
			if len(got) != tt.n || len(want) != tt.n {
				t.Fatalf("%d frames through the proxy, %d from Orthanc, want %d", len(got), len(want), tt.n)
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Errorf("frame %d: %d bytes through the proxy differ from Orthanc's %d", i+1, len(got[i]), len(want[i]))
				}
				if tt.jpeg {
					decodeImage(t, response{URL: path, Status: http.StatusOK, Header: http.Header{"Content-Type": {"image/jpeg"}}, Body: got[i]}, "jpeg")
				}
			}
		})
	}
}

func TestRendered(t *testing.T) {
	m := needProxy(t)
	type testCase struct {
		name, path, accept, format string
		directAccept               string // what Orthanc is asked with, when it differs
	}
	var tests []testCase
	for _, l := range allInstances(m) {
		if !l.in.Renderable {
			continue
		}
		tests = append(tests,
			testCase{l.in.Key + " as JPEG", l.path() + "/rendered", "image/jpeg", "jpeg", ""},
			testCase{l.in.Key + " as PNG", l.path() + "/rendered", "image/png", "png", ""},
		)
	}
	ct := locate(m, "SHARED_CT_1")
	rle := locate(m, "SHARED_OT_1")
	tests = append(tests,
		testCase{"no Accept", ct.path() + "/rendered", "", "", ""},
		// Orthanc refuses q-values (400); the proxy must not.
		testCase{"Accept with q-values", ct.path() + "/rendered", "image/png;q=0.5, image/jpeg;q=0.9", "jpeg", "image/jpeg"},
		testCase{"viewport", ct.path() + "/rendered?viewport=32,32", "image/jpeg", "jpeg", ""},
		testCase{"quality", ct.path() + "/rendered?quality=10", "image/jpeg", "jpeg", ""},
		testCase{"window", ct.path() + "/rendered?window=100,200,linear", "image/png", "png", ""},
		testCase{"second frame", rle.path() + "/frames/2/rendered", "image/png", "png", ""},
		testCase{"series", "/studies/" + ct.st.StudyInstanceUID + "/series/" + ct.se.SeriesInstanceUID + "/rendered", "image/jpeg", "jpeg", ""},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := locate(m, "SHARED_CT_1")
			for _, cand := range allInstances(m) {
				if strings.HasPrefix(tt.path, cand.path()) {
					l = cand
				}
			}
			directAccept := tt.accept
			if tt.directAccept != "" {
				directAccept = tt.directAccept
			}
			want := decodeImage(t, direct(t, l.in.Holders[0], tt.path, directAccept), tt.format)
			got := decodeImage(t, viaProxy(t, tt.path, tt.accept), tt.format)
			if got.Bounds() != want.Bounds() {
				t.Errorf("image %v through the proxy, %v from Orthanc", got.Bounds(), want.Bounds())
			}
		})
	}
}

func TestThumbnail(t *testing.T) {
	m := needProxy(t)
	ct := locate(m, "SHARED_CT_1")
	rle := locate(m, "SHARED_OT_1")
	tests := []struct {
		name, path, accept string
	}{
		{"study held by both", "/studies/" + ct.st.StudyInstanceUID + "/thumbnail", ""},
		{"series", "/studies/" + ct.st.StudyInstanceUID + "/series/" + ct.se.SeriesInstanceUID + "/thumbnail", "image/jpeg"},
		{"instance", ct.path() + "/thumbnail", "image/png"},
		{"instance at the second trust only", rle.path() + "/thumbnail", ""},
		{"study at the first trust only", "/studies/" + m.Study(orthanc.StudyBravoA).StudyInstanceUID + "/thumbnail", "image/jpeg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			format := strings.TrimPrefix(tt.accept, "image/")
			img := decodeImage(t, viaProxy(t, tt.path, tt.accept), format)
			if b := img.Bounds(); b.Dx() > 1024 || b.Dy() > 1024 {
				t.Errorf("thumbnail of %v is not small", b)
			}
		})
	}
}

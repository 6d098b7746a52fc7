package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	_ "image/gif" // Thumbnails may come as GIF.
	_ "image/jpeg"
	_ "image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/test/orthanc"
)

// Accept headers used throughout, as real clients send them.
const (
	acceptJSON          = "application/dicom+json"
	acceptDICOM         = `multipart/related; type="application/dicom"`
	acceptDICOMAsStored = `multipart/related; type="application/dicom"; transfer-syntax=*`
	acceptOctets        = `multipart/related; type="application/octet-stream"`
	acceptOctetsStored  = "multipart/related; type=application/octet-stream; transfer-syntax=*"
)

// response is one complete HTTP answer.
type response struct {
	Method string
	URL    string
	Status int
	Header http.Header
	Body   []byte
}

// do sends one request with the fixture's client and reads the whole answer.
func do(t *testing.T, method, url string, header http.Header, body []byte) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		t.Fatalf("build %s %s: %v", method, url, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := fx.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, url, err)
	}
	return response{Method: method, URL: url, Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// acceptHeader returns a header with Accept set, or no header for "".
func acceptHeader(accept string) http.Header {
	if accept == "" {
		return nil
	}
	return http.Header{"Accept": {accept}}
}

// viaProxy sends GET path (relative to the proxy's /dicom-web) and checks that nothing in the
// answer points at an Orthanc.
func viaProxy(t *testing.T, path, accept string) response {
	t.Helper()
	r := do(t, http.MethodGet, fx.proxy.DICOMwebURL()+path, acceptHeader(accept), nil)
	checkNoUpstreamAddress(t, r)
	return r
}

// direct sends GET path (relative to /dicom-web) straight to the Orthanc of source.
func direct(t *testing.T, source, path, accept string) response {
	t.Helper()
	return do(t, http.MethodGet, fx.orthancs[source].DICOMwebURL()+path, acceptHeader(accept), nil)
}

// upstreamMarkers are strings that reveal an Orthanc's address in a response.
func upstreamMarkers() []string {
	var out []string
	for _, s := range fx.orthancs {
		p := strconv.Itoa(s.Port)
		out = append(out, "127.0.0.1:"+p, "localhost:"+p, ":"+p+"/")
	}
	return out
}

// checkNoUpstreamAddress fails t if r's headers or body mention an Orthanc's address.
func checkNoUpstreamAddress(t *testing.T, r response) {
	t.Helper()
	for _, marker := range upstreamMarkers() {
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, marker) {
					t.Errorf("%s %s: header %s: %q reveals an Orthanc address (%s)", r.Method, r.URL, k, v, marker)
				}
			}
		}
		if i := bytes.Index(r.Body, []byte(marker)); i >= 0 {
			lo, hi := max(0, i-80), min(len(r.Body), i+80)
			t.Errorf("%s %s: body reveals an Orthanc address (%s): ...%q...", r.Method, r.URL, marker, r.Body[lo:hi])
		}
	}
}

// wantStatus fails t now unless r has the status want.
func wantStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s %s: status %d, want %d; body: %.600s", r.Method, r.URL, r.Status, want, r.Body)
	}
}

// datasets decodes a DICOM JSON answer; 204 No Content is an empty list.
func datasets(t *testing.T, r response) []dcmjson.Dataset {
	t.Helper()
	if r.Status == http.StatusNoContent {
		return nil
	}
	wantStatus(t, r, http.StatusOK)
	ds, err := dcmjson.Decode(r.Body)
	if err != nil {
		t.Fatalf("%s: decode DICOM JSON: %v; body: %.400s", r.URL, err, r.Body)
	}
	return ds
}

// part is one body part of a multipart answer.
type part struct {
	Header map[string][]string
	Body   []byte
}

// parts splits a multipart/related answer into its parts, failing t if it is not one.
func parts(t *testing.T, r response) []part {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["boundary"] == "" {
		t.Fatalf("%s: Content-Type %q is not multipart/related with a boundary (%v)", r.URL, r.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(r.Body), params["boundary"])
	var out []part
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: read part %d: %v (a stream that ends without its closing boundary is incomplete)", r.URL, len(out)+1, err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("%s: read part %d: %v", r.URL, len(out)+1, err)
		}
		out = append(out, part{Header: p.Header, Body: body})
	}
}

// payloads returns the bodies of a multipart answer, or the body itself for a single-part one.
func payloads(t *testing.T, r response) [][]byte {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	if strings.HasPrefix(strings.ToLower(r.Header.Get("Content-Type")), "multipart/") {
		var out [][]byte
		for _, p := range parts(t, r) {
			out = append(out, p.Body)
		}
		return out
	}
	return [][]byte{r.Body}
}

// decodeImage decodes a rendered answer, failing t if it is not an image of the wanted format
// ("" for any of JPEG, PNG, GIF).
func decodeImage(t *testing.T, r response, format string) image.Image {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	img, got, err := image.Decode(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("%s: body of %d bytes (Content-Type %q) is not an image: %v", r.URL, len(r.Body), r.Header.Get("Content-Type"), err)
	}
	if format != "" && got != format {
		t.Errorf("%s: image is %s, want %s", r.URL, got, format)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "image/") {
		t.Errorf("%s: Content-Type %q, want image/*", r.URL, ct)
	}
	if b := img.Bounds(); b.Dx() == 0 || b.Dy() == 0 {
		t.Errorf("%s: empty image %v", r.URL, b)
	}
	return img
}

// errorBody is the proxy's DICOMweb error body.
type errorBody struct {
	Status  int    `json:"status"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

// wantError checks that r is a DICOMweb error with status want and a message.
func wantError(t *testing.T, r response, want int) {
	t.Helper()
	if r.Status != want {
		t.Errorf("%s %s: status %d, want %d; body: %.400s", r.Method, r.URL, r.Status, want, r.Body)
		return
	}
	var e errorBody
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Errorf("%s %s: error body is not JSON: %v; body: %.400s", r.Method, r.URL, err, r.Body)
		return
	}
	if e.Status != want || e.Error != http.StatusText(want) || strings.TrimSpace(e.Message) == "" {
		t.Errorf("%s %s: error body %+v, want status %d, error %q and a message", r.Method, r.URL, e, want, http.StatusText(want))
	}
	if ct := r.Header.Get("Content-Type"); !strings.Contains(ct, "json") {
		t.Errorf("%s %s: error Content-Type %q, want JSON", r.Method, r.URL, ct)
	}
}

// uidsOf returns the values of tag in each dataset, in order.
func uidsOf(ds []dcmjson.Dataset, tag string) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.String(tag))
	}
	return out
}

// sorted returns a sorted copy of s.
func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// holdersByUID queries every Orthanc directly with path and returns, for each UID (the value of
// tag), the sources whose answer had it, in source order, and each source's datasets by UID.
// A 404 counts as an empty answer.
func holdersByUID(t *testing.T, path, tag string) (map[string][]string, map[string]map[string]dcmjson.Dataset) {
	t.Helper()
	holders := map[string][]string{}
	bySource := map[string]map[string]dcmjson.Dataset{}
	for _, src := range fx.manifest.Sources {
		bySource[src] = map[string]dcmjson.Dataset{}
		r := direct(t, src, path, acceptJSON)
		if r.Status == http.StatusNotFound {
			continue // Orthanc answers 404 for metadata of what it does not hold.
		}
		for _, d := range datasets(t, r) {
			uid := d.String(tag)
			holders[uid] = append(holders[uid], src)
			bySource[src][uid] = d
		}
	}
	return holders, bySource
}

// keysOf returns the sorted keys of m.
func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// instanceUIDs returns the SOP Instance UIDs of the manifest's instances held by any of the
// given sources (all sources when none is given).
func instanceUIDs(ins []orthanc.ManifestInstance, sources ...string) []string {
	var out []string
	for _, in := range ins {
		if len(sources) == 0 || slices.ContainsFunc(in.Holders, func(h string) bool { return slices.Contains(sources, h) }) {
			out = append(out, in.SOPInstanceUID)
		}
	}
	slices.Sort(out)
	return out
}

// instancePath is the WADO-RS path of an instance.
func instancePath(st *orthanc.ManifestStudy, se *orthanc.ManifestSeries, in *orthanc.ManifestInstance) string {
	return "/studies/" + st.StudyInstanceUID + "/series/" + se.SeriesInstanceUID + "/instances/" + in.SOPInstanceUID
}

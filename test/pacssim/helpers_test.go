package pacssim

import (
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// demo is the demo's trusts, each behind an httptest server.
type demo struct {
	trusts  map[string]*Trust
	servers map[string]*httptest.Server
}

func newDemo(t *testing.T) *demo {
	t.Helper()
	trusts, err := DemoTrusts()
	if err != nil {
		t.Fatalf("DemoTrusts: %v", err)
	}
	d := &demo{trusts: map[string]*Trust{}, servers: map[string]*httptest.Server{}}
	for _, tr := range trusts {
		srv := httptest.NewServer(tr.Handler())
		t.Cleanup(srv.Close)
		d.trusts[tr.ID] = tr
		d.servers[tr.ID] = srv
	}
	return d
}

// base returns the DICOMweb root of a trust's test server.
func (d *demo) base(id string) string { return d.servers[id].URL + "/dicom-web" }

// get sends a GET with the given Accept header ("" for none).
func get(t *testing.T, url, accept string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// getJSON GETs url and decodes a DICOM JSON array, failing unless the status is 200.
func getJSON(t *testing.T, url string) []dcmjson.Dataset {
	t.Helper()
	resp := get(t, url, "application/dicom+json")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", url, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/dicom+json" {
		t.Fatalf("GET %s: Content-Type %q", url, ct)
	}
	out, err := dcmjson.Decode(body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return out
}

type part struct {
	contentType string
	body        []byte
}

// readMultipart checks a multipart/related answer's type parameter and returns its parts.
func readMultipart(t *testing.T, resp *http.Response, wantType string) []part {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["type"] != wantType {
		t.Fatalf("Content-Type %q: want multipart/related; type=%q (err %v)", resp.Header.Get("Content-Type"), wantType, err)
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	var parts []part
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatalf("next part: %v", err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		parts = append(parts, part{contentType: p.Header.Get("Content-Type"), body: body})
	}
}

func uids(ds []dcmjson.Dataset, tag string) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.String(tag))
	}
	return out
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

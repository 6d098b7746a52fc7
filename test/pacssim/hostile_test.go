package pacssim

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHostileModes: every hostile mode is a valid set of faults, and each sends, twice the
// same, what it says: script, the hostile headers, planted internal URLs, an oversized answer.
func TestHostileModes(t *testing.T) {
	hostile, honest, err := HostileTrusts()
	if err != nil {
		t.Fatal(err)
	}
	if len(hostile.Instances()) != 2 || len(honest.Instances()) != 2 || !bytes.Equal(hostile.Instances()[0].Bytes(), honest.Instances()[0].Bytes()) {
		t.Fatal("the hostile and honest trusts do not hold the same two instances")
	}
	srv := httptest.NewServer(hostile.Handler())
	t.Cleanup(srv.Close)
	root := srv.URL + "/dicom-web/studies/" + HostileStudyUID
	instance := root + "/series/" + HostileSeriesUID + "/instances/" + HostileInstanceUID
	read := func(url, accept string) (*http.Response, []byte) {
		resp := get(t, url, accept)
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		return resp, body
	}
	for _, tc := range []struct {
		mode, url, accept string
		// check is the hostile feature the answer must have.
		check func(resp *http.Response, body []byte) bool
	}{
		{"svg images", instance + "/rendered", "image/jpeg", func(resp *http.Response, body []byte) bool {
			return resp.Header.Get("Content-Type") == "image/svg+xml" && bytes.Contains(body, []byte("<script>/*"+ActiveMarker))
		}},
		{"html parts", root, `multipart/related; type="application/dicom"`, func(resp *http.Response, body []byte) bool {
			return strings.Contains(resp.Header.Get("Content-Type"), `type="application/dicom"`) && bytes.Contains(body, []byte("Content-Type: text/html"))
		}},
		{"headers", instance + "/frames/1", `multipart/related; type="application/octet-stream"`, func(resp *http.Response, body []byte) bool {
			return resp.Header.Get("Set-Cookie") != "" && resp.Header.Get("Www-Authenticate") != "" && bytes.Contains(body, []byte("Content-Description: from http://"+InternalHost))
		}},
		{"internal urls", root + "/metadata", "application/dicom+json", func(resp *http.Response, body []byte) bool {
			return bytes.Contains(body, []byte(`"0040E010":{"Value":["http://`+InternalHost+`/wado`)) && bytes.Contains(body, []byte(`"BulkDataURI":"http://`+InternalMetadataHost))
		}},
		{"oversized metadata", root + "/metadata", "application/dicom+json", func(resp *http.Response, body []byte) bool {
			return len(body) > 65<<20
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			var mode *HostileMode
			for _, m := range HostileModes() {
				if m.Name == tc.mode {
					mode = &m
				}
			}
			if mode == nil {
				t.Fatalf("no hostile mode %q", tc.mode)
			}
			hostile.SetFaults(mode.Faults...) // panics if a fault is invalid
			t.Cleanup(func() { hostile.SetFaults() })
			resp, first := read(tc.url, tc.accept)
			if resp.StatusCode != http.StatusOK || !tc.check(resp, first) {
				t.Fatalf("status %d, Content-Type %q, body %.300s: not the hostile answer", resp.StatusCode, resp.Header.Get("Content-Type"), first)
			}
			if _, again := read(tc.url, tc.accept); tc.mode != "html parts" && tc.mode != "headers" && !bytes.Equal(first, again) {
				t.Fatal("the same request got different bytes") // multipart boundaries are random
			}
		})
	}
	for _, m := range HostileModes() {
		for _, f := range m.Faults {
			if err := f.Validate(); err != nil {
				t.Errorf("mode %q: %v", m.Name, err)
			}
		}
	}
}

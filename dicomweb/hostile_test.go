package dicomweb

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

// activeOrigin is a trust that holds study 7.1 and answers thumbnails and rendered images with
// the content type it is told to, whatever was asked: an HTML page with a script, or an SVG.
func activeOrigin(t *testing.T, contentType string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/studies"):
			ds := dcmjson.Dataset{}
			ds.SetStrings(dcmjson.TagStudyInstanceUID, "UI", "7.1")
			ds.SetStrings(dcmjson.TagPatientID, "LO", alice)
			writeTestJSON(w, []dcmjson.Dataset{ds})
		case strings.HasSuffix(r.URL.Path, "/thumbnail"), strings.HasSuffix(r.URL.Path, "/rendered"):
			w.Header().Set("Content-Type", contentType)
			io.WriteString(w, `<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg><html><script>alert(1)</script></html>`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestNothingActiveFromATrust: a thumbnail or rendered image that a trust answers with a type
// other than the image type negotiated (text/html, image/svg+xml, another image type) is never
// passed on: the trust is a failed source (503 naming it), and its bytes do not reach the
// client. Every answer, errors included, tells browsers not to sniff, run or frame it.
func TestNothingActiveFromATrust(t *testing.T) {
	for _, ct := range []string{"text/html; charset=utf-8", "image/svg+xml", "image/png", "application/xhtml+xml"} {
		for _, path := range []string{"/dicom-web/studies/7.1/thumbnail", "/dicom-web/studies/7.1/series/7.1.1/instances/7.1.1.1/rendered"} {
			t.Run(ct+" "+path, func(t *testing.T) {
				origin := activeOrigin(t, ct)
				u, _ := url.Parse(origin.URL + "/dicom-web")
				src := upstream.NewSource(upstream.SourceConfig{ID: "TH", Name: "TH Trust", BaseURL: u, Timeout: 2 * time.Second}, testSourceOptions(2*time.Second), slog.New(slog.DiscardHandler))
				srv := New(testConfig("http://proxy.test"), Deps{
					Locator: upstream.NewLocator([]*upstream.Source{src}, mustLocalStore(t, 1<<20), time.Minute, slog.New(slog.DiscardHandler)),
					Signer:  NewSigner([]byte("0123456789abcdef0123456789abcdef"), time.Hour, nil),
					Auth:    policy.AllowAll{}, Authz: policy.AllowAll{}, Audit: audit.Discard{},
				})
				e := echo.New()
				srv.Register(e)
				proxy := httptest.NewServer(e)
				t.Cleanup(proxy.Close)

				req, _ := http.NewRequest(http.MethodGet, proxy.URL+path, nil)
				req.Header.Set("Accept", "image/jpeg")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(body), "<script") {
					t.Fatalf("status %d, %s; want 503 and nothing of the trust's answer", resp.StatusCode, body)
				}
				if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, "application/") || strings.Contains(got, "html") {
					t.Fatalf("content type %q; want a DICOMweb error body", got)
				}
				if w := strings.Join(resp.Header.Values("Warning"), "|"); !strings.Contains(w, "TH (TH Trust)") {
					t.Fatalf("Warning %q; want the trust named", w)
				}
				for k, want := range map[string]string{
					"X-Content-Type-Options":  "nosniff",
					"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
					"Referrer-Policy":         "no-referrer",
				} {
					if got := resp.Header.Get(k); got != want {
						t.Fatalf("%s: %q, want %q", k, got, want)
					}
				}
				if st := src.Status(); st.Failures == 0 {
					t.Fatalf("the trust's answer was not counted as a failure: %+v", st)
				}
			})
		}
	}
}

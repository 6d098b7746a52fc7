package dicomweb

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

// listenLoopback returns a listener on a free loopback port and the proxy's public URL there,
// so that a test proxy can be configured with the URL it will be reached at.
func listenLoopback(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, "http://" + ln.Addr().String()
}

// serveOn starts a test server of h on ln.
func serveOn(ln net.Listener, h http.Handler) *httptest.Server {
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	srv.Start()
	return srv
}

// Internal names a hostile trust plants in its answers; none may reach a client.
const (
	internalHost = "pacs-internal.trust.local"
	internalIP   = "10.20.30.40"
	attacker     = "attacker.example"
)

// plantingTrust is a fake origin whose DICOM JSON answers carry, in every object, internal
// addresses in every place a URL can hide: RetrieveURI as UT, UR values at another host and
// outside the DICOMweb root, BulkDataURIs at another host, outside any study and by a
// network-path reference, text values naming hosts, and sequences two deep holding the same,
// with keys in lower case or escaped, slashes escaped, and a host as a tag key. (An element whose
// VR is not a VR, or an item that is not an object, makes the whole answer invalid upstream.)
// It records the path of every request.
type plantingTrust struct {
	inner *fakeOrigin
	srv   *httptest.Server
	mu    sync.Mutex
	paths []string
}

func newPlantingTrust(t *testing.T, id string, inst ...fakeInstance) *plantingTrust {
	p := &plantingTrust{inner: &fakeOrigin{id: id, instances: inst}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.inner.srv = p.srv
	t.Cleanup(p.srv.Close)
	return p
}

func (p *plantingTrust) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.paths...)
}

func (p *plantingTrust) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.paths = append(p.paths, r.URL.Path)
	p.mu.Unlock()
	rec := httptest.NewRecorder()
	p.inner.serve(rec, r)
	if !strings.Contains(rec.Header().Get("Content-Type"), "dicom+json") {
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	list, err := dcmjson.Decode(rec.Body.Bytes())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for _, ds := range list {
		plant(ds, "http://"+r.Host)
	}
	writeTestJSON(w, list)
}

// plant adds the internal addresses to ds; trust is the trust's own origin (http://host:port).
func plant(ds dcmjson.Dataset, trust string) {
	study := ds.String(dcmjson.TagStudyInstanceUID)
	ds.SetStrings(tagRetrieveURI, "UT", "http://"+internalHost+"/wado?studyUID="+study)
	ds.SetStrings("00081191", "UR", trust+"/wado?requestType=WADO", "http://"+internalIP+"/dicom-web/studies/"+study)
	ds.SetStrings("00080120", "UR", "http://"+internalHost+"/codes")
	ds.SetStrings("00324000", "LT", "Read at "+trust+"/viewer")
	ds.SetStrings("00081030", "LO", "Study held at "+strings.TrimPrefix(trust, "http://"))
	ds["00420011"] = &dcmjson.Element{VR: "OB", BulkDataURI: "http://" + attacker + "/dicom-web/studies/" + study + "/bulk"}
	ds["00431028"] = &dcmjson.Element{VR: "OB", BulkDataURI: "//" + attacker + "/dicom-web/other"}
	ds["00431029"] = &dcmjson.Element{VR: "OB", BulkDataURI: trust + "/dicom-web/other"}
	ds["0043102A"] = &dcmjson.Element{VR: "OB", BulkDataURI: trust + "/dicom-web//" + attacker + "/studies/" + study}
	deep := `{"00081190":{"vr":"UR","Value":["http://` + internalIP + `/x"]},` +
		`"7FE00010":{"vr":"OW","BulkDataURI":"http://` + internalHost + `/bulk"},` +
		`"00081160":{"vr":"IS","Value":["` + internalHost + `"]}}`
	ds["00400275"] = &dcmjson.Element{VR: "SQ", Value: []json.RawMessage{
		json.RawMessage(`{"0040E010":{"vr":"UR","Value":["` + trust + `/dicom-web/studies/` + study + `"]},"00081199":{"vr":"SQ","Value":[` + deep + `]}}`),
		json.RawMessage(`{"00420011":{"vr":"OB","bulkdatauri":"http:\/\/` + internalHost + `\/x"}}`),
		json.RawMessage(`{"00420011":{"vr":"OB","BulkDat\u0061URI":"http:\/\/` + internalHost + `\/x"}}`),
		json.RawMessage(`{"00324000":{"vr":"LT","Value":["http:\/\/` + internalHost + `\/x"]}}`),
		json.RawMessage(`{"` + internalHost + `":{"vr":"LO","Value":["x"]}}`),
	}}
}

// newLinkProxy is a proxy over one planting trust, at publicURL, with signer and authz.
func newLinkProxy(t *testing.T, trust *plantingTrust, signer *Signer, authz policy.Authorizer) *httptest.Server {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	u, _ := url.Parse(trust.srv.URL + "/dicom-web")
	src := upstream.NewSource(upstream.SourceConfig{ID: trust.inner.id, Name: "Planting Trust", BaseURL: u, Timeout: 2 * time.Second}, testSourceOptions(2*time.Second), log)
	srv := New(testConfig("http://nirproxy.test/"), Deps{
		Locator: upstream.NewLocator([]*upstream.Source{src}, mustLocalStore(t, 1<<20), time.Minute, log),
		Signer:  signer,
		Auth:    policy.AllowAll{}, Authz: authz, Audit: audit.Discard{}, Log: log,
	})
	e := echo.New()
	srv.Register(e)
	proxy := httptest.NewServer(e)
	t.Cleanup(proxy.Close)
	return proxy
}

func getWith(t *testing.T, rawURL string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// TestNoInternalAddressLeaves: whatever URLs and host names a trust plants in its searches and
// metadata (JSON and XML), at any depth, the client's bytes name neither the trust nor any
// internal or other host: only the proxy's public URL. Host and X-Forwarded-* headers from the
// client do not change the links.
func TestNoInternalAddressLeaves(t *testing.T) {
	trust := newPlantingTrust(t, "PT",
		fakeInstance{alice, "1.1", "1.1.1", "1.1.1.1", "20240101"},
		fakeInstance{alice, "1.1", "1.1.2", "1.1.2.1", "20240101"})
	proxy := newLinkProxy(t, trust, NewSigner([]byte(testKey), time.Hour, nil), policy.AllowAll{})
	trustHost := strings.TrimPrefix(trust.srv.URL, "http://")
	forged := []string{"Host", "evil.example", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https", "Forwarded", "host=evil.example;proto=https"}
	for _, tc := range []struct {
		name, path string
		header     []string
	}{
		{name: "study search", path: "/dicom-web/studies?PatientID=" + alice},
		{name: "series search", path: "/dicom-web/studies/1.1/series"},
		{name: "instance search", path: "/dicom-web/studies/1.1/instances"},
		{name: "study metadata", path: "/dicom-web/studies/1.1/metadata"},
		{name: "instance metadata", path: "/dicom-web/studies/1.1/series/1.1.1/instances/1.1.1.1/metadata"},
		{name: "metadata as XML", path: "/dicom-web/studies/1.1/metadata", header: []string{"Accept", `multipart/related; type="application/dicom+xml"`}},
		{name: "search with forged Host and forwarding headers", path: "/dicom-web/studies?PatientID=" + alice, header: forged},
		{name: "metadata with forged Host and forwarding headers", path: "/dicom-web/studies/1.1/metadata", header: forged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := getWith(t, proxy.URL+tc.path, tc.header...)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			lower := bytes.ToLower(body)
			for _, bad := range []string{trustHost, internalHost, internalIP, attacker, "evil.example", "127.0.0.1", "https:"} {
				if bytes.Contains(lower, []byte(bad)) {
					t.Errorf("the answer names %q:\n%s", bad, body)
				}
			}
			if !bytes.Contains(body, []byte("http://nirproxy.test/dicom-web/")) {
				t.Errorf("the answer has no link at the proxy's public URL:\n%s", body)
			}
		})
	}
}

// recordingAuthz permits everything and remembers the studies it was asked about.
type recordingAuthz struct {
	mu      sync.Mutex
	studies []string
}

func (a *recordingAuthz) Authorize(_ context.Context, _ policy.Principal, act policy.Action) (policy.Grant, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.studies = append(a.studies, act.StudyUID)
	return policy.Grant{}, nil
}

func (a *recordingAuthz) AuthorizePatient(context.Context, policy.Principal, policy.Action) error {
	return nil
}

func (a *recordingAuthz) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.studies) == 0 {
		return ""
	}
	return a.studies[len(a.studies)-1]
}

// TestBulkdataLinks: a link from the metadata reaches the trust at the signed path and is
// authorised for the signed study; every link that is tampered with, expired, signed by another
// key or of an old version, or names a path outside a study, is a 404 saying so, and no request
// reaches the trust.
func TestBulkdataLinks(t *testing.T) {
	trust := newPlantingTrust(t, "PT", fakeInstance{alice, "1.1", "1.1.1", "1.1.1.1", "20240101"})
	now := time.Unix(1_700_000_000, 0)
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	authz := &recordingAuthz{}
	signer := NewSigner([]byte(testKey), time.Hour, clock)
	proxy := newLinkProxy(t, trust, signer, authz)

	resp, body := getWith(t, proxy.URL+"/dicom-web/studies/1.1/series/1.1.1/instances/1.1.1.1/metadata")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata: status %d: %s", resp.StatusCode, body)
	}
	list := decodeList(t, body)
	if len(list) != 1 {
		t.Fatalf("metadata of %d instances, want 1", len(list))
	}
	link := list[0][dcmjson.TagPixelData].BulkDataURI
	token, ok := strings.CutPrefix(link, "http://nirproxy.test/dicom-web/bulkdata/")
	if !ok {
		t.Fatalf("PixelData's BulkDataURI %q is not a proxy link", link)
	}
	// The link names the instance whose metadata held it, for the audit record of its use.
	if l, err := signer.Verify(token); err != nil || l.Series != "1.1.1" || l.Instance != "1.1.1.1" {
		t.Errorf("the PixelData link verifies as %+v, %v; want it to name series 1.1.1 and instance 1.1.1.1", l, err)
	}
	for _, tag := range []string{"00420011", "00431028", "00431029", "0043102A"} {
		if el := list[0][tag]; el == nil || el.BulkDataURI != "" || el.VR != "OB" {
			t.Errorf("%s = %+v; want the element with its vr and no BulkDataURI", tag, el)
		}
	}

	before := len(trust.requests())
	resp, body = getWith(t, proxy.URL+"/dicom-web/bulkdata/"+token)
	reqs := trust.requests()
	if len(reqs) != before+1 || reqs[len(reqs)-1] != "/dicom-web/studies/1.1/series/1.1.1/instances/1.1.1.1/bulk/7FE00010" {
		t.Fatalf("a valid link made the requests %q (status %d %s); want one for the signed path", reqs[before:], resp.StatusCode, body)
	}
	if got := authz.last(); got != "1.1" {
		t.Errorf("the bulkdata request was authorised for study %q, want the signed study 1.1", got)
	}

	later := now.Add(time.Hour)
	other, _ := NewSigner([]byte("another key of at least 32 bytes!"), time.Hour, clock).Sign("PT", "studies/1.1/series/1.1.1/instances/1.1.1.1/bulk/7FE00010", testCaller, BulkOwner{})
	tests := []struct {
		name, token, want string
		advance           time.Duration
	}{
		{name: "tampered", token: tamper(token, 20), want: "bulkdata link is invalid"},
		{name: "expired", token: token, advance: time.Hour, want: "has expired (links are valid for 1h)"},
		{name: "foreign key", token: other, want: "bulkdata link is invalid"},
		{name: "old version", token: forgeToken(testKey, 1, later, "PT", "", "studies/1.1/series/1.1.1/instances/1.1.1.1/bulk/7FE00010"), want: "format this proxy does not accept"},
		{name: "path not under a study", token: forgeToken(testKey, tokenVersion, later, "PT", "", "other"), want: "bulkdata link is invalid"},
		{name: "another host by a double slash", token: forgeToken(testKey, tokenVersion, later, "PT", "1.1", "studies/1.1//"+attacker+"/x"), want: "bulkdata link is invalid"},
		{name: "traversal", token: forgeToken(testKey, tokenVersion, later, "PT", "1.1", "studies/1.1/../../admin"), want: "bulkdata link is invalid"},
		{name: "encoded traversal", token: forgeToken(testKey, tokenVersion, later, "PT", "1.1", "studies/1.1/%2e%2e/%2e%2e/admin"), want: "bulkdata link is invalid"},
		{name: "study not the path's", token: forgeToken(testKey, tokenVersion, later, "PT", "9.9", "studies/1.1/bulk"), want: "bulkdata link is invalid"},
		{name: "unknown trust", token: forgeToken(testKey, tokenVersion, later, "ZZZ", "1.1", "studies/1.1/bulk"), want: "no longer configured"},
		{name: "not a token", token: "AAAA.BBBB", want: "bulkdata link is invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clockMu.Lock()
			now = time.Unix(1_700_000_000, 0).Add(tc.advance)
			clockMu.Unlock()
			before := len(trust.requests())
			resp, body := getWith(t, proxy.URL+"/dicom-web/bulkdata/"+tc.token)
			var e errorBody
			if resp.StatusCode != http.StatusNotFound || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Message, tc.want) {
				t.Errorf("status %d, body %s; want 404 saying %q", resp.StatusCode, body, tc.want)
			}
			if reqs := trust.requests(); len(reqs) != before {
				t.Errorf("the trust was asked %q", reqs[before:])
			}
		})
	}
}

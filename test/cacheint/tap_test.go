package cacheint

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// tapMode is what a tap does with the requests it receives.
type tapMode int32

const (
	// forward passes requests on to the Orthanc.
	forward tapMode = iota
	// fail502 answers 502 Bad Gateway without asking the Orthanc, as a dead PACS's own
	// front end would.
	fail502
	// hangUp closes the connection without an answer, as a PACS that crashes mid-request does.
	hangUp
)

// tap is a counting reverse proxy in front of one trust's Orthanc: the proxy's source URL
// points at it, so every request the proxy sends to the trust is seen and counted here, whether
// the tap forwards it, delays it or fails it. Its methods are safe for concurrent use.
type tap struct {
	source string
	srv    *httptest.Server
	mode   atomic.Int32
	delay  atomic.Int64 // nanoseconds

	mu   sync.Mutex
	seen []tapRequest
}

// tapRequest is one request a tap received.
type tapRequest struct {
	path  string
	query url.Values
}

// startTap starts a tap in front of the Orthanc of source, closed when t ends.
func startTap(t *testing.T, source string) *tap {
	t.Helper()
	target, err := url.Parse(fx.orthancs[source].URL)
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{source: source}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{
			DialContext:       (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			DisableKeepAlives: true, // a killed Orthanc must not leave half-dead connections behind
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "tap: "+err.Error(), http.StatusBadGateway)
		},
	}
	tp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.mu.Lock()
		tp.seen = append(tp.seen, tapRequest{path: r.URL.Path, query: r.URL.Query()})
		tp.mu.Unlock()
		if d := time.Duration(tp.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		switch tapMode(tp.mode.Load()) {
		case fail502:
			http.Error(w, "tap: trust made unreachable by the test", http.StatusBadGateway)
		case hangUp:
			hj, ok := w.(http.Hijacker)
			if !ok {
				panic("tap: the test server cannot hijack connections")
			}
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(tp.srv.Close)
	return tp
}

// DICOMwebURL is the DICOMweb root the proxy is given for this trust.
func (tp *tap) DICOMwebURL() string { return tp.srv.URL + "/dicom-web" }

// setMode makes the tap forward, or fail every request from now on.
func (tp *tap) setMode(m tapMode) { tp.mode.Store(int32(m)) }

// setDelay holds every request for d before handling it (0 for none).
func (tp *tap) setDelay(d time.Duration) { tp.delay.Store(int64(d)) }

// count is how many requests the tap has received that match (all of them for nil).
func (tp *tap) count(match func(tapRequest) bool) int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	n := 0
	for _, r := range tp.seen {
		if match == nil || match(r) {
			n++
		}
	}
	return n
}

// total is how many requests the tap has received.
func (tp *tap) total() int { return tp.count(nil) }

// requests returns a copy of what the tap has received, for failure reports.
func (tp *tap) requests() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	out := make([]string, len(tp.seen))
	for i, r := range tp.seen {
		out[i] = r.path + "?" + r.query.Encode()
	}
	return out
}

// studySearch matches study-level searches for patient, with StudyDate date ("" for a search
// without a StudyDate key). The proxy names attributes by tag upstream (00100020=...).
func studySearch(patient, date string) func(tapRequest) bool {
	return func(r tapRequest) bool {
		return r.path == "/dicom-web/studies" && r.query.Get(dcmjson.TagPatientID) == patient &&
			r.query.Get(dcmjson.TagStudyDate) == date
	}
}

// metadataFetch matches study metadata requests for the study.
func metadataFetch(studyUID string) func(tapRequest) bool {
	return func(r tapRequest) bool { return r.path == "/dicom-web/studies/"+studyUID+"/metadata" }
}

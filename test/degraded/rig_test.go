// Package degraded_test proves the degraded-mode table of DESIGN.md and every fault pacssim
// can inject, end to end: the proxy is wired in-process as `nirproxy serve` wires it
// (upstream sources with their retries, breakers, timeouts and concurrency limits, the
// locator, the DICOMweb front and its fallback policy) over real loopback listeners, in front
// of the demo's sample trusts, and every answer is read as a client reads it.
//
// The invariant every test checks, whatever the fault: an answer is either complete, or it
// says what is missing (a Warning naming the trust and why, a 503, or a stream that breaks
// instead of ending cleanly). The hazard log cites TestDegradedModeTable and TestFaults by
// name, and their subtests by the rows and faults they prove.
package degraded_test

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/dicomweb"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/test/pacssim"
	"github.com/nirproxy/nirproxy/upstream"
)

// Accept headers, as viewers send them.
const (
	acceptJSON  = "application/dicom+json"
	acceptDICOM = `multipart/related; type="application/dicom"`
)

// rigOptions tune the proxy of a rig; tests edit a copy of defaultOptions.
type rigOptions struct {
	headerTimeout  time.Duration // per source: time to response headers
	idleTimeout    time.Duration // per source: pause allowed while a body streams
	requestTimeout time.Duration // per client request: fan-out and planning
	retryMax       int           // retries of an idempotent request; 0 or less disables them
	// trip is what opens a breaker (window, minimum of calls, failure ratio, run of
	// unreachable calls); its zero value is the production defaults.
	trip     upstream.BreakerOptions
	openFor  time.Duration // how long an open breaker waits before a probe
	retrieve fallback.Partial
	required []string // ids of trusts whose absence fails a search
	// cache, when set, is in front of every source (search and metadata fresh for
	// cacheFresh, stale for 10 minutes more), and stale copies are served.
	cache      *cache.Store
	cacheFresh time.Duration
}

// Bounds on elapsed time that the tests check. Each is far from both sides: what the proxy
// should do (a header timeout of 2 s) and what it would do if the control under test failed
// (the request deadline of 30 s, or the client's timeout of 60 s), so that a loaded 2-core
// machine under -race can neither make a healthy run miss it nor a broken one meet it.
const (
	// cutWithin bounds an answer whose slow trust must be cut by its header timeout (or another
	// short control), not left to the request deadline.
	cutWithin = 10 * time.Second
	// deadlineMargin is how long past the request deadline an answer may come.
	deadlineMargin = 10 * time.Second
	// eventually bounds polls for something that is bound to happen soon.
	eventually = 30 * time.Second
)

// defaultOptions are short enough that the package runs in seconds, and long enough that a
// loaded machine running -race does not mistake a healthy trust for a slow one. The request
// deadline is far longer than the header timeout, so the two are never confused.
func defaultOptions() rigOptions {
	return rigOptions{
		headerTimeout:  2 * time.Second,
		idleTimeout:    time.Second,
		requestTimeout: 30 * time.Second,
		retryMax:       1,
		trip:           config.DefaultBreaker().Options(),
		openFor:        30 * time.Second,
		retrieve:       fallback.PartialFail,
	}
}

// breaker is each source's breaker under o.
func (o rigOptions) breaker() upstream.BreakerOptions {
	b := o.trip
	b.OpenFor = o.openFor
	return b
}

// cacheOptions is what each source caches under o.
func (o rigOptions) cacheOptions() upstream.CacheOptions {
	if o.cache == nil {
		return upstream.CacheOptions{}
	}
	f := cache.Freshness{Fresh: o.cacheFresh, Stale: 10 * time.Minute}
	return upstream.CacheOptions{Store: o.cache, Search: f, Metadata: f}
}

// rig is the proxy over a set of trusts, each on its own loopback listener.
type rig struct {
	t       *testing.T
	opts    rigOptions
	trusts  map[string]*pacssim.Trust
	order   []string // trust ids, preferred first
	sources map[string]*upstream.Source
	proxy   *httptest.Server
	client  *http.Client
	logs    *syncBuffer
}

// demoTrusts makes the demo's three trusts (XA1, XB2, XC3, preferred in that order) once for a
// test; its subtests share them, each behind a proxy of its own (newRig), since making them
// takes a good part of a second under -race. Request counters are shared too: compare them
// before and after.
func demoTrusts(t *testing.T) []*pacssim.Trust {
	t.Helper()
	trusts, err := pacssim.DemoTrusts()
	if err != nil {
		t.Fatalf("make demo trusts: %v", err)
	}
	return trusts
}

// newRig serves trusts (preferred first) behind a proxy wired as cmd/nirproxy's buildHandler
// wires it. Everything is stopped, and every fault cleared, when the test ends.
func newRig(t *testing.T, trusts []*pacssim.Trust, edit func(*rigOptions)) *rig {
	t.Helper()
	o := defaultOptions()
	if edit != nil {
		edit(&o)
	}
	r := &rig{t: t, opts: o, trusts: map[string]*pacssim.Trust{}, sources: map[string]*upstream.Source{}, logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	retryMax := max(o.retryMax, 0)
	var sources []*upstream.Source
	for i, tr := range trusts {
		root, stop, err := tr.Start("127.0.0.1:0")
		if err != nil {
			t.Fatalf("start trust %s: %v", tr.ID, err)
		}
		t.Cleanup(stop)
		t.Cleanup(func() { _ = tr.ClearFaults() }) // releases hung requests before stop runs
		base, err := url.Parse(root + "/dicom-web")
		if err != nil {
			t.Fatal(err)
		}
		cfg := upstream.SourceConfig{
			ID: tr.ID, Name: tr.Name, BaseURL: base, Priority: i + 1, Timeout: o.headerTimeout,
			PatientID: upstream.InPatientID, Required: slices.Contains(o.required, tr.ID),
		}
		if tr.ID == pacssim.DemoTrustC {
			cfg.PatientID, cfg.PatientIDIssuer = upstream.InOtherPatientIDsSequence, "NHS"
		}
		opts := config.DefaultSource().UpstreamOptions()
		opts.HTTP.HeaderTimeout, opts.HTTP.IdleTimeout = o.headerTimeout, o.idleTimeout
		opts.HTTP.RetryMax, opts.HTTP.RetryWaitMin, opts.HTTP.RetryWaitMax = retryMax, 10*time.Millisecond, 50*time.Millisecond
		opts.Breaker, opts.MaxConcurrent, opts.Cache = o.breaker(), 8, o.cacheOptions()
		src := upstream.NewSource(cfg, opts, log)
		sources = append(sources, src)
		r.trusts[tr.ID], r.sources[tr.ID] = tr, src
		r.order = append(r.order, tr.ID)
	}
	locator := upstream.NewLocator(sources, mustLocalStore(t, 8<<20), time.Minute, log)
	front := config.Default().DICOMweb()
	front.Forwarding.PublicURL = rigPublicURL
	front.RequestTimeout = cmp.Or(o.requestTimeout, front.RequestTimeout)
	front.Fallback = fallback.Policy{Search: fallback.PartialWarn, Retrieve: cmp.Or(o.retrieve, fallback.PartialFail), RetryAfter: 7 * time.Second, ServeStale: o.cache != nil}
	srv := dicomweb.New(front, dicomweb.Deps{
		Locator: locator,
		Signer:  dicomweb.NewSigner([]byte("degraded-mode tests' signing key"), time.Hour, nil),
		Auth:    policy.AllowAll{},
		Authz:   policy.AllowAll{},
		Audit:   audit.Discard{},
		Log:     log,
	})
	e := echo.New()
	srv.Register(e)
	// nirproxy serves /status on its admin listener; the rig reads it from the same server.
	e.GET("/status", srv.Status)
	r.proxy = httptest.NewServer(e)
	transport := &http.Transport{Proxy: nil, DisableCompression: true}
	r.client = &http.Client{Transport: transport, Timeout: 60 * time.Second}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		r.proxy.Close()
		for _, nhs := range []string{pacssim.DemoPatientNHSNumber, pacssim.DemoSecondPatientNHSNumber, pacssim.DemoPatientName} {
			if strings.Contains(r.logs.String(), nhs) {
				t.Errorf("the proxy's log names a patient (%s)", nhs)
			}
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", r.logs.String())
		}
	})
	return r
}

// trust returns the trust with the given id.
func (r *rig) trust(id string) *pacssim.Trust {
	tr, ok := r.trusts[id]
	if !ok {
		r.t.Fatalf("no trust %s in this rig", id)
	}
	return tr
}

// rigPublicURL is the proxy's publicURL: where clients are told it is, whatever address the
// test reaches it at.
const rigPublicURL = "http://proxy.test"

// agent is the warn-agent the proxy must put in its Warning headers: the host of its
// publicURL, the name clients know it by (never the request's Host header).
func (r *rig) agent() string { return strings.TrimPrefix(rigPublicURL, "http://") }

// answer is one client request's outcome, read as a client reads it.
type answer struct {
	what    string
	status  int
	header  http.Header
	body    []byte
	doErr   error // no answer at all: the connection closed before a status line
	readErr error // reading the body failed: the stream was aborted
	elapsed time.Duration
}

// get sends GET path (below /dicom-web, or absolute from the proxy's root when it starts with
// "/") and reads the whole answer. A connection closed without an answer, or a body that
// breaks, is recorded, not fatal: wantStatus and the other checks judge it.
func (r *rig) get(path, accept string) answer {
	r.t.Helper()
	u := r.proxy.URL + "/dicom-web/" + path
	if strings.HasPrefix(path, "/") {
		u = r.proxy.URL + path
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	start := time.Now()
	resp, err := r.client.Do(req)
	if err != nil {
		return answer{what: "GET " + path, header: http.Header{}, doErr: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(resp.Body)
	return answer{what: "GET " + path, status: resp.StatusCode, header: resp.Header, body: body, readErr: readErr, elapsed: time.Since(start)}
}

// searchAlice searches for every study of the demo's first patient.
func (r *rig) searchAlice() answer {
	r.t.Helper()
	return r.get("studies?PatientID="+pacssim.DemoPatientNHSNumber, acceptJSON)
}

// warning is one parsed `299 agent "text"` header value.
type warning struct {
	code  int
	agent string
	text  string
}

var warningRE = regexp.MustCompile(`^(\d{3}) (\S+) "((?:[^"\\]|\\.)*)"$`)

// warnings parses every Warning header of a, failing the test on one that is malformed.
func (r *rig) warnings(a answer) []warning {
	r.t.Helper()
	var out []warning
	for _, v := range a.header.Values("Warning") {
		m := warningRE.FindStringSubmatch(v)
		if m == nil {
			r.t.Fatalf("%s: Warning %q is not `code agent \"text\"`", a.what, v)
		}
		code, _ := strconv.Atoi(m[1])
		text := strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(m[3])
		if m[2] != r.agent() {
			r.t.Errorf("%s: Warning %q has agent %q, want the proxy's host %q", a.what, v, m[2], r.agent())
		}
		out = append(out, warning{code: code, agent: m[2], text: text})
	}
	return out
}

// missingFrom returns, by trust id, the text of the 299 warning naming each trust of the rig
// that a warns about. A trust named by two warnings fails the test.
func (r *rig) missingFrom(a answer) map[string]string {
	r.t.Helper()
	out := map[string]string{}
	for _, w := range r.warnings(a) {
		for _, id := range r.order {
			if !strings.Contains(w.text, id+" ") {
				continue
			}
			if w.code != 299 {
				r.t.Errorf("%s: warning about %s has code %d, want 299: %q", a.what, id, w.code, w.text)
			}
			if prev, dup := out[id]; dup {
				r.t.Errorf("%s: %s is named by two warnings: %q and %q", a.what, id, prev, w.text)
			}
			out[id] = w.text
		}
	}
	return out
}

// wantMissing checks that a names exactly the trusts of want as missing, each by id and name,
// with the reason given (a phrase of upstream.Reason, such as "timed out").
func (r *rig) wantMissing(a answer, want map[string]string) {
	r.t.Helper()
	got := r.missingFrom(a)
	for id, reason := range want {
		text, ok := got[id]
		if !ok {
			r.t.Errorf("%s: no Warning names %s (want %q); warnings %q", a.what, id, reason, a.header.Values("Warning"))
			continue
		}
		if name := r.trust(id).Name; !strings.Contains(text, name) {
			r.t.Errorf("%s: warning %q does not name %s's trust %q", a.what, text, id, name)
		}
		if !strings.Contains(text, reason) {
			r.t.Errorf("%s: warning %q does not say %q", a.what, text, reason)
		}
	}
	for id, text := range got {
		if _, ok := want[id]; !ok {
			r.t.Errorf("%s: Warning names %s, which should have answered: %q", a.what, id, text)
		}
	}
}

// wantStatus fails the test now unless a has the status want.
func wantStatus(t *testing.T, a answer, want int) {
	t.Helper()
	if a.doErr != nil {
		t.Fatalf("%s: no answer: %v", a.what, a.doErr)
	}
	if a.status != want {
		t.Fatalf("%s: status %d, want %d; Warning %q; body %.400s", a.what, a.status, want, a.header.Values("Warning"), a.body)
	}
	if a.readErr != nil {
		t.Fatalf("%s: status %d but reading the body failed: %v", a.what, a.status, a.readErr)
	}
}

// wantRefusal checks a DICOMweb refusal: the status, a Retry-After of whole seconds, and a JSON
// error body whose message names every trust of ids.
func wantRefusal(t *testing.T, a answer, status int, ids ...string) {
	t.Helper()
	wantStatus(t, a, status)
	if ra := a.header.Get("Retry-After"); ra == "" {
		t.Errorf("%s: %d without Retry-After", a.what, status)
	} else if n, err := strconv.Atoi(ra); err != nil || n <= 0 {
		t.Errorf("%s: Retry-After %q is not a positive number of seconds", a.what, ra)
	}
	if mt, _, _ := mime.ParseMediaType(a.header.Get("Content-Type")); mt != "application/json" {
		t.Errorf("%s: error body is %q, want application/json", a.what, a.header.Get("Content-Type"))
	}
	var body struct {
		Status  int    `json:"status"`
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatalf("%s: error body %q is not JSON: %v", a.what, a.body, err)
	}
	if body.Status != status || body.Message == "" {
		t.Errorf("%s: error body %+v; want status %d and a message", a.what, body, status)
	}
	for _, id := range ids {
		if !strings.Contains(body.Message, id) {
			t.Errorf("%s: error message %q does not name %s", a.what, body.Message, id)
		}
	}
}

// studies returns the study UIDs of a DICOM JSON search answer, sorted.
func studies(t *testing.T, a answer) []string {
	t.Helper()
	var out []string
	for _, ds := range datasets(t, a) {
		out = append(out, ds.String(dcmjson.TagStudyInstanceUID))
	}
	sort.Strings(out)
	return out
}

// datasets decodes a DICOM JSON answer.
func datasets(t *testing.T, a answer) []dcmjson.Dataset {
	t.Helper()
	list, err := dcmjson.Decode(a.body)
	if err != nil {
		t.Fatalf("%s: answer is not DICOM JSON: %v; body %.300s", a.what, err, a.body)
	}
	return list
}

// aliceStudies is where the demo keeps the first patient's studies.
var aliceStudies = map[string][]string{
	pacssim.DemoTrustA: {pacssim.DemoHeadCTStudyUID, pacssim.DemoSharedStudyUID},
	pacssim.DemoTrustB: {pacssim.DemoSharedStudyUID, pacssim.DemoChestCRStudyUID},
	pacssim.DemoTrustC: {pacssim.DemoUltrasoundStudyUID, pacssim.DemoHandDXStudyUID},
}

// studiesAt returns the union of the first patient's studies at the given trusts, sorted.
func studiesAt(ids ...string) []string {
	set := map[string]bool{}
	for _, id := range ids {
		for _, uid := range aliceStudies[id] {
			set[uid] = true
		}
	}
	out := make([]string, 0, len(set))
	for uid := range set {
		out = append(out, uid)
	}
	sort.Strings(out)
	return out
}

// checkSearchSaysWhatIsMissing is the invariant of every search answer over the demo: a 200
// holds exactly the first patient's studies at the trusts its warnings do not name, and none
// held only by a trust they name; a 503 names every trust. It returns the trusts named.
func (r *rig) checkSearchSaysWhatIsMissing(a answer) map[string]string {
	r.t.Helper()
	missing := r.missingFrom(a)
	if a.readErr != nil {
		r.t.Fatalf("%s: search answer broke: %v", a.what, a.readErr)
	}
	switch a.status {
	case http.StatusOK:
		var answered []string
		for _, id := range r.order {
			if _, ok := missing[id]; !ok {
				answered = append(answered, id)
			}
		}
		if got, want := studies(r.t, a), studiesAt(answered...); !slices.Equal(got, want) {
			r.t.Errorf("%s: studies %v; want those of the trusts that answered (%v), %v", a.what, got, answered, want)
		}
		for _, ds := range datasets(r.t, a) {
			for _, ae := range ds.Strings(dcmjson.TagRetrieveAETitle) {
				if _, gone := missing[ae]; gone {
					r.t.Errorf("%s: study %s lists %s as a holder, but %s's answer is missing", a.what, ds.String(dcmjson.TagStudyInstanceUID), ae, ae)
				}
			}
		}
	case http.StatusServiceUnavailable:
		if len(missing) != len(r.order) {
			r.t.Errorf("%s: 503 names %d of the %d trusts", a.what, len(missing), len(r.order))
		}
	default:
		r.t.Fatalf("%s: status %d; want 200 or 503; body %.300s", a.what, a.status, a.body)
	}
	return missing
}

// parts splits a complete multipart/related answer into its part bodies. A body that ends
// without its closing delimiter, or breaks, fails the test.
func parts(t *testing.T, a answer) [][]byte {
	t.Helper()
	if a.readErr != nil {
		t.Fatalf("%s: reading the body failed: %v", a.what, a.readErr)
	}
	out, err := splitMultipart(a)
	if err != nil {
		t.Fatalf("%s: %v", a.what, err)
	}
	return out
}

func splitMultipart(a answer) ([][]byte, error) {
	mt, params, err := mime.ParseMediaType(a.header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["boundary"] == "" {
		return nil, errors.New("Content-Type " + strconv.Quote(a.header.Get("Content-Type")) + " is not multipart/related with a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(a.body), params["boundary"])
	var out [][]byte
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, errors.New("read part " + strconv.Itoa(len(out)+1) + ": " + err.Error())
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return out, errors.New("read part " + strconv.Itoa(len(out)+1) + ": " + err.Error())
		}
		out = append(out, b)
	}
}

// wantNeverComplete checks the mid-stream rule: an answer whose upstream broke is either
// refused before any byte (a 5xx naming source), or aborted: the connection closes before the
// status line, or the body breaks for its reader. A 2xx that reads to a clean end is a
// truncated study closed as complete, the hazard itself. It returns how the answer ended.
func wantNeverComplete(t *testing.T, r *rig, a answer, source string) string {
	t.Helper()
	switch {
	case a.doErr != nil:
		return "connection closed before the status line"
	case a.status >= 200 && a.status < 300 && a.readErr != nil:
		return "body aborted after the status line"
	case a.status >= 200 && a.status < 300:
		n, err := splitMultipart(a)
		t.Fatalf("%s: %d and a body that ends cleanly (%d parts, framing error %v): a broken upstream stream passed as complete", a.what, a.status, len(n), err)
	case a.status >= 500:
		r.wantMissing(a, map[string]string{source: ""})
		return "refused before any byte"
	default:
		t.Fatalf("%s: status %d; want a 5xx or an aborted stream; body %.300s", a.what, a.status, a.body)
	}
	return ""
}

// instanceDigests returns the SHA-256 of every instance a trust holds under the study (and
// series, when not ""), by SOP instance UID.
func instanceDigests(tr *pacssim.Trust, study, series string) map[[32]byte]string {
	out := map[[32]byte]string{}
	for _, in := range tr.Instances() {
		if in.StudyUID == study && (series == "" || in.SeriesUID == series) {
			out[sha256.Sum256(in.Bytes())] = in.SOPInstanceUID
		}
	}
	return out
}

// union merges digest sets.
func union(sets ...map[[32]byte]string) map[[32]byte]string {
	out := map[[32]byte]string{}
	for _, s := range sets {
		for k, v := range s {
			out[k] = v
		}
	}
	return out
}

// wantInstances checks that a multipart retrieve answer holds exactly the instances of want,
// each once and byte for byte.
func wantInstances(t *testing.T, a answer, want map[[32]byte]string) {
	t.Helper()
	got := map[[32]byte]int{}
	for _, p := range parts(t, a) {
		got[sha256.Sum256(p)]++
	}
	for d, sop := range want {
		switch got[d] {
		case 0:
			t.Errorf("%s: instance %s is missing", a.what, sop)
		case 1:
		default:
			t.Errorf("%s: instance %s is sent %d times", a.what, sop, got[d])
		}
	}
	for d := range got {
		if _, ok := want[d]; !ok {
			t.Errorf("%s: a part is not one of the %d instances expected", a.what, len(want))
		}
	}
}

// sourceStatus is one source of GET /status.
type sourceStatus struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Breaker        string `json:"breaker"`
	RecentCalls    int    `json:"recentCalls"`
	RecentFailures int    `json:"recentFailures"`
	LastFailure    string `json:"lastFailure"`
}

// status reads GET /status and returns its sources by id.
func (r *rig) status() map[string]sourceStatus {
	r.t.Helper()
	a := r.get("/status", "application/json")
	wantStatus(r.t, a, http.StatusOK)
	return decodeStatus(r.t, a.body)
}

func decodeStatus(t *testing.T, body []byte) map[string]sourceStatus {
	t.Helper()
	var st struct {
		Status  string         `json:"status"`
		Sources []sourceStatus `json:"sources"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("GET /status: %v; body %.300s", err, body)
	}
	out := map[string]sourceStatus{}
	for _, s := range st.Sources {
		out[s.ID] = s
	}
	return out
}

// waitFor polls cond until it holds or the time runs out.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stallAfterFirstPart makes the trust answer retrieves of study with its real first part and
// then send nothing, headers and all already sent, until the client gives up: a PACS that
// stops mid-stream without closing the connection. It returns how many such answers began.
func stallAfterFirstPart(t *testing.T, tr *pacssim.Trust, study string) *counter {
	var first []byte
	for _, in := range tr.Instances() {
		if in.StudyUID == study {
			first = in.Bytes()
			break
		}
	}
	if first == nil {
		t.Fatalf("trust %s does not hold study %s", tr.ID, study)
	}
	release := make(chan struct{})
	started := &counter{}
	tr.Wrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path != "/dicom-web/studies/"+study {
				next.ServeHTTP(w, req)
				return
			}
			started.add()
			w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=stall`)
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "--stall\r\nContent-Type: application/dicom\r\n\r\n")
			_, _ = w.Write(first)
			_, _ = io.WriteString(w, "\r\n--stall\r\nContent-Type: application/dicom\r\n\r\nDICM")
			_ = http.NewResponseController(w).Flush()
			select {
			case <-req.Context().Done():
			case <-release:
			}
		})
	})
	t.Cleanup(func() { close(release); tr.Unwrap() })
	return started
}

// counter is a count shared with a server goroutine.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }

func (c *counter) get() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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

package cacheint

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/test/orthanc"
)

// trustNames are the trusts' names in the proxy's configuration, which warnings must repeat.
var trustNames = map[string]string{
	orthanc.SourceA: "Orthanc A Test Trust",
	orthanc.SourceB: "Orthanc B Test Trust",
}

// keyPrefix starts every key nirproxy writes to Redis (cmd/nirproxy/cache.go).
const keyPrefix = "nirproxy:v1:"

// freshness is one kind's windows in the cache section.
type freshness struct{ fresh, stale time.Duration }

// cacheConfig is the cache section a test gives nirproxy; zero fields keep nirproxy's defaults.
type cacheConfig struct {
	// redisAddrs are the Redis node or cluster seeds; nil keeps the cache in process.
	redisAddrs []string
	search     freshness
	metadata   freshness
	// maxRetention caps fresh + stale; 0 keeps the default.
	maxRetention time.Duration
	// noStale sets serveStale: false.
	noStale         bool
	breakerCooldown time.Duration
	opTimeout       time.Duration
	breakerFailures int
}

// yaml is c as the mapping under the configuration's cache key, with the secrets given.
func (c cacheConfig) yaml(keySecret, encKey string) map[string]any {
	dur := func(d time.Duration) string { return d.String() }
	m := map[string]any{"enabled": true, "serveStale": !c.noStale}
	if c.maxRetention > 0 {
		m["maxRetention"] = dur(c.maxRetention)
	}
	for name, f := range map[string]freshness{"search": c.search, "metadata": c.metadata} {
		if f.fresh > 0 {
			m[name] = map[string]any{"fresh": dur(f.fresh), "stale": dur(f.stale)}
		}
	}
	if len(c.redisAddrs) > 0 {
		m["keySecret"] = keySecret
		m["encryptionKeys"] = []string{encKey}
		redis := map[string]any{"addrs": c.redisAddrs}
		if c.breakerCooldown > 0 {
			redis["breakerCooldown"] = dur(c.breakerCooldown)
		}
		if c.opTimeout > 0 {
			redis["opTimeout"] = dur(c.opTimeout)
		}
		if c.breakerFailures > 0 {
			redis["breakerFailures"] = c.breakerFailures
		}
		m["redis"] = redis
	}
	return m
}

// rig is one nirproxy in front of the shared Orthancs, each behind a tap of its own, so the
// counts a test reads are its own.
type rig struct {
	t      *testing.T
	proxy  *orthanc.Proxy
	taps   map[string]*tap
	client *http.Client
	// keyer and sealer are the proxy's own, made from the secrets of its configuration, so the
	// test can name the keys it expects and open what Redis holds.
	keyer  *cache.Keyer
	sealer *cache.Sealer
}

// startRig starts taps and a nirproxy with the cache section cc (partialSearch left at its
// default, warn), stopped when t ends, after its log is checked for patient identifiers.
func startRig(t *testing.T, cc cacheConfig) *rig {
	t.Helper()
	secret := make([]byte, 48)
	key := make([]byte, cache.KeySize)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keySecret := base64.StdEncoding.EncodeToString(secret)
	r := &rig{t: t, taps: map[string]*tap{}, client: &http.Client{Timeout: 60 * time.Second}}
	var err error
	if r.keyer, err = cache.NewKeyer([]byte(keySecret), keyPrefix); err != nil {
		t.Fatal(err)
	}
	if r.sealer, err = cache.NewSealer([][]byte{key}); err != nil {
		t.Fatal(err)
	}
	var sources []orthanc.ProxySource
	for i, id := range []string{orthanc.SourceA, orthanc.SourceB} {
		r.taps[id] = startTap(t, id)
		sources = append(sources, orthanc.ProxySource{ID: id, Name: trustNames[id], URL: r.taps[id].DICOMwebURL(), Priority: i + 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := orthanc.StartProxy(ctx, orthanc.ProxyOptions{
		Binary:  fx.binary,
		Sources: sources,
		Extra:   map[string]any{"cache": cc.yaml(keySecret, base64.StdEncoding.EncodeToString(key))},
	})
	if err != nil {
		t.Fatalf("start nirproxy: %v", err)
	}
	r.proxy = p
	// Every request is a clinician's of an onboarded trust, for treatment.
	r.client.Transport = p.Transport(nil)
	t.Cleanup(func() {
		r.checkLog()
		if t.Failed() {
			t.Logf("nirproxy log (last 6 KB):\n%s", tail(p.LogPath(), 6000))
		}
		if err := p.Stop(); err != nil {
			t.Errorf("stop nirproxy: %v", err)
		}
	})
	return r
}

// tap returns the tap in front of the trust id.
func (r *rig) tap(id string) *tap { return r.taps[id] }

// patientSecrets are the data set's patient identifiers, which no log may contain.
var patientSecrets = []string{orthanc.PatientAlpha, orthanc.PatientBravo, "TESTPATIENT"}

// checkLog fails the test if the proxy's log names a patient.
func (r *rig) checkLog() {
	r.t.Helper()
	log, err := r.proxy.Log()
	if err != nil {
		r.t.Errorf("read nirproxy log: %v", err)
		return
	}
	for _, s := range patientSecrets {
		if i := bytes.Index(log, []byte(s)); i >= 0 {
			lo, hi := max(0, i-200), min(len(log), i+100)
			r.t.Errorf("the nirproxy log names a patient (%q); patient identifiers must never be logged: ...%s...", s, log[lo:hi])
		}
	}
}

// answer is one client request's outcome, read whole.
type answer struct {
	what   string
	status int
	header http.Header
	body   []byte
	err    error // no complete answer: the request or the body failed
}

// get sends GET path (from the proxy's root) and reads the whole answer. Failures are
// recorded in the answer, not fatal, so it may be called from any goroutine.
func (r *rig) get(path string) answer { return r.getAt(r.proxy.URL, path) }

// getAt is get from the root base: the proxy's, or its admin listener's.
func (r *rig) getAt(base, path string) answer {
	a := answer{what: "GET " + path, header: http.Header{}}
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		a.err = err
		return a
	}
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := r.client.Do(req)
	if err != nil {
		a.err = err
		return a
	}
	defer resp.Body.Close()
	a.status, a.header = resp.StatusCode, resp.Header
	a.body, a.err = io.ReadAll(resp.Body)
	return a
}

// searchPath is the study search for patient, with a StudyDate range when date is not "".
func searchPath(patient, date string) string {
	p := "/dicom-web/studies?PatientID=" + patient
	if date != "" {
		p += "&StudyDate=" + date
	}
	return p
}

// metadataPath is the study metadata of the study.
func metadataPath(studyUID string) string { return "/dicom-web/studies/" + studyUID + "/metadata" }

// search searches for the patient's studies.
func (r *rig) search(patient string) answer { return r.get(searchPath(patient, "")) }

// wantOK fails the test now unless a is a complete 200.
func wantOK(t *testing.T, a answer) {
	t.Helper()
	wantStatus(t, a, http.StatusOK)
}

// wantStatus fails the test now unless a is a complete answer with status want.
func wantStatus(t *testing.T, a answer, want int) {
	t.Helper()
	if a.err != nil {
		t.Fatalf("%s: %v", a.what, a.err)
	}
	if a.status != want {
		t.Fatalf("%s: status %d, want %d; Warning %q; body %.600s", a.what, a.status, want, a.header.Values("Warning"), a.body)
	}
}

// decodeStudyUIDs decodes a DICOM JSON array and returns its Study Instance UIDs, sorted.
func decodeStudyUIDs(t *testing.T, what string, body []byte) []string {
	t.Helper()
	return sortedUIDs(t, what, body, dcmjson.TagStudyInstanceUID)
}

// sortedUIDs decodes a DICOM JSON array and returns the values of tag, sorted.
func sortedUIDs(t *testing.T, what string, body []byte, tag string) []string {
	t.Helper()
	list, err := dcmjson.Decode(body)
	if err != nil {
		t.Fatalf("%s: decode DICOM JSON: %v; body %.400s", what, err, body)
	}
	out := make([]string, 0, len(list))
	for _, ds := range list {
		out = append(out, ds.String(tag))
	}
	slices.Sort(out)
	return out
}

// studiesOf returns the sorted Study Instance UIDs of patient's studies held by holder (every
// holder for "").
func studiesOf(patient, holder string) []string {
	var out []string
	for _, st := range fx.manifest.StudiesOf(patient, holder) {
		out = append(out, st.StudyInstanceUID)
	}
	slices.Sort(out)
	return out
}

// wantStudies fails the test unless a is a 200 listing exactly the studies want.
func wantStudies(t *testing.T, a answer, want []string) {
	t.Helper()
	wantOK(t, a)
	if got := decodeStudyUIDs(t, a.what, a.body); !slices.Equal(got, want) {
		t.Fatalf("%s: studies %q, want %q", a.what, got, want)
	}
}

// instancesOf returns the sorted SOP Instance UIDs of the study with key, from every holder.
func instancesOf(key string) []string {
	var out []string
	for _, in := range fx.manifest.Study(key).Instances() {
		out = append(out, in.SOPInstanceUID)
	}
	slices.Sort(out)
	return out
}

// warning is one parsed `code agent "text"` Warning header value.
type warning struct {
	code  int
	agent string
	text  string
}

var warningRE = regexp.MustCompile(`^(\d{3}) (\S+) "((?:[^"\\]|\\.)*)"$`)

// warnings parses every Warning header of a, failing the test on one that is malformed or
// whose agent is not the proxy's host.
func (r *rig) warnings(a answer) []warning {
	r.t.Helper()
	var out []warning
	agent := strings.TrimPrefix(r.proxy.URL, "http://")
	for _, v := range a.header.Values("Warning") {
		m := warningRE.FindStringSubmatch(v)
		if m == nil {
			r.t.Fatalf("%s: Warning %q is not `code agent \"text\"`", a.what, v)
		}
		code, _ := strconv.Atoi(m[1])
		if m[2] != agent {
			r.t.Errorf("%s: Warning %q has agent %q, want the proxy's host %q", a.what, v, m[2], agent)
		}
		out = append(out, warning{code: code, agent: m[2], text: strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(m[3])})
	}
	return out
}

// wantNoWarnings fails the test if a carries any Warning.
func (r *rig) wantNoWarnings(a answer) {
	r.t.Helper()
	if w := a.header.Values("Warning"); len(w) > 0 {
		r.t.Errorf("%s: unexpected Warning %q", a.what, w)
	}
}

// staleAgeRE finds the copy's age in a stale warning.
var staleAgeRE = regexp.MustCompile(`cached (\S+) ago`)

// wantStale checks that a says, with one Warning 110 and a 299, that the part of source is a
// copy cached between minAge and maxAge ago (whole seconds, as the proxy states them); prefix
// is how the 299's text starts ("Results from ORA (...)", "The metadata of the study from ...").
func (r *rig) wantStale(a answer, prefix string, minAge, maxAge time.Duration) {
	r.t.Helper()
	n110 := 0
	var stale []string
	for _, w := range r.warnings(a) {
		switch {
		case w.code == 110:
			n110++
			if w.text != "Response is Stale" {
				r.t.Errorf("%s: Warning 110 text %q, want \"Response is Stale\"", a.what, w.text)
			}
		case w.code == 299 && strings.HasPrefix(w.text, prefix):
			stale = append(stale, w.text)
		case strings.Contains(w.text, "missing"):
			r.t.Errorf("%s: a stale copy answered, yet a Warning says something is missing: %q", a.what, w.text)
		}
	}
	if n110 != 1 {
		r.t.Errorf("%s: %d Warning 110, want 1; warnings %q", a.what, n110, a.header.Values("Warning"))
	}
	if len(stale) != 1 {
		r.t.Fatalf("%s: %d Warning 299 starting %q, want 1; warnings %q", a.what, len(stale), prefix, a.header.Values("Warning"))
	}
	m := staleAgeRE.FindStringSubmatch(stale[0])
	if m == nil {
		r.t.Fatalf("%s: Warning %q does not say how long ago the copy was cached", a.what, stale[0])
	}
	age, err := time.ParseDuration(m[1])
	if err != nil {
		r.t.Fatalf("%s: Warning %q: the age %q is not a duration: %v", a.what, stale[0], m[1], err)
	}
	if age < minAge.Truncate(time.Second) || age > maxAge {
		r.t.Errorf("%s: Warning %q: the copy's age %v is outside [%v, %v]", a.what, stale[0], age, minAge.Truncate(time.Second), maxAge)
	}
	if !strings.Contains(stale[0], ": its PACS ") {
		r.t.Errorf("%s: Warning %q does not say why the trust's PACS did not answer", a.what, stale[0])
	}
}

// metric returns the value of the sample named series (name and labels exactly as the
// Prometheus text format writes them, e.g. `x_total{kind="search",result="hit"}`) on
// /metrics (on the admin listener), or 0 when it is not there yet.
func (r *rig) metric(series string) float64 {
	r.t.Helper()
	a := r.getAt(r.proxy.AdminURL, "/metrics")
	wantOK(r.t, a)
	sc := bufio.NewScanner(bytes.NewReader(a.body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), series+" ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			r.t.Fatalf("/metrics: %s has value %q: %v", series, v, err)
		}
		return f
	}
	return 0
}

// Cache metrics the tests read.
const (
	searchHits      = `nirproxy_cache_lookups_total{kind="search",result="hit"}`
	searchCoalesced = `nirproxy_cache_coalesced_total{kind="search"}`
)

// purge runs `nirproxy cache purge --config <the proxy's config> --patient patient` and
// returns its standard output and error and its exit error.
func (r *rig) purge(patient string) (stdout, stderr string, err error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fx.binary, "cache", "purge", "--config", r.proxy.ConfigPath, "--patient", patient)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NIRPROXY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// waitLog waits up to d for the proxy's log to contain s after offset from (a byte offset into
// the log), and returns the offset just past it.
func (r *rig) waitLog(s string, from int, d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	for {
		log, err := r.proxy.Log()
		if err != nil {
			return 0, err
		}
		if from <= len(log) {
			if i := bytes.Index(log[from:], []byte(s)); i >= 0 {
				return from + i + len(s), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the nirproxy log has no %q after byte %d within %v", s, from, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

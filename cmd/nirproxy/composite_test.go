package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/pacssim"
	"github.com/nirproxy/nirproxy/upstream"
)

// copiesRig is the proxy as `nirproxy serve` builds it (buildHandler, default configuration)
// in front of pacssim's two trusts with differing copies, XD4 preferred, each on a loopback
// listener. It lives here, not under test/, so that `make unit` runs it with no real server:
// cmd is the one package allowed to import test/pacssim.
type copiesRig struct {
	trusts  map[string]*pacssim.Trust
	sources map[string]*upstream.Source
	proxy   *httptest.Server
	// client sends the demo clinician's token.
	client *http.Client
	logs   *syncBuffer
	// held maps each SOP instance either trust holds to the SHA-256 of its bytes there.
	held map[string]string
}

func newCopiesRig(t *testing.T, o pacssim.CopiesOptions) *copiesRig {
	t.Helper()
	a, b, err := pacssim.CopiesTrusts(o)
	if err != nil {
		t.Fatalf("make trusts with differing copies: %v", err)
	}
	r := &copiesRig{trusts: map[string]*pacssim.Trust{}, sources: map[string]*upstream.Source{}, logs: &syncBuffer{}, held: map[string]string{}}
	cfg := config.Default()
	cfg.PublicURL = "http://nirproxy.test"
	for i, tr := range []*pacssim.Trust{a, b} {
		root, stop, err := tr.Start("127.0.0.1:0")
		if err != nil {
			t.Fatalf("start trust %s: %v", tr.ID, err)
		}
		t.Cleanup(stop)
		t.Cleanup(func() { _ = tr.ClearFaults() })
		src := config.DefaultSource()
		src.ID, src.Name, src.URL, src.Priority, src.Insecure = tr.ID, tr.Name, root+"/dicom-web", i+1, true
		cfg.Sources = append(cfg.Sources, src)
		r.trusts[tr.ID] = tr
		for _, in := range tr.Instances() {
			sum := sha256.Sum256(in.Bytes())
			h := hex.EncodeToString(sum[:])
			if prev, ok := r.held[in.SOPInstanceUID]; ok && prev != h {
				t.Fatalf("the copies of %s differ", in.SOPInstanceUID)
			}
			r.held[in.SOPInstanceUID] = h
		}
	}
	acc, err := startDemoAccess(&cfg, t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acc.Close() })
	r.client = acc.Client(devaccess.Clinician)
	if problems := cfg.Validate(); len(problems) > 0 {
		t.Fatalf("configuration: %v", problems)
	}
	app, err := buildHandler(t.Context(), cfg, slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("build handler: %v", err)
	}
	for _, s := range app.sources {
		r.sources[s.ID] = s
	}
	r.proxy = httptest.NewServer(app.handler)
	t.Cleanup(func() {
		r.proxy.Close()
		app.close(context.Background(), slog.New(slog.DiscardHandler))
		for _, id := range []string{pacssim.CopiesPatientNHSNumber, pacssim.CopiesPatientName} {
			if strings.Contains(r.logs.String(), id) {
				t.Errorf("the proxy's log names the patient")
			}
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", r.logs.String())
		}
	})
	return r
}

// want returns the hashes of every instance held anywhere whose UID starts with prefix (a
// study or series UID and a dot), sorted: what a complete answer holds, each once.
func (r *copiesRig) want(prefix string) []string {
	var out []string
	for sop, h := range r.held {
		if strings.HasPrefix(sop, prefix+".") {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}

// retrieve GETs a WADO-RS path as a viewer does and returns the SHA-256 of each part, sorted,
// or the error that broke the answer: a failed request, a status other than 200, or a body
// that ends without its closing delimiter.
func (r *copiesRig) retrieve(t *testing.T, path string) ([]string, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.proxy.URL+"/dicom-web/"+path, nil)
	req.Header.Set("Accept", `multipart/related; type="application/dicom"`)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type %q: %v", resp.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	var out []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, err
		}
		h := sha256.New()
		if _, err := io.Copy(h, p); err != nil {
			return out, err
		}
		out = append(out, hex.EncodeToString(h.Sum(nil)))
	}
	slices.Sort(out)
	return out, nil
}

// TestCompositeRetrieveOfDifferingCopies drives the proxy's composite retrieve (plan and
// streamComposite) through the real handler over two trusts whose copies of a study overlap
// and differ, neither holding all. Every answer must hold each instance of the union
// exactly once, compared by SHA-256 with the bytes the trusts hold: for the study, for a
// series held at both with different instances, and when a trust sends every part twice. A
// trust whose stream lacks an instance it listed must have the answer aborted (never closed
// as if complete) and its failure counted. With XE5 capping its search answers, the union
// is complete only if the proxy pages through XE5's instance list.
func TestCompositeRetrieveOfDifferingCopies(t *testing.T) {
	study := "studies/" + pacssim.CopiesStudyUID
	tests := []struct {
		name    string
		opts    pacssim.CopiesOptions
		faults  map[string]pacssim.Fault
		path    string
		want    string // the UID whose instances the answer must hold, each once
		aborted string // when set: the answer must break, and this trust be charged
	}{
		{name: "study, neither copy holds all", path: study, want: pacssim.CopiesStudyUID},
		{name: "series at both trusts with different instances", path: study + "/series/" + pacssim.CopiesSharedSeriesUID, want: pacssim.CopiesSharedSeriesUID},
		{name: "series only at the second trust", path: study + "/series/" + pacssim.CopiesOnlyAtBSeriesUID, want: pacssim.CopiesOnlyAtBSeriesUID},
		{name: "preferred trust sends every part twice", path: study, want: pacssim.CopiesStudyUID,
			faults: map[string]pacssim.Fault{pacssim.CopiesTrustA: pacssim.DuplicateParts().Only(pacssim.KindRetrieve)}},
		{name: "second trust sends every part twice", path: study, want: pacssim.CopiesStudyUID,
			faults: map[string]pacssim.Fault{pacssim.CopiesTrustB: pacssim.DuplicateParts().Only(pacssim.KindRetrieve)}},
		{name: "series, both trusts send every part twice", path: study + "/series/" + pacssim.CopiesSharedSeriesUID, want: pacssim.CopiesSharedSeriesUID,
			faults: map[string]pacssim.Fault{
				pacssim.CopiesTrustA: pacssim.DuplicateParts().Only(pacssim.KindRetrieve),
				pacssim.CopiesTrustB: pacssim.DuplicateParts().Only(pacssim.KindRetrieve),
			}},
		{name: "preferred trust's stream lacks an instance it listed", path: study, aborted: pacssim.CopiesTrustA,
			faults: map[string]pacssim.Fault{pacssim.CopiesTrustA: pacssim.OmitInstance(pacssim.CopiesInstanceUID(pacssim.CopiesOnlyAtASeriesUID, 2))}},
		{name: "second trust's stream lacks an instance it listed", path: study, aborted: pacssim.CopiesTrustB,
			faults: map[string]pacssim.Fault{pacssim.CopiesTrustB: pacssim.OmitInstance(pacssim.CopiesInstanceUID(pacssim.CopiesOnlyAtBSeriesUID, 2))}},
		// One trust's copy is whole here: it alone is asked, and its answer is still checked
		// part by part against its listing.
		{name: "series only at the second trust, which sends every part twice", path: study + "/series/" + pacssim.CopiesOnlyAtBSeriesUID, want: pacssim.CopiesOnlyAtBSeriesUID,
			faults: map[string]pacssim.Fault{pacssim.CopiesTrustB: pacssim.DuplicateParts().Only(pacssim.KindRetrieve)}},
		{name: "series only at the second trust, whose stream lacks an instance it listed", path: study + "/series/" + pacssim.CopiesOnlyAtBSeriesUID, aborted: pacssim.CopiesTrustB,
			faults: map[string]pacssim.Fault{pacssim.CopiesTrustB: pacssim.OmitInstance(pacssim.CopiesInstanceUID(pacssim.CopiesOnlyAtBSeriesUID, 2))}},
		// The inventory pages through capped search answers: without paging the plan misses
		// what only XE5 holds past its cap.
		{name: "second trust caps its search answers", path: study, want: pacssim.CopiesStudyUID, opts: pacssim.CopiesOptions{SearchCap: 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCopiesRig(t, tc.opts)
			for id, f := range tc.faults {
				r.trusts[id].SetFaults(f)
			}
			got, err := r.retrieve(t, tc.path)
			if tc.aborted != "" {
				if err == nil {
					t.Fatalf("a complete answer of %d instances; want the stream aborted", len(got))
				}
				if st := r.sources[tc.aborted].Status(); st.Failures == 0 {
					t.Errorf("%s's failure was not counted: %+v", tc.aborted, st)
				}
				return
			}
			if err != nil {
				t.Fatalf("the answer broke after %d instances: %v", len(got), err)
			}
			want := r.want(tc.want)
			if len(want) == 0 {
				t.Fatal("the test asks for nothing")
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%d instances, %d distinct; want the union's %d, each once, byte for byte as the trusts hold them",
					len(got), len(slices.Compact(slices.Clone(got))), len(want))
			}
			for id, s := range r.sources {
				if st := s.Status(); st.Failures != 0 {
					t.Errorf("%s counted %d failures for a complete answer", id, st.Failures)
				}
			}
		})
	}
}

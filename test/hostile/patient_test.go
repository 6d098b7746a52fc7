package hostile_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// otherPatientNHSNumber is a valid NHS number that is not the hostile study's patient.
const otherPatientNHSNumber = "9434765919"

// trustRequests records the requests trusts receive, by path and query.
type trustRequests struct {
	mu   sync.Mutex
	seen []*url.URL
}

// watch records every request tr receives from now on, until the test ends.
func (tr *trustRequests) watch(t *testing.T, trusts ...*pacssim.Trust) {
	for _, trust := range trusts {
		trust.Wrap(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tr.mu.Lock()
				tr.seen = append(tr.seen, r.URL)
				tr.mu.Unlock()
				next.ServeHTTP(w, r)
			})
		})
		t.Cleanup(trust.Unwrap)
	}
}

// total is how many requests were recorded.
func (tr *trustRequests) total() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.seen)
}

// beyondLocating are the requests that are not a study-level search by the hostile study's
// UID (what the locator asks to find the study's holders and patient), or by the patient's
// NHS number (what a search by PatientID asks): the requests for the study's data.
func (tr *trustRequests) beyondLocating() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for _, u := range tr.seen {
		q := u.Query()
		if u.Path == "/dicom-web/studies" && (q.Get(dcmjson.TagStudyInstanceUID) == pacssim.HostileStudyUID || q.Get(dcmjson.TagPatientID) == pacssim.HostilePatientNHSNumber) {
			continue
		}
		out = append(out, u.String())
	}
	return out
}

// refileSearches makes trust answer every search with its study filed under patientID
// instead of the hostile study's patient, as a trust that matched its copy to another
// patient, or to none, does. Only searches change: what the trust would send of the study
// itself is never asked for.
func refileSearches(t *testing.T, trust *pacssim.Trust, patientID string) {
	trust.Wrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/studies") && !strings.HasSuffix(r.URL.Path, "/series") && !strings.HasSuffix(r.URL.Path, "/instances") {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := bytes.ReplaceAll(rec.Body.Bytes(), []byte(`"`+pacssim.HostilePatientNHSNumber+`"`), []byte(`"`+patientID+`"`))
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	})
	t.Cleanup(trust.Unwrap)
}

// TestPatientRefusalSendsNothing: when the patient step refuses (the caller over its
// distinct-patient limit), every data route answers with the refusal's status, message and
// Retry-After, sends none of the study, records nothing, and no trust is asked for any of the
// study's data: a retrieve's trusts hear only the locator's search for the study's holders.
func TestPatientRefusalSendsNothing(t *testing.T) {
	hostile, honest, bases := honestTrusts(t)
	refusal := &policy.Refusal{Rule: "rate-limit-patients", Status: http.StatusTooManyRequests, Message: "This user has seen the imaging of more patients than its limit allows", RetryAfter: 2500 * time.Millisecond}
	for _, rt := range routes() {
		t.Run(rt.name, func(t *testing.T) {
			// A proxy of its own, so that no location remembered from another request spares
			// it asking the trusts where the study is.
			g := &governance{}
			p := newProxy(t, hostile, honest, bases, func(d *dicomweb.Deps) { d.Auth, d.Authz, d.Audit = g, g, g })
			path := rt.path
			if path == "bulk" {
				path = p.bulkLink(t)
			}
			g.take()
			g.refusePatient(refusal)
			var seen trustRequests
			seen.watch(t, hostile, honest)
			a := p.get(t, path, rt.accept)
			if a.status != http.StatusTooManyRequests || !strings.Contains(string(a.body), refusal.Message) {
				t.Fatalf("status %d: %.300s; want 429 saying %q", a.status, a.body, refusal.Message)
			}
			if got := a.header.Get("Retry-After"); got != "3" {
				t.Errorf("Retry-After %q; want the limit's 2.5s rounded up, 3", got)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" || bytes.Contains(a.body, []byte(pacssim.HostileInstanceUID)) {
				t.Errorf("Content-Type %q, body %.300s; want an error body and none of the study", ct, a.body)
			}
			actions, patientActions, events := g.take()
			if len(actions) != 1 || len(patientActions) != 1 || patientActions[0].PatientID != pacssim.HostilePatientNHSNumber {
				t.Errorf("authorization asked %+v, the patient step %+v; want each once, the patient step for %s", actions, patientActions, pacssim.HostilePatientNHSNumber)
			}
			if len(events) != 1 || events[0].Outcome != audit.OutcomeRefused || events[0].Status != http.StatusTooManyRequests || events[0].Rule != refusal.Rule || events[0].PatientID != pacssim.HostilePatientNHSNumber {
				t.Errorf("a refused request recorded %+v; want one refusal of rule %s, under the patient refused", events, refusal.Rule)
			}
			if data := seen.beyondLocating(); len(data) != 0 {
				t.Errorf("after the patient was refused the trusts were asked %q; want nothing of the study", data)
			}
			if rt.path != "bulk" && seen.total() == 0 {
				t.Error("the trusts were asked nothing; the test needs the proxy to ask them where the study is")
			}
		})
	}
}

// TestStudyPatientMustBeOne: the study's holders must file it under one NHS number. When they
// name two (a wrong-patient hazard) every route that reads the study, and a search by its UID,
// is refused with 409, picking neither; when they name none (each copy under a local hospital
// number only) the patient cannot be established and they are refused with 403. Either way the
// message names no identifier, the patient step is never asked, nothing is recorded, and no
// trust is asked for the study's data. A search by the patient's NHS number matches only the
// copies filed under it: the patient's own, or none (an empty answer, which concerns no
// patient and asks no patient step).
func TestStudyPatientMustBeOne(t *testing.T) {
	hostile, honest, bases := honestTrusts(t)
	cases := []struct {
		name    string
		refile  func(t *testing.T)
		status  int
		message string
		// searched is how many studies the search by the patient's NHS number finds.
		searched int
	}{
		{name: "holders disagree", refile: func(t *testing.T) { refileSearches(t, honest, otherPatientNHSNumber) },
			status: http.StatusConflict, message: "file it under different patients", searched: 1},
		{name: "patient unknown", refile: func(t *testing.T) {
			refileSearches(t, hostile, "MRN13579")
			refileSearches(t, honest, "MRN13579")
		}, status: http.StatusForbidden, message: "could not be established"},
	}
	byUID := route{name: "search by study UID", kind: pacssim.KindSearch, path: "studies?StudyInstanceUID=" + pacssim.HostileStudyUID, accept: acceptJSON}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, rt := range append(routes(), byUID) {
				t.Run(rt.name, func(t *testing.T) {
					g := &governance{}
					opt := func(d *dicomweb.Deps) { d.Auth, d.Authz, d.Audit = g, g, g }
					path := rt.path
					if path == "bulk" {
						// The link is had before the trusts disagree, from a proxy of its own.
						path = newProxy(t, hostile, honest, bases, opt).bulkLink(t)
					}
					tc.refile(t)
					var seen trustRequests
					seen.watch(t, hostile, honest)
					g.take()
					a := newProxy(t, hostile, honest, bases, opt).get(t, path, rt.accept)
					_, patientActions, events := g.take()
					if rt.name == "search" {
						// A search naming a patient asks the patient step for that patient, found
						// or not: probing NHS numbers counts each one.
						if a.status != http.StatusOK || len(patientActions) != 1 || patientActions[0].PatientID != pacssim.HostilePatientNHSNumber || len(events) != 1 {
							t.Fatalf("status %d, patient step %+v, %d events: %.300s; want 200 asking the patient step once, for the patient searched", a.status, patientActions, len(events), a.body)
						}
						wantDatasets(tc.searched)(t, a)
						return
					}
					if a.status != tc.status || !strings.Contains(string(a.body), tc.message) {
						t.Fatalf("status %d: %.300s; want %d saying %q", a.status, a.body, tc.status, tc.message)
					}
					for _, id := range []string{pacssim.HostilePatientNHSNumber, otherPatientNHSNumber, "MRN13579", pacssim.HostileStudyUID} {
						if bytes.Contains(a.body, []byte(id)) {
							t.Errorf("the refusal names %s: %s", id, a.body)
						}
					}
					if len(patientActions) != 0 {
						t.Errorf("the patient step was asked %+v; want not, with no patient established", patientActions)
					}
					if len(events) != 1 || events[0].Outcome != audit.OutcomeFailed || events[0].Status != tc.status || events[0].PatientID != "" {
						t.Errorf("recorded %+v; want one failed request of status %d naming no patient", events, tc.status)
					}
					if data := seen.beyondLocating(); len(data) != 0 {
						t.Errorf("the trusts were asked %q; want nothing of the study", data)
					}
				})
			}
		})
	}
}

package main

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/test/devissuer"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// The harness is access_test.go's: the proxy as serve wires it (accessRig), whose spool
// audited reads back. It is here rather than in dicomweb because the records' who (the
// authenticated principal, the registry's grant, CIS2's userinfo) and the spool are serve's
// wiring, which dicomweb's tests stand in for.

// The demo's resources the table asks for: the ultrasound study (XC3 alone holds it), its
// multi-frame series and instance, and the knee MR both XA1 and XB2 hold.
var (
	auditUS       = "/dicom-web/studies/" + pacssim.DemoUltrasoundStudyUID
	auditMFSeries = auditUS + "/series/" + pacssim.DemoMultiFrameSeriesUID
	auditMF       = auditMFSeries + "/instances/" + pacssim.DemoMultiFrameInstanceUID
	auditKnee     = "/dicom-web/studies/" + pacssim.DemoSharedStudyUID
	// aliceStudies are every study of the demo's patient 9434765919.
	aliceStudies = []string{pacssim.DemoHeadCTStudyUID, pacssim.DemoSharedStudyUID, pacssim.DemoChestCRStudyUID,
		pacssim.DemoUltrasoundStudyUID, pacssim.DemoHandDXStudyUID}
	allTrusts = []string{pacssim.DemoTrustA, pacssim.DemoTrustB, pacssim.DemoTrustC}
)

// Accept headers of the table's requests.
const (
	acceptJSON   = "application/dicom+json"
	acceptDICOM  = `multipart/related; type="application/dicom"`
	acceptFrames = `multipart/related; type="application/octet-stream"; transfer-syntax=*`
	acceptJPEG   = "image/jpeg"
)

// auditCaller is who sends a request of the table: the claims of its token (nil sends none),
// minted at the IUA issuer unless cis2, and the headers it adds.
type auditCaller struct {
	claims  *devissuer.Claims
	cis2    bool
	headers map[string]string
	// expired mints the token expired.
	expired bool
}

// auditUser is a caller acting as user, in role, for purpose ("" states none), at the onboarded
// organisation through the registered viewer; its token's jti is "jti-" and the user.
func auditUser(user, org, role, purpose string, headers map[string]string) auditCaller {
	c := iua(user, org, role, purpose, false)
	c.TokenID = "jti-" + user
	return auditCaller{claims: &c, headers: headers}
}

// auditRequest is one request of the table.
type auditRequest struct {
	from         auditCaller
	path, accept string
}

// sent is a request's answer: its status, body and the X-Request-Id it was given, and the
// window of time its record must fall in.
type sent struct {
	status        int
	id, body      string
	before, after time.Time
}

// send does the request and reads its answer whole.
func (r *accessRig) send(t *testing.T, q auditRequest) sent {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.proxy.URL+q.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", q.accept)
	if q.from.claims != nil {
		iss := r.iss
		if q.from.cis2 {
			iss = r.cis2
		}
		mint := iss.Mint
		if q.from.expired {
			mint = iss.MintExpired
		}
		token, err := mint(*q.from.claims)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range q.from.headers {
		req.Header.Set(k, v)
	}
	s := sent{before: time.Now()}
	resp, err := r.proxy.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	s.after, s.status, s.id, s.body = time.Now(), resp.StatusCode, resp.Header.Get("X-Request-Id"), string(body)
	return s
}

// recordOf is the one record the request answered s left, and nothing else recorded since the
// last read: audited fails a request recorded twice, and recordOf any other record.
func (r *accessRig) recordOf(t *testing.T, s sent) audit.Event {
	t.Helper()
	events := r.audited(t)
	e, ok := events[s.id]
	if !ok || len(events) != 1 {
		t.Fatalf("request %s (%d) left records %v; want exactly its one", s.id, s.status, slices.Collect(maps.Keys(events)))
	}
	return e
}

// checkRecord checks that the request answered s is recorded exactly as want, which need not
// say the version, time or request id: they are checked here.
func checkRecord(t *testing.T, r *accessRig, s sent, want audit.Event) {
	t.Helper()
	got := r.recordOf(t, s)
	if got.Time.Before(s.before) || got.Time.After(s.after) {
		t.Errorf("recorded at %s, not while the request was answered (%s to %s)", got.Time, s.before, s.after)
	}
	want.Version, want.RequestID, want.Time = audit.EventVersion, s.id, got.Time
	// The studies of an answer are in the answer's order, which is no concern of the record.
	got.StudyUIDs = slices.Sorted(slices.Values(got.StudyUIDs))
	want.StudyUIDs = slices.Sorted(slices.Values(want.StudyUIDs))
	g, w := fieldsOf(t, got), fieldsOf(t, want)
	keys := maps.Clone(g)
	maps.Copy(keys, w)
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if g[k] != w[k] {
			t.Errorf("record %s: %s is %s; want %s", s.id, k, orNone(g[k]), orNone(w[k]))
		}
	}
	if s.status != want.Status {
		t.Errorf("answered %d; the table expects %d", s.status, want.Status)
	}
}

// fieldsOf is e's encoded fields, each value as JSON.
func fieldsOf(t *testing.T, e audit.Event) map[string]string {
	t.Helper()
	b, err := audit.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func orNone(v string) string {
	if v == "" {
		return "absent"
	}
	return v
}

// granted is the record's who of a request c sent that access control judged, allowed or
// refused by its rules: the user at the IUA issuer, the token's jti and role, the organisation,
// the viewer's registered id and the purpose judged or asked for, from where.
func granted(r *accessRig, c auditCaller, purpose, source string) audit.Event {
	e := asked(r, c)
	e.System, e.Purpose, e.PurposeSource = "dev-viewer", purpose, source
	return e
}

// asked is the record's who of a request c sent that never reached access control's rules
// (it failed before): what the token says, with the calling system as the token names it (no
// rule looked up its registration), and no purpose judged.
func asked(r *accessRig, c auditCaller) audit.Event {
	ext := c.claims.IUA
	e := audit.Event{User: c.claims.Subject, Issuer: r.iss.URL(), TokenID: c.claims.TokenID,
		Organisation: ext.SubjectOrganizationID, System: c.claims.ClientID, ClientAddress: "127.0.0.1"}
	if len(ext.SubjectRole) > 0 {
		e.Role = ext.SubjectRole[0].Code
	}
	return e
}

// what completes who with what was asked and how it ended.
func what(who audit.Event, action, resource, query string, status int, outcome string, f func(*audit.Event)) audit.Event {
	who.Action, who.Resource, who.Query, who.Status, who.Outcome = action, resource, query, status, outcome
	if f != nil {
		f(&who)
	}
	return who
}

// ofAlice names the demo's patient and the studies of the answer.
func ofAlice(studies ...string) func(*audit.Event) {
	return func(e *audit.Event) { e.PatientID, e.StudyUIDs = pacssim.DemoPatientNHSNumber, studies }
}

// inUS is ofAlice with the ultrasound study, its series and instance as named, answered by XC3.
func inUS(series, instance string) func(*audit.Event) {
	return func(e *audit.Event) {
		ofAlice(pacssim.DemoUltrasoundStudyUID)(e)
		e.SeriesUID, e.InstanceUID, e.Sources = series, instance, []string{pacssim.DemoTrustC}
	}
}

// TestAuditRecords: every data route, and the audit read route, leaves exactly one record per
// request, through serve's wiring, that says everything the issue asks of it: who (user,
// issuer, token, role, organisation, system, purpose and where it came from, break-glass
// reason, client address), what (action, route, query, patient, study, series and instance),
// and how it ended (outcome, status, rule, trusts that answered, missing and stale).
func TestAuditRecords(t *testing.T) {
	r := newAccessRigWith(t, time.Now, func(c *config.Config) { c.RateLimit.Patients.Patients = 1 })
	clin := auditUser("u-clin", orgOnboarded, "R8000", "TREAT", nil)
	byPatient := "PatientID=" + pacssim.DemoPatientNHSNumber
	mf, series := pacssim.DemoMultiFrameInstanceUID, pacssim.DemoMultiFrameSeriesUID
	ok := func(action, resource, query string, f func(*audit.Event)) audit.Event {
		return what(granted(r, clin, "TREAT", "token"), action, resource, query, http.StatusOK, audit.OutcomeSuccess, f)
	}
	alicesAnswer := func(e *audit.Event) { ofAlice(aliceStudies...)(e); e.Sources = allTrusts }

	t.Run("routes", func(t *testing.T) {
		for _, tc := range []struct {
			name, path, accept string
			want               audit.Event
		}{
			{"study search by patient", "/dicom-web/studies?" + byPatient, acceptJSON,
				ok(audit.ActionSearch, "/dicom-web/studies", byPatient, alicesAnswer)},
			{"series search by patient", "/dicom-web/series?" + byPatient, acceptJSON,
				ok(audit.ActionSearch, "/dicom-web/series", byPatient, alicesAnswer)},
			{"instance search by patient", "/dicom-web/instances?" + byPatient, acceptJSON,
				ok(audit.ActionSearch, "/dicom-web/instances", byPatient, alicesAnswer)},
			// A search by study names no patient: the record's is the answer's.
			{"study search by study", "/dicom-web/studies?StudyInstanceUID=" + pacssim.DemoSharedStudyUID, acceptJSON,
				ok(audit.ActionSearch, "/dicom-web/studies", "StudyInstanceUID="+pacssim.DemoSharedStudyUID, func(e *audit.Event) {
					ofAlice(pacssim.DemoSharedStudyUID)(e)
					e.Sources = allTrusts
				})},
			{"series search in a study", auditUS + "/series", acceptJSON,
				ok(audit.ActionSearch, "/dicom-web/studies/:study/series", "", inUS("", ""))},
			{"instance search in a series", auditMFSeries + "/instances", acceptJSON,
				ok(audit.ActionSearch, "/dicom-web/studies/:study/series/:series/instances", "", inUS(series, ""))},
			{"study retrieve", auditUS, acceptDICOM,
				ok(audit.ActionRetrieve, "/dicom-web/studies/:study", "", inUS("", ""))},
			// The knee MR is held by two trusts; XB2's copy has every instance, so it alone is
			// drawn on.
			{"retrieve of a study two trusts hold", auditKnee, acceptDICOM,
				ok(audit.ActionRetrieve, "/dicom-web/studies/:study", "", func(e *audit.Event) {
					ofAlice(pacssim.DemoSharedStudyUID)(e)
					e.Sources = []string{pacssim.DemoTrustB}
				})},
			{"series retrieve", auditMFSeries, acceptDICOM,
				ok(audit.ActionRetrieve, "/dicom-web/studies/:study/series/:series", "", inUS(series, ""))},
			{"instance retrieve", auditMF, acceptDICOM,
				ok(audit.ActionRetrieve, "/dicom-web/studies/:study/series/:series/instances/:instance", "", inUS(series, mf))},
			{"study metadata", auditUS + "/metadata", acceptJSON,
				ok(audit.ActionMetadata, "/dicom-web/studies/:study/metadata", "", inUS("", ""))},
			{"metadata of a study two trusts hold", auditKnee + "/metadata", acceptJSON,
				ok(audit.ActionMetadata, "/dicom-web/studies/:study/metadata", "", func(e *audit.Event) {
					ofAlice(pacssim.DemoSharedStudyUID)(e)
					e.Sources = []string{pacssim.DemoTrustA, pacssim.DemoTrustB}
				})},
			{"series metadata", auditMFSeries + "/metadata", acceptJSON,
				ok(audit.ActionMetadata, "/dicom-web/studies/:study/series/:series/metadata", "", inUS(series, ""))},
			{"instance metadata", auditMF + "/metadata", acceptJSON,
				ok(audit.ActionMetadata, "/dicom-web/studies/:study/series/:series/instances/:instance/metadata", "", inUS(series, mf))},
			{"frames", auditMF + "/frames/1", acceptFrames,
				ok(audit.ActionRetrieve, "/dicom-web/studies/:study/series/:series/instances/:instance/frames/:frames", "", inUS(series, mf))},
			{"rendered instance", auditMF + "/rendered", acceptJPEG,
				ok(audit.ActionRendered, "/dicom-web/studies/:study/series/:series/instances/:instance/rendered", "", inUS(series, mf))},
			{"rendered frame", auditMF + "/frames/2/rendered", acceptJPEG,
				ok(audit.ActionRendered, "/dicom-web/studies/:study/series/:series/instances/:instance/frames/:frames/rendered", "", inUS(series, mf))},
			{"study thumbnail", auditUS + "/thumbnail", acceptJPEG,
				ok(audit.ActionRendered, "/dicom-web/studies/:study/thumbnail", "", inUS("", ""))},
		} {
			t.Run(tc.name, func(t *testing.T) {
				checkRecord(t, r, r.send(t, auditRequest{from: clin, path: tc.path, accept: tc.accept}), tc.want)
			})
		}
	})

	// A bulk data link names the series and instance whose metadata held it: its record names
	// them, answered or not.
	t.Run("bulk data", func(t *testing.T) {
		meta := r.send(t, auditRequest{from: clin, path: auditMF + "/metadata", accept: acceptJSON})
		r.recordOf(t, meta)
		link := bulkLink(t, meta.body)
		checkRecord(t, r, r.send(t, auditRequest{from: clin, path: link, accept: acceptFrames}),
			ok(audit.ActionBulkData, "/dicom-web/bulkdata/:token", "", inUS(series, mf)))
		// Another user with the link is refused before access control (a link is bound to
		// its caller): what was asked for is recorded, under the rule, and no patient (none
		// is known yet).
		other := auditUser("u-other", orgOnboarded, "R8000", "TREAT", nil)
		checkRecord(t, r, r.send(t, auditRequest{from: other, path: link, accept: acceptFrames}),
			what(asked(r, other), audit.ActionBulkData, "/dicom-web/bulkdata/:token", "", http.StatusForbidden, audit.OutcomeRefused, func(e *audit.Event) {
				e.StudyUIDs, e.SeriesUID, e.InstanceUID = []string{pacssim.DemoUltrasoundStudyUID}, series, mf
				e.Rule = "bulk-link-caller"
			}))
	})

	// Who asked, as the grant judged it: the purpose, where it came from, and emergency and
	// break-glass access with the reason given.
	t.Run("callers", func(t *testing.T) {
		reason := map[string]string{"X-Purpose-Of-Use-Reason": "Unconscious patient in ED"}
		btg := auditUser("u-btg", orgOnboarded, "R8000", "BTG", reason)
		etreat := auditUser("u-etreat", orgOnboarded, "R8001", "ETREAT", reason)
		registered := auditUser("u-reg", orgOnboarded, "R8003", "", nil)
		// A CIS2 user is its SDS user id (nhsid_useruid), in the role and organisation of the
		// role profile selected at login (userinfo's), for the viewer's registered purpose.
		cis2Claims := nhsCIS2("910000000001", orgOnboarded, "R8000", 3, "AAL3_ANY", true)
		cis2Claims.TokenID = "jti-cis2"
		cis2User := auditCaller{claims: &cis2Claims, cis2: true}
		cis2Want := audit.Event{User: "910000000001", Issuer: r.cis2.URL(), TokenID: "jti-cis2", Role: "R8000", Organisation: orgOnboarded,
			System: "dev-viewer", Purpose: "TREAT", PurposeSource: "registration", ClientAddress: "127.0.0.1"}
		for _, tc := range []struct {
			name string
			from auditCaller
			want audit.Event
		}{
			{"break glass", btg, granted(r, btg, "BTG", "token")},
			{"emergency", etreat, granted(r, etreat, "ETREAT", "token")},
			{"purpose from the viewer's registration", registered, granted(r, registered, "TREAT", "registration")},
			{"CIS2 user, roles from userinfo", cis2User, cis2Want},
		} {
			t.Run(tc.name, func(t *testing.T) {
				want := what(tc.want, audit.ActionMetadata, "/dicom-web/studies/:study/metadata", "", http.StatusOK, audit.OutcomeSuccess, inUS("", ""))
				if tc.from.headers != nil {
					want.Reason = reason["X-Purpose-Of-Use-Reason"]
					want.BreakGlass, want.Emergency = want.Purpose == "BTG", want.Purpose == "ETREAT"
				}
				checkRecord(t, r, r.send(t, auditRequest{from: tc.from, path: auditUS + "/metadata", accept: acceptJSON}), want)
			})
		}
	})

	// Refusals: by authentication, by the rules before any trust is asked (no patient is known
	// yet, so none is recorded, even when the request names one), and by the distinct-patient
	// limit once the patient is known (recorded under that patient). A refusal by the rules
	// names what they saw: the viewer's registered id, the purpose asked for and where it came
	// from, and for break glass the reason given.
	t.Run("refused", func(t *testing.T) {
		search := "/dicom-web/studies?" + byPatient
		refused := func(c auditCaller, rule, purpose string) audit.Event {
			return what(granted(r, c, purpose, "token"), audit.ActionSearch, "/dicom-web/studies", byPatient, http.StatusForbidden, audit.OutcomeRefused,
				func(e *audit.Event) { e.Rule, e.BreakGlass = rule, purpose == "BTG" })
		}
		unauthenticated := what(audit.Event{ClientAddress: "127.0.0.1"}, audit.ActionSearch, "/dicom-web/studies", byPatient,
			http.StatusUnauthorized, audit.OutcomeRefused, func(e *audit.Event) { e.Rule = "authenticated" })
		expired := auditUser("u-expired", orgOnboarded, "R8000", "TREAT", nil)
		expired.expired = true
		po := auditUser("u-po", orgOnboarded, "R0001", "TREAT", nil)
		research := auditUser("u-res", orgOnboarded, "R8000", "HRESCH", nil)
		btgNoReason := auditUser("u-btg0", orgOnboarded, "R8000", "BTG", nil)
		reason := "Unconscious patient in ED"
		btgLapsed := auditUser("u-btg-lapsed", orgLapsed, "R8000", "BTG", map[string]string{"X-Purpose-Of-Use-Reason": reason})
		btgLapsedWant := refused(btgLapsed, "onboarded", "BTG")
		btgLapsedWant.Reason = reason
		unknown := auditUser("u-unk", orgUnknown, "R8000", "TREAT", nil)
		lapsed := auditUser("u-lapsed", orgLapsed, "R8000", "TREAT", nil)
		for _, tc := range []struct {
			name string
			from auditCaller
			want audit.Event
		}{
			// A token that does not verify says nothing the record may trust: no user is named.
			{"no token", auditCaller{}, unauthenticated},
			{"expired token", expired, unauthenticated},
			{"privacy officer's role", po, refused(po, "role-actions", "TREAT")},
			{"research", research, refused(research, "purpose-of-use", "HRESCH")},
			{"break glass without a reason", btgNoReason, refused(btgNoReason, "purpose-of-use", "BTG")},
			{"break glass with a reason, DSPT lapsed", btgLapsed, btgLapsedWant},
			{"unknown organisation", unknown, refused(unknown, "onboarded", "TREAT")},
			{"DSPT lapsed", lapsed, refused(lapsed, "onboarded", "TREAT")},
		} {
			t.Run(tc.name, func(t *testing.T) {
				checkRecord(t, r, r.send(t, auditRequest{from: tc.from, path: search, accept: acceptJSON}), tc.want)
			})
		}
		t.Run("distinct-patient limit", func(t *testing.T) {
			limited := auditUser("u-limit", orgOnboarded, "R8000", "TREAT", nil)
			checkRecord(t, r, r.send(t, auditRequest{from: limited, path: search, accept: acceptJSON}),
				what(granted(r, limited, "TREAT", "token"), audit.ActionSearch, "/dicom-web/studies", byPatient, http.StatusOK, audit.OutcomeSuccess, alicesAnswer))
			bob := "PatientID=" + pacssim.DemoSecondPatientNHSNumber
			checkRecord(t, r, r.send(t, auditRequest{from: limited, path: "/dicom-web/studies?" + bob, accept: acceptJSON}),
				what(granted(r, limited, "TREAT", "token"), audit.ActionSearch, "/dicom-web/studies", bob, http.StatusTooManyRequests, audit.OutcomeRefused,
					func(e *audit.Event) { e.PatientID, e.Rule = pacssim.DemoSecondPatientNHSNumber, "distinct-patients" }))
		})
	})

	// Requests that fail: bad input (400) once the caller is authenticated is recorded, as
	// failed and with no patient (none is known: the request never reaches authorization's
	// patient step); so is a study no trust holds (404).
	t.Run("failed", func(t *testing.T) {
		asClin := func(action, resource, query string, status int, f func(*audit.Event)) audit.Event {
			return what(asked(r, clin), action, resource, query, status, audit.OutcomeFailed, f)
		}
		for _, tc := range []struct {
			name, path string
			want       audit.Event
		}{
			{"search naming no patient", "/dicom-web/studies?Modality=CT",
				asClin(audit.ActionSearch, "/dicom-web/studies", "Modality=CT", http.StatusBadRequest, nil)},
			{"malformed query", "/dicom-web/studies?PatientID=%zz",
				asClin(audit.ActionSearch, "/dicom-web/studies", "PatientID=%zz", http.StatusBadRequest, nil)},
			{"malformed study UID", "/dicom-web/studies/1.2.x/metadata",
				asClin(audit.ActionMetadata, "/dicom-web/studies/:study/metadata", "", http.StatusBadRequest,
					func(e *audit.Event) { e.StudyUIDs = []string{"1.2.x"} })},
			{"study no trust holds", "/dicom-web/studies/1.2.999.826.9.9/metadata",
				what(granted(r, clin, "TREAT", "token"), audit.ActionMetadata, "/dicom-web/studies/:study/metadata", "", http.StatusNotFound, audit.OutcomeFailed,
					func(e *audit.Event) { e.StudyUIDs = []string{"1.2.999.826.9.9"} })},
		} {
			t.Run(tc.name, func(t *testing.T) {
				checkRecord(t, r, r.send(t, auditRequest{from: clin, path: tc.path, accept: acceptJSON}), tc.want)
			})
		}
	})

	// The audit read route: the privacy officer's read is recorded under the patient; a
	// clinician's is refused by role before the patient step; an invalid NHS number fails.
	t.Run("audit read", func(t *testing.T) {
		po := auditUser("u-po-read", orgOnboarded, "R0001", "", nil)
		report := "/audit/patients/" + pacssim.DemoPatientNHSNumber
		checkRecord(t, r, r.send(t, auditRequest{from: po, path: report, accept: "application/json"}),
			what(granted(r, po, "", ""), audit.ActionAuditRead, "/audit/patients/:nhs", "", http.StatusOK, audit.OutcomeSuccess,
				func(e *audit.Event) { e.PatientID = pacssim.DemoPatientNHSNumber }))
		// Reading the audit is not reading patient data: no purpose of use is asked for.
		checkRecord(t, r, r.send(t, auditRequest{from: clin, path: report, accept: "application/json"}),
			what(granted(r, clin, "", ""), audit.ActionAuditRead, "/audit/patients/:nhs", "", http.StatusForbidden, audit.OutcomeRefused,
				func(e *audit.Event) { e.Rule = "role-actions" }))
		checkRecord(t, r, r.send(t, auditRequest{from: po, path: "/audit/patients/9434765918", accept: "application/json"}),
			what(asked(r, po), audit.ActionAuditRead, "/audit/patients/:nhs", "", http.StatusBadRequest, audit.OutcomeFailed, nil))
	})
}

// bulkLink is the path of the first bulk data link in a metadata answer.
func bulkLink(t *testing.T, metadata string) string {
	t.Helper()
	_, rest, found := strings.Cut(metadata, `"BulkDataURI":"`)
	uri, _, closed := strings.Cut(rest, `"`)
	path, under := strings.CutPrefix(uri, "http://nirproxy.test")
	if !found || !closed || !under {
		t.Fatalf("no bulk data link of the proxy's in %.300s", metadata)
	}
	return path
}

// TestAuditRecordsDegraded: an answer without a trust is recorded as partial naming it, one
// with a trust's stale cached copy standing in as partial naming it stale, and a request no
// trust can answer as failed; each once, with everything else a record says.
func TestAuditRecordsDegraded(t *testing.T) {
	// Search answers are fresh for a moment only, then stale for a quarter of an hour.
	r := newAccessRigWith(t, time.Now, func(c *config.Config) { c.Cache.Search.Fresh = config.Duration(time.Millisecond) })
	clin := auditUser("u-clin", orgOnboarded, "R8000", "TREAT", nil)
	byPatient := "PatientID=" + pacssim.DemoPatientNHSNumber
	search := func(t *testing.T, query string, status int, outcome string, f func(*audit.Event)) {
		t.Helper()
		checkRecord(t, r, r.send(t, auditRequest{from: clin, path: "/dicom-web/studies?" + query, accept: acceptJSON}),
			what(granted(r, clin, "TREAT", "token"), audit.ActionSearch, "/dicom-web/studies", query, status, outcome, f))
	}
	everyStudy := func(e *audit.Event) { ofAlice(aliceStudies...)(e); e.Sources = allTrusts }
	search(t, byPatient, http.StatusOK, audit.OutcomeSuccess, everyStudy)
	time.Sleep(20 * time.Millisecond)
	r.trusts[0].RefuseConnections()

	t.Run("stale", func(t *testing.T) {
		search(t, byPatient, http.StatusOK, audit.OutcomePartial, func(e *audit.Event) {
			everyStudy(e)
			e.Stale = []string{pacssim.DemoTrustA}
		})
	})
	t.Run("partial", func(t *testing.T) {
		// A search not asked before has no cached copy to stand in.
		search(t, byPatient+"&includefield=StudyDescription", http.StatusOK, audit.OutcomePartial, func(e *audit.Event) {
			ofAlice(pacssim.DemoSharedStudyUID, pacssim.DemoChestCRStudyUID, pacssim.DemoUltrasoundStudyUID, pacssim.DemoHandDXStudyUID)(e)
			e.Sources, e.Missing = []string{pacssim.DemoTrustB, pacssim.DemoTrustC}, []string{pacssim.DemoTrustA}
		})
	})
	t.Run("failed once the patient is known", func(t *testing.T) {
		// XC3 is found to hold the study, which names its patient, then fails to send it.
		r.trusts[2].SetFaults(pacssim.Status(http.StatusInternalServerError).Only(pacssim.KindMetadata))
		s := r.send(t, auditRequest{from: clin, path: auditUS + "/metadata", accept: acceptJSON})
		r.trusts[2].SetFaults()
		checkRecord(t, r, s, what(granted(r, clin, "TREAT", "token"), audit.ActionMetadata, "/dicom-web/studies/:study/metadata", "", http.StatusServiceUnavailable, audit.OutcomeFailed,
			ofAlice(pacssim.DemoUltrasoundStudyUID)))
	})
	t.Run("failed", func(t *testing.T) {
		r.trusts[1].RefuseConnections()
		r.trusts[2].RefuseConnections()
		search(t, byPatient+"&includefield=AccessionNumber", http.StatusServiceUnavailable, audit.OutcomeFailed, nil)
		// A study no search has answered cannot be located, so its patient is never known.
		bobs := pacssim.DemoSecondPatientCTStudyUID
		checkRecord(t, r, r.send(t, auditRequest{from: clin, path: "/dicom-web/studies/" + bobs, accept: acceptDICOM}),
			what(granted(r, clin, "TREAT", "token"), audit.ActionRetrieve, "/dicom-web/studies/:study", "", http.StatusServiceUnavailable, audit.OutcomeFailed,
				func(e *audit.Event) { e.StudyUIDs = []string{bobs} }))
	})
}

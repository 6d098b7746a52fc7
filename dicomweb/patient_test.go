package dicomweb

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nirproxy/nirproxy/policy"
)

// patientAuthz permits everything and remembers the patients AuthorizePatient was asked
// about.
type patientAuthz struct {
	mu       sync.Mutex
	patients []string
}

func (a *patientAuthz) Authorize(context.Context, policy.Principal, policy.Action) (policy.Grant, error) {
	return policy.Grant{}, nil
}

func (a *patientAuthz) AuthorizePatient(_ context.Context, _ policy.Principal, act policy.Action) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.patients = append(a.patients, act.PatientID)
	return nil
}

// take returns the patients asked about since the last take, and forgets them.
func (a *patientAuthz) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.patients
	a.patients = nil
	return p
}

// TestAnswerPatient: the patient step sees the patient every answer concerns, once: a search's
// PatientID; else the NHS number its results name; for a search within a study whose results
// name none (series carry no patient attributes), the patient the locator knows the study by;
// for a retrieve, the study's. An empty answer concerns no patient, and one whose results name
// no NHS number (a local hospital number only) is refused, its patient not established.
func TestAnswerPatient(t *testing.T) {
	a, b := twoTrusts(t)
	local := newFakeOriginWith(t, "TC", fakeOptions{accession: map[string]string{"4.1": "XC3-0001"}},
		fakeInstance{"LOCAL-77", "4.1", "4.1.1", "4.1.1.1", "20240101"})
	authz := &patientAuthz{}
	p := newTestProxyWith(t, proxyOptions{authz: authz}, a, b, local)
	// TA and TB ignore AccessionNumber and send none: they would answer a search by it with
	// every patient's studies.
	onlyLocal := newTestProxyWith(t, proxyOptions{authz: authz}, local)
	tests := []struct {
		name, path string
		proxy      *testProxy // p when nil
		status     int
		want       []string
	}{
		{name: "search by patient", path: "/dicom-web/studies?PatientID=" + alice, status: http.StatusOK, want: []string{alice}},
		{name: "search by study UID", path: "/dicom-web/studies?StudyInstanceUID=1.9", status: http.StatusOK, want: []string{bob}},
		{name: "search within a study", path: "/dicom-web/studies/1.1/series", status: http.StatusOK, want: []string{alice}},
		{name: "empty search", path: "/dicom-web/studies?StudyInstanceUID=1.7", status: http.StatusOK},
		{name: "retrieve", path: "/dicom-web/studies/1.9/metadata", status: http.StatusOK, want: []string{bob}},
		{name: "results under a local number only", path: "/dicom-web/studies?AccessionNumber=XC3-0001", proxy: onlyLocal, status: http.StatusForbidden},
		{name: "a study under a local number only", path: "/dicom-web/studies/4.1/metadata", status: http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			authz.take()
			resp, body := cmp.Or(tc.proxy, p).get(t, tc.path)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == http.StatusForbidden && (!strings.Contains(string(body), "could not be established") || strings.Contains(string(body), "LOCAL-77")) {
				t.Fatalf("body %s; want the patient could not be established, naming no identifier", body)
			}
			if got := authz.take(); !slices.Equal(got, tc.want) {
				t.Fatalf("the patient step saw %v; want %v", got, tc.want)
			}
		})
	}
}

package dicomweb

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// TestSearchCannotTrawl: a search that is not tied to a patient by its PatientID (one by
// AccessionNumber or a study UID) can never return more than one patient's studies, and one
// whose scoping key is blank or a list is refused before any trust is asked. The trusts here
// ignore AccessionNumber (as a PACS that does not support a key does), so they answer such a
// search with every study they hold, of alice and of bob.
func TestSearchCannotTrawl(t *testing.T) {
	tests := []struct {
		name       string
		query      string
		status     int
		wantError  string   // a phrase of the DICOMweb error body
		wantStudy  []string // the studies answered, for a 200
		noUpstream bool     // refused before any trust is called
	}{
		{name: "accession only, trusts ignore it: several patients", query: "AccessionNumber=XA1-0001", status: http.StatusForbidden, wantError: "more than one patient"},
		{name: "accession list", query: "AccessionNumber=XA1-0001%5CXB2-0001%5CXC3-0001", status: http.StatusBadRequest, wantError: "exactly one value", noUpstream: true},
		{name: "accession comma list", query: "AccessionNumber=XA1-0001,XB2-0001", status: http.StatusBadRequest, wantError: "exactly one value", noUpstream: true},
		{name: "blank accession", query: "AccessionNumber=%20", status: http.StatusBadRequest, wantError: "blank", noUpstream: true},
		{name: "empty study uid list", query: "StudyInstanceUID=,", status: http.StatusBadRequest, wantError: "exactly one value", noUpstream: true},
		{name: "study uid list", query: "StudyInstanceUID=1.1,1.9", status: http.StatusBadRequest, wantError: "exactly one value", noUpstream: true},
		{name: "wildcard accession", query: "AccessionNumber=XA1*", status: http.StatusBadRequest, wantError: "exactly one value", noUpstream: true},
		{name: "one study uid: one patient", query: "StudyInstanceUID=1.9", status: http.StatusOK, wantStudy: []string{"1.9"}},
		{name: "accession under a patient: that patient's only", query: "PatientID=" + alice + "&AccessionNumber=XA1-0001", status: http.StatusOK, wantStudy: []string{"1.3", "1.1", "1.2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := twoTrusts(t)
			p := newTestProxy(t, a, b)
			before := p.upstreamCalls()
			resp, body := p.get(t, "/dicom-web/studies?"+tc.query)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.noUpstream && p.upstreamCalls() != before {
				t.Fatalf("%d calls reached the trusts; the request must be refused before any", p.upstreamCalls()-before)
			}
			if tc.status != http.StatusOK {
				if !strings.Contains(string(body), tc.wantError) || strings.Contains(string(body), alice) || strings.Contains(string(body), bob) {
					t.Fatalf("body %s; want a DICOMweb error saying %q and no patient's data", body, tc.wantError)
				}
				return
			}
			var got []string
			for _, ds := range decodeList(t, body) {
				got = append(got, ds.String(dcmjson.TagStudyInstanceUID))
			}
			if strings.Join(got, " ") != strings.Join(tc.wantStudy, " ") {
				t.Fatalf("studies %v, want %v", got, tc.wantStudy)
			}
		})
	}
}

// TestSearchFiltersWhatTrustsIgnore: a trust that ignores AccessionNumber but sends
// each study's own accession number has its answer cut to the study asked for, so the search
// is answered (one patient); and a patient search at a trust that ignores PatientID returns
// only that patient's studies.
func TestSearchFiltersWhatTrustsIgnore(t *testing.T) {
	a := newFakeOriginWith(t, "TA", fakeOptions{ignorePatientFilter: true, accession: map[string]string{"1.1": "XA1-0001", "1.2": "XA1-0002", "1.9": "XA1-0009"}},
		fakeInstance{alice, "1.1", "1.1.1", "1.1.1.1", "20240101"},
		fakeInstance{alice, "1.2", "1.2.1", "1.2.1.1", "20230101"},
		fakeInstance{bob, "1.9", "1.9.1", "1.9.1.1", "20220101"},
	)
	p := newTestProxy(t, a)
	for _, tc := range []struct{ query, want string }{
		{"AccessionNumber=XA1-0009", "1.9"},
		{"PatientID=" + alice, "1.1 1.2"},
		{"PatientID=" + bob, "1.9"},
	} {
		resp, body := p.get(t, "/dicom-web/studies?"+tc.query)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", tc.query, resp.StatusCode, body)
		}
		var got []string
		for _, ds := range decodeList(t, body) {
			got = append(got, ds.String(dcmjson.TagStudyInstanceUID))
		}
		if strings.Join(got, " ") != tc.want {
			t.Fatalf("%s: studies %v, want %s only", tc.query, got, tc.want)
		}
	}
}

// TestTransferSyntaxMustBeAUID: the transfer-syntax of an Accept is passed on to the trusts,
// so only a UID or "*" is accepted; any other text is a 400 before any trust is called.
func TestTransferSyntaxMustBeAUID(t *testing.T) {
	a, b := twoTrusts(t)
	p := newTestProxy(t, a, b)
	for _, accept := range []string{
		`multipart/related; type="application/dicom"; transfer-syntax="*, text/html; q=1"`,
		`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1x`,
		`multipart/related; type="application/dicom"; transfer-syntax="1.2.840.10008.1.2.1\r\nX-Evil: 1"`,
	} {
		before := p.upstreamCalls()
		resp, body := p.get(t, "/dicom-web/studies/1.1", "Accept", accept)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "transfer-syntax") {
			t.Fatalf("Accept %q: status %d, %s; want 400 naming transfer-syntax", accept, resp.StatusCode, body)
		}
		if p.upstreamCalls() != before {
			t.Fatalf("Accept %q: a trust was called", accept)
		}
	}
	for _, accept := range []string{
		`multipart/related; type="application/dicom"; transfer-syntax=*`,
		`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1`,
	} {
		if resp, body := p.get(t, "/dicom-web/studies/1.1", "Accept", accept); resp.StatusCode != http.StatusOK {
			t.Fatalf("Accept %q: status %d, %s; want 200", accept, resp.StatusCode, body)
		}
	}
}

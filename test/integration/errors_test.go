package integration_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/test/orthanc"
)

func TestBadRequests(t *testing.T) {
	m := needProxy(t)
	shared := m.Study(orthanc.StudyShared)
	ct := locate(m, "SHARED_CT_1")
	unknownStudy := "2.25.1234567890123456789"
	longUID := "1." + strings.Repeat("2", 70)
	tests := []struct {
		name   string
		method string
		path   string
		accept string
		status int
	}{
		{"study search naming no patient", http.MethodGet, "/studies", "", http.StatusBadRequest},
		{"study search by date alone", http.MethodGet, "/studies?StudyDate=20240315", "", http.StatusBadRequest},
		{"NHS number with a wrong check digit", http.MethodGet, "/studies?PatientID=9434765918", "", http.StatusBadRequest},
		{"NHS number whose check digit would be 10", http.MethodGet, "/studies?PatientID=1234567890", "", http.StatusBadRequest},
		{"NHS number too short", http.MethodGet, "/studies?PatientID=943476591", "", http.StatusBadRequest},
		{"NHS number not digits", http.MethodGet, "/studies?PatientID=94347659AB", "", http.StatusBadRequest},
		{"bad UID in the path", http.MethodGet, "/studies/1.2.abc/metadata", "", http.StatusBadRequest},
		{"UID longer than 64 characters", http.MethodGet, "/studies/" + longUID + "/metadata", "", http.StatusBadRequest},
		{"bad UID in the query", http.MethodGet, "/studies?StudyInstanceUID=1.2.x3", "", http.StatusBadRequest},
		{"bad series UID", http.MethodGet, "/studies/" + shared.StudyInstanceUID + "/series/abc/metadata", "", http.StatusBadRequest},
		{"unknown attribute", http.MethodGet, "/studies?PatientID=" + orthanc.PatientAlpha + "&NoSuchAttribute=1", "", http.StatusBadRequest},
		{"unknown includefield", http.MethodGet, "/studies?PatientID=" + orthanc.PatientAlpha + "&includefield=NoSuchAttribute", "", http.StatusBadRequest},
		{"limit not a number", http.MethodGet, "/studies?PatientID=" + orthanc.PatientAlpha + "&limit=abc", "", http.StatusBadRequest},
		{"negative limit", http.MethodGet, "/studies?PatientID=" + orthanc.PatientAlpha + "&limit=-1", "", http.StatusBadRequest},
		{"negative offset", http.MethodGet, "/studies?PatientID=" + orthanc.PatientAlpha + "&offset=-5", "", http.StatusBadRequest},
		{"frame zero", http.MethodGet, ct.path() + "/frames/0", "", http.StatusBadRequest},
		{"frame not a number", http.MethodGet, ct.path() + "/frames/x", "", http.StatusBadRequest},
		{"unknown study metadata", http.MethodGet, "/studies/" + unknownStudy + "/metadata", "", http.StatusNotFound},
		{"unknown study retrieve", http.MethodGet, "/studies/" + unknownStudy, acceptDICOM, http.StatusNotFound},
		{"unknown instance frames", http.MethodGet, "/studies/" + unknownStudy + "/series/2.25.1/instances/2.25.2/frames/1", "", http.StatusNotFound},
		{"unknown series in a known study", http.MethodGet, "/studies/" + shared.StudyInstanceUID + "/series/2.25.99/metadata", "", http.StatusNotFound},
		{"metadata in an unsupported type", http.MethodGet, "/studies/" + shared.StudyInstanceUID + "/metadata", "application/x-foo", http.StatusNotAcceptable},
		{"retrieve in an unsupported type", http.MethodGet, "/studies/" + shared.StudyInstanceUID, "image/gif", http.StatusNotAcceptable},
		{"search in an unsupported type", http.MethodGet, "/studies?PatientID=" + orthanc.PatientAlpha, "text/x-foo", http.StatusNotAcceptable},
		{"rendered in an unsupported type", http.MethodGet, ct.path() + "/rendered", "application/x-foo", http.StatusNotAcceptable},
		{"store (STOW-RS)", http.MethodPost, "/studies", "", http.StatusMethodNotAllowed},
		{"store into a study", http.MethodPost, "/studies/" + shared.StudyInstanceUID, "", http.StatusMethodNotAllowed},
		{"delete a study", http.MethodDelete, "/studies/" + shared.StudyInstanceUID, "", http.StatusMethodNotAllowed},
		{"replace metadata", http.MethodPut, "/studies/" + shared.StudyInstanceUID + "/metadata", "", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := acceptHeader(tt.accept)
			var body []byte
			if tt.method == http.MethodPost || tt.method == http.MethodPut {
				header = http.Header{"Content-Type": {`multipart/related; type="application/dicom"; boundary=x`}}
				body = []byte("--x\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n--x--\r\n")
			}
			r := do(t, tt.method, fx.proxy.DICOMwebURL()+tt.path, header, body)
			checkNoUpstreamAddress(t, r)
			wantError(t, r, tt.status)
		})
	}
	if !fx.orthancs[orthanc.SourceA].Running() || !fx.orthancs[orthanc.SourceB].Running() {
		t.Fatal("an Orthanc died during the bad requests")
	}
}

// TestRetrieveURLsPointAtProxy checks every RetrieveURL a client can be handed, at each level.
func TestRetrieveURLsPointAtProxy(t *testing.T) {
	m := needProxy(t)
	shared := m.Study(orthanc.StudyShared)
	mr := shared.SeriesByKey("SHARED_MR")
	tests := []struct {
		name string
		path string
		want func(d dcmjson.Dataset) string
	}{
		{"studies", "/studies?PatientID=" + orthanc.PatientAlpha, func(d dcmjson.Dataset) string {
			return "/studies/" + d.String(dcmjson.TagStudyInstanceUID)
		}},
		{"series", "/studies/" + shared.StudyInstanceUID + "/series", func(d dcmjson.Dataset) string {
			return "/studies/" + shared.StudyInstanceUID + "/series/" + d.String(dcmjson.TagSeriesInstanceUID)
		}},
		{"instances", "/studies/" + shared.StudyInstanceUID + "/series/" + mr.SeriesInstanceUID + "/instances", func(d dcmjson.Dataset) string {
			return "/studies/" + shared.StudyInstanceUID + "/series/" + mr.SeriesInstanceUID + "/instances/" + d.String(dcmjson.TagSOPInstanceUID)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, d := range datasets(t, viaProxy(t, tt.path, acceptJSON)) {
				got := d.String(dcmjson.TagRetrieveURL)
				if want := fx.proxy.DICOMwebURL() + tt.want(d); got != want {
					t.Errorf("RetrieveURL %q, want %q", got, want)
				}
			}
		})
	}
}

// TestHealth checks the proxy's readiness endpoint.
func TestHealth(t *testing.T) {
	needProxy(t)
	wantStatus(t, do(t, http.MethodGet, fx.proxy.URL+"/healthz", nil, nil), http.StatusOK)
}

package dicomweb

import (
	"net/url"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/upstream"
)

var testLimits = with(testConfig("").Search, func(l *SearchLimits) { l.MaxResultsPerSource, l.MaxLimit = 100, 50 })

func TestParseSearch(t *testing.T) {
	tests := []struct {
		name    string
		level   Level
		study   string
		query   string
		wantErr string
		check   func(t *testing.T, s *Search)
	}{
		{name: "patient by keyword", query: "PatientID=9434765919", check: func(t *testing.T, s *Search) {
			if s.PatientID != "9434765919" {
				t.Fatalf("PatientID = %q", s.PatientID)
			}
		}},
		{name: "patient by tag", query: "00100020=9434765919"},
		{name: "study uid list under a patient", query: "PatientID=9434765919&StudyInstanceUID=1.2.3,1.2.4"},
		{name: "accession list under a patient", query: "PatientID=9434765919&AccessionNumber=XA1-0001%5CXB2-0001"},
		{name: "accession number", query: "AccessionNumber=ACC1"},
		{name: "includefield list and all", query: "PatientID=9434765919&includefield=00081030,StudyDescription&includefield=all", check: func(t *testing.T, s *Search) {
			if !s.IncludeAll || len(s.IncludeFields) != 2 {
				t.Fatalf("includes = %v all=%v", s.IncludeFields, s.IncludeAll)
			}
		}},
		{name: "date range", query: "PatientID=9434765919&StudyDate=20200101-20201231"},
		{name: "open date range", query: "PatientID=9434765919&StudyDate=-20201231"},
		{name: "wildcard name", query: "PatientID=9434765919&PatientName=DEMO*"},
		{name: "limit clamped", query: "PatientID=9434765919&limit=500", check: func(t *testing.T, s *Search) {
			if s.Limit != 50 || !s.LimitClamped {
				t.Fatalf("limit = %d clamped=%v", s.Limit, s.LimitClamped)
			}
		}},
		{name: "nested search needs no patient", level: SeriesLevel, study: "1.2.3", query: ""},
		{name: "series search by series uid", level: SeriesLevel, query: "SeriesInstanceUID=1.2.3.4"},
		{name: "partial answers refused on request", query: "PatientID=9434765919&partial=fail"},
		{name: "bad partial", query: "PatientID=9434765919&partial=maybe", wantErr: "partial must be"},
		{name: "no scope", query: "ModalitiesInStudy=CT", wantErr: "must name a patient"},
		{name: "wildcard accession is no scope", query: "AccessionNumber=*", wantErr: "exactly one value"},
		{name: "study uid list without a patient", query: "StudyInstanceUID=1.2.3,1.2.4", wantErr: "exactly one value"},
		{name: "accession list without a patient", query: "AccessionNumber=XA1-0001%5CXB2-0001%5CXC3-0001", wantErr: "exactly one value"},
		{name: "accession comma list without a patient", query: "AccessionNumber=XA1-0001,XB2-0001", wantErr: "exactly one value"},
		{name: "blank accession", query: "AccessionNumber=%20", wantErr: "blank"},
		{name: "blank accession under a patient", query: "PatientID=9434765919&AccessionNumber=%20%20", wantErr: "blank"},
		{name: "blank study uid", query: "StudyInstanceUID=%20", wantErr: "not a valid DICOM UID"},
		{name: "empty study uid list", query: "StudyInstanceUID=,", wantErr: "exactly one value"},
		{name: "series uid list without a patient", level: SeriesLevel, query: "SeriesInstanceUID=1.2.3.1,1.2.3.2", wantErr: "exactly one value"},
		{name: "bad NHS number", query: "PatientID=9434765918", wantErr: "NHS number"},
		{name: "wildcard patient", query: "PatientID=943*", wantErr: "NHS number"},
		{name: "bad UID", query: "StudyInstanceUID=1.2.abc", wantErr: "not a valid DICOM UID"},
		{name: "bad path UID", level: SeriesLevel, study: "1..2", wantErr: "not a valid DICOM UID"},
		{name: "unknown keyword", query: "PatientID=9434765919&NoSuchKeyword=1", wantErr: "neither a DICOM keyword"},
		{name: "negative limit", query: "PatientID=9434765919&limit=-1", wantErr: "non-negative"},
		{name: "text offset", query: "PatientID=9434765919&offset=x", wantErr: "non-negative"},
		{name: "bad fuzzy", query: "PatientID=9434765919&fuzzymatching=maybe", wantErr: "fuzzymatching"},
		{name: "bad date", query: "PatientID=9434765919&StudyDate=2020-01-01", wantErr: "StudyDate"},
		{name: "impossible date", query: "PatientID=9434765919&StudyDate=20201341", wantErr: "no such date"},
		{name: "repeated key", query: "PatientID=9434765919&Modality=CT&Modality=MR", wantErr: "only once"},
		{name: "keyword and tag twice", query: "PatientID=9434765919&00100020=9434765919", wantErr: "twice"},
		{name: "other patient ids", query: "OtherPatientIDsSequence.PatientID=9434765919", wantErr: "PatientID"},
		{name: "path and query disagree", level: SeriesLevel, study: "1.2.3", query: "StudyInstanceUID=1.2.4", wantErr: "differs"},
		{name: "sequence as key", query: "PatientID=9434765919&ReferencedStudySequence=1", wantErr: "sequence"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			s, err := parseSearch(tc.level, tc.study, "", q, testLimits)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				if de, ok := err.(*Error); !ok || de.Status != 400 {
					t.Fatalf("err = %#v, want a 400 *Error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestUpstreamQueryPlacesNHSNumber(t *testing.T) {
	q, _ := url.ParseQuery("PatientID=9434765919&StudyDate=20200101-&includefield=StudyDescription&fuzzymatching=true&limit=5&offset=10")
	s, err := parseSearch(StudyLevel, "", "", q, testLimits)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  upstream.SourceConfig
		want map[string]string
		not  []string
	}{
		{name: "PatientID", src: upstream.SourceConfig{ID: "A"}, want: map[string]string{
			"00100020": "9434765919", "00080020": "20200101-", "fuzzymatching": "false", "limit": "100",
		}, not: []string{"offset", "00101002.00100020"}},
		{name: "PatientID with issuer", src: upstream.SourceConfig{ID: "A", PatientIDIssuer: "NHS"}, want: map[string]string{
			"00100020": "9434765919", "00100021": "NHS",
		}},
		{name: "OtherPatientIDsSequence", src: upstream.SourceConfig{ID: "C", PatientID: upstream.InOtherPatientIDsSequence, PatientIDIssuer: "NHS"}, want: map[string]string{
			"00101002.00100020": "9434765919", "00101002.00100021": "NHS",
		}, not: []string{"00100020"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := s.upstreamQuery(&upstream.Source{SourceConfig: tc.src}, 100)
			for k, v := range tc.want {
				if got.Get(k) != v {
					t.Errorf("%s = %q, want %q (query %s)", k, got.Get(k), v, got.Encode())
				}
			}
			for _, k := range tc.not {
				if got.Has(k) {
					t.Errorf("%s must not be sent (query %s)", k, got.Encode())
				}
			}
			inc := got.Get("includefield")
			for _, f := range []string{dcmjson.TagStudyDate, "00081030"} {
				if !strings.Contains(inc, f) {
					t.Errorf("includefield %q lacks %s", inc, f)
				}
			}
		})
	}
}

// TestLocatesCompletely: only a study search whose one key is a single StudyInstanceUID names
// every holder of what it finds, and so may teach the locator.
func TestLocatesCompletely(t *testing.T) {
	tests := []struct {
		query string
		want  bool
	}{
		{"StudyInstanceUID=1.2.3", true},
		{"StudyInstanceUID=1.2.3,1.2.4&PatientID=9434765919", false},
		{"PatientID=9434765919", false},
		{"StudyInstanceUID=1.2.3&PatientID=9434765919", false},
		{"StudyInstanceUID=1.2.3&StudyDate=20240101", false},
		{"StudyInstanceUID=1.2.3&ModalitiesInStudy=CT", false},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			s, err := parseSearch(StudyLevel, "", "", q, testLimits)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got := s.locatesCompletely(); got != tc.want {
				t.Fatalf("locatesCompletely() = %v, want %v", got, tc.want)
			}
		})
	}
}

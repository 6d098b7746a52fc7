package pacssim

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

func TestSearchMatching(t *testing.T) {
	d := newDemo(t)
	const (
		headCT = DemoHeadCTStudyUID
		shared = DemoSharedStudyUID
		chest  = DemoChestCRStudyUID
		bobCT  = DemoSecondPatientCTStudyUID
		bobCR  = DemoSecondPatientCRStudyUID
		us     = DemoUltrasoundStudyUID
		hand   = DemoHandDXStudyUID
	)
	tests := []struct {
		name  string
		trust string
		path  string // resource and query under /dicom-web
		tag   string // the UID compared
		want  []string
	}{
		{"all studies", "XB2", "/studies", dcmjson.TagStudyInstanceUID, []string{shared, chest, bobCT, bobCR}},
		{"patient id exact", "XA1", "/studies?PatientID=" + DemoPatientNHSNumber, dcmjson.TagStudyInstanceUID, []string{headCT, shared}},
		{"patient id by tag", "XB2", "/studies?00100020=" + DemoSecondPatientNHSNumber, dcmjson.TagStudyInstanceUID, []string{bobCT, bobCR}},
		{"NHS number not in PatientID at XC3", "XC3", "/studies?PatientID=" + DemoPatientNHSNumber, dcmjson.TagStudyInstanceUID, []string{}},
		{"other patient ids by tags", "XC3", "/studies?00101002.00100020=" + DemoPatientNHSNumber, dcmjson.TagStudyInstanceUID, []string{us, hand}},
		{"other patient ids by keywords with issuer", "XC3", "/studies?OtherPatientIDsSequence.PatientID=" + DemoPatientNHSNumber + "&OtherPatientIDsSequence.IssuerOfPatientID=NHS", dcmjson.TagStudyInstanceUID, []string{us, hand}},
		{"other patient ids, wrong issuer", "XC3", "/studies?00101002.00100020=" + DemoPatientNHSNumber + "&00101002.00100021=XX", dcmjson.TagStudyInstanceUID, []string{}},
		{"other patient ids, nobody there", "XA1", "/studies?00101002.00100020=" + DemoPatientNHSNumber, dcmjson.TagStudyInstanceUID, []string{}},
		{"local id at XC3", "XC3", "/studies?PatientID=" + DemoPatientLocalID + "&IssuerOfPatientID=XC3", dcmjson.TagStudyInstanceUID, []string{us, hand}},
		{"name wildcard, any case", "XB2", "/studies?PatientName=demo%5Eb*", dcmjson.TagStudyInstanceUID, []string{bobCT, bobCR}},
		{"name single character wildcard", "XA1", "/studies?PatientName=DEMO%5EALIC%3F", dcmjson.TagStudyInstanceUID, []string{headCT, shared}},
		{"study uid list with commas", "XB2", "/studies?StudyInstanceUID=" + chest + "," + bobCR, dcmjson.TagStudyInstanceUID, []string{chest, bobCR}},
		{"study uid list with backslashes", "XB2", "/studies?StudyInstanceUID=" + chest + "%5C" + bobCR, dcmjson.TagStudyInstanceUID, []string{chest, bobCR}},
		{"unknown study", "XA1", "/studies?StudyInstanceUID=1.2.3", dcmjson.TagStudyInstanceUID, []string{}},
		{"date range", "XB2", "/studies?StudyDate=20240101-20241231", dcmjson.TagStudyDate, []string{"20240120"}},
		{"date range open start", "XB2", "/studies?StudyDate=-20240131", dcmjson.TagStudyInstanceUID, []string{shared, chest}},
		{"date range open end", "XB2", "/studies?StudyDate=20250302-", dcmjson.TagStudyInstanceUID, []string{bobCT}},
		{"single date", "XA1", "/studies?StudyDate=20230602", dcmjson.TagStudyInstanceUID, []string{shared}},
		{"time range, short upper end", "XB2", "/studies?StudyTime=1000-1010", dcmjson.TagStudyInstanceUID, []string{chest}},
		{"accession wildcard", "XB2", "/studies?AccessionNumber=XB2-000*", dcmjson.TagStudyInstanceUID, []string{chest, bobCT, bobCR}},
		{"modalities in study", "XB2", "/studies?ModalitiesInStudy=CR", dcmjson.TagStudyInstanceUID, []string{chest, bobCR}},
		{"modality at study level", "XA1", "/studies?Modality=MR", dcmjson.TagStudyInstanceUID, []string{shared}},
		{"study by instance uid", "XA1", "/studies?SOPInstanceUID=" + shared + ".2.3", dcmjson.TagStudyInstanceUID, []string{shared}},
		{"unknown keys are ignored", "XA1", "/studies?NoSuchKeyword=1&_=12345&PatientID=" + DemoPatientNHSNumber, dcmjson.TagStudyInstanceUID, []string{headCT, shared}},
		{"empty value is universal", "XA1", "/studies?AccessionNumber=", dcmjson.TagStudyInstanceUID, []string{headCT, shared}},
		{"keys together", "XB2", "/studies?PatientID=" + DemoSecondPatientNHSNumber + "&ModalitiesInStudy=CT", dcmjson.TagStudyInstanceUID, []string{bobCT}},
		{"limit", "XB2", "/studies?limit=2", dcmjson.TagStudyInstanceUID, []string{shared, chest}},
		{"offset", "XB2", "/studies?offset=3", dcmjson.TagStudyInstanceUID, []string{bobCR}},
		{"limit and offset", "XB2", "/studies?limit=1&offset=1", dcmjson.TagStudyInstanceUID, []string{chest}},
		{"offset past the end", "XB2", "/studies?offset=10", dcmjson.TagStudyInstanceUID, []string{}},
		{"series of a study", "XB2", "/studies/" + shared + "/series", dcmjson.TagSeriesInstanceUID, []string{shared + ".1", shared + ".2", shared + ".3"}},
		{"series of a study at the smaller copy", "XA1", "/studies/" + shared + "/series", dcmjson.TagSeriesInstanceUID, []string{shared + ".1", shared + ".2"}},
		{"series of an unknown study", "XA1", "/studies/1.2.3/series", dcmjson.TagSeriesInstanceUID, []string{}},
		{"all series by modality", "XB2", "/series?Modality=CR", dcmjson.TagSeriesInstanceUID, []string{chest + ".1", bobCR + ".1"}},
		{"all series by patient", "XA1", "/series?PatientID=" + DemoPatientNHSNumber + "&SeriesNumber=2", dcmjson.TagSeriesInstanceUID, []string{headCT + ".2", shared + ".2"}},
		{"series by description", "XA1", "/studies/" + shared + "/series?SeriesDescription=*T2", dcmjson.TagSeriesInstanceUID, []string{shared + ".2"}},
		{"instances of a series", "XB2", "/studies/" + chest + "/series/" + chest + ".1/instances", dcmjson.TagSOPInstanceUID, []string{chest + ".1.1", chest + ".1.2"}},
		{"instances of a study", "XC3", "/studies/" + us + "/instances", dcmjson.TagSOPInstanceUID, []string{us + ".1.1", us + ".1.2", us + ".2.1"}},
		{"instances by number", "XA1", "/studies/" + headCT + "/instances?InstanceNumber=12", dcmjson.TagSOPInstanceUID, []string{headCT + ".2.12"}},
		{"all instances by frames", "XC3", "/instances?NumberOfFrames=16", dcmjson.TagSOPInstanceUID, []string{DemoMultiFrameInstanceUID}},
		{"all instances by series uid", "XC3", "/instances?SeriesInstanceUID=" + hand + ".1", dcmjson.TagSOPInstanceUID, []string{hand + ".1.1", hand + ".1.2"}},
		{"instances by sop class", "XC3", "/instances?SOPClassUID=1.2.840.10008.5.1.4.1.1.6.1", dcmjson.TagSOPInstanceUID, []string{us + ".1.1", us + ".1.2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := uids(getJSON(t, d.base(tc.trust)+tc.path), tc.tag)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestSearchReturnAttributes(t *testing.T) {
	d := newDemo(t)
	base := d.base("XA1")
	host := strings.TrimPrefix(d.servers["XA1"].URL, "http://")
	tests := []struct {
		name    string
		path    string
		want    []string // tags that must be present
		notWant []string // tags that must be absent
		check   func(t *testing.T, ds dcmjson.Dataset)
	}{
		{
			name: "study defaults",
			path: "/studies?StudyInstanceUID=" + DemoSharedStudyUID,
			want: []string{"00080005", "00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00081190",
				"00100010", "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206", "00201208"},
			notWant: []string{"00081030", "00080060", "0020000E", "7FE00010"},
			check: func(t *testing.T, ds dcmjson.Dataset) {
				if got := ds.String(dcmjson.TagRetrieveURL); got != base+"/studies/"+DemoSharedStudyUID {
					t.Errorf("RetrieveURL %q", got)
				}
				if n, _ := ds.Int(dcmjson.TagNumberOfStudyRelatedSeries); n != 2 {
					t.Errorf("NumberOfStudyRelatedSeries %d", n)
				}
				if n, _ := ds.Int(dcmjson.TagNumberOfStudyRelatedInstances); n != 16 {
					t.Errorf("NumberOfStudyRelatedInstances %d", n)
				}
				if got := ds[dcmjson.TagNumberOfStudyRelatedInstances].Value[0]; string(got) != "16" {
					t.Errorf("counts are JSON numbers, got %s", got)
				}
			},
		},
		{
			name:    "includefield list and repeated",
			path:    "/studies?StudyInstanceUID=" + DemoSharedStudyUID + "&includefield=00081030,00080060&includefield=PatientSex&includefield=InstitutionName",
			want:    []string{"00081030", "00100040"},
			notWant: []string{"00080060", "00080080"}, // series-level attributes are not study attributes
		},
		{
			name:    "includefield all at study level",
			path:    "/studies?StudyInstanceUID=" + DemoHeadCTStudyUID + "&includefield=all",
			want:    []string{"00081030", "00100030", "00201206"},
			notWant: []string{"00080018", "00280010", "0020000E"},
		},
		{
			name: "series under a study",
			path: "/studies/" + DemoSharedStudyUID + "/series?SeriesNumber=1",
			want: []string{"00080005", "00080060", "0008103E", "00081190", "0020000E", "00200011", "00201209", "00400244", "0020000D"},
			// Study attributes come only with /series at the root.
			notWant: []string{"00100010", "00080020"},
			check: func(t *testing.T, ds dcmjson.Dataset) {
				if got := ds.String(dcmjson.TagRetrieveURL); got != base+"/studies/"+DemoSharedStudyUID+"/series/"+DemoSharedStudyUID+".1" {
					t.Errorf("RetrieveURL %q", got)
				}
			},
		},
		{
			name: "all series bring study attributes",
			path: "/series?SeriesInstanceUID=" + DemoSharedStudyUID + ".1",
			want: []string{"00100010", "00080020", "00201206", "00080060", "0020000E"},
		},
		{
			name:    "instances under a series",
			path:    "/studies/" + DemoHeadCTStudyUID + "/series/" + DemoHeadCTStudyUID + ".2/instances?InstanceNumber=1",
			want:    []string{"00080016", "00080018", "00081190", "00200013", "00280010", "00280011", "00280100", "0020000D", "0020000E"},
			notWant: []string{"00080060", "00100010", "7FE00010"},
			check: func(t *testing.T, ds dcmjson.Dataset) {
				if n, _ := ds.Int(dcmjson.TagRows); n != 128 {
					t.Errorf("Rows %d", n)
				}
			},
		},
		{
			name:    "instances under a study bring series attributes",
			path:    "/studies/" + DemoHeadCTStudyUID + "/instances?InstanceNumber=1&SeriesNumber=1",
			want:    []string{"00080060", "00200011", "00080018"},
			notWant: []string{"00100010"},
		},
		{
			name:    "includefield all at instance level leaves out bulk data",
			path:    "/instances?SOPInstanceUID=" + DemoHeadCTStudyUID + ".2.1&includefield=all",
			want:    []string{"00200032", "00281050", "00100010"},
			notWant: []string{"7FE00010"},
		},
		{
			name: "matching keys are returned",
			path: "/studies?PatientID=" + DemoPatientNHSNumber + "&StudyDescription=CT*",
			want: []string{"00081030"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := getJSON(t, base+tc.path)
			if len(got) != 1 {
				t.Fatalf("%d results, want 1", len(got))
			}
			for _, tag := range tc.want {
				if _, ok := got[0][tag]; !ok {
					t.Errorf("%s missing", tag)
				}
			}
			for _, tag := range tc.notWant {
				if _, ok := got[0][tag]; ok {
					t.Errorf("%s present", tag)
				}
			}
			if !strings.Contains(mustJSON(got[0]), host) && got[0][dcmjson.TagRetrieveURL] != nil {
				t.Errorf("RetrieveURL not built from the request's host")
			}
			if tc.check != nil {
				tc.check(t, got[0])
			}
		})
	}
}

func TestSearchErrors(t *testing.T) {
	d := newDemo(t)
	tests := []struct {
		name   string
		path   string
		accept string
		status int
	}{
		{"negative limit", "/studies?limit=-1", "", http.StatusBadRequest},
		{"limit not a number", "/studies?limit=ten", "", http.StatusBadRequest},
		{"bad offset", "/series?offset=x", "", http.StatusBadRequest},
		{"bad date", "/studies?StudyDate=2020-01-01", "", http.StatusBadRequest},
		{"bad date range", "/studies?StudyDate=20200101-2020", "", http.StatusBadRequest},
		{"bad time", "/studies?StudyTime=9am", "", http.StatusBadRequest},
		{"bad UID key", "/studies?StudyInstanceUID=1.2.x", "", http.StatusBadRequest},
		{"bad UID in path", "/studies/1..2/series", "", http.StatusBadRequest},
		{"bad number", "/instances?InstanceNumber=one", "", http.StatusBadRequest},
		{"XML not offered", "/studies", `multipart/related; type="application/dicom+xml"`, http.StatusNotAcceptable},
		{"JSON accepted", "/studies", "application/json", http.StatusOK},
		{"JSON among others", "/studies", "text/html;q=0.9, application/dicom+json", http.StatusOK},
		{"wildcard accept", "/studies", "*/*", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, d.base("XA1")+tc.path, tc.accept)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status >= 400 && !strings.Contains(string(body), `"HttpStatus"`) {
				t.Errorf("error body is not JSON: %s", body)
			}
		})
	}
}

func TestSearchFuzzyMatchingWarns(t *testing.T) {
	d := newDemo(t)
	resp := get(t, d.base("XA1")+"/studies?fuzzymatching=true&PatientName=DEMO*", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if w := resp.Header.Get("Warning"); !strings.HasPrefix(w, "299 ") || !strings.Contains(w, "fuzzymatching") {
		t.Errorf("Warning %q", w)
	}
}

func TestMatchValue(t *testing.T) {
	tests := []struct {
		name, vr, pattern, value string
		want                     bool
	}{
		{"exact", "LO", "ABC", "ABC", true},
		{"exact is case-sensitive", "LO", "abc", "ABC", false},
		{"star", "LO", "A*C", "ABBBC", true},
		{"star at end", "LO", "AB*", "AB", true},
		{"question mark", "LO", "A?C", "ABC", true},
		{"question mark needs a character", "LO", "A?C", "AC", false},
		{"several stars", "LO", "*B*D*", "ABCDE", true},
		{"non-ascii", "LO", "Zo?", "Zoë", true},
		{"person name ignores case", "PN", "demo^al*", "DEMO^ALICE", true},
		{"code string list", "CS", `CT\MR`, "MR", true},
		{"code string comma list", "CS", "CT,MR", "CT", true},
		{"uid list", "UI", `1.2\1.3`, "1.3", true},
		{"uid no prefix match", "UI", "1.2", "1.2.3", false},
		{"integer", "IS", "12", "12", true},
		{"decimal equals integer", "DS", "5.0", "5", true},
		{"date exact", "DA", "20200101", "20200101", true},
		{"date in range", "DA", "20200101-20201231", "20200615", true},
		{"date out of range", "DA", "20200101-20201231", "20210101", false},
		{"date open start", "DA", "-20200101", "19991231", true},
		{"date open end", "DA", "20200101-", "20200101", true},
		{"time upper end covers its minute", "TM", "-1030", "103059", true},
		{"time lower end", "TM", "1030-", "102959", false},
		{"time with fraction", "TM", "103000.5-103001", "103000.600", true},
		{"time exact short form", "TM", "1030", "103000", true},
		{"datetime year range", "DT", "2020-2021", "20211231235959", true},
		{"datetime before", "DT", "2020-2021", "20191231235959", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := matchValue(tc.vr, tc.pattern, tc.value); got != tc.want {
				t.Errorf("matchValue(%s, %q, %q) = %v", tc.vr, tc.pattern, tc.value, got)
			}
		})
	}
}

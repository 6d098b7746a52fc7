package integration_test

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/test/orthanc"
)

// compareSearch sends the same QIDO-RS search to the proxy and to each Orthanc and checks
// that the proxy answers the union of the Orthancs' answers, one entry per UID (the value of
// uidTag), each naming the sources that hold it in RetrieveAETitle and pointing its
// RetrieveURL at the proxy. It returns the proxy's datasets.
func compareSearch(t *testing.T, path, uidTag string) []dcmjson.Dataset {
	t.Helper()
	holders, bySource := holdersByUID(t, path, uidTag)
	got := datasets(t, viaProxy(t, path, acceptJSON))
	gotUIDs := uidsOf(got, uidTag)
	if want := keysOf(holders); !slices.Equal(sorted(gotUIDs), want) {
		t.Fatalf("GET %s: proxy found %d entries %v, want the union of both Orthancs, %d entries %v",
			path, len(gotUIDs), sorted(gotUIDs), len(want), want)
	}
	for _, d := range got {
		uid := d.String(uidTag)
		if gotHolders, want := sorted(d.Strings(dcmjson.TagRetrieveAETitle)), holders[uid]; !slices.Equal(gotHolders, want) {
			t.Errorf("GET %s: %s: RetrieveAETitle %v, want the holders %v", path, uid, gotHolders, want)
		}
		if ru := d.String(dcmjson.TagRetrieveURL); ru != "" &&
			(!strings.HasPrefix(ru, fx.proxy.DICOMwebURL()+"/") || !strings.Contains(ru, uid)) {
			t.Errorf("GET %s: %s: RetrieveURL %q does not point at the proxy's %s", path, uid, ru, fx.proxy.DICOMwebURL())
		}
		// Attributes every holder agrees on pass through unchanged.
		for _, tag := range []string{dcmjson.TagPatientID, dcmjson.TagStudyDate, dcmjson.TagAccessionNumber,
			dcmjson.TagStudyInstanceUID, dcmjson.TagSeriesInstanceUID, dcmjson.TagSOPClassUID, dcmjson.TagModality} {
			for _, src := range holders[uid] {
				if want := bySource[src][uid].String(tag); want != "" && d.String(tag) != want {
					t.Errorf("GET %s: %s: %s = %q, %s says %q", path, uid, tag, d.String(tag), src, want)
				}
			}
		}
	}
	return got
}

// checkStudyOrder checks that studies come in the proxy's order: StudyDate descending, then
// StudyTime descending, then StudyInstanceUID (dicomweb's sortResults). Every study must carry
// its StudyDate and StudyTime, or the order could not be judged.
func checkStudyOrder(t *testing.T, path string, ds []dcmjson.Dataset) {
	t.Helper()
	for i, d := range ds {
		if d.String(dcmjson.TagStudyDate) == "" || d.String(dcmjson.TagStudyTime) == "" {
			t.Errorf("GET %s: entry %d (%s) has no StudyDate or StudyTime", path, i, d.String(dcmjson.TagStudyInstanceUID))
		}
	}
	for i := 1; i < len(ds); i++ {
		a, b := ds[i-1], ds[i]
		da, db := a.String(dcmjson.TagStudyDate), b.String(dcmjson.TagStudyDate)
		ta, tb := a.String(dcmjson.TagStudyTime), b.String(dcmjson.TagStudyTime)
		ua, ub := a.String(dcmjson.TagStudyInstanceUID), b.String(dcmjson.TagStudyInstanceUID)
		if da < db || (da == db && ta < tb) || (da == db && ta == tb && ua > ub) {
			t.Errorf("GET %s: entry %d (%s %s, %s) before entry %d (%s %s, %s): want StudyDate descending, then StudyTime descending, then UID",
				path, i-1, da, ta, ua, i, db, tb, ub)
		}
	}
}

// studyUIDs returns the StudyInstanceUIDs of the manifest studies with the given keys, sorted.
func studyUIDs(m *orthanc.Manifest, keys ...string) []string {
	var out []string
	for _, k := range keys {
		out = append(out, m.Study(k).StudyInstanceUID)
	}
	slices.Sort(out)
	return out
}

func TestSearchStudies(t *testing.T) {
	m := needProxy(t)
	shared := m.Study(orthanc.StudyShared)
	tests := []struct {
		name  string
		query string
		want  []string // study keys, from the manifest
	}{
		{"patient at both trusts", "PatientID=" + orthanc.PatientAlpha,
			[]string{orthanc.StudyShared, orthanc.StudyAlphaA, orthanc.StudyAlphaA2, orthanc.StudyAlphaB}},
		{"patient at one trust", "PatientID=" + orthanc.PatientBravo, []string{orthanc.StudyBravoA}},
		{"study held by both", "StudyInstanceUID=" + shared.StudyInstanceUID, []string{orthanc.StudyShared}},
		{"UID list across trusts, under the patient", "PatientID=" + orthanc.PatientAlpha + "&StudyInstanceUID=" + shared.StudyInstanceUID + "," + m.Study(orthanc.StudyAlphaB).StudyInstanceUID,
			[]string{orthanc.StudyShared, orthanc.StudyAlphaB}},
		{"accession number at one trust", "AccessionNumber=" + m.Study(orthanc.StudyAlphaB).AccessionNumber, []string{orthanc.StudyAlphaB}},
		{"tag instead of keyword", "00100020=" + orthanc.PatientBravo, []string{orthanc.StudyBravoA}},
		{"date range", "PatientID=" + orthanc.PatientAlpha + "&StudyDate=20220101-20231231",
			[]string{orthanc.StudyAlphaA, orthanc.StudyAlphaA2, orthanc.StudyAlphaB}},
		{"open date range before", "PatientID=" + orthanc.PatientAlpha + "&StudyDate=-20221231",
			[]string{orthanc.StudyAlphaA2, orthanc.StudyAlphaB}},
		{"open date range after", "PatientID=" + orthanc.PatientAlpha + "&StudyDate=20230101-",
			[]string{orthanc.StudyShared, orthanc.StudyAlphaA}},
		{"single date at both trusts", "PatientID=" + orthanc.PatientAlpha + "&StudyDate=20220110",
			[]string{orthanc.StudyAlphaA2, orthanc.StudyAlphaB}},
		{"wildcard star", "PatientID=" + orthanc.PatientAlpha + "&StudyDescription=*SHARED*", []string{orthanc.StudyShared}},
		{"wildcard prefix", "PatientID=" + orthanc.PatientAlpha + "&StudyDescription=RT*", []string{orthanc.StudyAlphaB}},
		{"wildcard question mark", "PatientID=" + orthanc.PatientAlpha + "&AccessionNumber=NIRACC000?",
			[]string{orthanc.StudyShared, orthanc.StudyAlphaA, orthanc.StudyAlphaA2, orthanc.StudyAlphaB}},
		{"patient name wildcard", "PatientID=" + orthanc.PatientAlpha + "&PatientName=TESTPATIENT^AL*",
			[]string{orthanc.StudyShared, orthanc.StudyAlphaA, orthanc.StudyAlphaA2, orthanc.StudyAlphaB}},
		{"modality in study", "PatientID=" + orthanc.PatientAlpha + "&ModalitiesInStudy=MR", []string{orthanc.StudyShared}},
		{"nothing matches", "PatientID=" + orthanc.PatientAlpha + "&StudyDate=19990101", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/studies?" + tt.query
			got := compareSearch(t, path, dcmjson.TagStudyInstanceUID)
			if uids := sorted(uidsOf(got, dcmjson.TagStudyInstanceUID)); !slices.Equal(uids, studyUIDs(m, tt.want...)) {
				t.Errorf("GET %s: studies %v, want %v (%v)", path, uids, studyUIDs(m, tt.want...), tt.want)
			}
			checkStudyOrder(t, path, got)
		})
	}
}

// TestSearchStudiesMergedAttributes checks the study-level attributes the proxy merges for a
// study held by both trusts, whose copies differ (neither is a superset): ModalitiesInStudy
// and the counts are the union of the copies, exactly the instances, series and modalities
// held anywhere, which is what a retrieve of the study returns. The largest copy's counts
// (3 instances) would be too low.
func TestSearchStudiesMergedAttributes(t *testing.T) {
	m := needProxy(t)
	shared := m.Study(orthanc.StudyShared)
	path := "/studies?PatientID=" + orthanc.PatientAlpha
	_, bySource := holdersByUID(t, path, dcmjson.TagStudyInstanceUID)
	r := viaProxy(t, path, acceptJSON)
	if w := r.Header.Values("Warning"); len(w) > 0 {
		t.Errorf("GET %s: Warning %q; want none (every trust answered and was listed)", path, w)
	}
	got := datasets(t, r)
	i := slices.Index(uidsOf(got, dcmjson.TagStudyInstanceUID), shared.StudyInstanceUID)
	if i < 0 {
		t.Fatalf("shared study missing from %s", path)
	}
	d := got[i]
	if holders := sorted(d.Strings(dcmjson.TagRetrieveAETitle)); !slices.Equal(holders, []string{orthanc.SourceA, orthanc.SourceB}) {
		t.Errorf("RetrieveAETitle %v, want [ORA ORB]", holders)
	}
	var modalities, held []string
	for _, src := range m.Sources {
		for _, mod := range bySource[src][shared.StudyInstanceUID].Strings(dcmjson.TagModalitiesInStudy) {
			if !slices.Contains(modalities, mod) {
				modalities = append(modalities, mod)
			}
		}
	}
	for _, se := range shared.Series {
		if !slices.Contains(held, se.Modality) {
			held = append(held, se.Modality)
		}
	}
	if got := sorted(d.Strings(dcmjson.TagModalitiesInStudy)); !slices.Equal(got, sorted(modalities)) || !slices.Equal(got, sorted(held)) {
		t.Errorf("ModalitiesInStudy %v, want the union %v of the Orthancs' answers, which is the modalities held %v", got, sorted(modalities), sorted(held))
	}
	for _, c := range []struct {
		tag  string
		want int
	}{
		{dcmjson.TagNumberOfStudyRelatedSeries, len(shared.Series)},
		{dcmjson.TagNumberOfStudyRelatedInstances, len(shared.Instances())},
	} {
		var largest int64
		for _, src := range m.Sources {
			n, _ := bySource[src][shared.StudyInstanceUID].Int(c.tag)
			largest = max(largest, n)
		}
		if n, ok := d.Int(c.tag); !ok || n != int64(c.want) {
			t.Errorf("%s = %d (present %v), want the union of both copies, %d (the larger copy says %d)", c.tag, n, ok, c.want, largest)
		}
	}

	// Each series of the shared study counts the union of its copies too.
	seriesPath := "/studies/" + shared.StudyInstanceUID + "/series"
	sr := viaProxy(t, seriesPath, acceptJSON)
	if w := sr.Header.Values("Warning"); len(w) > 0 {
		t.Errorf("GET %s: Warning %q; want none", seriesPath, w)
	}
	series := datasets(t, sr)
	for _, se := range shared.Series {
		j := slices.Index(uidsOf(series, dcmjson.TagSeriesInstanceUID), se.SeriesInstanceUID)
		if j < 0 {
			t.Errorf("GET %s: series %s missing", seriesPath, se.Key)
			continue
		}
		if n, ok := series[j].Int(dcmjson.TagNumberOfSeriesRelatedInstances); !ok || n != int64(len(se.Instances)) {
			t.Errorf("GET %s: series %s: NumberOfSeriesRelatedInstances = %d (present %v), want the union of its copies, %d",
				seriesPath, se.Key, n, ok, len(se.Instances))
		}
	}

	// And the study's retrieve returns exactly as many instances as the search counts.
	rr := viaProxy(t, "/studies/"+shared.StudyInstanceUID, acceptDICOMAsStored)
	wantStatus(t, rr, http.StatusOK)
	if n, _ := d.Int(dcmjson.TagNumberOfStudyRelatedInstances); len(parts(t, rr)) != int(n) {
		t.Errorf("the retrieve of the shared study returned %d instances; its search counts %d", len(parts(t, rr)), n)
	}
}

func TestSearchSeries(t *testing.T) {
	m := needProxy(t)
	shared := m.Study(orthanc.StudyShared)
	alphaB := m.Study(orthanc.StudyAlphaB)
	tests := []struct {
		name string
		path string
		want []string // series UIDs
	}{
		{"nested, study held by both", "/studies/" + shared.StudyInstanceUID + "/series", seriesUIDs(shared)},
		{"top level with study UID", "/series?StudyInstanceUID=" + shared.StudyInstanceUID, seriesUIDs(shared)},
		{"nested, study at one trust", "/studies/" + alphaB.StudyInstanceUID + "/series", seriesUIDs(alphaB)},
		{"nested with modality", "/studies/" + shared.StudyInstanceUID + "/series?Modality=OT",
			[]string{shared.SeriesByKey("SHARED_OT").SeriesInstanceUID}},
		{"nested with series UID", "/studies/" + shared.StudyInstanceUID + "/series?SeriesInstanceUID=" + shared.SeriesByKey("SHARED_MR").SeriesInstanceUID,
			[]string{shared.SeriesByKey("SHARED_MR").SeriesInstanceUID}},
		{"nested with includefield", "/studies/" + shared.StudyInstanceUID + "/series?includefield=0008103E", seriesUIDs(shared)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := compareSearch(t, tt.path, dcmjson.TagSeriesInstanceUID)
			if uids := sorted(uidsOf(got, dcmjson.TagSeriesInstanceUID)); !slices.Equal(uids, sorted(tt.want)) {
				t.Errorf("series %v, want %v", uids, sorted(tt.want))
			}
		})
	}
}

// seriesUIDs returns the SeriesInstanceUIDs of a manifest study.
func seriesUIDs(st *orthanc.ManifestStudy) []string {
	var out []string
	for _, se := range st.Series {
		out = append(out, se.SeriesInstanceUID)
	}
	return out
}

func TestSearchInstances(t *testing.T) {
	m := needProxy(t)
	shared := m.Study(orthanc.StudyShared)
	mr := shared.SeriesByKey("SHARED_MR")
	ot := shared.SeriesByKey("SHARED_OT")
	tests := []struct {
		name string
		path string
		want []string
	}{
		{"study held by both", "/studies/" + shared.StudyInstanceUID + "/instances", instanceUIDs(shared.Instances())},
		{"series held by both, instance at one", "/studies/" + shared.StudyInstanceUID + "/series/" + mr.SeriesInstanceUID + "/instances",
			instanceUIDs(mr.Instances)},
		{"series at one trust", "/studies/" + shared.StudyInstanceUID + "/series/" + ot.SeriesInstanceUID + "/instances",
			instanceUIDs(ot.Instances)},
		{"top level with study UID", "/instances?StudyInstanceUID=" + shared.StudyInstanceUID, instanceUIDs(shared.Instances())},
		{"top level with study and series UID", "/instances?StudyInstanceUID=" + shared.StudyInstanceUID + "&SeriesInstanceUID=" + mr.SeriesInstanceUID,
			instanceUIDs(mr.Instances)},
		{"nested with SOP Instance UID", "/studies/" + shared.StudyInstanceUID + "/instances?SOPInstanceUID=" + ot.Instances[0].SOPInstanceUID,
			[]string{ot.Instances[0].SOPInstanceUID}},
		{"nested with SOP class", "/studies/" + shared.StudyInstanceUID + "/instances?SOPClassUID=" + mr.Instances[0].SOPClassUID,
			instanceUIDs(mr.Instances)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := compareSearch(t, tt.path, dcmjson.TagSOPInstanceUID)
			if uids := sorted(uidsOf(got, dcmjson.TagSOPInstanceUID)); !slices.Equal(uids, sorted(tt.want)) {
				t.Errorf("instances %v, want %v", uids, sorted(tt.want))
			}
		})
	}
}

func TestSearchPaging(t *testing.T) {
	needProxy(t)
	base := "/studies?PatientID=" + orthanc.PatientAlpha
	full := uidsOf(datasets(t, viaProxy(t, base, acceptJSON)), dcmjson.TagStudyInstanceUID)
	if len(full) != 4 {
		t.Fatalf("GET %s: %d studies, want 4", base, len(full))
	}
	for _, limit := range []int{1, 2, 3, 4, 10} {
		t.Run("limit "+strconv.Itoa(limit), func(t *testing.T) {
			var pages []string
			for offset := 0; offset <= len(full); offset += limit {
				path := base + "&limit=" + strconv.Itoa(limit) + "&offset=" + strconv.Itoa(offset)
				page := uidsOf(datasets(t, viaProxy(t, path, acceptJSON)), dcmjson.TagStudyInstanceUID)
				again := uidsOf(datasets(t, viaProxy(t, path, acceptJSON)), dcmjson.TagStudyInstanceUID)
				if !slices.Equal(page, again) {
					t.Errorf("GET %s twice: %v then %v", path, page, again)
				}
				if len(page) > limit {
					t.Errorf("GET %s: %d entries, more than the limit", path, len(page))
				}
				pages = append(pages, page...)
			}
			if !slices.Equal(pages, full) {
				t.Errorf("pages concatenated %v, want the full answer %v", pages, full)
			}
		})
	}
	t.Run("offset past the end", func(t *testing.T) {
		path := base + "&offset=" + strconv.Itoa(len(full))
		if got := datasets(t, viaProxy(t, path, acceptJSON)); len(got) != 0 {
			t.Errorf("GET %s: %d entries, want none", path, len(got))
		}
	})
}

func TestSearchIncludeField(t *testing.T) {
	m := needProxy(t)
	base := "/studies?PatientID=" + orthanc.PatientAlpha
	tests := []struct {
		name  string
		query string
		tags  []string // tags every answer must carry
	}{
		{"tag", "&includefield=00081030", []string{dcmjson.TagStudyDescription}},
		{"keyword", "&includefield=StudyDescription", []string{dcmjson.TagStudyDescription}},
		{"comma list as OHIF sends it", "&includefield=" + url.QueryEscape("00081030,00080060,00080090,00100030"),
			[]string{dcmjson.TagStudyDescription, dcmjson.TagPatientBirthDate}},
		{"repeated", "&includefield=00081030&includefield=PatientBirthDate",
			[]string{dcmjson.TagStudyDescription, dcmjson.TagPatientBirthDate}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := compareSearch(t, base+tt.query, dcmjson.TagStudyInstanceUID)
			for _, d := range got {
				for _, tag := range tt.tags {
					if d[tag] == nil {
						t.Errorf("%s lacks %s", d.String(dcmjson.TagStudyInstanceUID), tag)
					}
				}
				if want := studyByUID(m, d.String(dcmjson.TagStudyInstanceUID)).StudyDescription; d.String(dcmjson.TagStudyDescription) != want {
					t.Errorf("StudyDescription %q, want %q", d.String(dcmjson.TagStudyDescription), want)
				}
			}
		})
	}
	t.Run("all", func(t *testing.T) {
		plain := datasets(t, viaProxy(t, base, acceptJSON))
		all := compareSearch(t, base+"&includefield=all", dcmjson.TagStudyInstanceUID)
		if len(all) != len(plain) {
			t.Fatalf("%d studies with includefield=all, %d without", len(all), len(plain))
		}
		for i := range plain {
			for _, tag := range plain[i].Tags() {
				if all[i][tag] == nil {
					t.Errorf("includefield=all dropped %s", tag)
				}
			}
		}
	})
}

// studyByUID returns the manifest study with uid, failing when there is none.
func studyByUID(m *orthanc.Manifest, uid string) *orthanc.ManifestStudy {
	for i := range m.Studies {
		if m.Studies[i].StudyInstanceUID == uid {
			return &m.Studies[i]
		}
	}
	return &orthanc.ManifestStudy{}
}

func TestSearchFuzzyMatchingWarns(t *testing.T) {
	needProxy(t)
	path := "/studies?PatientID=" + orthanc.PatientAlpha + "&fuzzymatching=true"
	r := viaProxy(t, path, acceptJSON)
	if got := datasets(t, r); len(got) != 4 {
		t.Errorf("GET %s: %d studies, want 4", path, len(got))
	}
	var found bool
	for _, w := range r.Header.Values("Warning") {
		found = found || strings.HasPrefix(strings.TrimSpace(w), "299 ")
	}
	if !found {
		t.Errorf("GET %s: Warning headers %q, want one with code 299 (fuzzy matching not supported)", path, r.Header.Values("Warning"))
	}
}

func TestSearchResponseFormats(t *testing.T) {
	needProxy(t)
	path := "/studies?PatientID=" + orthanc.PatientBravo
	tests := []struct {
		name, accept, wantType string
	}{
		{"no Accept", "", "application/dicom+json"},
		{"DICOM JSON", "application/dicom+json", "application/dicom+json"},
		{"plain JSON", "application/json", "application/"},
		{"any", "*/*", "application/dicom+json"},
		{"XML", `multipart/related; type="application/dicom+xml"`, "multipart/related"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := viaProxy(t, path, tt.accept)
			wantStatus(t, r, http.StatusOK)
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.wantType)
			}
			if tt.wantType == "multipart/related" {
				ps := parts(t, r)
				if len(ps) != 1 || !strings.Contains(string(ps[0].Body), "NativeDicomModel") {
					t.Errorf("%d XML parts, want 1 NativeDicomModel", len(ps))
				}
			}
		})
	}
}

package pacssim

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"slices"
	"sort"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// TestCopiesTrusts: the two copies overlap and differ as CopiesStudyUID's table says, neither
// holds the other, and what both hold is byte for byte the same.
func TestCopiesTrusts(t *testing.T) {
	a, b, err := CopiesTrusts(CopiesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	held := func(tr *Trust) map[string]*Instance {
		out := map[string]*Instance{}
		for _, in := range tr.Instances() {
			if in.StudyUID != CopiesStudyUID {
				t.Fatalf("%s holds %s of another study", tr.ID, in.SOPInstanceUID)
			}
			out[in.SOPInstanceUID] = in
		}
		return out
	}
	atA, atB := held(a), held(b)
	if len(atA) != 18 || len(atB) != 17 {
		t.Fatalf("XD4 holds %d, XE5 %d; want 18 and 17", len(atA), len(atB))
	}
	union := map[string]bool{}
	onlyA, onlyB, both := 0, 0, 0
	for sop, in := range atA {
		union[sop] = true
		if other, ok := atB[sop]; ok {
			both++
			if !bytes.Equal(in.Bytes(), other.Bytes()) {
				t.Errorf("%s differs between the copies", sop)
			}
		} else {
			onlyA++
		}
	}
	for sop := range atB {
		union[sop] = true
		if atA[sop] == nil {
			onlyB++
		}
	}
	if len(union) != CopiesUnionInstances || onlyA == 0 || onlyB == 0 || both != 10 {
		t.Fatalf("union %d (want %d), only at XD4 %d, only at XE5 %d, at both %d (want 10)", len(union), CopiesUnionInstances, onlyA, onlyB, both)
	}
	for _, c := range []struct {
		sop  string
		a, b bool
	}{
		{CopiesInstanceUID(CopiesSharedSeriesUID, 1), true, false},
		{CopiesInstanceUID(CopiesSharedSeriesUID, 5), true, true},
		{CopiesInstanceUID(CopiesSharedSeriesUID, 12), false, true},
		{CopiesInstanceUID(CopiesSameSeriesUID, 6), true, true},
		{CopiesInstanceUID(CopiesOnlyAtASeriesUID, 4), true, false},
		{CopiesInstanceUID(CopiesOnlyAtBSeriesUID, 3), false, true},
	} {
		if (atA[c.sop] != nil) != c.a || (atB[c.sop] != nil) != c.b {
			t.Errorf("%s: at XD4 %v, at XE5 %v; want %v, %v", c.sop, atA[c.sop] != nil, atB[c.sop] != nil, c.a, c.b)
		}
	}
}

// TestSearchCap: a capped trust answers at most SearchCap results whatever limit asks,
// honours a smaller limit and offset, and can be paged through completely.
func TestSearchCap(t *testing.T) {
	_, b, err := CopiesTrusts(CopiesOptions{SearchCap: 5})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(srv.Close)
	list := srv.URL + "/dicom-web/studies/" + CopiesStudyUID + "/instances"
	tests := []struct {
		name  string
		query string
		want  int
	}{
		{"no limit", "", 5},
		{"larger limit", "?limit=100", 5},
		{"smaller limit", "?limit=3", 3},
		{"offset near the end", "?offset=15&limit=100", 2},
		{"offset past the end", "?offset=17", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := len(getJSON(t, list+tc.query)); got != tc.want {
				t.Fatalf("%d results, want %d", got, tc.want)
			}
		})
	}
	t.Run("paged through", func(t *testing.T) {
		var sops []string
		for offset := 0; offset < 100; offset += 5 {
			page := getJSON(t, fmt.Sprintf("%s?offset=%d", list, offset))
			sops = append(sops, uids(page, dcmjson.TagSOPInstanceUID)...)
			if len(page) < 5 {
				break
			}
		}
		sort.Strings(sops)
		if len(sops) != 17 || len(slices.Compact(slices.Clone(sops))) != 17 {
			t.Fatalf("paging found %d instances (%d distinct); want XE5's 17, each once", len(sops), len(slices.Compact(slices.Clone(sops))))
		}
	})
	t.Run("uncapped by default", func(t *testing.T) {
		_, full, err := CopiesTrusts(CopiesOptions{})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(full.Handler())
		t.Cleanup(srv.Close)
		if got := len(getJSON(t, srv.URL+"/dicom-web/studies/"+CopiesStudyUID+"/instances")); got != 17 {
			t.Fatalf("%d results, want all 17", got)
		}
	})
}

func TestSynthesizeHeldInstances(t *testing.T) {
	spec := StudySpec{UID: "1.2.3", Patient: Patient{NHSNumber: CopiesPatientNHSNumber}, Series: []SeriesSpec{
		{Number: 1, Modality: "CT", Instances: 4, Rows: 8, Columns: 8, Held: []int{2, 4}},
	}}
	all := spec
	all.Series = []SeriesSpec{spec.Series[0]}
	all.Series[0].Held = nil
	some, err := Synthesize(1, spec, PatientIDScheme{})
	if err != nil {
		t.Fatal(err)
	}
	every, err := Synthesize(1, all, PatientIDScheme{})
	if err != nil {
		t.Fatal(err)
	}
	if len(some) != 2 || some[0].SOPInstanceUID != "1.2.3.1.2" || some[1].SOPInstanceUID != "1.2.3.1.4" {
		t.Fatalf("held %v; want instances 2 and 4", []string{some[0].SOPInstanceUID, some[len(some)-1].SOPInstanceUID})
	}
	if !bytes.Equal(some[0].Bytes(), every[1].Bytes()) || !bytes.Equal(some[1].Bytes(), every[3].Bytes()) {
		t.Fatal("a held instance differs from the same instance of the whole series")
	}
	spec.Series[0].Held = []int{5}
	if _, err := Synthesize(1, spec, PatientIDScheme{}); err == nil {
		t.Fatal("an instance number beyond Instances was accepted")
	}
}

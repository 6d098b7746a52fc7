package dicomweb

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/upstream"
)

func study(uid, date, patient string, series, instances int64, mods ...string) dcmjson.Dataset {
	ds := dcmjson.Dataset{}
	ds.SetStrings(dcmjson.TagStudyInstanceUID, "UI", uid)
	ds.SetStrings(dcmjson.TagStudyDate, "DA", date)
	ds.SetStrings(dcmjson.TagPatientID, "LO", patient)
	ds.SetInt(dcmjson.TagNumberOfStudyRelatedSeries, "IS", series)
	ds.SetInt(dcmjson.TagNumberOfStudyRelatedInstances, "IS", instances)
	ds.SetStrings(dcmjson.TagModalitiesInStudy, "CS", mods...)
	return ds
}

func src(id string, prio int) *upstream.Source {
	return &upstream.Source{SourceConfig: upstream.SourceConfig{ID: id, Name: id + " Trust", Priority: prio}}
}

func TestMergeAnswers(t *testing.T) {
	a, b := src("A", 1), src("B", 2)
	// C (preferred) and D (last) give no counts for the shared study: unknown, which must
	// neither hide nor lower B's.
	c, d := src("C", 0), src("D", 3)
	countless := study("1.1", "20240101", "9434765919", 0, 0)
	delete(countless, dcmjson.TagNumberOfStudyRelatedSeries)
	countless[dcmjson.TagNumberOfStudyRelatedInstances] = &dcmjson.Element{VR: "IS"}
	answers := []sourceAnswer{
		{source: c, results: []dcmjson.Dataset{countless}},
		{source: a, results: []dcmjson.Dataset{study("1.1", "20240101", "9434765919", 2, 10, "CT"), study("1.2", "20230101", "9434765919", 1, 1, "CR")}},
		{source: b, results: []dcmjson.Dataset{study("1.1", "20240101", "9434765919", 3, 12, "CT", "SR"), study("1.3", "20250101", "9434765919", 1, 5, "MR")}},
		{source: d, results: []dcmjson.Dataset{countless.Clone()}},
	}
	got := mergeAnswers(StudyLevel, answers)
	sortResults(got)
	var order []string
	for _, m := range got {
		order = append(order, m.ds.String(dcmjson.TagStudyInstanceUID))
	}
	if want := []string{"1.3", "1.1", "1.2"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("order = %v, want %v (StudyDate descending)", order, want)
	}
	shared := got[1]
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"holders of the shared study, preferred first", shared.holders, []string{"C", "A", "B", "D"}},
		{"series count is a lower bound: the largest copy's, whatever omits it", mustInt(shared.ds, dcmjson.TagNumberOfStudyRelatedSeries), int64(3)},
		{"instance count is a lower bound: the largest copy's, whatever omits it", mustInt(shared.ds, dcmjson.TagNumberOfStudyRelatedInstances), int64(12)},
		{"modalities are the union", shared.ds.Strings(dcmjson.TagModalitiesInStudy), []string{"CT", "SR"}},
		{"single holder", got[0].holders, []string{"B"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func mustInt(ds dcmjson.Dataset, tag string) int64 {
	n, _ := ds.Int(tag)
	return n
}

func TestSortIsStableAcrossInputOrder(t *testing.T) {
	mk := func() []*merged {
		return []*merged{
			{ds: study("1.5", "20240101", "x", 1, 1)},
			{ds: study("1.4", "20240101", "x", 1, 1)},
			{ds: study("1.6", "", "x", 1, 1)},
			{ds: study("1.7", "20250101", "x", 1, 1)},
		}
	}
	first := mk()
	sortResults(first)
	second := mk()
	for i, j := 0, len(second)-1; i < j; i, j = i+1, j-1 {
		second[i], second[j] = second[j], second[i]
	}
	sortResults(second)
	for i := range first {
		if first[i].ds.String(dcmjson.TagStudyInstanceUID) != second[i].ds.String(dcmjson.TagStudyInstanceUID) {
			t.Fatalf("order depends on input order at %d", i)
		}
	}
	if got := first[len(first)-1].ds.String(dcmjson.TagStudyInstanceUID); got != "1.6" {
		t.Fatalf("study without a date sorts at %q's place; want last", got)
	}
	if first[1].ds.String(dcmjson.TagStudyInstanceUID) != "1.4" {
		t.Fatal("same date must be ordered by UID")
	}
}

func TestPage(t *testing.T) {
	list := make([]*merged, 10)
	for i := range list {
		list[i] = &merged{}
	}
	tests := []struct {
		name                   string
		offset, limit          int
		wantLen, wantRemaining int
	}{
		{"no limit", 0, 0, 10, 0},
		{"first page", 0, 4, 4, 6},
		{"middle page", 4, 4, 4, 2},
		{"last page", 8, 4, 2, 0},
		{"past the end", 20, 4, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, rem := page(list, tc.offset, tc.limit)
			if len(got) != tc.wantLen || rem != tc.wantRemaining {
				t.Fatalf("got %d items, %d remaining; want %d, %d", len(got), rem, tc.wantLen, tc.wantRemaining)
			}
		})
	}
}

func TestFilterAnswerDropsOtherPatients(t *testing.T) {
	s := &Search{Level: StudyLevel, PatientID: "9434765919"}
	in := []dcmjson.Dataset{
		study("1.1", "20240101", "9434765919", 1, 1),
		study("1.2", "20240101", "9449306052", 1, 1), // a PACS that ignored the patient key
		study("bad uid", "20240101", "9434765919", 1, 1),
	}
	kept, dropped := filterAnswer(s, src("A", 1), in)
	if len(kept) != 1 || dropped != 2 || kept[0].String(dcmjson.TagStudyInstanceUID) != "1.1" {
		t.Fatalf("kept %d (dropped %d); want only study 1.1", len(kept), dropped)
	}
}

func TestNormaliseOtherPatientIDsSequence(t *testing.T) {
	c := &upstream.Source{SourceConfig: upstream.SourceConfig{ID: "C", PatientID: upstream.InOtherPatientIDsSequence, PatientIDIssuer: "NHS"}}
	ds := study("1.1", "20240101", "MRN123", 1, 1)
	other := dcmjson.Dataset{}
	other.SetStrings(dcmjson.TagPatientID, "LO", "9434765919")
	other.SetStrings(dcmjson.TagIssuerOfPatientID, "LO", "NHS")
	local := dcmjson.Dataset{}
	local.SetStrings(dcmjson.TagPatientID, "LO", "MRN123")
	local.SetStrings(dcmjson.TagIssuerOfPatientID, "LO", "LOCAL")
	ds.SetItems(dcmjson.TagOtherPatientIDsSequence, local, other)
	// Round-trip through JSON as an upstream answer would arrive.
	raw, _ := json.Marshal([]dcmjson.Dataset{ds})
	list, err := dcmjson.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	s := &Search{Level: StudyLevel, PatientID: "9434765919"}
	kept, _ := filterAnswer(s, c, list)
	if len(kept) != 1 {
		t.Fatalf("kept %d results; the NHS number in OtherPatientIDsSequence must match", len(kept))
	}
	normalise(kept[0], c, "2.16.840.1.113883.2.1.4.1")
	if got := kept[0].String(dcmjson.TagPatientID); got != "9434765919" {
		t.Fatalf("PatientID = %q after normalising; want the NHS number", got)
	}
	if got := kept[0].String(dcmjson.TagIssuerOfPatientID); got != "2.16.840.1.113883.2.1.4.1" {
		t.Fatalf("IssuerOfPatientID = %q", got)
	}
}

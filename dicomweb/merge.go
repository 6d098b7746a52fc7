package dicomweb

import (
	"slices"
	"sort"
	"strings"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/upstream"
)

// sourceAnswer is what one source answered to a search, already filtered and normalised.
type sourceAnswer struct {
	source  *upstream.Source
	results []dcmjson.Dataset
}

// filterAnswer drops results that do not match what the proxy must guarantee, whatever the
// source did with the query: the patient (a PACS that ignores an unknown key would otherwise
// return other patients' studies), the UIDs named in the path or as matching keys, and results
// without a usable UID. It returns how many were dropped, for the log.
func filterAnswer(s *Search, src *upstream.Source, in []dcmjson.Dataset) ([]dcmjson.Dataset, int) {
	uidSets := map[string]map[string]bool{}
	for _, m := range s.Matches {
		if len(m.Path) == 1 && m.VR == "UI" && m.Value != "" {
			set := map[string]bool{}
			for _, u := range splitList(m.Value) {
				set[u] = true
			}
			uidSets[m.Path[0]] = set
		}
	}
	if s.StudyUID != "" {
		uidSets[dcmjson.TagStudyInstanceUID] = map[string]bool{s.StudyUID: true}
	}
	if s.SeriesUID != "" {
		uidSets[dcmjson.TagSeriesInstanceUID] = map[string]bool{s.SeriesUID: true}
	}
	// A single accession number asked for is checked as UIDs are: a PACS that ignores the key
	// would otherwise answer with every study it holds.
	accession := ""
	if v, ok := s.matchValue(dcmjson.TagAccessionNumber); ok && singleValue(v) {
		accession = strings.TrimSpace(v)
	}
	out := in[:0]
	dropped := 0
	for _, ds := range in {
		if got := ds.String(dcmjson.TagAccessionNumber); accession != "" && got != "" && strings.TrimSpace(got) != accession {
			dropped++
			continue
		}
		if !validUID(ds.String(s.Level.uidTag())) {
			dropped++
			continue
		}
		if s.PatientID != "" && src.NHSNumberOf(ds) != s.PatientID {
			dropped++
			continue
		}
		ok := true
		for tag, set := range uidSets {
			if v := ds.String(tag); v != "" && !set[v] {
				ok = false
				break
			}
			// An answer lacking a UID the level must carry cannot be checked; the level's
			// own UID is always present (checked above).
		}
		if !ok {
			dropped++
			continue
		}
		out = append(out, ds)
	}
	return out, dropped
}

// normalise rewrites the patient identity of a result to the national form: PatientID is the
// NHS number and IssuerOfPatientID the configured issuer, whichever attribute the trust's PACS
// keeps it in. Results without an NHS number are left as the trust sent them.
func normalise(ds dcmjson.Dataset, src *upstream.Source, issuer string) {
	nhs := src.NHSNumberOf(ds)
	if nhs == "" {
		return
	}
	if _, err := NormaliseNHSNumber(nhs); err != nil {
		return
	}
	ds.SetStrings(dcmjson.TagPatientID, "LO", nhs)
	if issuer != "" {
		ds.SetStrings(dcmjson.TagIssuerOfPatientID, "LO", issuer)
	}
}

// merged is one result after de-duplication, with the sources that hold it and the patients
// (NHS numbers) their copies name: more than one is a wrong-patient hazard (patientOf).
type merged struct {
	ds       dcmjson.Dataset
	holders  []string
	patients []string
	key      sortKey
}

// sortKey holds the attributes results are ordered by, read once per result rather than on
// every comparison.
type sortKey struct {
	studyDate, studyTime, study, series, sop string
	seriesNumber, instanceNumber             int64
	hasSeriesNumber, hasInstanceNumber       bool
}

func keyOf(ds dcmjson.Dataset) sortKey {
	k := sortKey{
		studyDate: ds.String(dcmjson.TagStudyDate),
		studyTime: ds.String(dcmjson.TagStudyTime),
		study:     ds.String(dcmjson.TagStudyInstanceUID),
		series:    ds.String(dcmjson.TagSeriesInstanceUID),
		sop:       ds.String(dcmjson.TagSOPInstanceUID),
	}
	k.seriesNumber, k.hasSeriesNumber = ds.Int(dcmjson.TagSeriesNumber)
	k.instanceNumber, k.hasInstanceNumber = ds.Int(dcmjson.TagInstanceNumber)
	return k
}

// mergeAnswers combines the sources' answers into one entry per UID. answers must be in
// priority order: the preferred holder's attributes win, others fill gaps; ModalitiesInStudy
// is the union of the answers'. The counts (NumberOfStudyRelatedSeries,
// NumberOfStudyRelatedInstances, NumberOfSeriesRelatedInstances) of a result held by several
// trusts are only a lower bound here, the largest any copy gave; a copy that omits a count
// leaves it unknown, never 0 and never lower. The search handler's unionCounts makes them the
// union of the copies for the page it returns. Each entry keeps the NHS numbers its copies
// name, whichever copy's PatientID the entry shows.
func mergeAnswers(level Level, answers []sourceAnswer) []*merged {
	byUID := map[string]*merged{}
	var order []*merged
	uidTag := level.uidTag()
	for _, a := range answers {
		for _, ds := range a.results {
			uid := ds.String(uidTag)
			m, ok := byUID[uid]
			if !ok {
				m = &merged{ds: ds.Clone()}
				byUID[uid] = m
				order = append(order, m)
			} else {
				mergeInto(m.ds, ds)
			}
			if !slices.Contains(m.holders, a.source.ID) {
				m.holders = append(m.holders, a.source.ID)
			}
			m.patients = addPatient(m.patients, ds)
		}
	}
	return order
}

var countTags = []string{dcmjson.TagNumberOfStudyRelatedSeries, dcmjson.TagNumberOfStudyRelatedInstances, dcmjson.TagNumberOfSeriesRelatedInstances}

func mergeInto(dst, src dcmjson.Dataset) {
	for tag, el := range src {
		if _, ok := dst[tag]; !ok {
			dst[tag] = el
		}
	}
	for _, tag := range countTags {
		a, aok := dst.Int(tag)
		b, bok := src.Int(tag)
		if bok && (!aok || b > a) {
			dst.SetInt(tag, "IS", b)
		}
	}
	if _, ok := src[dcmjson.TagModalitiesInStudy]; ok {
		mods := append(dst.Strings(dcmjson.TagModalitiesInStudy), src.Strings(dcmjson.TagModalitiesInStudy)...)
		sort.Strings(mods)
		mods = dedupe(mods)
		dst.SetStrings(dcmjson.TagModalitiesInStudy, "CS", mods...)
	}
}

// sortResults puts results in the proxy's stable order: StudyDate and StudyTime descending,
// then study UID, series number, series UID, instance number and SOP instance UID ascending.
// The order depends only on the data, so paging with limit and offset is repeatable.
func sortResults(list []*merged) {
	for _, m := range list {
		m.key = keyOf(m.ds)
	}
	sort.SliceStable(list, func(i, j int) bool { return lessKey(&list[i].key, &list[j].key) })
}

func lessKey(a, b *sortKey) bool {
	if a.studyDate != b.studyDate {
		return a.studyDate > b.studyDate
	}
	if a.studyTime != b.studyTime {
		return a.studyTime > b.studyTime
	}
	if a.study != b.study {
		return a.study < b.study
	}
	if c := compareInts(a.seriesNumber, a.hasSeriesNumber, b.seriesNumber, b.hasSeriesNumber); c != 0 {
		return c < 0
	}
	if a.series != b.series {
		return a.series < b.series
	}
	if c := compareInts(a.instanceNumber, a.hasInstanceNumber, b.instanceNumber, b.hasInstanceNumber); c != 0 {
		return c < 0
	}
	return a.sop < b.sop
}

// compareNumber orders by an integer attribute, absent values last.
func compareNumber(a, b dcmjson.Dataset, tag string) int {
	x, xok := a.Int(tag)
	y, yok := b.Int(tag)
	return compareInts(x, xok, y, yok)
}

func compareInts(x int64, xok bool, y int64, yok bool) int {
	switch {
	case xok && yok:
		if x < y {
			return -1
		} else if x > y {
			return 1
		}
		return 0
	case xok:
		return -1
	case yok:
		return 1
	}
	return 0
}

// page applies offset and limit (0 = none) and reports how many results remain after the page.
func page(list []*merged, offset, limit int) ([]*merged, int) {
	if offset >= len(list) {
		return nil, 0
	}
	list = list[offset:]
	if limit > 0 && limit < len(list) {
		return list[:limit], len(list) - limit
	}
	return list, 0
}

// resourcePath is the WADO-RS path of a result at its level, relative to the DICOMweb root.
func resourcePath(level Level, ds dcmjson.Dataset, s *Search) string {
	study := ds.String(dcmjson.TagStudyInstanceUID)
	if study == "" {
		study = s.StudyUID
	}
	series := ds.String(dcmjson.TagSeriesInstanceUID)
	if series == "" {
		series = s.SeriesUID
	}
	switch level {
	case StudyLevel:
		return "studies/" + study
	case SeriesLevel:
		if !validUID(study) {
			return ""
		}
		return "studies/" + study + "/series/" + series
	default:
		if !validUID(study) || !validUID(series) {
			return ""
		}
		return "studies/" + study + "/series/" + series + "/instances/" + ds.String(dcmjson.TagSOPInstanceUID)
	}
}

// finish sets what the proxy says about each merged result: its holders in RetrieveAETitle
// and its RetrieveURL at the proxy. Upstream URLs were rewritten per source before merging.
func finish(level Level, m *merged, s *Search, rw *rewriter) {
	m.ds.SetStrings(dcmjson.TagRetrieveAETitle, "AE", m.holders...)
	if p := resourcePath(level, m.ds, s); p != "" {
		m.ds.SetStrings(dcmjson.TagRetrieveURL, "UR", rw.base+"/"+p)
	} else {
		delete(m.ds, dcmjson.TagRetrieveURL)
	}
}

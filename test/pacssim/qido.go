package pacssim

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// level is a level of the DICOM information model: what a search returns one entry per.
type level int

const (
	levelStudy level = iota
	levelSeries
	levelInstance
)

// query is a parsed QIDO-RS request (PS3.18 §8.3.4).
type query struct {
	filters []filter
	include []string // tags named by includefield
	all     bool     // includefield=all
	limit   int      // 0: no limit
	offset  int
	fuzzy   bool
}

// filter is one matching key with its value.
type filter struct {
	path  []string // tags, outermost first; more than one for an attribute inside a sequence
	vr    string   // the dictionary VR of the innermost attribute
	value string
}

// search answers a QIDO-RS search for entries of level lv. The resource's path decides
// which levels' default attributes are returned: /series returns study attributes too,
// /studies/{S}/series does not.
func (t *Trust) search(lv level) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !acceptsDICOMJSON(r) {
			writeError(w, r, http.StatusNotAcceptable, "searches are answered in application/dicom+json only")
			return
		}
		q, err := parseQuery(r.URL.Query())
		if err != nil {
			writeError(w, r, http.StatusBadRequest, "%v", err)
			return
		}
		from := levelStudy
		for _, scope := range []struct{ name, tag string }{{"study", dcmjson.TagStudyInstanceUID}, {"series", dcmjson.TagSeriesInstanceUID}} {
			uid := r.PathValue(scope.name)
			if uid == "" {
				continue
			}
			if !validUID(uid) {
				writeError(w, r, http.StatusBadRequest, "%s UID %q is not a valid UID", scope.name, uid)
				return
			}
			q.filters = append(q.filters, filter{path: []string{scope.tag}, vr: "UI", value: uid})
			from++
		}

		if c := t.opts.SearchCap; c > 0 && (q.limit == 0 || q.limit > c) {
			q.limit = c
		}
		base := baseURL(r)
		out := []dcmjson.Dataset{}
		skipped := 0
		for _, entry := range t.entries(lv) {
			rep := firstMatch(entry, q.filters)
			if rep == nil {
				continue
			}
			if skipped < q.offset {
				skipped++
				continue
			}
			out = append(out, q.answer(lv, from, rep, base))
			if q.limit > 0 && len(out) == q.limit {
				break
			}
		}
		if q.fuzzy {
			w.Header().Set("Warning", fmt.Sprintf(`299 %s "The fuzzymatching parameter is not supported. Only literal matching has been performed."`, r.Host))
		}
		writeJSON(w, out)
	}
}

// entries returns the trust's instances grouped one group per entry of level lv.
func (t *Trust) entries(lv level) [][]*held {
	var out [][]*held
	for _, st := range t.studies {
		switch lv {
		case levelStudy:
			out = append(out, st.instances)
		case levelSeries:
			for _, se := range st.series {
				out = append(out, se.instances)
			}
		default:
			for _, h := range st.instances {
				out = append(out, []*held{h})
			}
		}
	}
	return out
}

// firstMatch returns the first instance of an entry whose record matches every filter, or
// nil. An entry matches when one of its instances does, so a study can be found by a
// series or instance attribute (Modality=CT, SOPInstanceUID=...).
func firstMatch(entry []*held, filters []filter) *held {
	for _, h := range entry {
		if matches(h.record, filters) {
			return h
		}
	}
	return nil
}

// answer builds one search result: the default attributes of the levels from..lv, those
// named by includefield or used as keys, and RetrieveURL.
func (q *query) answer(lv, from level, rep *held, base string) dcmjson.Dataset {
	want := map[string]bool{dcmjson.TagStudyInstanceUID: true}
	if lv >= levelSeries {
		want[dcmjson.TagSeriesInstanceUID] = true
	}
	for l := from; l <= lv; l++ {
		for _, tag := range defaultReturnTags(l) {
			want[tag] = true
		}
	}
	for _, tag := range q.include {
		want[tag] = true
	}
	for _, f := range q.filters {
		want[f.path[0]] = true
	}
	if q.all {
		for tag := range rep.record {
			want[tag] = true
		}
	}

	out := dcmjson.Dataset{}
	for tag := range want {
		if attributeLevel(tag) > lv {
			continue
		}
		if tag == dcmjson.TagRetrieveURL {
			out.SetStrings(tag, "UR", retrieveURL(lv, rep, base))
			continue
		}
		if el, ok := rep.record[tag]; ok {
			out[tag] = el
		}
	}
	return out
}

func retrieveURL(lv level, h *held, base string) string {
	switch lv {
	case levelStudy:
		return base + "/studies/" + h.StudyUID
	case levelSeries:
		return base + "/studies/" + h.StudyUID + "/series/" + h.SeriesUID
	}
	return h.URL(base)
}

// defaultReturnTags lists the attributes PS3.18 Table 6.7.1-2 says a search returns at
// each level without includefield.
func defaultReturnTags(lv level) []string {
	switch lv {
	case levelStudy:
		return []string{
			dcmjson.TagSpecificCharacterSet, dcmjson.TagStudyDate, dcmjson.TagStudyTime,
			dcmjson.TagAccessionNumber, dcmjson.TagInstanceAvailability, dcmjson.TagModalitiesInStudy,
			dcmjson.TagReferringPhysicianName, tagTimezoneOffsetFromUTC, dcmjson.TagRetrieveURL,
			dcmjson.TagPatientName, dcmjson.TagPatientID, dcmjson.TagPatientBirthDate, dcmjson.TagPatientSex,
			dcmjson.TagStudyInstanceUID, dcmjson.TagStudyID,
			dcmjson.TagNumberOfStudyRelatedSeries, dcmjson.TagNumberOfStudyRelatedInstances,
		}
	case levelSeries:
		return []string{
			dcmjson.TagSpecificCharacterSet, dcmjson.TagModality, tagTimezoneOffsetFromUTC,
			dcmjson.TagSeriesDescription, dcmjson.TagRetrieveURL, dcmjson.TagSeriesInstanceUID,
			dcmjson.TagSeriesNumber, dcmjson.TagNumberOfSeriesRelatedInstances,
			dcmjson.TagPerformedProcedureStepStartDate, tagPerformedProcedureStepStartTime,
			tagRequestAttributesSequence,
		}
	}
	return []string{
		dcmjson.TagSpecificCharacterSet, dcmjson.TagSOPClassUID, dcmjson.TagSOPInstanceUID,
		dcmjson.TagInstanceAvailability, tagTimezoneOffsetFromUTC, dcmjson.TagRetrieveURL,
		dcmjson.TagInstanceNumber, dcmjson.TagRows, dcmjson.TagColumns, tagBitsAllocated,
		dcmjson.TagNumberOfFrames,
	}
}

// Tags the search needs that dcmjson does not name.
const (
	tagTimezoneOffsetFromUTC           = "00080201"
	tagSeriesDate                      = "00080021"
	tagSeriesTime                      = "00080031"
	tagManufacturer                    = "00080070"
	tagInstitutionName                 = "00080080"
	tagBodyPartExamined                = "00180015"
	tagFrameOfReferenceUID             = "00200052"
	tagBitsAllocated                   = "00280100"
	tagPerformedProcedureStepStartTime = "00400245"
	tagRequestAttributesSequence       = "00400275"
)

// attributeLevel says at which level an attribute lives: patient and study attributes at
// the study level, a few at the series level, everything else at the instance level.
// Searches return attributes of their own level and above only.
func attributeLevel(tag string) level {
	switch tag {
	case dcmjson.TagSpecificCharacterSet, dcmjson.TagRetrieveURL, dcmjson.TagInstanceAvailability,
		tagTimezoneOffsetFromUTC, dcmjson.TagStudyDate, dcmjson.TagStudyTime, dcmjson.TagAccessionNumber,
		dcmjson.TagModalitiesInStudy, dcmjson.TagReferringPhysicianName, dcmjson.TagStudyDescription,
		dcmjson.TagPatientName, dcmjson.TagPatientID, dcmjson.TagIssuerOfPatientID, dcmjson.TagPatientBirthDate,
		dcmjson.TagPatientSex, dcmjson.TagOtherPatientIDsSequence, dcmjson.TagStudyInstanceUID, dcmjson.TagStudyID,
		dcmjson.TagNumberOfStudyRelatedSeries, dcmjson.TagNumberOfStudyRelatedInstances:
		return levelStudy
	case tagSeriesDate, tagSeriesTime, dcmjson.TagModality, tagManufacturer, tagInstitutionName,
		dcmjson.TagSeriesDescription, tagBodyPartExamined, dcmjson.TagSeriesInstanceUID, dcmjson.TagSeriesNumber,
		tagFrameOfReferenceUID, dcmjson.TagNumberOfSeriesRelatedInstances, dcmjson.TagPerformedProcedureStepStartDate,
		tagPerformedProcedureStepStartTime, tagRequestAttributesSequence:
		return levelSeries
	}
	return levelInstance
}

// parseQuery reads a search's query parameters. Keys that name no DICOM attribute are
// ignored, as Orthanc ignores them; malformed values of known keys are errors.
func parseQuery(v url.Values) (query, error) {
	var q query
	names := make([]string, 0, len(v))
	for name := range v {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		values := v[name]
		last := values[len(values)-1]
		switch name {
		case "limit", "offset":
			n, err := strconv.Atoi(last)
			if err != nil || n < 0 {
				return q, fmt.Errorf("%s=%q: want a whole number, 0 or more", name, last)
			}
			if name == "limit" {
				q.limit = n
			} else {
				q.offset = n
			}
		case "fuzzymatching":
			q.fuzzy = strings.EqualFold(last, "true")
		case "includefield":
			for _, val := range values {
				for _, field := range strings.Split(val, ",") {
					field = strings.TrimSpace(field)
					if field == "all" {
						q.all = true
						continue
					}
					first, _, _ := strings.Cut(field, ".")
					if a, err := dcmjson.LookupAttribute(first); err == nil {
						q.include = append(q.include, a.Tag)
					}
				}
			}
		default:
			f, ok := parseKey(name)
			if !ok {
				continue
			}
			for _, val := range values {
				if err := checkValue(f.vr, val); err != nil {
					return q, fmt.Errorf("%s=%q: %w", name, val, err)
				}
				f.value = val
				q.filters = append(q.filters, f)
			}
		}
	}
	return q, nil
}

// parseKey resolves a matching key written as keywords or tags, with dots for attributes
// inside sequences ("OtherPatientIDsSequence.PatientID", "00101002.00100020").
func parseKey(name string) (filter, bool) {
	parts := strings.Split(name, ".")
	f := filter{path: make([]string, 0, len(parts))}
	for i, p := range parts {
		a, err := dcmjson.LookupAttribute(p)
		if err != nil || (i < len(parts)-1 && a.VR != "SQ") {
			return filter{}, false
		}
		f.path = append(f.path, a.Tag)
		f.vr = a.VR
	}
	return f, true
}

// checkValue rejects matching values that cannot mean anything for their VR.
func checkValue(vr, value string) error {
	if value == "" || value == "*" {
		return nil
	}
	switch vr {
	case "DA", "TM", "DT":
		lo, hi, isRange := strings.Cut(value, "-")
		if isRange && lo == "" && hi == "" {
			return fmt.Errorf("a range needs at least one end")
		}
		for _, side := range []string{lo, hi} {
			if side != "" && !validDateTime(vr, side) {
				return fmt.Errorf("%q is not a valid %s", side, vr)
			}
		}
	case "UI":
		for _, u := range splitList(value, true) {
			if !validUID(u) {
				return fmt.Errorf("%q is not a valid UID", u)
			}
		}
	case "IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "SV", "UV":
		for _, n := range splitList(value, false) {
			if _, err := strconv.ParseFloat(strings.TrimSpace(n), 64); err != nil {
				return fmt.Errorf("%q is not a number", n)
			}
		}
	}
	return nil
}

func validDateTime(vr, s string) bool {
	whole, frac, hasFrac := strings.Cut(s, ".")
	if !allDigits(whole) || (hasFrac && (!allDigits(frac) || len(frac) > 6)) {
		return false
	}
	switch vr {
	case "DA":
		return len(s) == 8
	case "TM":
		return len(whole) >= 2 && len(whole) <= 6 && len(whole)%2 == 0 && (!hasFrac || len(whole) == 6)
	}
	return len(whole) >= 4 && len(whole) <= 14 && (!hasFrac || len(whole) == 14)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// splitList splits a value list on backslashes, and on commas too where commas cannot be
// part of a value (UIDs, code strings).
func splitList(value string, commas bool) []string {
	return strings.FieldsFunc(value, func(r rune) bool { return r == '\\' || (commas && r == ',') })
}

// matches reports whether ds matches every filter. Filters inside one sequence must all
// match the same item.
func matches(ds dcmjson.Dataset, filters []filter) bool {
	nested := map[string][]filter{}
	for _, f := range filters {
		if len(f.path) > 1 {
			inner := f
			inner.path = f.path[1:]
			nested[f.path[0]] = append(nested[f.path[0]], inner)
			continue
		}
		if !matchElement(ds, f) {
			return false
		}
	}
	for seq, inner := range nested {
		if universal(inner) {
			continue
		}
		found := false
		for _, item := range ds.Items(seq) {
			if matches(item, inner) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func universal(filters []filter) bool {
	for _, f := range filters {
		if f.value != "" && f.value != "*" {
			return false
		}
	}
	return true
}

// matchElement applies one filter to one attribute: universal, single value, list,
// wildcard or range matching by VR (PS3.4 C.2.2.2). A multi-valued attribute matches when
// any of its values does.
func matchElement(ds dcmjson.Dataset, f filter) bool {
	if f.value == "" || f.value == "*" {
		return true
	}
	tag := f.path[0]
	el, ok := ds[tag]
	if !ok || el == nil {
		return false
	}
	if el.VR == "SQ" {
		return true // a sequence named without an attribute inside it: nothing to compare
	}
	for _, v := range ds.Strings(tag) {
		if matchValue(f.vr, f.value, v) {
			return true
		}
	}
	return false
}

func matchValue(vr, pattern, value string) bool {
	switch vr {
	case "DA", "TM", "DT":
		return matchDateTime(vr, pattern, value)
	case "UI":
		for _, u := range splitList(pattern, true) {
			if u == value {
				return true
			}
		}
		return false
	case "IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "SV", "UV":
		got, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return false
		}
		for _, n := range splitList(pattern, false) {
			if want, err := strconv.ParseFloat(strings.TrimSpace(n), 64); err == nil && want == got {
				return true
			}
		}
		return false
	case "PN":
		// Person names match case-insensitively, as Orthanc and most archives do.
		return glob(strings.ToUpper(pattern), strings.ToUpper(value))
	}
	for _, p := range splitList(pattern, vr == "CS") {
		if glob(p, value) {
			return true
		}
	}
	return false
}

// matchDateTime does single value and range matching of dates and times. Missing
// trailing components of a range's upper end mean "the end of that period": 2020-2021
// for DT includes the whole of 2021, -1030 for TM includes 10:30:59.
func matchDateTime(vr, pattern, value string) bool {
	if value == "" {
		return false
	}
	var lowT, highT string
	switch vr {
	case "DA":
		lowT, highT = "00000101", "99991231"
	case "TM":
		lowT, highT = "000000", "235959"
	default:
		lowT, highT = "00000101000000", "99991231235959"
	}
	v := canonical(value, lowT, '0')
	lo, hi, isRange := strings.Cut(pattern, "-")
	if !isRange {
		return canonical(pattern, lowT, '0') == v
	}
	if lo != "" && v < canonical(lo, lowT, '0') {
		return false
	}
	if hi != "" && v > canonical(hi, highT, '9') {
		return false
	}
	return true
}

// canonical pads a DA, TM or DT value to its full length from template, with a
// six-digit fraction padded with pad, so values compare as strings.
func canonical(s, template string, pad byte) string {
	whole, frac, _ := strings.Cut(strings.TrimSpace(s), ".")
	if len(whole) < len(template) {
		whole += template[len(whole):]
	}
	if len(frac) > 6 {
		frac = frac[:6]
	}
	return whole + "." + frac + strings.Repeat(string(pad), 6-len(frac))
}

// glob matches s against a pattern where * is any run of characters and ? any one.
func glob(pattern, s string) bool {
	star, starAt := -1, 0
	p, i := 0, 0
	for i < len(s) {
		if p < len(pattern) {
			pc, pw := utf8.DecodeRuneInString(pattern[p:])
			sc, sw := utf8.DecodeRuneInString(s[i:])
			switch {
			case pc == '*':
				star, starAt = p, i
				p += pw
				continue
			case pc == '?' || pc == sc:
				p += pw
				i += sw
				continue
			}
		}
		if star < 0 {
			return false
		}
		// Let the last star swallow one more character and try again.
		_, sw := utf8.DecodeRuneInString(s[starAt:])
		starAt += sw
		p, i = star+1, starAt
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

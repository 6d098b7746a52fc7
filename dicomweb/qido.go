package dicomweb

import (
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/upstream"
)

// Level is the level of a QIDO-RS search or a WADO-RS resource.
type Level int

// The three query/retrieve levels.
const (
	StudyLevel Level = iota
	SeriesLevel
	InstanceLevel
)

func (l Level) String() string {
	return [...]string{"study", "series", "instance"}[l]
}

// uidTag is the attribute whose value identifies one result at this level.
func (l Level) uidTag() string {
	return [...]string{dcmjson.TagStudyInstanceUID, dcmjson.TagSeriesInstanceUID, dcmjson.TagSOPInstanceUID}[l]
}

// maxQueryValue bounds one matching value; longer values are refused before any upstream sees them.
const maxQueryValue = 1024

// Match is one attribute matching key of a search: an attribute path (one tag, or a sequence
// tag and an item tag) and the value as the client sent it.
type Match struct {
	Path  []string // tags, e.g. ["00100020"] or ["00101002", "00100020"]
	VR    string   // VR of the last element of the path
	Value string
	name  string // the key as the client wrote it, for error messages
}

func (m Match) key() string { return strings.Join(m.Path, ".") }

// Search is a parsed, validated QIDO-RS request.
type Search struct {
	Level     Level
	StudyUID  string // from the path of nested resources
	SeriesUID string
	Matches   []Match
	// PatientID is the NHS number the search is scoped to, normalised; "" when none.
	PatientID     string
	IncludeFields []string // tags
	IncludeAll    bool
	Fuzzy         bool
	Limit         int // 0 = no limit
	Offset        int
	// LimitClamped records that the client asked for more than the deployment allows.
	LimitClamped bool
}

// SearchLimits are the deployment's paging bounds and the caps on a search's query. A query
// beyond a cap is refused whole (400 naming the cap), never cut down to it.
type SearchLimits struct {
	MaxResultsPerSource int
	DefaultLimit        int
	MaxLimit            int
	// MaxQueryLength bounds the raw query string of every data request, in bytes.
	MaxQueryLength int
	// MaxMatchingKeys bounds the attribute matching keys of one search.
	MaxMatchingKeys int
	// MaxIncludeFields bounds the attributes named by includefield in one search, over every
	// includefield parameter and comma list (an includefield parameter naming none counts
	// one).
	MaxIncludeFields int
	// MaxValuesPerKey bounds the values in one matching key's list (a\b\c; UIDs also a,b,c).
	MaxValuesPerKey int
}

// parseSearchQuery parses a QIDO-RS request from its raw query string: parseRawQuery, then
// parseSearch. This is what the search routes call, so that no parameter is dropped on the way.
func parseSearchQuery(level Level, studyUID, seriesUID, rawQuery string, lim SearchLimits) (*Search, error) {
	q, err := parseRawQuery(rawQuery, lim.MaxQueryLength)
	if err != nil {
		return nil, err
	}
	return parseSearch(level, studyUID, seriesUID, q, lim)
}

// parseSearch validates a QIDO-RS request: path UIDs, every query key and value, paging and
// the patient scope. Nothing reaches an upstream until this succeeds.
func parseSearch(level Level, studyUID, seriesUID string, q url.Values, lim SearchLimits) (*Search, error) {
	p := &searchParser{s: &Search{Level: level, StudyUID: studyUID, SeriesUID: seriesUID}, lim: lim, seen: map[string]bool{}, params: map[string]bool{}}
	if studyUID != "" {
		if err := checkUID("study UID", studyUID); err != nil {
			return nil, err
		}
	}
	if seriesUID != "" {
		if err := checkUID("series UID", seriesUID); err != nil {
			return nil, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if err := p.param(k, q[k]); err != nil {
			return nil, err
		}
	}
	s := p.s
	if s.Limit == 0 {
		s.Limit = p.lim.DefaultLimit
	}
	if p.lim.MaxLimit > 0 && (s.Limit == 0 || s.Limit > p.lim.MaxLimit) {
		s.LimitClamped = s.Limit > p.lim.MaxLimit
		s.Limit = p.lim.MaxLimit
	}
	if err := s.checkScope(); err != nil {
		return nil, err
	}
	// After the scope: a key that would widen the search is refused for that first.
	for _, m := range s.Matches {
		if err := checkMatchValue(m.name, m.VR, m.Value, p.lim.MaxValuesPerKey); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// searchParser is parseSearch's state while it reads the query's parameters.
type searchParser struct {
	s   *Search
	lim SearchLimits
	// seen are the matching keys met so far, by attribute path; params the search's own
	// parameters met so far, in lower case.
	seen, params       map[string]bool
	includes, matching int
}

// param reads one query parameter k, given the values vals.
func (p *searchParser) param(k string, vals []string) error {
	lower := strings.ToLower(k)
	if reservedParams[lower] {
		if p.params[lower] {
			return badRequest("%s may be given only once", lower)
		}
		p.params[lower] = true
	}
	switch lower {
	case "limit", "offset":
		return p.paging(k, lower, vals)
	case "fuzzymatching":
		if len(vals) != 1 || !(vals[0] == "true" || vals[0] == "false") {
			return badRequest("fuzzymatching must be true or false")
		}
		p.s.Fuzzy = vals[0] == "true"
	case "includefield":
		return p.includefield(vals)
	case "accept", "charset":
		// Content negotiation, handled by the route.
	case "partial":
		if len(vals) != 1 || !(vals[0] == "warn" || vals[0] == "fail") {
			return badRequest("partial must be warn (answer with what the trusts that answered hold, naming the others) or fail (refuse unless every trust answers)")
		}
	default:
		return p.matchingKey(k, vals)
	}
	return nil
}

// paging reads limit or offset: digits only (strconv.Atoi would also take a sign, "+5").
func (p *searchParser) paging(k, lower string, vals []string) error {
	if len(vals) != 1 {
		return badRequest("%s may be given only once", k)
	}
	n, err := strconv.Atoi(vals[0])
	if err != nil || n < 0 || !allDigits(vals[0]) {
		return badRequest("%s %q must be a non-negative integer", k, vals[0])
	}
	if lower == "limit" {
		p.s.Limit = n
	} else {
		p.s.Offset = n
	}
	return nil
}

// includefield reads the includefield parameters, at most lim.MaxIncludeFields attributes.
func (p *searchParser) includefield(vals []string) error {
	for _, v := range vals {
		fields := strings.Split(v, ",")
		p.includes += len(fields)
		if p.includes > p.lim.MaxIncludeFields {
			return badRequest("includefield names more than %d attributes; at most %d are accepted in one search (search.maxIncludeFields); ask for all with includefield=all", p.lim.MaxIncludeFields, p.lim.MaxIncludeFields)
		}
		if err := p.s.addIncludes(fields); err != nil {
			return err
		}
	}
	return nil
}

// matchingKey reads a matching key: an attribute by keyword or tag (path), given once, at most
// lim.MaxMatchingKeys of them.
func (p *searchParser) matchingKey(k string, vals []string) error {
	if len(vals) != 1 {
		return badRequest("matching key %q may be given only once; list several values as a,b or a\\b", k)
	}
	// Counted before the key is looked up, so a flood of keys costs no dictionary scans.
	p.matching++
	if p.matching > p.lim.MaxMatchingKeys {
		return badRequest("the search has more than %d matching keys; at most %d are accepted (search.maxMatchingKeys)", p.lim.MaxMatchingKeys, p.lim.MaxMatchingKeys)
	}
	path, vr, err := resolvePath(k)
	if err != nil {
		return badRequest("query key %q: %v", shorten(k), err)
	}
	if err := checkSearchable("a matching key", path); err != nil {
		return err
	}
	m := Match{Path: path, VR: vr, Value: vals[0], name: k}
	if p.seen[m.key()] {
		return badRequest("matching key %q is given twice (by keyword and by tag)", k)
	}
	p.seen[m.key()] = true
	return p.s.addMatch(k, m)
}

// reservedParams are the query parameters of QIDO-RS itself (PS3.18 §8.3.4 and §8.3.3.1),
// matched in any case; each may be given once (includefield excepted).
var reservedParams = map[string]bool{"limit": true, "offset": true, "fuzzymatching": true, "accept": true, "charset": true, "partial": true}

// addIncludes records the attributes of one includefield parameter's comma list.
func (s *Search) addIncludes(fields []string) error {
	for _, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "all" {
			s.IncludeAll = true
			continue
		}
		path, _, err := resolvePath(f)
		if err != nil {
			return badRequest("includefield %q: %v", shorten(f), err)
		}
		// Private attributes are refused here too, though asking for one widens nothing:
		// their meaning differs from trust to trust, so the merged answer could not say what
		// it holds, and refusing keeps every attribute the proxy sends upstream one it knows.
		if err := checkSearchable("includefield", path); err != nil {
			return err
		}
		s.IncludeFields = append(s.IncludeFields, strings.Join(path, "."))
	}
	return nil
}

// checkSearchable refuses a private attribute (odd group, PS3.5 §7.8) anywhere in a path, and
// attributes that are not part of a study's data set: command (0000), file meta (0002) and
// directory (0004) elements and group lengths (gggg,0000).
func checkSearchable(what string, path []string) error {
	for _, tag := range path {
		group, elem := tag[:4], tag[4:]
		switch {
		case isPrivateTag(tag):
			return badRequest("%s names the private attribute (%s,%s); private attributes (odd groups) are not accepted", what, group, elem)
		case group == "0000" || group == "0002" || group == "0004" || elem == "0000":
			return badRequest("%s names (%s,%s), which is not an attribute of a study, series or instance", what, group, elem)
		}
	}
	return nil
}

// isPrivateTag reports whether a tag of eight hex digits is in an odd group.
func isPrivateTag(tag string) bool {
	n, err := strconv.ParseUint(tag[:4], 16, 16)
	return err == nil && n%2 == 1
}

// resolvePath turns "PatientID", "00100020" or "OtherPatientIDsSequence.PatientID" into tags.
func resolvePath(key string) ([]string, string, error) {
	parts := strings.Split(key, ".")
	if len(parts) > 2 {
		return nil, "", errString("attribute paths deeper than one sequence are not supported")
	}
	path := make([]string, 0, len(parts))
	vr := ""
	for i, p := range parts {
		a, err := dcmjson.LookupAttribute(p)
		if err != nil {
			return nil, "", err
		}
		if i < len(parts)-1 && a.VR != "SQ" {
			return nil, "", errString(p + " is not a sequence")
		}
		path = append(path, a.Tag)
		vr = a.VR
	}
	return path, vr, nil
}

type errString string

func (e errString) Error() string { return string(e) }

// addMatch validates one matching key and records it.
func (s *Search) addMatch(key string, m Match) error {
	v := m.Value
	if len(v) > maxQueryValue {
		return badRequest("the value of %q is longer than %d characters", key, maxQueryValue)
	}
	if strings.ContainsAny(v, "\x00\r\n") {
		return badRequest("the value of %q contains control characters", key)
	}
	last := m.Path[len(m.Path)-1]
	if len(m.Path) > 1 && (m.Path[0] == dcmjson.TagOtherPatientIDsSequence) {
		return badRequest("search for a patient by PatientID with the NHS number; %q is not accepted", key)
	}
	switch {
	case last == dcmjson.TagPatientID && len(m.Path) == 1:
		nhs, err := NormaliseNHSNumber(v)
		if err != nil {
			return badRequest("PatientID must be a valid NHS number: %v", err)
		}
		s.PatientID = nhs
		m.Value = nhs
	case last == dcmjson.TagIssuerOfPatientID && len(m.Path) == 1:
		// Answers are normalised to the NHS number's issuer; a client naming it changes
		// nothing, but what it names must still be an issuer.
		return checkMatchValue(key, m.VR, v, 0)
	case m.VR == "UI":
		if v != "" {
			for _, uid := range splitList(v) {
				if err := checkUID(key, uid); err != nil {
					return err
				}
			}
		}
	case m.VR == "DA" || m.VR == "TM" || m.VR == "DT":
		if err := checkDateRange(m.VR, v); err != nil {
			return badRequest("%s %q: %v", key, v, err)
		}
	case m.VR == "SQ":
		return badRequest("%q is a sequence; match on an attribute inside it, like %s.00100020", key, key)
	}
	if len(m.Path) == 1 {
		switch last {
		case dcmjson.TagStudyInstanceUID:
			if s.StudyUID != "" && v != s.StudyUID {
				return badRequest("StudyInstanceUID in the query differs from the study in the path")
			}
		case dcmjson.TagSeriesInstanceUID:
			if s.SeriesUID != "" && v != s.SeriesUID {
				return badRequest("SeriesInstanceUID in the query differs from the series in the path")
			}
		}
	}
	s.Matches = append(s.Matches, m)
	return nil
}

// splitList splits a UID list written with commas or backslashes.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\\' })
}

// checkDateRange accepts a single date/time or a range with an open end, in DICOM formats.
func checkDateRange(vr, v string) error {
	if v == "" {
		return nil
	}
	if strings.Count(v, "-") > 1 && vr != "DT" {
		return errString("a range has one hyphen: from-to, -to or from-")
	}
	var parts []string
	if vr == "DT" {
		// DT values can carry a -hhmm offset; accept digits, '.', '+', '-' only.
		for _, r := range v {
			if !(r >= '0' && r <= '9' || r == '.' || r == '+' || r == '-') {
				return errString("a date-time has digits, '.', '+' and '-' only")
			}
		}
		if !strings.ContainsAny(v, "0123456789") {
			return errString("a range needs at least one end")
		}
		return nil
	}
	parts = strings.SplitN(v, "-", 2)
	for _, p := range parts {
		if p == "" {
			continue
		}
		switch vr {
		case "DA":
			if len(p) != 8 || !allDigits(p) {
				return errString("dates are written YYYYMMDD")
			}
			mo, _ := strconv.Atoi(p[4:6])
			d, _ := strconv.Atoi(p[6:8])
			if mo < 1 || mo > 12 || d < 1 || d > 31 {
				return errString("no such date")
			}
		case "TM":
			main, frac, _ := strings.Cut(p, ".")
			if len(main) < 2 || len(main) > 6 || len(main)%2 != 0 || !allDigits(main) || len(frac) > 6 || (frac != "" && !allDigits(frac)) {
				return errString("times are written HHMMSS.FFFFFF (HH, HHMM and HHMMSS also allowed)")
			}
			if !validClock(main) {
				return errString("no such time")
			}
		}
	}
	if len(parts) == 2 && parts[0] == "" && parts[1] == "" {
		return errString("a range needs at least one end")
	}
	// A range that ends before it starts matches nothing at one archive and, at another
	// that reads it loosely, everything: it is the client's mistake, said as such. (Both ends
	// have the same fixed-width form here, so they compare as strings.)
	if len(parts) == 2 && parts[0] != "" && parts[1] != "" && vr == "DA" && parts[0] > parts[1] {
		return errString("the range ends before it starts")
	}
	return nil
}

// validClock reports whether HH, HHMM or HHMMSS (digits) is a time of day: hours to 23,
// minutes to 59, seconds to 60 (a leap second).
func validClock(hms string) bool {
	for i, most := range []int{23, 59, 60} {
		if len(hms) < 2*i+2 {
			break
		}
		n, _ := strconv.Atoi(hms[2*i : 2*i+2])
		if n > most {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// scopeKeys are the matching keys that can tie a search to one patient's records without a
// PatientID, by the level of search at which they do.
var scopeKeys = map[string]scopeKey{
	dcmjson.TagStudyInstanceUID:  {"StudyInstanceUID", StudyLevel},
	dcmjson.TagAccessionNumber:   {"AccessionNumber", StudyLevel},
	dcmjson.TagSeriesInstanceUID: {"SeriesInstanceUID", SeriesLevel},
	dcmjson.TagSOPInstanceUID:    {"SOPInstanceUID", InstanceLevel},
}

type scopeKey struct {
	name string
	at   Level
}

// singleValue reports whether a matching value names exactly one thing: not blank (a PACS
// may read a blank value as "match all"), not a list, no wildcard.
func singleValue(v string) bool {
	return strings.TrimSpace(v) != "" && !strings.ContainsAny(v, ",\\*?")
}

// checkScope enforces "no trawling": a search must be tied to a patient, a study or an
// accession number (or, below study level, a series or instance UID), each scoping key holding
// exactly one value. A scoping key with a blank value is refused whatever else scopes the
// search; a list or wildcard in one is allowed only under a patient (the answer is then cut
// to that patient's records by filterAnswer). Without a patient, the answer must still concern
// one patient (onePatient, in the search handler).
func (s *Search) checkScope() error {
	scoped := s.StudyUID != "" || s.PatientID != ""
	for _, m := range s.Matches {
		k, ok := scopeKeys[m.Path[0]]
		if len(m.Path) != 1 || !ok {
			continue
		}
		name := k.name
		switch {
		case strings.TrimSpace(m.Value) == "" && m.Value != "":
			return badRequest("%s is blank: a search key that names a patient's records must hold exactly one value", name)
		case m.Value == "":
			// Universal matching: asks for the attribute, scopes nothing.
		case !singleValue(m.Value):
			if s.PatientID == "" {
				return badRequest("%s must hold exactly one value (no list, no wildcard) unless the search names a patient by PatientID", name)
			}
		case s.Level >= k.at:
			scoped = true
		}
	}
	if !scoped {
		return badRequest("a %s search must name a patient (PatientID with an NHS number), a StudyInstanceUID or an AccessionNumber; searches across all patients are not allowed", s.Level)
	}
	return nil
}

// scopedByPatient reports whether the search is tied to one patient by its PatientID or its
// path (a study, which is one patient's); otherwise its answer must be checked to concern one
// patient.
func (s *Search) scopedByPatient() bool { return s.PatientID != "" || s.StudyUID != "" }

// locatesCompletely reports whether a complete answer to this search names every holder of
// each study it lists, so the locator may remember them: the search asks every trust by
// one StudyInstanceUID and by nothing else, as the locator's own lookup does. Any
// other key can match one trust's copy and not another's: a trust that filed its copy under
// another patient identifier, a modality, a date or an accession number of its own would be
// forgotten for the locator's TTL, and a retrieve would then miss that holder's instances.
func (s *Search) locatesCompletely() bool {
	if s.Level != StudyLevel || s.StudyUID != "" || s.PatientID != "" || len(s.Matches) != 1 {
		return false
	}
	m := s.Matches[0]
	// One UID only: a list's answer can be capped (silently, by some PACS) below what it
	// matches, and a study left out of a capped answer would lose a holder for the TTL.
	return len(m.Path) == 1 && m.Path[0] == dcmjson.TagStudyInstanceUID && m.Value != "" && !strings.ContainsAny(m.Value, `,\`)
}

// matchValue returns the value of the single-attribute match on tag, if any.
func (s *Search) matchValue(tag string) (string, bool) {
	for _, m := range s.Matches {
		if len(m.Path) == 1 && m.Path[0] == tag {
			return m.Value, true
		}
	}
	return "", false
}

// requiredFields are asked of every source at each level so the proxy can filter, merge,
// sort and normalise, whatever the client included.
var requiredFields = map[Level][]string{
	StudyLevel: {dcmjson.TagStudyDate, dcmjson.TagStudyTime, dcmjson.TagModalitiesInStudy,
		dcmjson.TagNumberOfStudyRelatedSeries, dcmjson.TagNumberOfStudyRelatedInstances},
	SeriesLevel: {dcmjson.TagStudyInstanceUID, dcmjson.TagSeriesNumber, dcmjson.TagNumberOfSeriesRelatedInstances, dcmjson.TagModality},
	InstanceLevel: {dcmjson.TagStudyInstanceUID, dcmjson.TagSeriesInstanceUID, dcmjson.TagInstanceNumber,
		dcmjson.TagSOPClassUID},
}

// upstreamQuery translates the search for one source: the patient key goes where that PACS
// keeps the NHS number, the proxy's own required fields are added, and paging is the proxy's
// (each source is asked for up to maxResults matches, never offset).
func (s *Search) upstreamQuery(src *upstream.Source, maxResults int) url.Values {
	q := url.Values{}
	for _, m := range s.Matches {
		if len(m.Path) == 1 && m.Path[0] == dcmjson.TagPatientID {
			switch src.PatientID {
			case upstream.InOtherPatientIDsSequence:
				q.Set(dcmjson.TagOtherPatientIDsSequence+"."+dcmjson.TagPatientID, m.Value)
				if src.PatientIDIssuer != "" {
					q.Set(dcmjson.TagOtherPatientIDsSequence+"."+dcmjson.TagIssuerOfPatientID, src.PatientIDIssuer)
				}
			default:
				q.Set(dcmjson.TagPatientID, m.Value)
				if src.PatientIDIssuer != "" {
					q.Set(dcmjson.TagIssuerOfPatientID, src.PatientIDIssuer)
				}
			}
			continue
		}
		q.Set(m.key(), m.Value)
	}
	fields := append([]string(nil), s.IncludeFields...)
	fields = append(fields, requiredFields[s.Level]...)
	fields = append(fields, dcmjson.TagPatientID, dcmjson.TagIssuerOfPatientID)
	if src.PatientID == upstream.InOtherPatientIDsSequence {
		fields = append(fields, dcmjson.TagOtherPatientIDsSequence)
	}
	if s.IncludeAll {
		q.Set("includefield", "all")
	} else {
		q.Set("includefield", strings.Join(dedupe(fields), ","))
	}
	q.Set("fuzzymatching", "false")
	if maxResults > 0 {
		q.Set("limit", strconv.Itoa(maxResults))
	}
	return q
}

// upstreamPath is the QIDO resource path for this search.
func (s *Search) upstreamPath() string {
	var b strings.Builder
	if s.StudyUID != "" {
		b.WriteString("studies/" + s.StudyUID + "/")
		if s.SeriesUID != "" {
			b.WriteString("series/" + s.SeriesUID + "/")
		}
	}
	b.WriteString([...]string{"studies", "series", "instances"}[s.Level])
	return b.String()
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

package dicomweb

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/upstream"
)

// fuzzSources are the two ways a trust keeps the NHS number, for the upstream queries of an
// accepted search.
var fuzzSources = []*upstream.Source{
	{SourceConfig: upstream.SourceConfig{ID: "A"}},
	{SourceConfig: upstream.SourceConfig{ID: "C", PatientID: upstream.InOtherPatientIDsSequence, PatientIDIssuer: "2.16.840.1.113883.2.1.4.1"}},
}

// FuzzParseSearch feeds the QIDO-RS query parser raw query strings at each level, with and
// without a study in the path. Whatever the input: no panic; a refusal is a 400 *Error with a
// message; an accepted search keeps within every cap, and its query to each trust re-parses,
// holds every matching key the client sent (nothing dropped) and no value the parser would
// refuse, and names only known, non-private attributes.
func FuzzParseSearch(f *testing.F) {
	for _, seed := range []struct {
		raw   string
		level uint8
	}{
		{"PatientID=9434765919", 0},
		{"PatientID=9434765919&StudyDate=20200101-20201231&ModalitiesInStudy=CT%5CMR&includefield=StudyDescription,00081030&limit=5&offset=1", 0},
		{"AccessionNumber=XA1-0001", 0},
		{"StudyInstanceUID=1.2.3&includefield=all&fuzzymatching=true", 0},
		{"PatientID=9434765919&StudyInstanceUID=1.2.3,1.2.4%5C1.2.5&PatientName=DEMO*%5EJ?", 0},
		{"SeriesInstanceUID=1.2.3.4&Modality=CT&SeriesNumber=3", 1},
		{"SOPInstanceUID=1.2.3.4.5&InstanceNumber=%2B7", 2},
		{"SeriesNumber=1&limit=1&LIMIT=2", 5},
		{"PatientID=9434765919&OtherPatientIDsSequence.PatientID=x", 0},
		{"PatientID=9434765919&00091010=x&includefield=00091010", 0},
		{"PatientID=9434765919&Modality=%zz;x=%", 0},
		{"PatientID=9434765919&PatientWeight=1E3&PatientAge=045Y&0040F000=abc&StudyTime=0800-1730.5", 0},
		{"PatientID=9434765919&IssuerOfPatientID=X&partial=fail&accept=application/dicom%2Bjson", 0},
		{"", 6},
	} {
		f.Add(seed.raw, seed.level)
	}
	lim := testLimits
	f.Fuzz(func(t *testing.T, raw string, level uint8) {
		lv := Level(level % 3)
		study, series := "", ""
		if level&4 != 0 && lv > StudyLevel {
			study = "1.2.3"
		}
		s, err := parseSearchQuery(lv, study, series, raw, lim)
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || de.Status != http.StatusBadRequest || de.Message == "" {
				t.Fatalf("refusal %#v; want a 400 *Error with a message", err)
			}
			return
		}
		checkAcceptedSearch(t, s, raw, lim)
		for _, src := range fuzzSources {
			checkUpstreamQuery(t, s, src, lim)
		}
		// What the proxy sends a trust that keeps the NHS number in PatientID is itself a
		// search the proxy accepts (with room for the fields the proxy adds).
		relaxed := lim
		relaxed.MaxIncludeFields += len(requiredFields[s.Level]) + 2
		relaxed.MaxQueryLength = 1 << 20
		sent := s.upstreamQuery(fuzzSources[0], lim.MaxResultsPerSource).Encode()
		if _, err := parseSearchQuery(s.Level, s.StudyUID, s.SeriesUID, sent, relaxed); err != nil {
			t.Fatalf("the query sent upstream, %q, is refused on re-parsing: %v", sent, err)
		}
	})
}

// checkAcceptedSearch checks that an accepted search keeps within the caps.
func checkAcceptedSearch(t *testing.T, s *Search, raw string, lim SearchLimits) {
	t.Helper()
	switch {
	case len(raw) > lim.MaxQueryLength:
		t.Fatalf("accepted a query of %d bytes", len(raw))
	case len(s.Matches) > lim.MaxMatchingKeys:
		t.Fatalf("accepted %d matching keys", len(s.Matches))
	case len(s.IncludeFields) > lim.MaxIncludeFields:
		t.Fatalf("accepted %d includefield attributes", len(s.IncludeFields))
	case s.Limit > lim.MaxLimit || s.Limit < 0 || s.Offset < 0:
		t.Fatalf("limit %d, offset %d", s.Limit, s.Offset)
	case s.checkScope() != nil:
		t.Fatalf("accepted an unscoped search: %v", s.checkScope())
	}
}

// checkUpstreamQuery checks the query the search sends to src.
func checkUpstreamQuery(t *testing.T, s *Search, src *upstream.Source, lim SearchLimits) {
	t.Helper()
	q := s.upstreamQuery(src, lim.MaxResultsPerSource)
	again, err := parseRawQuery(q.Encode(), 0)
	if err != nil {
		t.Fatalf("the upstream query %q does not re-parse: %v", q.Encode(), err)
	}
	if !reflect.DeepEqual(map[string][]string(again), map[string][]string(q)) {
		t.Fatalf("the upstream query changes on re-parsing: %v, then %v", q, again)
	}
	for key, vals := range again {
		if len(vals) != 1 {
			t.Fatalf("%s is sent %d times", key, len(vals))
		}
		v := vals[0]
		switch key {
		case "includefield":
			for _, f := range strings.Split(v, ",") {
				if f == "all" {
					continue
				}
				checkUpstreamAttribute(t, f)
			}
		case "fuzzymatching", "limit":
		default:
			vr := checkUpstreamAttribute(t, key)
			if err := checkMatchValue(key, vr, v, lim.MaxValuesPerKey); err != nil && !proxyKey(key) {
				t.Fatalf("sends %s=%q, which the parser refuses: %v", key, v, err)
			}
			if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("sends a control character in %s", key)
			}
		}
	}
	for _, m := range s.Matches {
		if len(m.Path) == 1 && m.Path[0] == dcmjson.TagPatientID {
			continue
		}
		if got := again.Get(m.key()); got != m.Value {
			t.Fatalf("matching key %s=%q is sent as %q", m.key(), m.Value, got)
		}
	}
	if s.PatientID != "" && again.Get(dcmjson.TagPatientID) != s.PatientID && again.Get(dcmjson.TagOtherPatientIDsSequence+"."+dcmjson.TagPatientID) != s.PatientID {
		t.Fatalf("the patient's NHS number is not sent: %v", again)
	}
}

// proxyKey reports whether an upstream key is one the proxy writes itself (the NHS number
// and its issuer, where the trust keeps them), not a client's.
func proxyKey(key string) bool {
	return strings.HasPrefix(key, dcmjson.TagOtherPatientIDsSequence+".") || key == dcmjson.TagIssuerOfPatientID
}

// checkUpstreamAttribute checks that an attribute path sent upstream resolves and names no
// private attribute, and returns its VR.
func checkUpstreamAttribute(t *testing.T, path string) string {
	t.Helper()
	tags, vr, err := resolvePath(path)
	if err != nil {
		t.Fatalf("sends attribute %q, which does not resolve: %v", path, err)
	}
	if err := checkSearchable("upstream", tags); err != nil {
		t.Fatalf("sends attribute %q: %v", path, err)
	}
	return vr
}

package dicomweb

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

// jsonOffers are the representations of search and metadata answers, the default first.
var jsonOffers = []media.Offer{
	{Type: "application/dicom+json"},
	{Type: "application/json"},
	{Type: "multipart/related", PartType: "application/dicom+xml"},
}

// negotiate picks the representation for a resource from the request's Accept, answering 400
// for an unparsable Accept and 406 when nothing offered is acceptable.
func negotiate(c *echo.Context, offers []media.Offer, what string) (media.Match, error) {
	ranges, err := media.RequestRanges(c.Request())
	if err != nil {
		return media.Match{}, badRequest("%v", err)
	}
	m, ok := media.Negotiate(ranges, offers)
	if !ok {
		names := make([]string, len(offers))
		for i, o := range offers {
			names[i] = o.String()
		}
		return media.Match{}, notAcceptable("%s can be sent as %v; the Accept header allows none of them", what, names)
	}
	// The transfer syntax is passed on to the trusts in their Accept: only a UID or "*" may
	// be, never other text of the client's.
	if ts, given := m.Range.Params["transfer-syntax"]; given && ts != "*" && !validUID(ts) {
		return media.Match{}, badRequest("transfer-syntax %q in the Accept header must be a transfer syntax UID or *", ts)
	}
	return m, nil
}

func (s *Server) searchHandler(level Level) echo.HandlerFunc {
	return func(c *echo.Context) error {
		// Step 3 comes before 2 here only in code order: parsing is pure, and authorization
		// needs the patient the search is scoped to.
		search, err := parseSearchQuery(level, c.Param("study"), c.Param("series"), c.QueryString(), s.cfg.Search)
		if err != nil {
			return err
		}
		rep, err := negotiate(c, jsonOffers, "a search answer")
		if err != nil {
			return err
		}
		studyScope := search.StudyUID
		if v, ok := search.matchValue(dcmjson.TagStudyInstanceUID); ok && studyScope == "" {
			studyScope = v
		}
		if err := s.authorize(c, policy.Action{Kind: "search", PatientID: search.PatientID, StudyUID: studyScope}); err != nil {
			return err
		}

		ctx, cancel := s.deadline(c)
		defer cancel()
		sources := s.locator.Sources()
		if search.StudyUID != "" {
			// Nested searches go only to the study's holders.
			loc := s.locator.Locate(s.staleOK(ctx), search.StudyUID)
			if len(loc.Holders) == 0 {
				if un := loc.Unreached(); len(un) > 0 {
					return decisionError(fallback.Unavailable(un, "The study", s.agent(c), s.cfg.Fallback))
				}
				return notFound("No trust holds study %s.", search.StudyUID)
			}
			sources = loc.Holders
			if un := loc.Unreached(); len(un) > 0 {
				sources = append(sources, upstream.ByPriority(outcomeSources(un))...)
			}
		}
		fanCtx := ctx
		if s.cfg.Fallback.ServeStale {
			// A trust that cannot answer may be stood in for by its stale cached copy;
			// fallback decides, and the answer says so.
			fanCtx = upstream.AcceptStale(ctx)
		}
		results := upstream.FanOut(fanCtx, sources, func(ctx context.Context, src *upstream.Source) ([]dcmjson.Dataset, error) {
			return src.Search(ctx, search.upstreamPath(), search.upstreamQuery(src, s.cfg.Search.MaxResultsPerSource))
		})
		outcomes := make([]upstream.Outcome, len(results))
		for i, r := range results {
			outcomes[i] = r.Outcome
		}
		d := fallback.DecideSearch(outcomes, s.agent(c), s.searchPolicy(c))
		if len(d.Missing) > 0 {
			s.metrics.incompleteAnswer("search", d.Status)
		}
		if !d.OK() {
			s.logMissing(c, "search", d)
			return decisionError(d)
		}
		s.logMissing(c, "search", d)

		s.logStale(c, "search", d)

		rw := s.rewriter(c)
		var answers []sourceAnswer
		var warnings []string
		// A stale copy is complete only as of its age: nothing is remembered from it.
		complete := len(d.Missing) == 0 && len(d.Stale) == 0
		staleIDs := d.StaleIDs()
		var disclosed []string
		for _, r := range results {
			if r.Err != nil && !staleIDs[r.Source.ID] {
				continue
			}
			disclosed = append(disclosed, r.Source.ID)
			kept, dropped := filterAnswer(search, r.Source, r.Value)
			if dropped > 0 {
				s.log.Warn("dropped search results that did not match the query", "request_id", requestID(c), "source", r.Source.ID, "dropped", dropped)
			}
			if s.cfg.Search.MaxResultsPerSource > 0 && len(r.Value) >= s.cfg.Search.MaxResultsPerSource {
				warnings = append(warnings, fallback.Warning(s.agent(c), fmt.Sprintf("%s (%s) has more than %d matches; only the first %d were merged. Narrow the search.", r.Source.ID, r.Source.Name, s.cfg.Search.MaxResultsPerSource-1, s.cfg.Search.MaxResultsPerSource)))
				complete = false
			}
			for _, ds := range kept {
				normalise(ds, r.Source, s.cfg.PatientIDIssuer)
				rw.rewriteDataset(ds, r.Source)
			}
			answers = append(answers, sourceAnswer{source: r.Source, results: kept})
		}
		// Answers are merged in priority order so the preferred holder's attributes win.
		answers = byAnswerPriority(answers)
		all := mergeAnswers(level, answers)
		if !search.scopedByPatient() {
			if err := onePatient(all); err != nil {
				s.log.Warn("search refused: its answer concerns more than one patient", "request_id", requestID(c), "results", len(all))
				return err
			}
		}
		sortResults(all)
		// Only a complete answer to a search by study UID alone names every holder; any other
		// would teach the locator to forget a trust whose copy the search did not match.
		if complete && search.locatesCompletely() {
			for _, m := range all {
				var patients []string
				if nhs, err := NormaliseNHSNumber(m.ds.String(dcmjson.TagPatientID)); err == nil {
					patients = append(patients, nhs)
				}
				s.locator.Remember(ctx, m.ds.String(dcmjson.TagStudyInstanceUID), m.holders, patients...)
			}
		}
		pageItems, remaining := page(all, search.Offset, search.Limit)
		countWarnings, unlisted := s.unionCounts(fanCtx, level, search, pageItems, staleIDs, s.agent(c))
		s.logListingFailures(c, unlisted)
		warnings = append(warnings, countWarnings...)
		out := make([]dcmjson.Dataset, len(pageItems))
		for i, m := range pageItems {
			finish(level, m, search, rw)
			out[i] = m.ds
		}

		warnings = append(d.Warnings, warnings...)
		if search.Fuzzy {
			warnings = append(warnings, fallback.Warning(s.agent(c), "The fuzzymatching parameter is not supported. Only literal matching has been performed."))
		}
		if search.LimitClamped {
			warnings = append(warnings, fallback.Warning(s.agent(c), fmt.Sprintf("The limit was reduced to the maximum of %d.", s.cfg.Search.MaxLimit)))
		}
		if remaining > 0 {
			warnings = append(warnings, fallback.Warning(s.agent(c), fmt.Sprintf("There are %d additional results that can be requested.", remaining)))
		}

		if err := s.record(c, audit.Event{Action: "search", PatientID: search.PatientID, StudyUIDs: studyUIDs(out), Sources: disclosed, Status: http.StatusOK}); err != nil {
			return err
		}
		h := c.Response().Header()
		for _, w := range warnings {
			h.Add("Warning", w)
		}
		h.Set("Cache-Control", "no-store")
		return writeDatasets(c, rep, out)
	}
}

// minCountBudget is the least time left before the request's deadline for the counts of a
// search to be listed; with less, the largest copy's counts stand, with a Warning.
const minCountBudget = time.Second

// maxCountedStudies bounds the studies of one page whose counts are made the union of their
// copies: one listing per study (for series, per study the series are in), at each holder.
const maxCountedStudies = 50

// countJob is one listing made for the counts of a page: of a study (series "") or of one
// series, at the holders of the results it counts.
type countJob struct {
	study, series string
	holders       []*upstream.Source
	items         []*merged
	got           holdings
}

// unionCounts makes the counts of the page's results that several trusts hold count the union
// of their copies, the set a retrieve returns: at study level NumberOfStudyRelatedInstances
// (distinct SOP Instance UIDs), NumberOfStudyRelatedSeries (distinct series) and
// ModalitiesInStudy (the answers' modalities and those listed), at series level
// NumberOfSeriesRelatedInstances. Each holder's instances are listed (listHoldings, under ctx,
// so through the cache as the search was, stale copies only where the search used one too),
// one listing per study in parallel, for at most maxCountedStudies studies. Results held by one
// trust keep that trust's counts; a series held by one trust that gave no count is counted
// from its study's listing when that study is listed anyway.
//
// A count is only ever raised from the lower bound mergeAnswers left (the largest copy's), and
// never set from nothing to 0, unless every holder was listed: then it is exact. It returns a
// Warning for every result whose counts are incomplete, naming the trusts that could not be
// listed, and one for the results left uncounted (past the bound, or because the request's
// deadline had passed before listing began); and the failed listings, for the log.
func (s *Server) unionCounts(ctx context.Context, level Level, search *Search, items []*merged, staleIDs map[string]bool, agent string) ([]string, []upstream.Outcome) {
	if level == InstanceLevel {
		return nil, nil
	}
	var jobs []*countJob
	byStudy := map[string]*countJob{}
	uncounted := 0
	lookups := 0
	for _, m := range items {
		holderIDs := m.holders
		if level == StudyLevel && lookups < maxCountedStudies {
			// The trusts that answered this search with the study may not be all that hold
			// it (a copy filed under another patient identifier, or not matching a filter);
			// the ones the locator knows of count too, as a retrieve would use them. Each is a
			// cache read (a round trip with Redis), so no more are made than studies counted.
			lookups++
			for _, src := range s.locator.Remembered(ctx, m.ds.String(dcmjson.TagStudyInstanceUID)) {
				if !slices.Contains(holderIDs, src.ID) {
					holderIDs = append(slices.Clip(holderIDs), src.ID)
				}
			}
		}
		if len(holderIDs) < 2 {
			continue
		}
		study, series := m.ds.String(dcmjson.TagStudyInstanceUID), ""
		if level == SeriesLevel {
			if study == "" {
				study = search.StudyUID
			}
			series = m.ds.String(dcmjson.TagSeriesInstanceUID)
		}
		if !validUID(study) {
			uncounted++
			continue
		}
		j := byStudy[study]
		switch {
		case j != nil && level == SeriesLevel:
			// Several series of one study: one listing of the study counts them all.
			if j.series != series {
				j.series = ""
			}
		case len(jobs) == maxCountedStudies:
			uncounted++
			continue
		default:
			j = &countJob{study: study, series: series}
			byStudy[study] = j
			jobs = append(jobs, j)
		}
		j.items = append(j.items, m)
		for _, id := range holderIDs {
			if src, ok := s.locator.Source(id); ok && !slices.Contains(j.holders, src) {
				j.holders = append(j.holders, src)
			}
		}
	}
	if level == SeriesLevel {
		// A series held by one trust that gave no count is counted from its study's listing,
		// when the study is listed anyway; otherwise its count stays unknown.
		for _, m := range items {
			study := m.ds.String(dcmjson.TagStudyInstanceUID)
			if study == "" {
				study = search.StudyUID
			}
			j := byStudy[study]
			if _, known := m.ds.Int(dcmjson.TagNumberOfSeriesRelatedInstances); len(m.holders) != 1 || j == nil || known {
				continue
			}
			j.series = ""
			j.items = append(j.items, m)
			if src, ok := s.locator.Source(m.holders[0]); ok && !slices.Contains(j.holders, src) {
				j.holders = append(j.holders, src)
			}
		}
	}
	var warnings []string
	if dl, ok := ctx.Deadline(); (ctx.Err() != nil || ok && time.Until(dl) < minCountBudget) && len(jobs) > 0 {
		// The search itself used up (nearly all) the request's time: a trust that did not
		// answer held it to the deadline. Listing now would only time out.
		late := 0
		for _, j := range jobs {
			late += len(j.items)
		}
		warnings = append(warnings, fallback.Warning(agent, fmt.Sprintf("The counts of %s held by more than one trust are the largest copy's, not the union of the copies: the request's time ran out before the copies could be listed.", resultsPhrase(late))))
		jobs = nil
	}
	// The listings end with the request, but as a cancellation, never as a time-out: a trust
	// that answered the search must not be charged (its breaker, its /status) because the
	// search left the counts little time. A trust that stalls is still timed out by its own
	// header and idle timeouts.
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() { j.got = listHoldings(lctx, j.study, j.series, j.holders) })
	}
	wg.Wait()

	var failed []upstream.Outcome
	for _, j := range jobs {
		got := j.got
		// Every holder here answered the search with this study (or a series of it), so a
		// holder that lists none of it lists wrongly: its count is unknown, not 0.
		got.failEmptyListings(ctx, j.study, "")
		for _, o := range got.stale {
			// A stale listing counts only for a holder whose search answer was stale too (and
			// said so); otherwise the holder failed now and its count is unknown.
			if !staleIDs[o.Source.ID] {
				delete(got.listed, o.Source.ID)
				got.failed = append(got.failed, o)
			}
		}
		failed = append(failed, got.failed...)
		if len(got.listed) == 0 {
			warnings = append(warnings, countWarning(agent, level, j, got.failed))
			continue
		}
		exact := len(got.failed) == 0
		union := got.union()
		// A series the search found but no listing shows (a copy gone since the answer was
		// cached, say) contradicts its answer: its count is left as the answers gave it, and
		// the answer says so. (A holder that lists nothing at all failed above.)
		var unlisted []string
		for _, m := range j.items {
			if level == StudyLevel {
				series := map[string]bool{}
				for _, se := range union {
					series[se] = true
				}
				setCount(m.ds, dcmjson.TagNumberOfStudyRelatedInstances, len(union), exact)
				setCount(m.ds, dcmjson.TagNumberOfStudyRelatedSeries, len(series), exact)
				mods := m.ds.Strings(dcmjson.TagModalitiesInStudy)
				for _, list := range got.modalities() {
					mods = append(mods, list...)
				}
				if len(mods) > 0 {
					sort.Strings(mods)
					m.ds.SetStrings(dcmjson.TagModalitiesInStudy, "CS", dedupe(mods)...)
				}
				continue
			}
			se, n := m.ds.String(dcmjson.TagSeriesInstanceUID), 0
			for _, s2 := range union {
				if s2 == se {
					n++
				}
			}
			if n == 0 {
				unlisted = append(unlisted, "series "+se)
				continue
			}
			setCount(m.ds, dcmjson.TagNumberOfSeriesRelatedInstances, n, exact)
		}
		if !exact {
			warnings = append(warnings, countWarning(agent, level, j, got.failed))
		}
		if len(unlisted) > 0 {
			it, its := "it", "its"
			if len(unlisted) > 1 {
				it, its = "them", "their"
			}
			warnings = append(warnings, fallback.Warning(agent, fmt.Sprintf("The counts of %s are the answers' own, not the union of the copies: the trusts that hold %s listed none of %s instances.", strings.Join(unlisted, ", "), it, its)))
		}
	}
	if uncounted > 0 {
		warnings = append(warnings, fallback.Warning(agent, fmt.Sprintf("The counts of %s held by more than one trust are the largest copy's, not the union of the copies: ask for fewer results (limit) to have them counted.", resultsPhrase(uncounted))))
	}
	return warnings, failed
}

// resultsPhrase is "1 result" or "n results".
func resultsPhrase(n int) string {
	if n == 1 {
		return "1 result"
	}
	return itoa(n) + " results"
}

// setCount sets a count computed from listings: as it is when exact, else only where it raises
// the count already there (a lower bound), so a partial listing never lowers a known count nor
// turns an unknown one into 0.
func setCount(ds dcmjson.Dataset, tag string, n int, exact bool) {
	if known, ok := ds.Int(tag); exact || (n > 0 && (!ok || int64(n) > known)) {
		ds.SetInt(tag, "IS", int64(n))
	}
}

// countWarning says which counts of a job are incomplete, and which trusts could not be listed.
func countWarning(agent string, level Level, j *countJob, failed []upstream.Outcome) string {
	names := make([]string, len(failed))
	for i, f := range failed {
		names[i] = fmt.Sprintf("%s (%s) could not list its instances: %s", f.Source.ID, f.Source.Name, listingReason(f.Err))
	}
	what := "The counts of study " + j.study + " are"
	switch {
	case level == SeriesLevel && j.series != "":
		what = "The instance count of series " + j.series + " is"
	case level == SeriesLevel:
		what = "The instance counts of the series of study " + j.study + " are"
	}
	return fallback.Warning(agent, fmt.Sprintf("%s incomplete: %s.", what, strings.Join(names, "; ")))
}

// onePatient refuses (403) an answer whose results are not all of one patient: a search not
// tied to a patient by its PatientID or path (one by AccessionNumber or a UID) must not reveal
// another patient's records, whatever the trusts matched (accession numbers are each trust's
// own, and a PACS may ignore a key). A result is of the patient its normalised identity names:
// the NHS number, else the trust's PatientID with its issuer; results with no patient identity
// cannot be shown to be one patient's, so two of them are refused too.
func onePatient(all []*merged) error {
	first := ""
	for i, m := range all {
		id := patientIdentity(m.ds)
		if id == "" {
			id = "unknown#" + itoa(i)
		}
		if first == "" {
			first = id
		} else if id != first {
			return &Error{Status: http.StatusForbidden, Message: "The answer to this search would concern more than one patient, so it is not given. Search by the patient's NHS number (PatientID), or narrow the search to one study."}
		}
	}
	return nil
}

// patientIdentity is a result's patient as the proxy knows it after normalise: the NHS number
// when PatientID is one (whatever issuer a trust gave it), else PatientID with
// IssuerOfPatientID; "" when it has none.
func patientIdentity(ds dcmjson.Dataset) string {
	pid := strings.TrimSpace(ds.String(dcmjson.TagPatientID))
	if pid == "" {
		return ""
	}
	if nhs, err := NormaliseNHSNumber(pid); err == nil {
		return "nhs:" + nhs
	}
	return "local:" + pid + "|" + strings.TrimSpace(ds.String(dcmjson.TagIssuerOfPatientID))
}

// searchPolicy applies the request's partial=warn|fail to the deployment's default.
func (s *Server) searchPolicy(c *echo.Context) fallback.Policy {
	p := s.cfg.Fallback
	switch c.QueryParam("partial") {
	case "fail":
		p.Search = fallback.PartialFail
	case "warn":
		p.Search = fallback.PartialWarn
	}
	return p
}

// logStale writes one line per source stood in for by its stale cached copy.
func (s *Server) logStale(c *echo.Context, what string, d fallback.Decision) {
	for _, st := range d.Stale {
		s.log.Warn("source answered from a stale cached copy", "request_id", requestID(c), "what", what, "source", st.ID, "reason", st.Reason, "age", st.Age.String())
	}
	if len(d.Stale) > 0 {
		s.metrics.staleAnswer(what)
	}
}

// logMissing writes one incident line per source left out of an answer.
func (s *Server) logMissing(c *echo.Context, what string, d fallback.Decision) {
	for _, m := range d.Missing {
		s.log.Warn("source left out of answer", "request_id", requestID(c), "what", what, "source", m.ID, "reason", m.Reason, "status", d.Status)
	}
}

func outcomeSources(os []upstream.Outcome) []*upstream.Source {
	out := make([]*upstream.Source, len(os))
	for i, o := range os {
		out[i] = o.Source
	}
	return out
}

func studyUIDs(list []dcmjson.Dataset) []string {
	var out []string
	seen := map[string]bool{}
	for _, ds := range list {
		if u := ds.String(dcmjson.TagStudyInstanceUID); u != "" && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

func byAnswerPriority(in []sourceAnswer) []sourceAnswer {
	srcs := make([]*upstream.Source, len(in))
	byID := map[string]sourceAnswer{}
	for i, a := range in {
		srcs[i] = a.source
		byID[a.source.ID] = a
	}
	out := make([]sourceAnswer, 0, len(in))
	for _, s := range upstream.ByPriority(srcs) {
		out = append(out, byID[s.ID])
	}
	return out
}

// writeDatasets sends datasets as a DICOM JSON array or as multipart/related DICOM XML.
func writeDatasets(c *echo.Context, rep media.Match, list []dcmjson.Dataset) error {
	if rep.Offer.PartType == "application/dicom+xml" {
		mw := media.NewWriter(c.Response())
		c.Response().Header().Set("Content-Type", mw.ContentType(rep.Offer.PartType))
		c.Response().WriteHeader(http.StatusOK)
		for _, ds := range list {
			pw, err := mw.CreatePart(rep.Offer.PartType, "")
			if err != nil {
				return err
			}
			if err := dcmjson.WriteXML(pw, ds); err != nil {
				return err
			}
		}
		return mw.Close()
	}
	body := dcmjson.AppendArray(make([]byte, 0, 1024*len(list)+2), list)
	ct := rep.Offer.Type
	if ct == "" {
		ct = "application/dicom+json"
	}
	return c.Blob(http.StatusOK, ct, body)
}

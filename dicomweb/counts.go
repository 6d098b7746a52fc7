package dicomweb

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/upstream"
)

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
// one listing per study in parallel, for at most maxCountedStudies studies (countJobs).
//
// A count is only ever raised from the lower bound mergeAnswers left (the largest copy's), and
// never set from nothing to 0, unless every holder was listed: then it is exact
// (fallback.Count). It returns a Warning for every result whose counts are incomplete, naming
// the trusts that could not be listed, and one for the results left uncounted (past the bound,
// or because the request's deadline had passed before listing began); and the failed
// listings, for the log.
func (s *Server) unionCounts(ctx context.Context, level Level, search *Search, items []*merged, staleIDs map[string]bool) ([]string, []upstream.Outcome) {
	if level == InstanceLevel {
		return nil, nil
	}
	jobs, uncounted := s.countJobs(ctx, level, search, items)
	var warnings []string
	if dl, ok := ctx.Deadline(); (ctx.Err() != nil || ok && time.Until(dl) < minCountBudget) && len(jobs) > 0 {
		// The search itself used up (nearly all) the request's time: a trust that did not
		// answer held it to the deadline. Listing now would only time out.
		late := 0
		for _, j := range jobs {
			late += len(j.items)
		}
		warnings = append(warnings, fallback.CountsLate(late, s.agent()))
		jobs = nil
	}
	listJobs(ctx, jobs)
	var failed []upstream.Outcome
	for _, j := range jobs {
		w, f := s.applyCounts(ctx, level, j, staleIDs)
		warnings = append(warnings, w...)
		failed = append(failed, f...)
	}
	if uncounted > 0 {
		warnings = append(warnings, fallback.CountsUncounted(uncounted, s.agent()))
	}
	return warnings, failed
}

// countJobs plans the listings for the counts of a page: one per study whose results more than
// one trust holds (the trusts that answered with it, and at study level those the locator knows
// of too), at most maxCountedStudies; uncounted is how many results are left over.
func (s *Server) countJobs(ctx context.Context, level Level, search *Search, items []*merged) (jobs []*countJob, uncounted int) {
	byStudy := map[string]*countJob{}
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
		study, series := studyOf(m, search), ""
		if level == SeriesLevel {
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
		s.addToJob(j, m, holderIDs)
	}
	if level == SeriesLevel {
		s.countSingleHolderSeries(items, search, byStudy)
	}
	return jobs, uncounted
}

// countSingleHolderSeries counts a series held by one trust that gave no count from its
// study's listing, when the study is listed anyway; otherwise its count stays unknown.
func (s *Server) countSingleHolderSeries(items []*merged, search *Search, byStudy map[string]*countJob) {
	for _, m := range items {
		j := byStudy[studyOf(m, search)]
		if _, known := m.ds.Int(dcmjson.TagNumberOfSeriesRelatedInstances); len(m.holders) != 1 || j == nil || known {
			continue
		}
		j.series = ""
		s.addToJob(j, m, m.holders)
	}
}

// addToJob adds a result and its holders to a count job.
func (s *Server) addToJob(j *countJob, m *merged, holderIDs []string) {
	j.items = append(j.items, m)
	for _, id := range holderIDs {
		if src, ok := s.locator.Source(id); ok && !slices.Contains(j.holders, src) {
			j.holders = append(j.holders, src)
		}
	}
}

// studyOf is the study a result is of: its own StudyInstanceUID, else the search's scope.
func studyOf(m *merged, search *Search) string {
	if study := m.ds.String(dcmjson.TagStudyInstanceUID); study != "" {
		return study
	}
	return search.StudyUID
}

// listJobs lists every job's holders, one listing per job in parallel. The listings end with
// the request, but as a cancellation, never as a time-out: a trust that answered the search
// must not be charged (its breaker, its /status) because the search left the counts little
// time. A trust that stalls is still timed out by its own header and idle timeouts.
func listJobs(ctx context.Context, jobs []*countJob) {
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() { j.got = listHoldings(lctx, j.study, j.series, j.holders) })
	}
	wg.Wait()
}

// applyCounts sets the counts of a job's results from its listings and returns the Warnings
// about them and the holders that could not be listed.
func (s *Server) applyCounts(ctx context.Context, level Level, j *countJob, staleIDs map[string]bool) ([]string, []upstream.Outcome) {
	got := j.got
	// Every holder here answered the search with this study (or a series of it), so a holder
	// that lists none of it lists wrongly: its count is unknown, not 0.
	got.failEmptyListings(ctx, j.study, "")
	for _, o := range got.stale {
		// A stale listing counts only for a holder whose search answer was stale too (and said
		// so); otherwise the holder failed now and its count is unknown.
		if !staleIDs[o.Source.ID] {
			delete(got.listed, o.Source.ID)
			got.failed = append(got.failed, o)
		}
	}
	if len(got.listed) == 0 {
		return []string{fallback.CountsIncomplete(j.countsPhrase(level), got.failed, s.agent())}, got.failed
	}
	exact := len(got.failed) == 0
	union := got.union()
	var warnings, unlisted []string
	for _, m := range j.items {
		if level == StudyLevel {
			setStudyCounts(m.ds, union, got, exact)
			continue
		}
		se, n := m.ds.String(dcmjson.TagSeriesInstanceUID), 0
		for _, s2 := range union {
			if s2 == se {
				n++
			}
		}
		if n == 0 {
			// A series the search found but no listing shows (a copy gone since the answer
			// was cached, say) contradicts its answer: its count is left as the answers gave it.
			unlisted = append(unlisted, se)
			continue
		}
		setCount(m.ds, dcmjson.TagNumberOfSeriesRelatedInstances, n, exact)
	}
	if !exact {
		warnings = append(warnings, fallback.CountsIncomplete(j.countsPhrase(level), got.failed, s.agent()))
	}
	if len(unlisted) > 0 {
		warnings = append(warnings, fallback.CountsUnlisted(unlisted, s.agent()))
	}
	return warnings, got.failed
}

// setStudyCounts sets a study's counts and modalities from the union of its copies' listings.
func setStudyCounts(ds dcmjson.Dataset, union map[string]string, got holdings, exact bool) {
	series := map[string]bool{}
	for _, se := range union {
		series[se] = true
	}
	setCount(ds, dcmjson.TagNumberOfStudyRelatedInstances, len(union), exact)
	setCount(ds, dcmjson.TagNumberOfStudyRelatedSeries, len(series), exact)
	mods := ds.Strings(dcmjson.TagModalitiesInStudy)
	for _, list := range got.modalities() {
		mods = append(mods, list...)
	}
	if len(mods) > 0 {
		sort.Strings(mods)
		ds.SetStrings(dcmjson.TagModalitiesInStudy, "CS", dedupe(mods)...)
	}
}

// setCount sets a count computed from listings as fallback.Count decides.
func setCount(ds dcmjson.Dataset, tag string, n int, exact bool) {
	known, ok := ds.Int(tag)
	if count, set := fallback.Count(known, ok, n, exact); set {
		ds.SetInt(tag, "IS", count)
	}
}

// countsPhrase names the counts a job makes, at the start of a Warning's sentence.
func (j *countJob) countsPhrase(level Level) string {
	switch {
	case level == SeriesLevel && j.series != "":
		return "The instance count of series " + j.series + " is"
	case level == SeriesLevel:
		return "The instance counts of the series of study " + j.study + " are"
	}
	return "The counts of study " + j.study + " are"
}

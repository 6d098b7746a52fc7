package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/upstream"
)

// listPageSize is the limit each page of an instance listing asks for. A PACS may send fewer
// (many cap their answers silently); the lister then asks for the next page from where the
// answer ended.
const listPageSize = 1000

// maxListPages bounds the pages asked of one holder for one listing, so a PACS that never
// stops sending new results cannot keep a request busy until its deadline. At full pages it
// allows 200,000 instances; behind a cap of 100 results per answer, 20,000.
const maxListPages = 200

// holding is what one holder has of a study or of a series.
type holding struct {
	// series maps each SOP Instance UID listed to its Series Instance UID.
	series map[string]string
	// modality maps a Series Instance UID to the Modality the holder gave its instances, for
	// the series where it gave one.
	modality map[string]string
}

// holdings is what a set of holders have of one study or one series.
type holdings struct {
	// listed is, by source id, the complete listing of every holder that could be listed.
	listed map[string]holding
	// holders are the sources in listed, in the order they were given.
	holders []*upstream.Source
	// stale are the holders in listed whose listing came, whole or in part, from a stale
	// cached copy (only when the caller's context accepts stale copies).
	stale []upstream.Outcome
	// failed are the holders that could not be listed, or whose listing could not be proved
	// complete. None of their instances are in listed.
	failed []upstream.Outcome
}

// union returns every SOP Instance UID listed at any holder, with its series.
func (h holdings) union() map[string]string {
	out := map[string]string{}
	for _, l := range h.listed {
		for sop, series := range l.series {
			out[sop] = series
		}
	}
	return out
}

// modalities returns, by series, the distinct modalities the listed holders gave.
func (h holdings) modalities() map[string][]string {
	out := map[string][]string{}
	for _, l := range h.listed {
		for series, mod := range l.modality {
			if !slices.Contains(out[series], mod) {
				out[series] = append(out[series], mod)
			}
		}
	}
	return out
}

// failEmptyListings moves to failed every listed holder whose listing is empty although it
// holds what was listed: for a study, every holder (each is one because a search found the
// study there); for a series, a holder whose series search finds the
// series (or cannot be asked: then what it holds is unknown). A PACS that lists nothing of what
// it holds does not answer instance searches at that level, or lost the data since it was
// located; taking it for "nothing" would let a retrieve answer 200 without the instances only
// it holds. It reports whether it moved any.
func (h *holdings) failEmptyListings(ctx context.Context, study, series string) bool {
	moved := false
	kept := h.holders[:0]
	for _, src := range h.holders {
		if len(h.listed[src.ID].series) > 0 || (series != "" && !holdsSeries(ctx, src, study, series)) {
			kept = append(kept, src)
			continue
		}
		delete(h.listed, src.ID)
		h.failed = append(h.failed, upstream.Outcome{Source: src, Err: &upstream.InvalidResponseError{Source: src.ID, Err: fallback.ErrListedNothing}})
		moved = true
	}
	h.holders = kept
	return moved
}

// holdsSeries reports whether src holds the series, by a series search on its UID; a search
// that fails counts as holding it, since what src holds is then unknown.
func holdsSeries(ctx context.Context, src *upstream.Source, study, series string) bool {
	list, err := src.Search(ctx, "studies/"+study+"/series", url.Values{dcmjson.TagSeriesInstanceUID: {series}})
	if err != nil {
		return true
	}
	for _, ds := range list {
		if ds.String(dcmjson.TagSeriesInstanceUID) == series {
			return true
		}
	}
	return false
}

// listHoldings lists, at each holder in parallel, the instances it has of a study (series
// "") or of one series of it, by instance-level QIDO-RS. Each holder's listing is paged: the
// lister asks for listPageSize results at a time, from the offset where the previous answer
// ended, until a page brings nothing new, so a PACS that silently returns fewer results than
// asked is still listed whole. A holder that repeats a page it already sent is taken to ignore
// offset; its listing counts as complete only if its own instance count (asked once, at the
// study or series level) is no larger than what was listed. Otherwise, or when the listing
// fails or does not end within maxListPages, the holder is in failed and nothing it listed is
// used.
//
// The caller's context decides how the cache takes part: a retrieve's plan passes
// upstream.BypassCache so the listing is each holder as it is now; a search's counts use the
// cache as the search did. listHoldings returns when every listing has ended; it honours ctx.
func listHoldings(ctx context.Context, study, series string, holders []*upstream.Source) holdings {
	results := upstream.FanOut(ctx, holders, func(ctx context.Context, src *upstream.Source) (listing, error) {
		return listHolding(ctx, src, study, series)
	})
	h := holdings{listed: map[string]holding{}}
	for _, r := range results {
		if r.Err != nil {
			h.failed = append(h.failed, r.Outcome)
			continue
		}
		h.listed[r.Source.ID] = r.Value.holding
		h.holders = append(h.holders, r.Source)
		if r.Value.stale != nil {
			h.stale = append(h.stale, upstream.Outcome{Source: r.Source, Err: r.Value.stale, Duration: r.Duration})
		}
	}
	return h
}

// listing is one holder's holding as listHolding found it.
type listing struct {
	holding
	// stale is a *upstream.StaleError met when a cached copy answered a request; nil when
	// none did.
	stale error
}

// listHolding pages through one holder's instances of a study or series (see listHoldings).
func listHolding(ctx context.Context, src *upstream.Source, study, series string) (listing, error) {
	l := &lister{ctx: ctx, src: src, study: study, series: series, path: "studies/" + study + "/instances", what: "the study",
		h: holding{series: map[string]string{}, modality: map[string]string{}}, sent: map[string]bool{}}
	if series != "" {
		l.path, l.what = "studies/"+study+"/series/"+series+"/instances", "the series"
	}
	offset := 0
	for range maxListPages {
		page, err := l.page(offset)
		if err != nil {
			return listing{}, err
		}
		if len(page) == 0 || l.take(page) == 0 {
			// The end, or a page with nothing new: the holder ignores offset, and any page it
			// sent may have been cut short.
			return l.vouch()
		}
		offset += len(page)
	}
	return listing{}, &upstream.InvalidResponseError{Source: src.ID, Err: fmt.Errorf("list the instances of %s: no end after %d pages: %w", l.what, maxListPages, fallback.ErrListingIncomplete)}
}

// lister is listHolding's state while it pages through one holder's instances.
type lister struct {
	ctx                       context.Context
	src                       *upstream.Source
	study, series, path, what string
	h                         holding
	// sent holds every SOP Instance UID the holder sent, usable or not: a page with none that
	// is not in it brought nothing new.
	sent map[string]bool
	// stale is the StaleError of a page that came from a stale cached copy, said in the result.
	stale error
	// repeated is set once a page holds a UID an earlier page held: the holder's pages
	// overlap (it ignores offset, or its order changes between pages), so pages may also have
	// skipped instances, and only its own count can vouch for the listing.
	repeated bool
}

// page asks the holder for the page of instances from offset.
func (l *lister) page(offset int) ([]dcmjson.Dataset, error) {
	q := url.Values{
		"includefield": {dcmjson.TagSeriesInstanceUID + "," + dcmjson.TagModality},
		"limit":        {strconv.Itoa(listPageSize)},
		"offset":       {strconv.Itoa(offset)},
	}
	page, err := l.src.Search(l.ctx, l.path, q)
	if _, ok := upstream.AsStale(err); ok {
		// The caller accepts stale copies; this page is one. It is said in the result.
		l.stale, err = err, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list the instances of %s at %s: %w", l.what, l.src.ID, err)
	}
	return page, nil
}

// take adds a page's instances of the study (and series) to the holding and returns how many
// of the page's UIDs were new.
func (l *lister) take(page []dcmjson.Dataset) (fresh int) {
	for _, ds := range page {
		sop := ds.String(dcmjson.TagSOPInstanceUID)
		if l.sent[sop] {
			l.repeated = true
			continue
		}
		l.sent[sop] = true
		fresh++
		if s := ds.String(dcmjson.TagStudyInstanceUID); s != "" && s != l.study {
			continue
		}
		se := ds.String(dcmjson.TagSeriesInstanceUID)
		if l.series != "" && se == "" {
			se = l.series
		}
		if !validUID(sop) || !validUID(se) || (l.series != "" && se != l.series) {
			continue
		}
		l.h.series[sop] = se
		if mod := ds.String(dcmjson.TagModality); mod != "" {
			l.h.modality[se] = mod
		}
	}
	return fresh
}

// vouch ends a listing: as it is when the holder's pages never overlapped, else only if the
// holder's own count vouches for what was listed.
func (l *lister) vouch() (listing, error) {
	if !l.repeated {
		return listing{l.h, l.stale}, nil
	}
	n, ok, err := countAt(l.ctx, l.src, l.study, l.series)
	if _, isStale := upstream.AsStale(err); isStale {
		l.stale, err = err, nil
	}
	switch {
	case err != nil:
		return listing{}, fmt.Errorf("list the instances of %s at %s: its pages overlap and its count could not be had: %w", l.what, l.src.ID, err)
	case !ok:
		return listing{}, &upstream.InvalidResponseError{Source: l.src.ID, Err: fmt.Errorf("list the instances of %s: its pages overlap and it gives no count to check %d listed against: %w", l.what, len(l.sent), fallback.ErrListingIncomplete)}
	case n > int64(len(l.sent)):
		return listing{}, &upstream.InvalidResponseError{Source: l.src.ID, Err: fmt.Errorf("list the instances of %s: its pages overlap and it listed %d of the %d it counts: %w", l.what, len(l.sent), n, fallback.ErrListingIncomplete)}
	}
	return listing{l.h, l.stale}, nil
}

// countAt asks a holder how many instances it has of a study (series "") or of a series: its
// NumberOfStudyRelatedInstances or NumberOfSeriesRelatedInstances. ok is false when the
// holder does not say.
func countAt(ctx context.Context, src *upstream.Source, study, series string) (n int64, ok bool, err error) {
	path, uidTag, countTag := "studies", dcmjson.TagStudyInstanceUID, dcmjson.TagNumberOfStudyRelatedInstances
	q := url.Values{dcmjson.TagStudyInstanceUID: {study}}
	if series != "" {
		path, uidTag, countTag = "studies/"+study+"/series", dcmjson.TagSeriesInstanceUID, dcmjson.TagNumberOfSeriesRelatedInstances
		q = url.Values{dcmjson.TagSeriesInstanceUID: {series}}
	}
	q.Set("includefield", countTag)
	uid := study
	if series != "" {
		uid = series
	}
	list, err := src.Search(ctx, path, q)
	for _, ds := range list {
		if ds.String(uidTag) == uid {
			if n, ok := ds.Int(countTag); ok {
				return n, true, err
			}
		}
	}
	return 0, false, err
}

// logListingFailures writes one line per holder that could not be listed. The detail of a
// listing that could not be proved complete is logged; other errors are logged by their reason
// only, because their text may carry a URL with UIDs.
func (s *Server) logListingFailures(c *echo.Context, failed []upstream.Outcome) {
	for _, f := range failed {
		attrs := []any{"request_id", requestID(c), "source", f.Source.ID, "reason", fallback.Reason(upstream.Classify(f.Err))}
		if errors.Is(f.Err, fallback.ErrListingIncomplete) || errors.Is(f.Err, fallback.ErrListedNothing) {
			attrs = append(attrs, "detail", f.Err.Error())
		}
		s.log.Warn("could not list the instances a holder has", attrs...)
	}
}

package upstream

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// Locator answers "which trusts hold study X?", from what earlier searches saw or else by
// asking every source. It prunes fan-outs: a retrieve goes only to holders.
type Locator struct {
	sources []*Source // by priority
	byID    map[string]*Source
	store   *cache.Store
	ttl     time.Duration
	log     *slog.Logger
}

// Location is where a study is held.
type Location struct {
	// Holders are the sources known to hold the study, preferred first.
	Holders []*Source
	// Outcomes are the per-source results of the search that found them; empty when the
	// location was remembered. A failed outcome means that source may hold the study too.
	Outcomes []Outcome
}

// Unreached lists sources that could not be asked, and so may hold part of the study.
func (l Location) Unreached() []Outcome {
	var out []Outcome
	for _, o := range l.Outcomes {
		if o.Failed() {
			out = append(out, o)
		}
	}
	return out
}

// NewLocator returns a locator over sources that remembers locations in store for ttl (a
// nil store remembers nothing). Entries are indexed under their study, so purging a patient
// removes where their studies are held too.
func NewLocator(sources []*Source, store *cache.Store, ttl time.Duration, log *slog.Logger) *Locator {
	l := &Locator{sources: ByPriority(sources), byID: make(map[string]*Source), store: store, ttl: ttl, log: log}
	for _, s := range sources {
		l.byID[s.ID] = s
	}
	return l
}

// Sources returns every source, preferred first.
func (l *Locator) Sources() []*Source { return l.sources }

// Source returns the source with the given id.
func (l *Locator) Source(id string) (*Source, bool) {
	s, ok := l.byID[id]
	return s, ok
}

func (l *Locator) key(studyUID string) string { return l.store.Key("locator", studyUID) }

// Remember records that the study is held by the given sources. Call it only with a complete
// answer (every source answered), or the locator would later hide a holder.
func (l *Locator) Remember(ctx context.Context, studyUID string, holderIDs []string) {
	if l.store == nil || len(holderIDs) == 0 {
		return
	}
	key := l.key(studyUID)
	l.store.Put(ctx, key, []byte(strings.Join(holderIDs, ",")), cache.Freshness{Fresh: l.ttl},
		cache.Link{Index: l.store.StudyIndex(studyUID), Member: key})
}

// Forget drops what is remembered about a study, e.g. after a holder answered 404 for it.
func (l *Locator) Forget(ctx context.Context, studyUID string) {
	if l.store != nil {
		l.store.Forget(ctx, l.key(studyUID))
	}
}

// Locate finds the holders of a study. It returns no holders and no failed outcomes when no
// source holds it; no holders and failed outcomes when the answer is unknown.
func (l *Locator) Locate(ctx context.Context, studyUID string) Location {
	if l.store != nil {
		if e, ok := l.store.Lookup(ctx, "locator", l.key(studyUID)); ok && e.Fresh(l.store.Now()) {
			v := e.Value
			var loc Location
			for _, id := range strings.Split(string(v), ",") {
				if s, ok := l.byID[id]; ok {
					loc.Holders = append(loc.Holders, s)
				}
			}
			if len(loc.Holders) > 0 {
				return Location{Holders: ByPriority(loc.Holders)}
			}
		}
	}
	q := url.Values{dcmjson.TagStudyInstanceUID: {studyUID}}
	results := FanOut(ctx, l.sources, func(ctx context.Context, s *Source) (bool, error) {
		found, err := s.Search(ctx, "studies", q)
		if err != nil {
			return false, err
		}
		for _, ds := range found {
			if ds.String(dcmjson.TagStudyInstanceUID) == studyUID {
				return true, nil
			}
		}
		return false, nil
	})
	var loc Location
	var ids []string
	complete := true
	for _, r := range results {
		loc.Outcomes = append(loc.Outcomes, r.Outcome)
		if r.Err != nil {
			complete = false
			continue
		}
		if r.Value {
			loc.Holders = append(loc.Holders, r.Source)
			ids = append(ids, r.Source.ID)
		}
	}
	if complete {
		l.Remember(ctx, studyUID, ids)
	}
	return loc
}

package upstream

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// Locator answers "which trusts hold study X, and whose study is it?", from what earlier
// searches saw or else by asking every source. It prunes fan-outs: a retrieve goes only to
// holders; and it tells the front which patient a retrieve by UID concerns, before anything
// of the study is fetched.
type Locator struct {
	sources []*Source // by priority
	byID    map[string]*Source
	store   *cache.Store
	recent  recentWrites
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
	// Stale are the sources that failed now but whose stale cached answer (returned only to a
	// context that accepts stale copies) says they held the study; fallback.Locate judges
	// whether they are holders. They are in neither Holders nor Outcomes.
	Stale []Outcome
	// Patients are the patients the holders file the study under: each NHS number a holder's
	// answer names (normalised, NormaliseNHSNumber), once, the preferred holder's first; a
	// source in Stale adds those its stale answer named. A holder whose copy names no NHS
	// number (one filed under a local hospital number) adds none. The caller judges them before
	// anything of the study is fetched: none means the patient cannot be established, and more
	// than one is a wrong-patient hazard.
	Patients []string
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
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
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

func (l *Locator) key(studyUID string) string {
	return l.store.Key("locator", locatorFormat, studyUID)
}

// Remember records that the study is held by the given sources, and of which patients (NHS
// numbers; anything else is left out) it is: a later Locate returns them with the holders, and
// purging a patient removes where their studies are. Call it only with
// an answer that names every holder: every source answered, fresh, a search by the study's
// UID and nothing else (as Locate asks). A patient-filtered answer does not qualify: a trust
// that filed its copy under another identifier would be hidden for the TTL, and retrieves
// would miss its instances.
//
// Searches remember every study they list, repeated searches too; a location written less
// than half its TTL ago with the same holders is not written again.
func (l *Locator) Remember(ctx context.Context, studyUID string, holderIDs []string, patients ...string) {
	l.remember(ctx, studyUID, holderIDs, patients, false)
}

func (l *Locator) remember(ctx context.Context, studyUID string, holderIDs, patients []string, force bool) {
	if l.store == nil || len(holderIDs) == 0 {
		return
	}
	patients = addPatients(nil, patients...)
	value := string(locatorEntry{Holders: holderIDs, Patients: patients}.encode())
	now := l.store.Now()
	if !force && l.recent.seen(studyUID, value, now, l.ttl/2) {
		return
	}
	key := l.key(studyUID)
	study := l.store.StudyIndex(studyUID)
	links := []cache.Link{{Index: study, Member: key}}
	for _, p := range patients {
		links = append(links, cache.Link{Index: l.store.PatientIndex(p), Member: key}, cache.Link{Index: l.store.PatientIndex(p), Member: study})
	}
	l.store.Put(ctx, key, []byte(value), cache.Freshness{Fresh: l.ttl}, links...)
	l.recent.note(studyUID, value, now, l.ttl)
}

// recentWrites remembers, in process, which locations were written lately, so that repeated
// searches do not rewrite the same entries. It holds at most maxRecent studies, and nothing
// longer than the locator's TTL: when full, or that old, it starts again empty.
type recentWrites struct {
	mu    sync.Mutex
	m     map[string]recentWrite
	since time.Time // when m was started
}

type recentWrite struct {
	value string
	at    time.Time
}

const maxRecent = 20000

func (r *recentWrites) seen(study, value string, now time.Time, within time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.m[study]
	return ok && w.value == value && now.Sub(w.at) < within
}

func (r *recentWrites) note(study, value string, now time.Time, ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= maxRecent || now.Sub(r.since) > ttl {
		r.m, r.since = make(map[string]recentWrite), now
	}
	r.m[study] = recentWrite{value: value, at: now}
}

// Forget drops what is remembered about a study, e.g. after a holder answered 404 for it.
func (l *Locator) Forget(ctx context.Context, studyUID string) {
	if l.store != nil {
		l.store.Forget(ctx, l.key(studyUID))
		l.recent.forget(studyUID)
	}
}

// Remembered returns the holders of a study that the locator remembers (fresh), preferred
// first, without asking any source; none when it remembers nothing.
func (l *Locator) Remembered(ctx context.Context, studyUID string) []*Source {
	return l.remembered(ctx, studyUID).Holders
}

// remembered is the location of a study the locator remembers (fresh), holders and patients,
// without asking any source; no holders when it remembers nothing.
func (l *Locator) remembered(ctx context.Context, studyUID string) Location {
	if l.store == nil {
		return Location{}
	}
	e, ok := l.store.Lookup(ctx, "locator", l.key(studyUID))
	if !ok || !e.Fresh(l.store.Now()) {
		return Location{}
	}
	entry, ok := decodeLocatorEntry(e.Value)
	if !ok {
		return Location{}
	}
	var holders []*Source
	for _, id := range entry.Holders {
		if s, ok := l.byID[id]; ok {
			holders = append(holders, s)
		}
	}
	return Location{Holders: ByPriority(holders), Patients: entry.Patients}
}

// Locate finds the holders of a study, and the patients they file it under. It returns no
// holders and no failed outcomes when no source holds it; no holders and failed outcomes when
// the answer is unknown.
func (l *Locator) Locate(ctx context.Context, studyUID string) Location {
	if loc := l.remembered(ctx, studyUID); len(loc.Holders) > 0 {
		return loc
	}
	type found struct {
		holds    bool
		patients []string
	}
	results := FanOut(ctx, l.sources, func(ctx context.Context, s *Source) (found, error) {
		list, err := s.Search(ctx, "studies", locateQuery(s, studyUID))
		var f found
		for _, ds := range list {
			if ds.String(dcmjson.TagStudyInstanceUID) == studyUID {
				f.holds = true
				f.patients = addPatients(f.patients, s.NHSNumberOf(ds))
			}
		}
		return f, err
	})
	var loc Location
	var ids []string
	complete := true
	for _, r := range results {
		if r.Err != nil {
			complete = false
			if _, stale := AsStale(r.Err); stale && r.Value.holds {
				// The source held the study when its answer was cached, and cannot say now.
				loc.Stale = append(loc.Stale, r.Outcome)
				loc.Patients = addPatients(loc.Patients, r.Value.patients...)
				continue
			}
			loc.Outcomes = append(loc.Outcomes, r.Outcome)
			continue
		}
		loc.Outcomes = append(loc.Outcomes, r.Outcome)
		if r.Value.holds {
			loc.Holders = append(loc.Holders, r.Source)
			ids = append(ids, r.Source.ID)
			loc.Patients = addPatients(loc.Patients, r.Value.patients...)
		}
	}
	if complete {
		l.remember(ctx, studyUID, ids, loc.Patients, true)
	}
	return loc
}

func (r *recentWrites) forget(study string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, study)
}

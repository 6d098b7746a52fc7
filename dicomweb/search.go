package dicomweb

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

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

// searchRequest is a parsed search on its way through the pipeline.
type searchRequest struct {
	level  Level
	search *Search
	rep    media.Match
	// policy is the deployment's fallback policy with the request's partial=warn|fail applied.
	policy fallback.Policy
	// located are the patients the holders of the study a search within one is in file it
	// under (searchSources).
	located []string
}

// searchAnswer is a merged search answer: every result merged (all), the patient it concerns,
// the page of results, the trusts whose answers are in it, and what the client is told about
// it beyond fallback's verdict on the fan-out.
type searchAnswer struct {
	all       []*merged
	truncated int // answers cut at the per-source bound
	patient   string
	results   []dcmjson.Dataset
	disclosed []string
	warnings  []string
}

// searchHandler answers QIDO-RS searches (PS3.18 §10.6) at one level.
func (s *Server) searchHandler(level Level) echo.HandlerFunc {
	return func(c *echo.Context) error {
		q, err := s.parseSearchRequest(c, level)
		if err != nil {
			return err
		}
		if err := s.authorize(c, q.action()); err != nil {
			return err
		}
		ctx, cancel := s.deadline(c)
		defer cancel()
		sources, err := s.searchSources(ctx, q)
		if err != nil {
			return err
		}
		// A trust that cannot answer may be stood in for by its stale cached copy; fallback
		// decides, and the answer says so.
		fanCtx := s.staleOK(ctx)
		results := upstream.FanOut(fanCtx, sources, q.ask(s.cfg.Search.MaxResultsPerSource))
		v, err := s.judgeSearch(c, q, results)
		if err != nil {
			return err
		}
		ans, err := s.mergeSearch(c, q, results, v)
		if err != nil {
			return err
		}
		if ans.patient != "" {
			if err := s.authorizePatient(c, q.action(), ans.patient); err != nil {
				return err
			}
		}
		s.pageSearch(ctx, fanCtx, c, q, v, ans)
		return s.answerSearch(c, q, v, ans)
	}
}

// parseSearchRequest parses and validates the search (its path and query) and negotiates the
// answer's representation.
func (s *Server) parseSearchRequest(c *echo.Context, level Level) (*searchRequest, error) {
	search, err := parseSearchQuery(level, c.Param("study"), c.Param("series"), c.QueryString(), s.cfg.Search)
	if err != nil {
		return nil, err
	}
	rep, err := negotiate(c, jsonOffers, "a search answer")
	if err != nil {
		return nil, err
	}
	q := &searchRequest{level: level, search: search, rep: rep, policy: s.cfg.Fallback}
	switch c.QueryParam("partial") {
	case "fail":
		q.policy.Search = fallback.PartialFail
	case "warn":
		q.policy.Search = fallback.PartialWarn
	}
	return q, nil
}

// action is what the search asks to do, for authorization: search the patient it is scoped
// to, or the study it names.
func (q *searchRequest) action() policy.Action {
	study := q.search.StudyUID
	if v, ok := q.search.matchValue(dcmjson.TagStudyInstanceUID); ok && study == "" {
		study = v
	}
	return policy.Action{Kind: "search", PatientID: q.search.PatientID, StudyUID: study}
}

// ask is the search as asked of one trust, its answer bounded to maxResults.
func (q *searchRequest) ask(maxResults int) func(context.Context, *upstream.Source) ([]dcmjson.Dataset, error) {
	return func(ctx context.Context, src *upstream.Source) ([]dcmjson.Dataset, error) {
		return src.Search(ctx, q.search.upstreamPath(), q.search.upstreamQuery(src, maxResults))
	}
}

// searchSources are the trusts a search goes to: every one, or, for a search nested in a
// study, the study's holders and those that could not be asked where it is (and q.located the
// patients the holders file the study under).
func (s *Server) searchSources(ctx context.Context, q *searchRequest) ([]*upstream.Source, error) {
	study := q.search.StudyUID
	if study == "" {
		return s.locator.Sources(), nil
	}
	loc := s.locator.Locate(s.staleOK(ctx), study)
	q.located = loc.Patients
	holders, unreached := fallback.Locate(loc, s.cfg.Fallback)
	if len(holders) == 0 {
		return nil, decisionError(fallback.NotLocated(unreached, "The study", study, s.cfg.Fallback))
	}
	others := make([]*upstream.Source, len(unreached))
	for i, o := range unreached {
		others[i] = o.Source
	}
	return append(holders, upstream.ByPriority(others)...), nil
}

// judgeSearch asks fallback about the fan-out's outcomes (DecideSearch): its verdict, or the
// refusal to answer with.
func (s *Server) judgeSearch(c *echo.Context, q *searchRequest, results []upstream.Result[[]dcmjson.Dataset]) (fallback.Decision, error) {
	outcomes := make([]upstream.Outcome, len(results))
	for i, r := range results {
		outcomes[i] = r.Outcome
	}
	v := fallback.Decision{Status: http.StatusOK}
	err := s.judge(c, &v, "search", fallback.DecideSearch(outcomes, q.policy))
	return v, err
}

// mergeSearch merges the answers fallback let in (v): each filtered against the query,
// normalised and rewritten, merged across trusts in priority order, refused when it concerns
// more than one patient, and the patient it concerns found (searchPatient).
func (s *Server) mergeSearch(c *echo.Context, q *searchRequest, results []upstream.Result[[]dcmjson.Dataset], v fallback.Decision) (*searchAnswer, error) {
	ans := &searchAnswer{}
	answers, truncated := s.collect(c, q, results, v, s.rewriter(c), ans)
	ans.all, ans.truncated = mergeAnswers(q.level, byAnswerPriority(answers)), truncated
	if !q.search.scopedByPatient() {
		if err := onePatient(ans.all); err != nil {
			s.log.Warn("search refused: its answer concerns more than one patient", "request_id", requestID(c), "results", len(ans.all))
			return nil, err
		}
	}
	patient, err := s.searchPatient(c, q, ans.all)
	if err != nil {
		return nil, err
	}
	ans.patient = patient
	return ans, nil
}

// searchPatient is the patient a merged search answer concerns: the search's PatientID when it
// names one (every result was filtered to it), even for an empty answer, which tells the caller
// that patient has no imaging (so a user probing NHS numbers counts each one); none for an
// empty answer of any other search; else the one NHS number its results' copies, and the
// holders of the study a search within one is in, file them under (patientOf, which refuses
// none and several).
func (s *Server) searchPatient(c *echo.Context, q *searchRequest, all []*merged) (string, error) {
	if q.search.PatientID != "" {
		return q.search.PatientID, nil
	}
	if len(all) == 0 {
		return "", nil
	}
	patients := slices.Clone(q.located)
	var holders []string
	for _, m := range all {
		for _, p := range m.patients {
			if !slices.Contains(patients, p) {
				patients = append(patients, p)
			}
		}
		for _, h := range m.holders {
			if !slices.Contains(holders, h) {
				holders = append(holders, h)
			}
		}
	}
	return s.patientOf(c, patients, "this search's answer", holders)
}

// pageSearch finishes an answer its patient's authorization let through: sorted, remembered
// by the locator when complete, paged, and counted across copies (unionCounts, under fanCtx).
func (s *Server) pageSearch(ctx, fanCtx context.Context, c *echo.Context, q *searchRequest, v fallback.Decision, ans *searchAnswer) {
	all, rw := ans.all, s.rewriter(c)
	sortResults(all)
	// Only a complete answer to a search by study UID alone names every holder; any other
	// would teach the locator to forget a trust whose copy the search did not match.
	if fallback.Complete(v, ans.truncated) && q.search.locatesCompletely() {
		s.remember(ctx, all)
	}
	items, remaining := page(all, q.search.Offset, q.search.Limit)
	counts, unlisted := s.unionCounts(fanCtx, q.level, q.search, items, v.StaleIDs())
	s.logListingFailures(c, unlisted)
	ans.warnings = append(ans.warnings, counts...)
	for _, m := range items {
		finish(q.level, m, q.search, rw)
		ans.results = append(ans.results, m.ds)
	}
	ans.warnings = append(ans.warnings, s.pagingNotes(q, remaining)...)
}

// collect takes the answers of the trusts fallback let in (answered, or stood in for by a
// stale copy), filtered against the query, normalised and rewritten. It counts the answers cut
// at the per-source bound, each named in a Warning.
func (s *Server) collect(c *echo.Context, q *searchRequest, results []upstream.Result[[]dcmjson.Dataset], v fallback.Decision, rw *rewriter, ans *searchAnswer) (answers []sourceAnswer, truncated int) {
	staleIDs := v.StaleIDs()
	max := s.cfg.Search.MaxResultsPerSource
	for _, r := range results {
		if r.Err != nil && !staleIDs[r.Source.ID] {
			continue
		}
		ans.disclosed = append(ans.disclosed, r.Source.ID)
		kept, dropped := filterAnswer(q.search, r.Source, r.Value)
		if dropped > 0 {
			s.log.Warn("dropped search results that did not match the query", "request_id", requestID(c), "source", r.Source.ID, "dropped", dropped)
		}
		if fallback.Truncated(len(r.Value), max) {
			ans.warnings = append(ans.warnings, fallback.TruncatedWarning(r.Source, max, s.agent()))
			truncated++
		}
		for _, ds := range kept {
			normalise(ds, r.Source, s.cfg.PatientIDIssuer)
			rw.rewriteDataset(ds, r.Source)
		}
		answers = append(answers, sourceAnswer{source: r.Source, results: kept})
	}
	return answers, truncated
}

// remember teaches the locator where each study of a complete answer is held, and whose it is
// (every NHS number its copies name).
func (s *Server) remember(ctx context.Context, all []*merged) {
	for _, m := range all {
		s.locator.Remember(ctx, m.ds.String(dcmjson.TagStudyInstanceUID), m.holders, m.patients...)
	}
}

// pagingNotes are the Warnings PS3.18 gives a search about its own handling: fuzzy matching
// not done, the limit reduced, results left for another page.
func (s *Server) pagingNotes(q *searchRequest, remaining int) []string {
	var notes []string
	if q.search.Fuzzy {
		notes = append(notes, fallback.Warning(s.agent(), "The fuzzymatching parameter is not supported. Only literal matching has been performed."))
	}
	if q.search.LimitClamped {
		notes = append(notes, fallback.Warning(s.agent(), fmt.Sprintf("The limit was reduced to the maximum of %d.", s.cfg.Search.MaxLimit)))
	}
	if remaining > 0 {
		notes = append(notes, fallback.Warning(s.agent(), fmt.Sprintf("There are %d additional results that can be requested.", remaining)))
	}
	return notes
}

// answerSearch sends the answer with fallback's Warnings first (startDatasets records the
// access before the status line).
func (s *Server) answerSearch(c *echo.Context, q *searchRequest, v fallback.Decision, ans *searchAnswer) error {
	v.Warnings = append(append([]string(nil), v.Warnings...), ans.warnings...)
	ev := audit.Event{PatientID: q.search.PatientID, StudyUIDs: studyUIDs(ans.results), Sources: ans.disclosed}
	w, err := s.startDatasets(c, q.rep, v, ev)
	if err != nil {
		return err
	}
	for _, ds := range ans.results {
		if err := w.write(ds); err != nil {
			return err
		}
	}
	return w.close()
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
			id = "unknown#" + strconv.Itoa(i)
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

// studyUIDs are the studies a list of results are of, each once.
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

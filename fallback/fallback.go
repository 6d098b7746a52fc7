// Package fallback is the one place that turns what happened at each trust into what the
// client is told: the status, the DICOMweb Warning headers, and whether partial answers may be
// given. It performs no I/O; every input arrives as upstream outcomes.
//
// The rows of the degraded-mode table in DESIGN.md are implemented here, each named in the
// hazard log with the test that proves it.
package fallback

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/upstream"
)

// Partial says what to do when some sources could not answer.
type Partial string

// Partial-answer policies.
const (
	// PartialWarn answers with what is available plus a Warning naming what is missing.
	PartialWarn Partial = "warn"
	// PartialFail refuses the request (503) rather than answer incompletely.
	PartialFail Partial = "fail"
	// Partial206 answers a retrieve with 206 Partial Content and a Warning, as PS3.18 did
	// before CP-2418, for clients that still expect it.
	Partial206 Partial = "206"
)

// Missing is a source that contributed nothing to an answer, and why.
type Missing struct {
	ID, Name string
	Reason   string
}

// Stale is a source whose part of an answer is a stale cached copy, because the source could
// not answer.
type Stale struct {
	ID, Name string
	// Reason is why the source could not answer (after "its PACS").
	Reason string
	// Age is how long ago the copy was cached.
	Age time.Duration
}

// Decision is what the client is told about the completeness of an answer.
type Decision struct {
	// Status is the HTTP status to answer with: 200 to go ahead, 503 to refuse.
	Status int
	// Warnings are complete Warning header values, in order.
	Warnings []string
	// Missing lists every source left out.
	Missing []Missing
	// Stale lists every source whose stale cached copy is used in place of its answer.
	Stale []Stale
	// RetryAfter is set with a 503.
	RetryAfter time.Duration
	// Message explains a refusal in words a clinician's system can show.
	Message string
}

// OK reports whether the request may be answered.
func (d Decision) OK() bool { return d.Status < 300 }

// Policy is the deployment's and the request's choice for partial answers, and how the
// decisions are signed.
type Policy struct {
	// Agent is the warn-agent of the Warning headers decisions make: the proxy's host, from its
	// public URL ("nirproxy" when empty).
	Agent string
	// Search is for searches: PartialWarn (default) or PartialFail.
	Search Partial
	// Retrieve is for study and series retrieves and metadata: PartialFail (default),
	// PartialWarn or Partial206. See the hazard log (H2) for why fail is the default.
	Retrieve Partial
	// RetryAfter is suggested to clients refused because no source could answer.
	RetryAfter time.Duration
	// ServeStale lets a source that cannot answer be stood in for by its stale cached copy
	// (when the cache returned one), marked with Warning 110 and a 299 naming the source and
	// the copy's age. Without it such outcomes are failures like any other.
	ServeStale bool
}

func missingOf(outcomes []upstream.Outcome) []Missing {
	var out []Missing
	for _, o := range outcomes {
		if o.Failed() {
			out = append(out, Missing{ID: o.Source.ID, Name: o.Source.Name, Reason: reason(o.Err)})
		}
	}
	return out
}

// DecideSearch judges a search fanned out to the given sources. A source that failed but whose
// stale copy the cache returned (an *upstream.StaleError) counts as answered when p.ServeStale: its copy is used and
// named in the warnings; it is neither missing nor a reason to refuse.
func DecideSearch(outcomes []upstream.Outcome, p Policy) Decision {
	failed, stale := splitStale(outcomes, p)
	missing := missingOf(failed)
	d := Decision{Status: http.StatusOK, Missing: missing}
	d.staleWarnings(stale, p.Agent, func(s Stale) string {
		return fmt.Sprintf("Results from %s (%s) are from a copy cached %s ago: its PACS %s", s.ID, s.Name, age(s.Age), s.Reason)
	})
	if len(missing) == 0 {
		return d
	}
	for _, m := range missing {
		d.Warnings = append(d.Warnings, Warning(p.Agent, fmt.Sprintf("Results from %s (%s) are missing: its PACS %s", m.ID, m.Name, m.Reason)))
	}
	required := false
	for _, o := range failed {
		if o.Source.Required {
			required = true
		}
	}
	switch {
	case len(missing) == len(outcomes):
		d.Status = http.StatusServiceUnavailable
		d.Message = "No source could answer the search: " + describe(missing)
	case required:
		d.Status = http.StatusServiceUnavailable
		d.Message = "A required source could not answer the search: " + describe(missing)
	case p.Search == PartialFail:
		d.Status = http.StatusServiceUnavailable
		d.Message = "The search was refused because some sources could not answer (partial=fail): " + describe(missing)
	}
	if d.Status == http.StatusServiceUnavailable {
		d.RetryAfter = retryAfter(p)
	}
	return d
}

// DecideStale judges the answers of sources that failed but whose stale cached copies the
// cache returned, for a retrieve or its metadata (what: "The metadata of the study"). Under
// p.ServeStale the copies are used: 200 with Warning 110 and a 299 per source naming its age.
// Otherwise the outcomes are judged as failures by DecideRetrieve.
func DecideStale(outcomes []upstream.Outcome, what string, p Policy) Decision {
	failed, stale := splitStale(outcomes, p)
	d := DecideRetrieve(failed, what, p)
	if !d.OK() {
		return d
	}
	s := Decision{Status: d.Status}
	s.staleWarnings(stale, p.Agent, func(st Stale) string {
		return fmt.Sprintf("%s from %s (%s) is a copy cached %s ago: its PACS %s", what, st.ID, st.Name, age(st.Age), st.Reason)
	})
	return Merge(s, d)
}

// age says how old a copy is, to the second.
func age(d time.Duration) string {
	if d < time.Second {
		return "less than 1s"
	}
	return d.Truncate(time.Second).String()
}

// splitStale separates outcomes whose stale copy may stand in (under p.ServeStale) from
// plain failures; successes are in neither.
func splitStale(outcomes []upstream.Outcome, p Policy) (failed []upstream.Outcome, stale []Stale) {
	for _, o := range outcomes {
		if !o.Failed() {
			continue
		}
		if se, ok := upstream.AsStale(o.Err); ok && p.ServeStale {
			stale = append(stale, Stale{ID: o.Source.ID, Name: o.Source.Name, Reason: reason(se.Err), Age: se.Age})
			continue
		}
		failed = append(failed, o)
	}
	return failed, stale
}

// staleWarnings records the stale sources with Warning 110 ("Response is Stale", RFC 7234
// §5.5.1) once and a 299 per source whose text text makes.
func (d *Decision) staleWarnings(stale []Stale, agent string, text func(Stale) string) {
	if len(stale) == 0 {
		return
	}
	d.Stale = append(d.Stale, stale...)
	d.Warnings = append(d.Warnings, WarningCode(110, agent, "Response is Stale"))
	for _, s := range stale {
		d.Warnings = append(d.Warnings, Warning(agent, text(s)))
	}
}

// StaleIDs is the set of source ids whose stale copies the decision uses.
func (d Decision) StaleIDs() map[string]bool {
	out := make(map[string]bool, len(d.Stale))
	for _, s := range d.Stale {
		out[s.ID] = true
	}
	return out
}

// DecideRetrieve judges a study or series retrieve (or its metadata) when some sources that
// may hold parts of the study could not be reached. PS3.18 no longer allows 206 here
// (CP-2418), and a plain 200 claims completeness, which viewers believe; so by default
// (PartialFail) the answer is 503 naming what is missing. PartialWarn answers 200 with what can
// be had plus the Warning; Partial206 answers 206 with it.
func DecideRetrieve(unreached []upstream.Outcome, what string, p Policy) Decision {
	missing := missingOf(unreached)
	d := Decision{Status: http.StatusOK, Missing: missing}
	if len(missing) == 0 {
		return d
	}
	for _, m := range missing {
		d.Warnings = append(d.Warnings, Warning(p.Agent, fmt.Sprintf("%s may be incomplete: the PACS of %s (%s) %s", what, m.ID, m.Name, m.Reason)))
	}
	switch p.Retrieve {
	case PartialWarn:
		return d
	case Partial206:
		d.Status = http.StatusPartialContent
		return d
	}
	d.Status = http.StatusServiceUnavailable
	d.Message = fmt.Sprintf("%s cannot be returned complete: %s", what, describe(missing))
	d.RetryAfter = retryAfter(p)
	return d
}

// Merge combines two decisions about one answer: the stronger status wins and every warning
// and missing source is kept.
func Merge(a, b Decision) Decision {
	out := a
	if b.Status > out.Status || out.Status == 0 {
		out.Status, out.Message, out.RetryAfter = b.Status, b.Message, b.RetryAfter
	}
	out.Warnings = append([]string(nil), a.Warnings...)
	for _, w := range b.Warnings {
		if !slices.Contains(out.Warnings, w) {
			out.Warnings = append(out.Warnings, w)
		}
	}
	out.Missing = append(append([]Missing(nil), a.Missing...), b.Missing...)
	out.Stale = append(append([]Stale(nil), a.Stale...), b.Stale...)
	return out
}

// Unavailable is the decision when the only possible holders all failed before sending anything.
func Unavailable(failed []upstream.Outcome, what string, p Policy) Decision {
	missing := missingOf(failed)
	d := Decision{Status: http.StatusServiceUnavailable, Missing: missing, RetryAfter: retryAfter(p)}
	d.Message = fmt.Sprintf("%s is held only by sources that cannot answer now: %s", what, describe(missing))
	for _, m := range missing {
		d.Warnings = append(d.Warnings, Warning(p.Agent, fmt.Sprintf("%s could not be had from %s (%s): its PACS %s", what, m.ID, m.Name, m.Reason)))
	}
	return d
}

func retryAfter(p Policy) time.Duration { return p.RetryAfter }

func describe(missing []Missing) string {
	parts := make([]string, 0, len(missing))
	for _, m := range missing {
		parts = append(parts, fmt.Sprintf("the PACS of %s (%s) %s", m.ID, m.Name, m.Reason))
	}
	return strings.Join(parts, "; ")
}

// Warning formats a Warning header value with code 299 (RFC 7234 §5.5, as PS3.18 uses it):
// `299 agent "text"`, escaping the text as a quoted-string.
func Warning(agent, text string) string {
	return WarningCode(299, agent, text)
}

// WarningCode formats a Warning header value with the given warn-code.
func WarningCode(code int, agent, text string) string {
	if agent == "" {
		agent = "nirproxy"
	}
	var b strings.Builder
	for _, r := range text {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			b.WriteByte(' ')
		case r > 0x7e:
			// Header values stay ASCII; trust names are ASCII in practice.
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return fmt.Sprintf("%03d %s \"%s\"", code, agent, b.String())
}

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

// Decision is what the client is told about the completeness of an answer.
type Decision struct {
	// Status is the HTTP status to answer with: 200 to go ahead, 503 to refuse.
	Status int
	// Warnings are complete Warning header values, in order.
	Warnings []string
	// Missing lists every source left out.
	Missing []Missing
	// RetryAfter is set with a 503.
	RetryAfter time.Duration
	// Message explains a refusal in words a clinician's system can show.
	Message string
}

// OK reports whether the request may be answered.
func (d Decision) OK() bool { return d.Status < 300 }

// Policy is the deployment's and the request's choice for partial answers.
type Policy struct {
	// Search is for searches: PartialWarn (default) or PartialFail.
	Search Partial
	// Retrieve is for study and series retrieves and metadata: PartialFail (default),
	// PartialWarn or Partial206. See the hazard log (H2) for why fail is the default.
	Retrieve   Partial
	RetryAfter time.Duration
}

// DefaultRetryAfter is suggested to clients refused because no source could answer.
const DefaultRetryAfter = 30 * time.Second

func missingOf(outcomes []upstream.Outcome) []Missing {
	var out []Missing
	for _, o := range outcomes {
		if o.Failed() {
			out = append(out, Missing{ID: o.Source.ID, Name: o.Source.Name, Reason: upstream.Reason(o.Err)})
		}
	}
	return out
}

// DecideSearch judges a search fanned out to the given sources. agent is the warn-agent
// (the proxy's host) for Warning headers.
func DecideSearch(outcomes []upstream.Outcome, agent string, p Policy) Decision {
	missing := missingOf(outcomes)
	d := Decision{Status: http.StatusOK, Missing: missing}
	if len(missing) == 0 {
		return d
	}
	for _, m := range missing {
		d.Warnings = append(d.Warnings, Warning(agent, fmt.Sprintf("Results from %s (%s) are missing: its PACS %s", m.ID, m.Name, m.Reason)))
	}
	required := false
	for _, o := range outcomes {
		if o.Failed() && o.Source.Required {
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

// DecideRetrieve judges a study or series retrieve (or its metadata) when some sources that
// may hold parts of the study could not be reached. PS3.18 no longer allows 206 here
// (CP-2418), and a plain 200 claims completeness, which viewers believe; so by default
// (PartialFail) the answer is 503 naming what is missing. PartialWarn answers 200 with what can
// be had plus the Warning; Partial206 answers 206 with it.
func DecideRetrieve(unreached []upstream.Outcome, what, agent string, p Policy) Decision {
	missing := missingOf(unreached)
	d := Decision{Status: http.StatusOK, Missing: missing}
	if len(missing) == 0 {
		return d
	}
	for _, m := range missing {
		d.Warnings = append(d.Warnings, Warning(agent, fmt.Sprintf("%s may be incomplete: the PACS of %s (%s) %s", what, m.ID, m.Name, m.Reason)))
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
	out.Warnings = append(append([]string(nil), a.Warnings...), b.Warnings...)
	out.Missing = append(append([]Missing(nil), a.Missing...), b.Missing...)
	return out
}

// Unavailable is the decision when the only possible holders all failed before sending anything.
func Unavailable(failed []upstream.Outcome, what, agent string, p Policy) Decision {
	missing := missingOf(failed)
	d := Decision{Status: http.StatusServiceUnavailable, Missing: missing, RetryAfter: retryAfter(p)}
	d.Message = fmt.Sprintf("%s is held only by sources that cannot answer now: %s", what, describe(missing))
	for _, m := range missing {
		d.Warnings = append(d.Warnings, Warning(agent, fmt.Sprintf("%s could not be had from %s (%s): its PACS %s", what, m.ID, m.Name, m.Reason)))
	}
	return d
}

func retryAfter(p Policy) time.Duration {
	if p.RetryAfter > 0 {
		return p.RetryAfter
	}
	return DefaultRetryAfter
}

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

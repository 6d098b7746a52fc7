package fallback

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/upstream"
)

// Reason words a failure at a source, for the clinicians who read Warnings and the operators
// who read /status and incidents: a short, identifier-free predicate that reads after "its
// PACS" ("timed out", "is unreachable", "has an open circuit breaker", "answered 502", ...).
func Reason(f upstream.Failure) string {
	switch f.Class {
	case upstream.ClassOK:
		return "answered"
	case upstream.ClassCircuitOpen:
		return "has an open circuit breaker"
	case upstream.ClassBusy:
		return "is busy (every connection to it is in use)"
	case upstream.ClassStalled:
		return "stalled while sending"
	case upstream.ClassTimeout:
		return "timed out"
	case upstream.ClassCancelled:
		return "request cancelled"
	case upstream.ClassNotFound, upstream.ClassRefused, upstream.ClassServerError:
		return fmt.Sprintf("answered %d", f.Status)
	case upstream.ClassInvalid:
		return "sent an invalid answer"
	}
	return "is unreachable"
}

// reason is Reason of err's class.
func reason(err error) string { return Reason(upstream.Classify(err)) }

// Locate judges what locating a study found: the holders to ask for it, preferred first, and
// the sources that could not be asked (which may hold it too). A source whose stale cached
// answer says it held the study stays a holder under p.ServeStale: what it is then asked for
// is judged on its own (a stale copy of its metadata, marked; a 503 for pixel data, which is
// never cached). Otherwise it could not be asked, like any other failure.
func Locate(loc upstream.Location, p Policy) (holders []*upstream.Source, unreached []upstream.Outcome) {
	holders = loc.Holders
	unreached = loc.Unreached()
	if len(loc.Stale) == 0 {
		return holders, unreached
	}
	if !p.ServeStale {
		return holders, append(unreached, loc.Stale...)
	}
	all := append([]*upstream.Source(nil), holders...)
	for _, o := range loc.Stale {
		all = append(all, o.Source)
	}
	return upstream.ByPriority(all), unreached
}

// NotLocated is the decision when locating a study found no holder: 404 when every source
// answered that it holds none of it, 503 naming the sources that could not be asked, which
// may.
func NotLocated(unreached []upstream.Outcome, what, study string, p Policy) Decision {
	if len(unreached) > 0 {
		return Unavailable(unreached, what, p)
	}
	return Decision{Status: http.StatusNotFound, Message: fmt.Sprintf("No trust holds study %s.", study)}
}

// NoCopy is the decision when no holder sent a resource (every one tried failed or answered
// 404). tried are the holders' outcomes; unreached the sources that could not be asked while
// locating the study, which may hold what every holder lacks. In order:
//   - a holder refused the representation asked for (406): 406, because the others failing
//     too does not make the request one that could succeed later;
//   - some holder failed otherwise: 503 naming them (Unavailable);
//   - every holder answered 404 and some source could not be asked: 503 naming those;
//   - every holder answered 404: 404.
//
// A 404 here means the study's remembered holders no longer have it: the caller forgets
// where a study it asked for whole is held.
func NoCopy(tried, unreached []upstream.Outcome, what string, p Policy) Decision {
	var failed []upstream.Outcome
	for _, o := range tried {
		if upstream.Classify(o.Err).Class != upstream.ClassNotFound {
			failed = append(failed, o)
		}
	}
	if len(failed) == 0 {
		failed = unreached
	}
	if len(failed) > 0 {
		return NotSent(failed, what, p)
	}
	return Decision{Status: http.StatusNotFound, Message: fmt.Sprintf("%s was not found at any trust that holds the study.", what)}
}

// NotSent is the decision when every holder that has a resource failed to send it: 406 when
// one refused the representation asked for (the others failing too does not make the request
// one that could succeed later), else 503 naming them (Unavailable).
func NotSent(failed []upstream.Outcome, what string, p Policy) Decision {
	for _, o := range failed {
		if upstream.Classify(o.Err).RefusedAs(http.StatusNotAcceptable) {
			return Decision{Status: http.StatusNotAcceptable, Message: fmt.Sprintf("No trust holding %s can send it in the representation asked for.", strings.ToLower(what))}
		}
	}
	return Unavailable(failed, what, p)
}

// Absent is the decision when the holders of a study or series listed none of it, or sent no
// metadata of it: 404 when every source that may hold it was asked; 503 naming the others when
// so far a partial-answer policy let the request go on without some (so names them as
// missing), because the resource may be theirs. path names the resource in the 404.
func Absent(so Decision, what, path string, p Policy) Decision {
	if len(so.Missing) == 0 {
		return Decision{Status: http.StatusNotFound, Message: fmt.Sprintf("%s %s holds no instances at any trust.", what, path)}
	}
	return Decision{Status: http.StatusServiceUnavailable, RetryAfter: retryAfter(p), Warnings: so.Warnings, Missing: so.Missing,
		Message: fmt.Sprintf("%s is held only by trusts that cannot answer now: %s", what, describe(so.Missing))}
}

// FailedOver is the decision for an answer had from one holder after others failed: it goes
// ahead (200), with a Warning naming each trust whose answer was refused as invalid (of
// another media type, malformed, over a size limit), so the client, and whoever reads its
// logs, learns which trust misbehaved. Other failures failed over from (a time-out, a 404 of
// a copy) add nothing: the answer is whole.
func FailedOver(tried []upstream.Outcome, what, agent string) Decision {
	d := Decision{Status: http.StatusOK}
	for _, o := range tried {
		if upstream.Classify(o.Err).Class == upstream.ClassInvalid {
			d.Warnings = append(d.Warnings, Warning(agent, fmt.Sprintf("%s was had from another trust: the answer of %s (%s) was refused: its PACS %s", what, o.Source.ID, o.Source.Name, reason(o.Err))))
		}
	}
	return d
}

// ThumbnailUnsupported reports whether a holder's failure to send a thumbnail means it makes
// none (Orthanc answers 404, 400, 406 or 501), so one is derived from a rendering instead.
// At instance level a 404 may be of the instance, not of the resource: it says nothing of
// the holder, so it is not remembered (remember is false).
func ThumbnailUnsupported(err error, instanceLevel bool) (derive, remember bool) {
	f := upstream.Classify(err)
	if !f.RefusedAs(http.StatusNotFound, http.StatusBadRequest, http.StatusNotImplemented, http.StatusNotAcceptable) {
		return false, false
	}
	return true, f.Status != http.StatusNotFound || !instanceLevel
}

// Truncated reports whether a source's search answer of n results was cut at the proxy's
// per-source bound max (n reaching it): the source may have more matches than were merged, so
// the answer is incomplete.
func Truncated(n, max int) bool { return max > 0 && n >= max }

// TruncatedWarning tells the client that a source's answer was cut at max results.
func TruncatedWarning(src *upstream.Source, max int, agent string) string {
	return Warning(agent, fmt.Sprintf("%s (%s) has more than %d matches; only the first %d were merged. Narrow the search.", src.ID, src.Name, max-1, max))
}

// Complete reports whether a search answer judged d, with truncated answers cut at the
// per-source bound, names everything its sources hold: no source missing, none stood in for
// by a stale copy (complete only as of its age), none cut short. Only a complete answer may
// teach the locator where studies are held.
func Complete(d Decision, truncated int) bool {
	return len(d.Missing) == 0 && len(d.Stale) == 0 && truncated == 0
}

// CompleteFirst is the failover order among the holders of a study or series retrieve: the
// holders whose copy has every instance held anywhere (held(id) == total) first, then the
// others, each group in the order given (the sources' priority). A plan led by a complete
// copy fetches it alone.
func CompleteFirst(holders []*upstream.Source, held func(id string) int, total int) []*upstream.Source {
	var complete, partial []*upstream.Source
	for _, h := range holders {
		if held(h.ID) == total {
			complete = append(complete, h)
		} else {
			partial = append(partial, h)
		}
	}
	return append(complete, partial...)
}

// Triage sorts the results of asking every holder at once for its part of an answer: usable
// are the answers to use, in order, including stale cached copies (present) that stand in
// for holders that failed, which are also listed in stale to be judged (DecideStale); a 404 is
// a copy that lacks the resource, which the others answer for; every other failure is in
// failed, to be judged (DecideRetrieve). Stale copies arrive only when the request accepted
// them (p.ServeStale).
func Triage[T any](results []upstream.Result[T], present func(T) bool) (usable []upstream.Result[T], stale, failed []upstream.Outcome) {
	for _, r := range results {
		_, isStale := upstream.AsStale(r.Err)
		switch {
		case r.Err == nil:
			usable = append(usable, r)
		case isStale && present(r.Value):
			usable = append(usable, r)
			stale = append(stale, r.Outcome)
		case upstream.Classify(r.Err).Class == upstream.ClassNotFound:
		default:
			failed = append(failed, r.Outcome)
		}
	}
	return usable, stale, failed
}

// Health is the state of the service as operators (GET /status) and load balancers
// (GET /readyz) see it.
type Health struct {
	// Status is "ok", "degraded" when some source's breaker is not closed (open or probing),
	// or "unavailable" when none is closed.
	Status string
	// Ready is false when every source's breaker is open: no data request could be answered.
	// A half-open breaker lets probes through, so its source counts as available.
	Ready bool
	// Sources are the sources' states, each last failure worded.
	Sources []SourceHealth
}

// SourceHealth is a source's state as GET /status shows it.
type SourceHealth struct {
	upstream.Status
	// LastFailure words Status.LastFailure (Reason).
	LastFailure string `json:"lastFailure,omitempty"`
}

// Assess judges the health of the service from its sources' states.
func Assess(sources []upstream.Status) Health {
	h := Health{Status: "ok"}
	notClosed, open := 0, 0
	for _, st := range sources {
		sh := SourceHealth{Status: st}
		if st.LastFailure != nil {
			sh.LastFailure = Reason(*st.LastFailure)
		}
		h.Sources = append(h.Sources, sh)
		if st.Breaker != "closed" {
			notClosed++
		}
		if st.Breaker == "open" {
			open++
		}
	}
	switch {
	case notClosed == len(sources):
		h.Status = "unavailable"
	case notClosed > 0:
		h.Status = "degraded"
	}
	h.Ready = open < len(sources)
	return h
}

// ErrListedNothing is the failure of a holder that lists none of the instances of a study (or
// series) it holds: its count is unknown, not 0.
var ErrListedNothing = errors.New("holds it but listed none of its instances")

// ErrListingIncomplete is a listing that could not be proved complete: the holder repeated a
// page (it ignores offset, so each answer may be cut short) and its own count does not vouch
// for what was listed, or it did not stop within the page bound.
var ErrListingIncomplete = errors.New("listing may be incomplete")

// ListingReason says, after a trust's name, why its listing is missing from counts.
func ListingReason(err error) string {
	switch {
	case errors.Is(err, ErrListedNothing):
		return "its PACS listed none of the instances it holds"
	case errors.Is(err, ErrListingIncomplete):
		return "its PACS's listing could not be proved complete"
	}
	return "its PACS " + reason(err)
}

// Count is the count of a result from the listings of its copies: n when the listings were
// exact (every holder listed), else only where n raises the count the answers gave (known,
// when ok), a lower bound, so a partial listing never lowers a known count nor turns an
// unknown one into 0. set is false when the count stays as it is.
func Count(known int64, ok bool, n int, exact bool) (count int64, set bool) {
	if exact || (n > 0 && (!ok || int64(n) > known)) {
		return int64(n), true
	}
	return known, false
}

// CountsLate tells the client that the counts of n results held by several trusts are the
// largest copy's: the request's time ran out before the copies could be listed.
func CountsLate(n int, agent string) string {
	return Warning(agent, fmt.Sprintf("The counts of %s held by more than one trust are the largest copy's, not the union of the copies: the request's time ran out before the copies could be listed.", results(n)))
}

// CountsUncounted tells the client that the counts of n results held by several trusts are the
// largest copy's: there were more such results than the proxy counts for one page.
func CountsUncounted(n int, agent string) string {
	return Warning(agent, fmt.Sprintf("The counts of %s held by more than one trust are the largest copy's, not the union of the copies: ask for fewer results (limit) to have them counted.", results(n)))
}

// CountsIncomplete tells the client that counts (what: "The counts of study 1.2.3 are") are
// incomplete, naming each trust that could not be listed and why.
func CountsIncomplete(what string, failed []upstream.Outcome, agent string) string {
	names := make([]string, len(failed))
	for i, f := range failed {
		names[i] = fmt.Sprintf("%s (%s) could not list its instances: %s", f.Source.ID, f.Source.Name, ListingReason(f.Err))
	}
	return Warning(agent, fmt.Sprintf("%s incomplete: %s.", what, strings.Join(names, "; ")))
}

// CountsUnlisted tells the client that the counts of the series a search found but no listing
// shows (a copy gone since the answer was cached, say) are the answers' own.
func CountsUnlisted(series []string, agent string) string {
	it, its := "it", "its"
	if len(series) > 1 {
		it, its = "them", "their"
	}
	names := make([]string, len(series))
	for i, s := range series {
		names[i] = "series " + s
	}
	return Warning(agent, fmt.Sprintf("The counts of %s are the answers' own, not the union of the copies: the trusts that hold %s listed none of %s instances.", strings.Join(names, ", "), it, its))
}

// results is "1 result" or "n results".
func results(n int) string {
	if n == 1 {
		return "1 result"
	}
	return fmt.Sprintf("%d results", n)
}

// Blame is who broke an answer aborted after its status line was sent.
type Blame string

// Who may break a streamed answer.
const (
	// BlameClientTimeout is a client that stopped reading for longer than its write deadline.
	BlameClientTimeout Blame = "client_timeout"
	// BlameClient is a client that went away.
	BlameClient Blame = "client"
	// BlameUpstream is a trust whose answer broke (ended early, invalid, stalled).
	BlameUpstream Blame = "upstream"
)

// Aborted judges who broke an aborted answer: the client, when it was cut off for not reading
// (cutOff) or has gone (clientGone); otherwise the trust. Only the client is cut off for its
// own pauses, and the trust is charged only for its own failures: a client's failure closes
// the trust's answer unread, which its breaker does not count.
func Aborted(cutOff, clientGone bool) Blame {
	switch {
	case cutOff:
		return BlameClientTimeout
	case clientGone:
		return BlameClient
	}
	return BlameUpstream
}

// AccessUndecidable is what a client is told when access cannot be checked now.
const AccessUndecidable = "Access cannot be checked now, so it is refused; try again shortly."

// Refused is the decision for a request access control refused, before any trust was asked:
// its status and message. Two rows of the degraded-mode table are refusals:
//   - a caller exceeds its limits: 429 with the limit's own wait, at least a second, so the
//     caller's requests never reach a trust (nor its breaker) until then;
//   - identity provider keys unreachable (H16): 503, never let through, with the wait given or
//     else retryAfter, and AccessUndecidable when no message is given.
//
// A 401 or 403 carries no Retry-After: asking again will not change it.
func Refused(status int, message string, wait, retryAfter time.Duration) Decision {
	d := Decision{Status: status, Message: message}
	switch status {
	case http.StatusTooManyRequests:
		d.RetryAfter = max(wait, time.Second)
	case http.StatusServiceUnavailable:
		d.RetryAfter = wait
		if wait <= 0 {
			d.RetryAfter = retryAfter
		}
		if message == "" {
			d.Message = AccessUndecidable
		}
	}
	return d
}

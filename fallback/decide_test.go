package fallback

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/upstream"
)

// The tests in this file pin the decisions of decide.go: each case names the situation, and
// every word the client is told is compared in full.

var (
	notFound      = &upstream.StatusError{Source: "RXA", Status: http.StatusNotFound}
	badRequest    = &upstream.StatusError{Source: "RXA", Status: http.StatusBadRequest}
	notAcceptable = &upstream.StatusError{Source: "RXA", Status: http.StatusNotAcceptable}
	internalError = &upstream.StatusError{Source: "RXA", Status: http.StatusInternalServerError}
	notImpl       = &upstream.StatusError{Source: "RXA", Status: http.StatusNotImplemented}
)

// w299 is the Warning header value `299 agent "text"` for text that needs no escaping.
func w299(text string) string { return `299 ` + agent + ` "` + text + `"` }

// ranked is a source with a priority, for the orders fallback keeps.
func ranked(id string, priority int) *upstream.Source {
	return &upstream.Source{SourceConfig: upstream.SourceConfig{ID: id, Name: id + " Trust", Priority: priority}}
}

// ids lists the sources' ids, in order.
func ids(sources []*upstream.Source) []string {
	var out []string
	for _, s := range sources {
		out = append(out, s.ID)
	}
	return out
}

// outcomeIDs lists the outcomes' source ids, in order.
func outcomeIDs(os []upstream.Outcome) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.Source.ID)
	}
	return out
}

// checkDecision compares every field of a decision.
func checkDecision(t *testing.T, got, want Decision) {
	t.Helper()
	if got.Status != want.Status {
		t.Errorf("Status = %d; want %d", got.Status, want.Status)
	}
	if got.Message != want.Message {
		t.Errorf("Message = %q;\nwant      %q", got.Message, want.Message)
	}
	if got.RetryAfter != want.RetryAfter {
		t.Errorf("RetryAfter = %v; want %v", got.RetryAfter, want.RetryAfter)
	}
	if !slices.Equal(got.Warnings, want.Warnings) {
		t.Errorf("Warnings = %q;\nwant       %q", got.Warnings, want.Warnings)
	}
	if !slices.Equal(got.Missing, want.Missing) {
		t.Errorf("Missing = %+v; want %+v", got.Missing, want.Missing)
	}
	if !slices.Equal(got.Stale, want.Stale) {
		t.Errorf("Stale = %+v; want %+v", got.Stale, want.Stale)
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		name string
		f    upstream.Failure
		want string
	}{
		{name: "ok", f: upstream.Failure{Class: upstream.ClassOK}, want: "answered"},
		{name: "cancelled", f: upstream.Failure{Class: upstream.ClassCancelled}, want: "request cancelled"},
		{name: "404", f: upstream.Failure{Class: upstream.ClassNotFound, Status: 404}, want: "answered 404"},
		{name: "406", f: upstream.Failure{Class: upstream.ClassRefused, Status: 406}, want: "answered 406"},
		{name: "429", f: upstream.Failure{Class: upstream.ClassRefused, Status: 429}, want: "answered 429"},
		{name: "circuit open", f: upstream.Failure{Class: upstream.ClassCircuitOpen}, want: "has an open circuit breaker"},
		{name: "busy", f: upstream.Failure{Class: upstream.ClassBusy}, want: "is busy (every connection to it is in use)"},
		{name: "stalled", f: upstream.Failure{Class: upstream.ClassStalled}, want: "stalled while sending"},
		{name: "timeout", f: upstream.Failure{Class: upstream.ClassTimeout}, want: "timed out"},
		{name: "503", f: upstream.Failure{Class: upstream.ClassServerError, Status: 503}, want: "answered 503"},
		{name: "invalid", f: upstream.Failure{Class: upstream.ClassInvalid}, want: "sent an invalid answer"},
		{name: "unreachable", f: upstream.Failure{Class: upstream.ClassUnreachable}, want: "is unreachable"},
		{name: "unknown class", f: upstream.Failure{Class: upstream.Class(200)}, want: "is unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Reason(tc.f); got != tc.want {
				t.Fatalf("Reason(%+v) = %q; want %q", tc.f, got, tc.want)
			}
		})
	}
}

func TestLocate(t *testing.T) {
	a, b, c, d := ranked("A", 1), ranked("B", 2), ranked("C", 3), ranked("D", 2)
	timeoutAt := func(s *upstream.Source) upstream.Outcome { return failed(s, timedOut) }
	staleAt := func(s *upstream.Source) upstream.Outcome { return staleOf(s, time.Minute, timedOut) }
	tests := []struct {
		name          string
		loc           upstream.Location
		policy        Policy
		wantHolders   []string
		wantUnreached []string
	}{
		{name: "nothing found"},
		{
			name:        "remembered holders",
			loc:         upstream.Location{Holders: []*upstream.Source{a, c}},
			wantHolders: []string{"A", "C"},
		},
		{
			name:          "failed sources are unreached, answered ones are not",
			loc:           upstream.Location{Holders: []*upstream.Source{c}, Outcomes: []upstream.Outcome{ok(a), timeoutAt(b), ok(c)}},
			wantHolders:   []string{"C"},
			wantUnreached: []string{"B"},
		},
		{
			name:          "stale holders are unreached without ServeStale",
			loc:           upstream.Location{Holders: []*upstream.Source{c}, Outcomes: []upstream.Outcome{timeoutAt(d), ok(c)}, Stale: []upstream.Outcome{staleAt(a), staleAt(b)}},
			wantHolders:   []string{"C"},
			wantUnreached: []string{"D", "A", "B"},
		},
		{
			name:          "stale holders merged in priority order under ServeStale",
			loc:           upstream.Location{Holders: []*upstream.Source{a, c}, Outcomes: []upstream.Outcome{ok(a), ok(c), timeoutAt(d)}, Stale: []upstream.Outcome{staleAt(b)}},
			policy:        Policy{ServeStale: true, RetryAfter: testRetryAfter},
			wantHolders:   []string{"A", "B", "C"},
			wantUnreached: []string{"D"},
		},
		{
			name:        "a stale holder tied in priority follows the holders that answered",
			loc:         upstream.Location{Holders: []*upstream.Source{a, b, c}, Stale: []upstream.Outcome{staleAt(d)}},
			policy:      Policy{ServeStale: true, RetryAfter: testRetryAfter},
			wantHolders: []string{"A", "B", "D", "C"},
		},
		{
			name:        "only stale holders under ServeStale",
			loc:         upstream.Location{Stale: []upstream.Outcome{staleAt(c), staleAt(a)}},
			policy:      Policy{ServeStale: true, RetryAfter: testRetryAfter},
			wantHolders: []string{"A", "C"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			holders, unreached := Locate(tc.loc, tc.policy)
			if got := ids(holders); !slices.Equal(got, tc.wantHolders) {
				t.Errorf("holders = %v; want %v", got, tc.wantHolders)
			}
			if got := outcomeIDs(unreached); !slices.Equal(got, tc.wantUnreached) {
				t.Errorf("unreached = %v; want %v", got, tc.wantUnreached)
			}
		})
	}
}

func TestNotLocated(t *testing.T) {
	tests := []struct {
		name      string
		unreached []upstream.Outcome
		policy    Policy
		want      Decision
	}{
		{
			name: "every source answered: 404",
			want: Decision{Status: http.StatusNotFound, Message: "No trust holds study 1.2.3."},
		},
		{
			name:      "some sources could not be asked: 503 naming them",
			unreached: []upstream.Outcome{failed(rxa, refused), failed(rxb, timedOut)},
			want: Decision{
				Status:     http.StatusServiceUnavailable,
				RetryAfter: testRetryAfter,
				Message:    "The study is held only by sources that cannot answer now: the PACS of RXA (Example Hospitals NHS Trust) is unreachable; the PACS of RXB (Other Teaching Hospitals NHS Foundation Trust) timed out",
				Missing:    []Missing{{ID: "RXA", Name: rxa.Name, Reason: "is unreachable"}, {ID: "RXB", Name: rxb.Name, Reason: "timed out"}},
				Warnings: []string{
					w299("The study could not be had from RXA (Example Hospitals NHS Trust): its PACS is unreachable"),
					w299("The study could not be had from RXB (Other Teaching Hospitals NHS Foundation Trust): its PACS timed out"),
				},
			},
		},
		{
			name:      "configured Retry-After",
			unreached: []upstream.Outcome{failed(rxc, circuitOpen)},
			policy:    Policy{RetryAfter: 7 * time.Second},
			want: Decision{
				Status:     http.StatusServiceUnavailable,
				RetryAfter: 7 * time.Second,
				Message:    "The study is held only by sources that cannot answer now: the PACS of RXC (Required Imaging Trust) has an open circuit breaker",
				Missing:    []Missing{{ID: "RXC", Name: rxc.Name, Reason: "has an open circuit breaker"}},
				Warnings:   []string{w299("The study could not be had from RXC (Required Imaging Trust): its PACS has an open circuit breaker")},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkDecision(t, NotLocated(tc.unreached, "The study", "1.2.3", full(tc.policy)), tc.want)
		})
	}
}

func TestNoCopy(t *testing.T) {
	const what = "The instance"
	unavailable := func(missing ...Missing) Decision {
		d := Decision{Status: http.StatusServiceUnavailable, RetryAfter: testRetryAfter, Missing: missing}
		var parts []string
		for _, m := range missing {
			parts = append(parts, fmt.Sprintf("the PACS of %s (%s) %s", m.ID, m.Name, m.Reason))
			d.Warnings = append(d.Warnings, w299(fmt.Sprintf("The instance could not be had from %s (%s): its PACS %s", m.ID, m.Name, m.Reason)))
		}
		d.Message = "The instance is held only by sources that cannot answer now: " + strings.Join(parts, "; ")
		return d
	}
	tests := []struct {
		name      string
		tried     []upstream.Outcome
		unreached []upstream.Outcome
		want      Decision
	}{
		{
			name:  "every holder answered 404: 404",
			tried: []upstream.Outcome{failed(rxa, notFound), failed(rxb, notFound)},
			want:  Decision{Status: http.StatusNotFound, Message: "The instance was not found at any trust that holds the study."},
		},
		{
			name:      "every holder answered 404, a source could not be asked: 503 naming it",
			tried:     []upstream.Outcome{failed(rxa, notFound)},
			unreached: []upstream.Outcome{failed(rxb, timedOut)},
			want:      unavailable(Missing{ID: "RXB", Name: rxb.Name, Reason: "timed out"}),
		},
		{
			name:      "a 406 among failures: 406",
			tried:     []upstream.Outcome{failed(rxa, badGateway), failed(rxb, notAcceptable), failed(rxc, notFound)},
			unreached: []upstream.Outcome{failed(rxb, timedOut)},
			want:      Decision{Status: http.StatusNotAcceptable, Message: "No trust holding the instance can send it in the representation asked for."},
		},
		{
			name:      "other failures: 503 naming only the holders that failed otherwise than 404",
			tried:     []upstream.Outcome{failed(rxa, notFound), failed(rxb, timedOut), failed(rxc, badGateway)},
			unreached: []upstream.Outcome{failed(rxa, refused)},
			want: unavailable(
				Missing{ID: "RXB", Name: rxb.Name, Reason: "timed out"},
				Missing{ID: "RXC", Name: rxc.Name, Reason: "answered 502"},
			),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkDecision(t, NoCopy(tc.tried, tc.unreached, what, full(Policy{RetryAfter: testRetryAfter})), tc.want)
		})
	}
}

func TestNotSent(t *testing.T) {
	tests := []struct {
		name   string
		failed []upstream.Outcome
		policy Policy
		want   Decision
	}{
		{
			name:   "one holder refused the representation: 406",
			failed: []upstream.Outcome{failed(rxa, notAcceptable)},
			want:   Decision{Status: http.StatusNotAcceptable, Message: "No trust holding the series can send it in the representation asked for."},
		},
		{
			name:   "a 406 after another failure: 406",
			failed: []upstream.Outcome{failed(rxa, timedOut), failed(rxb, fmt.Errorf("fetch series: %w", notAcceptable))},
			want:   Decision{Status: http.StatusNotAcceptable, Message: "No trust holding the series can send it in the representation asked for."},
		},
		{
			name:   "other failures: 503 naming them",
			failed: []upstream.Outcome{failed(rxa, badRequest), failed(rxb, garbage)},
			policy: Policy{RetryAfter: time.Minute},
			want: Decision{
				Status:     http.StatusServiceUnavailable,
				RetryAfter: time.Minute,
				Message:    "The series is held only by sources that cannot answer now: the PACS of RXA (Example Hospitals NHS Trust) answered 400; the PACS of RXB (Other Teaching Hospitals NHS Foundation Trust) sent an invalid answer",
				Missing:    []Missing{{ID: "RXA", Name: rxa.Name, Reason: "answered 400"}, {ID: "RXB", Name: rxb.Name, Reason: "sent an invalid answer"}},
				Warnings: []string{
					w299("The series could not be had from RXA (Example Hospitals NHS Trust): its PACS answered 400"),
					w299("The series could not be had from RXB (Other Teaching Hospitals NHS Foundation Trust): its PACS sent an invalid answer"),
				},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkDecision(t, NotSent(tc.failed, "The series", full(tc.policy)), tc.want)
		})
	}
}

func TestAbsent(t *testing.T) {
	missing := []Missing{{ID: "RXB", Name: rxb.Name, Reason: "timed out"}}
	warnings := []string{w299("The study may be incomplete: the PACS of RXB (Other Teaching Hospitals NHS Foundation Trust) timed out")}
	tests := []struct {
		name   string
		so     Decision
		policy Policy
		want   Decision
	}{
		{
			name: "every source asked: 404",
			so:   Decision{Status: http.StatusOK},
			want: Decision{Status: http.StatusNotFound, Message: "The study studies/1.2.3 holds no instances at any trust."},
		},
		{
			name: "stale copies stood in, none missing: 404",
			so:   Decision{Status: http.StatusOK, Stale: []Stale{{ID: "RXB", Name: rxb.Name, Reason: "timed out", Age: time.Minute}}, Warnings: []string{`110 ` + agent + ` "Response is Stale"`}},
			want: Decision{Status: http.StatusNotFound, Message: "The study studies/1.2.3 holds no instances at any trust."},
		},
		{
			name: "nothing judged yet: 404",
			want: Decision{Status: http.StatusNotFound, Message: "The study studies/1.2.3 holds no instances at any trust."},
		},
		{
			name:   "a source left out so far: 503 keeping the warnings",
			so:     Decision{Status: http.StatusOK, Missing: missing, Warnings: warnings},
			policy: Policy{Retrieve: PartialWarn, RetryAfter: testRetryAfter},
			want: Decision{
				Status:     http.StatusServiceUnavailable,
				RetryAfter: testRetryAfter,
				Message:    "The study is held only by trusts that cannot answer now: the PACS of RXB (Other Teaching Hospitals NHS Foundation Trust) timed out",
				Missing:    missing,
				Warnings:   warnings,
			},
		},
		{
			name:   "configured Retry-After",
			so:     Decision{Status: http.StatusPartialContent, Missing: missing, Warnings: warnings},
			policy: Policy{Retrieve: Partial206, RetryAfter: 2 * time.Second},
			want: Decision{
				Status:     http.StatusServiceUnavailable,
				RetryAfter: 2 * time.Second,
				Message:    "The study is held only by trusts that cannot answer now: the PACS of RXB (Other Teaching Hospitals NHS Foundation Trust) timed out",
				Missing:    missing,
				Warnings:   warnings,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkDecision(t, Absent(tc.so, "The study", "studies/1.2.3", tc.policy), tc.want)
		})
	}
}

func TestFailedOver(t *testing.T) {
	invalidRXA := w299("The instance was had from another trust: the answer of RXA (Example Hospitals NHS Trust) was refused: its PACS sent an invalid answer")
	invalidRXB := w299("The instance was had from another trust: the answer of RXB (Other Teaching Hospitals NHS Foundation Trust) was refused: its PACS sent an invalid answer")
	tests := []struct {
		name  string
		tried []upstream.Outcome
		want  []string
	}{
		{name: "first holder answered"},
		{
			name:  "failed over from a time-out, a 404, a 502 and an open breaker: nothing to say",
			tried: []upstream.Outcome{failed(rxa, timedOut), failed(rxb, notFound), failed(rxc, badGateway), failed(rxa, circuitOpen)},
		},
		{
			name:  "an invalid answer is named",
			tried: []upstream.Outcome{failed(rxa, notFound), failed(rxb, garbage)},
			want:  []string{invalidRXB},
		},
		{
			name:  "a stale copy standing in for an invalid answer is named",
			tried: []upstream.Outcome{staleOf(rxb, time.Minute, garbage)},
			want:  []string{invalidRXB},
		},
		{
			name:  "invalid answers named in the order tried",
			tried: []upstream.Outcome{failed(rxa, fmt.Errorf("open answer: %w", garbage)), failed(rxc, timedOut), failed(rxb, garbage)},
			want:  []string{invalidRXA, invalidRXB},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkDecision(t, FailedOver(tc.tried, "The instance", agent), Decision{Status: http.StatusOK, Warnings: tc.want})
		})
	}
}

func TestThumbnailUnsupported(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		instanceLevel bool
		wantDerive    bool
		wantRemember  bool
	}{
		{name: "404 of an instance: derive, do not remember", err: notFound, instanceLevel: true, wantDerive: true},
		{name: "404 of a study: derive and remember", err: notFound, wantDerive: true, wantRemember: true},
		{name: "400 of an instance", err: badRequest, instanceLevel: true, wantDerive: true, wantRemember: true},
		{name: "400 of a study", err: badRequest, wantDerive: true, wantRemember: true},
		{name: "406 of an instance", err: notAcceptable, instanceLevel: true, wantDerive: true, wantRemember: true},
		{name: "406 of a series, wrapped", err: fmt.Errorf("fetch thumbnail: %w", notAcceptable), wantDerive: true, wantRemember: true},
		{name: "501 of an instance", err: notImpl, instanceLevel: true, wantDerive: true, wantRemember: true},
		{name: "501 of a study", err: notImpl, wantDerive: true, wantRemember: true},
		{name: "500 is a failure", err: internalError},
		{name: "500 of an instance is a failure", err: internalError, instanceLevel: true},
		{name: "502 is a failure", err: badGateway},
		{name: "time-out is a failure", err: timedOut, instanceLevel: true},
		{name: "invalid answer is a failure", err: garbage},
		{name: "open breaker is a failure", err: circuitOpen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			derive, remember := ThumbnailUnsupported(tc.err, tc.instanceLevel)
			if derive != tc.wantDerive || remember != tc.wantRemember {
				t.Fatalf("ThumbnailUnsupported = (derive %v, remember %v); want (%v, %v)", derive, remember, tc.wantDerive, tc.wantRemember)
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	tests := []struct {
		name   string
		n, max int
		want   bool
	}{
		{name: "no bound, no results", n: 0, max: 0, want: false},
		{name: "no bound, many results", n: 5000, max: 0, want: false},
		{name: "negative bound", n: 5, max: -1, want: false},
		{name: "empty answer", n: 0, max: 100, want: false},
		{name: "one under the bound", n: 99, max: 100, want: false},
		{name: "at the bound", n: 100, max: 100, want: true},
		{name: "over the bound", n: 101, max: 100, want: true},
		{name: "bound of one reached", n: 1, max: 1, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Truncated(tc.n, tc.max); got != tc.want {
				t.Fatalf("Truncated(%d, %d) = %v; want %v", tc.n, tc.max, got, tc.want)
			}
		})
	}
}

func TestTruncatedWarning(t *testing.T) {
	tests := []struct {
		name  string
		src   *upstream.Source
		max   int
		agent string
		want  string
	}{
		{name: "bound of 100", src: rxa, max: 100, agent: agent, want: w299("RXA (Example Hospitals NHS Trust) has more than 99 matches; only the first 100 were merged. Narrow the search.")},
		{name: "bound of 2", src: rxb, max: 2, agent: agent, want: w299("RXB (Other Teaching Hospitals NHS Foundation Trust) has more than 1 matches; only the first 2 were merged. Narrow the search.")},
		{name: "quoted name, default agent", src: source("RXQ", `St "Quote" Trust`, false), max: 10, agent: "", want: `299 nirproxy "RXQ (St \"Quote\" Trust) has more than 9 matches; only the first 10 were merged. Narrow the search."`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := TruncatedWarning(tc.src, tc.max, tc.agent); got != tc.want {
				t.Fatalf("TruncatedWarning = %q;\nwant               %q", got, tc.want)
			}
		})
	}
}

func TestComplete(t *testing.T) {
	tests := []struct {
		name      string
		d         Decision
		truncated int
		want      bool
	}{
		{name: "every source answered whole", d: Decision{Status: http.StatusOK}, want: true},
		{name: "warnings alone do not make it incomplete", d: Decision{Status: http.StatusOK, Warnings: []string{w299("note")}}, want: true},
		{name: "a source missing", d: Decision{Status: http.StatusOK, Missing: []Missing{{ID: "RXB"}}}, want: false},
		{name: "a source stood in for by a stale copy", d: Decision{Status: http.StatusOK, Stale: []Stale{{ID: "RXB"}}}, want: false},
		{name: "an answer cut at the bound", d: Decision{Status: http.StatusOK}, truncated: 1, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Complete(tc.d, tc.truncated); got != tc.want {
				t.Fatalf("Complete = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestCompleteFirst(t *testing.T) {
	a, b, c, d := ranked("A", 0), ranked("B", 0), ranked("C", 0), ranked("D", 0)
	tests := []struct {
		name    string
		holders []*upstream.Source
		held    map[string]int
		total   int
		want    []string
	}{
		{name: "no holders", total: 3},
		{name: "every copy complete keeps the order", holders: []*upstream.Source{c, a, b}, held: map[string]int{"A": 3, "B": 3, "C": 3}, total: 3, want: []string{"C", "A", "B"}},
		{name: "no copy complete keeps the order", holders: []*upstream.Source{c, a, b}, held: map[string]int{"A": 1, "B": 2, "C": 0}, total: 3, want: []string{"C", "A", "B"}},
		{
			name:    "complete copies first, each group in the order given",
			holders: []*upstream.Source{a, b, c, d},
			held:    map[string]int{"A": 2, "B": 5, "C": 4, "D": 5},
			total:   5,
			want:    []string{"B", "D", "A", "C"},
		},
		{name: "a holder listed nothing", holders: []*upstream.Source{a, b}, held: map[string]int{"B": 1}, total: 1, want: []string{"B", "A"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := slices.Clone(tc.holders)
			got := ids(CompleteFirst(tc.holders, func(id string) int { return tc.held[id] }, tc.total))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("CompleteFirst = %v; want %v", got, tc.want)
			}
			if !slices.Equal(tc.holders, orig) {
				t.Fatalf("CompleteFirst reordered its input to %v", ids(tc.holders))
			}
		})
	}
}

func TestTriage(t *testing.T) {
	answered := func(s *upstream.Source, v string) upstream.Result[string] {
		return upstream.Result[string]{Outcome: ok(s), Value: v}
	}
	failedWith := func(s *upstream.Source, err error, v string) upstream.Result[string] {
		return upstream.Result[string]{Outcome: failed(s, err), Value: v}
	}
	staleCopy := &upstream.StaleError{Source: "RXB", Age: time.Minute, Err: timedOut}
	tests := []struct {
		name        string
		results     []upstream.Result[string]
		wantUsable  []string // "ID=value"
		wantStale   []string
		wantFailed  []string
		wantFailErr []error
	}{
		{name: "nothing asked"},
		{
			name:       "every holder answered",
			results:    []upstream.Result[string]{answered(rxa, "a"), answered(rxb, "b")},
			wantUsable: []string{"RXA=a", "RXB=b"},
		},
		{
			name:       "a stale copy stands in and is judged",
			results:    []upstream.Result[string]{answered(rxa, "a"), failedWith(rxb, staleCopy, "old b")},
			wantUsable: []string{"RXA=a", "RXB=old b"},
			wantStale:  []string{"RXB"},
		},
		{
			name:        "a stale failure without a copy is a failure",
			results:     []upstream.Result[string]{answered(rxa, "a"), failedWith(rxb, staleCopy, "")},
			wantUsable:  []string{"RXA=a"},
			wantFailed:  []string{"RXB"},
			wantFailErr: []error{staleCopy},
		},
		{
			name:       "a 404 is dropped",
			results:    []upstream.Result[string]{failedWith(rxa, notFound, ""), answered(rxb, "b")},
			wantUsable: []string{"RXB=b"},
		},
		{
			name:        "failures kept in order, with their errors",
			results:     []upstream.Result[string]{failedWith(rxa, refused, ""), answered(rxb, "b"), failedWith(rxc, badGateway, "")},
			wantUsable:  []string{"RXB=b"},
			wantFailed:  []string{"RXA", "RXC"},
			wantFailErr: []error{refused, badGateway},
		},
		{
			name:        "everything at once",
			results:     []upstream.Result[string]{failedWith(rxc, garbage, ""), failedWith(rxb, staleCopy, "old b"), failedWith(rxa, notFound, ""), answered(rxa, "a")},
			wantUsable:  []string{"RXB=old b", "RXA=a"},
			wantStale:   []string{"RXB"},
			wantFailed:  []string{"RXC"},
			wantFailErr: []error{garbage},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			usable, stale, failedOnes := Triage(tc.results, func(v string) bool { return v != "" })
			var gotUsable []string
			for _, r := range usable {
				gotUsable = append(gotUsable, r.Source.ID+"="+r.Value)
			}
			if !slices.Equal(gotUsable, tc.wantUsable) {
				t.Errorf("usable = %q; want %q", gotUsable, tc.wantUsable)
			}
			if got := outcomeIDs(stale); !slices.Equal(got, tc.wantStale) {
				t.Errorf("stale = %v; want %v", got, tc.wantStale)
			}
			for _, o := range stale {
				if _, isStale := upstream.AsStale(o.Err); !isStale {
					t.Errorf("stale outcome of %s lost its StaleError: %v", o.Source.ID, o.Err)
				}
			}
			if got := outcomeIDs(failedOnes); !slices.Equal(got, tc.wantFailed) {
				t.Fatalf("failed = %v; want %v", got, tc.wantFailed)
			}
			for i, o := range failedOnes {
				if o.Err != tc.wantFailErr[i] {
					t.Errorf("failed[%d].Err = %v; want %v", i, o.Err, tc.wantFailErr[i])
				}
			}
		})
	}
}

func TestAssess(t *testing.T) {
	timeout := &upstream.Failure{Class: upstream.ClassTimeout}
	answered502 := &upstream.Failure{Class: upstream.ClassServerError, Status: 502}
	st := func(id, breaker string, last *upstream.Failure) upstream.Status {
		return upstream.Status{ID: id, Name: id + " Trust", Breaker: breaker, LastFailure: last}
	}
	tests := []struct {
		name            string
		sources         []upstream.Status
		wantStatus      string
		wantReady       bool
		wantLastFailure []string
	}{
		{name: "no sources", wantStatus: "unavailable", wantReady: false},
		{
			name:            "all closed",
			sources:         []upstream.Status{st("A", "closed", nil), st("B", "closed", nil)},
			wantStatus:      "ok",
			wantReady:       true,
			wantLastFailure: []string{"", ""},
		},
		{
			name:            "all closed, one failed lately",
			sources:         []upstream.Status{st("A", "closed", answered502), st("B", "closed", nil)},
			wantStatus:      "ok",
			wantReady:       true,
			wantLastFailure: []string{"answered 502", ""},
		},
		{
			name:            "one half-open",
			sources:         []upstream.Status{st("A", "closed", nil), st("B", "half-open", timeout)},
			wantStatus:      "degraded",
			wantReady:       true,
			wantLastFailure: []string{"", "timed out"},
		},
		{
			name:            "one open",
			sources:         []upstream.Status{st("A", "open", timeout), st("B", "closed", nil)},
			wantStatus:      "degraded",
			wantReady:       true,
			wantLastFailure: []string{"timed out", ""},
		},
		{
			name:            "all open",
			sources:         []upstream.Status{st("A", "open", timeout), st("B", "open", answered502)},
			wantStatus:      "unavailable",
			wantReady:       false,
			wantLastFailure: []string{"timed out", "answered 502"},
		},
		{
			name:            "open and half-open: unavailable but ready",
			sources:         []upstream.Status{st("A", "open", timeout), st("B", "half-open", answered502)},
			wantStatus:      "unavailable",
			wantReady:       true,
			wantLastFailure: []string{"timed out", "answered 502"},
		},
		{
			name:            "only source half-open",
			sources:         []upstream.Status{st("A", "half-open", timeout)},
			wantStatus:      "unavailable",
			wantReady:       true,
			wantLastFailure: []string{"timed out"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := Assess(tc.sources)
			if h.Status != tc.wantStatus || h.Ready != tc.wantReady {
				t.Errorf("Assess = (%q, ready %v); want (%q, ready %v)", h.Status, h.Ready, tc.wantStatus, tc.wantReady)
			}
			if len(h.Sources) != len(tc.sources) {
				t.Fatalf("%d sources; want %d", len(h.Sources), len(tc.sources))
			}
			for i, sh := range h.Sources {
				if sh.ID != tc.sources[i].ID || sh.Breaker != tc.sources[i].Breaker || sh.Status.LastFailure != tc.sources[i].LastFailure {
					t.Errorf("source %d = %+v; want the state %+v as given", i, sh.Status, tc.sources[i])
				}
				if sh.LastFailure != tc.wantLastFailure[i] {
					t.Errorf("source %s LastFailure = %q; want %q", sh.ID, sh.LastFailure, tc.wantLastFailure[i])
				}
			}
		})
	}
}

func TestListingReason(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "listed nothing", err: ErrListedNothing, want: "its PACS listed none of the instances it holds"},
		{name: "listed nothing, wrapped", err: fmt.Errorf("list RXA: %w", ErrListedNothing), want: "its PACS listed none of the instances it holds"},
		{name: "listing incomplete", err: ErrListingIncomplete, want: "its PACS's listing could not be proved complete"},
		{name: "listing incomplete, wrapped", err: fmt.Errorf("list RXA: %w", ErrListingIncomplete), want: "its PACS's listing could not be proved complete"},
		{name: "time-out", err: timedOut, want: "its PACS timed out"},
		{name: "502", err: badGateway, want: "its PACS answered 502"},
		{name: "other error", err: errors.New("boom"), want: "its PACS is unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ListingReason(tc.err); got != tc.want {
				t.Fatalf("ListingReason = %q; want %q", got, tc.want)
			}
		})
	}
}

func TestCount(t *testing.T) {
	tests := []struct {
		name      string
		known     int64
		ok        bool
		n         int
		exact     bool
		wantCount int64
		wantSet   bool
	}{
		{name: "exact lowers a known count", known: 10, ok: true, n: 7, exact: true, wantCount: 7, wantSet: true},
		{name: "exact raises a known count", known: 3, ok: true, n: 7, exact: true, wantCount: 7, wantSet: true},
		{name: "exact sets an unknown count", n: 4, exact: true, wantCount: 4, wantSet: true},
		{name: "exact listing of nothing is 0", known: 5, ok: true, n: 0, exact: true, wantCount: 0, wantSet: true},
		{name: "inexact raises a known count", known: 5, ok: true, n: 8, wantCount: 8, wantSet: true},
		{name: "inexact never lowers a known count", known: 10, ok: true, n: 7, wantCount: 10, wantSet: false},
		{name: "inexact equal leaves it", known: 7, ok: true, n: 7, wantCount: 7, wantSet: false},
		{name: "inexact sets an unknown count", n: 3, wantCount: 3, wantSet: true},
		{name: "inexact nothing never makes an unknown count 0", n: 0, wantCount: 0, wantSet: false},
		{name: "inexact nothing leaves a known count", known: 6, ok: true, n: 0, wantCount: 6, wantSet: false},
		{name: "inexact raises a known 0", known: 0, ok: true, n: 2, wantCount: 2, wantSet: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			count, set := Count(tc.known, tc.ok, tc.n, tc.exact)
			if count != tc.wantCount || set != tc.wantSet {
				t.Fatalf("Count(%d, %v, %d, %v) = (%d, %v); want (%d, %v)", tc.known, tc.ok, tc.n, tc.exact, count, set, tc.wantCount, tc.wantSet)
			}
		})
	}
}

func TestCountsWarnings(t *testing.T) {
	quoted := source("RXQ", `St "Quote" Trust`, false)
	tests := []struct {
		name string
		got  string
		want string
	}{
		{
			name: "late, one result",
			got:  CountsLate(1, agent),
			want: w299("The counts of 1 result held by more than one trust are the largest copy's, not the union of the copies: the request's time ran out before the copies could be listed."),
		},
		{
			name: "late, several results",
			got:  CountsLate(3, agent),
			want: w299("The counts of 3 results held by more than one trust are the largest copy's, not the union of the copies: the request's time ran out before the copies could be listed."),
		},
		{
			name: "late, default agent",
			got:  CountsLate(2, ""),
			want: `299 nirproxy "The counts of 2 results held by more than one trust are the largest copy's, not the union of the copies: the request's time ran out before the copies could be listed."`,
		},
		{
			name: "uncounted, one result",
			got:  CountsUncounted(1, agent),
			want: w299("The counts of 1 result held by more than one trust are the largest copy's, not the union of the copies: ask for fewer results (limit) to have them counted."),
		},
		{
			name: "uncounted, several results",
			got:  CountsUncounted(12, agent),
			want: w299("The counts of 12 results held by more than one trust are the largest copy's, not the union of the copies: ask for fewer results (limit) to have them counted."),
		},
		{
			name: "incomplete, one trust",
			got:  CountsIncomplete("The counts of study 1.2.3 are", []upstream.Outcome{failed(rxb, timedOut)}, agent),
			want: w299("The counts of study 1.2.3 are incomplete: RXB (Other Teaching Hospitals NHS Foundation Trust) could not list its instances: its PACS timed out."),
		},
		{
			name: "incomplete, each trust named with why",
			got: CountsIncomplete("The counts of study 1.2.3 are", []upstream.Outcome{
				failed(rxa, ErrListedNothing), failed(rxb, ErrListingIncomplete), failed(rxc, badGateway),
			}, agent),
			want: w299("The counts of study 1.2.3 are incomplete: " +
				"RXA (Example Hospitals NHS Trust) could not list its instances: its PACS listed none of the instances it holds; " +
				"RXB (Other Teaching Hospitals NHS Foundation Trust) could not list its instances: its PACS's listing could not be proved complete; " +
				"RXC (Required Imaging Trust) could not list its instances: its PACS answered 502."),
		},
		{
			name: "incomplete, a quoted trust name escaped",
			got:  CountsIncomplete("The counts of the series are", []upstream.Outcome{failed(quoted, circuitOpen)}, agent),
			want: `299 ` + agent + ` "The counts of the series are incomplete: RXQ (St \"Quote\" Trust) could not list its instances: its PACS has an open circuit breaker."`,
		},
		{
			name: "unlisted, one series",
			got:  CountsUnlisted([]string{"1.2.3.4"}, agent),
			want: w299("The counts of series 1.2.3.4 are the answers' own, not the union of the copies: the trusts that hold it listed none of its instances."),
		},
		{
			name: "unlisted, several series",
			got:  CountsUnlisted([]string{"1.2.3.4", "1.2.3.5"}, agent),
			want: w299("The counts of series 1.2.3.4, series 1.2.3.5 are the answers' own, not the union of the copies: the trusts that hold them listed none of their instances."),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("warning = %q;\nwant      %q", tc.got, tc.want)
			}
		})
	}
}

// TestAborted: a stream broken by its client (cut off for not reading, or gone) is never the
// trust's, whatever else happened; only a break with the client still there is.
func TestAborted(t *testing.T) {
	tests := []struct {
		name               string
		cutOff, clientGone bool
		want               Blame
	}{
		{name: "client cut off for not reading", cutOff: true, want: BlameClientTimeout},
		{name: "cut off, and so gone", cutOff: true, clientGone: true, want: BlameClientTimeout},
		{name: "client went away", clientGone: true, want: BlameClient},
		{name: "client still there: the trust's answer broke", want: BlameUpstream},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Aborted(tc.cutOff, tc.clientGone); got != tc.want {
				t.Errorf("Aborted(%v, %v) = %q; want %q", tc.cutOff, tc.clientGone, got, tc.want)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		message string
		wait    time.Duration
		want    Decision
	}{
		{"no valid token: 401, nothing to wait for", http.StatusUnauthorized, "A bearer token is required.", 0,
			Decision{Status: http.StatusUnauthorized, Message: "A bearer token is required."}},
		{"not direct care: 403, nothing to wait for", http.StatusForbidden, "nirproxy may only be used for direct patient care", time.Minute,
			Decision{Status: http.StatusForbidden, Message: "nirproxy may only be used for direct patient care"}},
		{"a caller over its limit: 429 with the limit's wait", http.StatusTooManyRequests, "over", 2500 * time.Millisecond,
			Decision{Status: http.StatusTooManyRequests, Message: "over", RetryAfter: 2500 * time.Millisecond}},
		{"a limit that gives no wait: 429 with a second", http.StatusTooManyRequests, "over", 0,
			Decision{Status: http.StatusTooManyRequests, Message: "over", RetryAfter: time.Second}},
		{"issuer keys out of date: 503 with the policy's wait", http.StatusServiceUnavailable, "", 0,
			Decision{Status: http.StatusServiceUnavailable, Message: AccessUndecidable, RetryAfter: testRetryAfter}},
		{"a 503 that says when: its own wait and words", http.StatusServiceUnavailable, "keys", 5 * time.Second,
			Decision{Status: http.StatusServiceUnavailable, Message: "keys", RetryAfter: 5 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkDecision(t, Refused(tc.status, tc.message, tc.wait, testRetryAfter), tc.want)
		})
	}
}

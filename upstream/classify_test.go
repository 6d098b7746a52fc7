package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestFailureMethods pins what each class means to the metrics, the breaker and /status.
// TestErrorClassification checks which class each error is; this starts from the class.
func TestFailureMethods(t *testing.T) {
	tests := []struct {
		name    string
		f       Failure
		label   string
		counts  bool
		reached bool
		failed  bool
	}{
		{name: "ok", f: Failure{Class: ClassOK}, label: "ok", reached: true},
		{name: "cancelled", f: Failure{Class: ClassCancelled}, label: "cancelled", reached: true},
		{name: "404", f: Failure{Class: ClassNotFound, Status: 404}, label: "not_found", reached: true},
		{name: "400", f: Failure{Class: ClassRefused, Status: 400}, label: "client_error", reached: true, failed: true},
		{name: "406", f: Failure{Class: ClassRefused, Status: 406}, label: "client_error", reached: true, failed: true},
		{name: "413", f: Failure{Class: ClassRefused, Status: 413}, label: "client_error", reached: true, failed: true},
		{name: "451", f: Failure{Class: ClassRefused, Status: 451}, label: "client_error", reached: true, failed: true},
		{name: "429", f: Failure{Class: ClassRefused, Status: 429}, label: "client_error", counts: true, reached: true, failed: true},
		{name: "circuit open", f: Failure{Class: ClassCircuitOpen}, label: "circuit_open", counts: true, failed: true},
		{name: "busy", f: Failure{Class: ClassBusy}, label: "busy", counts: true, failed: true},
		{name: "stalled", f: Failure{Class: ClassStalled}, label: "timeout", counts: true, reached: true, failed: true},
		{name: "timeout", f: Failure{Class: ClassTimeout}, label: "timeout", counts: true, reached: true, failed: true},
		{name: "500", f: Failure{Class: ClassServerError, Status: 500}, label: "server_error", counts: true, reached: true, failed: true},
		{name: "503", f: Failure{Class: ClassServerError, Status: 503}, label: "server_error", counts: true, reached: true, failed: true},
		{name: "invalid", f: Failure{Class: ClassInvalid}, label: "invalid", counts: true, reached: true, failed: true},
		{name: "unreachable", f: Failure{Class: ClassUnreachable}, label: "unreachable", counts: true, reached: true, failed: true},
		{name: "unknown class", f: Failure{Class: Class(200)}, label: "unreachable", counts: true, reached: true, failed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Label(); got != tc.label {
				t.Errorf("Label = %q; want %q", got, tc.label)
			}
			if got := tc.f.CountsAgainstBreaker(); got != tc.counts {
				t.Errorf("CountsAgainstBreaker = %v; want %v", got, tc.counts)
			}
			if got := tc.f.Reached(); got != tc.reached {
				t.Errorf("Reached = %v; want %v", got, tc.reached)
			}
			if got := tc.f.Failed(); got != tc.failed {
				t.Errorf("Failed = %v; want %v", got, tc.failed)
			}
		})
	}
}

func TestRefusedAs(t *testing.T) {
	unsupported := []int{http.StatusNotFound, http.StatusBadRequest, http.StatusNotAcceptable, http.StatusNotImplemented}
	tests := []struct {
		name     string
		f        Failure
		statuses []int
		want     bool
	}{
		{name: "406 among those asked", f: Failure{Class: ClassRefused, Status: 406}, statuses: unsupported, want: true},
		{name: "406 not asked", f: Failure{Class: ClassRefused, Status: 406}, statuses: []int{400}, want: false},
		{name: "429 asked alone", f: Failure{Class: ClassRefused, Status: 429}, statuses: []int{429}, want: true},
		{name: "404", f: Failure{Class: ClassNotFound, Status: 404}, statuses: unsupported, want: true},
		{name: "501", f: Failure{Class: ClassServerError, Status: 501}, statuses: unsupported, want: true},
		{name: "500 not asked", f: Failure{Class: ClassServerError, Status: 500}, statuses: unsupported, want: false},
		{name: "no statuses asked", f: Failure{Class: ClassRefused, Status: 406}, want: false},
		{name: "ok is no refusal", f: Failure{Class: ClassOK}, statuses: []int{0, 200}, want: false},
		{name: "a time-out is no refusal", f: Failure{Class: ClassTimeout}, statuses: []int{0}, want: false},
		{name: "an invalid answer is no refusal", f: Failure{Class: ClassInvalid}, statuses: []int{0}, want: false},
		{name: "an open breaker is no refusal", f: Failure{Class: ClassCircuitOpen, Status: 503}, statuses: []int{503}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.RefusedAs(tc.statuses...); got != tc.want {
				t.Fatalf("%+v.RefusedAs(%v) = %v; want %v", tc.f, tc.statuses, got, tc.want)
			}
		})
	}
}

// TestClassifyStandIns covers what TestErrorClassification does not: a stale copy's
// StaleError is classified by the failure it stands in for, and 501 is a server error.
func TestClassifyStandIns(t *testing.T) {
	stale := func(err error) error { return &StaleError{Source: "RXA", Age: time.Minute, Err: err} }
	tests := []struct {
		name string
		err  error
		want Failure
	}{
		{name: "501", err: &StatusError{Source: "RXA", Status: 501}, want: Failure{Class: ClassServerError, Status: 501}},
		{name: "406", err: &StatusError{Source: "RXA", Status: 406}, want: Failure{Class: ClassRefused, Status: 406}},
		{name: "stale for a time-out", err: stale(&TransportError{Source: "RXA", Err: context.DeadlineExceeded}), want: Failure{Class: ClassTimeout}},
		{name: "stale for a 502", err: stale(&StatusError{Source: "RXA", Status: 502}), want: Failure{Class: ClassServerError, Status: 502}},
		{name: "stale for an invalid answer", err: stale(&InvalidResponseError{Source: "RXA", Err: errors.New("bad JSON")}), want: Failure{Class: ClassInvalid}},
		{name: "stale for an open breaker", err: stale(ErrCircuitOpen), want: Failure{Class: ClassCircuitOpen}},
		{name: "stale for an unknown failure, wrapped", err: fmt.Errorf("search: %w", stale(errors.New("connection refused"))), want: Failure{Class: ClassUnreachable}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Fatalf("Classify(%v) = %+v; want %+v", tc.err, got, tc.want)
			}
		})
	}
}

func TestFirstOf(t *testing.T) {
	type key struct{}
	var (
		badGateway = &StatusError{Source: "A", Status: 502}
		notFound   = &StatusError{Source: "B", Status: 404}
		deadline   = &TransportError{Source: "A", Err: context.DeadlineExceeded}
		refused    = &TransportError{Source: "C", Err: errors.New("connection refused")}
		goneWrap   = fmt.Errorf("fetch from B: %w", &TransportError{Source: "B", Err: context.Canceled})
		giveUpWrap = fmt.Errorf("open answer of A: %w", ErrGiveUp)
	)
	tests := []struct {
		name    string
		holders []string
		// answers are the holders' errors; a holder not named answers "from <id>".
		answers map[string]error
		// cancelled cancels the request's context before FirstOf is called.
		cancelled bool
		// cancelDuring is the holder whose attempt cancels the request's context (our client
		// hangs up while it is asked) before it returns its answer.
		cancelDuring string
		wantCalls    []string
		wantWon      string
		wantTried    []string
		wantErr      error
	}{
		{name: "no holders"},
		{name: "first holder answers", holders: []string{"A", "B"}, wantCalls: []string{"A"}, wantWon: "A"},
		{
			name:      "first success wins, earlier failures in order",
			holders:   []string{"A", "B", "C", "D"},
			answers:   map[string]error{"A": badGateway, "B": deadline},
			wantCalls: []string{"A", "B", "C"},
			wantWon:   "C",
			wantTried: []string{"A", "B"},
		},
		{
			name:      "404s are tried",
			holders:   []string{"A", "B", "C"},
			answers:   map[string]error{"A": notFound, "B": notFound},
			wantCalls: []string{"A", "B", "C"},
			wantWon:   "C",
			wantTried: []string{"A", "B"},
		},
		{
			name:      "every holder fails",
			holders:   []string{"A", "B", "C"},
			answers:   map[string]error{"A": badGateway, "B": notFound, "C": refused},
			wantCalls: []string{"A", "B", "C"},
			wantTried: []string{"A", "B", "C"},
		},
		{
			name:      "a cancelled attempt stops at once",
			holders:   []string{"A", "B", "C"},
			answers:   map[string]error{"A": badGateway, "B": context.Canceled},
			wantCalls: []string{"A", "B"},
			wantTried: []string{"A"},
			wantErr:   context.Canceled,
		},
		{
			name:      "a wrapped cancellation stops at once",
			holders:   []string{"A", "B", "C"},
			answers:   map[string]error{"B": goneWrap, "A": notFound},
			wantCalls: []string{"A", "B"},
			wantTried: []string{"A"},
			wantErr:   goneWrap,
		},
		{
			name:      "a time-out is no cancellation",
			holders:   []string{"A", "B"},
			answers:   map[string]error{"A": deadline},
			wantCalls: []string{"A", "B"},
			wantWon:   "B",
			wantTried: []string{"A"},
		},
		{
			name:      "context already cancelled: nothing called",
			holders:   []string{"A", "B"},
			cancelled: true,
			wantErr:   context.Canceled,
		},
		{
			name:         "context cancelled during an attempt: no later holder called",
			holders:      []string{"A", "B"},
			answers:      map[string]error{"A": badGateway},
			cancelDuring: "A",
			wantCalls:    []string{"A"},
			wantTried:    []string{"A"},
			wantErr:      context.Canceled,
		},
		{
			name:      "give up stops without recording the attempt",
			holders:   []string{"A", "B", "C"},
			answers:   map[string]error{"A": badGateway, "B": ErrGiveUp},
			wantCalls: []string{"A", "B"},
			wantTried: []string{"A"},
		},
		{
			name:      "a wrapped give up stops too",
			holders:   []string{"A", "B"},
			answers:   map[string]error{"A": giveUpWrap},
			wantCalls: []string{"A"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			holders := sourcesNamed(tc.holders...)
			ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "request"))
			defer cancel()
			if tc.cancelled {
				cancel()
			}
			// FirstOf asks one holder at a time: no lock, so -race catches it asking two at once.
			var calls []string
			won, tried, err := FirstOf(ctx, holders, func(ctx context.Context, src *Source) (string, error) {
				calls = append(calls, src.ID)
				if ctx.Value(key{}) != "request" {
					t.Errorf("%s asked under a context not the request's", src.ID)
				}
				if src.ID == tc.cancelDuring {
					cancel()
				}
				if err, failed := tc.answers[src.ID]; failed {
					return "", err
				}
				return "from " + src.ID, nil
			})
			if err != tc.wantErr {
				t.Errorf("err = %v; want %v", err, tc.wantErr)
			}
			if !slices.Equal(calls, tc.wantCalls) {
				t.Errorf("asked %v; want %v", calls, tc.wantCalls)
			}
			if tc.wantWon == "" {
				if won.Source != nil || won.Err != nil || won.Value != "" {
					t.Errorf("won = %+v; want the zero result", won)
				}
			} else {
				if won.Source == nil || won.Source.ID != tc.wantWon || won.Err != nil || won.Value != "from "+tc.wantWon {
					t.Errorf("won = %+v; want %s's answer", won, tc.wantWon)
				}
			}
			var triedIDs []string
			for _, o := range tried {
				triedIDs = append(triedIDs, o.Source.ID)
			}
			if !slices.Equal(triedIDs, tc.wantTried) {
				t.Fatalf("tried %v; want %v", triedIDs, tc.wantTried)
			}
			for _, o := range tried {
				if i := slices.Index(tc.holders, o.Source.ID); holders[i] != o.Source {
					t.Errorf("tried %s is not the holder given", o.Source.ID)
				}
				if o.Err != tc.answers[o.Source.ID] {
					t.Errorf("tried %s with %v; want its own error %v", o.Source.ID, o.Err, tc.answers[o.Source.ID])
				}
				if o.Duration < 0 {
					t.Errorf("tried %s took %v", o.Source.ID, o.Duration)
				}
			}
		})
	}
}

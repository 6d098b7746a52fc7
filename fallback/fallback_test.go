package fallback

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/upstream"
)

const agent = "nirproxy.example.nhs.uk"

// testRetryAfter is the Retry-After of the tests' policies.
const testRetryAfter = 30 * time.Second

// full is a case's policy made complete as the configuration makes it: signed by agent, with
// testRetryAfter, where the case sets neither.
func full(p Policy) Policy {
	if p.Agent == "" {
		p.Agent = agent
	}
	if p.RetryAfter == 0 {
		p.RetryAfter = testRetryAfter
	}
	return p
}

func source(id, name string, required bool) *upstream.Source {
	return &upstream.Source{SourceConfig: upstream.SourceConfig{ID: id, Name: name, Required: required}}
}

var (
	rxa = source("RXA", "Example Hospitals NHS Trust", false)
	rxb = source("RXB", "Other Teaching Hospitals NHS Foundation Trust", false)
	rxc = source("RXC", "Required Imaging Trust", true)

	timedOut    = &upstream.TransportError{Source: "RXB", Err: context.DeadlineExceeded}
	refused     = &upstream.TransportError{Source: "RXA", Err: syscall.ECONNREFUSED}
	badGateway  = &upstream.StatusError{Source: "RXC", Status: 502}
	garbage     = &upstream.InvalidResponseError{Source: "RXB", Err: errors.New("decode DICOM JSON")}
	circuitOpen = upstream.ErrCircuitOpen
)

func ok(s *upstream.Source) upstream.Outcome { return upstream.Outcome{Source: s} }

func failed(s *upstream.Source, err error) upstream.Outcome {
	return upstream.Outcome{Source: s, Err: err}
}

// checkWarnings asserts one 299 warning per missing source, naming its id, name and reason.
func checkWarnings(t *testing.T, d Decision, want []Missing) {
	t.Helper()
	if len(d.Warnings) != len(want) {
		t.Fatalf("warnings = %q; want %d", d.Warnings, len(want))
	}
	for i, m := range want {
		w := d.Warnings[i]
		if !strings.HasPrefix(w, `299 `+agent+` "`) || !strings.HasSuffix(w, `"`) {
			t.Errorf("warning %q is not `299 %s \"...\"`", w, agent)
		}
		for _, part := range []string{m.ID, m.Name, m.Reason} {
			if !strings.Contains(w, part) {
				t.Errorf("warning %q does not name %q", w, part)
			}
		}
	}
}

func TestDecideSearch(t *testing.T) {
	tests := []struct {
		name        string
		outcomes    []upstream.Outcome
		policy      Policy
		wantStatus  int
		wantMissing []Missing
		wantRetry   time.Duration
		wantMessage []string // fragments of the refusal message
	}{
		{
			name:       "all answered",
			outcomes:   []upstream.Outcome{ok(rxa), ok(rxb), ok(rxc)},
			wantStatus: http.StatusOK,
		},
		{
			name:       "all answered, partial=fail",
			outcomes:   []upstream.Outcome{ok(rxa), ok(rxb)},
			policy:     Policy{Search: PartialFail, RetryAfter: testRetryAfter},
			wantStatus: http.StatusOK,
		},
		{
			name:        "one failed",
			outcomes:    []upstream.Outcome{ok(rxa), failed(rxb, timedOut)},
			wantStatus:  http.StatusOK,
			wantMissing: []Missing{{ID: "RXB", Name: rxb.Name, Reason: "timed out"}},
		},
		{
			name:       "two of three failed, warnings in source order",
			outcomes:   []upstream.Outcome{failed(rxa, refused), ok(rxc), failed(rxb, circuitOpen)},
			policy:     Policy{Search: PartialWarn, RetryAfter: testRetryAfter},
			wantStatus: http.StatusOK,
			wantMissing: []Missing{
				{ID: "RXA", Name: rxa.Name, Reason: "is unreachable"},
				{ID: "RXB", Name: rxb.Name, Reason: "has an open circuit breaker"},
			},
		},
		{
			name:       "all failed",
			outcomes:   []upstream.Outcome{failed(rxa, refused), failed(rxb, garbage)},
			wantStatus: http.StatusServiceUnavailable,
			wantMissing: []Missing{
				{ID: "RXA", Name: rxa.Name, Reason: "is unreachable"},
				{ID: "RXB", Name: rxb.Name, Reason: "sent an invalid answer"},
			},
			wantRetry:   testRetryAfter,
			wantMessage: []string{"No source", "RXA", "RXB"},
		},
		{
			name:        "all failed, configured Retry-After",
			outcomes:    []upstream.Outcome{failed(rxa, refused)},
			policy:      Policy{RetryAfter: 5 * time.Second},
			wantStatus:  http.StatusServiceUnavailable,
			wantMissing: []Missing{{ID: "RXA", Name: rxa.Name, Reason: "is unreachable"}},
			wantRetry:   5 * time.Second,
			wantMessage: []string{"No source", "RXA"},
		},
		{
			name:        "a required source failed",
			outcomes:    []upstream.Outcome{ok(rxa), ok(rxb), failed(rxc, badGateway)},
			wantStatus:  http.StatusServiceUnavailable,
			wantMissing: []Missing{{ID: "RXC", Name: rxc.Name, Reason: "answered 502"}},
			wantRetry:   testRetryAfter,
			wantMessage: []string{"required", "RXC"},
		},
		{
			name:        "a required source answered, another failed",
			outcomes:    []upstream.Outcome{ok(rxc), failed(rxa, refused)},
			wantStatus:  http.StatusOK,
			wantMissing: []Missing{{ID: "RXA", Name: rxa.Name, Reason: "is unreachable"}},
		},
		{
			name:        "partial=fail refuses an incomplete answer",
			outcomes:    []upstream.Outcome{ok(rxa), failed(rxb, timedOut)},
			policy:      Policy{Search: PartialFail, RetryAfter: testRetryAfter},
			wantStatus:  http.StatusServiceUnavailable,
			wantMissing: []Missing{{ID: "RXB", Name: rxb.Name, Reason: "timed out"}},
			wantRetry:   testRetryAfter,
			wantMessage: []string{"partial=fail", "RXB"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideSearch(tc.outcomes, full(tc.policy))
			if d.Status != tc.wantStatus || d.OK() != (tc.wantStatus == http.StatusOK) {
				t.Fatalf("Status = %d (OK %v); want %d", d.Status, d.OK(), tc.wantStatus)
			}
			if !slices.Equal(d.Missing, tc.wantMissing) {
				t.Fatalf("Missing = %+v; want %+v", d.Missing, tc.wantMissing)
			}
			checkWarnings(t, d, tc.wantMissing)
			if d.RetryAfter != tc.wantRetry {
				t.Errorf("RetryAfter = %v; want %v", d.RetryAfter, tc.wantRetry)
			}
			if len(tc.wantMessage) == 0 && d.Message != "" {
				t.Errorf("Message = %q; want none", d.Message)
			}
			for _, frag := range tc.wantMessage {
				if !strings.Contains(d.Message, frag) {
					t.Errorf("Message %q does not contain %q", d.Message, frag)
				}
			}
		})
	}
}

func TestDecideRetrieve(t *testing.T) {
	tests := []struct {
		name        string
		unreached   []upstream.Outcome
		policy      Policy
		wantStatus  int
		wantMissing []Missing
		wantRetry   time.Duration
	}{
		{name: "every possible holder reached", wantStatus: http.StatusOK},
		{
			name:        "a possible holder unreached",
			unreached:   []upstream.Outcome{failed(rxb, timedOut)},
			wantStatus:  http.StatusServiceUnavailable,
			wantMissing: []Missing{{ID: "RXB", Name: rxb.Name, Reason: "timed out"}},
			wantRetry:   testRetryAfter,
		},
		{
			name:        "partial=warn still refuses an incomplete study",
			unreached:   []upstream.Outcome{failed(rxa, refused), failed(rxb, circuitOpen)},
			policy:      Policy{Search: PartialWarn, RetryAfter: time.Minute},
			wantStatus:  http.StatusServiceUnavailable,
			wantMissing: []Missing{{ID: "RXA", Name: rxa.Name, Reason: "is unreachable"}, {ID: "RXB", Name: rxb.Name, Reason: "has an open circuit breaker"}},
			wantRetry:   time.Minute,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideRetrieve(tc.unreached, "The study", full(tc.policy))
			if d.Status != tc.wantStatus {
				t.Fatalf("Status = %d; want %d", d.Status, tc.wantStatus)
			}
			if !slices.Equal(d.Missing, tc.wantMissing) {
				t.Fatalf("Missing = %+v; want %+v", d.Missing, tc.wantMissing)
			}
			checkWarnings(t, d, tc.wantMissing)
			if d.RetryAfter != tc.wantRetry {
				t.Errorf("RetryAfter = %v; want %v", d.RetryAfter, tc.wantRetry)
			}
			if tc.wantStatus != http.StatusOK && !strings.Contains(d.Message, "The study") {
				t.Errorf("Message %q does not say what is refused", d.Message)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	d := Unavailable([]upstream.Outcome{failed(rxa, refused), failed(rxc, badGateway)}, "The series", full(Policy{RetryAfter: testRetryAfter}))
	if d.Status != http.StatusServiceUnavailable || d.OK() {
		t.Fatalf("Status = %d; want 503", d.Status)
	}
	if d.RetryAfter != testRetryAfter {
		t.Errorf("RetryAfter = %v; want %v", d.RetryAfter, testRetryAfter)
	}
	want := []Missing{{ID: "RXA", Name: rxa.Name, Reason: "is unreachable"}, {ID: "RXC", Name: rxc.Name, Reason: "answered 502"}}
	if !slices.Equal(d.Missing, want) {
		t.Fatalf("Missing = %+v; want %+v", d.Missing, want)
	}
	checkWarnings(t, d, want)
	for _, frag := range []string{"The series", "RXA", "RXC"} {
		if !strings.Contains(d.Message, frag) {
			t.Errorf("Message %q does not contain %q", d.Message, frag)
		}
	}
}

func TestWarning(t *testing.T) {
	tests := []struct {
		name  string
		code  int
		agent string
		text  string
		want  string
	}{
		{name: "plain", code: 299, agent: "proxy:8080", text: "Results from RXA are missing", want: `299 proxy:8080 "Results from RXA are missing"`},
		{name: "quote escaped", code: 299, agent: "proxy", text: `the "main" PACS`, want: `299 proxy "the \"main\" PACS"`},
		{name: "backslash escaped", code: 299, agent: "proxy", text: `C:\dicom`, want: `299 proxy "C:\\dicom"`},
		{name: "non-ASCII replaced", code: 299, agent: "proxy", text: "Ysbyty Gwynedd – Bangor, Llandudno Ysbyty Maelor Wrecsam ŵ", want: `299 proxy "Ysbyty Gwynedd ? Bangor, Llandudno Ysbyty Maelor Wrecsam ?"`},
		{name: "control characters blanked", code: 299, agent: "proxy", text: "line\r\nbreak\ttab\x7f", want: `299 proxy "line  break tab "`},
		{name: "empty agent", code: 299, agent: "", text: "x", want: `299 nirproxy "x"`},
		{name: "stale code", code: 110, agent: "proxy", text: "Response is stale", want: `110 proxy "Response is stale"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := WarningCode(tc.code, tc.agent, tc.text)
			if got != tc.want {
				t.Fatalf("WarningCode = %q; want %q", got, tc.want)
			}
			if tc.code == 299 {
				if w := Warning(tc.agent, tc.text); w != got {
					t.Fatalf("Warning = %q; want %q", w, got)
				}
			}
			for _, r := range got {
				if r < 0x20 || r > 0x7e {
					t.Fatalf("header value %q holds %q, not visible ASCII", got, r)
				}
			}
		})
	}
}

func staleOf(s *upstream.Source, age time.Duration, cause error) upstream.Outcome {
	return failed(s, &upstream.StaleError{Source: s.ID, Age: age, Err: cause})
}

func TestDecideSearchStale(t *testing.T) {
	serve := Policy{ServeStale: true, RetryAfter: testRetryAfter}
	tests := []struct {
		name        string
		outcomes    []upstream.Outcome
		policy      Policy
		wantStatus  int
		wantStale   []string
		wantMissing []string
		// wantWarnings are fragments, one warning each, in order.
		wantWarnings []string
	}{
		{
			name:         "one trust stale, others answered",
			outcomes:     []upstream.Outcome{ok(rxa), staleOf(rxb, 4*time.Minute+12*time.Second, timedOut)},
			policy:       serve,
			wantStatus:   http.StatusOK,
			wantStale:    []string{"RXB"},
			wantWarnings: []string{`110 ` + agent + ` "Response is Stale"`, `299 ` + agent + ` "Results from RXB (Other Teaching Hospitals NHS Foundation Trust) are from a copy cached 4m12s ago: its PACS timed out"`},
		},
		{
			name:         "every trust failed, one stale: answered from the copy",
			outcomes:     []upstream.Outcome{failed(rxa, refused), staleOf(rxb, time.Minute, timedOut)},
			policy:       serve,
			wantStatus:   http.StatusOK,
			wantStale:    []string{"RXB"},
			wantMissing:  []string{"RXA"},
			wantWarnings: []string{"110 ", "RXB", "RXA (Example Hospitals NHS Trust) are missing: its PACS is unreachable"},
		},
		{
			name:         "a required trust stood in for by its copy is not a refusal",
			outcomes:     []upstream.Outcome{ok(rxa), staleOf(rxc, time.Minute, badGateway)},
			policy:       serve,
			wantStatus:   http.StatusOK,
			wantStale:    []string{"RXC"},
			wantMissing:  nil,
			wantWarnings: []string{"110 ", "Results from RXC (Required Imaging Trust) are from a copy cached 1m0s ago: its PACS answered 502"},
		},
		{
			name:         "without ServeStale a stale outcome is a failure",
			outcomes:     []upstream.Outcome{ok(rxa), staleOf(rxb, time.Minute, timedOut)},
			policy:       Policy{RetryAfter: testRetryAfter},
			wantStatus:   http.StatusOK,
			wantMissing:  []string{"RXB"},
			wantWarnings: []string{"Results from RXB (Other Teaching Hospitals NHS Foundation Trust) are missing: its PACS timed out"},
		},
		{
			name:         "without ServeStale and nothing else: 503",
			outcomes:     []upstream.Outcome{staleOf(rxb, time.Minute, timedOut)},
			policy:       Policy{RetryAfter: testRetryAfter},
			wantStatus:   http.StatusServiceUnavailable,
			wantMissing:  []string{"RXB"},
			wantWarnings: []string{"RXB"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideSearch(tc.outcomes, full(tc.policy))
			if d.Status != tc.wantStatus {
				t.Errorf("status %d; want %d (%s)", d.Status, tc.wantStatus, d.Message)
			}
			var stale, missing []string
			for _, s := range d.Stale {
				stale = append(stale, s.ID)
			}
			for _, m := range d.Missing {
				missing = append(missing, m.ID)
			}
			if !slices.Equal(stale, tc.wantStale) || !slices.Equal(missing, tc.wantMissing) {
				t.Errorf("stale %v, missing %v; want %v, %v", stale, missing, tc.wantStale, tc.wantMissing)
			}
			if len(d.Warnings) != len(tc.wantWarnings) {
				t.Fatalf("warnings %q; want %d", d.Warnings, len(tc.wantWarnings))
			}
			for i, frag := range tc.wantWarnings {
				if !strings.Contains(d.Warnings[i], frag) {
					t.Errorf("warning %d = %q; want it to contain %q", i, d.Warnings[i], frag)
				}
			}
		})
	}
}

func TestDecideStale(t *testing.T) {
	what := "The metadata of the study"
	d := DecideStale([]upstream.Outcome{staleOf(rxa, 90*time.Second, refused)}, what, full(Policy{ServeStale: true, Retrieve: PartialFail, RetryAfter: testRetryAfter}))
	if d.Status != http.StatusOK || len(d.Stale) != 1 || len(d.Missing) != 0 {
		t.Fatalf("decision %+v; want 200 using RXA's stale copy", d)
	}
	want := []string{`110 ` + agent + ` "Response is Stale"`, `299 ` + agent + ` "The metadata of the study from RXA (Example Hospitals NHS Trust) is a copy cached 1m30s ago: its PACS is unreachable"`}
	if !slices.Equal(d.Warnings, want) {
		t.Errorf("warnings %q; want %q", d.Warnings, want)
	}
	// Without ServeStale the holder is a plain failure, refused by the default retrieve policy.
	d = DecideStale([]upstream.Outcome{staleOf(rxa, time.Minute, refused)}, what, full(Policy{Retrieve: PartialFail, RetryAfter: testRetryAfter}))
	if d.Status != http.StatusServiceUnavailable || len(d.Stale) != 0 {
		t.Errorf("without ServeStale: %+v; want 503", d)
	}
	// Merging two stale decisions keeps one 110.
	m := Merge(DecideStale([]upstream.Outcome{staleOf(rxa, time.Minute, refused)}, what, full(Policy{ServeStale: true, RetryAfter: testRetryAfter})),
		DecideStale([]upstream.Outcome{staleOf(rxb, time.Minute, refused)}, what, full(Policy{ServeStale: true, RetryAfter: testRetryAfter})))
	n110 := 0
	for _, w := range m.Warnings {
		if strings.HasPrefix(w, "110 ") {
			n110++
		}
	}
	if n110 != 1 || len(m.Stale) != 2 || len(m.Warnings) != 3 {
		t.Errorf("merged warnings %q; want one 110 and a 299 per trust", m.Warnings)
	}
}

func TestStaleAgeUnderASecond(t *testing.T) {
	d := DecideSearch([]upstream.Outcome{ok(rxa), staleOf(rxb, 300*time.Millisecond, timedOut)}, full(Policy{ServeStale: true, RetryAfter: testRetryAfter}))
	if len(d.Warnings) != 2 || !strings.Contains(d.Warnings[1], "cached less than 1s ago") {
		t.Errorf("warnings %q; want the age said as less than 1s", d.Warnings)
	}
}

package degraded_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/test/pacssim"
)

// request is what a fault case asks the proxy for.
type request int

const (
	search   request = iota + 1 // the first patient's studies, across every trust
	retrieve                    // XC3's ultrasound study, multipart DICOM (XC3 alone holds it)
	metadata                    // the same study's metadata
)

// outcome is how a retrieve or metadata answer must end.
type outcome int

const (
	complete outcome = iota + 1 // 200 with every instance, byte for byte
	refused                     // 503 naming XC3 and why, before any byte
	aborted                     // never a clean 2xx: refused, or the stream breaks (wantNeverComplete)
)

// fakeClock is a clock for flapping by time that tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// TestFaults puts each fault pacssim can inject on trust XC3 and checks what a client of the
// proxy gets: every answer is either complete or says what is missing (a Warning or a 503
// naming XC3 and why), never a half-merged search or a truncated study that ends cleanly, and
// always within the request's deadline plus a margin.
func TestFaults(t *testing.T) {
	demo := demoTrusts(t)
	const c = pacssim.DemoTrustC
	flapClock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	headerTimeout := defaultOptions().headerTimeout
	tests := []struct {
		name   string
		faults []pacssim.Fault // set on XC3
		refuse bool            // XC3 refuses connections
		edit   func(*rigOptions)
		req    request
		// want is, for searches, the reason XC3's warning gives for each search in turn ("":
		// XC3 answered and is not named).
		want []string
		// tick moves clock after each search, for flapping by time.
		clock *fakeClock
		tick  time.Duration
		// outcome and reason are for retrieves and metadata.
		outcome outcome
		reason  string
		// requests is how many requests of the kind asked XC3 must receive in all, retries
		// included.
		requests int64
		// minElapsed and maxElapsed bound each answer's time (maxElapsed 0: the request
		// deadline plus a margin).
		minElapsed, maxElapsed time.Duration
	}{
		// The header timeout is 2 s and the request deadline 30 s: a hang must be cut within
		// cutWithin (10 s), which a broken header timeout would not be.
		// Time.
		{name: "latency within the header timeout", faults: []pacssim.Fault{pacssim.Latency(100 * time.Millisecond)}, req: search, want: []string{""}, requests: 1, minElapsed: 100 * time.Millisecond},
		{name: "latency beyond the header timeout", faults: []pacssim.Fault{pacssim.Latency(time.Minute)}, req: search, want: []string{"timed out"}, requests: 1, minElapsed: headerTimeout, maxElapsed: cutWithin},
		{name: "hang", faults: []pacssim.Fault{pacssim.Hang()}, req: search, want: []string{"timed out"}, requests: 1, minElapsed: headerTimeout, maxElapsed: cutWithin},
		{
			// Here the request deadline is the short control and the header timeout (60 s) the
			// one that would cut the hang if the deadline failed.
			name:   "hang beyond the request deadline",
			faults: []pacssim.Fault{pacssim.Hang()},
			edit:   func(o *rigOptions) { o.headerTimeout, o.requestTimeout = time.Minute, 700*time.Millisecond },
			req:    search, want: []string{"timed out"}, requests: 1, minElapsed: 700 * time.Millisecond, maxElapsed: cutWithin,
		},
		{name: "latency within the header timeout on a retrieve", faults: []pacssim.Fault{pacssim.Latency(100 * time.Millisecond).Only(pacssim.KindRetrieve)}, req: retrieve, outcome: complete, requests: 1, minElapsed: 100 * time.Millisecond},
		{name: "hang on a retrieve", faults: []pacssim.Fault{pacssim.Hang().Only(pacssim.KindRetrieve)}, req: retrieve, outcome: refused, reason: "timed out", requests: 1, minElapsed: headerTimeout, maxElapsed: cutWithin},
		{name: "hang on metadata", faults: []pacssim.Fault{pacssim.Hang().Only(pacssim.KindMetadata)}, req: metadata, outcome: refused, reason: "timed out", requests: 1, minElapsed: headerTimeout, maxElapsed: cutWithin},

		// Connections.
		{name: "refused connections", refuse: true, req: search, want: []string{"is unreachable"}, requests: 0},
		{name: "refused connections on a retrieve", refuse: true, req: retrieve, outcome: refused, reason: "is unreachable", requests: 0},

		// Statuses. 500 is not retried; 429 is, once, with its Retry-After held to the
		// source's longest retry wait (50 ms): a Retry-After of a minute obeyed would leave
		// the answer to the request deadline (30 s), far past cutWithin.
		{name: "500", faults: []pacssim.Fault{pacssim.Status(http.StatusInternalServerError)}, req: search, want: []string{"answered 500"}, requests: 1},
		{name: "500 on a retrieve", faults: []pacssim.Fault{pacssim.Status(http.StatusInternalServerError).Only(pacssim.KindRetrieve)}, req: retrieve, outcome: refused, reason: "answered 500", requests: 1},
		{name: "500 on metadata", faults: []pacssim.Fault{pacssim.Status(http.StatusInternalServerError).Only(pacssim.KindMetadata)}, req: metadata, outcome: refused, reason: "answered 500", requests: 1},
		{
			name:   "429 with Retry-After once, then working",
			faults: []pacssim.Fault{pacssim.TooManyRequests(time.Minute).Flapping(pacssim.Flap{FailRequests: 1, WorkRequests: 100})},
			req:    search, want: []string{""}, requests: 2, maxElapsed: cutWithin,
		},
		{
			name:   "429 with Retry-After once on a retrieve, then working",
			faults: []pacssim.Fault{pacssim.TooManyRequests(time.Minute).Only(pacssim.KindRetrieve).Flapping(pacssim.Flap{FailRequests: 1, WorkRequests: 100})},
			req:    retrieve, outcome: complete, requests: 2, maxElapsed: cutWithin,
		},
		{name: "429 with Retry-After, persistent", faults: []pacssim.Fault{pacssim.TooManyRequests(time.Minute)}, req: search, want: []string{"answered 429"}, requests: 2, maxElapsed: cutWithin},

		// Broken answers.
		{name: "reset mid-stream on a retrieve", faults: []pacssim.Fault{pacssim.ResetMidStream(40_000).Only(pacssim.KindRetrieve)}, req: retrieve, outcome: aborted, requests: 1},
		{name: "reset mid-stream on a search", faults: []pacssim.Fault{pacssim.ResetMidStream(100).Only(pacssim.KindSearch)}, req: search, want: []string{"is unreachable"}, requests: 1},
		{name: "truncated multipart on a retrieve", faults: []pacssim.Fault{pacssim.TruncatedMultipart(2).Only(pacssim.KindRetrieve)}, req: retrieve, outcome: aborted, requests: 1},
		{name: "truncated multipart with every part but no closing delimiter", faults: []pacssim.Fault{pacssim.TruncatedMultipart(0).Only(pacssim.KindRetrieve)}, req: retrieve, outcome: aborted, requests: 1},
		{name: "truncated JSON on a search", faults: []pacssim.Fault{pacssim.TruncatedJSON().Only(pacssim.KindSearch)}, req: search, want: []string{"sent an invalid answer"}, requests: 1},
		{name: "truncated JSON on metadata", faults: []pacssim.Fault{pacssim.TruncatedJSON().Only(pacssim.KindMetadata)}, req: metadata, outcome: aborted, requests: 1},
		{name: "not DICOM JSON on a search", faults: []pacssim.Fault{pacssim.NotDICOMJSON().Only(pacssim.KindSearch)}, req: search, want: []string{"sent an invalid answer"}, requests: 1},
		{name: "not DICOM JSON on metadata", faults: []pacssim.Fault{pacssim.NotDICOMJSON().Only(pacssim.KindMetadata)}, req: metadata, outcome: refused, reason: "sent an invalid answer", requests: 1},
		{name: "wrong content type on a search", faults: []pacssim.Fault{pacssim.WrongContentType().Only(pacssim.KindSearch)}, req: search, want: []string{"sent an invalid answer"}, requests: 1},
		{name: "wrong content type on metadata", faults: []pacssim.Fault{pacssim.WrongContentType().Only(pacssim.KindMetadata)}, req: metadata, outcome: refused, reason: "sent an invalid answer", requests: 1},
		{name: "wrong content type on a retrieve", faults: []pacssim.Fault{pacssim.WrongContentType().Only(pacssim.KindRetrieve)}, req: retrieve, outcome: refused, reason: "sent an invalid answer", requests: 1},

		// Flapping: the breaker (at least 20 calls in its window before it may open) stays
		// closed throughout.
		{
			name:   "flapping by request count",
			faults: []pacssim.Fault{pacssim.Status(http.StatusInternalServerError).Flapping(pacssim.Flap{FailRequests: 1, WorkRequests: 1})},
			req:    search, want: []string{"answered 500", "", "answered 500", ""}, requests: 4,
		},
		{
			name:   "flapping by time",
			faults: []pacssim.Fault{pacssim.Status(http.StatusInternalServerError).Flapping(pacssim.Flap{Fail: time.Minute, Work: time.Minute, Clock: flapClock.Now})},
			clock:  flapClock, tick: 30 * time.Second,
			req: search, want: []string{"answered 500", "answered 500", "", "", "answered 500"}, requests: 5,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, demo, tc.edit)
			tr := r.trust(c)
			tr.SetFaults(tc.faults...)
			if tc.refuse {
				tr.RefuseConnections()
			}
			maxElapsed := tc.maxElapsed
			if maxElapsed == 0 {
				maxElapsed = r.opts.requestTimeout + deadlineMargin
			}
			timed := func(a answer) {
				t.Helper()
				if a.elapsed < tc.minElapsed || a.elapsed > maxElapsed {
					t.Errorf("%s: answered after %v; want between %v and %v", a.what, a.elapsed, tc.minElapsed, maxElapsed)
				}
			}
			kind := map[request]pacssim.RequestKind{search: pacssim.KindSearch, retrieve: pacssim.KindRetrieve, metadata: pacssim.KindMetadata}[tc.req]
			before := tr.RequestsOf(kind)

			switch tc.req {
			case search:
				for i, reason := range tc.want {
					got := r.searchAlice()
					timed(got)
					wantStatus(t, got, http.StatusOK)
					want := map[string]string{}
					if reason != "" {
						want[c] = reason
					}
					r.wantMissing(got, want)
					r.checkSearchSaysWhatIsMissing(got)
					if t.Failed() {
						t.Fatalf("search %d of %d", i+1, len(tc.want))
					}
					if tc.clock != nil {
						tc.clock.Advance(tc.tick)
					}
				}
			default:
				path := "studies/" + pacssim.DemoUltrasoundStudyUID
				accept := acceptDICOM
				if tc.req == metadata {
					path, accept = path+"/metadata", acceptJSON
				}
				got := r.get(path, accept)
				timed(got)
				switch tc.outcome {
				case complete:
					wantStatus(t, got, http.StatusOK)
					r.wantMissing(got, nil)
					wantInstances(t, got, instanceDigests(tr, pacssim.DemoUltrasoundStudyUID, ""))
				case refused:
					wantRefusal(t, got, http.StatusServiceUnavailable, c)
					r.wantMissing(got, map[string]string{c: tc.reason})
				case aborted:
					t.Logf("%s: %s", got.what, wantNeverComplete(t, r, got, c))
				}
			}
			if n := tr.RequestsOf(kind) - before; n != tc.requests {
				t.Errorf("XC3 received %d %s request(s); want %d", n, kind, tc.requests)
			}
		})
	}
}

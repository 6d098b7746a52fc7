package degraded_test

import (
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// misbehaviour is what the trusts of a case do wrong: faults per trust id, and the trusts
// that refuse connections.
type misbehaviour struct {
	faults map[string][]pacssim.Fault
	refuse []string
}

// apply sets m on the rig's trusts; newRig clears it when the test ends.
func (r *rig) apply(m misbehaviour) {
	for id, faults := range m.faults {
		r.trust(id).SetFaults(faults...)
	}
	for _, id := range m.refuse {
		r.trust(id).RefuseConnections()
	}
}

// TestDegradedModeTable proves each row of DESIGN.md's degraded-mode table that the proxy
// implements today, one subtest per row, named as the row is. The rows about the audit spool
// and the identity provider arrive with their own issues.
func TestDegradedModeTable(t *testing.T) {
	demo := demoTrusts(t)
	t.Run("some trusts fail or time out", func(t *testing.T) { testSomeTrustsFail(t, demo) })
	t.Run("every trust fails, nothing cached", func(t *testing.T) { testEveryTrustFails(t, demo) })
	t.Run("a trust's breaker is open", func(t *testing.T) { testBreakerOpen(t, demo) })
	t.Run("a client's failures cannot open a trust's breaker alone", func(t *testing.T) { testClientCannotTripBreaker(t, demo) })
	t.Run("a study is held by several trusts", testFailover)
	t.Run("a retrieve or its metadata lacks instances that a failed trust holds", func(t *testing.T) { testPartialRetrieve(t, demo) })
	t.Run("an upstream fails mid-stream", func(t *testing.T) { testMidStream(t, demo) })
	t.Run("a failed trust has a cached answer", func(t *testing.T) { testCachedAnswer(t, demo) })
	t.Run("Redis is down", func(t *testing.T) { testRedisDown(t, demo) })
}

// Row: a failed trust has a cached answer → that answer is used and marked stale (Warning 110),
// and the trust named as such (a 299 with the copy's age); without one, it is missing.
func testCachedAnswer(t *testing.T, demo []*pacssim.Trust) {
	const b = pacssim.DemoTrustB
	st, err := cache.NewLocalStore(8<<20, nil, cache.StoreOptions{MaxRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, demo, func(o *rigOptions) {
		o.cache, o.cacheFresh = st, 200*time.Millisecond
		o.trip.MinRequests = 100 // XB2's breaker stays closed, so it keeps answering 500
	})
	first := r.searchAlice()
	wantStatus(t, first, http.StatusOK)
	// The study held only at XB2, read while XB2 answers.
	meta := r.get("studies/"+pacssim.DemoChestCRStudyUID+"/metadata", acceptJSON)
	wantStatus(t, meta, http.StatusOK)

	time.Sleep(300 * time.Millisecond) // past the fresh period
	r.apply(misbehaviour{faults: map[string][]pacssim.Fault{b: {pacssim.Status(http.StatusInternalServerError)}}})
	for _, a := range []answer{r.searchAlice(), r.get("studies/"+pacssim.DemoChestCRStudyUID+"/metadata", acceptJSON)} {
		wantStatus(t, a, http.StatusOK)
		ws := r.warnings(a)
		if len(ws) != 2 || ws[0].code != 110 || ws[0].text != "Response is Stale" || ws[1].code != 299 ||
			!strings.Contains(ws[1].text, b+" ("+r.trust(b).Name+")") || !strings.Contains(ws[1].text, "cached") ||
			!strings.Contains(ws[1].text, "answered 500") {
			t.Errorf("%s: warnings %+v; want 110 \"Response is Stale\" and a 299 naming %s, the copy's age and why", a.what, ws, b)
		}
	}
	if got, want := studies(t, r.searchAlice()), studies(t, first); !slices.Equal(got, want) {
		t.Errorf("studies %v with XB2 stood in for by its copy; want %v", got, want)
	}
	// A trust with nothing cached is missing as before: XB2 for another query.
	other := r.get("studies?PatientID="+pacssim.DemoPatientNHSNumber+"&includefield=00081030", acceptJSON)
	wantStatus(t, other, http.StatusOK)
	r.wantMissing(other, map[string]string{b: "answered 500"})
	for _, w := range r.warnings(other) {
		if w.code == 110 {
			t.Errorf("%s: Warning 110 on an answer with no stale part", other.what)
		}
	}
}

// Row: Redis is down → requests go straight to upstreams; cache errors never fail a request.
func testRedisDown(t *testing.T, demo []*pacssim.Trust) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there: a Redis that is down
	sealer, err := cache.NewSealer([][]byte{make([]byte, cache.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	ro := config.DefaultCache().RedisOptions()
	ro.Addrs, ro.MaxRetention, ro.BreakerFailures, ro.BreakerCooldown = []string{dead}, time.Hour, 2, time.Minute
	rc, err := cache.NewRedis(ro, sealer, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	keyer, err := cache.NewKeyer(make([]byte, cache.MinKeyerSecret), "t:")
	if err != nil {
		t.Fatal(err)
	}
	st, err := cache.NewStore(rc, keyer, cache.StoreOptions{MaxRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, demo, func(o *rigOptions) { o.cache, o.cacheFresh = st, time.Minute })
	want := studiesAt(pacssim.DemoTrustA, pacssim.DemoTrustB, pacssim.DemoTrustC)
	for i := range 4 {
		a := r.searchAlice()
		wantStatus(t, a, http.StatusOK)
		if got := studies(t, a); !slices.Equal(got, want) || len(a.header.Values("Warning")) != 0 {
			t.Fatalf("search %d with Redis down: studies %v, warnings %q; want %v and none", i, got, a.header.Values("Warning"), want)
		}
		// A Redis that refuses connections costs the proxy nothing to try; a search that
		// waited on it anyway would hit the request deadline (30 s).
		if a.elapsed > cutWithin {
			t.Errorf("search %d with Redis down took %v; want well under the request deadline", i, a.elapsed)
		}
	}
	meta := r.get("studies/"+pacssim.DemoSharedStudyUID+"/metadata", acceptJSON)
	wantStatus(t, meta, http.StatusOK)
	if rc.Available() {
		t.Error("the Redis breaker is closed after repeated failures; want it open (Redis not called)")
	}
}

// Row: some trusts fail or time out → 200 with what answered, plus a Warning 299 naming each
// missing trust (id, name, why); by request (partial=fail) or for a required trust, 503.
func testSomeTrustsFail(t *testing.T, demo []*pacssim.Trust) {
	const (
		a, b, c = pacssim.DemoTrustA, pacssim.DemoTrustB, pacssim.DemoTrustC
	)
	tests := []struct {
		name       string
		m          misbehaviour
		edit       func(*rigOptions)
		query      string
		wantStatus int
		want       map[string]string // trust id -> reason named in its warning
	}{
		{
			name:       "a trust answers 500",
			m:          misbehaviour{faults: map[string][]pacssim.Fault{b: {pacssim.Status(http.StatusInternalServerError)}}},
			wantStatus: http.StatusOK,
			want:       map[string]string{b: "answered 500"},
		},
		{
			name:       "a trust answers after its header timeout",
			m:          misbehaviour{faults: map[string][]pacssim.Fault{c: {pacssim.Latency(10 * time.Second)}}},
			wantStatus: http.StatusOK,
			want:       map[string]string{c: "timed out"},
		},
		{
			name:       "a trust never answers",
			m:          misbehaviour{faults: map[string][]pacssim.Fault{c: {pacssim.Hang()}}},
			wantStatus: http.StatusOK,
			want:       map[string]string{c: "timed out"},
		},
		{
			name:       "a trust refuses connections",
			m:          misbehaviour{refuse: []string{a}},
			wantStatus: http.StatusOK,
			want:       map[string]string{a: "is unreachable"},
		},
		{
			name: "two trusts fail in different ways",
			m: misbehaviour{faults: map[string][]pacssim.Fault{
				b: {pacssim.Hang()},
				c: {pacssim.Status(http.StatusBadGateway)},
			}},
			wantStatus: http.StatusOK,
			want:       map[string]string{b: "timed out", c: "answered 502"},
		},
		{
			name:       "partial=fail refuses a search with a trust missing",
			m:          misbehaviour{faults: map[string][]pacssim.Fault{b: {pacssim.Status(http.StatusInternalServerError)}}},
			query:      "&partial=fail",
			wantStatus: http.StatusServiceUnavailable,
			want:       map[string]string{b: "answered 500"},
		},
		{
			name:       "a required trust fails",
			m:          misbehaviour{faults: map[string][]pacssim.Fault{c: {pacssim.Status(http.StatusInternalServerError)}}},
			edit:       func(o *rigOptions) { o.required = []string{c} },
			wantStatus: http.StatusServiceUnavailable,
			want:       map[string]string{c: "answered 500"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, demo, tc.edit)
			r.apply(tc.m)
			got := r.get("studies?PatientID="+pacssim.DemoPatientNHSNumber+tc.query, acceptJSON)
			if deadline := r.opts.requestTimeout + deadlineMargin; got.elapsed > deadline {
				t.Errorf("answered after %v; want within the request deadline plus a margin (%v)", got.elapsed, deadline)
			}
			r.wantMissing(got, tc.want)
			if tc.wantStatus == http.StatusOK {
				wantStatus(t, got, http.StatusOK)
				r.checkSearchSaysWhatIsMissing(got)
				return
			}
			ids := make([]string, 0, len(tc.want))
			for id := range tc.want {
				ids = append(ids, id)
			}
			wantRefusal(t, got, tc.wantStatus, ids...)
		})
	}
}

// Row: every trust fails, nothing cached → 503 with Retry-After and a DICOMweb error body
// naming every trust.
func testEveryTrustFails(t *testing.T, demo []*pacssim.Trust) {
	tests := []struct {
		name string
		m    misbehaviour
		want map[string]string
	}{
		{
			name: "each in its own way",
			m: misbehaviour{
				refuse: []string{pacssim.DemoTrustA},
				faults: map[string][]pacssim.Fault{
					pacssim.DemoTrustB: {pacssim.Status(http.StatusInternalServerError)},
					pacssim.DemoTrustC: {pacssim.Hang()},
				},
			},
			want: map[string]string{pacssim.DemoTrustA: "is unreachable", pacssim.DemoTrustB: "answered 500", pacssim.DemoTrustC: "timed out"},
		},
		{
			name: "all answer 503, retried",
			m: misbehaviour{faults: map[string][]pacssim.Fault{
				pacssim.DemoTrustA: {pacssim.Status(http.StatusServiceUnavailable)},
				pacssim.DemoTrustB: {pacssim.Status(http.StatusServiceUnavailable)},
				pacssim.DemoTrustC: {pacssim.Status(http.StatusServiceUnavailable)},
			}},
			want: map[string]string{pacssim.DemoTrustA: "answered 503", pacssim.DemoTrustB: "answered 503", pacssim.DemoTrustC: "answered 503"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, demo, nil)
			r.apply(tc.m)
			got := r.searchAlice()
			wantRefusal(t, got, http.StatusServiceUnavailable, pacssim.DemoTrustA, pacssim.DemoTrustB, pacssim.DemoTrustC)
			r.wantMissing(got, tc.want)
			if ra := got.header.Get("Retry-After"); ra != "7" {
				t.Errorf("Retry-After %q; want the deployment's 7 seconds", ra)
			}
			if deadline := r.opts.requestTimeout + deadlineMargin; got.elapsed > deadline {
				t.Errorf("answered after %v; want within the request deadline plus a margin (%v)", got.elapsed, deadline)
			}
		})
	}
}

// Row: a trust's breaker is open → it is not called, counted as failed at once and named; a
// half-open probe that fails opens it again; one that succeeds closes it and brings the
// trust's results back.
func testBreakerOpen(t *testing.T, demo []*pacssim.Trust) {
	const failures = 2
	r := newRig(t, demo, func(o *rigOptions) {
		// Every call failed, over the smallest minimum that shows it: the rule that opens a
		// breaker on the production defaults is TestClientCannotTripBreaker's.
		o.trip.MinRequests, o.trip.FailureRatio = failures, 1
		// Long enough that the checks made while it is open (a search and two reads of
		// /status) finish first, however loaded the machine.
		o.openFor = 5 * time.Second
	})
	b := r.trust(pacssim.DemoTrustB)
	b.SetFaults(pacssim.Status(http.StatusInternalServerError))
	for i := range failures {
		got := r.searchAlice()
		wantStatus(t, got, http.StatusOK)
		r.wantMissing(got, map[string]string{pacssim.DemoTrustB: "answered 500"})
		r.checkSearchSaysWhatIsMissing(got)
		if st := r.status()[pacssim.DemoTrustB].Breaker; i < failures-1 && st != "closed" {
			t.Fatalf("after %d failure(s) the breaker is %q; want closed until %d", i+1, st, failures)
		}
	}
	if st := r.status()[pacssim.DemoTrustB]; st.Breaker != "open" || st.LastFailure != "answered 500" {
		t.Fatalf("after %d failures /status shows %+v; want the breaker open and the last failure", failures, st)
	}

	before := b.Requests()
	got := r.searchAlice()
	wantStatus(t, got, http.StatusOK)
	r.wantMissing(got, map[string]string{pacssim.DemoTrustB: "has an open circuit breaker"})
	r.checkSearchSaysWhatIsMissing(got)
	if n := b.Requests() - before; n != 0 {
		t.Fatalf("XB2 received %d request(s) while its breaker was open; want none", n)
	}

	t.Run("a failing probe opens it again", func(t *testing.T) {
		waitFor(t, r.opts.openFor+eventually, "breaker half-open", func() bool { return r.status()[pacssim.DemoTrustB].Breaker == "half-open" })
		before := b.Requests()
		got := r.searchAlice()
		r.wantMissing(got, map[string]string{pacssim.DemoTrustB: "answered 500"})
		if n := b.Requests() - before; n != 1 {
			t.Errorf("the half-open breaker let %d request(s) through; want one probe", n)
		}
		if st := r.status()[pacssim.DemoTrustB].Breaker; st != "open" {
			t.Errorf("after a failed probe the breaker is %q; want open", st)
		}
	})

	t.Run("a successful probe closes it", func(t *testing.T) {
		if err := b.ClearFaults(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, r.opts.openFor+eventually, "breaker half-open", func() bool { return r.status()[pacssim.DemoTrustB].Breaker == "half-open" })
		got := r.searchAlice()
		wantStatus(t, got, http.StatusOK)
		r.wantMissing(got, nil)
		r.checkSearchSaysWhatIsMissing(got)
		if st := r.status()[pacssim.DemoTrustB].Breaker; st != "closed" {
			t.Errorf("after a successful probe the breaker is %q; want closed", st)
		}
	})
}

// Row: a caller's failures cannot open a trust's breaker → on the production defaults, five
// searches that the trust answers with 500 (as a query it chokes on would be) leave it closed
// and the trust asked; it takes at least minRequests calls within the window, half of them
// failed, the trade-off docs/clinical-safety/degraded-modes.md describes. A trust that refuses
// connections, which no client can cause, opens it after five calls in a row.
func testClientCannotTripBreaker(t *testing.T, demo []*pacssim.Trust) {
	t.Run("five 500s leave it closed; minRequests of them within the window open it", func(t *testing.T) {
		const provoked, minRequests = 5, 20 // minRequests: config.DefaultBreaker's
		r := newRig(t, demo, nil)
		b := r.trust(pacssim.DemoTrustB)
		b.SetFaults(pacssim.Status(http.StatusInternalServerError))
		for range provoked {
			got := r.searchAlice()
			wantStatus(t, got, http.StatusOK)
			r.wantMissing(got, map[string]string{pacssim.DemoTrustB: "answered 500"})
		}
		if st := r.status()[pacssim.DemoTrustB].Breaker; st != "closed" {
			t.Fatalf("after %d 500s the breaker is %q; want closed", provoked, st)
		}
		before := b.Requests()
		r.wantMissing(r.searchAlice(), map[string]string{pacssim.DemoTrustB: "answered 500"})
		if n := b.Requests() - before; n != 1 {
			t.Fatalf("XB2 received %d request(s) after %d 500s; want it still asked", n, provoked)
		}
		for i := provoked + 1; i < minRequests; i++ {
			r.searchAlice()
		}
		if st := r.status()[pacssim.DemoTrustB].Breaker; st != "open" {
			t.Fatalf("after %d 500s within the window the breaker is %q; want open", minRequests, st)
		}
	})

	t.Run("five refused connections in a row open it", func(t *testing.T) {
		r := newRig(t, demo, nil)
		r.apply(misbehaviour{refuse: []string{pacssim.DemoTrustA}})
		for i := range 5 {
			if st := r.status()[pacssim.DemoTrustA].Breaker; st != "closed" {
				t.Fatalf("after %d refused connection(s) the breaker is %q; want closed until 5", i, st)
			}
			r.wantMissing(r.searchAlice(), map[string]string{pacssim.DemoTrustA: "is unreachable"})
		}
		if st := r.status()[pacssim.DemoTrustA].Breaker; st != "open" {
			t.Fatalf("after five refused connections the breaker is %q; want open", st)
		}
	})
}

// Twin trusts hold identical copies of one study (same seed), so either can serve it whole.
const (
	twinStudyUID = pacssim.DemoUIDRoot + ".9.1"
	twinP        = "XP1"
	twinQ        = "XQ2"
)

func twinTrusts(t *testing.T) []*pacssim.Trust {
	t.Helper()
	spec := pacssim.StudySpec{
		UID: twinStudyUID, Date: "20240704", Time: "120000", AccessionNumber: "XP1-0001", StudyID: "9001",
		Description: "CT ABDOMEN", Institution: "Twin Demo Hospitals NHS Trust",
		Patient: pacssim.Patient{NHSNumber: pacssim.DemoPatientNHSNumber, Name: pacssim.DemoPatientName, BirthDate: "19800214", Sex: "F"},
		Series: []pacssim.SeriesSpec{
			{Number: 1, Modality: "CT", Description: "Axial", BodyPart: "ABDOMEN", Instances: 3, Rows: 64, Columns: 64},
			{Number: 2, Modality: "CT", Description: "Coronal", BodyPart: "ABDOMEN", Instances: 2, Rows: 64, Columns: 64},
		},
	}
	p, err := pacssim.NewTrust(twinP, "Preferred Twin Demo NHS Trust", pacssim.Options{Seed: pacssim.DemoSeed}, spec)
	if err != nil {
		t.Fatal(err)
	}
	q, err := pacssim.NewTrust(twinQ, "Second Twin Demo NHS Trust", pacssim.Options{Seed: pacssim.DemoSeed}, spec)
	if err != nil {
		t.Fatal(err)
	}
	return []*pacssim.Trust{p, q}
}

// Row: a study is held by several trusts → it is retrieved from the preferred holder, and
// fails over to the next when the preferred one fails before any byte is sent.
func testFailover(t *testing.T) {
	twins := twinTrusts(t)
	whole := instanceDigests(twins[0], twinStudyUID, "")
	if len(whole) != 5 || len(union(whole, instanceDigests(twins[1], twinStudyUID, ""))) != 5 {
		t.Fatalf("the twins' copies differ (%d instances); the test needs identical copies", len(whole))
	}
	var oneSOP, oneSeries string
	for _, in := range twins[0].Instances() {
		oneSOP, oneSeries = in.SOPInstanceUID, in.SeriesUID
		break
	}
	instancePath := "studies/" + twinStudyUID + "/series/" + oneSeries + "/instances/" + oneSOP
	oneInstance := map[[32]byte]string{}
	for d, sop := range whole {
		if sop == oneSOP {
			oneInstance[d] = sop
		}
	}
	tests := []struct {
		name    string
		m       misbehaviour
		edit    func(*rigOptions)
		path    string
		want    map[[32]byte]string
		served  map[string]int64  // retrieves each twin must see
		missing map[string]string // warnings wanted (none: the answer is complete)
	}{
		{
			name:   "the preferred holder serves it",
			path:   "studies/" + twinStudyUID,
			want:   whole,
			served: map[string]int64{twinP: 1, twinQ: 0},
		},
		{
			name:   "the preferred holder answers 500",
			m:      misbehaviour{faults: map[string][]pacssim.Fault{twinP: {pacssim.Status(http.StatusInternalServerError).Only(pacssim.KindRetrieve)}}},
			path:   "studies/" + twinStudyUID,
			want:   whole,
			served: map[string]int64{twinP: 1, twinQ: 1},
		},
		{
			name:   "the preferred holder hangs before its headers",
			m:      misbehaviour{faults: map[string][]pacssim.Fault{twinP: {pacssim.Hang().Only(pacssim.KindRetrieve)}}},
			path:   "studies/" + twinStudyUID,
			want:   whole,
			served: map[string]int64{twinP: 1, twinQ: 1},
		},
		{
			name:   "the preferred holder answers 503 to a series retrieve, retried",
			m:      misbehaviour{faults: map[string][]pacssim.Fault{twinP: {pacssim.Status(http.StatusServiceUnavailable).Only(pacssim.KindRetrieve)}}},
			path:   "studies/" + twinStudyUID + "/series/" + oneSeries,
			want:   instanceDigests(twins[0], twinStudyUID, oneSeries),
			served: map[string]int64{twinP: 2, twinQ: 1},
		},
		{
			name:   "the preferred holder refuses connections: an instance comes from the next",
			m:      misbehaviour{refuse: []string{twinP}},
			path:   instancePath,
			want:   oneInstance,
			served: map[string]int64{twinQ: 1},
		},
		{
			name:    "the preferred holder refuses connections: under partialRetrieve warn the study comes from the next, named as possibly incomplete",
			m:       misbehaviour{refuse: []string{twinP}},
			edit:    func(o *rigOptions) { o.retrieve = fallback.PartialWarn },
			path:    "studies/" + twinStudyUID,
			want:    whole,
			served:  map[string]int64{twinQ: 1},
			missing: map[string]string{twinP: "is unreachable"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, twins, tc.edit)
			r.apply(tc.m)
			before := map[string]int64{}
			for _, tr := range twins {
				before[tr.ID] = tr.RequestsOf(pacssim.KindRetrieve)
			}
			got := r.get(tc.path, acceptDICOM)
			wantStatus(t, got, http.StatusOK)
			r.wantMissing(got, tc.missing)
			wantInstances(t, got, tc.want)
			for id, n := range tc.served {
				if got := r.trust(id).RequestsOf(pacssim.KindRetrieve) - before[id]; got != n {
					t.Errorf("%s received %d retrieve(s); want %d", id, got, n)
				}
			}
		})
	}

	t.Run("the preferred holder refuses connections: by default the study is refused, as it may hold more", func(t *testing.T) {
		r := newRig(t, twins, nil)
		r.trust(twinP).RefuseConnections()
		got := r.get("studies/"+twinStudyUID, acceptDICOM)
		wantRefusal(t, got, http.StatusServiceUnavailable, twinP)
		r.wantMissing(got, map[string]string{twinP: "is unreachable"})
	})
}

// Row: a retrieve or its metadata lacks instances that a failed trust holds → 503 naming
// what is missing by default; partialRetrieve warn: 200 with a Warning; 206: 206 with it.
// The demo's knee MR is held at XA1 (series 1 and 2) and XB2 (series 1, 2 and 3).
func testPartialRetrieve(t *testing.T, demo []*pacssim.Trust) {
	a, b := demo[0], demo[1]
	if a.ID != pacssim.DemoTrustA || b.ID != pacssim.DemoTrustB {
		t.Fatalf("demo trusts are %s, %s; want XA1, XB2 first", a.ID, b.ID)
	}
	atA := instanceDigests(a, pacssim.DemoSharedStudyUID, "")
	if len(atA) != 16 || len(instanceDigests(b, pacssim.DemoSharedStudyUID, "")) != 22 {
		t.Fatalf("the demo's shared study changed: %d instances at XA1", len(atA))
	}
	const (
		study       = "studies/" + pacssim.DemoSharedStudyUID
		series1     = study + "/series/" + pacssim.DemoSharedStudyUID + ".1"
		extraSeries = study + "/series/" + pacssim.DemoSharedExtraSeriesUID
	)
	down := misbehaviour{faults: map[string][]pacssim.Fault{pacssim.DemoTrustB: {pacssim.Status(http.StatusInternalServerError)}}}
	fetchOnly := misbehaviour{faults: map[string][]pacssim.Fault{pacssim.DemoTrustB: {
		pacssim.Status(http.StatusInternalServerError).Only(pacssim.KindRetrieve, pacssim.KindMetadata),
	}}}
	tests := []struct {
		name   string
		policy fallback.Partial
		m      misbehaviour
		path   string
		accept string
		status int
		reason string              // how XB2's warning says it failed
		want   map[[32]byte]string // instances of a multipart answer; for metadata, their SOP UIDs count
	}{
		{name: "default: study retrieve", policy: fallback.PartialFail, m: down, path: study, accept: acceptDICOM, status: 503, reason: "answered 500"},
		{name: "default: study metadata", policy: fallback.PartialFail, m: down, path: study + "/metadata", accept: acceptJSON, status: 503, reason: "answered 500"},
		{name: "default: retrieve of a series held at both", policy: fallback.PartialFail, m: down, path: series1, accept: acceptDICOM, status: 503, reason: "answered 500"},
		{name: "default: retrieve of the series only the failed trust holds", policy: fallback.PartialFail, m: down, path: extraSeries, accept: acceptDICOM, status: 503, reason: "answered 500"},
		{name: "default: metadata of the series only the failed trust holds", policy: fallback.PartialFail, m: down, path: extraSeries + "/metadata", accept: acceptJSON, status: 503, reason: "answered 500"},
		{name: "default: the failed trust answers searches but not retrieves", policy: fallback.PartialFail, m: fetchOnly, path: study, accept: acceptDICOM, status: 503, reason: "answered 500"},
		{name: "default: the failed trust answers searches but not metadata", policy: fallback.PartialFail, m: fetchOnly, path: study + "/metadata", accept: acceptJSON, status: 503, reason: "answered 500"},

		{name: "warn: study retrieve", policy: fallback.PartialWarn, m: down, path: study, accept: acceptDICOM, status: 200, reason: "answered 500", want: atA},
		{name: "warn: study metadata", policy: fallback.PartialWarn, m: down, path: study + "/metadata", accept: acceptJSON, status: 200, reason: "answered 500", want: atA},
		// Nothing of the series can be had: a 404 would say it does not exist, an empty 200
		// that it is empty. Only a refusal naming XB2 is true.
		{name: "warn: retrieve of the series only the failed trust holds", policy: fallback.PartialWarn, m: down, path: extraSeries, accept: acceptDICOM, status: 503, reason: "answered 500"},
		{name: "warn: metadata of the series only the failed trust holds", policy: fallback.PartialWarn, m: down, path: extraSeries + "/metadata", accept: acceptJSON, status: 503, reason: "answered 500"},

		{name: "206: study retrieve", policy: fallback.Partial206, m: down, path: study, accept: acceptDICOM, status: 206, reason: "answered 500", want: atA},
		{name: "206: study metadata", policy: fallback.Partial206, m: down, path: study + "/metadata", accept: acceptJSON, status: 206, reason: "answered 500", want: atA},
		{name: "206: retrieve of the series only the failed trust holds", policy: fallback.Partial206, m: down, path: extraSeries, accept: acceptDICOM, status: 503, reason: "answered 500"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, demo, func(o *rigOptions) { o.retrieve = tc.policy })
			r.apply(tc.m)
			fetchesBefore := a.RequestsOf(pacssim.KindRetrieve)
			got := r.get(tc.path, tc.accept)
			r.wantMissing(got, map[string]string{pacssim.DemoTrustB: tc.reason})
			if tc.status == http.StatusServiceUnavailable {
				wantRefusal(t, got, tc.status, pacssim.DemoTrustB)
				if n := a.RequestsOf(pacssim.KindRetrieve) - fetchesBefore; n != 0 {
					t.Errorf("XA1 was asked for %d retrieve(s) of an answer that was refused", n)
				}
				return
			}
			wantStatus(t, got, tc.status)
			if tc.accept == acceptDICOM {
				wantInstances(t, got, tc.want)
				return
			}
			list := datasets(t, got)
			wantSOPs := map[string]bool{}
			for _, sop := range tc.want {
				wantSOPs[sop] = true
			}
			seen := map[string]bool{}
			for _, ds := range list {
				sop := ds.String(dcmjson.TagSOPInstanceUID)
				if !wantSOPs[sop] || seen[sop] {
					t.Errorf("metadata lists %s, which is not one of XA1's instances or is listed twice", sop)
				}
				seen[sop] = true
			}
			if len(seen) != len(wantSOPs) {
				t.Errorf("metadata lists %d instances; want XA1's %d", len(seen), len(wantSOPs))
			}
		})
	}
}

// Row: an upstream fails mid-stream → the multipart (or JSON) stream is aborted, never closed
// as if complete; it is logged and counted against the trust. XC3 alone holds the ultrasound.
func testMidStream(t *testing.T, demo []*pacssim.Trust) {
	const (
		study = "studies/" + pacssim.DemoUltrasoundStudyUID
		c     = pacssim.DemoTrustC
	)
	tests := []struct {
		name   string
		fault  pacssim.Fault
		stall  bool // the trust stalls after its first part instead (see stallAfterFirstPart)
		path   string
		accept string
		reason string // the trust's last failure in /status
	}{
		{name: "connection reset after the first bytes", fault: pacssim.ResetMidStream(40_000).Only(pacssim.KindRetrieve), path: study, accept: acceptDICOM, reason: "is unreachable"},
		{name: "multipart without its closing delimiter", fault: pacssim.TruncatedMultipart(1).Only(pacssim.KindRetrieve), path: study, accept: acceptDICOM, reason: "sent an invalid answer"},
		{name: "metadata cut in half", fault: pacssim.TruncatedJSON().Only(pacssim.KindMetadata), path: study + "/metadata", accept: acceptJSON, reason: "sent an invalid answer"},
		{name: "stall after the first part, cut by the idle timeout", stall: true, path: study, accept: acceptDICOM, reason: "stalled while sending"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, demo, nil)
			tr := r.trust(c)
			var stalls *counter
			if tc.stall {
				stalls = stallAfterFirstPart(t, tr, pacssim.DemoUltrasoundStudyUID)
			} else {
				tr.SetFaults(tc.fault)
			}
			got := r.get(tc.path, tc.accept)
			t.Logf("%s: %s after %v", got.what, wantNeverComplete(t, r, got, c), got.elapsed)
			if tc.stall {
				if stalls.get() != 1 {
					t.Fatalf("the stalling answer began %d times; want 1", stalls.get())
				}
				// Were the idle timeout broken, the stall would last until the client's timeout
				// (60 s).
				if lo, hi := r.opts.idleTimeout, r.opts.idleTimeout+cutWithin; got.elapsed < lo || got.elapsed > hi {
					t.Errorf("the stalled stream was cut after %v; want after the idle timeout (%v) and before %v", got.elapsed, lo, hi)
				}
			}
			// The breaker and /status hear of a fetch when its body is closed, just after the
			// client's answer ends: poll.
			var st sourceStatus
			for deadline := time.Now().Add(eventually); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if st = r.status()[c]; st.RecentFailures > 0 {
					break
				}
			}
			if st.RecentFailures != 1 || st.LastFailure != tc.reason {
				t.Errorf("/status shows XC3 with %d recent failure(s) of %d calls, the last %q; want the broken stream counted against it as %q",
					st.RecentFailures, st.RecentCalls, st.LastFailure, tc.reason)
			}
		})
	}
}

// Package auditcrash kills nirproxy with SIGKILL under a load of searches and retrieves and
// checks the promise of the audit record (issue 12, hazard H15): every answer whose status line
// a client received has its record in the spool, the hash chain verifies, and the restarted
// proxy recovers the spool and goes on recording where the chain left off.
package auditcrash

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/orthanc"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// loaders is how many clients load the proxy at once; killAfter how many answers they must
// have had before the proxy is killed.
const (
	loaders   = 8
	killAfter = 300
)

// rig is the demo's trusts, a development issuer, a PARS the proxies forward their records to,
// and the directory the proxies share.
type rig struct {
	bin     string
	dir     string
	access  *devaccess.Access
	sources []orthanc.ProxySource
	pars    *fakePARS
	parsURL string
}

// fakePARS is a FHIR AuditEvent endpoint that keeps each AuditEvent it is sent by id, as a
// server that honours client ids does, and the request id each names.
type fakePARS struct {
	mu      sync.Mutex
	byID    map[string]string // AuditEvent id -> the request id it names
	resent  int               // AuditEvents sent again under an id already held
	changed chan struct{}
}

func (p *fakePARS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev struct {
		ID     string `json:"id"`
		Entity []struct {
			What struct {
				Identifier struct{ System, Value string } `json:"identifier"`
			} `json:"what"`
		} `json:"entity"`
	}
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil || ev.ID == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	if _, held := p.byID[ev.ID]; held {
		p.resent++
	}
	for _, e := range ev.Entity {
		if e.What.Identifier.System == "https://fhir.nhs.uk/Id/transaction" {
			p.byID[ev.ID] = e.What.Identifier.Value
		}
	}
	p.mu.Unlock()
	select {
	case p.changed <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusCreated)
}

// requests is the request ids PARS holds, with how many AuditEvent ids name each.
func (p *fakePARS) requests() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for _, req := range p.byID {
		out[req]++
	}
	return out
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	bin, err := orthanc.BuildProxy(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{bin: bin, dir: t.TempDir(), pars: &fakePARS{byID: map[string]string{}, changed: make(chan struct{}, 1)}}
	parsServer := httptest.NewServer(r.pars)
	t.Cleanup(parsServer.Close)
	r.parsURL = parsServer.URL + "/fhir"
	trusts, err := pacssim.DemoTrusts()
	if err != nil {
		t.Fatal(err)
	}
	for i, tr := range trusts {
		root, stop, err := tr.Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		src := orthanc.ProxySource{ID: tr.ID, Name: tr.Name, URL: root + "/dicom-web", Priority: i + 1}
		if tr.ID == pacssim.DemoTrustC {
			continue // it keeps the NHS number where ProxySource cannot say; two trusts suffice
		}
		r.sources = append(r.sources, src)
	}
	if r.access, err = devaccess.Start(devaccess.Options{Dir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.access.Close() })
	return r
}

// start runs a proxy on the rig's directory (and so its audit spool).
func (r *rig) start(t *testing.T) *orthanc.Proxy {
	t.Helper()
	audit := map[string]any{
		"spoolDir": filepath.Join(r.dir, "audit"),
		"pars":     map[string]any{"url": r.parsURL, "observer": "nirproxy-crash-test"},
		"forward":  map[string]any{"minBackoff": "10ms", "maxBackoff": "200ms"},
		// Retention (which would need audit.checkpointKey) is not what this test is about.
		"retention": "0s",
	}
	p, err := orthanc.StartProxy(t.Context(), orthanc.ProxyOptions{Binary: r.bin, Sources: r.sources, Dir: r.dir, Access: r.access,
		Extra: map[string]any{"audit": audit}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// paths are what the load asks for: searches, metadata and whole instances.
func paths() []string {
	us := "/dicom-web/studies/" + pacssim.DemoSharedStudyUID
	return []string{
		"/dicom-web/studies?PatientID=" + pacssim.DemoPatientNHSNumber,
		us + "/series",
		us + "/metadata",
		"/dicom-web/studies?PatientID=" + pacssim.DemoSecondPatientNHSNumber,
	}
}

// load sends requests to p from loaders clients until ctx ends, and returns the ids of the
// requests whose status line (200) arrived, by the time each client stopped. reached is closed
// once killAfter of them have.
func (r *rig) load(ctx context.Context, p *orthanc.Proxy, reached chan<- struct{}) map[string]bool {
	var answered atomic.Int64
	var once sync.Once
	client := r.access.Client(devaccess.Clinician)
	var mu sync.Mutex
	got := map[string]bool{}
	var wg sync.WaitGroup
	for i := range loaders {
		wg.Go(func() {
			for n := i; ctx.Err() == nil; n++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+paths()[n%len(paths())], nil)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				// The status line has arrived: from here the proxy promised the record.
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					got[resp.Header.Get("X-Request-Id")] = true
					mu.Unlock()
					if answered.Add(1) == killAfter {
						once.Do(func() { close(reached) })
					}
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	return got
}

// recorded opens the spool in dir (recovering it as the proxy does) and returns the events it
// holds by request id, and the last sequence number.
func recorded(t *testing.T, dir string) (map[string]audit.Event, uint64) {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 64 << 20, MaxBytes: 10 << 30, Clock: time.Now}, nil)
	if err != nil {
		t.Fatalf("open the spool after the crash: %v", err)
	}
	defer sp.Close()
	cur, err := sp.Cursor("crash-test")
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	events := map[string]audit.Event{}
	var last uint64
	for sp.Lag("crash-test") > 0 {
		rec, err := cur.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		e, err := audit.Decode(rec.Payload)
		if err != nil {
			t.Fatalf("record %d: %v", rec.Seq, err)
		}
		events[e.RequestID] = e
		last = rec.Seq
		if err := cur.Ack(rec.Seq); err != nil {
			t.Fatal(err)
		}
	}
	return events, last
}

// TestKillUnderLoad: nirproxy killed with SIGKILL while eight clients search and retrieve has
// recorded every answer whose status line a client received; its spool's chain verifies (a
// record torn by the kill is cut away, not counted as a break); restarted on the same spool, it
// goes on recording after the last record; and forwarding resumes, so that PARS ends up with
// every record, each under one id.
func TestKillUnderLoad(t *testing.T) {
	r := newRig(t)
	p := r.start(t)
	ctx, cancel := context.WithCancel(t.Context())
	reached := make(chan struct{})
	done := make(chan map[string]bool, 1)
	go func() { done <- r.load(ctx, p, reached) }()
	select {
	case <-reached:
	case received := <-done:
		cancel()
		t.Fatalf("the load ended after %d answers, before %d", len(received), killAfter)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("kill -9 nirproxy: %v", err)
	}
	cancel()
	received := <-done
	t.Logf("killed after %d answers", len(received))

	report, err := spool.Verify(p.AuditDir())
	if err != nil {
		t.Fatalf("after kill -9 the spool does not verify: %v", err)
	}
	events, last := recorded(t, p.AuditDir())
	missing := 0
	for id := range received {
		if e, ok := events[id]; !ok || e.Status != http.StatusOK {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d answers a client received have no record of their success (the spool holds %d, torn tail %d bytes)", missing, len(received), len(events), report.Torn)
	}

	// Restarted on the same spool, the proxy records after the last record and the chain holds.
	p2 := r.start(t)
	resp, err := r.access.Get(t.Context(), p2.URL+paths()[0], devaccess.Clinician)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("X-Request-Id")
	// Read, while the restarted proxy runs, what its spool holds, and let it forward.
	final := map[string]audit.Event{}
	report, err = spool.ReadDir(p2.AuditDir(), func(rec spool.Record) bool {
		e, err := audit.Decode(rec.Payload)
		if err != nil {
			t.Errorf("record %d: %v", rec.Seq, err)
		}
		final[e.RequestID] = e
		return true
	})
	if err != nil || report.LastSeq <= last {
		t.Fatalf("after the restart the spool reads %v with last record %d; want it whole, past %d", err, report.LastSeq, last)
	}
	if final[id].Status != http.StatusOK {
		t.Errorf("the restarted proxy's answer %s is not recorded", id)
	}
	r.checkForwarded(t, final)
	if err := p2.Stop(); err != nil {
		t.Errorf("stop the restarted proxy: %v", err)
	}
	if _, err := spool.Verify(p2.AuditDir()); err != nil {
		t.Errorf("after the restart the spool does not verify: %v", err)
	}
}

// checkForwarded waits until PARS holds every record of the spool, forwarded across the kill
// and the restart, and checks that each is there under one AuditEvent id: none lost, none
// duplicated (a record re-sent after the kill, at least once, is the same id again).
func (r *rig) checkForwarded(t *testing.T, records map[string]audit.Event) {
	t.Helper()
	for {
		held := r.pars.requests()
		missing := 0
		for id := range records {
			if held[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			for id, n := range held {
				if n != 1 {
					t.Errorf("request %s is in PARS under %d AuditEvent ids; want one", id, n)
				}
				if _, ok := records[id]; !ok {
					t.Errorf("PARS holds request %s, which the spool does not", id)
				}
			}
			r.pars.mu.Lock()
			t.Logf("PARS holds all %d records; %d were sent again after the kill", len(records), r.pars.resent)
			r.pars.mu.Unlock()
			return
		}
		select {
		case <-r.pars.changed:
		case <-t.Context().Done():
			t.Fatalf("PARS lacks %d of the spool's %d records", missing, len(records))
		}
	}
}

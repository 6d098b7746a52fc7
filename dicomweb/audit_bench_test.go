package dicomweb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// This file measures what the patient audit record costs a request (issue 12, item 7): with
// the audit on, every answer's record is appended to the spool and fsynced before its status
// line is sent, concurrent requests sharing one fsync (group commit). `make bench` runs it and
// test/bench/cmd/loadbench writes the ratios into docs/performance.md.

// The numbers of clients sending requests at once in the concurrent cases. At
// auditBenchClients and auditBenchManyClients the audit=on front is not busy: most of its
// clients are waiting for an fsync at any moment, so those cases measure what the fsync adds to
// a request's time more than what the proxy can sustain. auditBenchLoadClients keeps both
// fronts' cores busy (the benchmark reports how busy), so its throughputs are what each can
// sustain: the search's figure issue 12's target is judged on.
const (
	auditBenchClients     = 16
	auditBenchManyClients = 64
	auditBenchLoadClients = 128
)

// auditBenchTurn is how many requests each client sends in a turn of the concurrent cases. A
// turn ends with fewer clients busy, while the last clients finish; with the audit on a
// request takes up to about 10 ms at auditBenchLoadClients, so a turn must hold many requests
// per client for its end to weigh little: with 32, a client's last request is a thirty-second
// of its turn. (At 64 clients the audit=on ratio measured 0.71× to 0.83× in five runs with 8,
// and 0.76× to 0.92× in eight with 32 or 64; the case's own spread, 0.62× to 0.92× within one
// `make bench`, is as wide, so the gain is the argument's more than a measurement's.)
const auditBenchTurn = 32

// auditBenchRequest is one kind of request the benchmark measures.
type auditBenchRequest struct {
	name, path, accept string
	// clients are the numbers of clients it is measured with.
	clients []int
	// fronts is the audit=off and audit=on handler that answer it.
	fronts [2]http.Handler
	// check says what is wrong with an answer of the warm-up, or nil.
	check func(*httptest.ResponseRecorder) error
	// upstream counts the requests of the kind the proxy must answer from its cache, so none
	// may reach the trust while the request is measured; nil when the request goes to the
	// trust every time.
	upstream func() int64
}

// auditRecorder is the audit=on fronts' recorder: serve's, over a spool on disk, counting the
// records it was given, so that the benchmark can check they all reached the spool, and the
// time their recording took.
type auditRecorder struct {
	*audit.Spooled
	recorded atomic.Int64
	spent    atomic.Int64
}

// Record implements audit.Recorder.
func (r *auditRecorder) Record(ctx context.Context, e audit.Event) error {
	start := time.Now()
	err := r.Spooled.Record(ctx, e)
	r.spent.Add(int64(time.Since(start)))
	r.recorded.Add(1)
	return err
}

// BenchmarkAudit is requests through the whole handler (middleware, routing, serve's
// governance with a cached token, cache or trust, answer writing; no network to the client)
// with the audit off (audit.Discard) and on (audit.Spooled over a real spool, as serve runs
// it: every record fsynced before the status line, concurrent records sharing an fsync). Its
// requests, each answered with one record (one patient):
//
//   - search: the study search of BenchmarkCachedSearchAuth (10 studies), from the in-process
//     cache;
//   - metadata: the study metadata of pacssim's demo CT head (13 instances) at trust XA1, in
//     process behind an httptest server, from the in-process cache;
//   - instance: one whole instance of that study (about 33 KB), fetched from the trust on
//     every request (retrieves are never cached).
//
// With one client (clients=1) off and on are alternated request by request, as in
// BenchmarkCachedSearchAuth, so that both see the machine at the same moments. With more
// clients (auditBenchClients; for the search also auditBenchManyClients and
// auditBenchLoadClients) they are alternated
// turn by turn, each turn every client sending auditBenchTurn requests to one mode: requests
// alternated by each client would make both modes' throughputs equal, and their times would
// be latencies under a mixed load, not what either mode sustains alone.
//
// Each case reports the time per request of each mode (at one client a request's time, at more
// the inverse of its throughput) and their ratio of throughputs (on/off); for each mode the
// process's CPU time per request (user and system, from getrusage, so that a mode's cost is
// told from its idle time) and the cores it kept busy on average; the mean time
// audit.Spooled.Record took in audit=on's requests (encoding the event, appending it, waiting
// for its fsync, its own or one shared with other records); and the median time of an fsync of
// a file in the spool's directory after a 1 KiB append, measured between the rounds. The spool
// is in the test's temporary directory unless that is tmpfs, whose fsync waits for no disk;
// then under the module's test/.cache.
//
// Before measuring, each request is checked to be answered alike by both fronts; after, the
// cached requests to have reached no trust, and every record of the audit=on front to be in
// the spool.
func BenchmarkAudit(b *testing.B) {
	acc, err := devaccess.Start(devaccess.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = acc.Close() })
	token, err := acc.Token(devaccess.Clinician)
	if err != nil {
		b.Fatal(err)
	}
	dir := auditSpoolDir(b)
	sp, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 64 << 20, MaxBytes: 10 << 30, Clock: time.Now}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sp.Close() })
	rec := &auditRecorder{Spooled: audit.NewSpooled(sp)}
	b.Cleanup(func() { checkSpooled(b, sp, rec.recorded.Load()) })

	an, az := governance(b, acc, 10_000)
	origin := authBenchOrigin(b)
	search := [2]http.Handler{
		cachedHandler(b, an, az, audit.Discard{}, originTrust(origin)),
		cachedHandler(b, an, az, rec, originTrust(origin)),
	}
	trusts, err := pacssim.DemoTrusts()
	if err != nil {
		b.Fatal(err)
	}
	xa1 := trusts[0]
	srv := httptest.NewServer(xa1.Handler())
	b.Cleanup(srv.Close)
	a1 := benchTrust{xa1.ID, srv.URL + "/dicom-web"}
	retrieve := [2]http.Handler{cachedHandler(b, an, az, audit.Discard{}, a1), cachedHandler(b, an, az, rec, a1)}

	ct := pacssim.DemoHeadCTStudyUID
	dicomJSON := "application/dicom+json"
	requests := []*auditBenchRequest{
		{name: "search", path: authBenchPath, accept: dicomJSON, clients: []int{1, auditBenchClients, auditBenchManyClients, auditBenchLoadClients},
			fronts: search, check: datasets(authBenchStudies), upstream: origin.calls.Load},
		{name: "metadata", path: "/dicom-web/studies/" + ct + "/metadata", accept: dicomJSON, clients: []int{1, auditBenchClients},
			fronts: retrieve, check: datasets(13), upstream: func() int64 { return xa1.RequestsOf(pacssim.KindMetadata) }},
		{name: "instance", path: "/dicom-web/studies/" + ct + "/series/" + ct + ".2/instances/" + ct + ".2.1",
			accept: `multipart/related; type="application/dicom"; transfer-syntax=*`, clients: []int{1, auditBenchClients},
			fronts: retrieve, check: onePart10},
	}
	for _, r := range requests {
		r.warm(b, token)
	}

	probe, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = probe.Close() })

	for _, r := range requests {
		for _, clients := range r.clients {
			perClient := 1
			if clients > 1 {
				perClient = auditBenchTurn
			}
			b.Run(fmt.Sprintf("%s/clients=%d", r.name, clients), func(b *testing.B) {
				var upstream int64
				if r.upstream != nil {
					upstream = r.upstream()
				}
				recorded, spent := rec.recorded.Load(), rec.spent.Load()
				b.ReportAllocs()
				r.measure(b, clients, perClient, token, probe)
				if r.upstream != nil {
					if n := r.upstream() - upstream; n != 0 {
						b.Errorf("the measured requests sent %d requests to the trust; every one must be answered from the cache", n)
					}
				}
				if n := rec.recorded.Load() - recorded; n > 0 {
					b.ReportMetric(float64(rec.spent.Load()-spent)/float64(n), "record-ns")
				}
			})
		}
	}
}

// warm sends r twice to each front, filling caches and the locator, and checks that both
// answer it alike.
func (r *auditBenchRequest) warm(b *testing.B, token string) {
	var answers [2]*httptest.ResponseRecorder
	for i, h := range r.fronts {
		for range 2 {
			a, err := getOnce(h, r.path, r.accept, token)
			if err != nil {
				b.Fatalf("%s, audit %s: %v", r.name, auditMode(i), err)
			}
			answers[i] = a
		}
		if err := r.check(answers[i]); err != nil {
			b.Fatalf("%s, audit %s: %v", r.name, auditMode(i), err)
		}
	}
	// Multipart answers differ in their boundary only.
	kind := func(a *httptest.ResponseRecorder) string {
		ct, _, _ := strings.Cut(a.Header().Get("Content-Type"), "; boundary=")
		return ct
	}
	if off, on := answers[0], answers[1]; kind(off) != kind(on) || off.Body.Len() != on.Body.Len() {
		b.Fatalf("%s: the audit=on answer (%s, %d bytes) differs from audit=off's (%s, %d bytes)", r.name,
			kind(on), on.Body.Len(), kind(off), off.Body.Len())
	}
}

// measure sends b.N rounds of r. In each, r goes to one front, then to the other (the first
// being off and on in turn from round to round): each time clients clients at once send it
// perClient times each, one after another. It reports for each mode the time per request (the
// time the mode's turns took over the requests sent in them: at one client a request's time, at
// more the inverse of the throughput) and the ratio of their throughputs (on/off); and the
// median time of an fsync of probe after a 1 KiB append, one between each round and the next,
// outside the measured time.
func (r *auditBenchRequest) measure(b *testing.B, clients, perClient int, token string, probe *os.File) {
	var spent, cpu [2]time.Duration
	fsyncs := make([]time.Duration, 0, b.N)
	var failed error
	var once sync.Once
	b.ResetTimer()
	for round := range b.N {
		for k := range 2 {
			j := (round + k) % 2
			start, cpuStart := time.Now(), cpuTime(b)
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for range perClient {
						if _, err := getOnce(r.fronts[j], r.path, r.accept, token); err != nil {
							once.Do(func() { failed = fmt.Errorf("%s, audit %s: %w", r.name, auditMode(j), err) })
							return
						}
					}
				})
			}
			wg.Wait()
			spent[j] += time.Since(start)
			cpu[j] += cpuTime(b) - cpuStart
			if failed != nil {
				b.Fatal(failed)
			}
		}
		b.StopTimer()
		fsyncs = append(fsyncs, fsyncOnce(b, probe))
		b.StartTimer()
	}
	b.StopTimer()
	sent := float64(b.N * clients * perClient)
	b.ReportMetric(float64(spent[0].Nanoseconds())/sent, "off-ns/req")
	b.ReportMetric(float64(spent[1].Nanoseconds())/sent, "on-ns/req")
	b.ReportMetric(float64(spent[0])/float64(spent[1]), "on/off")
	b.ReportMetric(float64(cpu[0].Nanoseconds())/sent, "off-cpu-ns/req")
	b.ReportMetric(float64(cpu[1].Nanoseconds())/sent, "on-cpu-ns/req")
	b.ReportMetric(float64(cpu[0])/float64(spent[0]), "off-cores")
	b.ReportMetric(float64(cpu[1])/float64(spent[1]), "on-cores")
	slices.Sort(fsyncs)
	b.ReportMetric(float64(fsyncs[len(fsyncs)/2].Nanoseconds()), "fsync-ns")
}

// cpuTime is the CPU time the process has used so far, in user and system mode.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// auditMode names the front at index i of auditBenchRequest.fronts.
func auditMode(i int) string { return [2]string{"off", "on"}[i] }

// datasets checks that an answer is DICOM JSON of n data sets.
func datasets(n int) func(*httptest.ResponseRecorder) error {
	return func(a *httptest.ResponseRecorder) error {
		list, err := dcmjson.Decode(a.Body.Bytes())
		if err != nil || len(list) != n {
			return fmt.Errorf("answered %d data sets, want %d (%v)", len(list), n, err)
		}
		return nil
	}
}

// onePart10 checks that an answer is a multipart retrieve holding one PS3.10 file.
func onePart10(a *httptest.ResponseRecorder) error {
	ct := a.Header().Get("Content-Type")
	if !strings.HasPrefix(ct, "multipart/related") || bytes.Count(a.Body.Bytes(), []byte("DICM")) != 1 {
		return fmt.Errorf("answered %s of %d bytes, want one PS3.10 file in multipart/related", ct, a.Body.Len())
	}
	return nil
}

// checkSpooled fails b unless the spool holds exactly the records the audit=on fronts made.
func checkSpooled(b *testing.B, sp *spool.Spool, recorded int64) {
	var n int64
	if err := sp.Scan(context.Background(), 1, func(spool.Record) bool { n++; return true }); err != nil {
		b.Errorf("read the spool: %v", err)
	} else if n != recorded {
		b.Errorf("the spool holds %d records; the audit=on fronts made %d", n, recorded)
	}
}

// auditSpoolDir is a new directory for the benchmark's spool on a disk, as a proxy's spool is:
// the test's temporary directory, unless that is tmpfs (whose fsync returns at once); then one
// under the module's test/.cache.
func auditSpoolDir(b *testing.B) string {
	dir := b.TempDir()
	if mountType(dir) != "tmpfs" {
		return dir
	}
	base := filepath.Join("..", "test", ".cache")
	if err := os.MkdirAll(base, 0o755); err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp(base, "audit-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// mountType is the type of the filesystem holding dir, from /proc/self/mounts, or "" when it
// cannot be told.
func mountType(dir string) string {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return ""
	}
	var at, typ string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		// The longest mount point holding dir; of equal ones, the last mounted.
		if mnt := f[1]; (dir == mnt || strings.HasPrefix(dir, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) >= len(at) {
			at, typ = mnt, f[2]
		}
	}
	return typ
}

// fsyncOnce appends 1 KiB to f and fsyncs it, as the spool does for a record (or a group of
// them), and returns the time that took.
func fsyncOnce(b *testing.B, f *os.File) time.Duration {
	start := time.Now()
	_, err := f.Write(make([]byte, 1024))
	if err = errors.Join(err, f.Sync()); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

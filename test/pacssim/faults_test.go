package pacssim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/dicomweb/media"
)

const faultStudyUID = DemoUIDRoot + ".9.1"

// faultTrust is a small trust for fault tests, served on a real loopback listener: one
// study of three MR instances, so retrieves have several parts.
type faultTrust struct {
	*Trust
	url    string // server root
	client *http.Client
	stop   func() // stops the server and closes the client's connections; idempotent
}

func newFaultTrust(t *testing.T, opts Options) *faultTrust {
	t.Helper()
	tr, err := NewTrust("XF1", "Faulty Demo Hospitals NHS Trust", opts, StudySpec{
		UID: faultStudyUID, Patient: Patient{NHSNumber: DemoPatientNHSNumber, Name: DemoPatientName, BirthDate: "19800214", Sex: "F"},
		Date: "20240101", Time: "120000", AccessionNumber: "XF1-0001", StudyID: "1", Description: "MR KNEE",
		Series: []SeriesSpec{{Number: 1, Modality: "MR", Description: "Sag T1", BodyPart: "KNEE", Instances: 3, Rows: 32, Columns: 32}},
	})
	if err != nil {
		t.Fatalf("NewTrust: %v", err)
	}
	url, stop, err := tr.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	transport := &http.Transport{}
	ft := &faultTrust{Trust: tr, url: url, client: &http.Client{Transport: transport}, stop: sync.OnceFunc(func() {
		stop()
		transport.CloseIdleConnections()
	})}
	t.Cleanup(ft.stop)
	return ft
}

// The paths fault tests ask for, by kind.
func searchPath() string   { return "/dicom-web/studies?PatientID=" + DemoPatientNHSNumber }
func retrievePath() string { return "/dicom-web/studies/" + faultStudyUID }
func metadataPath() string { return "/dicom-web/studies/" + faultStudyUID + "/metadata" }

// answer is what a plain client saw.
type answer struct {
	resp    *http.Response
	body    []byte
	err     error // from Do: no answer at all
	readErr error // from reading the body
	elapsed time.Duration
}

// do GETs path with the given timeout (0 for none) and reads the whole answer.
func (ft *faultTrust) do(t *testing.T, path string, timeout time.Duration) answer {
	t.Helper()
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ft.url+path, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	start := time.Now()
	resp, err := ft.client.Do(req)
	if err != nil {
		return answer{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(resp.Body)
	return answer{resp: resp, body: body, readErr: readErr, elapsed: time.Since(start)}
}

// parts reads a multipart/related body and returns how many parts it began and the error
// that ended the reading (nil when it ended with the closing delimiter). Without the
// delimiter, reading the last part fails: nothing says where it ends.
func parts(t *testing.T, a answer) (int, error) {
	t.Helper()
	_, params, err := mime.ParseMediaType(a.resp.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		t.Fatalf("Content-Type %q: no boundary (%v)", a.resp.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(a.body), params["boundary"])
	for n := 0; ; {
		p, err := mr.NextPart()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
		if _, err := io.ReadAll(p); err != nil {
			return n, err
		}
	}
}

// wantHealthy fails unless a is a complete, well-formed answer to path.
func wantHealthy(t *testing.T, path string, a answer) {
	t.Helper()
	if a.err != nil || a.readErr != nil {
		t.Fatalf("GET %s: %v %v", path, a.err, a.readErr)
	}
	if a.resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, a.resp.StatusCode, a.body)
	}
	if path == retrievePath() {
		if n, err := parts(t, a); n != 3 || err != nil {
			t.Fatalf("GET %s: %d parts (%v), want 3 and the closing delimiter", path, n, err)
		}
		return
	}
	if ds, err := dcmjson.Decode(a.body); err != nil || len(ds) == 0 {
		t.Fatalf("GET %s: %d datasets (%v): %s", path, len(ds), err, a.body)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name    string
		fault   Fault
		path    string
		timeout time.Duration
		check   func(t *testing.T, a answer)
	}{
		{
			name: "latency before the headers", fault: Latency(150 * time.Millisecond), path: searchPath(),
			check: func(t *testing.T, a answer) {
				wantHealthy(t, searchPath(), a)
				if a.elapsed < 150*time.Millisecond {
					t.Errorf("answered in %v, want 150ms or more", a.elapsed)
				}
			},
		},
		{
			name: "latency on searches leaves metadata alone", fault: Latency(2 * time.Second).Only(KindSearch), path: metadataPath(),
			check: func(t *testing.T, a answer) {
				wantHealthy(t, metadataPath(), a)
				if a.elapsed > time.Second {
					t.Errorf("answered in %v, want no added latency", a.elapsed)
				}
			},
		},
		{
			name: "hang until the client gives up", fault: Hang(), path: searchPath(), timeout: 150 * time.Millisecond,
			check: func(t *testing.T, a answer) {
				if !errors.Is(a.err, context.DeadlineExceeded) {
					t.Fatalf("error %v, status %v; want the client's deadline", a.err, a.resp)
				}
				if a.elapsed < 100*time.Millisecond || a.elapsed > 2*time.Second {
					t.Errorf("gave up after %v, want about 150ms", a.elapsed)
				}
			},
		},
		{
			name: "500", fault: Status(http.StatusInternalServerError), path: searchPath(),
			check: func(t *testing.T, a answer) {
				var body struct{ HttpStatus int }
				if a.resp.StatusCode != 500 || json.Unmarshal(a.body, &body) != nil || body.HttpStatus != 500 {
					t.Errorf("status %d, body %s; want 500 with an Orthanc-like error", a.resp.StatusCode, a.body)
				}
			},
		},
		{
			name: "500 on retrieves leaves searches alone", fault: Status(500).Only(KindRetrieve), path: searchPath(),
			check: func(t *testing.T, a answer) { wantHealthy(t, searchPath(), a) },
		},
		{
			name: "500 on retrieves", fault: Status(500).Only(KindRetrieve), path: retrievePath(),
			check: func(t *testing.T, a answer) {
				if a.resp.StatusCode != 500 {
					t.Errorf("status %d, want 500", a.resp.StatusCode)
				}
			},
		},
		{
			name: "429 with Retry-After", fault: TooManyRequests(2500 * time.Millisecond), path: metadataPath(),
			check: func(t *testing.T, a answer) {
				if a.resp.StatusCode != http.StatusTooManyRequests || a.resp.Header.Get("Retry-After") != "3" {
					t.Errorf("status %d, Retry-After %q; want 429 and 3", a.resp.StatusCode, a.resp.Header.Get("Retry-After"))
				}
			},
		},
		{
			name: "reset mid-stream", fault: ResetMidStream(1000).Only(KindRetrieve), path: retrievePath(),
			check: func(t *testing.T, a answer) {
				if a.err != nil || a.resp.StatusCode != 200 {
					t.Fatalf("error %v; want the headers (200) before the reset", a.err)
				}
				if !errors.Is(a.readErr, syscall.ECONNRESET) && !errors.Is(a.readErr, io.ErrUnexpectedEOF) {
					t.Errorf("reading the body: %v; want a reset connection", a.readErr)
				}
				if len(a.body) > 1000 {
					t.Errorf("%d body bytes arrived, want at most 1000", len(a.body))
				}
			},
		},
		{
			name: "truncated multipart", fault: TruncatedMultipart(0), path: retrievePath(),
			check: func(t *testing.T, a answer) {
				if a.err != nil || a.readErr != nil || a.resp.StatusCode != 200 {
					t.Fatalf("error %v, %v; want a clean HTTP answer", a.err, a.readErr)
				}
				_, params, _ := mime.ParseMediaType(a.resp.Header.Get("Content-Type"))
				if bytes.Contains(a.body, []byte("--"+params["boundary"]+"--")) {
					t.Error("the body has its closing delimiter")
				}
				if n, err := parts(t, a); n != 3 || err == nil {
					t.Errorf("%d parts (%v); want 3, then an error for the missing delimiter", n, err)
				}
			},
		},
		{
			name: "multipart truncated after one part", fault: TruncatedMultipart(1), path: retrievePath(),
			check: func(t *testing.T, a answer) {
				if a.err != nil || a.readErr != nil || a.resp.StatusCode != 200 {
					t.Fatalf("error %v, %v; want a clean HTTP answer", a.err, a.readErr)
				}
				if n, err := parts(t, a); n != 1 || err == nil {
					t.Errorf("%d parts (%v); want 1, then an error for the missing delimiter", n, err)
				}
			},
		},
		{
			name: "every part twice", fault: DuplicateParts().Only(KindRetrieve), path: retrievePath(),
			check: func(t *testing.T, a answer) {
				sops := partSOPs(t, a)
				want := []string{faultStudyUID + ".1.1", faultStudyUID + ".1.1", faultStudyUID + ".1.2", faultStudyUID + ".1.2", faultStudyUID + ".1.3", faultStudyUID + ".1.3"}
				if strings.Join(sops, " ") != strings.Join(want, " ") {
					t.Errorf("parts hold %v; want each instance twice in a row, then the closing delimiter", sops)
				}
			},
		},
		{
			name: "an instance left out of retrieves", fault: OmitInstance(faultStudyUID + ".1.2"), path: retrievePath(),
			check: func(t *testing.T, a answer) {
				sops := partSOPs(t, a)
				if want := []string{faultStudyUID + ".1.1", faultStudyUID + ".1.3"}; strings.Join(sops, " ") != strings.Join(want, " ") {
					t.Errorf("parts hold %v; want %v, then the closing delimiter", sops, want)
				}
			},
		},
		{
			name: "an instance left out of retrieves is still listed", fault: OmitInstance(faultStudyUID + ".1.2"), path: "/dicom-web/studies/" + faultStudyUID + "/instances",
			check: func(t *testing.T, a answer) {
				ds, err := dcmjson.Decode(a.body)
				if err != nil || len(ds) != 3 {
					t.Errorf("the search lists %d instances (%v); want all 3", len(ds), err)
				}
			},
		},
		{
			name: "truncated JSON", fault: TruncatedJSON().Only(KindSearch, KindMetadata), path: searchPath(),
			check: func(t *testing.T, a answer) {
				if a.readErr != nil || a.resp.Header.Get("Content-Type") != "application/dicom+json" || !bytes.HasPrefix(a.body, []byte("[")) {
					t.Fatalf("read error %v, Content-Type %q, body %.20q", a.readErr, a.resp.Header.Get("Content-Type"), a.body)
				}
				var v any
				if err := json.Unmarshal(a.body, &v); err == nil {
					t.Error("the body decodes as JSON")
				}
			},
		},
		{
			name: "not DICOM JSON", fault: NotDICOMJSON(), path: metadataPath(),
			check: func(t *testing.T, a answer) {
				if a.resp.StatusCode != 200 || a.resp.Header.Get("Content-Type") != "application/dicom+json" {
					t.Fatalf("status %d, Content-Type %q", a.resp.StatusCode, a.resp.Header.Get("Content-Type"))
				}
				if _, err := dcmjson.Decode(a.body); err == nil {
					t.Errorf("%s decodes as DICOM JSON", a.body)
				}
			},
		},
		{
			name: "wrong content type", fault: WrongContentType(), path: searchPath(),
			check: func(t *testing.T, a answer) {
				if ct := a.resp.Header.Get("Content-Type"); a.resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/html") {
					t.Errorf("status %d, Content-Type %q; want 200 text/html", a.resp.StatusCode, ct)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ft := newFaultTrust(t, Options{Faults: []Fault{tc.fault}})
			tc.check(t, ft.do(t, tc.path, tc.timeout))
			if got := ft.Requests(); got != 1 {
				t.Errorf("%d requests counted, want 1", got)
			}
			if err := ft.ClearFaults(); err != nil {
				t.Fatal(err)
			}
			wantHealthy(t, tc.path, ft.do(t, tc.path, 5*time.Second))
		})
	}
}

// partSOPs reads a multipart answer that must end with its closing delimiter and returns
// the SOP instance of each part, in order, from the part's file meta information.
func partSOPs(t *testing.T, a answer) []string {
	t.Helper()
	if a.err != nil || a.readErr != nil || a.resp.StatusCode != 200 {
		t.Fatalf("error %v, %v; want a clean 200", a.err, a.readErr)
	}
	_, params, _ := mime.ParseMediaType(a.resp.Header.Get("Content-Type"))
	mr := multipart.NewReader(bytes.NewReader(a.body), params["boundary"])
	var out []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read part %d: %v", len(out)+1, err)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("read part %d: %v", len(out)+1, err)
		}
		meta, _, err := media.ParseFileMeta(body)
		if err != nil {
			t.Fatalf("part %d: %v", len(out)+1, err)
		}
		out = append(out, meta.SOPInstanceUID)
	}
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func TestFlapping(t *testing.T) {
	t.Run("by requests", func(t *testing.T) {
		t.Parallel()
		ft := newFaultTrust(t, Options{})
		ft.SetFaults(Status(500).Only(KindSearch).Flapping(Flap{FailRequests: 2, WorkRequests: 3}))
		var got []int
		for range 10 {
			got = append(got, ft.do(t, searchPath(), 5*time.Second).resp.StatusCode)
			// Requests of other kinds neither fail nor move the phase.
			if a := ft.do(t, metadataPath(), 5*time.Second); a.resp.StatusCode != 200 {
				t.Fatalf("metadata: status %d", a.resp.StatusCode)
			}
		}
		want := []int{500, 500, 200, 200, 200, 500, 500, 200, 200, 200}
		if mustJSON(got) != mustJSON(want) {
			t.Errorf("statuses %v, want %v", got, want)
		}
	})
	t.Run("by time", func(t *testing.T) {
		t.Parallel()
		t0 := time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)
		clock := &fakeClock{now: t0}
		ft := newFaultTrust(t, Options{})
		ft.SetFaults(Status(503).Flapping(Flap{Fail: 20 * time.Second, Work: 10 * time.Second, Clock: clock.Now}))
		steps := []struct {
			at   time.Duration
			want int
		}{
			{0, 503}, {19 * time.Second, 503}, {20 * time.Second, 200}, {29 * time.Second, 200},
			{30 * time.Second, 503}, {49 * time.Second, 503}, {55 * time.Second, 200}, {61 * time.Second, 503},
		}
		for _, s := range steps {
			clock.Set(t0.Add(s.at))
			if got := ft.do(t, searchPath(), 5*time.Second).resp.StatusCode; got != s.want {
				t.Errorf("at %v: status %d, want %d", s.at, got, s.want)
			}
		}
	})
}

// goroutinesBack waits up to two seconds for the number of goroutines to fall to n.
func goroutinesBack(t *testing.T, n int) {
	t.Helper()
	var now int
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if now = runtime.NumGoroutine(); now <= n {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Errorf("%d goroutines, want %d or fewer:\n%s", now, n, buf[:runtime.Stack(buf, true)])
}

// TestHangReleasedAndNoLeak hangs requests, lets some clients give up and clears the fault
// for the rest, and checks that nothing is left running once the trust stops.
func TestHangReleasedAndNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	ft := newFaultTrust(t, Options{})
	ft.SetFaults(Hang().Only(KindSearch))
	const released, abandoned = 4, 3
	var wg sync.WaitGroup
	results := make(chan answer, released+abandoned)
	for i := range released + abandoned {
		timeout := 10 * time.Second
		if i < abandoned {
			timeout = 100 * time.Millisecond
		}
		wg.Go(func() { results <- ft.do(t, searchPath(), timeout) })
	}
	waitFor(t, "every search to arrive", func() bool { return ft.RequestsOf(KindSearch) == released+abandoned })
	time.Sleep(150 * time.Millisecond) // the abandoned ones give up meanwhile
	if ft.do(t, metadataPath(), 5*time.Second).resp.StatusCode != 200 {
		t.Error("a metadata request hung with the searches")
	}
	if err := ft.ClearFaults(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	var ok, gaveUp int
	for a := range results {
		switch {
		case errors.Is(a.err, context.DeadlineExceeded):
			gaveUp++
		case a.err == nil && a.resp.StatusCode == 200:
			ok++
		default:
			t.Errorf("hung search ended with %v %v", a.err, a.resp)
		}
	}
	if ok != released || gaveUp != abandoned {
		t.Errorf("%d answered and %d gave up, want %d and %d", ok, gaveUp, released, abandoned)
	}
	ft.stop()
	goroutinesBack(t, before)
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestRefuseConnections(t *testing.T) {
	t.Run("at run time", func(t *testing.T) {
		t.Parallel()
		ft := newFaultTrust(t, Options{})
		wantHealthy(t, searchPath(), ft.do(t, searchPath(), 5*time.Second)) // a kept-alive connection
		ft.SetFaults(Hang().Only(KindRetrieve))
		inFlight := make(chan answer, 1)
		go func() { inFlight <- ft.do(t, retrievePath(), 10*time.Second) }()
		waitFor(t, "the retrieve to arrive", func() bool { return ft.RequestsOf(KindRetrieve) == 1 })

		ft.RefuseConnections()
		if a := <-inFlight; a.err == nil || errors.Is(a.err, context.DeadlineExceeded) {
			t.Errorf("the request in flight ended with %v; want its connection closed at once", a.err)
		}
		for range 2 {
			if a := ft.do(t, searchPath(), 5*time.Second); !errors.Is(a.err, syscall.ECONNREFUSED) {
				t.Fatalf("GET while refusing: %v %v; want ECONNREFUSED", a.err, a.resp)
			}
		}
		if !ft.faults.refusing.Load() {
			t.Error("not refusing after RefuseConnections")
		}
		if err := ft.ClearFaults(); err != nil {
			t.Fatal(err)
		}
		wantHealthy(t, retrievePath(), ft.do(t, retrievePath(), 5*time.Second))
	})
	t.Run("from the start", func(t *testing.T) {
		t.Parallel()
		ft := newFaultTrust(t, Options{RefuseConnections: true})
		if a := ft.do(t, searchPath(), 5*time.Second); !errors.Is(a.err, syscall.ECONNREFUSED) {
			t.Fatalf("GET: %v; want ECONNREFUSED", a.err)
		}
		if err := ft.AcceptConnections(); err != nil {
			t.Fatal(err)
		}
		wantHealthy(t, searchPath(), ft.do(t, searchPath(), 5*time.Second))
	})
	t.Run("through a handler mounted elsewhere", func(t *testing.T) {
		t.Parallel()
		ft := newFaultTrust(t, Options{})
		srv := httptest.NewServer(ft.Handler())
		defer srv.Close()
		ft.RefuseConnections()
		resp, err := srv.Client().Get(srv.URL + searchPath())
		if err == nil {
			resp.Body.Close()
			t.Fatalf("status %d; want the connection reset", resp.StatusCode)
		}
		if ft.Requests() != 1 {
			t.Errorf("%d requests counted, want 1", ft.Requests())
		}
	})
}

// TestFaultsChangeWhileServing changes faults, and refuses and accepts connections, while
// clients keep asking; run with -race. Every change releases waiting requests, so no
// request may take long, and the trust answers normally once the faults are cleared.
func TestFaultsChangeWhileServing(t *testing.T) {
	t.Parallel()
	ft := newFaultTrust(t, Options{})
	faults := [][]Fault{
		{Latency(5 * time.Millisecond)},
		{Status(500).Only(KindSearch), Hang().Only(KindRetrieve)},
		{Hang()},
		{TruncatedJSON(), ResetMidStream(100).Only(KindRetrieve)},
		{TruncatedMultipart(1), NotDICOMJSON().Only(KindMetadata)},
		{Status(503).Flapping(Flap{FailRequests: 1, WorkRequests: 1}), Latency(2 * time.Millisecond)},
		{WrongContentType().Flapping(Flap{Fail: time.Millisecond, Work: time.Millisecond})},
		nil,
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered, slowest := 0, time.Duration(0)
	for i := range 4 {
		path := []string{searchPath(), retrievePath(), metadataPath(), searchPath()}[i]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a := ft.do(t, path, 5*time.Second)
				mu.Lock()
				if a.err == nil {
					answered++
				}
				slowest = max(slowest, a.elapsed)
				mu.Unlock()
			}
		})
	}
	for i := range 40 {
		if i == 20 {
			ft.RefuseConnections()
		} else if i == 25 {
			if err := ft.AcceptConnections(); err != nil {
				t.Error(err)
			}
		}
		ft.SetFaults(faults[i%len(faults)]...)
		time.Sleep(10 * time.Millisecond)
	}
	if err := ft.ClearFaults(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if slowest > 2*time.Second {
		t.Errorf("a request took %v while faults changed every 10ms", slowest)
	}
	if answered == 0 || ft.Requests() < int64(answered) {
		t.Errorf("%d requests answered, %d counted", answered, ft.Requests())
	}
	for _, p := range []string{searchPath(), retrievePath(), metadataPath()} {
		wantHealthy(t, p, ft.do(t, p, 5*time.Second))
	}
}

func TestFaultValidate(t *testing.T) {
	tests := []struct {
		name  string
		fault Fault
		want  string // in the error; "" for a valid fault
	}{
		{"constructor", Latency(time.Second).Only(KindSearch), ""},
		{"flapping by requests", Hang().Flapping(Flap{FailRequests: 1}), ""},
		{"no mode", Fault{}, "not a FaultMode"},
		{"negative latency", Latency(-time.Second), "latency is negative"},
		{"success status", Status(200), "not an error status"},
		{"unknown kind", Status(500).Only("stow"), `kind "stow"`},
		{"flap in both", Hang().Flapping(Flap{Fail: time.Second, FailRequests: 1}), "set one pair"},
		{"flap without phases", Hang().Flapping(Flap{}), "no phases"},
		{"negative parts", TruncatedMultipart(-1), "negative number of parts"},
		{"instance to omit is no UID", OmitInstance(""), "is not a valid UID"},
		{"instance to omit", OmitInstance("1.2.3"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fault.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v; want %q", err, tc.want)
			}
			if _, err := NewTrust("XF2", "Invalid", Options{Faults: []Fault{tc.fault}}); err == nil {
				t.Error("NewTrust accepted the fault")
			}
			defer func() {
				if recover() == nil {
					t.Error("SetFaults accepted the fault")
				}
			}()
			tr, _ := NewTrust("XF2", "Invalid", Options{})
			tr.SetFaults(tc.fault)
		})
	}
}

func TestFaultString(t *testing.T) {
	tests := []struct {
		fault Fault
		want  string
	}{
		{Latency(3 * time.Second), "latency 3s"},
		{Status(500).Flapping(Flap{Fail: 20 * time.Second, Work: 20 * time.Second}), "HTTP 500, flapping: for 20s, then not for 20s"},
		{TooManyRequests(time.Second).Only(KindSearch, KindMetadata), "HTTP 429 with Retry-After: 1 on search, metadata"},
		{TruncatedMultipart(2), "multipart cut after 2 parts, without its closing delimiter"},
		{DuplicateParts().Only(KindRetrieve), "every multipart part sent twice on retrieve"},
		{OmitInstance("1.2.3"), "instance 1.2.3 left out of retrieves"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.fault.String(); got != tc.want {
				t.Errorf("String() = %q", got)
			}
		})
	}
}

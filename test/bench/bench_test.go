package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/test/orthanc"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, n := range v {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{name: "empty", in: nil, p: 50, want: 0},
		{name: "one value", in: ms(7), p: 99, want: 7 * time.Millisecond},
		{name: "median of an odd count, unsorted", in: ms(5, 1, 3), p: 50, want: 3 * time.Millisecond},
		{name: "median of an even count is the lower middle", in: ms(4, 1, 3, 2), p: 50, want: 2 * time.Millisecond},
		{name: "p99 of 100 values", in: ms(seq(100)...), p: 99, want: 99 * time.Millisecond},
		{name: "p100 is the maximum", in: ms(seq(10)...), p: 100, want: 10 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.in, tc.p); got != tc.want {
				t.Fatalf("Percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[n-1-i] = i + 1 // descending, so sorting matters
	}
	return out
}

func TestResultRates(t *testing.T) {
	var r Result
	r.Merge(Result{Name: "a", Connections: 2, Requests: 10, Bytes: 5e6, Elapsed: time.Second, Latencies: []time.Duration{1}})
	r.Merge(Result{Name: "a", Connections: 2, Requests: 30, Errors: 1, FirstError: "boom", Bytes: 15e6, Elapsed: time.Second, Latencies: []time.Duration{2, 3}})
	tests := []struct {
		name      string
		got, want any
	}{
		{name: "name kept", got: r.Name, want: "a"},
		{name: "requests per second over both rounds", got: r.RPS(), want: 20.0},
		{name: "megabytes per second", got: r.MBps(), want: 10.0},
		{name: "bytes per request", got: r.BytesPerRequest(), want: int64(5e5)},
		{name: "latencies appended", got: len(r.Latencies), want: 3},
		{name: "first error kept", got: r.FirstError, want: "boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Memory
		wantErr bool
	}{
		{name: "both present", in: "Name:\tnirproxy\nVmPeak:\t  9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n",
			want: Memory{HWM: 2 << 20, RSS: 1 << 20}},
		{name: "RSS missing", in: "VmHWM:\t 2048 kB\n", wantErr: true},
		{name: "unit not kB", in: "VmHWM:\t 2 MB\nVmRSS:\t 1 kB\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatus([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr bool
	}{
		{name: "plain name", in: "42 (Orthanc) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 30 0",
			want: procStat{own: 2 * time.Second}},
		{name: "name with spaces and parentheses, reaped children", in: "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0",
			want: procStat{own: 30 * time.Millisecond, reaped: 70 * time.Millisecond}},
		{name: "truncated", in: "7 (x) R 1 2", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOwnProcessIsMetered(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	m, err := ReadMemory(os.Getpid())
	if err != nil || m.HWM <= 0 || m.RSS <= 0 || m.RSS > m.HWM {
		t.Fatalf("ReadMemory(self) = %+v, %v; want positive, RSS <= HWM", m, err)
	}
	if _, err := CPUTime(os.Getpid()); err != nil {
		t.Fatalf("CPUTime(self): %v", err)
	}
	if _, err := TreeCPUTime(os.Getpid()); err != nil {
		t.Fatalf("TreeCPUTime(self): %v", err)
	}
	if busy, err := MachineBusy(); err != nil || busy <= 0 {
		t.Fatalf("MachineBusy() = %v, %v", busy, err)
	}
}

func TestParseMachineStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{name: "busy excludes idle and iowait", in: "cpu  100 10 50 9999 77 5 5 30 0 0\ncpu0 1 2 3\n", want: 2 * time.Second},
		{name: "not the aggregate line", in: "cpu0 1 2 3 4 5 6 7 8\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMachineStat([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSplice(t *testing.T) {
	template := []byte("# T\n" + BeginMarker + "\n" + EndMarker + "\n")
	tests := []struct {
		name string
		doc  string
		gen  string
		want string
	}{
		{name: "no document: the template", doc: "", gen: "figures",
			want: "# T\n" + BeginMarker + "\nfigures\n" + EndMarker + "\n"},
		{name: "hand-written text outside the markers is kept",
			doc:  "# Mine\nintro\n" + BeginMarker + "\nold figures\n" + EndMarker + "\nanalysis\n",
			gen:  "new figures\n",
			want: "# Mine\nintro\n" + BeginMarker + "\nnew figures\n" + EndMarker + "\nanalysis\n"},
		{name: "markers out of order: the template", doc: EndMarker + "x" + BeginMarker, gen: "f",
			want: "# T\n" + BeginMarker + "\nf\n" + EndMarker + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Splice([]byte(tc.doc), template, tc.gen)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestNginxConfig(t *testing.T) {
	conf := nginxConfig("/tmp/x", 8042, 9001, 9002, true)
	tests := []struct {
		name, want string
	}{
		{name: "runs in the foreground", want: "daemon off;"},
		{name: "streaming listener", want: "listen 127.0.0.1:9001;"},
		{name: "buffering listener", want: "listen 127.0.0.1:9002;"},
		{name: "upstream", want: "server 127.0.0.1:8042;"},
		{name: "streams", want: "proxy_buffering off;"},
		{name: "buffers", want: "proxy_buffering on;"},
		{name: "keeps its files in its directory", want: "proxy_temp_path /tmp/x/tmp/proxy;"},
		{name: "workers may enter the directory as root", want: "user root root;"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(conf, tc.want) {
				t.Fatalf("configuration lacks %q:\n%s", tc.want, conf)
			}
		})
	}
}

func TestRunCountsAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "0123456789")
	}))
	defer srv.Close()
	ctx := context.Background()
	client := NewClient(2)
	tests := []struct {
		name       string
		target     Target
		wantErrors bool
	}{
		{name: "answers are counted with their bytes", target: Target{Name: "ok", URL: srv.URL + "/ok"}},
		{name: "non-200 answers are errors", target: Target{Name: "fail", URL: srv.URL + "/fail"}, wantErrors: true},
		{name: "parallel targets add their bytes", target: Parallel("both", Target{Name: "a", URL: srv.URL + "/a"}, Target{Name: "b", URL: srv.URL + "/b"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := Run(ctx, client, tc.target, 2, 50*time.Millisecond)
			if tc.wantErrors {
				if res.Errors == 0 || res.Requests != 0 || res.FirstError == "" {
					t.Fatalf("got %d requests, %d errors (%q); want only errors", res.Requests, res.Errors, res.FirstError)
				}
				return
			}
			if res.Requests == 0 || res.Errors != 0 || len(res.Latencies) != res.Requests {
				t.Fatalf("got %d requests, %d errors, %d latencies", res.Requests, res.Errors, len(res.Latencies))
			}
			if per := res.BytesPerRequest(); per != 10 && per != 20 {
				t.Fatalf("bytes per request = %d, want 10 (or 20 for two in parallel)", per)
			}
		})
	}
}

func TestRelabelAnswer(t *testing.T) {
	answer := []byte(`[{"0020000D":{"vr":"UI","Value":["1.2.3"]},"00081190":{"vr":"UR","Value":["http://pacs/studies/1.2.3"]},` +
		`"00100010":{"vr":"PN","Value":[{"Alphabetic":"BENCH^SEARCH"}]}},` +
		`{"0020000D":{"vr":"UI","Value":["1.2.4"]}}]`)
	a, err := RelabelAnswer(answer, "SRCA")
	if err != nil {
		t.Fatal(err)
	}
	b, err := RelabelAnswer(answer, "SRCB")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := RelabelAnswer(answer, "SRCA")
	newA := UID("relabel/SRCA/1.2.3")
	tests := []struct {
		name string
		ok   bool
	}{
		{name: "the study UID is replaced", ok: !strings.Contains(string(a), `"1.2.3"`) && strings.Contains(string(a), `"`+newA+`"`)},
		{name: "the RetrieveURL follows the UID", ok: strings.Contains(string(a), "/studies/"+newA+`"`)},
		{name: "every study is relabelled", ok: strings.Contains(string(a), UID("relabel/SRCA/1.2.4"))},
		{name: "sources get different UIDs", ok: string(a) != string(b)},
		{name: "the same source gets the same UIDs", ok: string(a) == string(again)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				t.Fatalf("relabelled answer:\n%s", a)
			}
		})
	}
	for _, bad := range []struct{ name, in string }{
		{name: "not JSON", in: "<xml/>"},
		{name: "no study", in: "[]"},
		{name: "a result without a study UID", in: `[{"00100020":{"vr":"LO","Value":["x"]}}]`},
	} {
		t.Run("refuses "+bad.name, func(t *testing.T) {
			if _, err := RelabelAnswer([]byte(bad.in), "SRCA"); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestWarnsAbout(t *testing.T) {
	check := WarnsAbout("HANG")
	tests := []struct {
		name     string
		warnings []string
		wantNote string
		wantErr  bool
	}{
		{name: "a 299 naming the source", warnings: []string{`299 127.0.0.1:8080 "Results from HANG (Stuck) are missing: its PACS timed out"`},
			wantNote: `"Results from HANG (Stuck) are missing: its PACS timed out"`},
		{name: "found among other warnings", warnings: []string{`299 proxy "There are 3 additional results"`, `299 proxy "Results from HANG (x) are missing"`},
			wantNote: `"Results from HANG (x) are missing"`},
		{name: "no warning", wantErr: true},
		{name: "another source only", warnings: []string{`299 proxy "Results from HANGAR (x) are missing"`}, wantErr: true},
		{name: "not code 299", warnings: []string{`199 proxy "Results from HANG (x) are missing"`}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, w := range tc.warnings {
				h.Add("Warning", w)
			}
			note, err := check(http.StatusOK, h)
			if (err != nil) != tc.wantErr || note != tc.wantNote {
				t.Fatalf("got %q, %v; want %q, error %v", note, err, tc.wantNote, tc.wantErr)
			}
		})
	}
}

func TestRecorderKeepsEveryAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/warned":
			w.Header().Add("Warning", `299 proxy "Results from HANG (x) are missing: its PACS timed out"`)
		case "/fail":
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "[]")
	}))
	defer srv.Close()
	tests := []struct {
		name                       string
		path                       string
		wantFailed, wantRejected   bool
		wantNotes, wantRunRequests bool
	}{
		{name: "warned answers are noted", path: "/warned", wantNotes: true, wantRunRequests: true},
		{name: "answers without the warning are refused but still measured", path: "/plain", wantRejected: true, wantRunRequests: true},
		{name: "failures keep their latencies", path: "/fail", wantFailed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := NewRecorder(WarnsAbout("HANG"))
			res := Run(context.Background(), NewClient(1), rec.Target(tc.name, srv.URL+tc.path, nil), 1, 30*time.Millisecond)
			obs := rec.Take()
			if obs.Count() != res.Requests+res.Errors || obs.Count() == 0 {
				t.Fatalf("recorded %d answers, Run saw %d requests and %d errors", obs.Count(), res.Requests, res.Errors)
			}
			if (obs.Failed > 0) != tc.wantFailed || (obs.Rejected > 0) != tc.wantRejected || (len(obs.Notes) > 0) != tc.wantNotes {
				t.Fatalf("observations %+v", obs)
			}
			if (res.Requests > 0) != tc.wantRunRequests {
				t.Fatalf("Run counted %d requests", res.Requests)
			}
			if tc.wantFailed || tc.wantRejected {
				if obs.FirstProblem == "" {
					t.Fatal("no first problem recorded")
				}
			}
			if rec.Take().Count() != 0 {
				t.Fatal("Take did not start afresh")
			}
		})
	}
}

func TestObservations(t *testing.T) {
	first := Observations{Latencies: make([]time.Duration, 2, 10), Notes: map[string]int{"a": 1}}
	first.Latencies[0], first.Latencies[1] = time.Second, 900*time.Millisecond
	o := first
	o.Merge(Observations{Latencies: []time.Duration{1200 * time.Millisecond}, Failed: 1, FirstProblem: "x", Notes: map[string]int{"a": 2, "b": 1}})
	other := first
	other.Merge(Observations{Latencies: []time.Duration{time.Millisecond}})
	tests := []struct {
		name      string
		got, want any
	}{
		{name: "count", got: o.Count(), want: 3},
		{name: "over 1.1 s", got: o.Over(1100 * time.Millisecond), want: 1},
		{name: "max", got: o.Max(), want: 1200 * time.Millisecond},
		{name: "failures added", got: o.Failed, want: 1},
		{name: "notes added", got: o.Notes["a"], want: 3},
		{name: "first problem kept", got: o.FirstProblem, want: "x"},
		{name: "the merged copy's notes are its own", got: first.Notes["a"], want: 1},
		{name: "merging another copy leaves this one alone", got: o.Latencies[2], want: 1200 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestHangingOriginNeverAnswers(t *testing.T) {
	h := StartHangingOrigin()
	defer h.Close()
	client := &http.Client{Timeout: 200 * time.Millisecond}
	start := time.Now()
	resp, err := client.Get(h.URL + "/dicom-web/studies")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the hanging origin answered %d", resp.StatusCode)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("the request ended after %v, before the client's time-out", d)
	}
	if got := h.Requests(); got != 1 {
		t.Fatalf("Requests() = %d, want 1", got)
	}
	// Close must not wait for held requests.
	go func() { _, _ = http.Get(h.URL + "/held") }()
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { h.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close blocked on a held request")
	}
}

func TestBreakerState(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, `{"status":"degraded","sources":[{"id":"OK1","breaker":"closed"},{"id":"HANG","breaker":"open"}]}`)
	}))
	defer srv.Close()
	tests := []struct {
		name, id, want string
		wantErr        bool
	}{
		{name: "open source", id: "HANG", want: "open"},
		{name: "closed source", id: "OK1", want: "closed"},
		{name: "unknown source", id: "NOPE", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BreakerState(context.Background(), NewClient(1), srv.URL, tc.id)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestNginxStaticConfig(t *testing.T) {
	conf := nginxStaticConfig("/tmp/x", "/dicom-web/studies", "application/dicom+json", 9003, true)
	tests := []struct {
		name, want string
	}{
		{name: "runs in the foreground", want: "daemon off;"},
		{name: "listener", want: "listen 127.0.0.1:9003;"},
		{name: "the one path, whatever the query", want: "location = /dicom-web/studies {"},
		{name: "the file", want: "alias /tmp/x/answer;"},
		{name: "the answer's Content-Type, whatever the file's name", want: "types { }\n            default_type \"application/dicom+json\";"},
		{name: "sends the file with sendfile", want: "sendfile on;"},
		{name: "connections live through a whole wrk run", want: "keepalive_requests 100000;"},
		{name: "workers may enter the directory as root", want: "user root root;"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(conf, tc.want) {
				t.Fatalf("configuration lacks %q:\n%s", tc.want, conf)
			}
		})
	}
}

func TestParseWrk(t *testing.T) {
	const summary = wrkSummaryMark + " requests=%d duration_us=2000000 bytes=5000 connect=0 read=%d write=0 status=%d timeout=0\n"
	tests := []struct {
		name    string
		out     string
		want    Result
		wantP50 time.Duration
		wantErr bool
	}{
		{name: "summary and histogram, after wrk's own report",
			out:  "Running 2s test @ http://x/\n  50 requests in 2.00s\n" + fmt.Sprintf(summary, 5, 0, 0) + wrkLatencyMark + " 100:2,250:2,900:1\n",
			want: Result{Requests: 5, Bytes: 5000, Elapsed: 2 * time.Second}, wantP50: 250 * time.Microsecond},
		{name: "non-2xx answers and socket errors are errors",
			out:  fmt.Sprintf(summary, 5, 2, 3) + wrkLatencyMark + " 100:5\n",
			want: Result{Requests: 2, Errors: 5, Bytes: 5000, Elapsed: 2 * time.Second}, wantP50: 100 * time.Microsecond},
		{name: "no answers at all", out: fmt.Sprintf(summary, 0, 4, 0) + wrkLatencyMark + "\n",
			want: Result{Errors: 4, Bytes: 5000, Elapsed: 2 * time.Second}},
		{name: "the script did not run", out: "Running 2s test\n", wantErr: true},
		{name: "a damaged histogram", out: fmt.Sprintf(summary, 1, 0, 0) + wrkLatencyMark + " 100\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWrk([]byte(tc.out))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if got.Requests != tc.want.Requests || got.Errors != tc.want.Errors || got.Bytes != tc.want.Bytes || got.Elapsed != tc.want.Elapsed {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if (got.Errors > 0) != (got.FirstError != "") {
				t.Fatalf("%d errors, first error %q", got.Errors, got.FirstError)
			}
			if p := got.Percentile(50); p != tc.wantP50 {
				t.Fatalf("p50 = %v, want %v", p, tc.wantP50)
			}
		})
	}
}

func TestWrkRun(t *testing.T) {
	if err := WrkMissing(); err != nil {
		orthanc.SkipOrFail(t, err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/dicom+json" {
			http.Error(w, "wrong Accept", http.StatusNotAcceptable)
			return
		}
		_, _ = io.WriteString(w, "0123456789")
	}))
	defer srv.Close()
	ctx := context.Background()
	w, err := NewWrk(ctx, t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		header     http.Header
		wantErrors bool
	}{
		{name: "answers counted, headers sent", header: http.Header{"Accept": {"application/dicom+json"}}},
		{name: "non-2xx answers are errors", wantErrors: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := w.Run(ctx, Target{Name: tc.name, URL: srv.URL + "/", Header: tc.header}, 2, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantErrors {
				if res.Errors == 0 || res.Requests != 0 {
					t.Fatalf("got %d answers, %d errors; want only errors", res.Requests, res.Errors)
				}
				return
			}
			if res.Requests == 0 || res.Errors != 0 || len(res.Latencies) < res.Requests || res.Elapsed < time.Second {
				t.Fatalf("got %d answers, %d errors, %d latencies in %v", res.Requests, res.Errors, len(res.Latencies), res.Elapsed)
			}
		})
	}
}

func TestCountingFront(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.RequestURI())
	}))
	defer upstream.Close()
	f, err := StartCountingFront(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	client := NewClient(1)
	const uri = "/dicom-web/studies?PatientID=1"
	for i := 0; i < 3; i++ {
		n, _, _, err := get(context.Background(), client, "front", f.URL+uri, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(uri)) {
			t.Fatalf("the upstream answered %d bytes, want the %d of the path and query passed on", n, len(uri))
		}
	}
	if got := f.Requests(); got != 3 {
		t.Fatalf("the front counted %d requests, want 3", got)
	}
}

func TestMetricValue(t *testing.T) {
	text := `# HELP nirproxy_cache_lookups_total Cache lookups.
# TYPE nirproxy_cache_lookups_total counter
nirproxy_cache_lookups_total{kind="search",result="hit"} 5318
nirproxy_cache_lookups_total{kind="search",result="miss"} 2
nirproxy_cache_lookups_total{kind="locator",result="hit"} 7
nirproxy_cache_lookups_total_extra{kind="search",result="hit"} 100
other_metric 1.5e+03
`
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{name: "one series", metric: "nirproxy_cache_lookups_total", labels: map[string]string{"kind": "search", "result": "hit"}, want: 5318},
		{name: "series summed over the labels not given", metric: "nirproxy_cache_lookups_total", labels: map[string]string{"kind": "search"}, want: 5320},
		{name: "every series", metric: "nirproxy_cache_lookups_total", want: 5327},
		{name: "a series not yet counted is 0", metric: "nirproxy_cache_lookups_total", labels: map[string]string{"kind": "rendered"}, want: 0},
		{name: "without labels", metric: "other_metric", want: 1500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := metricValue(text, tc.metric, tc.labels)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
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

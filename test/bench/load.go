// Package bench measures nirproxy against real servers: a closed-loop HTTP load driver that
// reports latency percentiles, requests and bytes per second; nginx as a reference reverse
// proxy; the CPU and memory of processes read from /proc; and the data sets the comparisons
// run on. cmd/loadbench uses it to write docs/performance.md; `make bench` runs that.
//
// Nothing here runs under `go test` but its own unit tests: the measurements need Orthanc and
// minutes of machine time.
package bench

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Target is one thing to load: a GET of URL with Header, under a name for the report.
type Target struct {
	Name   string
	URL    string
	Header http.Header
	// Do, when set, replaces the GET: it performs one request of the target (which may be
	// several HTTP requests) and returns the body bytes read.
	Do func(ctx context.Context, client *http.Client) (int64, error)
}

// Result is what a load run measured for one target. Results of several rounds of the same
// target are combined with Merge.
type Result struct {
	Name        string
	Connections int
	// Requests counts answers read to the end with status 200; Errors counts the rest.
	Requests, Errors int
	// FirstError describes the first failure, for the report.
	FirstError string
	// Bytes is the body bytes of the successful answers.
	Bytes int64
	// Elapsed is the measuring time, summed over rounds.
	Elapsed time.Duration
	// Latencies holds one entry per successful request: from sending it to its last byte.
	Latencies []time.Duration
}

// RPS is successful requests per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// MBps is body megabytes (10^6 bytes) per second.
func (r Result) MBps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds()
}

// BytesPerRequest is the mean body size of a successful answer.
func (r Result) BytesPerRequest() int64 {
	if r.Requests == 0 {
		return 0
	}
	return r.Bytes / int64(r.Requests)
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of the latencies, or 0
// when there are none. It sorts Latencies in place.
func (r Result) Percentile(p float64) time.Duration {
	return Percentile(r.Latencies, p)
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of d, sorting d in place;
// 0 when d is empty.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	rank := int(float64(len(d))*p/100 + 0.999999999)
	rank = min(max(rank, 1), len(d))
	return d[rank-1]
}

// Merge adds another round of the same target to r.
func (r *Result) Merge(o Result) {
	if r.Name == "" {
		r.Name, r.Connections = o.Name, o.Connections
	}
	r.Requests += o.Requests
	r.Errors += o.Errors
	if r.FirstError == "" {
		r.FirstError = o.FirstError
	}
	r.Bytes += o.Bytes
	r.Elapsed += o.Elapsed
	r.Latencies = append(r.Latencies, o.Latencies...)
}

// NewClient returns an HTTP client for conns parallel connections to loopback servers: keep-
// alive, no compression, no environment proxy.
func NewClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			DisableCompression:  true,
			ReadBufferSize:      64 << 10,
		},
		Timeout: 2 * time.Minute,
	}
}

// Run loads t from conns goroutines, each sending its next request as soon as the previous
// answer has been read to the end, until d has passed; requests under way then are finished
// and counted. Elapsed runs until the last of them ends.
func Run(ctx context.Context, client *http.Client, t Target, conns int, d time.Duration) Result {
	type worker struct {
		lat        []time.Duration
		reqs, errs int
		bytes      int64
		firstErr   string
	}
	workers := make([]worker, conns)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.lat = make([]time.Duration, 0, 1024)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				n, err := fetch(ctx, client, t)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					w.errs++
					if w.firstErr == "" {
						w.firstErr = err.Error()
					}
					// A failing target answers fast; do not spin.
					time.Sleep(10 * time.Millisecond)
					continue
				}
				w.lat = append(w.lat, time.Since(t0))
				w.reqs++
				w.bytes += n
			}
		}()
	}
	wg.Wait()
	res := Result{Name: t.Name, Connections: conns, Elapsed: time.Since(start)}
	for _, w := range workers {
		res.Requests += w.reqs
		res.Errors += w.errs
		res.Bytes += w.bytes
		res.Latencies = append(res.Latencies, w.lat...)
		if res.FirstError == "" {
			res.FirstError = w.firstErr
		}
	}
	return res
}

// errStatus marks an answer that was not 200.
var errStatus = errors.New("unexpected status")

// fetch sends one GET of t and reads the answer to the end, returning the body's length.
func fetch(ctx context.Context, client *http.Client, t Target) (int64, error) {
	if t.Do != nil {
		return t.Do(ctx, client)
	}
	n, _, _, err := get(ctx, client, t.Name, t.URL, t.Header)
	return n, err
}

// Fetch sends one GET of t and returns the body's length: a check that a target works
// before it is measured.
func Fetch(ctx context.Context, client *http.Client, t Target) (int64, error) {
	return fetch(ctx, client, t)
}

// Parallel returns a Target that GETs every target at once and ends when the last answer has
// been read: what a client that fans out by itself would see.
func Parallel(name string, targets ...Target) Target {
	return Target{Name: name, Do: func(ctx context.Context, client *http.Client) (int64, error) {
		var wg sync.WaitGroup
		ns := make([]int64, len(targets))
		errs := make([]error, len(targets))
		for i, t := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ns[i], errs[i] = fetch(ctx, client, t)
			}()
		}
		wg.Wait()
		var total int64
		for _, n := range ns {
			total += n
		}
		return total, errors.Join(errs...)
	}}
}

// Interleaved loads every target for total time each, split into rounds: round 1 loads each
// target in turn, then round 2, and so on, so that a machine that slows down or speeds up
// during the run affects every target alike. Before the first round each target is loaded for
// warm (not measured). observe, when not nil, is called around each measured slice with the
// target's name, so that callers can read process counters.
func Interleaved(ctx context.Context, targets []Target, conns, rounds int, total, warm time.Duration, observe func(name string, before bool)) map[string]*Result {
	clients := make(map[string]*http.Client, len(targets))
	out := make(map[string]*Result, len(targets))
	for _, t := range targets {
		clients[t.Name] = NewClient(conns)
		out[t.Name] = &Result{}
		if warm > 0 {
			Run(ctx, clients[t.Name], t, conns, warm)
		}
	}
	slice := total / time.Duration(rounds)
	for r := 0; r < rounds && ctx.Err() == nil; r++ {
		for _, t := range targets {
			if observe != nil {
				observe(t.Name, true)
			}
			res := Run(ctx, clients[t.Name], t, conns, slice)
			if observe != nil {
				observe(t.Name, false)
			}
			out[t.Name].Merge(res)
		}
	}
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	return out
}

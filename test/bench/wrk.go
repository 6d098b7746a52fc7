package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// WrkBinary is where Debian's wrk package installs the load generator.
const WrkBinary = "/usr/bin/wrk"

// wrkTimeout is wrk's per-request timeout: far beyond any answer measured here, so that a slow
// answer is a latency, not a timeout error.
const wrkTimeout = 10 * time.Second

// wrkScript is the Lua script every run uses: at the end it prints wrk's summary and its whole
// latency histogram (microseconds, and how many requests took each), so that rounds of the
// same target can be merged into one Result with exact percentiles. wrk collects the
// histogram anyway; printing it costs a fraction of a second after the load has stopped.
const wrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("` + wrkSummaryMark + ` requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout))
  local parts = {}
  for i = 1, #latency do
    local v, c = latency(i)
    parts[#parts + 1] = string.format("%d:%d", v, c)
  end
  io.write("` + wrkLatencyMark + ` " .. table.concat(parts, ",") .. "\n")
end
`

// Marks of the lines wrkScript prints.
const (
	wrkSummaryMark = "loadbench-wrk-summary"
	wrkLatencyMark = "loadbench-wrk-latency"
)

// Wrk runs wrk (https://github.com/wg/wrk), an event-driven HTTP load generator written in C,
// against one target at a time: closed loop, keep-alive, Threads threads sharing the
// connections. It measures what a Go load driver in the same machine would blur: servers that
// answer in well under a millisecond.
type Wrk struct {
	// Binary is the wrk executable.
	Binary string
	// Threads is wrk's -t.
	Threads int
	// Version is what `wrk -v` printed first, e.g. "wrk debian/4.1.0-3+b2 [epoll]".
	Version string

	script string
}

// WrkMissing returns an error saying how to install wrk when it is not at WrkBinary, or nil.
func WrkMissing() error {
	if _, err := os.Stat(WrkBinary); err != nil {
		return fmt.Errorf("wrk is missing (run test/scripts/install-deps.sh, or apt-get install wrk): %w", err)
	}
	return nil
}

// NewWrk writes wrk's script into dir and returns a Wrk of threads threads.
func NewWrk(ctx context.Context, dir string, threads int) (*Wrk, error) {
	if threads < 1 {
		return nil, fmt.Errorf("set up wrk: %d threads; use at least 1", threads)
	}
	w := &Wrk{Binary: WrkBinary, Threads: threads, script: filepath.Join(dir, "loadbench-wrk.lua")}
	if err := os.WriteFile(w.script, []byte(wrkScript), 0o644); err != nil {
		return nil, fmt.Errorf("write wrk script: %w", err)
	}
	// wrk -v prints its version and usage, and exits 1.
	out, _ := exec.CommandContext(ctx, w.Binary, "-v").CombinedOutput()
	if first, _, _ := strings.Cut(string(out), "\n"); strings.HasPrefix(first, "wrk ") {
		w.Version, _, _ = strings.Cut(first, " Copyright")
		w.Version = strings.TrimSpace(w.Version)
	}
	return w, nil
}

// Run loads t (a GET of its URL with its headers; Do is not supported) at conns connections for
// d, rounded to whole seconds (wrk's -d takes no fractions). Requests answered with a status other than 2xx or 3xx, and socket errors and timeouts,
// are Errors; Bytes is what wrk read, headers included; Latencies come from wrk's histogram,
// at microsecond resolution. An error means wrk itself failed.
func (w *Wrk) Run(ctx context.Context, t Target, conns int, d time.Duration) (Result, error) {
	if t.Do != nil {
		return Result{}, fmt.Errorf("load %s with wrk: the target is not a plain GET", t.Name)
	}
	args := []string{"-t", strconv.Itoa(min(w.Threads, conns)), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(wrkSeconds(d)) + "s",
		"--timeout", strconv.Itoa(int(wrkTimeout.Seconds())) + "s", "-s", w.script}
	for k, vs := range t.Header {
		for _, v := range vs {
			args = append(args, "-H", k+": "+v)
		}
	}
	args = append(args, t.URL)
	cmd := exec.CommandContext(ctx, w.Binary, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("load %s with wrk: %w", t.Name, ctx.Err())
		}
		return Result{}, fmt.Errorf("load %s with wrk: %w: %s%s", t.Name, err, stderr.Bytes(), out)
	}
	res, err := parseWrk(out)
	if err != nil {
		return Result{}, fmt.Errorf("load %s with wrk: %w", t.Name, err)
	}
	res.Name, res.Connections = t.Name, conns
	return res, nil
}

// wrkSeconds is d in whole seconds, at least 1: wrk's -d takes an integer.
func wrkSeconds(d time.Duration) int { return max(1, int(d.Round(time.Second)/time.Second)) }

// parseWrk reads what wrkScript printed into a Result (without Name and Connections).
func parseWrk(out []byte) (Result, error) {
	var res Result
	var summary, latency bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, wrkSummaryMark+" "):
			f := map[string]int64{}
			for _, kv := range strings.Fields(strings.TrimPrefix(line, wrkSummaryMark)) {
				k, v, ok := strings.Cut(kv, "=")
				n, err := strconv.ParseInt(v, 10, 64)
				if !ok || err != nil {
					return Result{}, fmt.Errorf("parse wrk summary: %q", kv)
				}
				f[k] = n
			}
			for _, k := range []string{"requests", "duration_us", "bytes", "connect", "read", "write", "status", "timeout"} {
				if _, ok := f[k]; !ok {
					return Result{}, fmt.Errorf("parse wrk summary: %s missing in %q", k, line)
				}
			}
			// wrk counts every answer in requests, non-2xx/3xx ones too; socket errors are
			// requests that never got an answer.
			res.Requests = int(f["requests"] - f["status"])
			res.Errors = int(f["status"] + f["connect"] + f["read"] + f["write"] + f["timeout"])
			res.Bytes = f["bytes"]
			res.Elapsed = time.Duration(f["duration_us"]) * time.Microsecond
			if res.Errors > 0 {
				res.FirstError = fmt.Sprintf("wrk: %d answers not 2xx or 3xx; socket errors: connect %d, read %d, write %d, timeout %d",
					f["status"], f["connect"], f["read"], f["write"], f["timeout"])
			}
			summary = true
		case strings.HasPrefix(line, wrkLatencyMark):
			rest := strings.TrimSpace(strings.TrimPrefix(line, wrkLatencyMark))
			if rest != "" {
				for _, vc := range strings.Split(rest, ",") {
					v, c, ok := strings.Cut(vc, ":")
					us, err1 := strconv.ParseInt(v, 10, 64)
					n, err2 := strconv.ParseInt(c, 10, 64)
					if !ok || err1 != nil || err2 != nil || n < 0 {
						return Result{}, fmt.Errorf("parse wrk latency histogram: %q", vc)
					}
					for range n {
						res.Latencies = append(res.Latencies, time.Duration(us)*time.Microsecond)
					}
				}
			}
			latency = true
		}
	}
	if err := sc.Err(); err != nil {
		return Result{}, fmt.Errorf("read wrk output: %w", err)
	}
	if !summary || !latency {
		return Result{}, errors.New("wrk printed no summary: did its script run?")
	}
	return res, nil
}

// WrkInterleaved is Interleaved with wrk as the load generator: every target loaded for total
// time, split into rounds, round 1 loading each target in turn, then round 2, and so on. Unlike
// Interleaved it has no warm-up of its own (callers that check what the warm-up did run it
// themselves with Run). observe, when not nil, is called around each measured slice. The first
// failure of wrk itself ends it.
func WrkInterleaved(ctx context.Context, w *Wrk, targets []Target, conns, rounds int, total time.Duration, observe func(name string, before bool)) (map[string]*Result, error) {
	out := make(map[string]*Result, len(targets))
	for _, t := range targets {
		out[t.Name] = &Result{}
	}
	slice := total / time.Duration(max(rounds, 1))
	for r := 0; r < rounds; r++ {
		for _, t := range targets {
			if observe != nil {
				observe(t.Name, true)
			}
			res, err := w.Run(ctx, t, conns, slice)
			if observe != nil {
				observe(t.Name, false)
			}
			if err != nil {
				return nil, err
			}
			out[t.Name].Merge(res)
		}
	}
	return out, nil
}

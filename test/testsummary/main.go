// Command testsummary turns the JSON stream of `go test -json` into what a person reads at the
// end of `make test`: the usual progress (a line per package, and the whole output of every
// failing test), then every test that was skipped and why, then the tests that failed, and last
// a closing line exactly of the form
//
//	tests: N passed, N failed, N skipped
//
// which CI judges runs by. Passing tests' output is dropped.
//
// Usage:
//
//	testsummary go test -race -count=1 -json ./...   # runs the command and reads its stdout
//	go test -json ./... | testsummary                # reads standard input
//
// It exits 1 when a test or a package failed, a package did not build, the stream ended before
// every package it started had finished (the test binary or go test was killed), the stream held
// no test results at all or could not be read, or the command it ran exited non-zero; 2 when it
// could not start the command; 0 otherwise.
//
// "N failed" counts failing tests, plus each package that failed without a failing test of its
// own (a build failure, TestMain returning non-zero, a crash) and each package whose results
// never ended; a run that fails for any other reason counts as one failure, so that a failed
// run never closes with "0 failed".
//
// It is a tool of the project's Makefile, package main; nothing imports it.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run summarises the JSON stream of the command args (or of stdin when args is empty) onto
// stdout and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	s := newSummary(stdout)
	if len(args) == 0 {
		if err := s.read(stdin); err != nil {
			fmt.Fprintf(stderr, "testsummary: read the test stream: %v\n", err)
			s.abnormal = append(s.abnormal, "the test stream could not be read: "+err.Error())
		}
		return s.finish()
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stderr = stdin, stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(stderr, "testsummary: run %s: %v\n", strings.Join(args, " "), err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "testsummary: run %s: %v\n", strings.Join(args, " "), err)
		return 2
	}
	readErr := s.read(out)
	if readErr != nil {
		// Drain what is left so that the command is not blocked writing to a full pipe.
		_, _ = io.Copy(io.Discard, out)
		s.abnormal = append(s.abnormal, "the test stream could not be read: "+readErr.Error())
	}
	if err := cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			s.commandFailed = exit.ProcessState.String()
		} else {
			s.abnormal = append(s.abnormal, "wait for the test command: "+err.Error())
		}
	}
	return s.finish()
}

// event is one line of `go test -json` (cmd/test2json's TestEvent, and the build events go test
// adds: build-output and build-fail, keyed by ImportPath).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	Elapsed     float64
	ImportPath  string
	FailedBuild string
}

// testRun is what has been seen of one test (or subtest) that has not ended yet.
type testRun struct {
	out strings.Builder
}

// pkgRun is what has been seen of one package.
type pkgRun struct {
	// out is the package's own output (not attributed to a test): TestMain's, the final
	// "ok"/"FAIL" lines, a crash outside any test.
	out strings.Builder
	// running holds the tests that have started and not ended, by name.
	running map[string]*testRun
	// failedTests counts the package's tests that failed.
	failedTests int
}

// skip is one skipped test and why.
type skip struct {
	pkg, test, reason string
}

// summary accumulates the stream and prints progress as it goes.
type summary struct {
	w io.Writer

	pkgs   map[string]*pkgRun
	builds map[string]*strings.Builder

	passed, failed, skipped int
	skips                   []skip
	// failures names what failed, in the order seen.
	failures []string
	// abnormal says why the stream cannot be trusted to be complete.
	abnormal []string
	// commandFailed is how the command exited when it did not exit 0.
	commandFailed string
	// sawPackage is whether any package ended (with results or without test files).
	sawPackage bool
}

func newSummary(w io.Writer) *summary {
	return &summary{w: w, pkgs: map[string]*pkgRun{}, builds: map[string]*strings.Builder{}}
}

// read consumes the stream to its end. Lines that are not JSON events (go's own messages) are
// printed as they are.
func (s *summary) read(r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			s.line(line)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s *summary) line(line []byte) {
	var e event
	trimmed := strings.TrimSpace(string(line))
	if !strings.HasPrefix(trimmed, "{") || json.Unmarshal(line, &e) != nil || e.Action == "" {
		if trimmed != "" {
			fmt.Fprintln(s.w, trimmed)
		}
		return
	}
	s.event(e)
}

func (s *summary) pkg(name string) *pkgRun {
	p := s.pkgs[name]
	if p == nil {
		p = &pkgRun{running: map[string]*testRun{}}
		s.pkgs[name] = p
	}
	return p
}

func (s *summary) event(e event) {
	switch e.Action {
	case "build-output":
		b := s.builds[e.ImportPath]
		if b == nil {
			b = &strings.Builder{}
			s.builds[e.ImportPath] = b
		}
		b.WriteString(e.Output)
		return
	case "build-fail":
		if b := s.builds[e.ImportPath]; b != nil {
			io.WriteString(s.w, b.String())
		}
		return
	}
	if e.Package == "" {
		return
	}
	p := s.pkg(e.Package)
	if e.Test == "" {
		s.packageEvent(e, p)
		return
	}
	t := p.running[e.Test]
	if t == nil {
		t = &testRun{}
		p.running[e.Test] = t
	}
	switch e.Action {
	case "output":
		t.out.WriteString(e.Output)
	case "pass":
		s.passed++
		delete(p.running, e.Test)
	case "skip":
		s.skipped++
		s.skips = append(s.skips, skip{pkg: e.Package, test: e.Test, reason: skipReason(t.out.String())})
		delete(p.running, e.Test)
	case "fail":
		s.failed++
		p.failedTests++
		s.failures = append(s.failures, e.Package+" "+e.Test)
		io.WriteString(s.w, t.out.String())
		delete(p.running, e.Test)
	}
}

// packageEvent handles an event of the package itself.
func (s *summary) packageEvent(e event, p *pkgRun) {
	switch e.Action {
	case "output":
		p.out.WriteString(e.Output)
		return
	case "pass", "skip", "fail":
	default:
		return
	}
	s.sawPackage = true
	unfinished := s.flushUnfinished(e.Package, p)
	switch {
	case e.Action == "fail":
		io.WriteString(s.w, p.out.String())
		if p.failedTests == 0 && unfinished == 0 {
			s.failed++
			why := "failed with no failing test: TestMain, a crash or a timeout; see its output above"
			if e.FailedBuild != "" {
				why = "build failed"
			}
			s.failures = append(s.failures, e.Package+" ("+why+")")
		}
	case unfinished > 0:
		// A package that reports success with tests that never ended is not trusted.
		io.WriteString(s.w, p.out.String())
	default:
		fmt.Fprintln(s.w, lastLine(p.out.String(), e))
	}
	delete(s.pkgs, e.Package)
}

// flushUnfinished prints and counts as failed the tests of p that started and never ended
// (the test binary crashed or was killed while they ran); it returns how many there were.
func (s *summary) flushUnfinished(pkg string, p *pkgRun) int {
	names := make([]string, 0, len(p.running))
	for name := range p.running {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		io.WriteString(s.w, p.running[name].out.String())
		fmt.Fprintf(s.w, "--- FAIL: %s (did not finish)\n", name)
		s.failed++
		p.failedTests++
		s.failures = append(s.failures, pkg+" "+name+" (did not finish)")
	}
	clear(p.running)
	return len(names)
}

// lastLine returns the package's closing line as go test prints it ("ok  \tpkg\t1.2s",
// "?   \tpkg\t[no test files]"), or one made from e when the output has none.
func lastLine(out string, e event) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if strings.HasPrefix(l, "ok  ") || strings.HasPrefix(l, "?   ") {
			return l
		}
	}
	if e.Action == "skip" {
		return "?   \t" + e.Package + "\t[no test files]"
	}
	return fmt.Sprintf("ok  \t%s\t%.3fs", e.Package, e.Elapsed)
}

// logStart matches the start of a t.Log or t.Skip entry in a test's output: its indentation
// (deeper for subtests) and "file.go:LINE: ".
var logStart = regexp.MustCompile(`^\s*[^\s:]+\.go:\d+: ?`)

// skipReason returns the message t.Skip gave, from the skipped test's output: the last log
// entry before "--- SKIP", its lines joined into one.
func skipReason(out string) string {
	var entry []string
	for _, l := range strings.Split(out, "\n") {
		trimmed := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(trimmed, "=== "), strings.HasPrefix(trimmed, "--- SKIP"):
		case logStart.MatchString(l):
			entry = []string{strings.TrimSpace(logStart.ReplaceAllString(l, ""))}
		case entry != nil && trimmed != "":
			entry = append(entry, trimmed)
		}
	}
	reason := strings.TrimSpace(strings.Join(entry, " "))
	if reason == "" {
		return "(no message)"
	}
	return reason
}

// finish notes packages whose results never ended, prints the skipped and failed lists and
// the closing line, and returns the exit code.
func (s *summary) finish() int {
	names := make([]string, 0, len(s.pkgs))
	for name := range s.pkgs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := s.pkgs[name]
		unfinished := s.flushUnfinished(name, p)
		io.WriteString(s.w, p.out.String())
		fmt.Fprintf(s.w, "FAIL\t%s\t(no result: the test stream ended before the package finished)\n", name)
		if unfinished == 0 {
			s.failed++
			s.failures = append(s.failures, name+" (no result)")
		}
		s.abnormal = append(s.abnormal, "package "+name+" never finished")
	}
	if !s.sawPackage && len(s.pkgs) == 0 {
		s.abnormal = append(s.abnormal, "the stream held no test results")
	}
	// A failed run never closes with "0 failed": go test may fail for a reason the stream
	// does not show (an unknown package, a bad flag), or the stream may be cut short.
	if s.failed == 0 {
		switch {
		case s.commandFailed != "":
			s.failed++
			s.failures = append(s.failures, "the test command ("+s.commandFailed+"; see its output above)")
		case len(s.abnormal) > 0:
			s.failed++
			s.failures = append(s.failures, "the run (incomplete, see below)")
		}
	}

	fmt.Fprintln(s.w)
	if len(s.skips) > 0 {
		fmt.Fprintf(s.w, "Skipped tests (%d):\n", len(s.skips))
		for _, sk := range s.skips {
			fmt.Fprintf(s.w, "  SKIP %s %s: %s\n", sk.pkg, sk.test, sk.reason)
		}
	}
	if len(s.failures) > 0 {
		fmt.Fprintf(s.w, "Failed (%d):\n", len(s.failures))
		for _, f := range s.failures {
			fmt.Fprintf(s.w, "  FAIL %s\n", f)
		}
	}
	for _, a := range s.abnormal {
		fmt.Fprintf(s.w, "The run is incomplete: %s.\n", a)
	}
	fmt.Fprintf(s.w, "tests: %d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	if s.failed > 0 || len(s.abnormal) > 0 || s.commandFailed != "" {
		return 1
	}
	return 0
}

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ev returns one line of a `go test -json` stream.
func ev(action, pkg, test, output string) string {
	b, err := json.Marshal(event{Action: action, Package: pkg, Test: test, Output: output})
	if err != nil {
		panic(err)
	}
	return string(b) + "\n"
}

// passing returns the events of a test that passes after logging noise.
func passing(pkg, test string) string {
	return ev("run", pkg, test, "") +
		ev("output", pkg, test, "=== RUN   "+test+"\n") +
		ev("output", pkg, test, "    x_test.go:10: passing noise that must not be printed\n") +
		ev("output", pkg, test, "--- PASS: "+test+" (0.00s)\n") +
		ev("pass", pkg, test, "")
}

// okPackage returns the closing events of a package that passed.
func okPackage(pkg string) string {
	return ev("output", pkg, "", "PASS\n") + ev("output", pkg, "", "ok  \t"+pkg+"\t0.010s\n") + ev("pass", pkg, "", "")
}

const pkgA, pkgB = "example.com/p/a", "example.com/p/test/integration"

func TestSummary(t *testing.T) {
	skippedBanner := ev("run", pkgB, "TestRetrieve", "") +
		ev("output", pkgB, "TestRetrieve", "=== RUN   TestRetrieve\n") +
		ev("output", pkgB, "TestRetrieve", "    main_test.go:197: \n") +
		ev("output", pkgB, "TestRetrieve", "        *** SKIPPED: the Orthanc binary (Debian package orthanc) is missing ***\n") +
		ev("output", pkgB, "TestRetrieve", "        \n") +
		ev("output", pkgB, "TestRetrieve", "--- SKIP: TestRetrieve (0.00s)\n") +
		ev("skip", pkgB, "TestRetrieve", "")
	failingSub := ev("run", pkgA, "TestTable", "") +
		ev("output", pkgA, "TestTable", "=== RUN   TestTable\n") +
		ev("run", pkgA, "TestTable/bad_case", "") +
		ev("output", pkgA, "TestTable/bad_case", "=== RUN   TestTable/bad_case\n") +
		ev("output", pkgA, "TestTable/bad_case", "    a_test.go:40: got 2, want 3\n") +
		ev("output", pkgA, "TestTable/bad_case", "--- FAIL: TestTable/bad_case (0.00s)\n") +
		ev("fail", pkgA, "TestTable/bad_case", "") +
		ev("output", pkgA, "TestTable", "--- FAIL: TestTable (0.00s)\n") +
		ev("fail", pkgA, "TestTable", "") +
		ev("output", pkgA, "", "FAIL\n") + ev("output", pkgA, "", "FAIL\t"+pkgA+"\t0.010s\n") + ev("fail", pkgA, "", "")

	tests := []struct {
		name     string
		stream   string
		wantCode int
		// wantLast is the closing line.
		wantLast string
		want     []string
		wantNot  []string
	}{
		{
			name:     "all pass",
			stream:   ev("start", pkgA, "", "") + passing(pkgA, "TestOne") + passing(pkgA, "TestTwo") + okPackage(pkgA),
			wantCode: 0,
			wantLast: "tests: 2 passed, 0 failed, 0 skipped",
			want:     []string{"ok  \t" + pkgA + "\t0.010s"},
			wantNot:  []string{"passing noise", "Skipped tests", "Failed"},
		},
		{
			name: "a skipped real-server test is listed with its reason",
			stream: ev("start", pkgB, "", "") + skippedBanner + passing(pkgB, "TestOther") +
				okPackage(pkgB),
			wantCode: 0,
			wantLast: "tests: 1 passed, 0 failed, 1 skipped",
			want: []string{
				"Skipped tests (1):",
				"SKIP " + pkgB + " TestRetrieve: *** SKIPPED: the Orthanc binary (Debian package orthanc) is missing ***",
			},
		},
		{
			name: "a skip without a message",
			stream: ev("start", pkgA, "", "") + ev("run", pkgA, "TestQuiet", "") +
				ev("output", pkgA, "TestQuiet", "=== RUN   TestQuiet\n") +
				ev("output", pkgA, "TestQuiet", "--- SKIP: TestQuiet (0.00s)\n") +
				ev("skip", pkgA, "TestQuiet", "") + okPackage(pkgA),
			wantCode: 0,
			wantLast: "tests: 0 passed, 0 failed, 1 skipped",
			want:     []string{"SKIP " + pkgA + " TestQuiet: (no message)"},
		},
		{
			name: "the skip message is the last entry, not earlier logs",
			stream: ev("start", pkgA, "", "") + ev("run", pkgA, "TestLogs", "") +
				ev("output", pkgA, "TestLogs", "=== RUN   TestLogs\n") +
				ev("output", pkgA, "TestLogs", "    a_test.go:5: started a server\n") +
				ev("output", pkgA, "TestLogs", "    a_test.go:9: no /proc on this system\n") +
				ev("output", pkgA, "TestLogs", "--- SKIP: TestLogs (0.00s)\n") +
				ev("skip", pkgA, "TestLogs", "") + okPackage(pkgA),
			wantCode: 0,
			wantLast: "tests: 0 passed, 0 failed, 1 skipped",
			want:     []string{"SKIP " + pkgA + " TestLogs: no /proc on this system"},
			wantNot:  []string{"started a server"},
		},
		{
			name:     "a failing subtest prints its whole output",
			stream:   ev("start", pkgA, "", "") + passing(pkgA, "TestFine") + failingSub,
			wantCode: 1,
			wantLast: "tests: 1 passed, 2 failed, 0 skipped",
			want: []string{
				"    a_test.go:40: got 2, want 3\n--- FAIL: TestTable/bad_case (0.00s)",
				"FAIL\t" + pkgA + "\t0.010s",
				"FAIL " + pkgA + " TestTable/bad_case",
			},
			wantNot: []string{"passing noise"},
		},
		{
			name: "a build failure",
			stream: `{"ImportPath":"example.com/p/b [example.com/p/b.test]","Action":"build-output","Output":"# example.com/p/b [example.com/p/b.test]\n"}
{"ImportPath":"example.com/p/b [example.com/p/b.test]","Action":"build-output","Output":"b/b_test.go:3:28: undefined: undefined\n"}
{"ImportPath":"example.com/p/b [example.com/p/b.test]","Action":"build-fail"}
{"Action":"start","Package":"example.com/p/b"}
{"Action":"output","Package":"example.com/p/b","Output":"FAIL\texample.com/p/b [build failed]\n"}
{"Action":"fail","Package":"example.com/p/b","Elapsed":0,"FailedBuild":"example.com/p/b [example.com/p/b.test]"}
` + ev("start", pkgA, "", "") + passing(pkgA, "TestOne") + okPackage(pkgA),
			wantCode: 1,
			wantLast: "tests: 1 passed, 1 failed, 0 skipped",
			want: []string{
				"b/b_test.go:3:28: undefined: undefined",
				"FAIL\texample.com/p/b [build failed]",
				"FAIL example.com/p/b (build failed)",
			},
		},
		{
			name: "TestMain fails before any test runs",
			stream: ev("start", pkgB, "", "") +
				ev("output", pkgB, "", "FAIL: the Orthanc binary is missing\n(NIRPROXY_REQUIRE_REAL_SERVERS=1: missing dependencies are failures)\n") +
				ev("output", pkgB, "", "FAIL\t"+pkgB+"\t0.020s\n") + ev("fail", pkgB, "", ""),
			wantCode: 1,
			wantLast: "tests: 0 passed, 1 failed, 0 skipped",
			want:     []string{"FAIL: the Orthanc binary is missing", "FAIL " + pkgB + " (failed with no failing test"},
		},
		{
			name: "the stream ends in the middle of a test",
			stream: ev("start", pkgA, "", "") + passing(pkgA, "TestOne") + ev("run", pkgA, "TestHangs", "") +
				ev("output", pkgA, "TestHangs", "=== RUN   TestHangs\n") +
				ev("output", pkgA, "TestHangs", "    a_test.go:7: waiting for Orthanc\n"),
			wantCode: 1,
			wantLast: "tests: 1 passed, 1 failed, 0 skipped",
			want: []string{
				"    a_test.go:7: waiting for Orthanc\n--- FAIL: TestHangs (did not finish)",
				"(no result: the test stream ended before the package finished)",
				"The run is incomplete: package " + pkgA + " never finished.",
			},
		},
		{
			name: "a package reports pass with a test that never ended",
			stream: ev("start", pkgA, "", "") + ev("run", pkgA, "TestLost", "") +
				ev("output", pkgA, "TestLost", "=== RUN   TestLost\n") + okPackage(pkgA),
			wantCode: 1,
			wantLast: "tests: 0 passed, 1 failed, 0 skipped",
			want:     []string{"--- FAIL: TestLost (did not finish)"},
		},
		{
			name:     "an empty stream",
			stream:   "",
			wantCode: 1,
			wantLast: "tests: 0 passed, 1 failed, 0 skipped",
			want:     []string{"The run is incomplete: the stream held no test results."},
		},
		{
			name:     "lines that are not JSON are printed",
			stream:   "go: downloading example.com/x v1.0.0\n" + ev("start", pkgA, "", "") + passing(pkgA, "TestOne") + okPackage(pkgA),
			wantCode: 0,
			wantLast: "tests: 1 passed, 0 failed, 0 skipped",
			want:     []string{"go: downloading example.com/x v1.0.0"},
		},
		{
			name: "packages without test files",
			stream: ev("start", "example.com/p/cmd", "", "") +
				ev("output", "example.com/p/cmd", "", "?   \texample.com/p/cmd\t[no test files]\n") +
				ev("skip", "example.com/p/cmd", "", "") +
				ev("start", pkgA, "", "") + passing(pkgA, "TestOne") + okPackage(pkgA),
			wantCode: 0,
			wantLast: "tests: 1 passed, 0 failed, 0 skipped",
			want:     []string{"?   \texample.com/p/cmd\t[no test files]"},
			wantNot:  []string{"Skipped tests"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(nil, strings.NewReader(tc.stream), &out, &errOut)
			got := out.String()
			if code != tc.wantCode {
				t.Errorf("exit code %d; want %d; output:\n%s", code, tc.wantCode, got)
			}
			lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
			if last := lines[len(lines)-1]; last != tc.wantLast {
				t.Errorf("closing line %q; want %q; output:\n%s", last, tc.wantLast, got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q; output:\n%s", w, got)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(got, w) {
					t.Errorf("output has %q; output:\n%s", w, got)
				}
			}
		})
	}
}

// TestSummaryOfCommand runs a command as `testsummary go test ...` does: its exit status counts
// even when its stream shows no failure.
func TestSummaryOfCommand(t *testing.T) {
	stream := filepath.Join(t.TempDir(), "stream.json")
	if err := os.WriteFile(stream, []byte(ev("start", pkgA, "", "")+passing(pkgA, "TestOne")+okPackage(pkgA)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantLast string
	}{
		{name: "exit 0", args: []string{"cat", stream}, wantCode: 0, wantLast: "tests: 1 passed, 0 failed, 0 skipped"},
		{
			name:     "exit 1 with a clean stream",
			args:     []string{"sh", "-c", `cat "$0"; echo "no such package" >&2; exit 1`, stream},
			wantCode: 1,
			wantLast: "tests: 1 passed, 1 failed, 0 skipped",
		},
		{name: "command not found", args: []string{filepath.Join(t.TempDir(), "no-such-go")}, wantCode: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(tc.args, strings.NewReader(""), &out, &errOut)
			if code != tc.wantCode {
				t.Fatalf("exit code %d; want %d; output:\n%s\nstderr:\n%s", code, tc.wantCode, out.String(), errOut.String())
			}
			if tc.wantLast == "" {
				return
			}
			lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
			if last := lines[len(lines)-1]; last != tc.wantLast {
				t.Errorf("closing line %q; want %q; output:\n%s", last, tc.wantLast, out.String())
			}
		})
	}
}

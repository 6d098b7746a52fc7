package orthanc_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nirproxy/nirproxy/test/orthanc"
)

// TestStrict checks which environments make a missing real server a failure: the project's
// switch NIRPROXY_REQUIRE_REAL_SERVERS=1 whatever CI holds, and CI=true as an alias.
func TestStrict(t *testing.T) {
	tests := []struct {
		name, ci, require string
		want              bool
		wantReason        string
	}{
		{name: "developer machine"},
		{name: "CI=1 alone", ci: "1"},
		{name: "CI=woodpecker alone", ci: "woodpecker"},
		{name: "switch not 1", require: "true"},
		{name: "switch", require: "1", want: true, wantReason: "NIRPROXY_REQUIRE_REAL_SERVERS=1"},
		{name: "switch under CI=1", ci: "1", require: "1", want: true, wantReason: "NIRPROXY_REQUIRE_REAL_SERVERS=1"},
		{name: "switch under CI=false", ci: "false", require: "1", want: true, wantReason: "NIRPROXY_REQUIRE_REAL_SERVERS=1"},
		{name: "CI=true alias", ci: "true", want: true, wantReason: "CI=true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			t.Setenv(orthanc.RequireRealServers, tc.require)
			if got := orthanc.Strict(); got != tc.want {
				t.Errorf("Strict() = %v; want %v", got, tc.want)
			}
			if got := orthanc.StrictReason(); got != tc.wantReason {
				t.Errorf("StrictReason() = %q; want %q", got, tc.wantReason)
			}
		})
	}
}

// TestSkipOrFail checks that SkipOrFail fails, naming the switch, when the run is strict, and
// skips otherwise.
func TestSkipOrFail(t *testing.T) {
	missing := errors.New("Orthanc is missing")
	for _, tc := range []struct {
		name, require string
		wantFatal     bool
	}{
		{name: "skips", require: ""},
		{name: "fails with the switch", require: "1", wantFatal: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", "1")
			t.Setenv(orthanc.RequireRealServers, tc.require)
			r := &recorder{TB: t}
			orthanc.SkipOrFail(r, missing)
			if tc.wantFatal && (r.fatal == "" || r.skip != "") {
				t.Fatalf("SkipOrFail: fatal %q, skip %q; want a failure", r.fatal, r.skip)
			}
			if !tc.wantFatal && (r.skip == "" || r.fatal != "") {
				t.Fatalf("SkipOrFail: fatal %q, skip %q; want a skip", r.fatal, r.skip)
			}
		})
	}
}

// recorder is a testing.TB whose Fatalf and Skipf record the first thing they were told
// instead of ending the test.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Fatalf(format string, args ...any) {
	if r.fatal == "" && r.skip == "" {
		r.fatal = fmt.Sprintf(format, args...)
	}
}

func (r *recorder) Skipf(format string, args ...any) {
	if r.fatal == "" && r.skip == "" {
		r.skip = fmt.Sprintf(format, args...)
	}
}

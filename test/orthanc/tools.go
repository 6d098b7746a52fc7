package orthanc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Paths of the Debian packages' files that the tests use.
const (
	// DICOMwebPlugin is the plugin from Debian's orthanc-dicomweb.
	DICOMwebPlugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
	// GDCMPlugin is the plugin from Debian's orthanc-gdcm, which decodes JPEG 2000.
	GDCMPlugin = "/usr/share/orthanc/plugins/libOrthancGdcm.so"
	// PydicomTestFiles is where Debian's python3-pydicom keeps its sample DICOM files.
	PydicomTestFiles = "/usr/lib/python3/dist-packages/pydicom/data/test_files"
)

// InstallHint tells a developer how to get what the real-server tests need.
const InstallHint = "run test/scripts/install-deps.sh (as root: apt-get install orthanc orthanc-dicomweb " +
	"orthanc-gdcm python3-pydicom dcmtk, and npm ci in test/conformance)"

// RequireRealServers is the project's own switch: when it is "1", every test that needs a real
// server (Orthanc, redis-server, Node.js) fails instead of skipping when the server or a tool is
// missing. .ci/run sets it, whatever CI holds.
const RequireRealServers = "NIRPROXY_REQUIRE_REAL_SERVERS"

// Strict reports whether a missing tool must fail the run instead of skipping: it does when
// NIRPROXY_REQUIRE_REAL_SERVERS is "1", and, as an alias kept for CI services that set it so,
// when CI is exactly "true". Other values of CI (CI=1, CI=woodpecker) do not make a run strict
// by themselves; every strict-or-skip decision of the tests goes through this function.
func Strict() bool {
	return os.Getenv(RequireRealServers) == "1" || os.Getenv("CI") == "true"
}

// StrictReason names the setting that made the run strict, for messages:
// "NIRPROXY_REQUIRE_REAL_SERVERS=1" or "CI=true"; "" when the run is not strict.
func StrictReason() string {
	switch {
	case os.Getenv(RequireRealServers) == "1":
		return RequireRealServers + "=1"
	case os.Getenv("CI") == "true":
		return "CI=true"
	}
	return ""
}

// Missing returns a description of each tool the Orthanc tests need that this machine lacks:
// the Orthanc binary, its DICOMweb and GDCM plugins, dcmodify and pydicom's sample files.
func Missing() []string {
	var missing []string
	if _, err := exec.LookPath("Orthanc"); err != nil {
		missing = append(missing, "the Orthanc binary (Debian package orthanc)")
	}
	for _, f := range []struct{ path, what string }{
		{DICOMwebPlugin, "the Orthanc DICOMweb plugin (orthanc-dicomweb)"},
		{GDCMPlugin, "the Orthanc GDCM plugin (orthanc-gdcm)"},
		{PydicomTestFiles + "/CT_small.dcm", "pydicom's test files (python3-pydicom)"},
	} {
		if _, err := os.Stat(f.path); err != nil {
			missing = append(missing, f.what)
		}
	}
	if _, err := exec.LookPath("dcmodify"); err != nil {
		missing = append(missing, "dcmodify (dcmtk)")
	}
	return missing
}

// ErrMissingTools is wrapped by MissingError.
var ErrMissingTools = errors.New("tools for the real-server tests are missing")

// MissingError returns an error naming what Missing found and how to install it, or nil.
func MissingError() error {
	missing := Missing()
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s; %s", ErrMissingTools, strings.Join(missing, ", "), InstallHint)
}

// Require skips tb, loudly, when a tool the Orthanc tests need is missing, or fails it when
// Strict says a missing tool is an error.
func Require(tb testing.TB) {
	tb.Helper()
	if err := MissingError(); err != nil {
		SkipOrFail(tb, err)
	}
}

// SkipOrFail fails tb with err when Strict, and otherwise skips it with a banner that is hard
// to miss in `go test -v` output.
func SkipOrFail(tb testing.TB, err error) {
	tb.Helper()
	if Strict() {
		tb.Fatalf("%v (%s: missing dependencies are failures)", err, StrictReason())
	}
	tb.Skipf("\n*** SKIPPED: %v ***\n", err)
}

package rsyslogserver

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/test/childproc"
	"github.com/nirproxy/nirproxy/test/orthanc"
)

// InstallHint tells a developer how to get what the rsyslog tests need.
const InstallHint = "run test/scripts/install-deps.sh (as root: apt-get install rsyslog rsyslog-gnutls)"

// ErrMissingTools is wrapped by Missing.
var ErrMissingTools = errors.New("tools for the real rsyslog tests are missing")

// Missing returns an error naming rsyslogd or its GnuTLS driver when either is missing, with
// how to install them, or nil.
func Missing() error {
	var missing []string
	if _, err := exec.LookPath("rsyslogd"); err != nil {
		missing = append(missing, "rsyslogd (Debian package rsyslog)")
	}
	if found, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so"); len(found) == 0 {
		missing = append(missing, "rsyslog's GnuTLS driver lmnsd_gtls.so (Debian package rsyslog-gnutls)")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s; %s", ErrMissingTools, strings.Join(missing, ", "), InstallHint)
}

// Require skips tb, loudly, when rsyslogd or its GnuTLS driver is missing, or fails it when
// the run is strict about real servers (NIRPROXY_REQUIRE_REAL_SERVERS=1, or its alias CI=true,
// as orthanc.Strict decides for every real-server test).
func Require(tb testing.TB) {
	tb.Helper()
	if err := Missing(); err != nil {
		orthanc.SkipOrFail(tb, err)
	}
}

// tailLog is the end of rsyslogd's own log, for failures.
func tailLog(s *Server) string { return childproc.TailFile(s.LogPath(), 2000) }

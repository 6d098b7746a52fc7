package redisserver

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/test/orthanc"
)

// InstallHint tells a developer how to get what the Redis tests need.
const InstallHint = "run test/scripts/install-deps.sh (as root: apt-get install redis-server)"

// ErrMissingTools is wrapped by Missing.
var ErrMissingTools = errors.New("tools for the real Redis tests are missing")

// Missing returns an error naming redis-server and redis-cli when either is not on PATH, with
// how to install them, or nil.
func Missing() error {
	var missing []string
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" (Debian package redis-server)")
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s; %s", ErrMissingTools, strings.Join(missing, ", "), InstallHint)
}

// Require skips tb, loudly, when redis-server or redis-cli is missing, or fails it when the run
// is strict about real servers (NIRPROXY_REQUIRE_REAL_SERVERS=1, or its alias CI=true, as
// orthanc.Strict decides for every real-server test).
func Require(tb testing.TB) {
	tb.Helper()
	if err := Missing(); err != nil {
		orthanc.SkipOrFail(tb, err)
	}
}

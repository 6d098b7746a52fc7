//go:build !linux

package childproc

import (
	"os/exec"
	"time"
)

// setChildAttributes does nothing where the parent-death signal does not exist.
func setChildAttributes(*exec.Cmd) {}

// WaitStopped cannot observe the process state here; a short pause lets SIGSTOP land.
func WaitStopped(int, time.Duration) error {
	time.Sleep(50 * time.Millisecond)
	return nil
}

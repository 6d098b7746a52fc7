//go:build linux

package childproc

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// setChildAttributes asks the kernel to kill the child when the test process dies, so that a
// crashed or killed `go test` leaves no server behind holding a port.
func setChildAttributes(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// WaitStopped waits until the kernel reports pid stopped (state T in /proc/PID/stat): a
// SIGSTOP is delivered asynchronously, and a request sent at once could still be answered.
func WaitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return fmt.Errorf("read state of pid %d: %w", pid, err)
		}
		// The state follows the command name, which is in parentheses and may hold spaces.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d did not stop within %v", pid, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

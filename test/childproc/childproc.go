// Package childproc runs the real servers of nirproxy's tests (Orthanc, redis-server, the
// nirproxy binary) as direct child processes of the test: never through a shell and never
// daemonised, so the PID is the server's own and signals (SIGTERM, SIGKILL, SIGSTOP) reach it;
// their output goes to a log file; and on Linux the kernel kills them if the test process dies,
// so a crashed `go test` leaves nothing behind holding a port.
package childproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// killWait bounds the wait for a process to end after SIGKILL.
const killWait = 10 * time.Second

// Process is one child process: its command, the file its output goes to, and whether it has
// exited.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}

	mu      sync.Mutex
	waitErr error
}

// Start starts bin with args in dir, its standard output and error appended to logPath. env,
// when not nil, is the child's whole environment. name is for messages.
func Start(name, dir, logPath string, env []string, bin string, args ...string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if env != nil {
		cmd.Env = env
	}
	setChildAttributes(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Name is the name given to Start.
func (p *Process) Name() string { return p.name }

// PID is the child's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// LogPath is the file the child's output goes to.
func (p *Process) LogPath() string { return p.logPath }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitErr is what Wait returned; it is meaningful only once Done is closed.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Signal sends sig unless the process has already ended.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send %v to %s (pid %d): %w", sig, p.name, p.PID(), err)
	}
	return nil
}

// Terminate sends SIGTERM (after SIGCONT, in case the process is paused) and waits up to grace
// for the process to end, then kills it.
func (p *Process) Terminate(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.Signal(syscall.SIGCONT)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	return p.Kill()
}

// Kill sends SIGKILL and waits for the process to end. A paused process dies too: SIGKILL is
// delivered to stopped processes.
func (p *Process) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("kill %s (pid %d): still running %v after SIGKILL", p.name, p.PID(), killWait)
	}
}

// Pause sends SIGSTOP and waits until the kernel reports the process stopped.
func (p *Process) Pause() error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	return WaitStopped(p.PID(), 2*time.Second)
}

// Resume sends SIGCONT.
func (p *Process) Resume() error { return p.Signal(syscall.SIGCONT) }

// TailFile returns up to the last n bytes of the file at path, for error messages.
func TailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return "(unreadable log: " + err.Error() + ")"
	}
	return string(buf)
}

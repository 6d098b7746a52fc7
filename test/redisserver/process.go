package redisserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a stop waits after SIGTERM before it sends SIGKILL. Without save points
// redis-server exits within a few milliseconds of SIGTERM.
const stopGrace = 5 * time.Second

// killWait bounds the wait for a process to end after SIGKILL.
const killWait = 10 * time.Second

// process is one redis-server started by this package: its command, the file its output goes to,
// and a channel closed when it has exited. It is the direct child of the test process (never
// --daemonize, never through a shell), so its PID is the server's own and signals reach it.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}

	mu      sync.Mutex
	waitErr error
}

// startProcess starts bin with args in dir, its standard output and error appended to logPath.
func startProcess(name, dir, logPath, bin string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	setChildAttributes(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
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

// pid returns the child's process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitErr returns what Wait returned; it is meaningful only once done is closed.
func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// signal sends sig unless the process has already ended.
func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send %v to %s (pid %d): %w", sig, p.name, p.pid(), err)
	}
	return nil
}

// terminate sends SIGTERM (after SIGCONT, in case the process is paused) and waits up to grace
// for the process to end, then kills it. Without save points redis-server saves nothing on
// SIGTERM, as SHUTDOWN NOSAVE would.
func (p *process) terminate(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.signal(syscall.SIGCONT)
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	return p.kill()
}

// kill sends SIGKILL and waits for the process to end. A paused process dies too: SIGKILL is
// delivered to stopped processes.
func (p *process) kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("kill %s (pid %d): still running %v after SIGKILL", p.name, p.pid(), killWait)
	}
}

// tailFile returns up to the last n bytes of the file at path, for error messages.
func tailFile(path string, n int64) string {
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

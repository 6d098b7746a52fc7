package orthanc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long Stop waits after SIGTERM before it sends SIGKILL. Orthanc takes 2–5 s
// to shut down cleanly on these machines.
const stopGrace = 8 * time.Second

// process is one child process started by this package: its command, the file its output goes
// to, and a channel closed when it has exited. It is the direct child of the test process, so
// its PID is the server's own and signals reach the server, not a shell.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}

	mu      sync.Mutex
	waitErr error
}

// startProcess starts bin with args in dir, its standard output and error appended to logPath.
func startProcess(name, dir, logPath string, env []string, bin string, args ...string) (*process, error) {
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
	p := &process{name: name, cmd: cmd, logPath: logPath, logFile: logFile, done: make(chan struct{})}
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
// for the process to end, then kills it.
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

// kill sends SIGKILL and waits for the process to end.
func (p *process) kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("kill %s (pid %d): still running 10 s after SIGKILL", p.name, p.pid())
	}
}

// waitHTTP polls url until it answers 200, the process exits, ctx ends or timeout passes.
// decorate, when not nil, adds credentials to each request.
func (p *process) waitHTTP(ctx context.Context, url string, timeout time.Duration, decorate func(*http.Request)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("build readiness request for %s: %w", p.name, err)
		}
		if decorate != nil {
			decorate(req)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
		} else {
			last = err
		}
		select {
		case <-p.done:
			return fmt.Errorf("wait for %s: exited before it was ready (%v); log %s:\n%s",
				p.name, p.exitErr(), p.logPath, tailFile(p.logPath, 2000))
		case <-ctx.Done():
			return fmt.Errorf("wait for %s at %s: not ready after %s (last: %v); log %s:\n%s",
				p.name, url, timeout, last, p.logPath, tailFile(p.logPath, 2000))
		case <-tick.C:
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a moment ago. Another
// process may take it before the caller binds it; callers retry on a failed start.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return "(unreadable log: " + err.Error() + ")"
	}
	return string(buf)
}

// loopbackURL is the base URL of a server listening on port on 127.0.0.1.
func loopbackURL(port int) string {
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

package orthanc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/nirproxy/nirproxy/test/childproc"
)

// stopGrace is how long Stop waits after SIGTERM before it sends SIGKILL. Orthanc takes 2–5 s
// to shut down cleanly on these machines.
const stopGrace = 8 * time.Second

// waitHTTP polls url until it answers 200, p exits, ctx ends or timeout passes. decorate, when
// not nil, adds credentials to each request.
func waitHTTP(ctx context.Context, p *childproc.Process, url string, timeout time.Duration, decorate func(*http.Request)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("build readiness request for %s: %w", p.Name(), err)
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
		case <-p.Done():
			return fmt.Errorf("wait for %s: exited before it was ready (%v); log %s:\n%s",
				p.Name(), p.ExitErr(), p.LogPath(), childproc.TailFile(p.LogPath(), 2000))
		case <-ctx.Done():
			return fmt.Errorf("wait for %s at %s: not ready after %s (last: %v); log %s:\n%s",
				p.Name(), url, timeout, last, p.LogPath(), childproc.TailFile(p.LogPath(), 2000))
		case <-tick.C:
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a moment ago. Another
// process may take it before the caller binds it; callers retry on a failed start.
func FreePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// freePorts finds n distinct free TCP ports on 127.0.0.1, holding each until all are found.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// loopbackURL is the base URL of a server listening on port on 127.0.0.1.
func loopbackURL(port int) string {
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NginxBinary is where Debian's nginx package installs the server.
const NginxBinary = "/usr/sbin/nginx"

// Nginx is a running nginx: either (StartNginx) a plain reverse proxy in front of one upstream,
// with two listeners, one that streams (proxy_buffering off) and one that buffers
// (proxy_buffering on); or (StartStaticNginx) a server of one static file.
type Nginx struct {
	// StreamingURL and BufferingURL are "http://127.0.0.1:PORT" of the two listeners of a
	// reverse proxy.
	StreamingURL, BufferingURL string
	// StaticURL is "http://127.0.0.1:PORT" of a static-file server.
	StaticURL string
	// Version is what `nginx -v` printed, e.g. "nginx/1.22.1".
	Version string

	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// NginxSettings are the reverse-proxy directives both listeners share, as written into the
// generated configuration; the report quotes them.
const NginxSettings = `proxy_http_version 1.1; proxy_set_header Connection ""; ` +
	`proxy_set_header Host $http_host; upstream keepalive 32; ` +
	`buffering listener: proxy_buffer_size 64k; proxy_buffers 16 64k; proxy_busy_buffers_size 128k`

// nginxConfig is the generated configuration for an upstream on upstreamPort, listening on
// streamPort and bufferPort, keeping every file under dir.
func nginxConfig(dir string, upstreamPort, streamPort, bufferPort int, root bool) string {
	var b strings.Builder
	if root {
		// Workers must reach the temporary files under dir, which only root may enter.
		b.WriteString("user root root;\n")
	}
	fmt.Fprintf(&b, `worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 100000;
    upstream orthanc {
        server 127.0.0.1:%[2]d;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:%[3]d;
        location / {
            proxy_pass http://orthanc;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_read_timeout 120s;
            proxy_buffering off;
        }
    }
    server {
        listen 127.0.0.1:%[4]d;
        location / {
            proxy_pass http://orthanc;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_read_timeout 120s;
            proxy_buffering on;
            proxy_buffer_size 64k;
            proxy_buffers 16 64k;
            proxy_busy_buffers_size 128k;
        }
    }
}
`, dir, upstreamPort, streamPort, bufferPort)
	return b.String()
}

// StartNginx writes a configuration in a new temporary directory and starts nginx in front of
// the server on upstreamPort, then waits until both listeners answer. nginx's master process
// is a direct child that receives SIGTERM (and so stops its workers) if this process dies.
func StartNginx(ctx context.Context, upstreamPort int, freePort func() (int, error)) (*Nginx, error) {
	ports, err := freePorts(freePort, 2)
	if err != nil {
		return nil, err
	}
	n, err := launchNginx(ctx, nil, func(dir string) string {
		return nginxConfig(dir, upstreamPort, ports[0], ports[1], os.Geteuid() == 0)
	})
	if err != nil {
		return nil, err
	}
	n.StreamingURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	n.BufferingURL = "http://127.0.0.1:" + strconv.Itoa(ports[1])
	for _, u := range []string{n.StreamingURL, n.BufferingURL} {
		if err := n.waitListening(ctx, u); err != nil {
			_ = n.Stop()
			return nil, err
		}
	}
	return n, nil
}

// NginxStaticSettings are the directives of the static-file listener beyond the shared ones
// (sendfile, tcp_nodelay, keepalive_requests 100000, access_log off); the report quotes them.
const NginxStaticSettings = `sendfile on; tcp_nopush on; open_file_cache max=16 inactive=1h; open_file_cache_valid 1h; etag off; ` +
	`add_header Cache-Control no-store; types {} default_type <the answer's Content-Type>`

// nginxStaticConfig is the generated configuration of a server that answers GET urlPath (any
// query) with the file at dir/answer, as contentType, on port.
func nginxStaticConfig(dir, urlPath, contentType string, port int, root bool) string {
	var b strings.Builder
	if root {
		b.WriteString("user root root;\n")
	}
	fmt.Fprintf(&b, `worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    open_file_cache max=16 inactive=1h;
    open_file_cache_valid 1h;
    etag off;
    server {
        listen 127.0.0.1:%[2]d;
        location = %[3]s {
            types { }
            default_type "%[4]s";
            add_header Cache-Control no-store;
            alias %[1]s/answer;
        }
    }
}
`, dir, port, urlPath, contentType)
	return b.String()
}

// StartStaticNginx starts nginx answering every GET of urlPath (whatever its query) with body
// as a static file, with Content-Type contentType, and waits until it answers. StaticURL is
// its "http://127.0.0.1:PORT". What serving a file costs nginx is the practical ceiling of a
// server answering the same bytes on the same machine.
func StartStaticNginx(ctx context.Context, body []byte, urlPath, contentType string, freePort func() (int, error)) (*Nginx, error) {
	if strings.ContainsAny(urlPath, "\"; {}\n\\") || strings.ContainsAny(contentType, "\"\n\\") {
		return nil, fmt.Errorf("start static nginx: %q or %q would break its configuration", urlPath, contentType)
	}
	ports, err := freePorts(freePort, 1)
	if err != nil {
		return nil, err
	}
	n, err := launchNginx(ctx, map[string][]byte{"answer": body}, func(dir string) string {
		return nginxStaticConfig(dir, urlPath, contentType, ports[0], os.Geteuid() == 0)
	})
	if err != nil {
		return nil, err
	}
	n.StaticURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	if err := n.waitListening(ctx, n.StaticURL); err != nil {
		_ = n.Stop()
		return nil, err
	}
	return n, nil
}

// freePorts asks freePort for n ports.
func freePorts(freePort func() (int, error), n int) ([]int, error) {
	out := make([]int, n)
	for i := range out {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// launchNginx makes a new temporary directory holding files (name to content) and the
// configuration conf(dir) returns, and starts nginx on it.
func launchNginx(ctx context.Context, files map[string][]byte, conf func(dir string) string) (*Nginx, error) {
	dir, err := os.MkdirTemp("", "nirproxy-bench-nginx-")
	if err != nil {
		return nil, fmt.Errorf("create directory for nginx: %w", err)
	}
	n := &Nginx{dir: dir, done: make(chan struct{})}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create nginx temporary directory: %w", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("write %s for nginx: %w", name, err)
		}
	}
	if out, err := exec.CommandContext(ctx, NginxBinary, "-v").CombinedOutput(); err == nil {
		n.Version = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version:"))
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf(dir)), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("write nginx configuration: %w", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create nginx log: %w", err)
	}
	n.cmd = exec.Command(NginxBinary, "-p", dir, "-c", confPath)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := n.cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	go func() {
		_ = n.cmd.Wait()
		logFile.Close()
		close(n.done)
	}()
	return n, nil
}

// waitListening polls u until nginx answers anything (Orthanc's answer through it, or a 502).
func (n *Nginx) waitListening(ctx context.Context, u string) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/system", nil)
		if err != nil {
			return fmt.Errorf("build nginx readiness request: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-n.done:
			log, _ := os.ReadFile(filepath.Join(n.dir, "stderr.log"))
			elog, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
			return fmt.Errorf("wait for nginx: it exited: %s%s", log, elog)
		case <-ctx.Done():
			return fmt.Errorf("wait for nginx: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for nginx at %s: not answering after 10 s: %w", u, err)
		}
	}
}

// PID is the master process's id; its workers are its children.
func (n *Nginx) PID() int { return n.cmd.Process.Pid }

// Stop asks nginx to stop at once (SIGTERM: the master stops its workers), waits for it, and
// removes its directory. It kills the master if it has not ended after 5 s.
func (n *Nginx) Stop() error {
	defer os.RemoveAll(n.dir)
	select {
	case <-n.done:
		return nil
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	workers := children(n.PID())
	_ = n.cmd.Process.Kill()
	for _, pid := range workers {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-n.done
	return fmt.Errorf("stop nginx: it did not end within 5 s of SIGTERM and was killed")
}

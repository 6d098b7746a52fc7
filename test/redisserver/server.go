package redisserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/nirproxy/nirproxy/test/childproc"
	"github.com/nirproxy/nirproxy/test/orthanc"
)

// startAttempts is how many ports Start tries when it chooses them itself: another process may
// take a free port between the choice and redis-server binding it.
const startAttempts = 3

// errPortTaken marks a start that failed because another process holds the port.
var errPortTaken = errors.New("port taken")

// tBudget bounds StartT, StartClusterT and the stops they register.
const tBudget = 60 * time.Second

// Options configures one redis-server (or every node of a cluster). Every field is optional.
type Options struct {
	// Binary is the redis-server executable; default "redis-server" from PATH.
	Binary string
	// CLI is the redis-cli executable, used to create clusters; default "redis-cli" from PATH.
	CLI string
	// Dir holds the log (and a cluster node's nodes.conf); default a new temporary directory,
	// removed by Stop. A given Dir is left in place. StartCluster puts node i in Dir/node-i.
	Dir string
	// Port is the port on 127.0.0.1; default a free one. StartCluster gives node i Port+i.
	Port int
	// Password, when set, is required of clients (requirepass). Client and ClusterClient use it.
	Password string
	// Args are extra redis-server arguments, appended after this package's own, such as
	// []string{"--maxmemory", "10mb"}. Later arguments win, so they can override the defaults.
	Args []string
	// StartTimeout bounds the wait for the server to answer; default 10 s.
	StartTimeout time.Duration
}

// withDefaults fills the zero fields of o.
func (o *Options) withDefaults() {
	if o.Binary == "" {
		o.Binary = "redis-server"
	}
	if o.CLI == "" {
		o.CLI = "redis-cli"
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
}

// Server is one redis-server listening on a loopback port, started by this package as a direct
// child process. It keeps no data across restarts: nothing is saved (--save "" --appendonly no).
// Its methods are safe for concurrent use.
type Server struct {
	// Port is the port on 127.0.0.1.
	Port int

	dir      string
	ownDir   bool
	binary   string
	password string
	extra    []string
	timeout  time.Duration
	// busPort is the cluster bus port; zero when the server is not a cluster node.
	busPort int
	client  *redis.Client

	mu      sync.Mutex
	proc    *childproc.Process
	stopped bool
}

// Start starts redis-server as opts describe and waits until it answers PING. A port taken by
// someone else between choosing and binding it is retried with another port (unless opts.Port
// names one). The server runs until Stop; ctx bounds only the start.
func Start(ctx context.Context, opts Options) (*Server, error) {
	return start(ctx, opts, false)
}

// StartT starts a server as Start does, bounded in time, and stops it when tb ends. It calls
// Require first, so a machine without Redis skips (or, when strict, fails) tb loudly.
func StartT(tb testing.TB, opts Options) *Server {
	tb.Helper()
	Require(tb)
	ctx, cancel := context.WithTimeout(context.Background(), tBudget)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stop redis-server %s: %v", s.Addr(), err)
		}
	})
	return s
}

// start starts one server, as a cluster node when cluster is true.
func start(ctx context.Context, opts Options, cluster bool) (*Server, error) {
	opts.withDefaults()
	s := &Server{
		dir: opts.Dir, binary: opts.Binary, password: opts.Password,
		extra: append([]string(nil), opts.Args...), timeout: opts.StartTimeout,
	}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "nirproxy-redis-")
		if err != nil {
			return nil, fmt.Errorf("create directory for redis-server: %w", err)
		}
		s.dir, s.ownDir = dir, true
	} else if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create directory %s for redis-server: %w", s.dir, err)
	}
	var lastErr error
	for range startAttempts {
		port := opts.Port
		if port == 0 {
			p, err := orthanc.FreePort()
			if err != nil {
				s.cleanup()
				return nil, err
			}
			port = p
		}
		s.Port = port
		if cluster {
			p, err := orthanc.FreePort()
			if err != nil {
				s.cleanup()
				return nil, err
			}
			s.busPort = p
			// A node that failed to bind may have written its identity; a new node starts afresh.
			if err := os.Remove(filepath.Join(s.dir, "nodes.conf")); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.cleanup()
				return nil, fmt.Errorf("remove stale nodes.conf of redis-server: %w", err)
			}
		}
		err := s.launch(ctx)
		if err == nil {
			s.client = redis.NewClient(clientOptions(s.Addr(), s.password))
			return s, nil
		}
		lastErr = err
		if opts.Port != 0 || ctx.Err() != nil || !errors.Is(err, errPortTaken) {
			break
		}
	}
	s.cleanup()
	return nil, lastErr
}

// clientOptions are the options of the clients this package hands out: bounded timeouts, and no
// maintenance-notification handshake (Redis 7.0 does not know it).
func clientOptions(addr, password string) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		Password:              password,
		DialTimeout:           time.Second,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		DialerRetries:         1,
		DialerRetryTimeout:    10 * time.Millisecond,
		ContextTimeoutEnabled: true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
}

// name names the server in errors and logs.
func (s *Server) name() string { return "redis-server " + s.Addr() }

// args returns redis-server's command line, without the binary.
func (s *Server) args() []string {
	args := []string{
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.Port),
		"--daemonize", "no",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
	}
	if s.password != "" {
		args = append(args, "--requirepass", s.password)
	}
	if s.busPort != 0 {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(s.busPort))
	}
	return append(args, s.extra...)
}

// launch starts the redis-server process and waits until it answers.
func (s *Server) launch(ctx context.Context) error {
	proc, err := childproc.Start(s.name(), s.dir, s.LogPath(), nil, s.binary, s.args()...)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()
	if err := s.waitReady(ctx, proc); err != nil {
		_ = proc.Kill()
		return err
	}
	return nil
}

// waitReady polls the server until it answers INFO as the process proc (its process_id), proc
// exits, ctx ends or the start timeout passes. Checking the PID, not just PING, keeps a
// redis-server of someone else's that holds the port from passing for ours.
func (s *Server) waitReady(ctx context.Context, proc *childproc.Process) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = s.answersAs(ctx, proc.PID())
		if last == nil {
			return nil
		}
		select {
		case <-proc.Done():
			log := childproc.TailFile(s.LogPath(), 2000)
			err := fmt.Errorf("wait for %s: exited before it was ready (%v); log %s:\n%s",
				s.name(), proc.ExitErr(), s.LogPath(), log)
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: not ready after %v (last: %v); log %s:\n%s",
				s.name(), s.timeout, last, s.LogPath(), childproc.TailFile(s.LogPath(), 2000))
		case <-tick.C:
		}
	}
}

// answersAs asks the server once, on a new connection, for INFO and PING, and checks that
// pid answers. A new client each time keeps go-redis's pool from holding back dials for a
// second after the refused ones before the server listens. The timeouts are short (loopback
// answers in well under a millisecond) because go-redis does not abandon a blocked read when
// ctx is cancelled, and a port held by something that never answers must not stall the wait.
func (s *Server) answersAs(ctx context.Context, pid int) error {
	opts := clientOptions(s.Addr(), s.password)
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	opts.MaxRetries, opts.PoolSize = -1, 1
	client := redis.NewClient(opts)
	defer client.Close()
	info, err := client.Info(ctx, "server").Result()
	if err != nil {
		return err
	}
	want := "process_id:" + strconv.Itoa(pid)
	if !strings.Contains(info, want+"\r\n") && !strings.Contains(info, want+"\n") {
		return fmt.Errorf("port %d answers for another redis-server, not pid %d", s.Port, pid)
	}
	return client.Ping(ctx).Err()
}

// current returns the running (or last) process.
func (s *Server) current() *childproc.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// Addr is the server's "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// PID is the process id of the current redis-server.
func (s *Server) PID() int { return s.current().PID() }

// Dir is the directory holding the log (and a cluster node's nodes.conf).
func (s *Server) Dir() string { return s.dir }

// LogPath is the file redis-server's output goes to; every restart appends to it. Stop removes
// it with the directory unless Options.Dir was given.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "redis.log") }

// Client returns a client of this server (with its password), shared by every caller and
// closed by Stop; callers must not close it. It reconnects by itself after Restart.
func (s *Server) Client() *redis.Client { return s.client }

// Running reports whether the current redis-server process is alive (a paused one is).
func (s *Server) Running() bool {
	p := s.current()
	return p != nil && !p.Exited()
}

// Stop ends redis-server (SIGTERM, which saves nothing here, then SIGKILL after a few seconds),
// waits until the process has gone, closes Client and removes the directory if Start created
// it. Calling it again does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	p := s.proc
	s.mu.Unlock()
	err := p.Terminate(stopGrace)
	if s.client != nil {
		_ = s.client.Close()
	}
	s.cleanup()
	if err != nil {
		return fmt.Errorf("stop %s: %w", s.name(), err)
	}
	return nil
}

// Kill ends redis-server at once with SIGKILL and waits until it has gone. Restart brings a
// server back on the same port.
func (s *Server) Kill() error {
	if err := s.current().Kill(); err != nil {
		return fmt.Errorf("kill %s: %w", s.name(), err)
	}
	return nil
}

// Pause freezes redis-server with SIGSTOP: the kernel still accepts connections, but nothing
// answers until Resume.
func (s *Server) Pause() error {
	if err := s.current().Pause(); err != nil {
		return fmt.Errorf("pause %s: %w", s.name(), err)
	}
	return nil
}

// Resume undoes Pause with SIGCONT.
func (s *Server) Resume() error { return s.current().Resume() }

// Restart starts redis-server again on the same port with the same options, after Kill, a crash
// or while it still runs (it is terminated first). The new server holds no data; a cluster node
// keeps its identity and slots (its nodes.conf) and rejoins its cluster. Restart after Stop is
// an error.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return fmt.Errorf("restart %s: it was stopped", s.name())
	}
	if err := s.current().Terminate(stopGrace); err != nil {
		return fmt.Errorf("restart %s: %w", s.name(), err)
	}
	if err := s.launch(ctx); err != nil {
		return fmt.Errorf("restart %s: %w", s.name(), err)
	}
	return nil
}

// cleanup removes the directory if Start created it.
func (s *Server) cleanup() {
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}

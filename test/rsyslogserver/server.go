// Package rsyslogserver runs a real rsyslog for nirproxy's audit tests: Debian's rsyslogd
// with its GnuTLS driver (packages rsyslog and rsyslog-gnutls, installed by
// test/scripts/install-deps.sh) as a syslog-over-TLS receiver (imtcp, RFC 5425 octet-counted
// framing) on a free port of 127.0.0.1. It runs as a direct child process (-n: it never
// forks, so its PID is ours to signal) with its own configuration, pid file, work directory
// and log, and writes every message it receives as one line of a file the test reads.
//
// # Typical use
//
//	func TestSomething(t *testing.T) {
//		ca := testpki.NewCA(t, "test CA")
//		rs := rsyslogserver.StartT(t, rsyslogserver.Options{CA: ca, ClientAuth: true})
//		... send to rs.Addr(), trusting ca, with a client certificate of ca ...
//		msgs := rs.WaitFor(t, func(ms []rsyslogserver.Message) bool { return len(ms) == 3 })
//		rs.Kill()              // SIGKILL: connections to it break
//		rs.Restart(ctx)        // the same port again; the received file is kept
//	}
//
// StartT calls Require, which skips the test loudly when rsyslogd or its GnuTLS driver is
// missing and fails it when NIRPROXY_REQUIRE_REAL_SERVERS=1 or CI=true (orthanc.Strict).
//
// # rsyslog facts the package relies on
//
//   - rsyslogd goes on running when it cannot bind a port (it logs and ignores the listener),
//     so readiness is the process itself holding the listening socket (read from /proc),
//     not a port that answers.
//   - Its default maximum message size is 8 KiB; DICOM requires receivers of audit messages to
//     take 32 KiB, so the configuration raises it (Options.MaxMessageSize).
//   - The RFC 5424 parser fills the properties written per line: PRI, protocol version,
//     HOSTNAME, APP-NAME, PROCID, MSGID and MSG, tab-separated; a message it could not parse
//     as RFC 5424 has protocol version 0. Control characters in MSG are escaped (#011), so a
//     message is one line. The UTF-8 byte order mark before an XML MSG is kept.
//   - A client that closes without TLS's close_notify makes rsyslogd log a GnuTLS error for
//     the session; it is harmless.
package rsyslogserver

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

	"github.com/nirproxy/nirproxy/test/childproc"
	"github.com/nirproxy/nirproxy/test/orthanc"
	"github.com/nirproxy/nirproxy/test/testpki"
)

// startAttempts is how many ports Start tries when it chooses them itself: another process may
// take a free port between the choice and rsyslogd binding it.
const startAttempts = 3

// tBudget bounds StartT and the stop it registers.
const tBudget = 60 * time.Second

// stopGrace is how long a stop waits after SIGTERM before it sends SIGKILL.
const stopGrace = 5 * time.Second

// errPortTaken marks a start that failed because another process holds the port.
var errPortTaken = errors.New("port taken")

// Options configures one rsyslogd. CA is required; every other field is optional.
type Options struct {
	// CA issues the server's certificate (for 127.0.0.1) and, with ClientAuth, is the
	// authority client certificates must come from.
	CA *testpki.CA
	// ClientAuth requires clients to present a certificate CA issued (gtls AuthMode
	// x509/certvalid); without it any client may send (AuthMode anon).
	ClientAuth bool
	// Binary is the rsyslogd executable; default "rsyslogd" from PATH.
	Binary string
	// Dir holds the configuration, certificates, pid file, work directory, log and the file
	// of received messages; default a new temporary directory, removed by Stop.
	Dir string
	// Port is the port on 127.0.0.1; default a free one.
	Port int
	// MaxMessageSize is the longest message rsyslogd takes, in octets; default 64 KiB.
	MaxMessageSize int
	// StartTimeout bounds the wait for the listener; default 10 s.
	StartTimeout time.Duration
}

// Server is one rsyslogd listening on a loopback port, started by this package as a direct
// child process. Its methods are safe for concurrent use.
type Server struct {
	// Port is the port on 127.0.0.1.
	Port int

	dir     string
	ownDir  bool
	binary  string
	timeout time.Duration

	mu      sync.Mutex
	proc    *childproc.Process
	stopped bool
}

// Start starts rsyslogd as opts describe and waits until it listens; tb is what the
// certificates are made with (testpki fails it when one cannot be). A port taken by someone
// else between choosing and binding it is retried with another port (unless opts.Port names
// one). The server runs until Stop; ctx bounds only the start.
func Start(ctx context.Context, tb testing.TB, opts Options) (*Server, error) {
	if opts.CA == nil {
		return nil, errors.New("start rsyslogd: Options.CA is required")
	}
	s := &Server{dir: opts.Dir, binary: opts.Binary, timeout: opts.StartTimeout}
	if s.binary == "" {
		s.binary = "rsyslogd"
	}
	if s.timeout <= 0 {
		s.timeout = 10 * time.Second
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 64 << 10
	}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "nirproxy-rsyslog-")
		if err != nil {
			return nil, fmt.Errorf("create directory for rsyslogd: %w", err)
		}
		s.dir, s.ownDir = dir, true
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "work"), 0o700); err != nil {
		s.cleanup()
		return nil, fmt.Errorf("create work directory of rsyslogd: %w", err)
	}
	caFile, _ := opts.CA.WriteFiles(tb, s.dir, "ca")
	certFile, keyFile := opts.CA.Server(tb, "127.0.0.1").WriteFiles(tb, s.dir, "server")
	var lastErr error
	for range startAttempts {
		s.Port = opts.Port
		if s.Port == 0 {
			p, err := orthanc.FreePort()
			if err != nil {
				s.cleanup()
				return nil, err
			}
			s.Port = p
		}
		conf := s.config(opts, caFile, certFile, keyFile)
		if err := os.WriteFile(s.ConfigPath(), []byte(conf), 0o600); err != nil {
			s.cleanup()
			return nil, fmt.Errorf("write rsyslogd's configuration: %w", err)
		}
		err := s.launch(ctx)
		if err == nil {
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

// StartT starts a server as Start does, bounded in time, and stops it when tb ends. It calls
// Require first, so a machine without rsyslogd skips (or, when strict, fails) tb loudly.
func StartT(tb testing.TB, opts Options) *Server {
	tb.Helper()
	Require(tb)
	ctx, cancel := context.WithTimeout(context.Background(), tBudget)
	defer cancel()
	s, err := Start(ctx, tb, opts)
	if err != nil {
		tb.Fatalf("start rsyslogd: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stop rsyslogd %s: %v", s.Addr(), err)
		}
	})
	return s
}

// config is rsyslogd's configuration: a TLS listener on the port, every message written to
// ReceivedPath one per line (see the package doc), nothing else (no local sockets, no system
// logs).
func (s *Server) config(opts Options, caFile, certFile, keyFile string) string {
	authMode := "anon"
	if opts.ClientAuth {
		authMode = "x509/certvalid"
	}
	quote := strconv.Quote
	return fmt.Sprintf(`global(
  workDirectory=%s
  maxMessageSize="%d"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile=%s
  defaultNetstreamDriverCertFile=%s
  defaultNetstreamDriverKeyFile=%s
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="%s")
input(type="imtcp" address="127.0.0.1" port="%d")
template(name="fields" type="string"
  string="%%pri%%\t%%protocol-version%%\t%%hostname%%\t%%app-name%%\t%%procid%%\t%%msgid%%\t%%msg%%\n")
action(type="omfile" file=%s template="fields" flushOnTXEnd="on" asyncWriting="off")
`, quote(filepath.Join(s.dir, "work")), opts.MaxMessageSize, quote(caFile), quote(certFile), quote(keyFile),
		authMode, s.Port, quote(s.ReceivedPath()))
}

// name names the server in errors.
func (s *Server) name() string { return "rsyslogd " + s.Addr() }

// launch starts the rsyslogd process and polls until it holds the listening socket of the
// port; it fails when the port is taken, rsyslogd exits, ctx ends or the start timeout passes.
func (s *Server) launch(ctx context.Context) error {
	_ = os.Remove(s.pidPath())
	proc, err := childproc.Start(s.name(), s.dir, s.LogPath(), nil, s.binary,
		"-n", "-f", s.ConfigPath(), "-i", s.pidPath())
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()
	deadline := time.Now().Add(s.timeout)
	for {
		if ok, _ := listensAs(proc.PID(), s.Port); ok {
			return nil
		}
		log := tailLog(s)
		var why error
		switch {
		case strings.Contains(log, "Address already in use"):
			why = errPortTaken
		case proc.Exited():
			why = fmt.Errorf("exited (%v)", proc.ExitErr())
		case ctx.Err() != nil:
			why = ctx.Err()
		case time.Now().After(deadline):
			why = fmt.Errorf("not listening after %v", s.timeout)
		}
		if why != nil {
			_ = proc.Kill()
			return fmt.Errorf("wait for %s: %w; log %s:\n%s", s.name(), why, s.LogPath(), log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// current returns the running (or last) process.
func (s *Server) current() *childproc.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// Addr is the server's "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// PID is the process id of the current rsyslogd.
func (s *Server) PID() int { return s.current().PID() }

// ConfigPath is rsyslogd's configuration file.
func (s *Server) ConfigPath() string { return filepath.Join(s.dir, "rsyslog.conf") }

// LogPath is the file rsyslogd's own output goes to; every restart appends to it.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "rsyslogd.log") }

// ReceivedPath is the file the received messages are written to, one per line; it is kept
// across restarts.
func (s *Server) ReceivedPath() string { return filepath.Join(s.dir, "received.log") }

// pidPath is rsyslogd's pid file.
func (s *Server) pidPath() string { return filepath.Join(s.dir, "rsyslogd.pid") }

// Stop ends rsyslogd (SIGTERM, then SIGKILL after a few seconds), waits until the process has
// gone, and removes the directory if Start created it. Calling it again does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	p, stopped := s.proc, s.stopped
	s.stopped = true
	s.mu.Unlock()
	if stopped {
		return nil
	}
	defer s.cleanup()
	return p.Terminate(stopGrace)
}

// Kill ends rsyslogd at once with SIGKILL and waits until it has gone; its connections
// break. Restart brings a server back on the same port.
func (s *Server) Kill() error { return s.current().Kill() }

// Restart starts rsyslogd again on the same port with the same configuration, killing it
// first if it still runs; what it received is kept. Restart after Stop is an error.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return fmt.Errorf("restart %s: it was stopped", s.name())
	}
	if err := s.Kill(); err != nil {
		return err
	}
	return s.launch(ctx)
}

// cleanup removes the directory if Start created it.
func (s *Server) cleanup() {
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}

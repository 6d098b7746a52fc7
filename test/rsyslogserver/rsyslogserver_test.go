package rsyslogserver_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/test/rsyslogserver"
	"github.com/nirproxy/nirproxy/test/testpki"
)

// send writes one RFC 5424 message, octet-counted, on a new TLS connection to rs that trusts
// ca and presents client, and closes the connection politely.
func send(t *testing.T, rs *rsyslogserver.Server, ca *testpki.CA, client *testpki.Cert, msgID string) {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	if client != nil {
		cfg.Certificates = []tls.Certificate{client.Pair()}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", rs.Addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	msg := "<85>1 2026-12-03T09:30:00.000Z proxy.test nirproxy - " + msgID + " - \xef\xbb\xbfhello\twith a tab"
	if _, err := fmt.Fprintf(c, "%d %s", len(msg), msg); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestServerLifecycle: rsyslogd listens on loopback with TLS, writes what it receives parsed
// as RFC 5424, comes back on the same port after SIGKILL keeping what it received, and leaves
// nothing behind when stopped.
func TestServerLifecycle(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	client := ca.Client(t, "nirproxy")
	rs := rsyslogserver.StartT(t, rsyslogserver.Options{CA: ca, ClientAuth: true})
	addr, pid := rs.Addr(), rs.PID()

	send(t, rs, ca, client, "FIRST")
	msgs := rs.WaitFor(t, 30*time.Second, func(ms []rsyslogserver.Message) bool { return len(ms) == 1 })
	want := rsyslogserver.Message{PRI: "85", Version: "1", Hostname: "proxy.test", AppName: "nirproxy", ProcID: "-", MsgID: "FIRST",
		Msg: []byte("\xef\xbb\xbfhello#011with a tab")}
	if fmt.Sprint(msgs[0]) != fmt.Sprint(want) {
		t.Errorf("received %+v, want %+v", msgs[0], want)
	}

	if err := rs.Kill(); err != nil {
		t.Fatal(err)
	}
	assertProcessGone(t, pid)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := rs.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if rs.Addr() != addr || rs.PID() == pid {
		t.Errorf("after Restart: %s pid %d, want %s and a new process", rs.Addr(), rs.PID(), addr)
	}
	send(t, rs, ca, client, "SECOND")
	msgs = rs.WaitFor(t, 30*time.Second, func(ms []rsyslogserver.Message) bool { return len(ms) == 2 })
	if msgs[1].MsgID != "SECOND" {
		t.Errorf("second message %+v", msgs[1])
	}

	dir, pid := rs.ReceivedPath(), rs.PID()
	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	assertProcessGone(t, pid)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there after Stop (%v)", dir, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s after Stop: %v; an rsyslogd is left behind", addr, err)
	}
	_ = l.Close()
}

// assertProcessGone fails t unless pid no longer exists.
func assertProcessGone(t *testing.T, pid int) {
	t.Helper()
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Fatalf("process %d still exists", pid)
	}
}

package dicomaudit

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/test/testpki"
)

// newTestSink makes a Sink that trusts ca, presents a client certificate of ca, and logs at
// debug level into logs (when not nil).
func newTestSink(t *testing.T, ca *testpki.CA, address string, logs *bytes.Buffer, change func(*SinkOptions)) *Sink {
	t.Helper()
	dir := t.TempDir()
	caFile, _ := ca.WriteFiles(t, dir, "ca")
	certFile, keyFile := ca.Client(t, "nirproxy").WriteFiles(t, dir, "client")
	opts := SinkOptions{
		Name: "atna", Address: address, CAFile: caFile, CertFile: certFile, KeyFile: keyFile, Hostname: "proxy.test",
		DialTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, MaxMessageSize: 32768, Message: testOptions(),
	}
	if change != nil {
		change(&opts)
	}
	if logs == nil {
		logs = &bytes.Buffer{}
	}
	s, err := NewSink(opts, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestSinkWrites: events reach a repository that requires a client certificate as octet-
// counted RFC 5424 messages with the ATNA header and the XML after a byte order mark, and a
// record sent again is the same message byte for byte.
func TestSinkWrites(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	repo := newRepository(t, ca, true, 0)
	s := newTestSink(t, ca, repo.ln.Addr().String(), nil, nil)
	if s.Name() != "atna" {
		t.Errorf("Name = %q, want atna", s.Name())
	}
	e := clinicianRetrieve()
	for range 2 {
		if err := s.Send(t.Context(), record(1, "a"), e); err != nil {
			t.Fatal(err)
		}
	}
	msgs := repo.waitFor(t, 2)
	if !bytes.Equal(msgs[0], msgs[1]) {
		t.Errorf("a record sent twice made two different messages:\n%s\n%s", msgs[0], msgs[1])
	}
	header, body := syslogParts(t, msgs[0])
	want := []string{"<85>1", "2026-12-03T09:30:00.123000Z", "proxy.test", "nirproxy", "-", "IHE+RFC-3881", "-"}
	if strings.Join(header, " ") != strings.Join(want, " ") {
		t.Errorf("header %q, want %q", header, want)
	}
	if !bytes.HasPrefix(body, []byte(`<?xml version="1.0" encoding="UTF-8"?><AuditMessage>`)) {
		t.Errorf("MSG does not start with the XML declaration and AuditMessage: %.80q", body)
	}
	if got := parseXML(t, body); got.EventIdentification.EventID.Code != EventBeginTransferring {
		t.Errorf("EventID %+v", got.EventIdentification.EventID)
	}
	if _, conns, _, _ := repo.received(); conns != 1 {
		t.Errorf("%d connections for two records, want one kept open", conns)
	}
}

// TestFrame: MSG-LEN counts the octets of the message, UTF-8 included.
func TestFrame(t *testing.T) {
	msg := []byte("<85>1 - - nirproxy - IHE+RFC-3881 - " + bom + "<x>é</x>")
	got := frame(msg)
	want := strconv.Itoa(len(msg)) + " " + string(msg)
	if string(got) != want || !strings.HasPrefix(want, "48 ") {
		t.Errorf("frame = %q, want %q", got, want)
	}
}

// TestSinkRedials: when the repository closes the connection (a restart, an idle timeout),
// the next record goes on a new connection and arrives: none is written to the closed one.
func TestSinkRedials(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	repo := newRepository(t, ca, true, 1)
	s := newTestSink(t, ca, repo.ln.Addr().String(), nil, nil)
	for i := range 3 {
		e := clinicianRetrieve()
		e.RequestID = fmt.Sprintf("req-%d", i)
		if err := s.Send(t.Context(), record(uint64(i+1), e.RequestID), e); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		repo.waitFor(t, i+1)
		waitGone(t, s)
	}
	msgs, conns, closed, _ := repo.received()
	if len(msgs) != 3 || conns != 3 || closed != 3 {
		t.Errorf("%d messages on %d connections (%d closed by the repository), want 3 on 3", len(msgs), conns, closed)
	}
	for i, m := range msgs {
		if _, body := syslogParts(t, m); !bytes.Contains(body, []byte(`ParticipantObjectID="req-`+strconv.Itoa(i)+`"`)) {
			t.Errorf("message %d is not req-%d's", i, i)
		}
	}
}

// waitGone waits until the sink has seen the repository close its connection.
func waitGone(t *testing.T, s *Sink) {
	t.Helper()
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return
	}
	select {
	case <-c.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the sink did not see the repository close the connection")
	}
}

// TestSinkTransportFailuresRetry: no listener, an untrusted repository, a cancelled context
// and a repository that stops reading are all ErrRetry, never ErrRejected, and name no patient.
func TestSinkTransportFailuresRetry(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().String()
	_ = l.Close()

	stalled := stalledListener(t, nil)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	cases := []struct {
		name    string
		address string
		ctx     context.Context
		ca      *testpki.CA
	}{
		{"closed port", closedPort, t.Context(), ca},
		{"untrusted repository", newRepository(t, testpki.NewCA(t, "other CA"), false, 0).ln.Addr().String(), t.Context(), ca},
		{"cancelled", newRepository(t, ca, true, 0).ln.Addr().String(), cancelled, ca},
		{"repository not answering", stalled.Addr().String(), t.Context(), ca},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSink(t, tc.ca, tc.address, nil, func(o *SinkOptions) { o.DialTimeout = 300 * time.Millisecond })
			err := s.Send(tc.ctx, record(2, tc.name), clinicianRetrieve())
			if !errors.Is(err, ErrRetry) || errors.Is(err, ErrRejected) || strings.Contains(err.Error(), nhsNumber) {
				t.Errorf("Send = %v, want ErrRetry, not ErrRejected, without the NHS number", err)
			}
		})
	}
}

// stalledListener accepts connections on loopback and never reads them; with a TLS config,
// it completes the handshake first. It holds them until the test ends.
func stalledListener(t *testing.T, cfg *tls.Config) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if cfg != nil {
				tc := tls.Server(c, cfg)
				_ = tc.Handshake()
				c = tc
			}
			held <- c
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		for {
			select {
			case c := <-held:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return l
}

// TestSinkWriteTimeout: a repository that stops reading makes a write fail once the write
// timeout passes, as ErrRetry, and drops the connection; so does a context that ends.
func TestSinkWriteTimeout(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1").Pair()}, MinVersion: tls.VersionTLS12}
	l := stalledListener(t, cfg)
	s := newTestSink(t, ca, l.Addr().String(), nil, func(o *SinkOptions) { o.WriteTimeout = 300 * time.Millisecond })
	// More than the socket buffers on both ends hold.
	huge := make([]byte, 64<<20)
	start := time.Now()
	err := s.writeAll(t.Context(), huge)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("writeAll = %v after %v, want a timeout soon after 300ms", err, time.Since(start))
	}
	if s.conn != nil {
		t.Error("the connection was kept after a failed write")
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	time.AfterFunc(300*time.Millisecond, cancel)
	s.write = time.Minute
	start = time.Now()
	if err := s.writeAll(ctx, huge); !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Errorf("writeAll = %v after %v, want the context's end soon after 300ms", err, time.Since(start))
	}
}

// TestSinkRejects: a record no message can be made of is ErrRejected, and nothing is
// written; a read with no patient is passed over as delivered.
func TestSinkRejects(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	repo := newRepository(t, ca, true, 0)
	s := newTestSink(t, ca, repo.ln.Addr().String(), nil, nil)
	e := clinicianRetrieve()
	e.Action = "delete"
	if err := s.Send(t.Context(), record(3, "unknown"), e); !errors.Is(err, ErrRejected) || !errors.Is(err, ErrIncomplete) {
		t.Errorf("unknown action: %v, want ErrRejected and ErrIncomplete", err)
	}
	e = clinicianRetrieve()
	e.PatientID = ""
	if err := s.Send(t.Context(), record(3, "no patient"), e); err != nil {
		t.Errorf("no patient: %v, want nil", err)
	}
	if msgs, conns, _, _ := repo.received(); len(msgs) != 0 || conns != 0 {
		t.Errorf("%d messages on %d connections, want none", len(msgs), conns)
	}
}

// TestSinkSplits: a record whose message is longer than MaxMessageSize goes as several
// messages, each within it, naming the patient and the request, that share out the studies; one
// that cannot be split is ErrTooLarge, rejected.
func TestSinkSplits(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	repo := newRepository(t, ca, true, 0)
	const max = 3000
	s := newTestSink(t, ca, repo.ln.Addr().String(), nil, func(o *SinkOptions) { o.MaxMessageSize = max })
	e := clinicianRetrieve()
	e.StudyUIDs = nil
	for i := range 40 {
		e.StudyUIDs = append(e.StudyUIDs, fmt.Sprintf("1.2.826.0.1.3680043.8.498.%d", i))
	}
	parts, err := s.messages(e)
	if err != nil || len(parts) < 2 {
		t.Fatalf("%d messages (%v), want the record split", len(parts), err)
	}
	if err := s.Send(t.Context(), record(4, "many"), e); err != nil {
		t.Fatal(err)
	}
	msgs := repo.waitFor(t, len(parts))
	var studies []string
	for _, m := range msgs {
		if len(m) > max {
			t.Errorf("a message of %d octets, more than %d", len(m), max)
		}
		_, body := syslogParts(t, m)
		got := parseXML(t, body)
		if len(objectsOfType(got, "2")) != 1 || len(objectsOfType(got, "XrequestId")) != 1 {
			t.Errorf("a part without the patient or the request")
		}
		for _, po := range objectsOfType(got, "110180") {
			studies = append(studies, po.ParticipantObjectID)
		}
	}
	if strings.Join(studies, ",") != strings.Join(e.StudyUIDs, ",") {
		t.Errorf("the parts name studies %v, want %v in order", studies, e.StudyUIDs)
	}

	e.StudyUIDs = e.StudyUIDs[:1]
	e.Reason = strings.Repeat("x", max)
	if err := s.Send(t.Context(), record(5, "too large"), e); !errors.Is(err, ErrRejected) || !errors.Is(err, ErrTooLarge) {
		t.Errorf("an unsplittable message: %v, want ErrRejected and ErrTooLarge", err)
	}
}

// TestSinkNamesNoPatient: the sink's log lines and errors never name the patient.
func TestSinkNamesNoPatient(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	repo := newRepository(t, ca, true, 1)
	var logs bytes.Buffer
	s := newTestSink(t, ca, repo.ln.Addr().String(), &logs, nil)
	var errs []string
	for i, change := range []func(*audit.Event){
		func(*audit.Event) {},
		func(e *audit.Event) { e.PatientID = "" },
		func(e *audit.Event) { e.Outcome = "maybe" },
		func(*audit.Event) {},
	} {
		e := clinicianRetrieve()
		change(&e)
		if err := s.Send(t.Context(), record(uint64(i), "x"), e); err != nil {
			errs = append(errs, err.Error())
		}
		waitGone(t, s)
	}
	if logs.Len() == 0 || len(errs) == 0 {
		t.Fatalf("logs %q and errors %q: want some of each", logs.String(), errs)
	}
	if all := logs.String() + strings.Join(errs, "\n"); strings.Contains(all, nhsNumber) {
		t.Errorf("the NHS number is in the sink's logs or errors:\n%s", all)
	}
}

// TestNewSink: options that cannot work are refused at start-up, naming the field.
func TestNewSink(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	caFile, _ := ca.WriteFiles(t, dir, "ca")
	certFile, keyFile := ca.Client(t, "nirproxy").WriteFiles(t, dir, "client")
	good := SinkOptions{Name: "atna", Address: "atna.test:6514", CAFile: caFile, CertFile: certFile, KeyFile: keyFile, Hostname: "proxy.test",
		DialTimeout: time.Second, WriteTimeout: 2 * time.Second, MaxMessageSize: 9000, Message: testOptions()}
	for _, tc := range []struct {
		name   string
		change func(*SinkOptions)
		says   string
	}{
		{"no address", func(o *SinkOptions) { o.Address = "" }, "Address"},
		{"no port", func(o *SinkOptions) { o.Address = "atna.test" }, "Address"},
		{"no source", func(o *SinkOptions) { o.Message.SourceID = "" }, "SourceID"},
		{"missing CA file", func(o *SinkOptions) { o.CAFile = filepath.Join(dir, "none.pem") }, "CAFile"},
		{"CA file not PEM", func(o *SinkOptions) { o.CAFile = keyFile + ".none" }, "CAFile"},
		{"cert without key", func(o *SinkOptions) { o.KeyFile = "" }, "KeyFile"},
		{"key of another cert", func(o *SinkOptions) { _, o.KeyFile = ca.WriteFiles(t, dir, "other") }, "KeyFile"},
		{"hostname with a space", func(o *SinkOptions) { o.Hostname = "proxy test" }, "Hostname"},
		{"negative size", func(o *SinkOptions) { o.MaxMessageSize = -1 }, "MaxMessageSize"},
		{"no size", func(o *SinkOptions) { o.MaxMessageSize = 0 }, "MaxMessageSize"},
		{"no name", func(o *SinkOptions) { o.Name = "" }, "Name"},
		{"no dial timeout", func(o *SinkOptions) { o.DialTimeout = 0 }, "DialTimeout"},
		{"no write timeout", func(o *SinkOptions) { o.WriteTimeout = 0 }, "WriteTimeout"},
	} {
		opts := good
		tc.change(&opts)
		if _, err := NewSink(opts, nil); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.says)
		}
	}
	s, err := NewSink(good, nil)
	if err != nil || s.tls.ServerName != "atna.test" || s.name != "atna" || s.maxSize != 9000 || s.dial != time.Second || s.write != 2*time.Second {
		t.Errorf("NewSink = %+v, %v; want the options given and the server name from Address", s, err)
	}
}

// TestPeek: the kernel's view of a connection: nothing to read, bytes waiting, and the end
// the peer closed it with, which stays an end once read.
func TestPeek(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("peek asks the kernel only on Linux")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ours, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	theirs, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	waitPeek := func(want peekResult) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); peek(ours) != want; {
			if time.Now().After(deadline) {
				t.Fatalf("peek = %v, want %v", peek(ours), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitPeek(peekEmpty)
	if _, err := theirs.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitPeek(peekPending)
	if _, err := io.ReadFull(ours, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	waitPeek(peekEmpty)
	_ = theirs.Close()
	waitPeek(peekClosed)
	if _, err := ours.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the peer closed: %v, want EOF", err)
	}
	waitPeek(peekClosed)
}

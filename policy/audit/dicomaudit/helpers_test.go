package dicomaudit

import (
	"bufio"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/test/auditevents"
	"github.com/nirproxy/nirproxy/test/auditschema"
	"github.com/nirproxy/nirproxy/test/testpki"
)

// The sinks' tests map the same access (test/auditevents).
var (
	record            = auditevents.Record
	clinicianRetrieve = auditevents.ClinicianRetrieve
)

const (
	nhsNumber = auditevents.NHSNumber
	cis2      = auditevents.CIS2
	studyUID  = auditevents.StudyUID
)

// testOptions are the options of a nirproxy named nirproxy@proxy.test, AE NIRPROXY.
func testOptions() Options {
	return Options{SourceID: "nirproxy@proxy.test", SiteID: "RR8", AETitle: "NIRPROXY", NetworkAddress: "proxy.test"}
}

// parse marshals m, checks it against the schema, and reads it back.
func parse(t *testing.T, m *AuditMessage) AuditMessage {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return parseXML(t, b)
}

// parseXML checks an encoded message against the schema and reads it.
func parseXML(t *testing.T, b []byte) AuditMessage {
	t.Helper()
	if err := auditschema.Check(b); err != nil {
		t.Fatalf("not a valid DICOM audit message: %v\n%s", err, b)
	}
	var back AuditMessage
	if err := xml.Unmarshal(b, &back); err != nil {
		t.Fatalf("read back: %v\n%s", err, b)
	}
	return back
}

// objectsOfType are the participant objects whose ID type is code.
func objectsOfType(m AuditMessage, code string) []ParticipantObject {
	var out []ParticipantObject
	for _, po := range m.ParticipantObjects {
		if po.ParticipantObjectIDTypeCode.Code == code {
			out = append(out, po)
		}
	}
	return out
}

// participantWithRole is the active participant with the given role code, if one has it.
func participantWithRole(m AuditMessage, code string) (ActiveParticipant, bool) {
	for _, ap := range m.ActiveParticipants {
		for _, r := range ap.RoleIDCodes {
			if r.Code == code {
				return ap, true
			}
		}
	}
	return ActiveParticipant{}, false
}

// requestors are the participants marked as the requestor.
func requestors(m AuditMessage) []ActiveParticipant {
	var out []ActiveParticipant
	for _, ap := range m.ActiveParticipants {
		if ap.UserIsRequestor {
			out = append(out, ap)
		}
	}
	return out
}

// fakeRepository is an ATNA repository's syslog-over-TLS listener on loopback that keeps the
// messages it reads. closeAfter, when positive, makes it close each connection after reading
// that many messages.
type fakeRepository struct {
	ln         net.Listener
	closeAfter int

	mu       sync.Mutex
	messages [][]byte
	conns    int
	closed   int // connections it has closed
	errs     []error
}

// newRepository starts a repository whose certificate ca issued for 127.0.0.1, which asks
// for a client certificate of ca when clientCA is set.
func newRepository(t *testing.T, ca *testpki.CA, clientCA bool, closeAfter int) *fakeRepository {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1").Pair()}, MinVersion: tls.VersionTLS12}
	if clientCA {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool()
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRepository{ln: ln, closeAfter: closeAfter}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { r.serve(c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return r
}

// serve reads octet-counted messages from c until it ends or closeAfter is reached.
func (r *fakeRepository) serve(c net.Conn) {
	defer c.Close()
	r.mu.Lock()
	r.conns++
	r.mu.Unlock()
	br := bufio.NewReader(c)
	for n := 1; ; n++ {
		msg, err := readFrame(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.mu.Lock()
				r.errs = append(r.errs, err)
				r.mu.Unlock()
			}
			return
		}
		r.mu.Lock()
		r.messages = append(r.messages, msg)
		r.mu.Unlock()
		if n == r.closeAfter {
			_ = c.Close()
			r.mu.Lock()
			r.closed++
			r.mu.Unlock()
			return
		}
	}
}

// readFrame reads one "MSG-LEN SP SYSLOG-MSG" frame.
func readFrame(br *bufio.Reader) ([]byte, error) {
	lenText, err := br.ReadString(' ')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSuffix(lenText, " "))
	if err != nil || n <= 0 {
		return nil, fmt.Errorf("bad MSG-LEN %q", lenText)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(br, msg); err != nil {
		return nil, fmt.Errorf("read a message of %d octets: %w", n, err)
	}
	return msg, nil
}

// received are the messages so far, the connections accepted, and those it closed.
func (r *fakeRepository) received() (msgs [][]byte, conns, closed int, errs []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.messages...), r.conns, r.closed, append([]error(nil), r.errs...)
}

// waitFor waits until the repository has n messages, failing t after a few seconds.
func (r *fakeRepository) waitFor(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs, _, _, errs := r.received()
		if len(errs) > 0 {
			t.Fatalf("the repository could not read: %v", errs)
		}
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("the repository has %d messages after 10s, want %d", len(msgs), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syslogParts splits a SYSLOG-MSG as this package writes it into its header fields and its
// MSG (after the byte order mark).
func syslogParts(t *testing.T, msg []byte) (header []string, body []byte) {
	t.Helper()
	fields := strings.SplitN(string(msg), " ", 8)
	if len(fields) != 8 || !strings.HasPrefix(fields[7], bom) {
		t.Fatalf("not an RFC 5424 message with a UTF-8 MSG: %q", msg)
	}
	return fields[:7], []byte(strings.TrimPrefix(fields[7], bom))
}

package rsyslogserver

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Message is one message rsyslogd received, as its RFC 5424 parser read it.
type Message struct {
	// PRI is the priority, e.g. "85"; Version the protocol version ("1" for RFC 5424, "0" when
	// rsyslogd could not parse the message as RFC 5424).
	PRI     string
	Version string
	// Hostname, AppName, ProcID and MsgID are the header fields ("-" when absent).
	Hostname string
	AppName  string
	ProcID   string
	MsgID    string
	// Msg is the MSG part as rsyslogd wrote it, control characters escaped.
	Msg []byte
}

// Received reads the messages received so far. A last line that rsyslogd is still writing is
// left for the next call.
func (s *Server) Received() ([]Message, error) {
	b, err := os.ReadFile(s.ReceivedPath())
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the messages %s received: %w", s.name(), err)
	}
	var out []Message
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		line := string(b[:i])
		b = b[i+1:]
		f := strings.SplitN(line, "\t", 7)
		if len(f) != 7 {
			return nil, fmt.Errorf("a line of %s is not 7 tab-separated fields: %q", s.ReceivedPath(), line)
		}
		out = append(out, Message{PRI: f[0], Version: f[1], Hostname: f[2], AppName: f[3], ProcID: f[4], MsgID: f[5], Msg: []byte(f[6])})
	}
	return out, nil
}

// WaitFor reads the received messages until done says they are all there, polling every few
// milliseconds (rsyslogd writes the file; there is nothing to wait on but its growth), and
// returns them. It fails tb after within, or at once when the file cannot be read or rsyslogd
// has exited.
func (s *Server) WaitFor(tb testing.TB, within time.Duration, done func([]Message) bool) []Message {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		msgs, err := s.Received()
		if err != nil {
			tb.Fatal(err)
		}
		if done(msgs) {
			return msgs
		}
		if s.current().Exited() {
			tb.Fatalf("%s exited with %d messages received; log:\n%s", s.name(), len(msgs), tailLog(s))
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %d messages received after %v, not yet what the test waits for; log:\n%s",
				s.name(), len(msgs), within, tailLog(s))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

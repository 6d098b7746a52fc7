package dicomaudit

import (
	"fmt"
	"strconv"
	"time"
)

// The fixed parts of the syslog messages (IHE ITI-20 over RFC 5424).
const (
	// Priority is facility 10 (security/authorization) times 8 plus severity 5 (notice).
	Priority = 10*8 + 5
	// AppName is the APP-NAME of every message.
	AppName = "nirproxy"
	// MsgID is the MSGID IHE ATNA (ITI-20) sets for DICOM audit messages.
	MsgID = "IHE+RFC-3881"
	// MinMessageSize is the least SinkOptions.MaxMessageSize the configuration accepts, in
	// octets (rsyslog's default limit), so that one study's message always fits. DICOM (A.6)
	// and IHE require every receiver to accept 32768.
	MinMessageSize = 8192
)

// bom is the Unicode byte order mark RFC 5424 puts before a MSG in UTF-8.
const bom = "\xef\xbb\xbf"

// syslogMessage is the RFC 5424 SYSLOG-MSG that carries the XML msg, stamped with t:
// "<85>1 TIMESTAMP HOSTNAME nirproxy - IHE+RFC-3881 - BOM MSG". There is no PROCID or
// structured data. hostname must be a valid HOSTNAME (checkHeaderField) or "".
func syslogMessage(t time.Time, hostname string, msg []byte) []byte {
	if hostname == "" {
		hostname = "-"
	}
	b := make([]byte, 0, 96+len(hostname)+len(msg))
	b = fmt.Appendf(b, "<%d>1 %s %s %s - %s - %s", Priority,
		t.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), hostname, AppName, MsgID, bom)
	return append(b, msg...)
}

// frame is msg with RFC 5425's octet-counting framing: "MSG-LEN SP SYSLOG-MSG".
func frame(msg []byte) []byte {
	b := strconv.AppendInt(make([]byte, 0, len(msg)+8), int64(len(msg)), 10)
	b = append(b, ' ')
	return append(b, msg...)
}

// checkHeaderField reports whether s may be the header field named what, of at most max
// characters: RFC 5424 allows printable US-ASCII without spaces, and "-" means none.
func checkHeaderField(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d characters long; RFC 5424 allows %d", what, len(s), max)
	}
	for i := range len(s) {
		if s[i] < 33 || s[i] > 126 {
			return fmt.Errorf("%s %q has a character RFC 5424 does not allow (printable US-ASCII only, no spaces)", what, s)
		}
	}
	return nil
}

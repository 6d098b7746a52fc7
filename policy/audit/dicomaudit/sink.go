package dicomaudit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/forward"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// The classes of a failed Send. ErrRetry is a failure that may pass (no connection, a
// handshake or write that failed or timed out): the forwarder sends the record again later.
// ErrRejected is forward.ErrRejected, for a record that no message can be made of (an
// unknown action, a message too long to send): sending it again will not help. A transport
// failure is never ErrRejected.
var (
	ErrRetry    = errors.New("ATNA audit repository unavailable")
	ErrRejected = forward.ErrRejected
)

// ErrTooLarge is a message longer than SinkOptions.MaxMessageSize that cannot be split
// further (it names one study, or none).
var ErrTooLarge = errors.New("DICOM audit message too large")

// SinkOptions configure a Sink. The package has no defaults of its own (the configuration
// holds them): NewSink refuses a required field left zero, naming it.
type SinkOptions struct {
	// Name is the sink's name: its spool cursor's, and in its errors. Required.
	Name string
	// Address is the repository's syslog-over-TLS listener, host:port (RFC 5425's port is
	// 6514). Required.
	Address string
	// CAFile is a PEM bundle of the certificate authorities that may sign the repository's
	// certificate; "" trusts the system's roots.
	CAFile string
	// CertFile and KeyFile are nirproxy's client certificate and its key, in PEM, for a
	// repository that authenticates its senders (IHE ATNA's node authentication). Both or
	// neither.
	CertFile string
	KeyFile  string
	// ServerName is the name the repository's certificate must carry; "" is Address's host.
	ServerName string
	// Hostname is the HOSTNAME of the syslog header, this machine's name as the repository
	// should know it (a fully qualified domain name, or an IP address); "" is os.Hostname.
	Hostname string
	// DialTimeout bounds connecting and the TLS handshake. Required.
	DialTimeout time.Duration
	// WriteTimeout bounds writing one record's messages. Required.
	WriteTimeout time.Duration
	// MaxMessageSize is the longest syslog message (SYSLOG-MSG, in octets) sent; a longer one
	// is split between messages that share its studies, and a record whose message for one
	// study is longer is ErrTooLarge. Required; the configuration asks for at least
	// MinMessageSize. DICOM (A.6) and IHE require every receiver to accept 32768, and the
	// repository must accept the size set (rsyslog needs maxMessageSize raised from its 8 KiB
	// default for more).
	MaxMessageSize int
	// Message is how events are mapped.
	Message Options
}

// Sink sends audit events to an IHE ATNA audit record repository as DICOM audit messages in
// RFC 5424 syslog over TLS (RFC 5425), on one connection that it dials when it first needs
// it and again after it fails. It is safe for concurrent use; sends are serialised on the
// connection. The package doc says what its nil error promises, and what it cannot.
type Sink struct {
	name     string
	address  string
	tls      *tls.Config
	hostname string
	dial     time.Duration
	write    time.Duration
	maxSize  int
	message  Options
	log      *slog.Logger

	mu     sync.Mutex // guards conn, and serialises writes
	conn   *connection
	closed bool
}

// connection is one TLS connection to the repository, with a goroutine that reads it to
// learn at once when the repository closes it (a syslog receiver sends nothing).
type connection struct {
	tls  *tls.Conn
	gone chan struct{} // closed once the connection cannot be read from any more
}

// The results of peek.
type peekResult int

const (
	peekEmpty peekResult = iota
	peekPending
	peekClosed
)

// pendingWait bounds how long closedByPeer lets the background reader consume bytes the
// repository sent (TLS session tickets after the handshake, or the close_notify alert before
// it closes).
const pendingWait = 100 * time.Millisecond

// closedByPeer reports whether the repository has closed the connection, as far as this
// machine's kernel knows. The background reader learns of it as soon as it is scheduled; the
// kernel is asked too (peek), so that an end that arrived just before a write is not missed
// for want of the reader having run. Bytes the reader has not consumed (a syslog receiver
// sends none but TLS's own) are given pendingWait to be consumed; should they not be, the
// connection counts as closed, which costs a new connection and never a record.
func (c *connection) closedByPeer() bool {
	deadline := time.Now().Add(pendingWait)
	for {
		select {
		case <-c.gone:
			return true
		default:
		}
		switch peek(c.tls.NetConn()) {
		case peekEmpty:
			return false
		case peekClosed:
			return true
		}
		if time.Now().After(deadline) {
			return true
		}
		time.Sleep(time.Millisecond)
	}
}

// checkLimits reports the first of the name, timeouts and message size that is missing or
// wrong, by its field's name.
func (o SinkOptions) checkLimits() error {
	switch {
	case o.Name == "":
		return errors.New("dicomaudit sink: Name is not set: name the sink's spool cursor, like atna")
	case o.DialTimeout <= 0:
		return fmt.Errorf("dicomaudit sink: DialTimeout is %v; set how long connecting may take, like 10s", o.DialTimeout)
	case o.WriteTimeout <= 0:
		return fmt.Errorf("dicomaudit sink: WriteTimeout is %v; set how long writing a record may take, like 10s", o.WriteTimeout)
	case o.MaxMessageSize <= 0:
		return fmt.Errorf("dicomaudit sink: MaxMessageSize is %d; set the longest message the repository accepts, like 32768",
			o.MaxMessageSize)
	}
	return nil
}

// NewSink checks opts, loads the certificates they name, and makes a Sink; log gets a debug
// line per record (its sequence number, never a patient's identifier) and may be nil. It does
// not connect.
func NewSink(opts SinkOptions, log *slog.Logger) (*Sink, error) {
	if err := opts.Message.Validate(); err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(opts.Address)
	if err != nil || host == "" {
		return nil, fmt.Errorf("dicomaudit sink: Address %q is not host:port: set the repository's syslog-TLS listener, e.g. atna.example.nhs.uk:6514", opts.Address)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: opts.ServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("dicomaudit sink: read CAFile: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("dicomaudit sink: CAFile %s holds no PEM certificate", opts.CAFile)
		}
	}
	switch {
	case (opts.CertFile == "") != (opts.KeyFile == ""):
		return nil, errors.New("dicomaudit sink: set both CertFile and KeyFile for a client certificate, or neither")
	case opts.CertFile != "":
		pair, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("dicomaudit sink: load CertFile and KeyFile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	hostname := opts.Hostname
	if hostname == "" {
		if hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("dicomaudit sink: Hostname is empty and the machine's cannot be read: %w", err)
		}
	}
	if err := checkHeaderField("dicomaudit sink: Hostname", hostname, 255); err != nil {
		return nil, err
	}
	if err := opts.checkLimits(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{
		name: opts.Name, address: opts.Address, tls: cfg, hostname: hostname,
		dial: opts.DialTimeout, write: opts.WriteTimeout,
		maxSize: opts.MaxMessageSize, message: opts.Message, log: log,
	}
	return s, nil
}

// Name is the sink's name.
func (s *Sink) Name() string { return s.name }

// Send writes the DICOM audit message of the event e of the spool record rec to the
// repository: usually one syslog message, several when it would be longer than
// MaxMessageSize. It returns nil once every byte of them is written to a connection the
// repository had not closed, and nil without sending for a read that names no patient.
// Otherwise its error wraps ErrRetry (the connection failed; it is closed and dialled again
// by the next Send) or ErrRejected (no message can be made of e). Errors name no patient.
func (s *Sink) Send(ctx context.Context, rec spool.Record, e audit.Event) error {
	msgs, err := s.messages(e)
	switch {
	case errors.Is(err, ErrNoPatient):
		s.log.Debug("audit record names no patient: no DICOM audit message", "sink", s.name, "seq", rec.Seq)
		return nil
	case err != nil:
		return fmt.Errorf("deliver audit record %d to %s: %w: %w", rec.Seq, s.name, ErrRejected, err)
	}
	var payload []byte
	for _, m := range msgs {
		payload = append(payload, frame(m)...)
	}
	if err := s.writeAll(ctx, payload); err != nil {
		return fmt.Errorf("deliver audit record %d to %s: %w: %w", rec.Seq, s.name, ErrRetry, err)
	}
	s.log.Debug("audit record written", "sink", s.name, "seq", rec.Seq, "messages", len(msgs), "octets", len(payload))
	return nil
}

// Close closes the connection, telling the repository with TLS's close_notify (which may
// take a few seconds when the repository has stopped reading); a Send after it fails.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn == nil {
		return nil
	}
	err := s.conn.tls.Close()
	s.conn = nil
	if err != nil {
		return fmt.Errorf("close the connection to %s: %w", s.address, err)
	}
	return nil
}

// messages are the syslog messages of e, each at most maxSize octets: one, or as many as
// sharing the studies between them takes.
func (s *Sink) messages(e audit.Event) ([][]byte, error) {
	m, err := Message(e, s.message)
	if err != nil {
		return nil, err
	}
	return s.within(m, e)
}

// within is m as one syslog message, or split in two and each half again until every
// message fits in maxSize.
func (s *Sink) within(m *AuditMessage, e audit.Event) ([][]byte, error) {
	body, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	msg := syslogMessage(e.Time, s.hostname, body)
	if len(msg) <= s.maxSize {
		return [][]byte{msg}, nil
	}
	first, second, ok := m.splitStudies()
	if !ok {
		return nil, fmt.Errorf("%w: %d octets, more than MaxMessageSize (%d), with one study or none to share out",
			ErrTooLarge, len(msg), s.maxSize)
	}
	a, err := s.within(first, e)
	if err != nil {
		return nil, err
	}
	b, err := s.within(second, e)
	if err != nil {
		return nil, err
	}
	return append(a, b...), nil
}

// writeAll writes b to the connection, dialling one first when there is none or the
// repository closed it, within the write timeout and ctx. A failed write closes the
// connection.
func (s *Sink) writeAll(ctx context.Context, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("the sink is closed")
	}
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(s.write)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.tls.SetWriteDeadline(deadline); err != nil {
		s.drop()
		return fmt.Errorf("set write deadline: %w", err)
	}
	// A cancelled ctx ends a blocked write at once.
	stop := context.AfterFunc(ctx, func() { _ = c.tls.SetWriteDeadline(time.Now()) })
	_, err = c.tls.Write(b)
	stop()
	if err != nil {
		// A TLS connection whose write failed cannot be written again.
		s.drop()
		if ctx.Err() != nil {
			return fmt.Errorf("write to %s: %w (%w)", s.address, ctx.Err(), err)
		}
		return fmt.Errorf("write to %s: %w", s.address, err)
	}
	return nil
}

// connect returns the open connection, or dials a new one when there is none or the
// repository has closed it. s.mu is held.
func (s *Sink) connect(ctx context.Context) (*connection, error) {
	if s.conn != nil {
		if !s.conn.closedByPeer() {
			return s.conn, nil
		}
		s.log.Debug("audit repository closed the connection; dialling again", "sink", s.name)
		s.drop()
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: s.dial}, Config: s.tls}
	ctx, cancel := context.WithTimeout(ctx, s.dial)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", s.address)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.address, err)
	}
	c := &connection{tls: nc.(*tls.Conn), gone: make(chan struct{})}
	go func() {
		// Whatever the repository sends is dropped; the read ends when it closes the
		// connection, or when drop does.
		_, _ = io.Copy(io.Discard, c.tls)
		close(c.gone)
	}()
	s.conn = c
	s.log.Debug("connected to the audit repository", "sink", s.name, "address", s.address)
	return c, nil
}

// drop closes the connection, if there is one, without the TLS close_notify alert: after a
// failure the alert cannot be sent, and trying blocks for seconds on a peer that stopped
// reading. s.mu is held.
func (s *Sink) drop() {
	if s.conn == nil {
		return
	}
	_ = s.conn.tls.NetConn().Close()
	s.conn = nil
}

package config

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/dicomaudit"
	"github.com/nirproxy/nirproxy/policy/audit/fhir"
	"github.com/nirproxy/nirproxy/policy/audit/forward"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// Audit says where the patient audit record is kept: a spool of hash-chained, fsynced segments
// (package policy/audit/spool) that every access is appended to before its answer is sent.
type Audit struct {
	// SpoolDir is the spool's directory, created (mode 0700) when missing; a relative path is
	// taken from the config file's directory. One nirproxy process may use it at a time: give
	// each replica its own. Required: nirproxy answers nothing it cannot record.
	SpoolDir string `yaml:"spoolDir"`
	// SegmentBytes is the size a segment file grows to before the next is started: from 1 MiB
	// to 1 GiB. Default 64 MiB.
	SegmentBytes int `yaml:"segmentBytes"`
	// MaxBytes bounds the spool on disk. When it is reached every data request is refused
	// (503) rather than a record dropped, until forwarded records are removed. At least
	// SegmentBytes. Default 10 GiB.
	MaxBytes int `yaml:"maxBytes"`
	// Retention is how long the spool keeps a record once every sink (PARS, ATNA) has it: the
	// spool is the local buffer, and the sinks hold the long-term record. A segment whose every
	// record is older and acknowledged by every sink is deleted, leaving a checkpoint signed
	// with checkpointKey so the chain still verifies; a sink that is down holds back what it
	// lacks, however old. Without a sink nothing is deleted: the spool holds the only copy. 0
	// keeps everything (until maxBytes turns requests away). Otherwise 24h to 87600h (ten
	// years). Default 720h (30 days).
	Retention Duration `yaml:"retention"`
	// RetentionInterval is how often retention runs: at most this long after a segment may go,
	// it goes, and a full spool takes records again. From 1m to retention. Default 1h.
	RetentionInterval Duration `yaml:"retentionInterval"`
	// CheckpointKey is the Ed25519 private key, in PEM (PKCS#8, as `openssl genpkey -algorithm
	// ed25519` writes it), that signs retention's checkpoints; CheckpointKeyFile names a file
	// holding it. `nirproxy audit verify --key` checks the checkpoint with its public half.
	// Required when retention is on and a sink is configured. Default none.
	CheckpointKey     Secret `yaml:"checkpointKey"`
	CheckpointKeyFile string `yaml:"checkpointKeyFile"`
	// TrustedCheckpointKeys are the fingerprints (SHA-256 of the public key's DER, in hex, as
	// `nirproxy audit verify` prints them) of earlier checkpoint keys: serve refuses a spool
	// whose checkpoint another key signed unless its fingerprint is here, so that a checkpoint
	// forged to hide deleted records is not continued and re-signed. Add the old key's
	// fingerprint when changing checkpointKey. Default none.
	TrustedCheckpointKeys []string `yaml:"trustedCheckpointKeys"`
	// Forward tunes the delivery of records to the sinks (PARS).
	Forward AuditForward `yaml:"forward"`
	// PARS is the national Patient Audit Record Service (a FHIR R4 server) the records are sent
	// to as AuditEvents. Without a url, records are kept in the spool only.
	PARS PARS `yaml:"pars"`
	// ATNA is an IHE ATNA audit record repository the records are sent to as DICOM audit
	// messages (PS3.15 A.5) over TLS syslog. Without an address, none are sent.
	ATNA ATNA `yaml:"atna"`
}

// ATNA configures the DICOM audit message sink: RFC 5424 syslog over TLS (RFC 5425).
type ATNA struct {
	// Address is the repository's syslog-over-TLS listener, host:port (usually port 6514).
	// Default none.
	Address string `yaml:"address"`
	// TLS verifies the repository (caFile, serverName) and presents certFile and keyFile for
	// node authentication, as a source's tls does.
	TLS SourceTLS `yaml:"tls"`
	// Hostname is this machine's name in the syslog header. Default: the host's name.
	Hostname string `yaml:"hostname"`
	// SourceID names this nirproxy as the audit source (AuditSourceIdentification). Required
	// with an address.
	SourceID string `yaml:"sourceId"`
	// SiteID is the enterprise site the source belongs to. Optional.
	SiteID string `yaml:"siteId"`
	// AETitle is nirproxy's DICOM AE title, when the repository knows it by one. Optional.
	AETitle string `yaml:"aeTitle"`
	// DialTimeout bounds connecting and the TLS handshake. Default 10s.
	DialTimeout Duration `yaml:"dialTimeout"`
	// MaxMessageSize is the longest message sent, in bytes; a longer one is split between
	// messages sharing its studies. The repository must accept it. Default 32768.
	MaxMessageSize int `yaml:"maxMessageSize"`
}

// AuditForward tunes how records are delivered to each sink: at least once, in order, from
// the spool, never holding up a request.
type AuditForward struct {
	// MinBackoff and MaxBackoff bound the wait between attempts at a record a sink failed to
	// take: it doubles from MinBackoff up to MaxBackoff. Default 1s and 1m.
	MinBackoff Duration `yaml:"minBackoff"`
	MaxBackoff Duration `yaml:"maxBackoff"`
	// SendTimeout bounds one delivery. Default 30s.
	SendTimeout Duration `yaml:"sendTimeout"`
	// RejectAttempts is how many times a record the sink refuses outright (a 4xx) is offered
	// before the sink stops at it and an incident is raised: the record stays in the spool for
	// an operator. Default 3.
	RejectAttempts int `yaml:"rejectAttempts"`
	// MaxLag and MaxLagAge raise an incident (log, metric, webhook) when a sink is this many
	// records, or this long, behind. Default 10000 and 15m.
	MaxLag    int      `yaml:"maxLag"`
	MaxLagAge Duration `yaml:"maxLagAge"`
	// AckEvery and AckInterval batch the writes of a sink's cursor (two fsyncs each): it is
	// written once ackEvery delivered records wait, or ackInterval after the first of them,
	// and at shutdown. A crash re-sends at most these records (the sinks de-duplicate them by
	// id). Default 1000 and 1s.
	AckEvery    int      `yaml:"ackEvery"`
	AckInterval Duration `yaml:"ackInterval"`
	// MaxInFlight is how many AuditEvents may be posted to PARS at once. The ATNA sink writes
	// one connection in order and takes one at a time. Default 8.
	MaxInFlight int `yaml:"maxInFlight"`
}

// PARS configures the FHIR AuditEvent sink.
type PARS struct {
	// URL is the FHIR base URL: AuditEvents are POSTed to URL/AuditEvent. Default none (no
	// forwarding).
	URL string `yaml:"url"`
	// Token is the bearer token sent; TokenFile names a file holding it.
	Token     Secret `yaml:"token"`
	TokenFile string `yaml:"tokenFile"`
	// TLS verifies the server (caFile) and presents a client certificate (certFile, keyFile)
	// for mutual TLS, as a source's tls does.
	TLS SourceTLS `yaml:"tls"`
	// Put sends each AuditEvent by PUT to URL/AuditEvent/{id}, which de-duplicates a re-sent
	// record on any server that accepts client ids. Default false: POST, as PARS specifies.
	Put bool `yaml:"put"`
	// ObserverSystem and Observer identify this nirproxy as the source of the records
	// (source.observer), such as https://fhir.nhs.uk/Id/accredited-system and its ASID.
	// Observer is required with a url.
	ObserverSystem string `yaml:"observerSystem"`
	Observer       string `yaml:"observer"`
	// SystemIDSystem is the identifier system of calling systems' ids. Default
	// https://fhir.nhs.uk/Id/product-id.
	SystemIDSystem string `yaml:"systemIdSystem"`
}

// The bounds of audit.segmentBytes, audit.retention and audit.retentionInterval.
const (
	minSegmentBytes   = 1 << 20
	maxSegmentBytes   = 1 << 30
	minRetention      = 24 * time.Hour
	maxRetention      = 87600 * time.Hour
	minRetentionEvery = time.Minute
)

// The names of the sinks, which name their cursors in the spool.
const (
	parsSinkName = "pars"
	atnaSinkName = "atna"
)

// SinkNames are the names of the sinks the audit section configures, each with its cursor in
// the spool: retention deletes only what all of them have acknowledged.
func (a Audit) SinkNames() []string {
	var names []string
	if a.PARS.URL != "" {
		names = append(names, parsSinkName)
	}
	if a.ATNA.Address != "" {
		names = append(names, atnaSinkName)
	}
	return names
}

// Prunes reports whether retention deletes records: it is on and there is a sink.
func (a Audit) Prunes() bool { return a.Retention > 0 && len(a.SinkNames()) > 0 }

// RetentionKey is audit.checkpointKey, parsed.
func (a Audit) RetentionKey() (ed25519.PrivateKey, error) {
	return spool.ParsePrivateKey([]byte(a.CheckpointKey))
}

// checkRetention checks audit.retention, retentionInterval, checkpointKey and
// trustedCheckpointKeys.
func checkRetention(ps *Problems, a Audit) {
	for i, fp := range a.TrustedCheckpointKeys {
		if len(fp) != 64 || strings.Trim(fp, "0123456789abcdef") != "" {
			ps.add(fmt.Sprintf("audit.trustedCheckpointKeys[%d]", i), "is %q; write a key's fingerprint as `nirproxy audit verify` prints it: 64 lower-case hexadecimal digits", fp)
		}
	}
	r := a.Retention.Std()
	if r < 0 || r > 0 && (r < minRetention || r > maxRetention) {
		ps.add("audit.retention", "is %s; use 0 to keep everything, or %s to %s, like 720h (30 days)", a.Retention, minRetention, maxRetention)
		return
	}
	if r == 0 {
		return
	}
	if every := a.RetentionInterval.Std(); every < minRetentionEvery || every > r {
		ps.add("audit.retentionInterval", "is %s; use %s to audit.retention (%s), like 1h", a.RetentionInterval, minRetentionEvery, a.Retention)
	}
	switch _, err := a.RetentionKey(); {
	case a.CheckpointKey == "" && a.Prunes():
		ps.add("audit.checkpointKey", "is empty, yet audit.retention (%s) deletes records every sink has: name the file of an Ed25519 key in "+
			"checkpointKeyFile (make one with `openssl genpkey -algorithm ed25519 -out checkpoint-key.pem`), "+
			"or set audit.retention to 0 to keep everything", a.Retention)
	case a.CheckpointKey != "" && err != nil:
		ps.add("audit.checkpointKey", "cannot be used: %v; give an Ed25519 private key in PEM (PKCS#8), as `openssl genpkey -algorithm ed25519` writes it", err)
	}
}

// checkAudit checks the audit section.
func checkAudit(ps *Problems, a Audit) {
	f := a.Forward
	checkPositive(ps, "audit.forward.minBackoff", f.MinBackoff, "1s")
	checkPositive(ps, "audit.forward.sendTimeout", f.SendTimeout, "30s")
	checkPositive(ps, "audit.forward.maxLagAge", f.MaxLagAge, "15m")
	if f.MaxBackoff < f.MinBackoff {
		ps.add("audit.forward.maxBackoff", "is %s, less than minBackoff (%s); use something like 1m", f.MaxBackoff, f.MinBackoff)
	}
	if f.RejectAttempts < 1 {
		ps.add("audit.forward.rejectAttempts", "is %d; it must be at least 1, like 3", f.RejectAttempts)
	}
	if f.MaxLag < 1 {
		ps.add("audit.forward.maxLag", "is %d; it must be at least 1, like 10000", f.MaxLag)
	}
	checkPositive(ps, "audit.forward.ackInterval", f.AckInterval, "1s")
	if f.AckEvery < 1 {
		ps.add("audit.forward.ackEvery", "is %d; it must be at least 1, like 1000", f.AckEvery)
	}
	if f.MaxInFlight < 1 {
		ps.add("audit.forward.maxInFlight", "is %d; it must be at least 1, like 8", f.MaxInFlight)
	}
	if a.ATNA.Address != "" {
		if _, port, err := net.SplitHostPort(a.ATNA.Address); err != nil || port == "" {
			ps.add("audit.atna.address", "%q is not host:port; write it like atna.example.nhs.uk:6514", a.ATNA.Address)
		}
		if a.ATNA.SourceID == "" {
			ps.add("audit.atna.sourceId", "is empty; name this nirproxy as the audit repository knows it")
		}
		if a.ATNA.MaxMessageSize < dicomaudit.MinMessageSize {
			ps.add("audit.atna.maxMessageSize", "is %d; it must be at least %d, like 32768", a.ATNA.MaxMessageSize, dicomaudit.MinMessageSize)
		}
		checkPositive(ps, "audit.atna.dialTimeout", a.ATNA.DialTimeout, "10s")
		_, tlsProblems := a.ATNA.TLS.clientTLS("audit.atna.tls")
		*ps = append(*ps, tlsProblems...)
	}
	if a.PARS.URL != "" {
		checkHTTPURL(ps, "audit.pars.url", a.PARS.URL, "https://pars.example.nhs.uk/FHIR/R4")
		_, tlsProblems := a.PARS.TLS.clientTLS("audit.pars.tls")
		*ps = append(*ps, tlsProblems...)
		if a.PARS.Observer == "" || a.PARS.ObserverSystem == "" {
			ps.add("audit.pars.observer", "is empty; name this nirproxy as PARS knows it (its ASID under observerSystem)")
		}
	}
	checkRetention(ps, a)
	if a.SpoolDir == "" {
		ps.add("audit.spoolDir", "is empty; nirproxy records every access before it answers: name a directory for the audit spool, like /var/lib/nirproxy/audit")
	}
	if a.SegmentBytes < minSegmentBytes || a.SegmentBytes > maxSegmentBytes {
		ps.add("audit.segmentBytes", "is %d; use %d (1 MiB) to %d (1 GiB), like 67108864 (64 MiB)", a.SegmentBytes, minSegmentBytes, maxSegmentBytes)
	} else if a.MaxBytes < a.SegmentBytes {
		ps.add("audit.maxBytes", "is %d, less than audit.segmentBytes (%d); give room for many segments, like 10737418240 (10 GiB)", a.MaxBytes, a.SegmentBytes)
	}
}

// SpoolOptions is the audit section as package spool takes it, with clock, indexing each
// segment's records by patient for the patient access report (audit.PatientKeys).
func (a Audit) SpoolOptions(clock func() time.Time) spool.Options {
	return spool.Options{Dir: a.SpoolDir, SegmentBytes: int64(a.SegmentBytes), MaxBytes: int64(a.MaxBytes), Clock: clock,
		Keys: audit.PatientKeys}
}

// ForwardOptions is audit.forward as package forward takes it, with clock.
func (a Audit) ForwardOptions(clock func() time.Time) forward.Options {
	f := a.Forward
	return forward.Options{MinBackoff: f.MinBackoff.Std(), MaxBackoff: f.MaxBackoff.Std(), SendTimeout: f.SendTimeout.Std(),
		RejectAttempts: f.RejectAttempts, MaxLag: uint64(f.MaxLag), MaxLagAge: f.MaxLagAge.Std(),
		AckEvery: f.AckEvery, AckInterval: f.AckInterval.Std(), MaxInFlight: f.MaxInFlight, Clock: clock}
}

// PARSSink is audit.pars as package fhir takes it: its HTTP client (the tls section's, with
// sendTimeout), its token, and what names this proxy and its callers. cis2Issuers are the
// issuers of profile cis2, whose users PARS knows by SDS user id; publicURL is the server's
// address.
func (c Config) PARSSink(cis2Issuers []string) (fhir.SinkOptions, error) {
	p := c.Audit.PARS
	tc, problems := p.TLS.clientTLS("audit.pars.tls")
	if len(problems) > 0 {
		return fhir.SinkOptions{}, problems
	}
	token := string(p.Token)
	return fhir.SinkOptions{
		Name:    parsSinkName,
		BaseURL: p.URL,
		// A connection kept for each AuditEvent in flight.
		Client: &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: c.Audit.Forward.MaxInFlight}, Timeout: c.Audit.Forward.SendTimeout.Std()},
		Token:   func(context.Context) (string, error) { return token, nil },
		Put:     p.Put,
		Timeout: c.Audit.Forward.SendTimeout.Std(),
		Event: fhir.Options{
			Observer:       fhir.Identifier{System: p.ObserverSystem, Value: p.Observer},
			ServerAddress:  c.PublicURL,
			SystemIDSystem: p.SystemIDSystem,
			UserIDSystem:   fhir.SDSUserIDs(cis2Issuers...),
		},
	}, nil
}

// ATNASink is audit.atna as package dicomaudit takes it; publicURL's host is nirproxy's network
// address in the messages.
func (c Config) ATNASink() dicomaudit.SinkOptions {
	a := c.Audit.ATNA
	return dicomaudit.SinkOptions{
		Name:           atnaSinkName,
		Address:        a.Address,
		CAFile:         a.TLS.CAFile,
		CertFile:       a.TLS.CertFile,
		KeyFile:        a.TLS.KeyFile,
		ServerName:     a.TLS.ServerName,
		Hostname:       a.Hostname,
		DialTimeout:    a.DialTimeout.Std(),
		WriteTimeout:   c.Audit.Forward.SendTimeout.Std(),
		MaxMessageSize: a.MaxMessageSize,
		Message:        dicomaudit.Options{SourceID: a.SourceID, SiteID: a.SiteID, AETitle: a.AETitle, NetworkAddress: hostOf(c.PublicURL)},
	}
}

// hostOf is the host of a URL, "" when it has none.
func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// Package upstream talks to the trusts' PACS: one Source per trust, each an HTTP DICOMweb client
// (go-retryablehttp) behind a circuit breaker (gobreaker), with its own timeouts and credentials;
// FanOut runs one call per source in parallel; the Locator remembers which trusts hold a study.
//
// The package reports what happened at each trust as an Outcome and never decides what the
// client is told: that is the fallback package's job.
package upstream

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// Client is the narrow set of DICOMweb operations the proxy sends to one trust. Paths are
// relative to the source's DICOMweb root ("studies", "studies/1.2.3/series").
//
// Wrappers (breaker, retry, error labelling) implement Client around another Client; NewSource
// assembles them in one visible order.
type Client interface {
	// Search runs a QIDO-RS query and returns the decoded, validated DICOM JSON objects.
	// An answer that is not a DICOM JSON array is an error (*InvalidResponseError).
	Search(ctx context.Context, path string, query url.Values) ([]dcmjson.Dataset, error)
	// Fetch sends a WADO-RS GET with the given Accept header. On a 2xx answer the caller owns
	// the response and must close its body; any other status is returned as *StatusError
	// with the body already closed. Cancelling ctx aborts a body still being read.
	Fetch(ctx context.Context, path string, query url.Values, accept string) (*http.Response, error)
}

// PatientIDAttribute says where a PACS keeps the NHS number.
type PatientIDAttribute string

// The two places a PACS may keep the NHS number.
const (
	InPatientID               PatientIDAttribute = "PatientID"
	InOtherPatientIDsSequence PatientIDAttribute = "OtherPatientIDsSequence"
)

// AuthType names how nirproxy authenticates to a source.
type AuthType string

// Supported upstream authentication schemes.
const (
	AuthNone   AuthType = "none"
	AuthBasic  AuthType = "basic"
	AuthBearer AuthType = "bearer"
)

// Auth holds a source's credentials. Its String method never prints a secret.
type Auth struct {
	Type     AuthType
	Username string
	Password string
	Token    string
}

// String describes the credentials without revealing them.
func (a Auth) String() string {
	if a.Type == "" {
		return string(AuthNone)
	}
	return string(a.Type)
}

// SourceConfig is everything the proxy knows about one trust's PACS.
type SourceConfig struct {
	// ID is the trust's ODS code; it is what clients see in RetrieveAETitle.
	ID   string
	Name string
	// BaseURL is the DICOMweb root, e.g. http://pacs.example/dicom-web.
	BaseURL *url.URL
	// Priority orders holders of the same study: lower is preferred.
	Priority int
	// Timeout bounds the wait for response headers from this source.
	Timeout time.Duration
	// Required marks a source whose absence fails a search instead of warning.
	Required bool
	Auth     Auth
	// TLS is how connections to an https BaseURL are made: the roots that verify the PACS's
	// certificate, the client certificate presented to it (mutual TLS), the name verified. It is
	// used as given (cmd/nirproxy's configuration builds it, TLS 1.2 or later); nil means the
	// system's roots, no client certificate and TLS 1.2 or later. A plain http BaseURL does not
	// use it.
	TLS *tls.Config
	// PatientID says where this PACS keeps the NHS number, and with which issuer.
	PatientID       PatientIDAttribute
	PatientIDIssuer string
}

// NHSNumberOf finds the NHS number in a DICOM JSON object from this source, wherever the
// source keeps it (PatientID, or the OtherPatientIDsSequence item with the source's issuer);
// "" when there is none.
func (cfg SourceConfig) NHSNumberOf(ds dcmjson.Dataset) string {
	if cfg.PatientID == InOtherPatientIDsSequence {
		for _, item := range ds.Items(dcmjson.TagOtherPatientIDsSequence) {
			if cfg.PatientIDIssuer == "" || item.String(dcmjson.TagIssuerOfPatientID) == cfg.PatientIDIssuer {
				if id := item.String(dcmjson.TagPatientID); id != "" {
					return strings.TrimSpace(id)
				}
			}
		}
		return ""
	}
	if cfg.PatientIDIssuer != "" {
		if iss := ds.String(dcmjson.TagIssuerOfPatientID); iss != "" && iss != cfg.PatientIDIssuer {
			return ""
		}
	}
	return strings.TrimSpace(ds.String(dcmjson.TagPatientID))
}

// Source is one trust's PACS as the rest of the proxy sees it: its configuration and the
// assembled Client.
type Source struct {
	SourceConfig
	Client
	health        *health
	stats         *stats
	maxConcurrent int
	now           func() time.Time
}

// Status reports the source's breaker state, recent error rate and latency (GET /status).
func (s *Source) Status() Status {
	st := Status{ID: s.ID, Name: s.Name, Breaker: s.State(), MaxConcurrent: s.maxConcurrent}
	if s.stats == nil {
		return st
	}
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	calls, failures, inFlight, p50, p95, last, lastAt := s.stats.snapshot(now)
	st.Calls, st.Failures, st.InFlight = calls, failures, inFlight
	if calls > 0 {
		st.ErrorRate = float64(failures) / float64(calls)
	}
	st.LatencyP50ms = float64(p50.Microseconds()) / 1000
	st.LatencyP95ms = float64(p95.Microseconds()) / 1000
	if last != nil {
		st.LastFailure = last
		st.LastFailureAt = &lastAt
	}
	return st
}

// State reports the source's circuit breaker state ("closed", "open", "half-open").
func (s *Source) State() string {
	if s.health == nil {
		return "closed"
	}
	return s.health.state()
}

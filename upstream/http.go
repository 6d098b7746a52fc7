package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// maxSearchBody bounds a QIDO answer read into memory (a search is capped by
// maxResultsPerSource; this guards against an upstream that streams without end).
const maxSearchBody = 64 << 20

// httpClient is the innermost Client: plain DICOMweb over HTTP with retries for what is safe
// to retry. It classifies every failure into the package's error types.
type httpClient struct {
	id    string
	base  *url.URL
	auth  Auth
	retry *retryablehttp.Client
	idle  time.Duration
}

// HTTPOptions tunes the HTTP client of one source. Every field is required (cmd/nirproxy's
// configuration holds the defaults); NewSource refuses options with one missing.
type HTTPOptions struct {
	// HeaderTimeout bounds the wait for response headers (Transport.ResponseHeaderTimeout).
	HeaderTimeout time.Duration
	// RetryMax is how many times an idempotent request is retried (0 disables retries).
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound the wait between tries; Retry-After is clamped to them.
	RetryWaitMin, RetryWaitMax time.Duration
	// MaxConnsPerHost bounds connections to the source.
	MaxConnsPerHost int
	// IdleTimeout bounds how long one read of a streaming response body may wait for the source.
	// Time spent not reading (writing to a slow client) does not count.
	IdleTimeout time.Duration
}

// check names the first field of o that is missing or out of range.
func (o HTTPOptions) check() error {
	switch {
	case o.HeaderTimeout <= 0:
		return fmt.Errorf("HTTPOptions.HeaderTimeout is %v; it must be positive", o.HeaderTimeout)
	case o.RetryMax < 0:
		return fmt.Errorf("HTTPOptions.RetryMax is %d; it cannot be negative", o.RetryMax)
	case o.RetryWaitMin <= 0 || o.RetryWaitMax < o.RetryWaitMin:
		return fmt.Errorf("HTTPOptions.RetryWaitMin and RetryWaitMax are %v and %v; they must be positive, the first no greater", o.RetryWaitMin, o.RetryWaitMax)
	case o.MaxConnsPerHost <= 0:
		return fmt.Errorf("HTTPOptions.MaxConnsPerHost is %d; it must be positive", o.MaxConnsPerHost)
	case o.IdleTimeout <= 0:
		return fmt.Errorf("HTTPOptions.IdleTimeout is %v; it must be positive", o.IdleTimeout)
	}
	return nil
}

// newHTTPClient is the HTTP client of the source cfg; opts must be complete (see check).
func newHTTPClient(cfg SourceConfig, opts HTTPOptions, log *slog.Logger) *httpClient {
	transport := &http.Transport{
		Proxy: nil, // upstream PACS are reached directly, never through an environment proxy
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   opts.MaxConnsPerHost,
		MaxConnsPerHost:       opts.MaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: opts.HeaderTimeout,
		TLSHandshakeTimeout:   5 * time.Second,
		TLSClientConfig:       clientTLS(cfg.TLS),
		ExpectContinueTimeout: time.Second,
		// Bodies are passed through byte for byte; a compressed answer would have to be
		// decompressed to check multipart framing, so none is asked for.
		DisableCompression: true,
		ReadBufferSize:     64 << 10,
		WriteBufferSize:    16 << 10,
	}
	rc := &retryablehttp.Client{
		HTTPClient:   &http.Client{Transport: transport, CheckRedirect: noRedirects},
		Logger:       retryLogger{log: log.With("source", cfg.ID)},
		RetryWaitMin: opts.RetryWaitMin,
		RetryWaitMax: opts.RetryWaitMax,
		RetryMax:     opts.RetryMax,
		CheckRetry:   retryPolicy,
		Backoff:      clampedBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	return &httpClient{id: cfg.ID, base: cfg.BaseURL, auth: cfg.Auth, retry: rc, idle: opts.IdleTimeout}
}

// clientTLS is the TLS configuration of connections to a source: a copy of c, or for nil the
// system's roots and TLS 1.2 or later. The package adds nothing of its own to a c given.
func clientTLS(c *tls.Config) *tls.Config {
	if c == nil {
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return c.Clone()
}

// noRedirects refuses redirects: a PACS redirecting elsewhere must not steer the proxy to an
// address that was never configured.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// retryPolicy retries connection failures (but not a certificate that cannot be verified) and
// the statuses that mean "try again" (429, 502, 503, 504), never after our own client went away
// or the deadline passed. All requests the
// proxy sends upstream are GETs, so every retry is idempotent.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) && ue.Timeout() {
			// A source that did not answer within its header timeout is unlikely to answer a
			// second time within the request's budget.
			return false, nil
		}
		var cve *tls.CertificateVerificationError
		if errors.As(err, &cve) {
			// A certificate that cannot be verified will not be verified on a second try.
			return false, nil
		}
		return true, nil
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, nil
	}
	return false, nil
}

// clampedBackoff is retryablehttp's backoff with Retry-After held within [min, max]: a source
// asking for a minute's pause must not hold a clinician's request for a minute.
func clampedBackoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	d := retryablehttp.DefaultBackoff(minWait, maxWait, attempt, resp)
	return min(max(d, minWait), maxWait)
}

// url builds the absolute upstream URL for a path relative to the DICOMweb root. path
// segments must already be validated (UIDs are digits and dots).
func (c *httpClient) url(path string, query url.Values) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.TrimPrefix(path, "/")
	u.RawPath = ""
	u.RawQuery = encodeQuery(query)
	return u.String()
}

// encodeQuery writes a query string escaping only what must be escaped to keep keys and values
// apart (%, &, =, +, #, space, controls and non-ASCII). DICOMweb origins such as Orthanc do not
// percent-decode query values, so wildcards (*, ?), lists (,), attribute paths (.), ranges (-)
// and person-name separators (^) must reach them as themselves.
func encodeQuery(v url.Values) string {
	if len(v) == 0 {
		return ""
	}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, val := range v[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			escapeQueryPart(&b, k)
			b.WriteByte('=')
			escapeQueryPart(&b, val)
		}
	}
	return b.String()
}

func escapeQueryPart(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c <= ' ' || c >= 0x7f || c == '%' || c == '&' || c == '=' || c == '+' || c == '#' || c == '"' || c == '<' || c == '>' || c == '`' || c == '{' || c == '}' || c == '|':
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		default:
			b.WriteByte(c)
		}
	}
}

func (c *httpClient) do(parent context.Context, path string, query url.Values, accept string) (*http.Response, error) {
	// The request gets its own context so a stalled body can be cut off (idleBody).
	ctx, cancel := context.WithCancelCause(parent)
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, c.url(path, query), nil)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("build request to source %s: %w", c.id, err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	switch c.auth.Type {
	case AuthBasic:
		req.SetBasicAuth(c.auth.Username, c.auth.Password)
	case AuthBearer:
		req.Header.Set("Authorization", "Bearer "+c.auth.Token)
	}
	resp, err := c.retry.Do(req)
	if err != nil {
		defer cancel(nil)
		if resp != nil {
			// PassthroughErrorHandler hands back the last response with the error, e.g. when
			// our client hung up just as an answer arrived; nobody else will close it.
			resp.Body.Close()
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, &TransportError{Source: c.id, Err: ctxErr}
		}
		return nil, &TransportError{Source: c.id, Err: unwrapURLError(err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The error body is not kept: some PACS echo the request URL, query and patient
		// identifiers included. A little is read so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		cancel(nil)
		return nil, &StatusError{Source: c.id, Status: resp.StatusCode}
	}
	resp.Body = newIdleBody(c.id, resp.Body, c.idle, ctx, cancel)
	return resp, nil
}

// idleBody cuts a response body off when a read waits longer than the idle timeout for the
// source: the request's context is cancelled with ErrStalled, and reads fail with it. A
// clinician's viewer must not wait for ever on a PACS that stopped sending, and a stalled study
// must not look complete.
//
// The timer runs only while a Read is waiting on the source. Time the proxy spends elsewhere,
// writing to a slow client or streaming another holder's answer first, is not the source's
// pause: a trust is never blamed (and its breaker never charged) for a client that reads
// slowly. Reads must not be concurrent, as for any response body.
type idleBody struct {
	io.ReadCloser
	source string
	idle   time.Duration
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
}

func newIdleBody(source string, body io.ReadCloser, idle time.Duration, ctx context.Context, cancel context.CancelCauseFunc) *idleBody {
	b := &idleBody{ReadCloser: body, source: source, idle: idle, ctx: ctx, cancel: cancel}
	b.timer = time.AfterFunc(idle, func() { cancel(ErrStalled) })
	b.timer.Stop()
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.idle)
	n, err := b.ReadCloser.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF && errors.Is(context.Cause(b.ctx), ErrStalled) {
		return n, &TransportError{Source: b.source, Err: ErrStalled}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Search implements Client.
func (c *httpClient) Search(ctx context.Context, path string, query url.Values) ([]dcmjson.Dataset, error) {
	resp, err := c.do(ctx, path, query, "application/dicom+json, application/json;q=0.9")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil, nil
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		mt, _, perr := mime.ParseMediaType(ct)
		if perr != nil || !(mt == "application/dicom+json" || mt == "application/json") {
			return nil, &InvalidResponseError{Source: c.id, Err: fmt.Errorf("content type %q is not DICOM JSON", ct)}
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSearchBody+1))
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, &TransportError{Source: c.id, Err: ctxErr}
		}
		return nil, &TransportError{Source: c.id, Err: fmt.Errorf("read search answer: %w", err)}
	}
	if len(body) > maxSearchBody {
		return nil, &InvalidResponseError{Source: c.id, Err: fmt.Errorf("search answer larger than %d bytes", maxSearchBody)}
	}
	out, err := dcmjson.Decode(body)
	if err != nil {
		return nil, &InvalidResponseError{Source: c.id, Err: err}
	}
	return out, nil
}

// Fetch implements Client.
func (c *httpClient) Fetch(ctx context.Context, path string, query url.Values, accept string) (*http.Response, error) {
	return c.do(ctx, path, query, accept)
}

// retryLogger adapts slog to retryablehttp's leveled logger. It drops the URL the library
// logs, because query strings carry patient identifiers.
type retryLogger struct{ log *slog.Logger }

func (l retryLogger) clean(kv []any) []any {
	out := make([]any, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		if k == "url" || k == "request" {
			continue
		}
		if err, ok := kv[i+1].(error); ok {
			// url.Error's text includes the full URL and so the query.
			out = append(out, k, unwrapURLError(err).Error())
			continue
		}
		out = append(out, kv[i], kv[i+1])
	}
	return out
}

func (l retryLogger) Error(msg string, kv ...any) { l.log.Warn("upstream: "+msg, l.clean(kv)...) }
func (l retryLogger) Warn(msg string, kv ...any)  { l.log.Warn("upstream: "+msg, l.clean(kv)...) }
func (l retryLogger) Info(msg string, kv ...any)  { l.log.Debug("upstream: "+msg, l.clean(kv)...) }
func (l retryLogger) Debug(msg string, kv ...any) { l.log.Debug("upstream: "+msg, l.clean(kv)...) }

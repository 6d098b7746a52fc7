package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// fastRetries retries once, quickly, so tests of the retry policy stay short.
var fastRetries = with(retrying(1, time.Millisecond, 5*time.Millisecond), func(o *HTTPOptions) { o.HeaderTimeout = 2 * time.Second })

// retrying is testHTTPOptions with n retries, waiting from minWait to maxWait between tries.
func retrying(n int, minWait, maxWait time.Duration) HTTPOptions {
	return with(testHTTPOptions(), func(o *HTTPOptions) { o.RetryMax, o.RetryWaitMin, o.RetryWaitMax = n, minWait, maxWait })
}

// newTestHTTP returns the HTTP client of a source "RXA" rooted at base; opts must be complete.
func newTestHTTP(base *url.URL, auth Auth, opts HTTPOptions, log *slog.Logger) *httpClient {
	if err := opts.check(); err != nil {
		panic(err)
	}
	return newHTTPClient(SourceConfig{ID: "RXA", Name: "Example Hospitals NHS Trust", BaseURL: base, Auth: auth}, opts, log)
}

// countingServer serves h behind a call counter; the server is closed at the end of the test.
func countingServer(t *testing.T, h func(n int32, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(calls.Add(1), w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// roundTripFunc is an http.RoundTripper given as a function, for answers no real server gives
// on demand.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// trackedBody is a response body that records whether it was closed.
type trackedBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackedBody) Close() error { b.closed.Store(true); return nil }

func TestSearchDecodes(t *testing.T) {
	const twoStudies = `[{"0020000D":{"vr":"UI","Value":["1.2.3"]}},{"0020000D":{"vr":"UI","Value":["1.2.4"]},"00081030":{"vr":"LO"}}]`
	tests := []struct {
		name     string
		status   int
		ctype    string
		body     string
		wantUIDs []string
		wantErr  any // pointer to the error type expected, nil for success
	}{
		{name: "dicom+json array", status: 200, ctype: "application/dicom+json", body: twoStudies, wantUIDs: []string{"1.2.3", "1.2.4"}},
		{name: "json with charset", status: 200, ctype: "application/json; charset=utf-8", body: twoStudies, wantUIDs: []string{"1.2.3", "1.2.4"}},
		{name: "no content type", status: 200, body: twoStudies, wantUIDs: []string{"1.2.3", "1.2.4"}},
		{name: "empty array", status: 200, ctype: "application/dicom+json", body: `[]`},
		{name: "empty body", status: 200, ctype: "application/dicom+json"},
		{name: "204 no content", status: 204},
		{name: "wrong content type", status: 200, ctype: "text/html", body: twoStudies, wantErr: new(*InvalidResponseError)},
		{name: "unparseable content type", status: 200, ctype: "application/", body: twoStudies, wantErr: new(*InvalidResponseError)},
		{name: "invalid JSON", status: 200, ctype: "application/dicom+json", body: `[{"0020000D":`, wantErr: new(*InvalidResponseError)},
		{name: "object instead of array", status: 200, ctype: "application/dicom+json", body: `{"0020000D":{"vr":"UI","Value":["1.2.3"]}}`, wantErr: new(*InvalidResponseError)},
		{name: "element without VR", status: 200, ctype: "application/dicom+json", body: `[{"0020000D":{"Value":["1.2.3"]}}]`, wantErr: new(*InvalidResponseError)},
		{name: "key that is not a tag", status: 200, ctype: "application/dicom+json", body: `[{"StudyInstanceUID":{"vr":"UI","Value":["1.2.3"]}}]`, wantErr: new(*InvalidResponseError)},
		{name: "not found", status: 404, ctype: "application/json", body: `{"error":"no such study"}`, wantErr: new(*StatusError)},
		{name: "bad gateway", status: 502, ctype: "text/plain", body: "upstream down", wantErr: new(*StatusError)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gotPath, gotQuery, gotAccept string
			srv, _ := countingServer(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
				gotPath, gotQuery, gotAccept = r.URL.Path, r.URL.RawQuery, r.Header.Get("Accept")
				if tc.ctype != "" {
					w.Header().Set("Content-Type", tc.ctype)
				} else {
					w.Header()["Content-Type"] = nil // no sniffing: send no Content-Type at all
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			c := newTestHTTP(mustParse(t, srv.URL+"/dicom-web/"), Auth{}, testHTTPOptions(), discard())
			got, err := c.Search(context.Background(), "studies", url.Values{dcmjson.TagStudyInstanceUID: {"1.2.3"}})

			if gotPath != "/dicom-web/studies" || gotQuery != "0020000D=1.2.3" {
				t.Errorf("upstream saw path %q query %q; want /dicom-web/studies and 0020000D=1.2.3", gotPath, gotQuery)
			}
			if !strings.Contains(gotAccept, "application/dicom+json") {
				t.Errorf("Accept = %q; want application/dicom+json", gotAccept)
			}
			if tc.wantErr != nil {
				if got != nil {
					t.Errorf("got %d datasets with an error; want none", len(got))
				}
				if !errors.As(err, tc.wantErr) {
					t.Fatalf("err = %v (%T); want %T", err, err, tc.wantErr)
				}
				if se, ok := err.(*StatusError); ok {
					if se.Status != tc.status || se.Source != "RXA" {
						t.Errorf("StatusError = %+v; want status %d, source RXA", se, tc.status)
					}
					if IsNotFound(err) != (tc.status == 404) {
						t.Errorf("IsNotFound = %v for %d", IsNotFound(err), tc.status)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Search: %v", err)
			}
			var uids []string
			for _, ds := range got {
				uids = append(uids, ds.String(dcmjson.TagStudyInstanceUID))
			}
			if strings.Join(uids, ",") != strings.Join(tc.wantUIDs, ",") {
				t.Fatalf("UIDs = %v; want %v", uids, tc.wantUIDs)
			}
		})
	}
}

func TestNon2xxClosesBody(t *testing.T) {
	tests := []struct {
		name   string
		status int
		call   func(c *httpClient) error
	}{
		{name: "search 500", status: 500, call: func(c *httpClient) error {
			_, err := c.Search(context.Background(), "studies", nil)
			return err
		}},
		{name: "fetch 404", status: 404, call: func(c *httpClient) error {
			resp, err := c.Fetch(context.Background(), "studies/1.2.3", nil, "multipart/related; type=\"application/dicom\"")
			if resp != nil {
				t.Errorf("Fetch returned a response with an error")
			}
			return err
		}},
		{name: "fetch 406", status: 406, call: func(c *httpClient) error {
			_, err := c.Fetch(context.Background(), "studies/1.2.3", nil, "image/gif")
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := &trackedBody{Reader: strings.NewReader("no")}
			c := newTestHTTP(mustParse(t, "http://pacs.invalid/dicom-web"), Auth{}, testHTTPOptions(), discard())
			c.retry.HTTPClient.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: tc.status, Header: http.Header{}, Body: body, Request: r}, nil
			})
			err := tc.call(c)
			var se *StatusError
			if !errors.As(err, &se) || se.Status != tc.status {
				t.Fatalf("err = %v; want *StatusError with status %d", err, tc.status)
			}
			if !body.closed.Load() {
				t.Fatal("body of a non-2xx answer left open")
			}
		})
	}
}

func TestFetchReturnsOpenBody(t *testing.T) {
	srv, _ := countingServer(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/octet-stream" {
			http.Error(w, "bad accept", http.StatusNotAcceptable)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, "pixels")
	})
	c := newTestHTTP(mustParse(t, srv.URL), Auth{}, testHTTPOptions(), discard())
	resp, err := c.Fetch(context.Background(), "studies/1.2.3/series/4.5/instances/6.7/frames/1", nil, "application/octet-stream")
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "pixels" {
		t.Fatalf("body = %q, %v; want pixels", b, err)
	}
}

func TestCredentials(t *testing.T) {
	tests := []struct {
		name string
		auth Auth
		want string
	}{
		{name: "none", auth: Auth{}, want: ""},
		{name: "explicit none", auth: Auth{Type: AuthNone, Token: "unused"}, want: ""},
		{name: "basic", auth: Auth{Type: AuthBasic, Username: "proxy", Password: "s3cret:x"}, want: "Basic cHJveHk6czNjcmV0Ong="},
		{name: "bearer", auth: Auth{Type: AuthBearer, Token: "tok.en"}, want: "Bearer tok.en"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			srv, _ := countingServer(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
				got = r.Header.Values("Authorization")
				w.Header().Set("Content-Type", "application/dicom+json")
				io.WriteString(w, "[]")
			})
			c := newTestHTTP(mustParse(t, srv.URL), tc.auth, testHTTPOptions(), discard())
			if _, err := c.Search(context.Background(), "studies", nil); err != nil {
				t.Fatalf("Search: %v", err)
			}
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("Authorization = %q; want none", got)
				}
				return
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("Authorization = %q; want %q", got, tc.want)
			}
		})
	}
}

func TestAuthStringHidesSecrets(t *testing.T) {
	for _, a := range []Auth{{}, {Type: AuthBasic, Username: "u", Password: "pw-secret"}, {Type: AuthBearer, Token: "tok-secret"}} {
		if s := a.String(); strings.Contains(s, "secret") {
			t.Errorf("Auth.String() = %q reveals a secret", s)
		}
	}
}

func TestNoRedirects(t *testing.T) {
	other, otherCalls := countingServer(t, func(_ int32, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/dicom+json")
		io.WriteString(w, "[]")
	})
	srv, _ := countingServer(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
	})
	c := newTestHTTP(mustParse(t, srv.URL), Auth{Type: AuthBearer, Token: "t"}, fastRetries, discard())
	_, err := c.Search(context.Background(), "studies", nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusFound {
		t.Fatalf("err = %v; want *StatusError 302", err)
	}
	if n := otherCalls.Load(); n != 0 {
		t.Fatalf("redirect target called %d times; want 0", n)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name       string
		opts       HTTPOptions
		handler    func(n int32, w http.ResponseWriter)
		wantCalls  int32
		wantStatus int // 0 for success
		maxElapsed time.Duration
	}{
		{
			name: "503 then 200 succeeds",
			opts: fastRetries,
			handler: func(n int32, w http.ResponseWriter) {
				if n == 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.Header().Set("Content-Type", "application/dicom+json")
				io.WriteString(w, "[]")
			},
			wantCalls: 2,
		},
		{
			name:       "502 retried until RetryMax, then reported",
			opts:       retrying(2, time.Millisecond, 5*time.Millisecond),
			handler:    func(_ int32, w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) },
			wantCalls:  3,
			wantStatus: http.StatusBadGateway,
		},
		{
			name:       "500 not retried",
			opts:       fastRetries,
			handler:    func(_ int32, w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) },
			wantCalls:  1,
			wantStatus: http.StatusInternalServerError,
		},
		{
			name:       "404 not retried",
			opts:       fastRetries,
			handler:    func(_ int32, w http.ResponseWriter) { w.WriteHeader(http.StatusNotFound) },
			wantCalls:  1,
			wantStatus: http.StatusNotFound,
		},
		{
			name:       "RetryMax 0 disables retries",
			opts:       testHTTPOptions(),
			handler:    func(_ int32, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) },
			wantCalls:  1,
			wantStatus: http.StatusServiceUnavailable,
		},
		{
			name: "Retry-After 3600 clamped to RetryWaitMax",
			opts: retrying(1, 10*time.Millisecond, 100*time.Millisecond),
			handler: func(n int32, w http.ResponseWriter) {
				if n == 1 {
					w.Header().Set("Retry-After", "3600")
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.Header().Set("Content-Type", "application/dicom+json")
				io.WriteString(w, "[]")
			},
			wantCalls:  2,
			maxElapsed: time.Second,
		},
		{
			name: "429 with Retry-After 3600 clamped too",
			opts: retrying(1, 10*time.Millisecond, 100*time.Millisecond),
			handler: func(n int32, w http.ResponseWriter) {
				if n == 1 {
					w.Header().Set("Retry-After", "3600")
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				w.Header().Set("Content-Type", "application/dicom+json")
				io.WriteString(w, "[]")
			},
			wantCalls:  2,
			maxElapsed: time.Second,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, calls := countingServer(t, func(n int32, w http.ResponseWriter, _ *http.Request) { tc.handler(n, w) })
			c := newTestHTTP(mustParse(t, srv.URL), Auth{}, tc.opts, discard())
			start := time.Now()
			_, err := c.Search(context.Background(), "studies", nil)
			elapsed := time.Since(start)
			if n := calls.Load(); n != tc.wantCalls {
				t.Errorf("upstream called %d times; want %d", n, tc.wantCalls)
			}
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("Search: %v", err)
				}
			} else {
				var se *StatusError
				if !errors.As(err, &se) || se.Status != tc.wantStatus {
					t.Fatalf("err = %v; want *StatusError %d", err, tc.wantStatus)
				}
			}
			if tc.maxElapsed > 0 && elapsed > tc.maxElapsed {
				t.Fatalf("took %v; want under %v", elapsed, tc.maxElapsed)
			}
		})
	}
}

func TestNoRetryWhenCancelled(t *testing.T) {
	t.Run("policy", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for _, status := range []int{429, 502, 503, 504} {
			retry, err := retryPolicy(ctx, &http.Response{StatusCode: status}, nil)
			if retry || !errors.Is(err, context.Canceled) {
				t.Errorf("retryPolicy(cancelled, %d) = %v, %v; want false, context.Canceled", status, retry, err)
			}
		}
		if retry, _ := retryPolicy(ctx, nil, errors.New("connection reset")); retry {
			t.Error("retryPolicy retried a transport error after cancellation")
		}
	})

	t.Run("client hangs up while the source answers 503", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		srv, calls := countingServer(t, func(_ int32, w http.ResponseWriter, _ *http.Request) {
			cancel()
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		c := newTestHTTP(mustParse(t, srv.URL), Auth{}, retrying(3, time.Millisecond, time.Millisecond), discard())
		_, err := c.Search(ctx, "studies", nil)
		if !IsClientGone(err) {
			t.Fatalf("err = %v; want a cancellation", err)
		}
		var te *TransportError
		if !errors.As(err, &te) {
			t.Fatalf("err = %T; want *TransportError", err)
		}
		time.Sleep(20 * time.Millisecond) // a retry, were there one, would arrive by now
		if n := calls.Load(); n != 1 {
			t.Fatalf("upstream called %d times; want 1", n)
		}
	})

	t.Run("response arrives as the client hangs up: body closed", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		body := &trackedBody{Reader: strings.NewReader("busy")}
		var calls atomic.Int32
		c := newTestHTTP(mustParse(t, "http://pacs.invalid/dicom-web"), Auth{}, retrying(3, time.Millisecond, time.Millisecond), discard())
		c.retry.HTTPClient.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls.Add(1)
			cancel()
			return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}, Body: body, Request: r}, nil
		})
		_, err := c.Fetch(ctx, "studies/1.2.3", nil, "application/dicom")
		if !IsClientGone(err) {
			t.Fatalf("err = %v; want a cancellation", err)
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("upstream called %d times; want 1", n)
		}
		if !body.closed.Load() {
			t.Fatal("response body left open after the client hung up")
		}
	})
}

func TestHeaderTimeout(t *testing.T) {
	srv, calls := countingServer(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	})
	c := newTestHTTP(mustParse(t, srv.URL), Auth{}, with(retrying(2, time.Millisecond, time.Millisecond), func(o *HTTPOptions) { o.HeaderTimeout = 50 * time.Millisecond }), discard())
	start := time.Now()
	_, err := c.Search(context.Background(), "studies", nil)
	var te *TransportError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v (%T); want *TransportError", err, err)
	}
	if !IsTimeout(err) {
		t.Fatalf("IsTimeout(%v) = false", err)
	}
	if IsClientGone(err) {
		t.Fatalf("a source time-out reported as the client hanging up")
	}
	if got := Classify(err).Class; got != ClassTimeout {
		t.Errorf("class = %v; want timeout", got)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("upstream called %d times; a header time-out is not retried", n)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("took %v; want about the 50ms header timeout", elapsed)
	}
}

func TestContextDeadline(t *testing.T) {
	srv, _ := countingServer(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	})
	c := newTestHTTP(mustParse(t, srv.URL), Auth{}, fastRetries, discard())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Search(ctx, "studies", nil)
	var te *TransportError
	if !errors.As(err, &te) || !IsTimeout(err) || IsClientGone(err) {
		t.Fatalf("err = %v; want a *TransportError time-out that is not a cancellation", err)
	}
}

func TestConnectionRefused(t *testing.T) {
	c := newTestHTTP(closedURL(t), Auth{}, fastRetries, discard())
	_, err := c.Search(context.Background(), "studies", nil)
	var te *TransportError
	if !errors.As(err, &te) || te.Source != "RXA" {
		t.Fatalf("err = %v (%T); want *TransportError from RXA", err, err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("err = %v; want it to wrap ECONNREFUSED", err)
	}
	if IsTimeout(err) || IsClientGone(err) {
		t.Errorf("refused connection classified as time-out or cancellation")
	}
	if got := Classify(err).Class; got != ClassUnreachable {
		t.Errorf("class = %v; want unreachable", got)
	}
}

// TestRetryLogOmitsQuery checks that nothing the retry machinery logs, and no error it
// returns, carries the query string with its patient identifier.
func TestRetryLogOmitsQuery(t *testing.T) {
	const nhs = "9434765919"
	tests := []struct {
		name string
		base func(t *testing.T) *url.URL
	}{
		{name: "503 retried", base: func(t *testing.T) *url.URL {
			srv, _ := countingServer(t, func(_ int32, w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusServiceUnavailable)
			})
			return mustParse(t, srv.URL)
		}},
		{name: "connection refused retried", base: closedURL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			c := newTestHTTP(tc.base(t), Auth{}, fastRetries, log)
			_, err := c.Search(context.Background(), "studies", url.Values{"PatientID": {nhs}})
			if err == nil {
				t.Fatal("Search succeeded; want a failure")
			}
			logged := buf.String()
			if !strings.Contains(logged, "retrying request") {
				t.Fatalf("no retry logged; log:\n%s", logged)
			}
			if strings.Contains(logged, nhs) {
				t.Fatalf("log contains the NHS number:\n%s", logged)
			}
			if strings.Contains(err.Error(), nhs) {
				t.Fatalf("error contains the NHS number: %v", err)
			}
		})
	}
}

func TestURLJoin(t *testing.T) {
	tests := []struct {
		name, base, path, want string
		query                  url.Values
	}{
		{name: "root without slash", base: "http://pacs/dicom-web", path: "studies", want: "http://pacs/dicom-web/studies"},
		{name: "root with slash", base: "http://pacs/dicom-web/", path: "/studies/1.2", want: "http://pacs/dicom-web/studies/1.2"},
		{name: "bare host", base: "http://pacs", path: "studies", want: "http://pacs/studies"},
		{name: "query replaced", base: "http://pacs/wado?x=1", path: "studies", query: url.Values{"limit": {"5"}}, want: "http://pacs/wado/studies?limit=5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestHTTP(mustParse(t, tc.base), Auth{}, testHTTPOptions(), discard())
			if got := c.url(tc.path, tc.query); got != tc.want {
				t.Fatalf("url = %q; want %q", got, tc.want)
			}
		})
	}
}

// TestTLS checks that connections to an https source use the TLS configuration given, verified
// against its roots; that, given none, they use the system's roots and TLS 1.2 or later; and
// that a certificate that cannot be verified is a transport failure, never retried.
func TestTLS(t *testing.T) {
	trusting := func(c *x509.Certificate) *tls.Config {
		roots := x509.NewCertPool()
		roots.AddCert(c)
		return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	none := func(*x509.Certificate) *tls.Config { return nil }
	tests := []struct {
		name       string
		maxVersion uint16                              // the server's highest TLS version; 0 for Go's default
		config     func(*x509.Certificate) *tls.Config // the source's, given the server's certificate
		wantErr    string                              // "" for an answer, "verify" for an unverified certificate, "version"
	}{
		{name: "verified by the roots given", config: trusting},
		{name: "none given: the system's roots, which do not know the server", config: none, wantErr: "verify"},
		{name: "none given: not TLS 1.1", maxVersion: tls.VersionTLS11, config: none, wantErr: "version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var conns atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/dicom+json")
				_, _ = io.WriteString(w, `[{"0020000D":{"vr":"UI","Value":["1.2.3"]}}]`)
			}))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are the point
			srv.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tc.maxVersion}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			cfg := SourceConfig{ID: "RXA", BaseURL: mustParse(t, srv.URL+"/dicom-web"), TLS: tc.config(srv.Certificate())}
			got, err := newHTTPClient(cfg, fastRetries, discard()).Search(context.Background(), "studies", nil)
			var te *TransportError
			var cve *tls.CertificateVerificationError
			switch {
			case tc.wantErr == "":
				if err != nil || len(got) != 1 {
					t.Fatalf("Search = %d results, %v; want 1 and no error", len(got), err)
				}
			case !errors.As(err, &te) || Classify(err).Class != ClassUnreachable:
				t.Fatalf("err = %v (%T); want a *TransportError classified unreachable", err, err)
			case tc.wantErr == "verify" && (!errors.As(err, &cve) || conns.Load() != 1):
				t.Errorf("err = %v after %d connections; want an unverified certificate, not retried", err, conns.Load())
			case tc.wantErr == "version" && (errors.As(err, &cve) || !strings.Contains(err.Error(), "version")):
				t.Errorf("err = %v; want the protocol version refused before any certificate is verified", err)
			}
		})
	}
}

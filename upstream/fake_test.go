package upstream

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// fakeClient is a Client whose behaviour is given by function fields; it counts the calls
// that reach it.
type fakeClient struct {
	search func(ctx context.Context, path string, query url.Values) ([]dcmjson.Dataset, error)
	fetch  func(ctx context.Context, path string, query url.Values, accept string) (*http.Response, error)
	calls  atomic.Int32
}

func (f *fakeClient) Search(ctx context.Context, path string, query url.Values) ([]dcmjson.Dataset, error) {
	f.calls.Add(1)
	if f.search == nil {
		return nil, nil
	}
	return f.search(ctx, path, query)
}

func (f *fakeClient) Fetch(ctx context.Context, path string, query url.Values, accept string) (*http.Response, error) {
	f.calls.Add(1)
	return f.fetch(ctx, path, query, accept)
}

// The package has no defaults: its tests build complete options from these fixtures, which
// hold what cmd/nirproxy's configuration gives a source by default (written out: these tests
// cannot import the configuration, which imports this package), but no retries.

// testTimeout is a source's time-out for headers and for a slot.
const testTimeout = 10 * time.Second

// testHTTPOptions are complete HTTP options that never retry.
func testHTTPOptions() HTTPOptions {
	return HTTPOptions{HeaderTimeout: testTimeout, RetryWaitMin: 50 * time.Millisecond, RetryWaitMax: time.Second, MaxConnsPerHost: 64, IdleTimeout: 30 * time.Second}
}

// testBreakerOptions are complete breaker options.
func testBreakerOptions() BreakerOptions {
	return BreakerOptions{Window: time.Minute, MinRequests: 20, FailureRatio: 0.5, ConsecutiveUnreachable: 5, OpenFor: 30 * time.Second}
}

// testOptions are complete source options, with no cache.
func testOptions() Options {
	return Options{HTTP: testHTTPOptions(), Breaker: testBreakerOptions(), MaxConcurrent: 32}
}

// with is v changed by edit: a fixture with what one test tunes.
func with[T any](v T, edit func(*T)) T {
	edit(&v)
	return v
}

// discard is a logger for tests that do not look at logs.
func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// closedURL returns the URL of a loopback port that nothing listens on: the closed-port trick
// for a dead upstream.
func closedURL(t *testing.T) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return mustParse(t, "http://"+addr+"/dicom-web")
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// studyDS returns a study-level dataset with the given StudyInstanceUID.
func studyDS(uid string) dcmjson.Dataset {
	ds := dcmjson.Dataset{}
	ds.SetStrings(dcmjson.TagStudyInstanceUID, "UI", uid)
	return ds
}

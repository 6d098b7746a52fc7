package upstream

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"

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

package bench

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"
)

// CountingFront is a pass-through in front of an upstream (an Orthanc) that counts the
// requests it is sent: a request count the upstream itself does not keep (Orthanc's
// /statistics and metrics count studies and disk, not requests). A proxy configured over
// the front instead of the upstream shows, by the count standing still, that it answered from
// its cache.
type CountingFront struct {
	// URL is "http://127.0.0.1:PORT"; paths are passed on unchanged.
	URL string

	srv      *httptest.Server
	requests atomic.Int64
}

// StartCountingFront starts a CountingFront passing every request on to upstream (its root,
// "http://host:port"), keeping connections to it alive.
func StartCountingFront(upstream string) (*CountingFront, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	f := &CountingFront{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// The upstream sees the front's address, as it would see the proxy's.
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		FlushInterval: -1,
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		rp.ServeHTTP(w, r)
	}))
	f.URL = f.srv.URL
	return f, nil
}

// Requests is how many requests the front has been sent so far.
func (f *CountingFront) Requests() int64 { return f.requests.Load() }

// Close stops the front.
func (f *CountingFront) Close() { f.srv.Close() }

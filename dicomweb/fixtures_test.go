package dicomweb

import (
	"time"

	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/upstream"
)

// The package has no defaults of its own: the deployment's configuration sets every value.
// These fixtures are complete settings with the values of config.Default (which this package's
// tests cannot import: package config imports this one), for tests to change what they tune.

// testConfig is a complete front configuration whose links are built from public; it writes
// no IssuerOfPatientID.
func testConfig(public string) Config {
	return Config{
		Forwarding:         Forwarding{PublicURL: public},
		CORSMaxAge:         10 * time.Minute,
		RequestTimeout:     30 * time.Second,
		ClientWriteTimeout: 60 * time.Second,
		Search:             SearchLimits{MaxResultsPerSource: 1000, MaxLimit: 1000, MaxQueryLength: 8192, MaxMatchingKeys: 32, MaxIncludeFields: 128, MaxValuesPerKey: 100},
		MaxFrames:          1000,
		ThumbnailViewport:  "128,128",
		Fallback:           fallback.Policy{Search: fallback.PartialWarn, Retrieve: fallback.PartialFail, RetryAfter: 30 * time.Second},
	}
}

// testSourceOptions are complete options for a test's source: the configuration's defaults,
// waiting at most timeout for an answer's headers, with no retries.
func testSourceOptions(timeout time.Duration) upstream.Options {
	return upstream.Options{
		HTTP:          upstream.HTTPOptions{HeaderTimeout: timeout, RetryWaitMin: 50 * time.Millisecond, RetryWaitMax: time.Second, MaxConnsPerHost: 64, IdleTimeout: 30 * time.Second},
		Breaker:       upstream.BreakerOptions{Window: time.Minute, MinRequests: 20, FailureRatio: 0.5, ConsecutiveUnreachable: 5, OpenFor: 30 * time.Second},
		MaxConcurrent: 32,
	}
}

// with is v changed by edit: a fixture with what one test tunes.
func with[T any](v T, edit func(*T)) T {
	edit(&v)
	return v
}

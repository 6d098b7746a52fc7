package dicomweb

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/authn"
	"github.com/nirproxy/nirproxy/policy/authz"
	"github.com/nirproxy/nirproxy/policy/ratelimit"
	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/devissuer"
	"github.com/nirproxy/nirproxy/upstream"
)

// This file measures what authentication, authorization and rate limits cost a search that
// the proxy answers from its in-process cache: the cheapest answer it gives, so the one on
// which the governance steps weigh most (issue 11, item 8). `make bench` runs it and
// test/bench/cmd/loadbench writes the ratio into docs/performance.md.

// authBenchStudies is how many studies the searched patient has, as in loadbench's searches.
const authBenchStudies = 10

// authBenchPath is the search every request of the benchmark sends.
const authBenchPath = "/dicom-web/studies?PatientID=" + alice

// authBenchOrigin is a fake trust holding authBenchStudies studies of alice, two series each.
func authBenchOrigin(b *testing.B) *fakeOrigin {
	var inst []fakeInstance
	for s := range authBenchStudies {
		study := fmt.Sprintf("1.2.826.0.1.3680043.10.543.7.%d", s)
		for se := range 2 {
			series := fmt.Sprintf("%s.%d", study, se)
			inst = append(inst, fakeInstance{alice, study, series, series + ".1", fmt.Sprintf("2024%02d01", 1+s)})
		}
	}
	f := &fakeOrigin{id: "TA", instances: inst}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	b.Cleanup(f.srv.Close)
	return f
}

// benchTrust is a trust a benchmark's proxy fronts: its id and DICOMweb root URL.
type benchTrust struct{ id, root string }

// originTrust is the fake origin o as a benchmark's trust.
func originTrust(o *fakeOrigin) benchTrust { return benchTrust{o.id, o.srv.URL + "/dicom-web"} }

// cachedHandler is the whole DICOMweb front, as serve mounts it, over trusts (in priority
// order) through an in-process cache that keeps searches and metadata fresh for an hour, with
// the given governance steps and audit recorder.
func cachedHandler(b *testing.B, auth policy.Authenticator, authz policy.Authorizer, rec audit.Recorder, trusts ...benchTrust) http.Handler {
	log := slog.New(slog.DiscardHandler)
	keyer, err := cache.NewKeyer(bytes.Repeat([]byte{1}, cache.MinKeyerSecret), "b:")
	if err != nil {
		b.Fatal(err)
	}
	store, err := cache.NewStore(cache.NewMemory(64<<20, time.Now), keyer, cache.StoreOptions{MaxRetention: 24 * time.Hour, Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	locatorStore, err := cache.NewLocalStore(1<<20, nil, cache.StoreOptions{MaxRetention: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	opts := testSourceOptions(2 * time.Second)
	hour := cache.Freshness{Fresh: time.Hour, Stale: time.Hour}
	opts.Cache = upstream.CacheOptions{Store: store, Search: hour, Metadata: hour}
	var sources []*upstream.Source
	for i, t := range trusts {
		u, err := url.Parse(t.root)
		if err != nil {
			b.Fatal(err)
		}
		sources = append(sources, upstream.NewSource(upstream.SourceConfig{ID: t.id, Name: t.id + " Trust", BaseURL: u, Priority: i + 1, Timeout: 2 * time.Second}, opts, log))
	}
	srv := New(testConfig("https://nirproxy.example"), Deps{
		Locator: upstream.NewLocator(sources, locatorStore, time.Minute, log),
		Signer:  NewSigner([]byte("0123456789abcdef0123456789abcdef"), time.Hour, nil),
		Auth:    auth, Authz: authz, Audit: rec, Log: log,
	})
	e := echo.New()
	srv.Register(e)
	return e
}

// governance is nirproxy's real governance over acc's issuer and registry, as serve wires it:
// the authenticator (verified tokens cached for five minutes, at most cacheSize of them), then
// the onboarding rules, then rate limits far above what the benchmark sends, counted in
// process.
func governance(b *testing.B, acc *devaccess.Access, cacheSize int) (*authn.Authenticator, policy.Authorizer) {
	log := slog.New(slog.DiscardHandler)
	an, err := authn.New(context.Background(), authn.Config{
		Issuers: []authn.Options{{
			Issuer: acc.Issuer().URL(), Discovery: true, Audiences: []string{devissuer.DefaultAudience},
			Algorithms: []string{acc.Issuer().Algorithm()}, ClockSkew: time.Minute,
			KeyRefresh: 5 * time.Minute, KeyMaxAge: time.Hour, Profile: authn.ProfileIUA,
		}},
		CacheTTL: 5 * time.Minute, CacheSize: cacheSize, Clock: time.Now,
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = an.Close(context.Background()) })
	registry, err := authz.OpenRegistryFile(acc.RegistryPath(), log)
	if err != nil {
		b.Fatal(err)
	}
	rules, err := authz.NewAuthorizer(registry, authz.Rules{RoleActions: authz.DefaultRoleActions(), DSPTYear: authz.DefaultDSPTYear()}, time.Now, log)
	if err != nil {
		b.Fatal(err)
	}
	// A million a second with a burst of a second's worth: at a billion a second the burst spans
	// a millisecond, and a request that reads the clock and then waits longer than that for the
	// limiter's lock (16 clients on 2 cores) was refused.
	unlimited := ratelimit.Rate{Requests: 1_000_000, Period: time.Second, Burst: 1_000_000}
	limits, err := ratelimit.New(ratelimit.Config{
		User: unlimited, Organisation: unlimited, Patients: ratelimit.PatientLimit{Patients: 50, Window: time.Hour},
		KeySecret: bytes.Repeat([]byte{2}, ratelimit.MinKeySecret), KeyPrefix: "b:rl:", MaxKeys: 100_000, Clock: time.Now,
	}, nil, log)
	if err != nil {
		b.Fatal(err)
	}
	return an, policy.Authorizers{rules, ratelimit.NewGuard(limits, log)}
}

// searchOnce sends the benchmark's search to h with the given bearer token ("" for none) and
// returns the answer, failing b on any status but 200.
func searchOnce(b *testing.B, h http.Handler, token string) *httptest.ResponseRecorder {
	rec, err := getOnce(h, authBenchPath, "application/dicom+json", token)
	if err != nil {
		b.Fatalf("search: %v", err)
	}
	return rec
}

// getOnce sends a GET of path to h accepting accept, with the given bearer token ("" for
// none), and returns the answer, or an error for any status but 200.
func getOnce(h http.Handler, path, accept, token string) (*httptest.ResponseRecorder, error) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Accept", accept)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return rec, fmt.Errorf("status %d: %.300s", rec.Code, rec.Body.Bytes())
	}
	return rec, nil
}

// authBenchFront is one front of the benchmark: its handler and the bearer tokens its requests
// send in turn (none when empty).
type authBenchFront struct {
	h      http.Handler
	tokens []string
	sent   int
}

// search sends the benchmark's search with the front's next token.
func (f *authBenchFront) search(b *testing.B) *httptest.ResponseRecorder {
	token := ""
	if len(f.tokens) > 0 {
		token = f.tokens[f.sent%len(f.tokens)]
	}
	f.sent++
	return searchOnce(b, f.h, token)
}

// BenchmarkCachedSearchAuth is a repeated study search answered from the in-process cache,
// through the whole handler (middleware, routing, governance, cache, answer writing; no
// network), with authentication off (policy.AllowAll) and on (a development issuer's IUA token
// verified by policy/authn, the onboarding rules of policy/authz over a registry file, and
// policy/ratelimit's counts). With auth=on the verified token is cached, as for a viewer's
// repeated requests; auth=on,token=new verifies the token's signature on every request (two
// tokens taking turns in a token cache of one), as for a caller's first request. Audit is
// discarded in every case.
//
// auth=off+on sends one search with authentication off and one with it on in each iteration,
// in alternating order, and reports each one's time and the ratio of their throughputs
// (on/off): both see the same machine at the same moments, so the ratio holds on a machine
// whose load changes, where the ratio of two sub-benchmarks run one after the other does not.
//
// Before measuring, each front is checked to give auth=off's answer (10 studies); after, to
// have sent nothing to the trust: every measured answer came from the cache.
func BenchmarkCachedSearchAuth(b *testing.B) {
	acc, err := devaccess.Start(devaccess.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = acc.Close() })
	origin := authBenchOrigin(b)
	token, err := acc.Token(devaccess.Clinician)
	if err != nil {
		b.Fatal(err)
	}
	other, err := acc.Issuer().Mint(devaccess.Clinician.Claims())
	if err != nil {
		b.Fatal(err)
	}
	off := &authBenchFront{h: cachedHandler(b, policy.AllowAll{}, policy.AllowAll{}, audit.Discard{}, originTrust(origin))}
	an, az := governance(b, acc, 10_000)
	on := &authBenchFront{h: cachedHandler(b, an, az, audit.Discard{}, originTrust(origin)), tokens: []string{token}}
	an, az = governance(b, acc, 1)
	first := &authBenchFront{h: cachedHandler(b, an, az, audit.Discard{}, originTrust(origin)), tokens: []string{token, other}}

	// The first requests fill each cache (and fetch the issuer's keys).
	var want []byte
	for _, f := range []*authBenchFront{off, on, first} {
		var body []byte
		for range 2 {
			body = f.search(b).Body.Bytes()
		}
		if list, err := dcmjson.Decode(body); err != nil || len(list) != authBenchStudies {
			b.Fatalf("search answered %d studies, want %d (%v)", len(list), authBenchStudies, err)
		}
		if want == nil {
			want = body
		} else if !bytes.Equal(body, want) {
			b.Fatalf("the answer differs from auth=off's:\n%s\nwant\n%s", body, want)
		}
	}
	calls := origin.calls.Load()
	b.Cleanup(func() {
		if n := origin.calls.Load() - calls; n != 0 {
			b.Errorf("the measured searches sent %d requests to the trust; every one must be answered from the cache", n)
		}
	})

	for _, tc := range []struct {
		name string
		f    *authBenchFront
	}{{"auth=off", off}, {"auth=on", on}, {"auth=on,token=new", first}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tc.f.search(b)
			}
		})
	}
	b.Run("auth=off+on", func(b *testing.B) {
		b.ReportAllocs()
		var spent [2]time.Duration
		fronts := [2]*authBenchFront{off, on}
		i := 0
		for b.Loop() {
			for k := range 2 {
				j := (i + k) % 2
				start := time.Now()
				fronts[j].search(b)
				spent[j] += time.Since(start)
			}
			i++
		}
		b.ReportMetric(float64(spent[0].Nanoseconds())/float64(i), "off-ns/search")
		b.ReportMetric(float64(spent[1].Nanoseconds())/float64(i), "on-ns/search")
		b.ReportMetric(float64(spent[0])/float64(spent[1]), "on/off")
	})
}

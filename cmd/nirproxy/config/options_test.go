package config

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/policy/audit/dicomaudit"
	"github.com/nirproxy/nirproxy/policy/audit/fhir"
	"github.com/nirproxy/nirproxy/policy/audit/forward"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
	"github.com/nirproxy/nirproxy/policy/ratelimit"
	"github.com/nirproxy/nirproxy/upstream"
)

// TestDefaultsAreComplete checks that the defaults, turned into upstream's and cache's settings,
// are complete: those packages have no defaults of their own, and refuse settings with one
// missing.
func TestDefaultsAreComplete(t *testing.T) {
	cfg := validConfig()
	withRedis(&cfg)
	log := slog.New(slog.DiscardHandler)
	st, err := cache.NewLocalStore(1<<20, nil, cache.StoreOptions{MaxRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Sources {
		src, err := s.UpstreamSource()
		if err != nil {
			t.Fatalf("UpstreamSource(%s): %v", s.ID, err)
		}
		opts := s.UpstreamOptions()
		opts.Cache = cfg.Cache.SourceCache(st)
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("upstream.NewSource refused the defaults of %s: %v", s.ID, r)
				}
			}()
			upstream.NewSource(src, opts, log)
		}()
	}
	sealer, err := cache.NewSealer([][]byte{make([]byte, cache.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := cache.NewRedis(cfg.Cache.RedisOptions(), sealer, log)
	if err != nil {
		t.Fatalf("cache.NewRedis refused the defaults: %v", err)
	}
	r.Close()
	client := cfg.Cache.RedisOptions().NewClient()
	defer client.Close()
	store, err := ratelimit.NewRedis(client, cfg.Cache.RateLimitRedis(), log)
	if err != nil {
		t.Fatalf("ratelimit.NewRedis refused the defaults: %v", err)
	}
	if _, err := ratelimit.New(cfg.RateLimiter("np:rl:", nil, time.Now), store, log); err != nil {
		t.Fatalf("ratelimit.New refused the defaults with rateLimit.keySecret set: %v", err)
	}
	cfg.RateLimit.KeySecret = ""
	if _, err := ratelimit.New(cfg.RateLimiter("np:rl:", make([]byte, ratelimit.MinKeySecret), time.Now), nil, log); err != nil {
		t.Fatalf("ratelimit.New refused the defaults with a secret made for the process: %v", err)
	}
	cfg.Audit.SpoolDir = t.TempDir()
	if cfg.Audit.SpoolOptions(time.Now).Keys == nil {
		t.Error("the spool is opened without its index by patient: the access report would read every segment")
	}
	sp, err := spool.Open(cfg.Audit.SpoolOptions(time.Now), log)
	if err != nil {
		t.Fatalf("spool.Open refused the defaults: %v", err)
	}
	defer sp.Close()
	fw, err := forward.New(sp, nil, cfg.Audit.ForwardOptions(time.Now), log)
	if err != nil {
		t.Fatalf("forward.New refused the defaults: %v", err)
	}
	fw.Close()
	so, err := cfg.PARSSink(nil)
	if err != nil {
		t.Fatalf("PARSSink: %v", err)
	}
	if _, err := fhir.NewSink(so, log); err != nil {
		t.Fatalf("fhir.NewSink refused the defaults: %v", err)
	}
	cfg.Audit.ATNA.Address, cfg.Audit.ATNA.SourceID = "atna.example.nhs.uk:6514", "NIRPROXY"
	atna, err := dicomaudit.NewSink(cfg.ATNASink(), log)
	if err != nil {
		t.Fatalf("dicomaudit.NewSink refused the defaults: %v", err)
	}
	atna.Close()
}

// TestUpstreamSource checks that a source's keys reach upstream's description of it.
func TestUpstreamSource(t *testing.T) {
	s := DefaultSource()
	s.ID, s.Name, s.URL, s.Priority, s.Required = "RXA", "A", "http://pacs.example/dicom-web/", 7, true
	s.Auth = Auth{Type: AuthBasic, Username: "u", Password: "p"}
	s.PatientID = PatientID{Attribute: AttributeOtherPatientIDsSequence, Issuer: "NHS"}
	got, err := s.UpstreamSource()
	if err != nil {
		t.Fatal(err)
	}
	want := upstream.SourceConfig{ID: "RXA", Name: "A", BaseURL: got.BaseURL, Priority: 7, Timeout: 10 * time.Second, Required: true,
		Auth:      upstream.Auth{Type: upstream.AuthBasic, Username: "u", Password: "p"},
		PatientID: upstream.InOtherPatientIDsSequence, PatientIDIssuer: "NHS"}
	got.TLS = nil // TestUpstreamSourceTLS checks it.
	if got.BaseURL.String() != "http://pacs.example/dicom-web" || got != want {
		t.Errorf("UpstreamSource = %+v (url %s), want %+v", got, got.BaseURL, want)
	}
	s.URL = "http://pacs.example/%zz"
	if _, err := s.UpstreamSource(); err == nil {
		t.Error("UpstreamSource of an unparsable URL succeeded")
	}
}

package ratelimit

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/orthanc"
	"github.com/nirproxy/nirproxy/test/pacssim"
	"github.com/nirproxy/nirproxy/test/redisserver"
)

// replicaLimit is the requests per hour each user may make in TestLimitsAcrossReplicas: small,
// and over a period long enough that none is given back while the test runs.
const replicaLimit = 6

// replicas is two nirproxy processes behind one (imagined) load balancer, sharing one real
// Redis, one token issuer and one registry, over one demo trust.
type replicas struct {
	proxies []*orthanc.Proxy
	access  *devaccess.Access
}

// startReplicas starts the trust, redis-server and two `nirproxy serve` with small limits.
func startReplicas(t *testing.T) *replicas {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	bin, err := orthanc.BuildProxy(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	trusts, err := pacssim.DemoTrusts()
	if err != nil {
		t.Fatal(err)
	}
	root, stop, err := trusts[0].Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	redis := redisserver.StartT(t, redisserver.Options{})
	acc, err := devaccess.Start(devaccess.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acc.Close() })
	secret := func(b byte) string {
		return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune(b)), 32)))
	}
	extra := map[string]any{
		"cache": map[string]any{"keySecret": secret('k'), "encryptionKeys": []string{secret('e')}, "redis": map[string]any{"addrs": []string{redis.Addr()}}},
		"rateLimit": map[string]any{
			"user":         map[string]any{"requests": replicaLimit, "period": "1h", "burst": replicaLimit},
			"organisation": map[string]any{"requests": 1000, "period": "1m", "burst": 1000},
			"patients":     map[string]any{"patients": 1, "window": "1h"},
			"keySecret":    secret('r'),
		},
	}
	r := &replicas{access: acc}
	for range 2 {
		p, err := orthanc.StartProxy(ctx, orthanc.ProxyOptions{
			Binary:  bin,
			Sources: []orthanc.ProxySource{{ID: trusts[0].ID, Name: trusts[0].Name, URL: root + "/dicom-web"}},
			Extra:   extra,
			Access:  acc,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				log, _ := p.Log()
				t.Logf("nirproxy log:\n%s", log)
			}
			p.Stop()
		})
		r.proxies = append(r.proxies, p)
	}
	return r
}

// get asks proxy i for path as persona p and returns the status, Retry-After and body.
func (r *replicas) get(t *testing.T, i int, path string, p devaccess.Persona) (int, string, string) {
	t.Helper()
	resp, err := r.access.Get(t.Context(), r.proxies[i].URL+path, p)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
}

// TestLimitsAcrossReplicas: two replicas sharing a real Redis count a user's requests together,
// so a user spreading requests over both gets its limit once, not twice: the request after the
// limit is refused with 429 and a Retry-After, at whichever replica, and another user of the
// same organisation is not affected.
func TestLimitsAcrossReplicas(t *testing.T) {
	r := startReplicas(t)
	search := "/dicom-web/studies?PatientID=" + pacssim.DemoPatientNHSNumber
	for i := range replicaLimit {
		if status, _, body := r.get(t, i%2, search, devaccess.Clinician); status != http.StatusOK {
			t.Fatalf("request %d of %d, at replica %d: %d %s", i+1, replicaLimit, i%2, status, body)
		}
	}
	for i := range 2 {
		status, retry, body := r.get(t, i, search, devaccess.Clinician)
		secs, err := strconv.Atoi(retry)
		if status != http.StatusTooManyRequests || err != nil || secs < 1 || !strings.Contains(body, "more requests than its limit allows") {
			t.Fatalf("over the limit, at replica %d: %d, Retry-After %q, %s; want 429 with a Retry-After", i, status, retry, body)
		}
	}
	if status, _, body := r.get(t, 1, search, devaccess.BreakGlass); status != http.StatusOK {
		t.Fatalf("another user of the organisation: %d %s; want 200", status, body)
	}
}

// TestPatientLimitAcrossReplicas: the distinct-patient limit (one patient here) is shared too: a
// user who opened one patient at one replica is refused a second patient at the other, with
// 429, a Retry-After and a security event in that replica's log that names neither patient;
// the patient already opened stays available.
func TestPatientLimitAcrossReplicas(t *testing.T) {
	r := startReplicas(t)
	first := "/dicom-web/studies?PatientID=" + pacssim.DemoPatientNHSNumber
	second := "/dicom-web/studies?PatientID=" + pacssim.DemoSecondPatientNHSNumber
	if status, _, body := r.get(t, 0, first, devaccess.Clinician); status != http.StatusOK {
		t.Fatalf("first patient: %d %s", status, body)
	}
	status, retry, body := r.get(t, 1, second, devaccess.Clinician)
	if status != http.StatusTooManyRequests || retry == "" || !strings.Contains(body, "different patients") {
		t.Fatalf("second patient at the other replica: %d, Retry-After %q, %s; want 429 of the distinct-patient limit", status, retry, body)
	}
	if status, _, body := r.get(t, 1, first, devaccess.Clinician); status != http.StatusOK {
		t.Fatalf("the patient already opened, at the other replica: %d %s; want 200", status, body)
	}
	log, err := r.proxies[1].Log()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "security event: distinct-patient limit reached") {
		t.Errorf("replica 1 logged no security event for the refused patient")
	}
	for _, nhs := range []string{pacssim.DemoPatientNHSNumber, pacssim.DemoSecondPatientNHSNumber} {
		if strings.Contains(string(log), nhs) {
			t.Errorf("replica 1's log names a patient")
		}
	}
}

//go:build linux

package forward_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/dicomaudit"
	"github.com/nirproxy/nirproxy/policy/audit/fhir"
	"github.com/nirproxy/nirproxy/policy/audit/forward"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// benchRecords is how many records each round of BenchmarkForward forwards.
const benchRecords = 5000

// BenchmarkForward measures how many records a second one sink takes from a spool on disk: a
// sink that takes each record at once (the forwarder and the spool alone), the real FHIR sink
// posting to an httptest server that answers 201 at once (8 records in flight, as configured
// by default, and one), and the real DICOM audit sink writing to a TLS syslog listener that
// reads and drops. Each round forwards benchRecords
// records, appended beforehand, to a new cursor and ends when the forwarder is closed (which
// persists what was acknowledged); records/s is over all rounds. The spool is on disk, not
// tmpfs, whose fsync returns at once; measure on the disk the spool will use.
func BenchmarkForward(b *testing.B) {
	sp := benchSpool(b)
	sinks := []struct {
		name     string
		make     func(b *testing.B, name string) forward.Sink
		inFlight int
	}{
		{"instant", func(_ *testing.B, name string) forward.Sink { return instantSink(name) }, 1},
		{"fhir", benchFHIRSink, 8},
		{"fhir-one-in-flight", benchFHIRSink, 1},
		{"syslog", benchSyslogSink, 1},
	}
	round := 0 // numbers the cursors, new in every round
	for _, s := range sinks {
		b.Run(s.name, func(b *testing.B) {
			b.ResetTimer()
			for range b.N {
				round++
				name := fmt.Sprintf("%s-%d", s.name, round)
				forwardAll(b, sp, &countingSink{Sink: s.make(b, name), want: benchRecords, done: make(chan struct{})}, s.inFlight)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*benchRecords)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// forwardAll forwards the first benchRecords records of sp to sink, with up to inFlight
// records in flight when it is concurrent.
func forwardAll(b *testing.B, sp *spool.Spool, sink *countingSink, inFlight int) {
	opts := forward.Options{
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, SendTimeout: 10 * time.Second,
		RejectAttempts: 1, MaxLag: 1 << 40, MaxLagAge: time.Hour,
		// As nirproxy's configuration has them by default.
		AckEvery: 1000, AckInterval: time.Second, MaxInFlight: inFlight, Clock: time.Now,
	}
	fw, err := forward.New(sp, []forward.Sink{sink}, opts, nil)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.Run(context.Background()) }()
	select {
	case <-sink.done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("%s took %d of %d records in two minutes", sink.Name(), sink.n.Load(), benchRecords)
	}
	if err := fw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if c, ok := sink.Sink.(io.Closer); ok {
		c.Close()
	}
}

// benchSpool opens a spool on disk holding benchRecords records of searches.
func benchSpool(b *testing.B) *spool.Spool {
	dir := b.TempDir()
	if onTmpfs(dir) {
		base := filepath.Join("..", "..", "..", "test", ".cache")
		if err := os.MkdirAll(base, 0o755); err != nil {
			b.Fatal(err)
		}
		var err error
		if dir, err = os.MkdirTemp(base, "forward-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(dir) })
	}
	sp, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 64 << 20, MaxBytes: 10 << 30, Clock: time.Now}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sp.Close() })
	// Appended by many at once, so that records share the spool's fsyncs.
	next := make(chan int)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := range next {
				data, err := audit.Encode(benchEvent(i))
				if err == nil {
					_, err = sp.Append(context.Background(), data)
				}
				if err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range benchRecords {
		next <- i
	}
	close(next)
	wg.Wait()
	return sp
}

// benchEvent is a clinician's search that found one patient, as the proxy records it.
func benchEvent(i int) audit.Event {
	return audit.Event{
		Version: audit.EventVersion, Time: time.Date(2026, 12, 3, 9, 30, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		RequestID: fmt.Sprintf("req-%06d", i), User: "555021935107", Issuer: "https://am.nhsidentity.spineservices.nhs.uk/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare",
		TokenID: "jti-1", Role: "R8000", Organisation: "RR8", System: "leeds-viewer", Purpose: "TREAT", PurposeSource: "token",
		ClientAddress: "192.0.2.7", Action: audit.ActionSearch, Resource: "/dicom-web/studies", PatientID: "9434765919",
		StudyUIDs: []string{"1.2.826.0.1.3680043.8.498.1"}, Outcome: audit.OutcomeSuccess, Status: 200, Sources: []string{"RXA"},
	}
}

// countingSink passes records to its Sink and closes done once want of them were taken.
type countingSink struct {
	forward.Sink
	want int64
	n    atomic.Int64
	done chan struct{}
}

func (s *countingSink) Send(ctx context.Context, rec spool.Record, e audit.Event) error {
	if err := s.Sink.Send(ctx, rec, e); err != nil {
		return err
	}
	if s.n.Add(1) == s.want {
		close(s.done)
	}
	return nil
}

// Concurrent is its Sink's, so that the forwarder sends to it as to its Sink.
func (s *countingSink) Concurrent() bool {
	c, ok := s.Sink.(forward.ConcurrentSink)
	return ok && c.Concurrent()
}

// instantSink takes every record at once.
type instantSink string

func (s instantSink) Name() string { return string(s) }

func (instantSink) Send(context.Context, spool.Record, audit.Event) error { return nil }

// benchFHIRSink is the FHIR sink posting to an httptest server that reads each request and
// answers 201.
func benchFHIRSink(b *testing.B, name string) forward.Sink {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	}))
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	s, err := fhir.NewSink(fhir.SinkOptions{
		Name: name, BaseURL: srv.URL, Client: client, Timeout: 10 * time.Second,
		Event: fhir.Options{
			Observer:       fhir.Identifier{System: "https://fhir.nhs.uk/Id/accredited-system", Value: "200000001234"},
			SystemIDSystem: "https://fhir.nhs.uk/Id/product-id",
		},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchSyslogSink is the DICOM audit sink writing to a TLS listener that reads and drops
// what it is sent.
func benchSyslogSink(b *testing.B, name string) forward.Sink {
	cert, caFile := benchCert(b)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	s, err := dicomaudit.NewSink(dicomaudit.SinkOptions{
		Name: name, Address: ln.Addr().String(), CAFile: caFile, ServerName: "localhost", Hostname: "nirproxy.test",
		Message: dicomaudit.Options{SourceID: "nirproxy@bench"},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchCert is a self-signed certificate for localhost and the file of its PEM.
func benchCert(b *testing.B) (tls.Certificate, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	caFile := filepath.Join(b.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

// onTmpfs reports whether dir is on tmpfs, whose fsync returns at once.
func onTmpfs(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == tmpfsMagic
}

// tmpfsMagic is tmpfs's filesystem type in statfs(2).
const tmpfsMagic = 0x01021994

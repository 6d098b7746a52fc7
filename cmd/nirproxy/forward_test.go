package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/pacssim"
	"github.com/nirproxy/nirproxy/test/rsyslogserver"
	"github.com/nirproxy/nirproxy/test/testpki"
)

// fakePARS is a FHIR server's AuditEvent endpoint that can be down (503), and keeps the
// AuditEvents it took, by id, with the request id each names.
type fakePARS struct {
	mu       sync.Mutex
	down     bool
	attempts int
	took     map[string][]string // AuditEvent id -> the transaction (request) ids it named, once per acceptance
	changed  chan struct{}
}

func newFakePARS() *fakePARS {
	return &fakePARS{took: map[string][]string{}, changed: make(chan struct{}, 1000)}
}

func (p *fakePARS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	defer func() {
		p.mu.Unlock()
		p.changed <- struct{}{}
	}()
	p.attempts++
	if p.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var ev struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Entity       []struct {
			What struct {
				Identifier struct{ System, Value string } `json:"identifier"`
			} `json:"what"`
		} `json:"entity"`
	}
	if r.Method != http.MethodPost || r.URL.Path != "/fhir/AuditEvent" || json.Unmarshal(body, &ev) != nil || ev.ResourceType != "AuditEvent" || ev.ID == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, e := range ev.Entity {
		if e.What.Identifier.System == "https://fhir.nhs.uk/Id/transaction" {
			p.took[ev.ID] = append(p.took[ev.ID], e.What.Identifier.Value)
		}
	}
	w.WriteHeader(http.StatusCreated)
}

// state is what the fake has had: attempts, and the request ids taken.
func (p *fakePARS) state() (attempts int, requests map[string]int, ids map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	requests, ids = map[string]int{}, map[string]int{}
	for id, txs := range p.took {
		ids[id] = len(txs)
		for _, tx := range txs {
			requests[tx]++
		}
	}
	return p.attempts, requests, ids
}

// TestAuditForwardedToPARS: the records of a clinician's accesses reach PARS as AuditEvents;
// while PARS answers 503 nothing is lost, and once it is back it takes every record, each once
// by id, naming each request.
func TestAuditForwardedToPARS(t *testing.T) {
	pars := newFakePARS()
	pars.down = true
	srv := httptest.NewServer(pars)
	defer srv.Close()
	r := newAccessRigWith(t, time.Now, func(c *config.Config) {
		c.Audit.PARS.URL, c.Audit.PARS.Observer = srv.URL+"/fhir", "200000001234"
		c.Audit.Forward.MinBackoff, c.Audit.Forward.MaxBackoff = config.Duration(5*time.Millisecond), config.Duration(20*time.Millisecond)
	})
	token, err := r.iss.Mint(devaccess.Clinician.Claims())
	if err != nil {
		t.Fatal(err)
	}
	var sent []string
	for _, path := range []string{
		"/dicom-web/studies?PatientID=" + pacssim.DemoPatientNHSNumber,
		"/dicom-web/studies/" + pacssim.DemoSharedStudyUID + "/series",
		"/dicom-web/studies/" + pacssim.DemoSharedStudyUID + "/metadata",
	} {
		req, _ := http.NewRequest(http.MethodGet, r.proxy.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := r.proxy.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		sent = append(sent, resp.Header.Get("X-Request-Id"))
	}
	// PARS is down: wait until the forwarder has tried more than once, then bring it back.
	for attempts, _, _ := pars.state(); attempts < 2; attempts, _, _ = pars.state() {
		<-pars.changed
	}
	pars.mu.Lock()
	pars.down = false
	pars.mu.Unlock()
	for {
		_, requests, ids := pars.state()
		if len(requests) == len(sent) {
			for _, id := range sent {
				if requests[id] != 1 {
					t.Errorf("request %s reached PARS %d times; want once", id, requests[id])
				}
			}
			for id, n := range ids {
				if n != 1 {
					t.Errorf("AuditEvent %s was taken %d times; want once", id, n)
				}
			}
			return
		}
		select {
		case <-pars.changed:
		case <-t.Context().Done():
			t.Fatalf("PARS took %v; want the records of %v", requests, sent)
		}
	}
}

// TestAuditForwardedToATNA: with audit.atna set, serve sends the record of a clinician's search
// to a real rsyslog over mutual TLS as a DICOM Query audit message (RFC 5424, MSGID
// IHE+RFC-3881) naming the request.
func TestAuditForwardedToATNA(t *testing.T) {
	ca := testpki.NewCA(t, "ATNA test CA")
	rs := rsyslogserver.StartT(t, rsyslogserver.Options{CA: ca, ClientAuth: true})
	dir := t.TempDir()
	caFile, _ := ca.WriteFiles(t, dir, "ca")
	certFile, keyFile := ca.Client(t, "nirproxy.test").WriteFiles(t, dir, "client")
	r := newAccessRigWith(t, time.Now, func(c *config.Config) {
		c.Audit.ATNA.Address, c.Audit.ATNA.SourceID, c.Audit.ATNA.Hostname = rs.Addr(), "nirproxy@nirproxy.test", "nirproxy.test"
		c.Audit.ATNA.TLS = config.SourceTLS{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}
	})
	token, err := r.iss.Mint(devaccess.Clinician.Claims())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, r.proxy.URL+"/dicom-web/studies?PatientID="+pacssim.DemoPatientNHSNumber, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := r.proxy.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("X-Request-Id")
	msgs := rs.WaitFor(t, time.Minute, func(ms []rsyslogserver.Message) bool {
		return slices.ContainsFunc(ms, func(m rsyslogserver.Message) bool { return bytes.Contains(m.Msg, []byte(id)) })
	})
	for _, m := range msgs {
		if !bytes.Contains(m.Msg, []byte(id)) {
			continue
		}
		if m.PRI != "85" || m.Version != "1" || m.MsgID != "IHE+RFC-3881" || !bytes.Contains(m.Msg, []byte(`csd-code="110112"`)) || !bytes.Contains(m.Msg, []byte(pacssim.DemoPatientNHSNumber)) {
			t.Errorf("the search's message: PRI %s, version %s, MSGID %s, %.600s; want <85>1 IHE+RFC-3881, a Query (110112) naming the patient", m.PRI, m.Version, m.MsgID, m.Msg)
		}
	}
}

// Package atna_test sends audit events to a real rsyslog (Debian's rsyslogd with GnuTLS,
// test/rsyslogserver) through the DICOM audit sink, as an IHE ATNA repository would receive
// them: syslog over TLS with a client certificate, each message checked as RFC 5424 by
// rsyslog's parser and as a DICOM audit message (PS3.15 A.5) by the test.
package atna_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/dicomaudit"
	"github.com/nirproxy/nirproxy/policy/audit/forward"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
	"github.com/nirproxy/nirproxy/test/auditschema"
	"github.com/nirproxy/nirproxy/test/rsyslogserver"
	"github.com/nirproxy/nirproxy/test/testpki"
)

const (
	nhsNumber = "9434765919"
	cis2      = "https://am.nhsidentity.spineservices.nhs.uk/openam/oauth2/realms/root/realms/oidc"
	// waitLimit bounds each wait for rsyslogd to write what it received; generous for -race on
	// two busy cores.
	waitLimit = 60 * time.Second
)

// repository is a started rsyslogd and a sink that sends to it.
type repository struct {
	rs   *rsyslogserver.Server
	sink *dicomaudit.Sink
}

// startRepository starts rsyslogd requiring client certificates of a new CA, and a sink that
// trusts that CA and presents one.
func startRepository(t *testing.T) repository {
	t.Helper()
	ca := testpki.NewCA(t, "ATNA test CA")
	rs := rsyslogserver.StartT(t, rsyslogserver.Options{CA: ca, ClientAuth: true})
	dir := t.TempDir()
	caFile, _ := ca.WriteFiles(t, dir, "ca")
	certFile, keyFile := ca.Client(t, "nirproxy.test").WriteFiles(t, dir, "client")
	sink, err := dicomaudit.NewSink(dicomaudit.SinkOptions{
		Name: "atna", Address: rs.Addr(), CAFile: caFile, CertFile: certFile, KeyFile: keyFile, Hostname: "nirproxy.test",
		DialTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxMessageSize: 32768,
		Message: dicomaudit.Options{SourceID: "nirproxy@nirproxy.test", SiteID: "RR8", AETitle: "NIRPROXY"},
	}, slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	return repository{rs: rs, sink: sink}
}

// event is a CIS2 clinician's access by the given action with the given outcome, under a
// request id of its own.
func event(requestID, action, outcome string) audit.Event {
	e := audit.Event{
		Version: audit.EventVersion, Time: time.Now().UTC().Truncate(time.Millisecond), RequestID: requestID,
		User: "555021935107", Issuer: cis2, TokenID: "jti-" + requestID, Role: "R8000", Organisation: "RR8",
		System: "leeds-viewer", Purpose: "TREAT", ClientAddress: "127.0.0.1",
		Action: action, Resource: "/dicom-web/studies/{study}", PatientID: nhsNumber,
		StudyUIDs: []string{"1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"},
		Outcome:   outcome, Status: 200,
	}
	switch outcome {
	case audit.OutcomeRefused:
		e.Status, e.Rule = 403, "legitimate-relationship"
	case audit.OutcomeFailed:
		e.Status = 502
	case audit.OutcomePartial:
		e.Missing = []string{"RXB"}
	}
	if action == audit.ActionSearch {
		e.Resource, e.Query = "/dicom-web/studies", "PatientID="+nhsNumber
	}
	return e
}

// byRequest waits until rsyslogd has written a message naming each of the request ids, and
// returns the messages by request id (the last one of each).
func byRequest(t *testing.T, rs *rsyslogserver.Server, ids []string) map[string]rsyslogserver.Message {
	t.Helper()
	found := map[string]rsyslogserver.Message{}
	rs.WaitFor(t, waitLimit, func(msgs []rsyslogserver.Message) bool {
		clear(found)
		for _, m := range msgs {
			for _, id := range ids {
				if bytes.Contains(m.Msg, []byte(`ParticipantObjectID="`+id+`"`)) {
					found[id] = m
				}
			}
		}
		return len(found) == len(ids)
	})
	return found
}

// parse checks m as the ATNA syslog message of a DICOM audit message and reads the XML.
func parse(t *testing.T, m rsyslogserver.Message) dicomaudit.AuditMessage {
	t.Helper()
	if m.PRI != "85" || m.Version != "1" || m.Hostname != "nirproxy.test" || m.AppName != "nirproxy" || m.MsgID != "IHE+RFC-3881" {
		t.Errorf("header PRI %s version %s HOSTNAME %s APP-NAME %s MSGID %s; want 85 1 nirproxy.test nirproxy IHE+RFC-3881",
			m.PRI, m.Version, m.Hostname, m.AppName, m.MsgID)
	}
	body, ok := bytes.CutPrefix(m.Msg, []byte("\xef\xbb\xbf"))
	if !ok {
		t.Errorf("MSG does not start with the UTF-8 byte order mark: %.40q", m.Msg)
	}
	if err := auditschema.Check(body); err != nil {
		t.Fatalf("not a valid DICOM audit message: %v\n%s", err, body)
	}
	var am dicomaudit.AuditMessage
	if err := xml.Unmarshal(body, &am); err != nil {
		t.Fatal(err)
	}
	return am
}

// objectIDs are the IDs of the participant objects whose ID type is code.
func objectIDs(m dicomaudit.AuditMessage, code string) []string {
	var out []string
	for _, po := range m.ParticipantObjects {
		if po.ParticipantObjectIDTypeCode.Code == code {
			out = append(out, po.ParticipantObjectID)
		}
	}
	return out
}

// TestATNAMessagesReachRsyslog: every kind of access, with every outcome, reaches rsyslog as
// one RFC 5424 message whose MSG is a valid DICOM audit message with the event's codes, its
// outcome, its one patient and its studies.
func TestATNAMessagesReachRsyslog(t *testing.T) {
	repo := startRepository(t)
	cases := []struct {
		action, outcome  string
		event, indicator string
	}{
		{audit.ActionSearch, audit.OutcomeSuccess, dicomaudit.EventQuery, "0"},
		{audit.ActionSearch, audit.OutcomeRefused, dicomaudit.EventQuery, "8"},
		{audit.ActionRetrieve, audit.OutcomeSuccess, dicomaudit.EventBeginTransferring, "0"},
		{audit.ActionRetrieve, audit.OutcomePartial, dicomaudit.EventBeginTransferring, "0"},
		{audit.ActionBulkData, audit.OutcomeFailed, dicomaudit.EventBeginTransferring, "4"},
		{audit.ActionMetadata, audit.OutcomeSuccess, dicomaudit.EventInstancesAccessed, "0"},
		{audit.ActionRendered, audit.OutcomeRefused, dicomaudit.EventInstancesAccessed, "8"},
		{audit.ActionAuditRead, audit.OutcomeSuccess, dicomaudit.EventAuditLogUsed, "0"},
	}
	var ids []string
	for i, tc := range cases {
		id := fmt.Sprintf("atna-%d-%s-%s", i, tc.action, tc.outcome)
		ids = append(ids, id)
		rec := spool.Record{Seq: uint64(i + 1)}
		if err := repo.sink.Send(t.Context(), rec, event(id, tc.action, tc.outcome)); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	got := byRequest(t, repo.rs, ids)
	for i, tc := range cases {
		t.Run(ids[i], func(t *testing.T) {
			am := parse(t, got[ids[i]])
			ev := am.EventIdentification
			if ev.EventID.Code != tc.event || ev.EventID.CodeSystemName != "DCM" || ev.EventOutcomeIndicator != tc.indicator {
				t.Errorf("EventID %+v outcome %s, want %s (DCM) outcome %s", ev.EventID, ev.EventOutcomeIndicator, tc.event, tc.indicator)
			}
			if patients := objectIDs(am, "2"); !slices.Equal(patients, []string{nhsNumber}) {
				t.Errorf("patients %v, want the one NHS number", patients)
			}
			if studies := objectIDs(am, "110180"); len(studies) != 2 {
				t.Errorf("studies %v, want both", studies)
			}
			var requestor string
			for _, ap := range am.ActiveParticipants {
				if ap.UserIsRequestor {
					requestor += ap.UserID
				}
			}
			if requestor != "<555021935107@"+cis2+">" {
				t.Errorf("requestor %q, want the CIS2 user as <user@issuer>", requestor)
			}
		})
	}
}

// TestATNARedialsAfterRestart: rsyslogd killed and started again between records: the sink
// finds its connection gone and sends the next records on a new one, and none is lost.
func TestATNARedialsAfterRestart(t *testing.T) {
	repo := startRepository(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var ids []string
	for round := range 3 {
		for i := range 3 {
			id := fmt.Sprintf("restart-%d-%d", round, i)
			ids = append(ids, id)
			if err := repo.sink.Send(ctx, spool.Record{Seq: uint64(len(ids))}, event(id, audit.ActionRetrieve, audit.OutcomeSuccess)); err != nil {
				t.Fatalf("%s: %v", id, err)
			}
		}
		byRequest(t, repo.rs, ids)
		if err := repo.rs.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := repo.rs.Restart(ctx); err != nil {
			t.Fatal(err)
		}
	}
	byRequest(t, repo.rs, ids)
}

// TestATNAFromSpool: records appended to a spool reach rsyslog through the forwarder, each
// once, while rsyslog is killed and restarted under it.
func TestATNAFromSpool(t *testing.T) {
	repo := startRepository(t)
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(t.TempDir(), "spool"), SegmentBytes: 1 << 20, MaxBytes: 1 << 30, Clock: time.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	fw, err := forward.New(sp, []forward.Sink{repo.sink}, forward.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
		SendTimeout: 30 * time.Second, RejectAttempts: 3, MaxLag: 10000, MaxLagAge: 15 * time.Minute,
		AckEvery: 1000, AckInterval: time.Second, MaxInFlight: 8, Clock: time.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fw.Close() })
	done := make(chan error, 1)
	go func() { done <- fw.Run(t.Context()) }()

	var ids []string
	appendEvents := func(n int) {
		for range n {
			id := fmt.Sprintf("spooled-%02d", len(ids))
			ids = append(ids, id)
			b, err := audit.Encode(event(id, audit.ActionMetadata, audit.OutcomeSuccess))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sp.Append(t.Context(), b); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendEvents(10)
	byRequest(t, repo.rs, ids)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := repo.rs.Kill(); err != nil {
		t.Fatal(err)
	}
	appendEvents(10) // sent while the repository is down: retried until it is back
	if err := repo.rs.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	byRequest(t, repo.rs, ids)
	waitAcknowledged(t, sp, repo.sink.Name())

	msgs, err := repo.rs.Received()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		n := 0
		for _, m := range msgs {
			if bytes.Contains(m.Msg, []byte(`ParticipantObjectID="`+id+`"`)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s arrived %d times, want once", id, n)
		}
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil && !strings.Contains(err.Error(), "closed") {
		t.Errorf("Run = %v", err)
	}
}

// waitAcknowledged waits until the sink has acknowledged every record in the spool.
func waitAcknowledged(t *testing.T, sp *spool.Spool, sink string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for sp.Lag(sink) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d records not acknowledged after %v", sp.Lag(sink), waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

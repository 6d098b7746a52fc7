package hostile_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// governance records what the request path asked of the authorization and audit steps.
type governance struct {
	mu       sync.Mutex
	actions  []policy.Action
	events   []audit.Event
	auditErr error
}

func (g *governance) Authorize(_ context.Context, _ policy.Principal, a policy.Action) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.actions = append(g.actions, a)
	return nil
}

func (g *governance) Record(_ context.Context, e audit.Event) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.auditErr != nil {
		return g.auditErr
	}
	g.events = append(g.events, e)
	return nil
}

// take returns what was asked since the last take, and forgets it.
func (g *governance) take() ([]policy.Action, []audit.Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, e := g.actions, g.events
	g.actions, g.events = nil, nil
	return a, e
}

// honestTrusts starts pacssim's two trusts of the hostile study, neither misbehaving.
func honestTrusts(t *testing.T) (hostile, honest *pacssim.Trust, bases map[string]*url.URL) {
	t.Helper()
	hostile, honest, err := pacssim.HostileTrusts()
	if err != nil {
		t.Fatal(err)
	}
	bases = map[string]*url.URL{}
	for _, tr := range []*pacssim.Trust{hostile, honest} {
		root, stop, err := tr.Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		bases[tr.ID], _ = url.Parse(root + "/dicom-web")
	}
	return hostile, honest, bases
}

// TestEveryRouteAuthorizesAndRecordsOnce: each data route asks the authorization step once,
// for the patient or study it concerns, and records exactly one audit event naming it before
// it answers: the request path has one place for each, which access control and the patient
// audit attach to.
func TestEveryRouteAuthorizesAndRecordsOnce(t *testing.T) {
	hostile, honest, bases := honestTrusts(t)
	g := &governance{}
	p := newProxy(t, hostile, honest, bases, func(d *dicomweb.Deps) { d.Authz, d.Audit = g, g })
	for _, rt := range routes() {
		t.Run(rt.name, func(t *testing.T) {
			path := rt.path
			if path == "bulk" {
				path = p.bulkLink(t)
			}
			g.take()
			a := p.get(t, path, rt.accept)
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %.300s", a.status, a.body)
			}
			rt.want(t, a)
			actions, events := g.take()
			wantKind := "retrieve"
			if rt.kind == pacssim.KindSearch {
				wantKind = "search"
			}
			if len(actions) != 1 || actions[0].Kind != wantKind || actions[0].Resource == "" {
				t.Fatalf("authorization asked %+v; want one %s of its route", actions, wantKind)
			}
			if wantKind == "retrieve" && actions[0].StudyUID != pacssim.HostileStudyUID {
				t.Errorf("retrieve authorized for study %q; want %s", actions[0].StudyUID, pacssim.HostileStudyUID)
			}
			if wantKind == "search" && actions[0].PatientID != pacssim.HostilePatientNHSNumber {
				t.Errorf("search authorized for patient %q; want the one it names", actions[0].PatientID)
			}
			if len(events) != 1 {
				t.Fatalf("%d audit events; want exactly 1: %+v", len(events), events)
			}
			e := events[0]
			if e.Action != wantKind || e.Status != http.StatusOK || !slices.Contains(e.StudyUIDs, pacssim.HostileStudyUID) || len(e.Sources) == 0 || e.Resource != actions[0].Resource {
				t.Errorf("audit event %+v; want a %s of study %s, status 200, naming its trusts and route", e, wantKind, pacssim.HostileStudyUID)
			}
		})
	}
}

// TestAuditFailureRefusesEveryRoute: when the access cannot be recorded, every data route
// answers 503 saying so, with none of the patient's data.
func TestAuditFailureRefusesEveryRoute(t *testing.T) {
	hostile, honest, bases := honestTrusts(t)
	g := &governance{}
	p := newProxy(t, hostile, honest, bases, func(d *dicomweb.Deps) { d.Authz, d.Audit = g, g })
	for _, rt := range routes() {
		t.Run(rt.name, func(t *testing.T) {
			path := rt.path
			g.mu.Lock()
			g.auditErr = nil
			g.mu.Unlock()
			if path == "bulk" {
				path = p.bulkLink(t)
			}
			g.mu.Lock()
			g.auditErr = errors.New("spool unwritable")
			g.mu.Unlock()
			a := p.get(t, path, rt.accept)
			if a.status != http.StatusServiceUnavailable || !strings.Contains(string(a.body), "could not be audited") {
				t.Fatalf("status %d: %.300s; want 503 saying the access could not be audited", a.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" || strings.Contains(string(a.body), pacssim.HostileInstanceUID) {
				t.Fatalf("Content-Type %q, body %.300s; want an error body and none of the study", ct, a.body)
			}
		})
	}
}

package hostile_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// governance records what the request path asked of the authentication, authorization and
// audit steps, and refuses with the errors it is given.
type governance struct {
	mu                           sync.Mutex
	actions                      []policy.Action
	patientActions               []policy.Action
	events                       []audit.Event
	authnErr, authzErr, auditErr error
	// patientErr refuses AuthorizePatient alone; authzErr refuses it too.
	patientErr error
}

func (g *governance) Authenticate(*http.Request) (policy.Principal, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.authnErr != nil {
		return policy.Principal{}, g.authnErr
	}
	return policy.Principal{Subject: "555254242105", Role: "R8000", Organisation: "RXA", Purpose: "TREAT"}, nil
}

func (g *governance) Authorize(_ context.Context, p policy.Principal, a policy.Action) (policy.Grant, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.actions = append(g.actions, a)
	if g.authzErr != nil {
		return policy.Grant{}, g.authzErr
	}
	return policy.Grant{Purpose: p.Purpose, PurposeSource: "token", Organisation: p.Organisation}, nil
}

func (g *governance) AuthorizePatient(_ context.Context, _ policy.Principal, a policy.Action) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.patientActions = append(g.patientActions, a)
	if g.authzErr != nil {
		return g.authzErr
	}
	return g.patientErr
}

// refusePatient makes AuthorizePatient refuse with err from now on (nil lets it through).
func (g *governance) refusePatient(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.patientErr = err
}

// refuse makes the steps refuse with these errors from now on (nil lets them through).
func (g *governance) refuse(authn, authz, audit error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.authnErr, g.authzErr, g.auditErr = authn, authz, audit
}

func (g *governance) Healthy() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.auditErr
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

// take returns what was asked since the last take (Authorize's actions, AuthorizePatient's
// and the audit events), and forgets it.
func (g *governance) take() (actions, patientActions []policy.Action, events []audit.Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, pa, e := g.actions, g.patientActions, g.events
	g.actions, g.patientActions, g.events = nil, nil, nil
	return a, pa, e
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
// for the patient or study it concerns, asks the patient step once, for the patient the
// answer concerns (the one a search names, the one the locator knows a study by), and records
// exactly one audit event naming it before it answers: the request path has one place for
// each, which access control, the distinct-patient limit and the patient audit attach to.
func TestEveryRouteAuthorizesAndRecordsOnce(t *testing.T) {
	hostile, honest, bases := honestTrusts(t)
	g := &governance{}
	p := newProxy(t, hostile, honest, bases, func(d *dicomweb.Deps) { d.Auth, d.Authz, d.Audit = g, g, g })
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
			actions, patientActions, events := g.take()
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
			if len(patientActions) != 1 {
				t.Fatalf("the patient step was asked %d times (%+v); want once", len(patientActions), patientActions)
			}
			pa := patientActions[0]
			if pa.PatientID != pacssim.HostilePatientNHSNumber || pa.Kind != wantKind || pa.Resource != actions[0].Resource || pa.StudyUID != actions[0].StudyUID {
				t.Errorf("the patient step was asked %+v; want a %s of patient %s on the route and study authorized (%+v)", pa, wantKind, pacssim.HostilePatientNHSNumber, actions[0])
			}
			if len(events) != 1 {
				t.Fatalf("%d audit events; want exactly 1: %+v", len(events), events)
			}
			e := events[0]
			if e.Action != auditActions[rt.kind] || e.Status != http.StatusOK || e.Outcome != audit.OutcomeSuccess || !slices.Contains(e.StudyUIDs, pacssim.HostileStudyUID) || len(e.Sources) == 0 || e.Resource != actions[0].Resource {
				t.Errorf("audit event %+v; want a successful %s of study %s, status 200, naming its trusts and route", e, auditActions[rt.kind], pacssim.HostileStudyUID)
			}
			if e.PatientID != pacssim.HostilePatientNHSNumber || e.User != "555254242105" || e.Role != "R8000" || e.Organisation != "RXA" || e.Purpose != "TREAT" || e.RequestID == "" || e.ClientAddress == "" {
				t.Errorf("audit event %+v; want the patient, the user, role, organisation, purpose, request id and client address", e)
			}
		})
	}
}

// auditActions is the audit action of each kind of route.
var auditActions = map[pacssim.RequestKind]string{
	pacssim.KindSearch: audit.ActionSearch, pacssim.KindRetrieve: audit.ActionRetrieve, pacssim.KindFrames: audit.ActionRetrieve,
	pacssim.KindMetadata: audit.ActionMetadata, pacssim.KindBulk: audit.ActionBulkData,
	pacssim.KindRendered: audit.ActionRendered, pacssim.KindThumbnail: audit.ActionRendered,
}

// TestAuditFailureRefusesEveryRoute: when the access cannot be recorded, every data route
// answers 503 saying so, with none of the patient's data.
func TestAuditFailureRefusesEveryRoute(t *testing.T) {
	hostile, honest, bases := honestTrusts(t)
	g := &governance{}
	p := newProxy(t, hostile, honest, bases, func(d *dicomweb.Deps) { d.Auth, d.Authz, d.Audit = g, g, g })
	for _, rt := range routes() {
		t.Run(rt.name, func(t *testing.T) {
			path := rt.path
			g.refuse(nil, nil, nil)
			if path == "bulk" {
				path = p.bulkLink(t)
			}
			g.refuse(nil, nil, errors.New("spool unwritable"))
			a := p.get(t, path, rt.accept)
			if a.status != http.StatusServiceUnavailable || !strings.Contains(string(a.body), "could not be audited") {
				t.Fatalf("status %d: %.300s; want 503 saying the access could not be audited", a.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" || strings.Contains(string(a.body), pacssim.HostileInstanceUID) {
				t.Fatalf("Content-Type %q, body %.300s; want an error body and none of the study", ct, a.body)
			}
		})
	}
	// While the record cannot be written the proxy is not ready: a load balancer sends its
	// clients elsewhere. Once it can, it is ready again.
	ready := func() (int, string) {
		resp, err := p.client.Get(p.srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, body := ready(); status != http.StatusServiceUnavailable || !strings.Contains(body, "audit record cannot be written") {
		t.Errorf("/readyz with the audit failing: %d %s; want 503 saying why", status, body)
	}
	g.refuse(nil, nil, nil)
	if status, body := ready(); status != http.StatusOK {
		t.Errorf("/readyz with the audit working: %d %s; want 200", status, body)
	}
}

// TestRefusedRequestsReachNoTrust: a request the governance steps refuse (no valid token, keys
// that cannot be checked now, a rule of the data sharing agreement) is answered with the
// refusal's status and its reason on every data route, and no trust hears of it.
func TestRefusedRequestsReachNoTrust(t *testing.T) {
	hostile, honest, bases := honestTrusts(t)
	refusals := []struct {
		name         string
		authn, authz error
		status       int
		message      string
	}{
		{name: "no valid token", authn: &policy.Refusal{Rule: "bearer-token", Status: http.StatusUnauthorized, Message: "A bearer token is required."},
			status: http.StatusUnauthorized, message: "A bearer token is required."},
		{name: "issuer keys out of date", authn: fmt.Errorf("verify token: %w", policy.ErrUnavailable),
			status: http.StatusServiceUnavailable, message: "Access cannot be checked now"},
		{name: "not direct care", authz: &policy.Refusal{Rule: "purpose-of-use", Status: http.StatusForbidden, Message: "nirproxy may only be used for direct patient care"},
			status: http.StatusForbidden, message: "nirproxy may only be used for direct patient care"},
		{name: "organisation not onboarded", authz: &policy.Refusal{Rule: "onboarded", Status: http.StatusForbidden, Message: "Organisation RXZ is not onboarded: no DPIA"},
			status: http.StatusForbidden, message: "is not onboarded: no DPIA"},
		{name: "over the user's limit", authz: &policy.Refusal{Rule: "rate-limit-user", Status: http.StatusTooManyRequests, Message: "This user has made more requests than its limit allows", RetryAfter: 2500 * time.Millisecond},
			status: http.StatusTooManyRequests, message: "more requests than its limit allows"},
	}
	for _, rf := range refusals {
		for _, rt := range routes() {
			t.Run(rf.name+"/"+rt.name, func(t *testing.T) {
				// A proxy of its own, so that no location remembered from another request
				// spares it asking the trusts.
				g := &governance{}
				p := newProxy(t, hostile, honest, bases, func(d *dicomweb.Deps) { d.Auth, d.Authz, d.Audit = g, g, g })
				path := rt.path
				if path == "bulk" {
					path = p.bulkLink(t)
				}
				g.refuse(rf.authn, rf.authz, nil)
				g.take()
				before := hostile.Requests() + honest.Requests()
				a := p.get(t, path, rt.accept)
				if a.status != rf.status || !strings.Contains(string(a.body), rf.message) {
					t.Fatalf("status %d: %.300s; want %d saying %q", a.status, a.body, rf.status, rf.message)
				}
				if n := hostile.Requests() + honest.Requests() - before; n != 0 {
					t.Fatalf("the trusts heard %d requests of a refused one; want none", n)
				}
				// The refusal is audited: one event, refused, with its status and rule.
				_, _, events := g.take()
				var r *policy.Refusal
				wantRule := ""
				if errors.As(cmp.Or(rf.authn, rf.authz), &r) {
					wantRule = r.Rule
				}
				if len(events) != 1 || events[0].Outcome != audit.OutcomeRefused || events[0].Status != rf.status || events[0].Rule != wantRule || events[0].RequestID == "" {
					t.Errorf("recorded %+v; want one refusal, status %d, rule %q", events, rf.status, wantRule)
				}
				switch rf.status {
				case http.StatusUnauthorized:
					if got := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
						t.Errorf("WWW-Authenticate %q; want a Bearer challenge", got)
					}
				case http.StatusServiceUnavailable:
					if a.header.Get("Retry-After") == "" {
						t.Error("no Retry-After on a 503")
					}
				case http.StatusTooManyRequests:
					if got := a.header.Get("Retry-After"); got != "3" {
						t.Errorf("Retry-After %q on a 429; want the limit's 2.5s rounded up, 3", got)
					}
				}
			})
		}
	}
}

// TestPurposeHeaders: the request's own purpose of use and reason reach the authorizer; one
// that is not a PurposeOfUse code is refused (400) before any trust is asked.
func TestPurposeHeaders(t *testing.T) {
	hostile, honest, bases := honestTrusts(t)
	g := &governance{}
	p := newProxy(t, hostile, honest, bases, func(d *dicomweb.Deps) { d.Auth, d.Authz, d.Audit = g, g, g })
	study := "studies/" + pacssim.HostileStudyUID + "/metadata"
	get := func(purpose, reason string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, p.srv.URL+"/dicom-web/"+study, nil)
		req.Header.Set("X-Purpose-Of-Use", purpose)
		req.Header.Set("X-Purpose-Of-Use-Reason", reason)
		resp, err := p.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	g.take()
	if status, body := get("BTG", "Unconscious patient in ED, no history available"); status != http.StatusOK {
		t.Fatalf("status %d: %.300s", status, body)
	}
	actions, _, _ := g.take()
	if len(actions) != 1 || actions[0].Purpose != "BTG" || actions[0].PurposeReason != "Unconscious patient in ED, no history available" {
		t.Fatalf("authorizer saw %+v; want the request's purpose and reason", actions)
	}
	for _, bad := range []struct{ purpose, reason string }{{"treat", ""}, {"TREAT,BTG", ""}, {"ABCDEFGHIJKLMNOPQ", ""}, {"BTG", strings.Repeat("x", 501)}} {
		before := hostile.Requests() + honest.Requests()
		if status, body := get(bad.purpose, bad.reason); status != http.StatusBadRequest || !strings.Contains(string(body), "X-Purpose-Of-Use") {
			t.Errorf("purpose %q, reason of %d bytes: status %d %.200s; want 400 naming the header", bad.purpose, len(bad.reason), status, body)
		}
		if n := hostile.Requests() + honest.Requests() - before; n != 0 {
			t.Errorf("purpose %q: the trusts heard %d requests; want none", bad.purpose, n)
		}
	}
	if actions, _, _ := g.take(); len(actions) != 0 {
		t.Fatalf("bad purposes reached the authorizer: %+v", actions)
	}
}

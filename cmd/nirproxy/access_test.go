package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
	"github.com/nirproxy/nirproxy/policy/authz"
	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/devissuer"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// accessRig is the proxy as `nirproxy serve` wires it (buildHandler: the real authentication,
// onboarding registry, rules and limits) over the demo's three trusts, with a development
// issuer whose tokens it trusts and a registry of organisations in every onboarding state.
type accessRig struct {
	proxy *httptest.Server
	// iss issues IHE IUA tokens; cis2 issues NHS CIS2 ones, whose roles it may answer only
	// from its userinfo endpoint.
	iss, cis2 *devissuer.Issuer
	trusts    []*pacssim.Trust
	logs      *syncBuffer
	// spool is the proxy's audit spool, in spoolDir.
	spool    *spool.Spool
	spoolDir string
}

// audited reads every event the proxy has recorded so far, by request id.
func (r *accessRig) audited(t *testing.T) map[string]audit.Event {
	t.Helper()
	cur, err := r.spool.Cursor("test")
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	events := map[string]audit.Event{}
	for r.spool.Lag("test") > 0 {
		rec, err := cur.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		e, err := audit.Decode(rec.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := events[e.RequestID]; dup {
			t.Errorf("request %s recorded twice", e.RequestID)
		}
		events[e.RequestID] = e
		if err := cur.Ack(rec.Seq); err != nil {
			t.Fatal(err)
		}
	}
	return events
}

// The registry's organisations, one for each state an organisation can be in.
const (
	orgOnboarded = "RR8"
	orgLapsed    = "RAE"
	orgSuspended = "RXS"
	orgNoDPIA    = "RXN"
	orgNoDSA     = "RXD"
	orgUnknown   = "RXQ"
)

// accessRegistry is the rig's onboarding registry, judged at now.
func accessRegistry(now time.Time) string {
	year := authz.DefaultDSPTYear().Covering(now)
	org := func(ods, extra string) string {
		return fmt.Sprintf("  - {ods: %s, name: %s, dsptStatus: Standards Met, dsptYear: %s%s}\n", ods, ods, year, extra)
	}
	const signed, dpia = ", dsaSigned: 2024-04-01", ", dpia: 2024-03-15"
	return "organisations:\n" +
		org(orgOnboarded, signed+dpia) +
		fmt.Sprintf("  - {ods: %s, dsaSigned: 2024-04-01, dsptStatus: Standards Met, dsptYear: %s, dpia: 2024-03-15}\n", orgLapsed, year-1) +
		org(orgSuspended, signed+dpia+", suspended: true") +
		org(orgNoDPIA, signed) +
		org(orgNoDSA, dpia) +
		"systems:\n  - {id: dev-viewer, clientId: " + devaccess.ViewerClientID + ", organisation: " + orgOnboarded + ", purpose: TREAT}\n"
}

func newAccessRig(t *testing.T) *accessRig { return newAccessRigWith(t, time.Now, nil) }

// newAccessRigAt is newAccessRig with access control telling the time by now; its tokens are
// valid for a day of it.
func newAccessRigAt(t *testing.T, now func() time.Time) *accessRig {
	return newAccessRigWith(t, now, nil)
}

// newAccessRigWith is newAccessRigAt with edit (when not nil) applied to the configuration
// last.
func newAccessRigWith(t *testing.T, now func() time.Time, edit func(*config.Config)) *accessRig {
	t.Helper()
	trusts, sources := startDemoTrusts(t, nil)
	r := &accessRig{trusts: trusts, logs: &syncBuffer{}}
	cfg := config.Default()
	cfg.PublicURL = "http://nirproxy.test"
	cfg.Sources = sources
	acc, err := startDemoAccess(&cfg, t.TempDir(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acc.Close() })
	if err := os.WriteFile(acc.RegistryPath(), []byte(accessRegistry(time.Now())), 0o600); err != nil {
		t.Fatal(err)
	}
	r.iss = acc.Issuer()
	if r.cis2, err = devissuer.Start("127.0.0.1:0", devissuer.Options{Lifetime: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cis2.Close() })
	cis2 := config.DefaultTokenIssuer()
	cis2.Issuer, cis2.Discovery, cis2.Profile = r.cis2.URL(), true, "cis2"
	cis2.Audiences, cis2.Algorithms = []string{devissuer.DefaultAudience}, []string{r.cis2.Algorithm()}
	cis2.CIS2.UserinfoURL = r.cis2.UserinfoURL()
	cfg.Authentication.Issuers = append(cfg.Authentication.Issuers, cis2)
	cfg.Audit.CheckpointKey = config.Secret(checkpointKeyPEM(t, testCheckpointKey))
	if edit != nil {
		edit(&cfg)
	}
	if problems := cfg.Validate(); len(problems) > 0 {
		t.Fatalf("configuration: %v", problems)
	}
	app, err := buildHandlerAt(t.Context(), cfg, now, slog.New(slog.NewJSONHandler(r.logs, nil)))
	if err != nil {
		t.Fatalf("build handler: %v", err)
	}
	r.proxy, r.spool, r.spoolDir = httptest.NewServer(app.handler), app.access.spool, cfg.Audit.SpoolDir
	t.Cleanup(func() {
		r.proxy.Close()
		app.close(context.Background(), slog.New(slog.DiscardHandler))
	})
	return r
}

// caller is one row of the principals table: how its token is made, the headers it sends and
// what every data route must answer it.
type caller struct {
	name string
	// token mints its token; nil sends none.
	token func(iss *devissuer.Issuer) (string, error)
	// cis2 mints it at the CIS2 issuer.
	cis2 bool
	// scheme is the Authorization scheme; "" is Bearer.
	scheme  string
	headers map[string]string
	// status is the answer of every scoped data route; text is in a refusal's message.
	status int
	text   string
}

// iua is the claims of an IHE IUA token of a user of org in role, for purpose ("" states
// none), calling through the registered viewer unless direct.
func iua(subject, org, role, purpose string, direct bool) devissuer.Claims {
	u := &devissuer.IUA{SubjectOrganizationID: org}
	if role != "" {
		u.SubjectRole = []devissuer.Coding{{Code: role}}
	}
	if purpose != "" {
		u.PurposeOfUse = []devissuer.Coding{devissuer.PurposeOfUse(purpose)}
	}
	c := devissuer.Claims{Subject: subject, IUA: u}
	if !direct {
		c.ClientID = devaccess.ViewerClientID
	}
	return c
}

// nhsCIS2 is the claims of a CIS2 token of a user whose selected role is role at org, with
// identity assurance level ial and acr, calling through the registered viewer; fromUserinfo
// leaves the roles out of the token, so the proxy must ask the issuer's userinfo endpoint.
func nhsCIS2(uid, org, role string, ial int, acr string, fromUserinfo bool) devissuer.Claims {
	return devissuer.Claims{Subject: "sub-" + uid, AuthorizedParty: devaccess.ViewerClientID, CIS2: &devissuer.CIS2{
		UserUID: uid, SelectedRoleID: "5552" + uid, IDAssuranceLevel: ial, ACR: acr, AMR: []string{"N3_SMARTCARD"},
		Roles: []devissuer.NRBACRole{
			{PersonRoleID: "5551" + uid, OrgCode: orgLapsed, RoleCode: "S8000:G8000:R8000"},
			{PersonRoleID: "5552" + uid, OrgCode: org, RoleCode: "S8000:G8000:" + role},
		},
		RolesFromUserinfo: fromUserinfo,
	}}
}

// minted is a token function minting claims with mint.
func minted(mint func(*devissuer.Issuer, devissuer.Claims) (string, error), c devissuer.Claims) func(*devissuer.Issuer) (string, error) {
	return func(iss *devissuer.Issuer) (string, error) { return mint(iss, c) }
}

// sound mints a valid token.
func sound(iss *devissuer.Issuer, c devissuer.Claims) (string, error) { return iss.Mint(c) }

// accessCallers is the principals table: roles, organisation states and purposes of use, and bad
// tokens.
func accessCallers() []caller {
	ok := func(name string, c devissuer.Claims, headers map[string]string) caller {
		return caller{name: name, token: minted(sound, c), headers: headers, status: http.StatusOK}
	}
	refused := func(name string, c devissuer.Claims, headers map[string]string, text string) caller {
		return caller{name: name, token: minted(sound, c), headers: headers, status: http.StatusForbidden, text: text}
	}
	bad := func(name string, mint func(*devissuer.Issuer, devissuer.Claims) (string, error)) caller {
		return caller{name: name, token: minted(mint, iua("u-bad", orgOnboarded, "R8000", "TREAT", false)), status: http.StatusUnauthorized}
	}
	reason := map[string]string{"X-Purpose-Of-Use-Reason": "Unconscious patient in ED"}
	nhs := func(name string, c devissuer.Claims, status int, text string) caller {
		return caller{name: name, token: minted(sound, c), cis2: true, status: status, text: text}
	}
	return []caller{
		// Allowed: clinical roles of an onboarded organisation, for direct care.
		ok("clinician, treatment", iua("u-clin", orgOnboarded, "R8000", "TREAT", false), nil),
		ok("nurse, treatment", iua("u-nurse", orgOnboarded, "R8001", "TREAT", false), nil),
		ok("health professional, treatment", iua("u-hp", orgOnboarded, "R8003", "TREAT", false), nil),
		ok("clinician, purpose from the viewer's registration", iua("u-reg", orgOnboarded, "R8000", "", false), nil),
		ok("clinician, emergency with a reason", iua("u-etreat", orgOnboarded, "R8000", "ETREAT", false), reason),
		ok("clinician, break glass with a reason", iua("u-btg", orgOnboarded, "R8000", "BTG", false), reason),
		// Refused by role.
		refused("privacy officer", iua("u-po", orgOnboarded, "R0001", "TREAT", false), nil, "may not"),
		refused("unknown role", iua("u-r9", orgOnboarded, "R9999", "TREAT", false), nil, "may not"),
		refused("no role", iua("u-norole", orgOnboarded, "", "TREAT", false), nil, "no job role"),
		// Refused by purpose of use.
		refused("research", iua("u-res", orgOnboarded, "R8000", "HRESCH", false), nil, "nirproxy may only be used for direct patient care"),
		refused("emergency without a reason", iua("u-etr0", orgOnboarded, "R8000", "ETREAT", false), nil, "needs a reason"),
		refused("break glass without a reason", iua("u-btg0", orgOnboarded, "R8000", "BTG", false), nil, "needs a reason"),
		refused("no purpose, no registered system", iua("u-nopur", orgOnboarded, "R8000", "", true), nil, "no purpose of use is stated"),
		refused("purpose only in the request", iua("u-hdr", orgOnboarded, "R8000", "", true), map[string]string{"X-Purpose-Of-Use": "TREAT"}, "does not accept a purpose of use stated by the request"),
		// Refused by onboarding.
		refused("DSPT lapsed", iua("u-lapsed", orgLapsed, "R8000", "TREAT", false), nil, "no in-year DSPT assessment"),
		refused("suspended", iua("u-susp", orgSuspended, "R8000", "TREAT", false), nil, "suspended"),
		refused("no DPIA", iua("u-dpia", orgNoDPIA, "R8000", "TREAT", false), nil, "no data protection impact assessment"),
		refused("no data sharing agreement", iua("u-dsa", orgNoDSA, "R8000", "TREAT", false), nil, "no signed data sharing agreement"),
		refused("unknown organisation", iua("u-unk", orgUnknown, "R8000", "TREAT", false), nil, "not in the onboarding registry"),
		// NHS CIS2: the selected role's job role and organisation, the purpose from the viewer's
		// registration (CIS2 tokens state none).
		nhs("CIS2 clinician, roles in the token", nhsCIS2("910000000001", orgOnboarded, "R8000", 3, "AAL3_ANY", false), http.StatusOK, ""),
		nhs("CIS2 clinician, roles from userinfo", nhsCIS2("910000000002", orgOnboarded, "R8000", 3, "AAL3_ANY", true), http.StatusOK, ""),
		nhs("CIS2 selected role at a lapsed organisation", nhsCIS2("910000000003", orgLapsed, "R8000", 3, "AAL3_ANY", false), http.StatusForbidden, "no in-year DSPT assessment"),
		nhs("CIS2 privacy officer", nhsCIS2("910000000004", orgOnboarded, "R0001", 3, "AAL3_ANY", true), http.StatusForbidden, "may not"),
		nhs("CIS2 assurance level 2", nhsCIS2("910000000005", orgOnboarded, "R8000", 2, "AAL3_ANY", false), http.StatusUnauthorized, ""),
		nhs("CIS2 acr below AAL3", nhsCIS2("910000000006", orgOnboarded, "R8000", 3, "AAL2_OTP", false), http.StatusUnauthorized, ""),
		// Refused by authentication.
		{name: "no token", status: http.StatusUnauthorized},
		{name: "not a JWT", token: func(*devissuer.Issuer) (string, error) { return "not-a-token", nil }, status: http.StatusUnauthorized},
		{name: "basic credentials", scheme: "Basic", token: func(*devissuer.Issuer) (string, error) { return "dXNlcjpwYXNz", nil }, status: http.StatusUnauthorized},
		bad("expired", (*devissuer.Issuer).MintExpired),
		bad("not yet valid", (*devissuer.Issuer).MintNotYetValid),
		bad("another audience", (*devissuer.Issuer).MintWrongAudience),
		bad("another issuer", (*devissuer.Issuer).MintWrongIssuer),
		bad("alg none", (*devissuer.Issuer).MintAlgNone),
		bad("forged under the issuer's kid", (*devissuer.Issuer).MintForged),
		bad("a key never published", (*devissuer.Issuer).MintUnknownKey),
		bad("HMAC keyed with the public key", (*devissuer.Issuer).MintKeyConfusion),
	}
}

// accessRoute is a data route of the table: a path, what it accepts, and its patient scope.
type accessRoute struct {
	name, path, accept string
	// unscoped is a request that names no patient or study: refused 400 once the caller is
	// authenticated, before any trust is asked.
	unscoped bool
}

func accessRoutes() []accessRoute {
	us := "/dicom-web/studies/" + pacssim.DemoUltrasoundStudyUID
	mf := us + "/series/" + pacssim.DemoMultiFrameSeriesUID + "/instances/" + pacssim.DemoMultiFrameInstanceUID
	return []accessRoute{
		{name: "search by patient", path: "/dicom-web/studies?PatientID=9434765919", accept: "application/dicom+json"},
		{name: "search by study", path: "/dicom-web/studies?StudyInstanceUID=" + pacssim.DemoSharedStudyUID, accept: "application/dicom+json"},
		{name: "search naming no patient", path: "/dicom-web/studies?Modality=CT", accept: "application/dicom+json", unscoped: true},
		{name: "series of a study", path: us + "/series", accept: "application/dicom+json"},
		{name: "study metadata", path: us + "/metadata", accept: "application/dicom+json"},
		{name: "study", path: us, accept: `multipart/related; type="application/dicom"`},
		{name: "instance", path: mf, accept: `multipart/related; type="application/dicom"`},
		{name: "frames", path: mf + "/frames/1", accept: `multipart/related; type="application/octet-stream"; transfer-syntax=*`},
		{name: "rendered", path: mf + "/rendered", accept: "image/jpeg"},
		{name: "thumbnail", path: us + "/thumbnail", accept: "image/jpeg"},
	}
}

// TestAccessTable: every principal of the table (roles, organisation states, purposes of use,
// bad tokens) on every data route and patient scope, through the access control serve wires,
// gets its expected outcome, and a refused request reaches no trust.
func TestAccessTable(t *testing.T) {
	r := newAccessRig(t)
	client := r.proxy.Client()
	// sent is each request's id, with who sent it and what it was answered.
	var sentMu sync.Mutex
	sent := map[string]sentRequest{}
	for _, c := range accessCallers() {
		t.Run(c.name, func(t *testing.T) {
			var auth string
			iss := r.iss
			if c.cis2 {
				iss = r.cis2
			}
			userinfo := r.cis2.Requests(devissuer.UserinfoPath)
			if c.token != nil {
				token, err := c.token(iss)
				if err != nil {
					t.Fatal(err)
				}
				scheme := c.scheme
				if scheme == "" {
					scheme = "Bearer"
				}
				auth = scheme + " " + token
			}
			for _, rt := range accessRoutes() {
				status, text := c.status, c.text
				if rt.unscoped && status != http.StatusUnauthorized {
					status, text = http.StatusBadRequest, "must name a patient"
				}
				req, _ := http.NewRequest(http.MethodGet, r.proxy.URL+rt.path, nil)
				req.Header.Set("Accept", rt.accept)
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				for k, v := range c.headers {
					req.Header.Set(k, v)
				}
				before := requestsOf(r.trusts)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", rt.name, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				sentMu.Lock()
				sent[resp.Header.Get("X-Request-Id")] = sentRequest{caller: c, status: resp.StatusCode}
				sentMu.Unlock()
				if resp.StatusCode != status || !strings.Contains(string(body), text) {
					t.Errorf("%s: %d %.300s; want %d saying %q", rt.name, resp.StatusCode, body, status, text)
				}
				if status != http.StatusOK {
					if n := requestsOf(r.trusts) - before; n != 0 {
						t.Errorf("%s: the trusts heard %d requests of a refused one; want none", rt.name, n)
					}
					if status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("%s: 401 without a Bearer challenge", rt.name)
					}
				}
			}
			// A token whose roles only userinfo has is looked up once, not on every request.
			if n := r.cis2.Requests(devissuer.UserinfoPath) - userinfo; n > 1 || strings.HasSuffix(c.name, "from userinfo") && n != 1 {
				t.Errorf("the CIS2 userinfo endpoint was asked %d times for one token", n)
			}
		})
	}
	if strings.Contains(r.logs.String(), "9434765919") || strings.Contains(r.logs.String(), "Unconscious") {
		t.Error("the proxy's log names the patient or repeats a break-glass reason")
	}
	checkAudited(t, r, sent)
}

// sentRequest is a request of the table: who sent it and what it was answered.
type sentRequest struct {
	caller caller
	status int
}

// checkAudited checks that every request sent was recorded once in the audit spool, with its
// status and an outcome that agrees with it: answered (success), refused by access control
// (with the rule), or failed (a search naming no patient); that the records of authenticated
// callers name them, and answers the patient; and that `nirproxy audit verify` finds the chain
// whole.
func checkAudited(t *testing.T, r *accessRig, sent map[string]sentRequest) {
	t.Helper()
	events := r.audited(t)
	if len(events) != len(sent) {
		t.Errorf("%d requests, %d audit records", len(sent), len(events))
	}
	for id, req := range sent {
		e, ok := events[id]
		if !ok {
			t.Errorf("request %s (%s, %d) was not recorded", id, req.caller.name, req.status)
			continue
		}
		want := audit.OutcomeSuccess
		switch req.status {
		case http.StatusOK:
		case http.StatusBadRequest:
			want = audit.OutcomeFailed
		default:
			want = audit.OutcomeRefused
		}
		if e.Status != req.status || e.Outcome != want || want == audit.OutcomeRefused && e.Rule == "" && req.status != http.StatusUnauthorized {
			t.Errorf("%s's request %s recorded %+v; want status %d, outcome %s, and the rule of a refusal", req.caller.name, id, e, req.status, want)
		}
		if req.status != http.StatusUnauthorized && (e.User == "" || e.Role == "" && req.caller.name != "no role" || e.ClientAddress == "") {
			t.Errorf("%s's request %s recorded %+v; want the user, role and client address", req.caller.name, id, e)
		}
		if req.status == http.StatusOK && (e.PatientID != pacssim.DemoPatientNHSNumber || e.Purpose == "" || len(e.Sources) == 0) {
			t.Errorf("%s's answer %s recorded %+v; want the patient, the purpose and the trusts", req.caller.name, id, e)
		}
	}
	var out bytes.Buffer
	if err := auditCommand([]string{"verify", r.spoolDir}, &out); err != nil || !strings.Contains(out.String(), fmt.Sprintf("the chain holds: %d records", len(sent))) {
		t.Errorf("nirproxy audit verify: %v: %s", err, out.String())
	}
}

// TestIssuerKeysOutage (hazard H16): when a token issuer's keys cannot be had, because they were
// never fetched or were last fetched longer ago than keyMaxAge, every request with its tokens is
// refused with 503 and a Retry-After, before any trust is asked; never let through. Within
// keyMaxAge the keys last fetched still verify tokens while the issuer is down.
func TestIssuerKeysOutage(t *testing.T) {
	search := "/dicom-web/studies?PatientID=" + pacssim.DemoPatientNHSNumber
	ask := func(t *testing.T, r *accessRig) (int, string, string) {
		t.Helper()
		token, err := r.iss.Mint(devaccess.Clinician.Claims())
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, r.proxy.URL+search, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		before := requestsOf(r.trusts)
		resp, err := r.proxy.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK && requestsOf(r.trusts) != before {
			t.Errorf("a refused request reached the trusts")
		}
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
	}
	refused := func(t *testing.T, status int, retry, body string) {
		t.Helper()
		if status != http.StatusServiceUnavailable || retry == "" || !strings.Contains(body, "Access cannot be checked now") {
			t.Fatalf("%d, Retry-After %q: %s; want 503 with a Retry-After", status, retry, body)
		}
	}

	t.Run("keys never fetched", func(t *testing.T) {
		r := newAccessRig(t)
		r.iss.SetDown(true)
		status, retry, body := ask(t, r)
		refused(t, status, retry, body)
	})

	t.Run("keys older than keyMaxAge", func(t *testing.T) {
		var offset atomic.Int64
		now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		r := newAccessRigAt(t, now)
		if status, _, body := ask(t, r); status != http.StatusOK {
			t.Fatalf("with the issuer up: %d %s", status, body)
		}
		r.iss.SetDown(true)
		offset.Store(int64(59 * time.Minute))
		if status, _, body := ask(t, r); status != http.StatusOK {
			t.Fatalf("issuer down, keys fetched 59 minutes ago (keyMaxAge 1h): %d %s; want 200", status, body)
		}
		offset.Store(int64(61 * time.Minute))
		status, retry, body := ask(t, r)
		refused(t, status, retry, body)
	})
}

// TestPatientAccessReport: after a clinician's and a break-glass access to a patient's imaging,
// and a refused researcher's, the privacy officer's GET /audit/patients/{nhs} lists the two
// accesses (who, role, organisation, purpose, break glass), as JSON and as an HTML page; a
// clinician may not read it (403); the reads are themselves recorded, and are not listed.
func TestPatientAccessReport(t *testing.T) {
	r := newAccessRig(t)
	get := func(p devaccess.Persona, path, accept string) (int, string) {
		t.Helper()
		token, err := r.iss.Mint(p.Claims())
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, r.proxy.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", accept)
		for k, v := range p.Headers {
			req.Header.Set(k, v)
		}
		resp, err := r.proxy.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	search := "/dicom-web/studies?PatientID=" + pacssim.DemoPatientNHSNumber
	for _, p := range []devaccess.Persona{devaccess.Clinician, devaccess.BreakGlass, devaccess.Researcher} {
		if status, body := get(p, search, "application/dicom+json"); status != p.Status {
			t.Fatalf("%s: %d %.200s", p.Name, status, body)
		}
	}
	report := "/audit/patients/" + pacssim.DemoPatientNHSNumber
	status, body := get(devaccess.PrivacyOfficer, report, "application/json")
	if status != http.StatusOK {
		t.Fatalf("the privacy officer's report: %d %s", status, body)
	}
	var got struct {
		Patient  string `json:"patient"`
		Accesses []struct {
			User, Role, Organisation, Purpose, Action string
			BreakGlass                                bool
		} `json:"accesses"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Patient != pacssim.DemoPatientNHSNumber || len(got.Accesses) != 2 {
		t.Fatalf("report %+v; want the clinician's and the break-glass access, and nothing else", got)
	}
	c, b := got.Accesses[0], got.Accesses[1]
	if c.User != devaccess.Clinician.Subject || c.Role != "R8000" || c.Organisation != devaccess.Onboarded || c.Purpose != "TREAT" || c.Action != "search" ||
		b.User != devaccess.BreakGlass.Subject || !b.BreakGlass || b.Purpose != "BTG" {
		t.Errorf("report lines %+v, %+v; want who, role, organisation and purpose of each", c, b)
	}
	status, page := get(devaccess.PrivacyOfficer, report, "text/html")
	if status != http.StatusOK || !strings.Contains(page, "<table>") || !strings.Contains(page, devaccess.Clinician.Subject) || !strings.Contains(page, "break glass") {
		t.Errorf("the report page: %d %.400s", status, page)
	}
	if status, body := get(devaccess.Clinician, report, "application/json"); status != http.StatusForbidden {
		t.Errorf("a clinician's read of the report: %d %s; want 403", status, body)
	}
	if status, _ := get(devaccess.PrivacyOfficer, "/audit/patients/9434765918", "application/json"); status != http.StatusBadRequest {
		t.Errorf("a report of no valid NHS number: %d; want 400", status)
	}
	reads := 0
	for _, e := range r.audited(t) {
		if e.Action == audit.ActionAuditRead && e.PatientID == pacssim.DemoPatientNHSNumber && e.Outcome == audit.OutcomeSuccess && e.User == devaccess.PrivacyOfficer.Subject {
			reads++
		}
	}
	if reads != 2 {
		t.Errorf("%d reads of the report recorded; want the privacy officer's 2", reads)
	}
}

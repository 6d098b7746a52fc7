package dicomaudit

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
)

// TestMessageKinds: each action maps to its A.5 message, with the event ID, action code,
// participant roles and objects A.5 sets for it, and the schema holds.
func TestMessageKinds(t *testing.T) {
	cases := []struct {
		action    string
		event     string
		eventText string
		actionCode,
		clientRole, proxyRole string
		objects []string // ID type codes of the objects beyond patient, organisation and request
	}{
		{audit.ActionSearch, EventQuery, "Query", "E", "110153", "110152", []string{"110180", "12"}},
		{audit.ActionRetrieve, EventBeginTransferring, "Begin Transferring DICOM Instances", "E", "110152", "110153", []string{"110180"}},
		{audit.ActionBulkData, EventBeginTransferring, "Begin Transferring DICOM Instances", "E", "110152", "110153", []string{"110180"}},
		{audit.ActionMetadata, EventInstancesAccessed, "DICOM Instances Accessed", "R", "110152", "110153", []string{"110180"}},
		{audit.ActionRendered, EventInstancesAccessed, "DICOM Instances Accessed", "R", "110152", "110153", []string{"110180"}},
		{audit.ActionAuditRead, EventAuditLogUsed, "Audit Log Used", "R", "110152", "110153", []string{"110180", "12"}},
	}
	for _, tc := range cases {
		t.Run(tc.action, func(t *testing.T) {
			e := clinicianRetrieve()
			e.Action = tc.action
			if tc.action == audit.ActionSearch {
				e.Resource, e.Query = "/dicom-web/studies", "PatientID=9434765919&ModalitiesInStudy=CT"
			}
			m, err := Message(e, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			got := parse(t, m)
			ev := got.EventIdentification
			if ev.EventID != dcm(tc.event, tc.eventText) || ev.EventActionCode != tc.actionCode {
				t.Errorf("EventID %+v action %q, want %s %q action %s", ev.EventID, ev.EventActionCode, tc.event, tc.eventText, tc.actionCode)
			}
			if ev.EventDateTime != "2026-12-03T09:30:00.123Z" || ev.EventOutcomeIndicator != OutcomeSuccess {
				t.Errorf("EventDateTime %q outcome %q", ev.EventDateTime, ev.EventOutcomeIndicator)
			}
			client, ok := participantWithRole(got, tc.clientRole)
			if !ok || client.UserID != "leeds-viewer" || client.NetworkAccessPointID != "192.0.2.7" || client.NetworkAccessPointTypeCode != "2" {
				t.Errorf("client participant %+v (found %v), want leeds-viewer at 192.0.2.7 with role %s", client, ok, tc.clientRole)
			}
			proxy, ok := participantWithRole(got, tc.proxyRole)
			if !ok || proxy.UserID != "nirproxy@proxy.test" || proxy.AlternativeUserID != "AETITLES=NIRPROXY" || proxy.UserIsRequestor {
				t.Errorf("proxy participant %+v (found %v), want nirproxy@proxy.test with role %s", proxy, ok, tc.proxyRole)
			}
			if src := got.AuditSourceIdentification; src.AuditSourceID != "nirproxy@proxy.test" || src.AuditEnterpriseSiteID != "RR8" ||
				len(src.AuditSourceTypeCodes) != 1 || src.AuditSourceTypeCodes[0].Code != "4" {
				t.Errorf("audit source %+v", src)
			}

			patients := objectsOfType(got, "2")
			if len(patients) != 1 || patients[0].ParticipantObjectID != nhsNumber || patients[0].ParticipantObjectTypeCode != "1" ||
				patients[0].ParticipantObjectTypeCodeRole != "1" ||
				patients[0].ParticipantObjectIDTypeCode != (CodedValue{"2", CodeSystemRFC3881, "", "Patient Number"}) {
				t.Errorf("patient objects %+v, want one: the NHS number, type 1 role 1, ID type Patient Number", patients)
			}
			var want []string
			for _, po := range got.ParticipantObjects {
				switch po.ParticipantObjectIDTypeCode.Code {
				case "2", "XrequestId", "ods-organization-code":
				default:
					want = append(want, po.ParticipantObjectIDTypeCode.Code)
				}
			}
			if !slices.Equal(want, tc.objects) {
				t.Errorf("objects of ID types %v, want %v", want, tc.objects)
			}
			study := objectsOfType(got, "110180")[0]
			if study.ParticipantObjectID != studyUID || study.ParticipantObjectTypeCode != "2" || study.ParticipantObjectTypeCodeRole != "3" {
				t.Errorf("study object %+v", study)
			}
			req := objectsOfType(got, "XrequestId")
			if len(req) != 1 || req[0].ParticipantObjectID != "req-1" || req[0].ParticipantObjectIDTypeCode.CodeSystemName != CodeSystemBALP {
				t.Errorf("request objects %+v, want req-1", req)
			}
			org := objectsOfType(got, "ods-organization-code")
			if len(org) != 1 || org[0].ParticipantObjectID != "RR8" || org[0].ParticipantObjectTypeCode != "3" {
				t.Errorf("organisation objects %+v, want RR8", org)
			}
		})
	}
}

// TestMessageQueryObject: a search's query object is the route, with the query string as
// ParticipantObjectQuery in base64; an audit read's object is the audit log.
func TestMessageQueryObject(t *testing.T) {
	e := clinicianRetrieve()
	e.Action, e.Resource, e.Query = audit.ActionSearch, "/dicom-web/studies", "PatientID=9434765919&includefield=all"
	m, err := Message(e, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.Marshal()
	if !strings.Contains(string(b), "<ParticipantObjectQuery>UGF0aWVudElEPTk0MzQ3NjU5MTkmaW5jbHVkZWZpZWxkPWFsbA==</ParticipantObjectQuery>") {
		t.Errorf("the query is not in base64 in ParticipantObjectQuery:\n%s", b)
	}
	q := objectsOfType(parse(t, m), "12")
	if len(q) != 1 || q[0].ParticipantObjectID != "/dicom-web/studies" || string(q[0].ParticipantObjectQuery) != e.Query ||
		q[0].ParticipantObjectTypeCode != "2" || q[0].ParticipantObjectTypeCodeRole != "3" {
		t.Errorf("query objects %+v", q)
	}

	e.Action, e.Resource, e.Query = audit.ActionAuditRead, "/audit/patients/{nhsNumber}", ""
	m, err = Message(e, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	log := objectsOfType(parse(t, m), "12")
	if len(log) != 1 || log[0].ParticipantObjectID != e.Resource || log[0].ParticipantObjectTypeCodeRole != "13" ||
		log[0].ParticipantObjectName != "Security Audit Log" {
		t.Errorf("audit log objects %+v", log)
	}
}

// TestMessageOutcomes: an answer, whole or partial, is 0; a failure 4; a refusal 8. The
// description names the outcome, rule, missing and stale trusts and the status.
func TestMessageOutcomes(t *testing.T) {
	cases := []struct {
		name      string
		change    func(*audit.Event)
		indicator string
		desc      string
	}{
		{"success", func(*audit.Event) {}, "0", ""},
		{"partial", func(e *audit.Event) {
			e.Outcome, e.Missing, e.Stale = audit.OutcomePartial, []string{"RXB", "RXC"}, []string{"RXA"}
		}, "0", "partial; no answer from RXB, RXC; stale copies for RXA (HTTP 200)"},
		{"failed", func(e *audit.Event) { e.Outcome, e.Status = audit.OutcomeFailed, 502 }, "4", "failed (HTTP 502)"},
		{"refused", func(e *audit.Event) {
			e.Outcome, e.Status, e.Rule = audit.OutcomeRefused, 403, "legitimate-relationship"
		}, "8", "refused; rule legitimate-relationship (HTTP 403)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := clinicianRetrieve()
			tc.change(&e)
			m, err := Message(e, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			ev := parse(t, m).EventIdentification
			if ev.EventOutcomeIndicator != tc.indicator || ev.EventOutcomeDescription != tc.desc {
				t.Errorf("outcome %q %q, want %q %q", ev.EventOutcomeIndicator, ev.EventOutcomeDescription, tc.indicator, tc.desc)
			}
		})
	}
}

// TestMessageUsers: a token's user is the requestor, named <user@issuer> with the job role;
// a system calling on its own behalf is the requestor itself and carries the role.
func TestMessageUsers(t *testing.T) {
	m, err := Message(clinicianRetrieve(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	got := parse(t, m)
	req := requestors(got)
	if len(req) != 1 || req[0].UserID != "<555021935107@"+cis2+">" || len(req[0].RoleIDCodes) != 1 ||
		req[0].RoleIDCodes[0] != (CodedValue{"R8000", CodeSystemJobRole, "", "R8000"}) || req[0].NetworkAccessPointID != "192.0.2.7" {
		t.Errorf("requestors %+v, want the CIS2 user as <user@issuer> with role R8000", req)
	}
	if len(got.ActiveParticipants) != 3 {
		t.Errorf("%d participants, want the user, the client and nirproxy", len(got.ActiveParticipants))
	}

	e := clinicianRetrieve()
	e.Issuer, e.User, e.TokenID = "", "pacs-sync", ""
	m, err = Message(e, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	got = parse(t, m)
	req = requestors(got)
	if len(req) != 1 || req[0].UserID != "leeds-viewer" || len(req[0].RoleIDCodes) != 2 || req[0].RoleIDCodes[1].Code != "R8000" {
		t.Errorf("requestors %+v, want the calling system with its role", req)
	}
	if len(got.ActiveParticipants) != 2 {
		t.Errorf("%d participants, want the client and nirproxy", len(got.ActiveParticipants))
	}
}

// TestMessagePurposeOfUse: the purpose judged, BTG and ETREAT are PurposeOfUse codes, each
// once; the reason given is a detail of the request, as is the token's jti.
func TestMessagePurposeOfUse(t *testing.T) {
	e := clinicianRetrieve()
	e.Purpose, e.BreakGlass, e.Emergency, e.Reason = "BTG", true, true, "unconscious in ED"
	m, err := Message(e, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	got := parse(t, m)
	var codes []string
	for _, p := range got.EventIdentification.PurposesOfUse {
		if p.CodeSystemName != CodeSystemActReason || p.OriginalText == "" {
			t.Errorf("purpose of use %+v", p)
		}
		codes = append(codes, p.Code)
	}
	if !slices.Equal(codes, []string{"BTG", "ETREAT"}) {
		t.Errorf("purposes %v, want BTG, ETREAT", codes)
	}
	details := map[string]string{}
	for _, d := range objectsOfType(got, "XrequestId")[0].ParticipantObjectDetails {
		details[d.Type] = string(d.Value)
	}
	if details["PurposeOfUseReason"] != e.Reason || details["TokenID"] != "jti-1" {
		t.Errorf("request details %v, want the reason and the jti", details)
	}
}

// TestMessageInstance: an instance a request named sits under its study, with the series as a
// detail.
func TestMessageInstance(t *testing.T) {
	e := clinicianRetrieve()
	e.SeriesUID, e.InstanceUID = "1.2.3.4", "1.2.3.4.5"
	m, err := Message(e, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	study := objectsOfType(parse(t, m), "110180")[0]
	if len(study.ParticipantObjectDescriptions) != 1 || len(study.ParticipantObjectDescriptions[0].SOPClasses) != 1 {
		t.Fatalf("study %+v, want one description with one SOP class", study)
	}
	sc := study.ParticipantObjectDescriptions[0].SOPClasses[0]
	if sc.NumberOfInstances != 1 || len(sc.Instances) != 1 || sc.Instances[0].UID != "1.2.3.4.5" {
		t.Errorf("SOP class %+v, want the instance", sc)
	}
	if len(study.ParticipantObjectDetails) != 1 || string(study.ParticipantObjectDetails[0].Value) != "1.2.3.4" {
		t.Errorf("study details %+v, want the series", study.ParticipantObjectDetails)
	}
}

// TestMessageWithoutPatient: a search with no patient is a Query without one; a read with no
// patient is ErrNoPatient.
func TestMessageWithoutPatient(t *testing.T) {
	e := clinicianRetrieve()
	e.PatientID, e.StudyUIDs = "", nil
	e.Action, e.Resource = audit.ActionSearch, "/dicom-web/studies"
	m, err := Message(e, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := parse(t, m); len(objectsOfType(got, "2")) != 0 || got.EventIdentification.EventID.Code != EventQuery {
		t.Errorf("a search with no patient: %+v", got)
	}
	for _, action := range []string{audit.ActionRetrieve, audit.ActionMetadata, audit.ActionRendered, audit.ActionBulkData, audit.ActionAuditRead} {
		e.Action = action
		if _, err := Message(e, testOptions()); !errors.Is(err, ErrNoPatient) {
			t.Errorf("%s with no patient: %v, want ErrNoPatient", action, err)
		}
	}
}

// TestMessageRefusesIncomplete: events without what every message needs are ErrIncomplete,
// naming the field and not the patient; options without a source are refused.
func TestMessageRefusesIncomplete(t *testing.T) {
	for name, change := range map[string]func(*audit.Event){
		"time":    func(e *audit.Event) { e.Time = time.Time{} },
		"request": func(e *audit.Event) { e.RequestID = "" },
		"action":  func(e *audit.Event) { e.Action = "delete" },
		"outcome": func(e *audit.Event) { e.Outcome = "maybe" },
	} {
		e := clinicianRetrieve()
		change(&e)
		_, err := Message(e, testOptions())
		if !errors.Is(err, ErrIncomplete) || strings.Contains(err.Error(), nhsNumber) {
			t.Errorf("no %s: %v, want ErrIncomplete without the NHS number", name, err)
		}
	}
	if _, err := Message(clinicianRetrieve(), Options{}); err == nil || !strings.Contains(err.Error(), "SourceID") {
		t.Errorf("no SourceID: %v, want an error naming it", err)
	}
}

// TestSplitStudies: a message split in two shares out its studies, in order, each half keeping
// everything else.
func TestSplitStudies(t *testing.T) {
	e := clinicianRetrieve()
	e.StudyUIDs = []string{"1.1", "1.2", "1.3"}
	m, err := Message(e, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	a, b, ok := m.splitStudies()
	if !ok {
		t.Fatal("three studies did not split")
	}
	ids := func(m *AuditMessage) (studies []string, others int) {
		for _, po := range m.ParticipantObjects {
			if po.isStudy() {
				studies = append(studies, po.ParticipantObjectID)
			} else {
				others++
			}
		}
		return studies, others
	}
	sa, oa := ids(a)
	sb, ob := ids(b)
	_, om := ids(m)
	if !slices.Equal(sa, []string{"1.1"}) || !slices.Equal(sb, []string{"1.2", "1.3"}) || oa != om || ob != om {
		t.Errorf("halves %v (+%d) and %v (+%d), want 1.1 and 1.2, 1.3 each with the %d others", sa, oa, sb, ob, om)
	}
	if a.ParticipantObjects[0].ParticipantObjectID != nhsNumber {
		t.Errorf("the patient is no longer first: %+v", a.ParticipantObjects[0])
	}
	if _, _, ok := a.splitStudies(); ok {
		t.Error("a message with one study split")
	}
}

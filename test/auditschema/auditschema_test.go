package auditschema

import (
	"strings"
	"testing"
)

// good is a minimal valid message.
const good = `<?xml version="1.0" encoding="UTF-8"?><AuditMessage>` +
	`<EventIdentification EventActionCode="E" EventDateTime="2026-12-03T09:30:00.123Z" EventOutcomeIndicator="0">` +
	`<EventID csd-code="110112" codeSystemName="DCM" originalText="Query"/></EventIdentification>` +
	`<ActiveParticipant UserID="viewer" UserIsRequestor="true"><RoleIDCode csd-code="110153" codeSystemName="DCM" originalText="Source Role ID"/></ActiveParticipant>` +
	`<AuditSourceIdentification AuditSourceID="nirproxy"/>` +
	`<ParticipantObjectIdentification ParticipantObjectID="/dicom-web/studies" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3">` +
	`<ParticipantObjectIDTypeCode csd-code="12" codeSystemName="RFC-3881" originalText="URI"/>` +
	`<ParticipantObjectQuery>UGF0aWVudElEPTE=</ParticipantObjectQuery></ParticipantObjectIdentification></AuditMessage>`

// TestCheck: a valid message passes, with or without a byte order mark; each kind of breach is
// found and named.
func TestCheck(t *testing.T) {
	if err := Check([]byte(good)); err != nil {
		t.Errorf("a valid message: %v", err)
	}
	if err := Check([]byte("\xef\xbb\xbf" + good)); err != nil {
		t.Errorf("a valid message after a BOM: %v", err)
	}
	for _, tc := range []struct{ name, from, to, says string }{
		{"wrong root", "AuditMessage>", "Audit>", "root"},
		{"no source", `<AuditSourceIdentification AuditSourceID="nirproxy"/>`, "", "AuditSourceIdentification"},
		{"order", `<AuditSourceIdentification AuditSourceID="nirproxy"/>`, "", "ActiveParticipant"},
		{"missing attribute", ` UserIsRequestor="true"`, "", "UserIsRequestor"},
		{"unknown attribute", `UserID="viewer"`, `UserID="viewer" Colour="red"`, "Colour"},
		{"bad outcome", `EventOutcomeIndicator="0"`, `EventOutcomeIndicator="3"`, "EventOutcomeIndicator"},
		{"no time zone", `2026-12-03T09:30:00.123Z`, `2026-12-03T09:30:00`, "EventDateTime"},
		{"no originalText", ` originalText="Query"`, "", "originalText"},
		{"query not base64", `UGF0aWVudElEPTE=`, `PatientID=1`, "ParticipantObjectQuery"},
		{"name and query", `<ParticipantObjectQuery>`, `<ParticipantObjectName>x</ParticipantObjectName><ParticipantObjectQuery>`, "only one"},
		{"unknown element", `</EventIdentification>`, `<Colour/></EventIdentification>`, "Colour"},
	} {
		doc := strings.Replace(good, tc.from, tc.to, 1)
		if tc.name == "order" {
			doc = strings.Replace(doc, "<ActiveParticipant ", `<AuditSourceIdentification AuditSourceID="nirproxy"/><ActiveParticipant `, 1)
		}
		if tc.name == "wrong root" {
			doc = strings.ReplaceAll(good, "AuditMessage>", "Audit>")
		}
		if err := Check([]byte(doc)); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.says)
		}
	}
}

// Package auditevents holds the audit events and spool records the tests of the audit sinks
// (policy/audit/fhir, policy/audit/dicomaudit) map, so that both map the same access.
package auditevents

import (
	"crypto/sha256"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// The patient, the CIS2 issuer and the study of ClinicianRetrieve.
const (
	NHSNumber = "9434765919"
	CIS2      = "https://am.nhsidentity.spineservices.nhs.uk/openam/oauth2/realms/root/realms/oidc"
	StudyUID  = "1.2.826.0.1.3680043.8.498.1"
)

// Record is a spool record as the spool would return it, with a hash of its own.
func Record(seq uint64, payload string) spool.Record {
	return spool.Record{Seq: seq, Time: time.Date(2026, 12, 3, 9, 30, 0, 0, time.UTC),
		Hash: sha256.Sum256([]byte(payload)), Payload: []byte(payload)}
}

// ClinicianRetrieve is a CIS2 clinician's retrieve of one study, answered whole.
func ClinicianRetrieve() audit.Event {
	return audit.Event{
		Version: audit.EventVersion, Time: time.Date(2026, 12, 3, 9, 30, 0, 123e6, time.UTC), RequestID: "req-1",
		User: "555021935107", Issuer: CIS2, TokenID: "jti-1", Role: "R8000", Organisation: "RR8", System: "leeds-viewer",
		Purpose: "TREAT", PurposeSource: "token", ClientAddress: "192.0.2.7",
		Action: audit.ActionRetrieve, Resource: "/dicom-web/studies/:study", PatientID: NHSNumber,
		StudyUIDs: []string{StudyUID}, Outcome: audit.OutcomeSuccess, Status: 200, Sources: []string{"RXA"},
	}
}

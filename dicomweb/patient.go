package dicomweb

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// The patient an answer concerns (issue 11, patient scope). Every answer that concerns a
// patient concerns exactly one, which the authorizer sees (Server.authorizePatient) before any
// of the answer is sent: a retrieve by UID learns it from the locator (the NHS numbers the
// study's holders file it under), a search from its PatientID or else from its results (the
// NHS numbers their copies name), a search within a study from both.
//
// A copy filed under a local hospital number only names no patient and contradicts none: a
// trust that has not matched its record to the national one still holds the study. Two NHS
// numbers for one study is a wrong-patient hazard: the answer is refused (409) and the
// proxy never picks one. No NHS number at all means the authorizer cannot be asked about the
// patient, so the answer is refused too (403): a national registry does not show imaging
// whose patient it cannot name.

// patientOf is the one patient (NHS number) of patients, the NHS numbers the copies of what an
// answer concerns are filed under, or the refusal to answer with (409 for more than one, 403
// for none), logged with the trusts involved. what names the data in the client's message
// ("this study"); holders are the trusts whose copies are concerned, for the log. Neither
// message nor log names a patient.
func (s *Server) patientOf(c *echo.Context, patients []string, what string, holders []string) (string, error) {
	switch len(patients) {
	case 1:
		return patients[0], nil
	case 0:
		s.log.Warn("answer refused: its patient could not be established", "request_id", requestID(c), "holders", holders)
		return "", &Error{Status: http.StatusForbidden, Message: fmt.Sprintf("The patient of %s could not be established (no trust holding it gives an NHS number), so it is not sent.", what)}
	}
	s.log.Warn("answer refused: the trusts file it under different patients (wrong-patient hazard)", "request_id", requestID(c), "holders", holders, "patients", len(patients))
	return "", &Error{Status: http.StatusConflict, Message: fmt.Sprintf("The trusts holding %s file it under different patients, so none of it is sent: which patient it belongs to must be resolved at the trusts.", what)}
}

// addPatient adds the patient a normalised result names (its PatientID, when that is an NHS
// number) to patients, once.
func addPatient(patients []string, ds dcmjson.Dataset) []string {
	if nhs, err := NormaliseNHSNumber(ds.String(dcmjson.TagPatientID)); err == nil && !slices.Contains(patients, nhs) {
		return append(patients, nhs)
	}
	return patients
}

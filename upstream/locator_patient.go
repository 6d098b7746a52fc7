package upstream

import (
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// NormaliseNHSNumber checks an NHS number (ten digits with a modulus-11 check digit, spaces
// allowed between groups as it is often written) and returns its ten digits. It is the one
// form of a patient the locator, the cache's patient index and the authorizer see.
func NormaliseNHSNumber(s string) (string, error) {
	digits := strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	if len(digits) != 10 {
		return "", errors.New("an NHS number has 10 digits")
	}
	sum := 0
	for i := 0; i < 10; i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return "", errors.New("an NHS number has only digits")
		}
		if i < 9 {
			sum += int(c-'0') * (10 - i)
		}
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	if check == 10 || check != int(digits[9]-'0') {
		return "", errors.New("the check digit does not match (modulus 11)")
	}
	return digits, nil
}

// addPatients adds to patients each of ids that is a valid NHS number, normalised, and not
// there yet. Anything else (a local hospital number, an empty PatientID) names no patient the
// proxy can check, and is left out.
func addPatients(patients []string, ids ...string) []string {
	for _, id := range ids {
		if nhs, err := NormaliseNHSNumber(id); err == nil && !slices.Contains(patients, nhs) {
			patients = append(patients, nhs)
		}
	}
	return patients
}

// locateQuery is the search that asks src whether it holds a study: by its UID, with the
// attributes in which src keeps the patient's NHS number, so that the location says whose
// study it is.
func locateQuery(src *Source, studyUID string) url.Values {
	fields := []string{dcmjson.TagPatientID, dcmjson.TagIssuerOfPatientID}
	if src.PatientID == InOtherPatientIDsSequence {
		fields = append(fields, dcmjson.TagOtherPatientIDsSequence)
	}
	return url.Values{dcmjson.TagStudyInstanceUID: {studyUID}, "includefield": {strings.Join(fields, ",")}}
}

// locatorFormat versions the key of a remembered location (Locator.key): entries written in
// an older format, such as the holders alone without the patient, are never read, so they are
// misses and expire with their TTL.
const locatorFormat = "v2"

// locatorEntry is a remembered location as stored: the holders' ids, and the patients (NHS
// numbers) the holders file the study under.
type locatorEntry struct {
	Holders  []string `json:"h"`
	Patients []string `json:"p,omitempty"`
}

// encode is the entry's stored form.
func (e locatorEntry) encode() []byte {
	b, _ := json.Marshal(e) // a struct of string slices always marshals
	return b
}

// decodeLocatorEntry reads a stored location; an entry that does not decode, or names no
// holder, is none.
func decodeLocatorEntry(b []byte) (locatorEntry, bool) {
	var e locatorEntry
	if err := json.Unmarshal(b, &e); err != nil || len(e.Holders) == 0 {
		return locatorEntry{}, false
	}
	return e, true
}

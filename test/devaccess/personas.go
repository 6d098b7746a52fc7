package devaccess

import (
	"net/http"

	"github.com/nirproxy/nirproxy/test/devissuer"
)

// Persona is a caller nirproxy's demo and tests act as: who it is, what its token says, the
// headers it sends, and what nirproxy must answer its data requests.
type Persona struct {
	// Name is a short name, like clinician.
	Name string
	// Var is the shell variable its token is exported as, like NIR_TOKEN.
	Var string
	// Describe says who it is and what it shows, for people.
	Describe string
	// Subject, Organisation, Role and Purpose are what its token says; Purpose "" states none.
	Subject, Organisation, Role, Purpose string
	// Headers are sent with its requests, such as a break-glass reason.
	Headers map[string]string
	// Status is what nirproxy answers its search of a patient's studies: 200 or the refusal.
	Status int
	// Refusal is the part of the refusal's message that names the rule; "" when allowed.
	Refusal string
}

// Claims is p's token's claims, in the IHE IUA profile, calling through the registered viewer.
func (p Persona) Claims() devissuer.Claims {
	iua := &devissuer.IUA{
		SubjectOrganizationID: p.Organisation,
		SubjectRole:           []devissuer.Coding{{Code: p.Role}},
	}
	if p.Purpose != "" {
		iua.PurposeOfUse = []devissuer.Coding{devissuer.PurposeOfUse(p.Purpose)}
	}
	return devissuer.Claims{Subject: p.Subject, ClientID: ViewerClientID, IUA: iua}
}

// The personas. Their subjects are made-up user ids.
var (
	// Clinician is a clinical practitioner of an onboarded trust, treating the patient.
	Clinician = Persona{Name: "clinician", Var: "NIR_TOKEN", Describe: "a clinician (R8000) of an onboarded trust, for treatment (TREAT)",
		Subject: "dev-user-clinician", Organisation: Onboarded, Role: "R8000", Purpose: "TREAT", Status: http.StatusOK}
	// PrivacyOfficer may read the audit, not patients' imaging.
	PrivacyOfficer = Persona{Name: "privacy-officer", Var: "NIR_TOKEN_PRIVACY", Describe: "a privacy officer (R0001): may read the audit, not imaging",
		Subject: "dev-user-privacy", Organisation: Onboarded, Role: "R0001", Status: http.StatusForbidden, Refusal: "may not"}
	// Researcher's token states research, which is not direct care.
	Researcher = Persona{Name: "researcher", Var: "NIR_TOKEN_RESEARCH", Describe: "a clinician whose token says research (HRESCH): not direct care",
		Subject: "dev-user-research", Organisation: Onboarded, Role: "R8000", Purpose: "HRESCH", Status: http.StatusForbidden, Refusal: "direct patient care"}
	// LapsedClinician acts for an organisation whose DSPT assessment has lapsed.
	LapsedClinician = Persona{Name: "lapsed-organisation", Var: "NIR_TOKEN_LAPSED", Describe: "a clinician of a trust whose DSPT assessment has lapsed",
		Subject: "dev-user-lapsed", Organisation: Lapsed, Role: "R8000", Purpose: "TREAT", Status: http.StatusForbidden, Refusal: "no in-year DSPT assessment"}
	// BreakGlass is emergency access with a reason: allowed, and a security event.
	BreakGlass = Persona{Name: "break-glass", Var: "NIR_TOKEN_BTG", Describe: "break-glass access (BTG) with a reason: allowed and logged as a security event",
		Subject: "dev-user-emergency", Organisation: Onboarded, Role: "R8000", Purpose: "BTG",
		Headers: map[string]string{"X-Purpose-Of-Use-Reason": "Unconscious patient in ED; no consent possible"}, Status: http.StatusOK}
)

// Personas are every persona, the allowed first.
func Personas() []Persona {
	return []Persona{Clinician, PrivacyOfficer, Researcher, LapsedClinician, BreakGlass}
}

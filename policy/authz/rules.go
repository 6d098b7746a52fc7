package authz

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Permission is one thing a job role may be allowed to do. Its value is the name the
// configuration uses.
type Permission string

// The permissions a role may be given.
const (
	// PermSearch is searching for studies, series and instances (QIDO-RS).
	PermSearch Permission = "search"
	// PermRetrieveImages is retrieving images, their metadata and renderings (WADO-RS).
	PermRetrieveImages Permission = "retrieveImages"
	// PermRetrieveReports is retrieving reports.
	PermRetrieveReports Permission = "retrieveReports"
	// PermReadAudit is reading the audit of accesses to patient data.
	PermReadAudit Permission = "readAudit"
	// PermOperate is using the operations endpoints (/status, /metrics).
	PermOperate Permission = "operate"
)

// Permissions lists every permission, in the order the documentation gives them.
func Permissions() []Permission {
	return []Permission{PermSearch, PermRetrieveImages, PermRetrieveReports, PermReadAudit, PermOperate}
}

// patientData reports whether the permission reads patient data: only those need a direct-care
// purpose of use.
func (p Permission) patientData() bool {
	return p == PermSearch || p == PermRetrieveImages || p == PermRetrieveReports
}

// describe is the permission as the end of a sentence for the client, like "retrieve images".
func (p Permission) describe() string {
	switch p {
	case PermRetrieveImages:
		return "retrieve images"
	case PermRetrieveReports:
		return "retrieve reports"
	case PermReadAudit:
		return "read the audit"
	}
	return string(p)
}

// permissionOf is the permission an action of this kind needs. The kinds are "search",
// "retrieve" (images: every retrieve route nirproxy has today) and the permissions' own names
// for routes that need one of the others.
func permissionOf(kind string) (Permission, bool) {
	if kind == "retrieve" {
		return PermRetrieveImages, true
	}
	p := Permission(kind)
	return p, slices.Contains(Permissions(), p)
}

// RoleActions maps a national RBAC job role (R8000, R0001, ...) to the permissions it is given.
// A role it does not name is given nothing.
type RoleActions map[string][]Permission

// DefaultRoleActions is the safe default for the roles map, for config.Default to use; this
// package never applies it by itself. Clinical roles (R8000 Clinical Practitioner, R8001 Nurse,
// R8003 Health Professional) search and retrieve images and reports; R0001 (Privacy Officer)
// reads the audit; every other role, including students (R8004), admin and clinical support
// (R8008) and the Caldicott Guardian (R5105), is given nothing. No role operates the service by
// default: operations use the admin listener, or a deployment gives operate to a role.
func DefaultRoleActions() RoleActions {
	clinical := []Permission{PermSearch, PermRetrieveImages, PermRetrieveReports}
	return RoleActions{
		"R8000": slices.Clone(clinical),
		"R8001": slices.Clone(clinical),
		"R8003": slices.Clone(clinical),
		"R0001": {PermReadAudit},
	}
}

// allows reports whether role is given permission p.
func (ra RoleActions) allows(role string, p Permission) bool {
	return role != "" && slices.Contains(ra[role], p)
}

// jobRole is a national RBAC job role code: R and four digits.
var jobRole = regexp.MustCompile(`^R[0-9]{4}$`)

// Validate reports the first role that is not a job role code and the first permission that
// is not known, naming the role.
func (ra RoleActions) Validate() error {
	for _, role := range slices.Sorted(maps.Keys(ra)) {
		if !jobRole.MatchString(role) {
			return fmt.Errorf("role %q is not a national RBAC job role code like R8000", role)
		}
		for i, p := range ra[role] {
			if !slices.Contains(Permissions(), p) {
				return fmt.Errorf("role %s permission [%d] %q is not one of %s", role, i, p, joinPermissions())
			}
		}
	}
	return nil
}

// joinPermissions lists the permissions' names for an error message.
func joinPermissions() string {
	names := make([]string, 0, len(Permissions()))
	for _, p := range Permissions() {
		names = append(names, string(p))
	}
	return strings.Join(names, ", ")
}

// AssessmentYear is a Data Security and Protection Toolkit assessment year, named by the
// calendar year it starts in: 2025 is "2025/26".
type AssessmentYear int

// String is the year as the DSPT writes it, like "2025/26".
func (y AssessmentYear) String() string { return fmt.Sprintf("%04d/%02d", int(y), (int(y)+1)%100) }

// assessmentYear is the form of an assessment year: "2025/26".
var assessmentYear = regexp.MustCompile(`^([0-9]{4})/([0-9]{2})$`)

// ParseAssessmentYear reads an assessment year written like "2025/26", whose second part must
// be the year after the first.
func ParseAssessmentYear(s string) (AssessmentYear, error) {
	m := assessmentYear.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("read assessment year %q: not written like 2025/26", s)
	}
	start, _ := strconv.Atoi(m[1])
	end, _ := strconv.Atoi(m[2])
	if end != (start+1)%100 {
		return 0, fmt.Errorf("read assessment year %q: %02d is not the year after %d", s, end, start)
	}
	return AssessmentYear(start), nil
}

// DSPTYear is when a DSPT assessment year begins: it runs from StartMonth/StartDay at midnight
// in Location to the day before the same date a year later. GOVERNANCE.md does not state it;
// NHS England's toolkit years run 1 July to 30 June (DefaultDSPTYear), and a deployment can
// change it in its configuration.
type DSPTYear struct {
	// StartMonth and StartDay are the first day of an assessment year.
	StartMonth time.Month
	StartDay   int
	// Location is the time zone whose midnight starts the year; nil is UTC.
	Location *time.Location
}

// DefaultDSPTYear is the NHS toolkit year, 1 July to 30 June, starting at midnight UTC, for
// config.Default to use; this package never applies it by itself.
func DefaultDSPTYear() DSPTYear { return DSPTYear{StartMonth: time.July, StartDay: 1} }

// Validate reports a start date that is not a day of every year.
func (y DSPTYear) Validate() error {
	if y.StartMonth < time.January || y.StartMonth > time.December {
		return fmt.Errorf("DSPT year start month %d is not a month 1-12", int(y.StartMonth))
	}
	// 2001 is not a leap year: 29 February is refused, since most years lack it.
	last := time.Date(2001, y.StartMonth+1, 0, 0, 0, 0, 0, time.UTC).Day()
	if y.StartDay < 1 || y.StartDay > last {
		return fmt.Errorf("DSPT year start day %d is not a day 1-%d of %s", y.StartDay, last, y.StartMonth)
	}
	return nil
}

// Covering is the assessment year t falls in.
func (y DSPTYear) Covering(t time.Time) AssessmentYear {
	loc := y.Location
	if loc == nil {
		loc = time.UTC
	}
	t = t.In(loc)
	if t.Before(time.Date(t.Year(), y.StartMonth, y.StartDay, 0, 0, 0, 0, loc)) {
		return AssessmentYear(t.Year() - 1)
	}
	return AssessmentYear(t.Year())
}

// Rules are the deployment's authorization settings. The zero value refuses every request
// (no role is given anything) and is not valid (no DSPT year); config.Default fills them in
// from DefaultRoleActions and DefaultDSPTYear.
type Rules struct {
	// RoleActions gives each job role its permissions.
	RoleActions RoleActions
	// DSPTYear says which assessment year is in year.
	DSPTYear DSPTYear
	// AcceptRequestPurpose accepts the purpose of use the request states (the X-Purpose-Of-Use
	// header, passed in as policy.Action.Purpose) when neither the token nor the calling
	// system's registration states one. Off, such a request is refused.
	AcceptRequestPurpose bool
}

// Validate reports the first setting that cannot be used.
func (r Rules) Validate() error {
	if err := r.RoleActions.Validate(); err != nil {
		return fmt.Errorf("roleActions: %w", err)
	}
	if err := r.DSPTYear.Validate(); err != nil {
		return fmt.Errorf("dsptYear: %w", err)
	}
	return nil
}

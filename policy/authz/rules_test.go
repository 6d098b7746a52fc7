package authz

import (
	"strings"
	"testing"
	"time"
)

func TestDSPTYearCovering(t *testing.T) {
	tokyo := time.FixedZone("UTC+9", 9*60*60)
	for _, tc := range []struct {
		name string
		year DSPTYear
		t    time.Time
		want string
	}{
		{"30 June is the old year's last day", DefaultDSPTYear(), time.Date(2026, 6, 30, 23, 59, 59, 999999999, time.UTC), "2025/26"},
		{"1 July is the new year's first", DefaultDSPTYear(), time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), "2026/27"},
		{"January is the second half", DefaultDSPTYear(), time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC), "2025/26"},
		{"December is the first half", DefaultDSPTYear(), time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC), "2025/26"},
		{"the turn of the century", DefaultDSPTYear(), time.Date(2099, 8, 1, 0, 0, 0, 0, time.UTC), "2099/00"},
		{"a time given in another zone is judged in UTC", DefaultDSPTYear(), time.Date(2026, 7, 1, 8, 0, 0, 0, tokyo), "2025/26"},
		{"a year judged in another zone", DSPTYear{StartMonth: time.July, StartDay: 1, Location: tokyo},
			time.Date(2026, 6, 30, 15, 0, 0, 0, time.UTC), "2026/27"},
		{"a year starting 1 January judged in another zone", DSPTYear{StartMonth: time.January, StartDay: 1, Location: tokyo},
			time.Date(2025, 12, 31, 20, 0, 0, 0, time.UTC), "2026/27"},
		{"a year starting 1 April", DSPTYear{StartMonth: time.April, StartDay: 1}, time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC), "2025/26"},
		{"a year starting 1 April, on it", DSPTYear{StartMonth: time.April, StartDay: 1}, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), "2026/27"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.year.Covering(tc.t).String(); got != tc.want {
				t.Errorf("Covering(%s) = %s, want %s", tc.t, got, tc.want)
			}
		})
	}
}

func TestDSPTYearValidate(t *testing.T) {
	for _, tc := range []struct {
		year DSPTYear
		want string // "" for valid
	}{
		{DefaultDSPTYear(), ""},
		{DSPTYear{StartMonth: time.December, StartDay: 31}, ""},
		{DSPTYear{}, "start month 0 is not a month 1-12"},
		{DSPTYear{StartMonth: 13, StartDay: 1}, "start month 13"},
		{DSPTYear{StartMonth: time.July}, "start day 0 is not a day 1-31 of July"},
		{DSPTYear{StartMonth: time.June, StartDay: 31}, "start day 31 is not a day 1-30 of June"},
		{DSPTYear{StartMonth: time.February, StartDay: 29}, "1-28 of February"},
	} {
		err := tc.year.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v.Validate() = %v, want %q", tc.year, err, tc.want)
		}
	}
}

func TestParseAssessmentYear(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want AssessmentYear // 0 for an error
	}{
		{"2025/26", 2025}, {"1999/00", 1999}, {"2025/27", 0}, {"2025-26", 0}, {"25/26", 0}, {"2025/2026", 0}, {"", 0},
	} {
		got, err := ParseAssessmentYear(tc.in)
		if got != tc.want || (tc.want == 0) != (err != nil) {
			t.Errorf("ParseAssessmentYear(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("AssessmentYear(%d).String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

func TestDefaultRoleActions(t *testing.T) {
	ra := DefaultRoleActions()
	if err := ra.Validate(); err != nil {
		t.Fatalf("the defaults are not valid: %v", err)
	}
	for _, tc := range []struct {
		role    string
		allowed []Permission
	}{
		{"R8000", []Permission{PermSearch, PermRetrieveImages, PermRetrieveReports}},
		{"R8001", []Permission{PermSearch, PermRetrieveImages, PermRetrieveReports}},
		{"R8003", []Permission{PermSearch, PermRetrieveImages, PermRetrieveReports}},
		{"R0001", []Permission{PermReadAudit}},
		{"R8004", nil}, {"R8008", nil}, {"R5105", nil}, {"", nil}, {"r8000", nil},
	} {
		for _, p := range Permissions() {
			want := false
			for _, a := range tc.allowed {
				want = want || a == p
			}
			if got := ra.allows(tc.role, p); got != want {
				t.Errorf("role %q %s: allowed %v, want %v", tc.role, p, got, want)
			}
		}
	}
	// Each call is a fresh map: a deployment that changes its copy changes no one else's.
	ra["R8000"][0] = PermOperate
	if DefaultRoleActions()["R8000"][0] != PermSearch || DefaultRoleActions()["R8001"][0] != PermSearch {
		t.Error("DefaultRoleActions shares its lists")
	}
}

func TestRulesValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules Rules
		want  string // "" for valid
	}{
		{"defaults", testRules(), ""},
		{"no roles", Rules{DSPTYear: DefaultDSPTYear()}, ""},
		{"zero", Rules{}, "dsptYear: DSPT year start month 0 is not a month 1-12"},
		{"role that is not a code", Rules{RoleActions: RoleActions{"clinician": {PermSearch}}, DSPTYear: DefaultDSPTYear()},
			`roleActions: role "clinician" is not a national RBAC job role code like R8000`},
		{"unknown permission", Rules{RoleActions: RoleActions{"R8000": {PermSearch, "retrieve"}}, DSPTYear: DefaultDSPTYear()},
			`roleActions: role R8000 permission [1] "retrieve" is not one of search, retrieveImages, retrieveReports, readAudit, operate`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rules.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && err.Error() != tc.want) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

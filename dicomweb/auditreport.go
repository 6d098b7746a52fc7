package dicomweb

import (
	"encoding/json"
	"html/template"
	"net/http"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
)

// AuditRoot is where the patient access report is served: GET /audit/patients/{nhsNumber}.
const AuditRoot = "/audit"

// kindReadAudit is the action of reading the audit, as the authorizer names it (package
// authz's permission readAudit).
const kindReadAudit = "readAudit"

// reportOffers are the patient access report's representations, JSON first.
var reportOffers = []media.Offer{{Type: "application/json"}, {Type: "text/html"}}

// access is one line of the patient access report: who looked at the patient's imaging, when,
// for which organisation, in what role and for what purpose.
type access struct {
	Time         time.Time `json:"time"`
	User         string    `json:"user"`
	Role         string    `json:"role,omitempty"`
	Organisation string    `json:"organisation,omitempty"`
	System       string    `json:"system,omitempty"`
	Purpose      string    `json:"purpose,omitempty"`
	BreakGlass   bool      `json:"breakGlass,omitempty"`
	Emergency    bool      `json:"emergency,omitempty"`
	Action       string    `json:"action"`
	Studies      []string  `json:"studies,omitempty"`
	Sources      []string  `json:"trusts,omitempty"`
}

// report is the patient access report.
type report struct {
	Patient  string   `json:"patient"`
	Accesses []access `json:"accesses"`
}

// auditRoutes serves the patient access report, behind the same authentication as the data
// routes; only a role given readAudit (a privacy officer) may read it, and each read is itself
// recorded.
func (s *Server) auditRoutes(g *echo.Group) {
	g.GET("/patients/:nhs", s.patientReport)
}

// patientReport answers GET /audit/patients/{nhsNumber}: every answered access to the patient's
// imaging in the audit record, oldest first, as JSON or a readable HTML page.
func (s *Server) patientReport(c *echo.Context) error {
	nhs, err := NormaliseNHSNumber(c.Param("nhs"))
	if err != nil {
		return badRequest("the path must end with a valid NHS number: %v", err)
	}
	m, err := negotiate(c, reportOffers, "the patient access report")
	if err != nil {
		return err
	}
	a := policy.Action{Kind: kindReadAudit, PatientID: nhs}
	if err := s.authorize(c, a); err != nil {
		return err
	}
	if err := s.authorizePatient(c, a, nhs); err != nil {
		return err
	}
	events, err := s.auditLog.Accesses(c.Request().Context(), nhs)
	if err != nil {
		return &Error{Status: http.StatusServiceUnavailable, Message: "The audit record cannot be read now.", RetryAfter: s.cfg.Fallback.RetryAfter, Err: err}
	}
	r := report{Patient: nhs, Accesses: make([]access, len(events))}
	for i, e := range events {
		r.Accesses[i] = access{Time: e.Time, User: e.User, Role: e.Role, Organisation: e.Organisation, System: e.System,
			Purpose: e.Purpose, BreakGlass: e.BreakGlass, Emergency: e.Emergency, Action: e.Action, Studies: e.StudyUIDs, Sources: e.Sources}
	}
	page := m.Offer.Type == "text/html"
	ct := m.Offer.String()
	if page {
		ct += "; charset=utf-8"
	}
	if err := s.startAnswer(c, fallback.Decision{}, audit.Event{PatientID: nhs}, ct, -1); err != nil {
		return err
	}
	if page {
		return reportPage.Execute(c.Response(), r)
	}
	return json.NewEncoder(c.Response()).Encode(r)
}

// reportPage is the report as a page a person reads; html/template escapes every value.
var reportPage = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Who has accessed this patient's imaging</title></head>
<body>
<h1>Who has accessed the imaging of patient {{.Patient}}</h1>
{{if .Accesses}}<table>
<thead><tr><th>When (UTC)</th><th>Who</th><th>Role</th><th>Organisation</th><th>Purpose</th><th>What</th><th>Trusts</th></tr></thead>
<tbody>{{range .Accesses}}
<tr><td>{{.Time.UTC.Format "2006-01-02 15:04:05"}}</td><td>{{.User}}</td><td>{{.Role}}</td><td>{{.Organisation}}{{if .System}} ({{.System}}){{end}}</td><td>{{.Purpose}}{{if .BreakGlass}} (break glass){{end}}{{if .Emergency}} (emergency){{end}}</td><td>{{.Action}}{{range .Studies}} {{.}}{{end}}</td><td>{{range .Sources}}{{.}} {{end}}</td></tr>{{end}}
</tbody></table>{{else}}<p>No one has accessed this patient's imaging through the registry.</p>{{end}}
</body></html>
`))

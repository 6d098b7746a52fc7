package authz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/nirproxy/nirproxy/policy"
)

// DSPTStatus is the outcome of an organisation's Data Security and Protection Toolkit
// assessment, as the toolkit publishes it.
type DSPTStatus string

// The DSPT statuses the registry accepts. Only StandardsMet and StandardsExceeded onboard an
// organisation.
const (
	StandardsExceeded    DSPTStatus = "Standards Exceeded"
	StandardsMet         DSPTStatus = "Standards Met"
	ApproachingStandards DSPTStatus = "Approaching Standards"
	StandardsNotMet      DSPTStatus = "Standards Not Met"
)

// Organisation is an organisation as the onboarding registry records it.
type Organisation struct {
	// ODS is its Organisation Data Service code, in upper case.
	ODS string
	// Name is for people reading logs; nothing depends on it.
	Name string
	// DSASigned is the day it signed the data sharing agreement; zero when it has not.
	DSASigned time.Time
	// DSPTStatus and DSPTYear are its latest DSPT assessment; "" and 0 when it has none.
	DSPTStatus DSPTStatus
	DSPTYear   AssessmentYear
	// DPIA is the day its data protection impact assessment was completed; zero when none.
	DPIA time.Time
	// Suspended stops its access whatever else the registry says.
	Suspended bool
}

// System is a client system as the onboarding registry records it: a viewer or service that
// calls nirproxy with users' tokens (known by its ClientID) or on its own behalf with a client
// certificate (known by its ID, or its CertificateSHA256), acting in its Role.
type System struct {
	// ID names it: a system caller's policy.Principal.System is its ID.
	ID string
	// ClientID is its OAuth client id (a token's azp or client_id); "" when it has none.
	ClientID string
	// CertificateSHA256 is the SHA-256 fingerprint of its client certificate, 64 lower-case
	// hex digits; "" when it has none.
	CertificateSHA256 string
	// Organisation is the ODS code of the organisation it acts for; the registry has it.
	Organisation string
	// Role is the national RBAC job role (R8000, ...) it acts in when it calls with its client
	// certificate; a system with a certificate has one, a system without has none (its users'
	// tokens carry their roles).
	Role string
	// Purpose is the purpose of use it was onboarded for (TREAT, ...), used when the caller's
	// token states none; "" when it declared none.
	Purpose string
}

// Registry is one valid onboarding registry. It is never changed once made: a new file makes a
// new Registry.
type Registry struct {
	organisations map[string]Organisation
	systems       map[string]System
	byClientID    map[string]string
	byCertificate map[string]string
}

// Organisation is the organisation with this ODS code, compared without regard to case.
func (r *Registry) Organisation(ods string) (Organisation, bool) {
	o, ok := r.organisations[strings.ToUpper(ods)]
	return o, ok
}

// System is the system with this ID.
func (r *Registry) System(id string) (System, bool) {
	s, ok := r.systems[id]
	return s, ok
}

// SystemByClientID is the system with this OAuth client id.
func (r *Registry) SystemByClientID(clientID string) (System, bool) {
	if clientID == "" {
		return System{}, false
	}
	return r.System(r.byClientID[clientID])
}

// SystemByCertificate is the system whose client certificate has this SHA-256 fingerprint,
// written as hex in either case, with or without colons.
func (r *Registry) SystemByCertificate(fingerprint string) (System, bool) {
	fp := normalizeFingerprint(fingerprint)
	if fp == "" {
		return System{}, false
	}
	return r.System(r.byCertificate[fp])
}

// Len is how many organisations and systems the registry holds.
func (r *Registry) Len() (organisations, systems int) {
	return len(r.organisations), len(r.systems)
}

// Registry returns r: a fixed registry is its own RegistrySource.
func (r *Registry) Registry() *Registry { return r }

// RegistryProblem is one thing wrong with an onboarding registry file.
type RegistryProblem struct {
	// Path names the entry and field, like "organisations[2] (RR8).dsptYear"; "" for the
	// file as a whole.
	Path string
	// Message says what is wrong.
	Message string
}

// String is "path: message".
func (p RegistryProblem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// RegistryError is every problem ParseRegistry found in a file.
type RegistryError struct {
	Problems []RegistryProblem
}

// Error lists the problems, one per line.
func (e *RegistryError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "read onboarding registry: " + strings.Join(lines, "\n")
}

// registryFile is the file's shape.
type registryFile struct {
	Organisations []organisationEntry `yaml:"organisations"`
	Systems       []systemEntry       `yaml:"systems"`
}

// organisationEntry is an organisation as the file writes it.
type organisationEntry struct {
	ODS        string `yaml:"ods"`
	Name       string `yaml:"name"`
	DSASigned  string `yaml:"dsaSigned"`
	DSPTStatus string `yaml:"dsptStatus"`
	DSPTYear   string `yaml:"dsptYear"`
	DPIA       string `yaml:"dpia"`
	Suspended  bool   `yaml:"suspended"`
}

// systemEntry is a system as the file writes it.
type systemEntry struct {
	ID                string `yaml:"id"`
	ClientID          string `yaml:"clientId"`
	CertificateSHA256 string `yaml:"certificateSHA256"`
	Organisation      string `yaml:"organisation"`
	Role              string `yaml:"role"`
	Purpose           string `yaml:"purpose"`
}

// yamlTypes names the file's types in yaml's messages as the file's author knows them.
var yamlTypes = strings.NewReplacer(
	"in type authz.registryFile", "at the top level (organisations, systems)",
	"in type authz.organisationEntry", "in an organisation (ods, name, dsaSigned, dsptStatus, dsptYear, dpia, suspended)",
	"in type authz.systemEntry", "in a system (id, clientId, certificateSHA256, organisation, role, purpose)",
	"field ", "key ",
)

// LoadRegistry reads and validates the onboarding registry file at path.
func LoadRegistry(path string) (*Registry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read onboarding registry: %w", err)
	}
	return ParseRegistry(data)
}

// ParseRegistry reads and validates an onboarding registry (YAML: a list of organisations and
// a list of systems; docs in the package comment). Unknown keys are refused. On failure the
// error is a *RegistryError naming every entry and field that is wrong.
func ParseRegistry(data []byte) (*Registry, error) {
	f, err := decodeRegistry(data)
	if err != nil {
		return nil, err
	}
	var v validation
	r := &Registry{
		organisations: make(map[string]Organisation, len(f.Organisations)),
		systems:       make(map[string]System, len(f.Systems)),
		byClientID:    make(map[string]string),
		byCertificate: make(map[string]string),
	}
	v.addOrganisations(r, f.Organisations)
	v.addSystems(r, f.Systems)
	if len(v.problems) > 0 {
		return nil, &RegistryError{v.problems}
	}
	return r, nil
}

// decodeRegistry decodes the file's one YAML document, refusing unknown keys, with yaml's
// messages in the words of the file.
func decodeRegistry(data []byte) (registryFile, error) {
	var f registryFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return f, &RegistryError{[]RegistryProblem{{Message: "the file is empty; it needs organisations and systems"}}}
		}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return f, &RegistryError{[]RegistryProblem{{Message: err.Error()}}}
		}
		problems := make([]RegistryProblem, len(te.Errors))
		for i, e := range te.Errors {
			problems[i] = RegistryProblem{Message: yamlTypes.Replace(e)}
		}
		return f, &RegistryError{problems}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return f, &RegistryError{[]RegistryProblem{{Message: "the file has more than one YAML document; put everything in one"}}}
	}
	return f, nil
}

// addOrganisations validates the file's organisations into r, each ODS code once.
func (v *validation) addOrganisations(r *Registry, entries []organisationEntry) {
	seen := make(map[string]string) // ODS code to the path of the entry that has it
	for i, e := range entries {
		at := fmt.Sprintf("organisations[%d]", i)
		o := v.organisation(at, e)
		if o.ODS == "" {
			continue
		}
		at += " (" + o.ODS + ")"
		if first, dup := seen[o.ODS]; dup {
			v.add(at+".ods", "%s is also %s; each organisation is listed once", o.ODS, first)
			continue
		}
		seen[o.ODS] = at
		r.organisations[o.ODS] = o
	}
}

// addSystems validates the file's systems into r (after its organisations), each id, client
// id and certificate once.
func (v *validation) addSystems(r *Registry, entries []systemEntry) {
	seen := make(map[string]string) // system ID, client id or fingerprint to the entry's path
	for i, e := range entries {
		at := fmt.Sprintf("systems[%d]", i)
		if e.ID != "" {
			at += " (" + e.ID + ")"
		}
		s := v.system(at, e, r)
		for _, k := range []struct{ field, key, value string }{
			{"id", "id " + s.ID, s.ID},
			{"clientId", "client " + s.ClientID, s.ClientID},
			{"certificateSHA256", "certificate " + s.CertificateSHA256, s.CertificateSHA256},
		} {
			if k.value == "" {
				continue
			}
			if first, dup := seen[k.key]; dup {
				v.add(at+"."+k.field, "%q is also %s's; each system has its own", k.value, first)
			}
			seen[k.key] = at
		}
		if s.ID == "" {
			continue
		}
		r.systems[s.ID] = s
		if s.ClientID != "" {
			r.byClientID[s.ClientID] = s.ID
		}
		if s.CertificateSHA256 != "" {
			r.byCertificate[s.CertificateSHA256] = s.ID
		}
	}
}

// validation collects a file's problems.
type validation struct{ problems []RegistryProblem }

// add records a problem at path.
func (v *validation) add(path, format string, args ...any) {
	v.problems = append(v.problems, RegistryProblem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// odsCode is the form of an ODS code: letters and digits.
var odsCode = regexp.MustCompile(`^[A-Z0-9]{3,10}$`)

// organisation checks an organisation entry and returns what it says; its ODS is "" when the
// entry has no usable code.
func (v *validation) organisation(at string, e organisationEntry) Organisation {
	o := Organisation{ODS: strings.ToUpper(strings.TrimSpace(e.ODS)), Name: e.Name, Suspended: e.Suspended}
	if !odsCode.MatchString(o.ODS) {
		v.add(at+".ods", "%q is not an ODS code (3 to 10 letters and digits, like RR8 or A81001)", e.ODS)
		o.ODS = ""
		return o
	}
	at += " (" + o.ODS + ")"
	o.DSASigned = v.date(at+".dsaSigned", e.DSASigned)
	o.DPIA = v.date(at+".dpia", e.DPIA)
	switch s := DSPTStatus(e.DSPTStatus); s {
	case "", StandardsExceeded, StandardsMet, ApproachingStandards, StandardsNotMet:
		o.DSPTStatus = s
	default:
		v.add(at+".dsptStatus", "%q is not a DSPT status: use %q, %q, %q or %q (or leave it out when there is no assessment)",
			e.DSPTStatus, StandardsExceeded, StandardsMet, ApproachingStandards, StandardsNotMet)
	}
	if e.DSPTYear != "" {
		y, err := ParseAssessmentYear(e.DSPTYear)
		if err != nil {
			v.add(at+".dsptYear", "%q is not an assessment year written like 2025/26", e.DSPTYear)
		}
		o.DSPTYear = y
	}
	if (e.DSPTStatus == "") != (e.DSPTYear == "") {
		v.add(at, "dsptStatus and dsptYear go together: give both, or neither when there is no assessment")
	}
	return o
}

// date reads a day written as YYYY-MM-DD; "" is the zero time.
func (v *validation) date(at, s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		v.add(at, "%q is not a date written like 2025-07-01", s)
	}
	return d
}

// system checks a system entry against the organisations r already holds.
func (v *validation) system(at string, e systemEntry, r *Registry) System {
	s := System{
		ID:                e.ID,
		ClientID:          e.ClientID,
		CertificateSHA256: normalizeFingerprint(e.CertificateSHA256),
		Organisation:      strings.ToUpper(e.Organisation),
		Role:              e.Role,
		Purpose:           e.Purpose,
	}
	if strings.TrimSpace(e.ID) != e.ID || e.ID == "" {
		v.add(at+".id", "%q is not a name: give each system an id without surrounding spaces", e.ID)
		s.ID = ""
	}
	if e.ClientID == "" && e.CertificateSHA256 == "" {
		v.add(at, "a system needs a clientId, a certificateSHA256 or both")
	}
	if e.CertificateSHA256 != "" && s.CertificateSHA256 == "" {
		v.add(at+".certificateSHA256", "%q is not a SHA-256 fingerprint (64 hex digits, colons allowed)", e.CertificateSHA256)
	}
	if _, ok := r.organisations[s.Organisation]; !ok {
		v.add(at+".organisation", "%q is not an organisation of this registry", e.Organisation)
	}
	switch {
	case e.Role != "" && !jobRole.MatchString(e.Role):
		v.add(at+".role", "%q is not a national RBAC job role code; write R and four digits, like R8000", e.Role)
	case e.Role != "" && e.CertificateSHA256 == "":
		v.add(at+".role", "is the role a system acts in when it calls with its client certificate, and this system has no certificateSHA256; "+
			"remove it (its users' tokens carry their roles), or add the certificate")
	case e.Role == "" && e.CertificateSHA256 != "":
		v.add(at+".role", "is missing; a system calling with its client certificate acts in a national RBAC job role: give it one, like R8000")
	}
	if e.Purpose != "" && !policy.IsPurposeCode(e.Purpose) {
		v.add(at+".purpose", "%q is not a purpose of use code like TREAT", e.Purpose)
	}
	return s
}

// fingerprint is the form of a SHA-256 fingerprint once normalized.
var fingerprint = regexp.MustCompile(`^[0-9a-f]{64}$`)

// normalizeFingerprint is a SHA-256 fingerprint as 64 lower-case hex digits without colons, or
// "" when s is not one.
func normalizeFingerprint(s string) string {
	fp := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if !fingerprint.MatchString(fp) {
		return ""
	}
	return fp
}

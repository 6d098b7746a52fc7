// Package fhir turns audit events into FHIR R4 AuditEvents for the NHS England Patient Audit
// Record Service (PARS), and sends them there. [AuditEvent] maps one spooled event; a [Sink]
// posts each to a FHIR server's [base]/AuditEvent, for the audit forwarder to call.
//
// The resources are built with the typed R4 model of github.com/samply/golang-fhir-models,
// shaped after the PARS profile (England-AuditEvent-PARS, draft 0.3.0) and the IHE Basic Audit
// Log Patterns (BALP) PatientRead and PatientQuery.
//
// # Mapping
//
//   - id: a UUID (version 5) of the spool record's hash, so the same record always yields the
//     same id and a receiver can de-duplicate re-sends. meta.profile: the PARS profile.
//   - type audit-event-type#rest. A search is subtype restful-interaction#search with action E
//     (BALP PatientQuery); a retrieve, metadata, rendered, bulk data or audit read is
//     restful-interaction#read with action R (BALP PatientRead).
//   - recorded: the event's time. outcome: 0 (success) for an answer, whole or partial; 4
//     (minor failure) for a refused or failed request. outcomeDesc names the refusing rule, the
//     trusts missing from or stale in a partial answer, and the HTTP status.
//   - agents, each with the who.type PARS slices them by: the organisation (Organization, ODS
//     code); the user (Practitioner), for a token's user only, with who.identifier system the
//     token's issuer (BALP) or https://fhir.nhs.uk/Id/sds-user-id for CIS2 as
//     [Options.UserIDSystem] decides, policy the token's jti, role the job role and
//     purposeOfUse the v3-ActReason codes; the calling system (Endpoint), which is BALP's
//     client agent with the client's IP address; nirproxy itself (Endpoint, [Options.Observer]),
//     BALP's server agent. BALP's client is DCM 110152 and its server 110153 on reads, the
//     other way round on searches, as BALP has them. A system calling on its own behalf (no
//     token issuer) is the requestor, and carries the role, purpose and reason a user would.
//     There is no userRole agent: an event has no SDS role profile id.
//   - source.observer: [Options.Observer] as an identifier, a Device; source.type 4
//     (application server).
//   - entities: the patient (NHS number; audit-entity-type#1, object-role#1); the transaction
//     (the X-Request-Id, BALP XrequestId, system https://fhir.nhs.uk/Id/transaction); for a
//     search, BALP's query entity with the raw query string in base64; each study as
//     urn:dicom:uid urn:oid:UID (audit-entity-type#2, object-role#3).
//   - purposeOfEvent and the requesting agent's purposeOfUse: the purpose judged, plus BTG for
//     break-glass and ETREAT for emergency access. The reason given for either is an extension
//     (valueString) on the requesting agent, at [Options.ReasonExtension]: R4's AuditEvent has
//     no element for it, and an entity detail, the other place R4 allows, cannot be written
//     with this model (it writes both of detail's value choices).
//
// # Refusals
//
// AuditEvent returns an error rather than a resource PARS would refuse. It needs, from the
// event: a time (recorded, 1..1), a request id (entity:transaction, 1..1), an organisation
// (agent:organisation, 1..2), a known action and outcome, and a patient (entity:patient,
// 1..1; [ErrNoPatient]); from the record, its hash (the id); and from the options, the
// observer's system and value (source.observer.identifier, required) and the identifier
// system of calling systems. Missing event fields are [ErrIncomplete], and no error names a
// patient.
//
// # Not confirmed
//
// PARS 0.3.0 is a draft. Its agent slicing (by who.type) and entity slicing (by type) are
// closed. Every agent here has a who.type of one of its slices, and the patient and
// transaction entities are its own; the query and study entities (audit-entity-type#2) are
// BALP's and DICOM's practice, and a strictly validating PARS may refuse them (a 4xx, which the
// Sink reports as ErrRejected). The reason extension's URL is this project's own.
package fhir

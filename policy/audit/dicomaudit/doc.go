// Package dicomaudit turns audit events into DICOM audit messages (PS3.15 A.5) and sends them
// to an IHE ATNA audit record repository (ITI-20) as RFC 5424 syslog over TLS with RFC 5425
// framing. [Message] maps one event; a [Sink] writes each spooled event for the audit
// forwarder ([forward.Sink]).
//
// The messages are built as typed structs and written with encoding/xml, following the
// schema of A.5.1 as it stands since CP-1638 (2017c): coded values with csd-code,
// codeSystemName and originalText, AuditSourceTypeCode as a coded value, EventOutcomeDescription
// and PurposeOfUse in EventIdentification.
//
// # Which message
//
//   - A search is a Query (110112, action E). A.5.3.10's query object is a SOP Class UID and a
//     DIMSE data set; QIDO-RS has neither, so the object is the route (ID type 12 RFC-3881
//     "URI", type 2, role 3) with the query string as ParticipantObjectQuery, "the query in
//     the format of the protocol used". The patient of the answer is added (the audit makes
//     one record per patient, as BALP PatientQuery does), with the studies answered.
//   - A retrieve and a bulk data request are Begin Transferring DICOM Instances (110102,
//     action E), nirproxy the source (110153) and the client the destination (110152). Not
//     DICOM Instances Transferred (110104): that message records a completed transfer at its
//     completion time, and the event is recorded, by design, before the answer's first byte,
//     so whether the transfer completed is not known when it is written.
//   - Metadata and rendered requests are DICOM Instances Accessed (110103, action R): the
//     instances are read and shown, not transferred as DICOM instances.
//   - A read of a patient's audit record is Audit Log Used (110101, action R), the audit log
//     being the route (type 2, role 13 "security resource", ID type URI), with the patient
//     added.
//
// Every message names at most one patient, as A.5 requires. Begin Transferring and Instances
// Accessed require one, so a read that names none (refused before any patient was known) is
// not sent: Send returns nil for it, as the FHIR sink does. A Query needs none, so a search
// with an empty answer, or refused, is sent without a patient.
//
// # Fields
//
//   - EventDateTime: the event's time, in UTC to the millisecond. EventOutcomeIndicator: 0 for
//     an answer, whole or partial (the data left nirproxy; A.5 has 0 for the ambiguous case);
//     4 (minor failure) for a request that failed (a bad request, nothing found, no trust
//     able to answer); 8 (serious failure, action terminated) for a request access control
//     refused. EventOutcomeDescription names the outcome, the refusing rule, the trusts a
//     partial answer lacked or answered from stale copies, and the HTTP status.
//   - PurposeOfUse: the purpose judged and BTG or ETREAT for break-glass and emergency
//     access, as HL7 v3 ActReason codes (codeSystemName 2.16.840.1.113883.5.8).
//   - ActiveParticipants: the user, for a token's user, as IHE names a user from a token,
//     alias<user@issuer> with no alias ("<user@issuer>"), with the job role as RoleIDCode
//     and the client's address; the calling system (its registered id or client id, else the
//     caller's id, else its address) with the client's IP address as NetworkAccessPointID;
//     nirproxy, as [Options.SourceID], with its AE title (AlternativeUserID "AETITLES=...")
//     and address when configured. The user is the requestor (UserIsRequestor); without a
//     token user, the calling system is, and carries the role.
//   - AuditSourceIdentification: [Options.SourceID] and [Options.SiteID], type 4
//     (application server).
//   - ParticipantObjects: the patient (type 1, role 1, ID type 2 RFC-3881 "Patient Number",
//     the NHS number); each study (type 2, role 3, ID type 110180 "Study Instance UID"), with
//     the instance a request named as a SOPClass of unknown UID, and the series as a detail
//     "SeriesInstanceUID"; the query or audit log above; the organisation the caller acted
//     for (type 3, ID type "ods-organization-code"); and the request (type 2, ID type
//     XrequestId of IHE BALP, the X-Request-Id), whose details carry the token's jti
//     ("TokenID") and a break-glass or emergency reason ("PurposeOfUseReason"). The
//     organisation and request objects, the details, and the patient on a Query and Audit
//     Log Used are this implementation's extensions, which A.5 allows (to be listed in the
//     conformance statement).
//
// # Transport
//
// Each message is an RFC 5424 SYSLOG-MSG: PRI <85> (facility 10, severity 5), version 1, the
// event's time as TIMESTAMP (so a record sent again is the same message, byte for byte),
// HOSTNAME from [SinkOptions.Hostname], APP-NAME nirproxy, no PROCID, MSGID IHE+RFC-3881, no
// structured data, then the XML in UTF-8 after a byte order mark, as RFC 5424 has it for
// UTF-8. Each is framed by octet counting (RFC 5425: "MSG-LEN SP SYSLOG-MSG") on a TLS 1.2+
// connection that verifies the repository's certificate and, when configured, presents a
// client certificate. A message longer than [SinkOptions.MaxMessageSize] (default 32 768,
// what DICOM requires receivers to accept) is split into messages that share out its studies,
// each carrying the patient, the request and everything else; one that cannot be split is
// rejected (ErrRejected, which stops the sink at the record until it is configured to take
// it).
//
// # What a nil from Send promises
//
// Syslog over TLS has no acknowledgement from the receiving application: a write that
// succeeds puts the bytes in this machine's socket buffer, nothing more. The sink narrows
// what that leaves open. It keeps one connection and, before each write on it, makes sure
// the repository has not closed it: a goroutine reads the connection (on which a syslog
// receiver sends nothing but TLS's own records) and sees its end, and the kernel is asked
// too (a non-blocking peek, on Linux), so a record is never written to a connection whose
// end has reached this machine, such as one left from before the repository restarted or
// crashed. A write that fails or passes [SinkOptions.WriteTimeout] closes the connection,
// and the forwarder sends the record again on a new one.
//
// What remains is a window of loss: a message written just before the repository dies or
// the network fails, which its kernel never received or it never read, is lost though Send
// returned nil, and the forwarder has moved past it. The window is the time the bytes take
// to reach the repository and be read, milliseconds on a healthy network. Closing it takes
// an acknowledgement that RFC 5425 does not have (RELP, or asking the repository what it
// holds, would give one). Until then, the spool keeps every record until retention, against
// which what the repository holds can be checked by request id, and the FHIR sink, whose
// deliveries are acknowledged, receives the same events.
package dicomaudit

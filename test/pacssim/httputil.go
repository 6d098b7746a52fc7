package pacssim

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
)

// writeError answers with a JSON error body shaped like Orthanc's.
func writeError(w http.ResponseWriter, r *http.Request, status int, format string, args ...any) {
	body, _ := json.Marshal(struct {
		HTTPError  string `json:"HttpError"`
		HTTPStatus int    `json:"HttpStatus"`
		Message    string `json:"Message"`
		Method     string `json:"Method"`
		URI        string `json:"Uri"`
	}{http.StatusText(status), status, fmt.Sprintf(format, args...), r.Method, r.URL.Path})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// baseURL returns the DICOMweb root as the client reached it, from the Forwarded header's
// host and proto when present, else from Host, as Orthanc builds its URLs.
func baseURL(r *http.Request) string {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if fwd := r.Header.Get("Forwarded"); fwd != "" {
		first, _, _ := strings.Cut(fwd, ",")
		for _, pair := range strings.Split(first, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok {
				continue
			}
			v = strings.Trim(v, `"`)
			switch strings.ToLower(k) {
			case "host":
				host = v
			case "proto":
				scheme = v
			}
		}
	}
	return scheme + "://" + host + "/dicom-web"
}

// mediaRange is one entry of an Accept header.
type mediaRange struct {
	typ    string            // "type/subtype", lower case
	params map[string]string // lower-case names, values unquoted
	q      float64
}

// parseAccept reads every Accept header of r into media ranges, highest q first (ties keep
// their order); ranges with q=0 are dropped. Quoted parameter values may hold commas and
// semicolons.
func parseAccept(r *http.Request) []mediaRange {
	var out []mediaRange
	for _, h := range r.Header.Values("Accept") {
		for _, item := range splitQuoted(h, ',') {
			fields := splitQuoted(item, ';')
			mr := mediaRange{typ: strings.ToLower(strings.TrimSpace(fields[0])), params: map[string]string{}, q: 1}
			if mr.typ == "" {
				continue
			}
			for _, p := range fields[1:] {
				k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
				k = strings.ToLower(strings.TrimSpace(k))
				v = strings.Trim(strings.TrimSpace(v), `"`)
				if k == "q" {
					if q, err := strconv.ParseFloat(v, 64); err == nil {
						mr.q = q
					}
					continue
				}
				mr.params[k] = v
			}
			if mr.q > 0 {
				out = append(out, mr)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].q > out[j].q })
	return out
}

// splitQuoted splits s at sep outside double quotes.
func splitQuoted(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case sep:
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// noAccept reports whether r has no Accept header, which accepts a resource's default.
// A header whose every range has q=0 is not the same: it refuses everything.
func noAccept(r *http.Request) bool {
	for _, h := range r.Header.Values("Accept") {
		if strings.TrimSpace(h) != "" {
			return false
		}
	}
	return true
}

// transferSyntaxOK reports whether a media range's transfer-syntax parameter allows what
// this PACS stores.
func transferSyntaxOK(mr mediaRange) bool {
	ts := mr.params["transfer-syntax"]
	return ts == "" || ts == "*" || ts == ExplicitVRLittleEndian
}

// acceptsMultipart reports whether r accepts multipart/related with parts of partType in
// Explicit VR Little Endian. No Accept header accepts the default, which is this.
func acceptsMultipart(r *http.Request, partType string) bool {
	if noAccept(r) {
		return true
	}
	for _, mr := range parseAccept(r) {
		switch mr.typ {
		case "*/*", "multipart/*":
			return true
		case "multipart/related":
			if t := strings.ToLower(mr.params["type"]); (t == "" || t == partType) && transferSyntaxOK(mr) {
				return true
			}
		}
	}
	return false
}

// acceptsSingle reports whether r names typ itself (not a wildcard) as acceptable.
func acceptsSingle(r *http.Request, typ string) bool {
	for _, mr := range parseAccept(r) {
		if mr.typ == typ && transferSyntaxOK(mr) {
			return true
		}
	}
	return false
}

// acceptsDICOMJSON reports whether r accepts application/dicom+json, which searches and
// metadata answer in.
func acceptsDICOMJSON(r *http.Request) bool {
	if noAccept(r) {
		return true
	}
	for _, mr := range parseAccept(r) {
		switch mr.typ {
		case "*/*", "application/*", "application/json", "application/dicom+json":
			return true
		}
	}
	return false
}

// imageType picks the rendered media type: image/jpeg by default, image/png when preferred.
// It returns "" when r accepts neither.
func imageType(r *http.Request) string {
	if noAccept(r) {
		return "image/jpeg"
	}
	for _, mr := range parseAccept(r) {
		switch mr.typ {
		case "*/*", "image/*", "image/jpeg":
			return "image/jpeg"
		case "image/png":
			return "image/png"
		}
	}
	return ""
}

// multipartStream writes a multipart/related response part by part, flushing each, so the
// client sees the first instance before the last is written. A FaultTruncatedMultipart in
// the request's context makes it stop early and leave out the closing delimiter; a
// FaultDuplicateParts makes it write each part twice.
type multipartStream struct {
	w  http.ResponseWriter
	mw *multipart.Writer
	rc *http.ResponseController

	truncated bool // no closing delimiter
	limit     int  // parts to send when truncated; 0 for all
	sent      int
	twice     bool // FaultDuplicateParts: every part is written twice
	hostile   bool // FaultHostileHeaders: every part gets hostilePartHeaders
}

func newMultipartStream(w http.ResponseWriter, r *http.Request, partType string) *multipartStream {
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", fmt.Sprintf("multipart/related; type=%q; boundary=%s", partType, mw.Boundary()))
	w.WriteHeader(http.StatusOK)
	m := &multipartStream{w: w, mw: mw, rc: http.NewResponseController(w)}
	m.limit, m.truncated = truncationOf(r.Context())
	m.twice = duplicatesParts(r.Context())
	m.hostile = hostileParts(r.Context())
	return m
}

func (m *multipartStream) part(hdr textproto.MIMEHeader, body []byte) error {
	if m.truncated && m.limit > 0 && m.sent == m.limit {
		return errTruncated
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	if m.hostile {
		for k, v := range hostilePartHeaders {
			hdr[k] = v
		}
		hdr.Set("Content-Location", "http://"+InternalHost+"/dicom-web/part/"+strconv.Itoa(m.sent+1))
	}
	copies := 1
	if m.twice {
		copies = 2
	}
	for range copies {
		pw, err := m.mw.CreatePart(hdr)
		if err != nil {
			return fmt.Errorf("write part header: %w", err)
		}
		if _, err := pw.Write(body); err != nil {
			return fmt.Errorf("write part: %w", err)
		}
	}
	m.sent++
	if err := m.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("flush part: %w", err)
	}
	return nil
}

// close writes the closing delimiter, unless a fault truncates the answer.
func (m *multipartStream) close() {
	if m.truncated {
		return
	}
	_ = m.mw.Close()
}

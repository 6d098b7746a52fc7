package dicomweb

import (
	"errors"
	"net/textproto"
	"testing"
)

// TestAskedCheck: a trust's Content-Type is accepted only when it is the representation
// asked for (the Accept the proxy sent), so active content never passes as an image, as DICOM
// JSON or as a multipart answer, and a multipart answer's part types are those asked for.
func TestAskedCheck(t *testing.T) {
	const (
		dicom  = `multipart/related; type="application/dicom"`
		octets = `multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1`
		anyTS  = `multipart/related; type="application/octet-stream"; transfer-syntax=*`
	)
	for _, tc := range []struct {
		name, accept, answer string
		ok                   bool
	}{
		{"the jpeg asked for", "image/jpeg", "image/jpeg", true},
		{"html for a jpeg", "image/jpeg", "text/html; charset=utf-8", false},
		{"svg for a jpeg", "image/jpeg", "image/svg+xml", false},
		{"png for a jpeg", "image/jpeg", "image/png", false},
		{"no type", "image/jpeg", "", false},
		{"dicom json", "application/dicom+json", "application/dicom+json; charset=utf-8", true},
		{"plain json for dicom json", "application/dicom+json", "application/json", true},
		{"html for dicom json", "application/dicom+json", "text/html", false},
		{"octets for dicom json", "application/dicom+json", "application/octet-stream", false},
		{"multipart of dicom", dicom, `multipart/related; type="application/dicom"; boundary=abc`, true},
		{"multipart naming no part type", dicom, `multipart/related; boundary=abc`, true},
		{"multipart of html", dicom, `multipart/related; type="text/html"; boundary=abc`, false},
		{"multipart without boundary", dicom, `multipart/related; type="application/dicom"`, false},
		{"single part for multipart", dicom, "application/dicom", false},
		{"octet parts", octets, `multipart/related; type="application/octet-stream"; boundary=abc`, true},
		{"octet parts with their transfer syntax (Orthanc)", octets, `multipart/related; type="application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"; boundary=abc`, true},
		{"html parts with a parameter", octets, `multipart/related; type="text/html; charset=utf-8"; boundary=abc`, false},
		{"a part type that does not parse", octets, `multipart/related; type="application/"; boundary=abc`, false},
		{"jpeg parts for octets", octets, `multipart/related; type="image/jpeg"; boundary=abc`, false},
		{"jpeg parts for any transfer syntax", anyTS, `multipart/related; type="image/jpeg"; boundary=abc`, true},
		{"svg parts for any transfer syntax", anyTS, `multipart/related; type="image/svg+xml"; boundary=abc`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := parseAsked(tc.accept).check(tc.answer)
			if (err == nil) != tc.ok {
				t.Fatalf("check(%q) for %q: %v, want ok=%v", tc.answer, tc.accept, err, tc.ok)
			}
		})
	}
}

// TestCheckPart: each part of a multipart answer must be of a part type asked for; a part
// without a Content-Type is refused too.
func TestCheckPart(t *testing.T) {
	a := parseAsked(`multipart/related; type="application/dicom"`)
	for _, tc := range []struct {
		name, ct string
		ok       bool
	}{
		{"dicom", "application/dicom; transfer-syntax=1.2.840.10008.1.2.1", true},
		{"html", "text/html", false},
		{"svg", "image/svg+xml", false},
		{"none", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := textproto.MIMEHeader{}
			if tc.ct != "" {
				h.Set("Content-Type", tc.ct)
			}
			err := a.checkPart(h)
			if (err == nil) != tc.ok || err != nil && !errors.Is(err, errWrongType) {
				t.Fatalf("checkPart(%q): %v, want ok=%v", tc.ct, err, tc.ok)
			}
		})
	}
}

// TestPartHeader: a part header passed on holds only the checked media type (with its
// transfer syntax when that is a UID) and a numeric Content-Length; whatever else a trust put
// there (descriptions, dispositions, cookies, odd parameters) is dropped.
func TestPartHeader(t *testing.T) {
	in := textproto.MIMEHeader{
		"Content-Type":        {`application/dicom; transfer-syntax=1.2.840.10008.1.2.1; note="http://pacs.internal/x"`},
		"Content-Length":      {"1234"},
		"Content-Description": {"from http://pacs.internal/store"},
		"Content-Disposition": {`attachment; filename="../../x.html"`},
		"Set-Cookie":          {"a=b"},
		"Content-Location":    {"http://pacs.internal/dicom-web/x"},
	}
	got := partHeader(in)
	want := textproto.MIMEHeader{
		"Content-Type":   {"application/dicom; transfer-syntax=1.2.840.10008.1.2.1"},
		"Content-Length": {"1234"},
	}
	if len(got) != len(want) || got.Get("Content-Type") != want.Get("Content-Type") || got.Get("Content-Length") != want.Get("Content-Length") {
		t.Fatalf("partHeader: %q, want %q", got, want)
	}
	bad := partHeader(textproto.MIMEHeader{"Content-Type": {"application/dicom; transfer-syntax=<script>"}, "Content-Length": {"12, 13"}})
	if bad.Get("Content-Type") != "application/dicom" || bad.Get("Content-Length") != "" {
		t.Fatalf("partHeader kept an unchecked value: %q", bad)
	}
}

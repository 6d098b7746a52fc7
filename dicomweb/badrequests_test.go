package dicomweb

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

// badRequest is one hostile or malformed request and what the proxy must answer.
type badRequestCase struct {
	class  string // what kind of attack or mistake it is, for the summary
	name   string
	method string
	path   string // below the proxy's origin, query included
	header []string
	status int
	msg    string // a phrase the error body's message must hold
}

// TestHostileRequestsAreRefusedBeforeAnyTrust sends well over 150 bad requests, across every
// class of attack or mistake the proxy must stop at its edge: malformed and hostile UIDs in every
// route, path traversal, injection, oversized and malformed queries, queries that would widen
// a search beyond one patient, paging and render parameters, Accept and transfer-syntax games,
// tampered, expired and foreign bulk data links, and methods the registry does not support.
// Each must get the right 4xx with a DICOMweb error body that says what was wrong, and not one
// of them may reach a trust: the fake trusts count every request they receive.
func TestHostileRequestsAreRefusedBeforeAnyTrust(t *testing.T) {
	a, b := twoTrusts(t)
	p := newTestProxy(t, a, b)
	cases := hostileRequests(t)
	if len(cases) < 150 {
		t.Fatalf("only %d cases; the table must hold at least 150", len(cases))
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		key := tc.class + "/" + tc.name
		if seen[key] {
			t.Fatalf("case %q is listed twice", key)
		}
		seen[key] = true
		t.Run(key, func(t *testing.T) {
			before := p.upstreamCalls()
			method := cmpOr(tc.method, http.MethodGet)
			req, err := http.NewRequest(method, p.srv.URL+tc.path, nil)
			if err != nil {
				t.Fatalf("build request: %v", err)
			}
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s: status %d, want %d; body %s", method, tc.path, resp.StatusCode, tc.status, body)
			}
			if got := p.upstreamCalls() - before; got != 0 {
				t.Fatalf("%d requests reached the trusts; a bad request must be refused before any", got)
			}
			if method == http.MethodHead {
				return // no body to read the message from
			}
			var eb errorBody
			if err := json.Unmarshal(body, &eb); err != nil || eb.Status != tc.status || !strings.Contains(eb.Message, tc.msg) {
				t.Fatalf("body %s; want a DICOMweb error whose message says %q", body, tc.msg)
			}
			for _, leak := range []string{alice, bob, a.srv.URL, b.srv.URL, "<script"} {
				if strings.Contains(string(body), leak) && !strings.Contains(tc.path, leak) {
					t.Fatalf("the error body gives away %q: %s", leak, body)
				}
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// hostileRequests is the table. Paths are relative to the proxy's origin.
func hostileRequests(t *testing.T) []badRequestCase {
	const (
		study    = "/dicom-web/studies/1.1"
		series   = study + "/series/1.1.1"
		instance = series + "/instances/1.1.1.1"
		badUID   = "not a valid DICOM UID"
	)
	var cs []badRequestCase
	add := func(class, name, path string, status int, msg string, header ...string) {
		cs = append(cs, badRequestCase{class: class, name: name, path: path, status: status, msg: msg, header: header})
	}

	// UIDs: every route that takes one, with UIDs a PACS might misread.
	bads := []struct{ name, uid string }{
		{"letters", "1.2.abc"},
		{"traversal", "..%2F..%2Fetc%2Fpasswd"},
		{"empty component", "1..2"},
		{"leading zero", "1.02.3"},
		{"trailing dot", "1.2."},
		{"too long", "1." + strings.Repeat("2", 64)},
		{"CRLF injection", "1.2%0D%0AX-Injected:%201"},
		{"NUL", "1.2%00"},
		{"query smuggled", "1.2%3Fx%3D1"},
		{"space", "1.2%203"},
	}
	routes := []struct {
		name string
		path func(uid string) string
	}{
		{"study retrieve", func(u string) string { return "/dicom-web/studies/" + u }},
		{"study metadata", func(u string) string { return "/dicom-web/studies/" + u + "/metadata" }},
		{"study rendered", func(u string) string { return "/dicom-web/studies/" + u + "/rendered" }},
		{"study thumbnail", func(u string) string { return "/dicom-web/studies/" + u + "/thumbnail" }},
		{"series search in study", func(u string) string { return "/dicom-web/studies/" + u + "/series" }},
		{"instance search in study", func(u string) string { return "/dicom-web/studies/" + u + "/instances" }},
		{"series retrieve", func(u string) string { return study + "/series/" + u }},
		{"series metadata", func(u string) string { return study + "/series/" + u + "/metadata" }},
		{"series rendered", func(u string) string { return study + "/series/" + u + "/rendered" }},
		{"instance search in series", func(u string) string { return study + "/series/" + u + "/instances" }},
		{"instance retrieve", func(u string) string { return series + "/instances/" + u }},
		{"instance metadata", func(u string) string { return series + "/instances/" + u + "/metadata" }},
		{"frames", func(u string) string { return series + "/instances/" + u + "/frames/1" }},
		{"frame rendered", func(u string) string { return series + "/instances/" + u + "/frames/1/rendered" }},
		{"instance thumbnail", func(u string) string { return series + "/instances/" + u + "/thumbnail" }},
	}
	for i, r := range routes {
		// Every route gets three of the bad UIDs, in turn, so every bad UID is tried on some
		// route and every route on several.
		for j := 0; j < 3; j++ {
			bad := bads[(i*3+j)%len(bads)]
			add("uid", r.name+": "+bad.name, r.path(bad.uid), 400, badUID)
		}
	}
	for _, bad := range bads {
		add("uid", "StudyInstanceUID in a query: "+bad.name, "/dicom-web/studies?StudyInstanceUID="+bad.uid, 400, "StudyInstanceUID")
	}

	// Traversal and odd paths: nothing outside the service's routes is served or forwarded.
	for _, tc := range []struct{ name, path, msg string }{
		{"dot-dot above the root", "/dicom-web/../etc/passwd", "No such DICOMweb resource"},
		{"encoded dot-dot in a study", "/dicom-web/studies/%2E%2E/metadata", badUID},
		{"encoded slash between UIDs", "/dicom-web/studies/1.1%2Fseries%2F1.1.1/metadata", badUID},
		{"double-encoded traversal", "/dicom-web/studies/%252E%252E%252Fadmin", badUID},
		{"backslash traversal", "/dicom-web/studies/..%5C..%5Cwindows", badUID},
		{"unknown resource", "/dicom-web/patients", "No such DICOMweb resource"},
		{"unknown sub-resource", study + "/reports", "No such DICOMweb resource"},
		{"too deep", instance + "/frames/1/rendered/extra", "No such DICOMweb resource"},
		{"outside the service", "/admin", "No such DICOMweb resource"},
		{"nothing here", "/nothing-here", "No such DICOMweb resource"},
		{"bulk data without a token", "/dicom-web/bulkdata/", "No such DICOMweb resource"},
		{"workitems (UPS-RS)", "/dicom-web/workitems", "No such DICOMweb resource"},
	} {
		status := http.StatusNotFound
		if tc.msg == badUID {
			status = http.StatusBadRequest
		}
		add("traversal", tc.name, tc.path, status, tc.msg)
	}

	// Searches that would concern more than one patient, or a patient not named exactly.
	pid := "PatientID=" + alice
	for _, tc := range []struct{ name, query, msg string }{
		{"no key at all", "/dicom-web/studies", "patient"},
		{"modality alone", "/dicom-web/studies?Modality=CT", "patient"},
		{"date range alone", "/dicom-web/studies?StudyDate=20200101-20251231", "patient"},
		{"patient name alone", "/dicom-web/studies?PatientName=SMITH*", "patient"},
		{"series search, modality alone", "/dicom-web/series?Modality=CT", "patient"},
		{"instance search, SOP class alone", "/dicom-web/instances?SOPClassUID=1.2.840.10008.5.1.4.1.1.2", "patient"},
		{"blank patient", "/dicom-web/studies?PatientID=%20", "NHS number"},
		{"empty patient", "/dicom-web/studies?PatientID=", "NHS number"},
		{"patient list", "/dicom-web/studies?PatientID=" + alice + "%5C" + bob, "NHS number"},
		{"patient comma list", "/dicom-web/studies?PatientID=" + alice + "," + bob, "NHS number"},
		{"patient wildcard", "/dicom-web/studies?PatientID=943*", "NHS number"},
		{"patient question mark", "/dicom-web/studies?PatientID=943476591%3F", "NHS number"},
		{"NHS number with a wrong check digit", "/dicom-web/studies?PatientID=9434765918", "NHS number"},
		{"NHS number too short", "/dicom-web/studies?PatientID=943476591", "NHS number"},
		{"NHS number with letters", "/dicom-web/studies?PatientID=94347659AB", "NHS number"},
		{"NHS number check digit 10", "/dicom-web/studies?PatientID=1234567890", "NHS number"},
		{"patient by tag, blank", "/dicom-web/studies?00100020=%20", "NHS number"},
		{"accession list", "/dicom-web/studies?AccessionNumber=XA1-0001%5CXB2-0001", "exactly one value"},
		{"accession wildcard", "/dicom-web/studies?AccessionNumber=XA1*", "exactly one value"},
		{"blank accession", "/dicom-web/studies?AccessionNumber=%20%20", "blank"},
		{"empty study UID: no scope", "/dicom-web/studies?StudyInstanceUID=", "must name a patient"},
		{"study UID list", "/dicom-web/studies?StudyInstanceUID=1.1%5C1.9", "exactly one value"},
		{"study UID comma list", "/dicom-web/studies?StudyInstanceUID=1.1,1.9", "exactly one value"},
		{"study UID wildcard", "/dicom-web/studies?StudyInstanceUID=1.*", badUID},
		{"unknown attribute", "/dicom-web/studies?" + pid + "&Nonsense=1", "neither a DICOM keyword"},
		{"private group 7FE1", "/dicom-web/studies?" + pid + "&7FE10010=1", "private"},
		{"unknown includefield", "/dicom-web/studies?" + pid + "&includefield=NoSuchAttribute", ""},
		{"bad date", "/dicom-web/studies?" + pid + "&StudyDate=2024-13-45", "StudyDate"},
		{"reversed date range", "/dicom-web/studies?" + pid + "&StudyDate=20250101-20200101", "StudyDate"},
		{"bad time", "/dicom-web/studies?" + pid + "&StudyTime=256161", "StudyTime"},
		{"fuzzymatching not a boolean", "/dicom-web/studies?" + pid + "&fuzzymatching=maybe", "fuzzymatching"},
	} {
		add("scope and keys", tc.name, tc.query, http.StatusBadRequest, tc.msg)
	}

	// Sizes, escapes and repeated keys: bounded, exact queries.
	long := strings.Repeat("A", 9000)
	many := func(key string, n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "&%s=%s", key, "00100010")
		}
		return b.String()
	}
	for _, tc := range []struct{ name, query, msg string }{
		{"query string too long", pid + "&PatientName=" + long, "search.maxQueryLength"},
		{"100,000 includefield values", pid + "&includefield=" + strings.TrimSuffix(strings.Repeat("00100010,", 100000), ","), "search.maxQueryLength"},
		{"too many includefield values", pid + many("includefield", 300), "includefield"},
		{"more than 10,000 parameters", pid + strings.Repeat("&x", 10001), "search.maxQueryLength"},
		{"private tag as a matching key", pid + "&00091010=x", "private"},
		{"private tag by group only", pid + "&00291001=x", "private"},
		{"malformed escape", pid + "&Modality=%zz", "escape"},
		{"truncated escape", pid + "&Modality=CT%2", "escape"},
		{"malformed escape in a key", pid + "&Moda%ZZlity=CT", "escape"},
		{"duplicate patient", pid + "&" + pid, "only once"},
		{"duplicate limit", pid + "&limit=1&limit=2", "only once"},
		{"duplicate modality", pid + "&Modality=CT&Modality=MR", "only once"},
		{"modality not a code string", pid + "&Modality=ct%3Cscript%3E", "Modality"},
		{"modality too long", pid + "&Modality=" + strings.Repeat("C", 17), "Modality"},
		{"accession too long", pid + "&AccessionNumber=" + strings.Repeat("1", 17), "AccessionNumber"},
		{"description too long", pid + "&StudyDescription=" + strings.Repeat("d", 65), "StudyDescription"},
		{"control character in a name", pid + "&PatientName=SMITH%07", "PatientName"},
		{"study ID too long", pid + "&StudyID=" + strings.Repeat("9", 17), "StudyID"},
		{"number of instances not a number", pid + "&NumberOfStudyRelatedInstances=many", ""},
		{"pixel data as a matching key", pid + "&7FE00010=1", "7FE00010"},
	} {
		add("size and syntax", tc.name, "/dicom-web/studies?"+tc.query, http.StatusBadRequest, tc.msg)
	}

	// Paging.
	for _, tc := range []struct{ name, query, msg string }{
		{"limit not a number", "limit=abc", "limit"},
		{"negative limit", "limit=-1", "limit"},
		{"limit in exponent form", "limit=1e3", "limit"},
		{"limit overflowing", "limit=99999999999999999999999", "limit"},
		{"limit with a sign", "limit=%2B5", "limit"},
		{"empty limit", "limit=", "limit"},
		{"offset not a number", "offset=abc", "offset"},
		{"negative offset", "offset=-5", "offset"},
		{"offset overflowing", "offset=99999999999999999999999", "offset"},
		{"offset with a fraction", "offset=1.5", "offset"},
	} {
		add("paging", tc.name, "/dicom-web/studies?"+pid+"&"+tc.query, http.StatusBadRequest, tc.msg)
	}

	// Render parameters.
	for _, tc := range []struct{ name, path, msg string }{
		{"viewport not numbers", instance + "/rendered?viewport=big", "viewport"},
		{"viewport zero width", instance + "/rendered?viewport=0,10", "viewport"},
		{"viewport negative", instance + "/rendered?viewport=-10,10", "viewport"},
		{"viewport huge", instance + "/rendered?viewport=100000,100000", "viewport"},
		{"viewport three values", instance + "/rendered?viewport=10,10,5", "viewport"},
		{"viewport crop negative", instance + "/rendered?viewport=10,10,-1,0,5,5", "viewport"},
		{"window NaN", instance + "/rendered?window=NaN,400,linear", "window"},
		{"window infinite", instance + "/rendered?window=40,Inf,linear", "window"},
		{"window zero width", instance + "/rendered?window=40,0,linear", "window"},
		{"window two values", instance + "/rendered?window=40,400", "window"},
		{"window unknown function", instance + "/rendered?window=40,400,cubic", "window"},
		{"quality over 100", instance + "/rendered?quality=101", "quality"},
		{"quality negative", instance + "/rendered?quality=-1", "quality"},
		{"quality not a number", instance + "/rendered?quality=high", "quality"},
		{"annotation unknown", instance + "/rendered?annotation=everything", "annotation"},
		{"frame zero", instance + "/frames/0", "positive integer"},
		{"frame not a number", instance + "/frames/x", "positive integer"},
		{"frame negative", instance + "/frames/-1", "positive integer"},
		{"frame list with a gap", instance + "/frames/1,,2", "positive integer"},
		{"frame overflowing", instance + "/frames/99999999999999999999", "frame"},
		{"thumbnail viewport NaN", instance + "/thumbnail?viewport=NaN,NaN", "viewport"},
		{"rendered frame zero", instance + "/frames/0/rendered", "positive integer"},
	} {
		add("render", tc.name, tc.path, http.StatusBadRequest, tc.msg)
	}

	// Accept and transfer-syntax: what the client may ask for, and nothing spliced upstream.
	for _, tc := range []struct {
		name, path, accept string
		status             int
		msg                string
	}{
		{"html for a retrieve", study, "text/html", 406, "Accept"},
		{"html for metadata", study + "/metadata", "text/html", 406, "Accept"},
		{"html for a search", "/dicom-web/studies?" + pid, "text/html", 406, "Accept"},
		{"svg for rendered", instance + "/rendered", "image/svg+xml", 406, "Accept"},
		{"html for a thumbnail", instance + "/thumbnail", "text/html", 406, "Accept"},
		{"svg for a thumbnail", instance + "/thumbnail", "image/svg+xml", 406, "Accept"},
		{"javascript for frames", instance + "/frames/1", "application/javascript", 406, "Accept"},
		{"multipart of html", study, `multipart/related; type="text/html"`, 406, "Accept"},
		{"malformed Accept", "/dicom-web/studies?" + pid, "multipart/related; type=", 400, "Accept"},
		{"unterminated quote", study, `multipart/related; type="application/dicom`, 400, "Accept"},
		{"transfer-syntax splices a media type", study, `multipart/related; type="application/dicom"; transfer-syntax="*, text/html; q=1"`, 400, "transfer-syntax"},
		{"transfer-syntax not a UID", study, `multipart/related; type="application/dicom"; transfer-syntax=jpeg`, 400, "transfer-syntax"},
		{"transfer-syntax with CRLF text", study, `multipart/related; type="application/dicom"; transfer-syntax="1.2.840.10008.1.2.1\r\nX: y"`, 400, "transfer-syntax"},
		{"transfer-syntax empty", study, `multipart/related; type="application/dicom"; transfer-syntax=""`, 400, "transfer-syntax"},
		{"transfer-syntax with a leading zero", instance + "/frames/1", `multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.01`, 400, "transfer-syntax"},
		{"q out of range", study + "/metadata", "application/dicom+json; q=7", 400, "Accept"},
	} {
		add("accept", tc.name, tc.path, tc.status, tc.msg, "Accept", tc.accept)
	}

	// Methods: the registry is read-only, whatever the path.
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		for _, path := range []string{"/dicom-web/studies", study, study + "/metadata", instance} {
			cs = append(cs, badRequestCase{class: "method", name: m + " " + strings.TrimPrefix(path, "/dicom-web"), method: m, path: path, status: http.StatusMethodNotAllowed, msg: "read-only"})
		}
	}
	cs = append(cs,
		badRequestCase{class: "method", name: "HEAD of a bad study UID", method: http.MethodHead, path: "/dicom-web/studies/1.x", status: http.StatusBadRequest},
		badRequestCase{class: "method", name: "HEAD of an unscoped search", method: http.MethodHead, path: "/dicom-web/studies?Modality=CT", status: http.StatusBadRequest},
	)

	// Bulk data links: only the proxy's own, unaltered and unexpired, are served.
	key := []byte("0123456789abcdef0123456789abcdef")
	const rel = "studies/1.1/series/1.1.1/instances/1.1.1.1/bulk/7FE00010"
	sign := func(sg *Signer, source string) string {
		tok, ok := sg.Sign(source, rel, testCaller, BulkOwner{})
		if !ok {
			t.Fatalf("the signer refused %s", rel)
		}
		return tok
	}
	good := sign(NewSigner(key, time.Hour, nil), "TA")
	payload, mac, _ := strings.Cut(good, ".")
	expired := sign(NewSigner(key, time.Hour, func() time.Time { return time.Now().Add(-2 * time.Hour) }), "TA")
	foreign := sign(NewSigner([]byte("another key of thirty-two bytes!"), time.Hour, nil), "TA")
	unknownSource := sign(NewSigner(key, time.Hour, nil), "NOSUCH")
	// forge signs with the proxy's own key what Sign would never sign: the key leaking is
	// outside the threat model, but a link must still name a clean path under its study.
	forge := func(version byte, study, path string) string {
		return forgeToken(string(key), version, time.Now().Add(time.Hour), "TA", study, path)
	}
	for _, tc := range []struct{ name, token, msg string }{
		{"version 1, no study", forge(1, "", rel), "format this proxy does not accept"},
		{"version 2, no caller", forge(2, "1.1", rel), "format this proxy does not accept"},
		{"path not under a study", forge(tokenVersion, "", "other"), "invalid"},
		{"foreign host in the path", forge(tokenVersion, "", "//attacker.example/dicom-web/other"), "invalid"},
		{"study not the path's", forge(tokenVersion, "1.9", rel), "invalid"},
		{"traversal to another study", forge(tokenVersion, "1.1", "studies/1.1/../1.9/series/1.9.1"), "invalid"},
		{"encoded traversal", forge(tokenVersion, "1.1", "studies/1.1/%2e%2e/1.9"), "invalid"},
		{"double slash", forge(tokenVersion, "1.1", "studies/1.1//series/1.1.1"), "invalid"},
		{"bad study UID", forge(tokenVersion, "1.x", "studies/1.x/series/1.1.1"), "invalid"},
	} {
		add("bulk data link", tc.name, "/dicom-web/bulkdata/"+tc.token, http.StatusNotFound, tc.msg)
	}
	othersLink, _ := NewSigner(key, time.Hour, nil).Sign("TA", rel, callerOf(policy.Principal{Issuer: "https://idp.example", Subject: "another user"}), BulkOwner{})
	add("bulk data link", "issued to another caller", "/dicom-web/bulkdata/"+othersLink, http.StatusForbidden, "issued to another caller")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, tc := range []struct{ name, token string }{
		{"garbage", "AAAA.BBBB"},
		{"no signature", payload},
		{"empty signature", payload + "."},
		{"signature of another link", payload + "." + strings.Split(foreign, ".")[1]},
		{"payload byte changed", flip(payload, 12) + "." + mac},
		{"signature byte changed", payload + "." + flip(mac, 3)},
		{"payload truncated", payload[:len(payload)-4] + "." + mac},
		{"padding added", payload + "==." + mac},
		{"signed with another key", foreign},
		{"two dots", payload + "." + mac + ".x"},
		{"overlong", strings.Repeat("A", 5000) + "." + mac},
		{"not base64", "!!!!.????"},
	} {
		add("bulk data link", tc.name, "/dicom-web/bulkdata/"+tc.token, http.StatusNotFound, "invalid")
	}
	add("bulk data link", "expired", "/dicom-web/bulkdata/"+expired, http.StatusNotFound, "expired")
	add("bulk data link", "unknown source", "/dicom-web/bulkdata/"+unknownSource, http.StatusNotFound, "no longer configured")
	return cs
}

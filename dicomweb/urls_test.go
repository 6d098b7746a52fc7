package dicomweb

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/upstream"
)

const testKey = "0123456789abcdef0123456789abcdef"

// forgeToken makes a token the way Sign does, but of any version and content, so that Verify's
// own checks can be tested on links Sign would never make.
func forgeToken(key string, version byte, exp time.Time, src, study, rel string) string {
	var b bytes.Buffer
	b.WriteByte(version)
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], uint64(exp.Unix()))
	b.Write(e[:])
	if version >= 3 {
		b.Write(NewSigner([]byte(key), time.Hour, nil).callerTag(testCaller))
	}
	b.WriteByte(byte(len(src)))
	b.WriteString(src)
	if version >= 2 {
		b.WriteByte(byte(len(study)))
		b.WriteString(study)
	}
	b.WriteString(rel)
	m := hmac.New(sha256.New, []byte(key))
	m.Write(b.Bytes())
	return base64.RawURLEncoding.EncodeToString(b.Bytes()) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// testCaller is the caller the tests' links are issued to: AllowAll's principal, as callerOf
// names it.
var testCaller = func() string {
	p, _ := policy.AllowAll{}.Authenticate(nil)
	return callerOf(p)
}()

func TestSigner(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	s := NewSigner([]byte(testKey), time.Hour, clock)
	const rel = "studies/1.2/series/1.3/instances/1.4/bulk/7FE00010?x=1"
	tok, ok := s.Sign("XA1", rel, testCaller, BulkOwner{})
	if !ok {
		t.Fatal("Sign refused a path under a study")
	}
	later := now.Add(time.Hour)
	tests := []struct {
		name    string
		token   string
		advance time.Duration
		signer  *Signer
		want    error
	}{
		{name: "valid", token: tok},
		{name: "valid a second before it expires", token: tok, advance: time.Hour - time.Second},
		{name: "tampered payload", token: tamper(tok, 12), want: ErrBadToken},
		{name: "tampered mac", token: tok[:len(tok)-2] + "AA", want: ErrBadToken},
		{name: "spare bits of the last character changed", token: tamper(tok, len(tok)-1), want: ErrBadToken},
		{name: "no mac", token: strings.Split(tok, ".")[0], want: ErrBadToken},
		{name: "expired", token: tok, advance: time.Hour, want: ErrExpiredToken},
		{name: "foreign key", token: tok, signer: NewSigner([]byte("another key of at least 32 bytes!"), time.Hour, clock), want: ErrBadToken},
		{name: "garbage", token: "not a token", want: ErrBadToken},
		{name: "too long", token: tok + strings.Repeat("A", maxTokenLength), want: ErrBadToken},
		{name: "version 1 (no study), signed by the key", token: forgeToken(testKey, 1, later, "XA1", "", rel), want: ErrOldToken},
		{name: "version 2 (no caller), signed by the key", token: forgeToken(testKey, 2, later, "XA1", "1.2", rel), want: ErrOldToken},
		{name: "version 4", token: forgeToken(testKey, 4, later, "XA1", "1.2", rel), want: ErrOldToken},
		{name: "path not under studies", token: forgeToken(testKey, tokenVersion, later, "XA1", "", "other"), want: ErrBadToken},
		{name: "signed study differs from the path's", token: forgeToken(testKey, tokenVersion, later, "XA1", "9.9", rel), want: ErrBadToken},
		{name: "traversal out of the study", token: forgeToken(testKey, tokenVersion, later, "XA1", "1.2", "studies/1.2/../../admin"), want: ErrBadToken},
		{name: "double slash", token: forgeToken(testKey, tokenVersion, later, "XA1", "1.2", "studies/1.2//attacker.example/x"), want: ErrBadToken},
		{name: "encoded path", token: forgeToken(testKey, tokenVersion, later, "XA1", "1.2", "studies/1.2/%2e%2e/x"), want: ErrBadToken},
		{name: "no source", token: forgeToken(testKey, tokenVersion, later, "", "1.2", "studies/1.2/bulk"), want: ErrBadToken},
		{name: "source length past the end", token: forgeRawToken(testKey, append(append([]byte{tokenVersion, 0, 0, 0, 0, 0, 0, 0, 0}, make([]byte, callerTagBytes)...), 200, 'X')), want: ErrBadToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now = time.Unix(1_700_000_000, 0).Add(tc.advance)
			v := s
			if tc.signer != nil {
				v = tc.signer
			}
			link, err := v.Verify(tc.token)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil && (link.Source != "XA1" || link.Study != "1.2" || link.Rel != rel || !v.IssuedTo(link, testCaller) || v.IssuedTo(link, callerOf(policy.Principal{Subject: "someone else"}))) {
				t.Fatalf("got %+v; want XA1's link under study 1.2, issued to the test caller and no one else", link)
			}
		})
	}
}

// TestSignerOwner: a link names the series and instance of the metadata it was found in only
// when that metadata is of the link's study and names both by valid UIDs; a link with no
// series and instance (as signed before they were carried) stays valid; a signed tail that is
// not two valid UIDs is refused.
func TestSignerOwner(t *testing.T) {
	s := NewSigner([]byte(testKey), time.Hour, nil)
	const rel = "studies/1.2/series/1.3/instances/1.4/bulk/7FE00010?x=1"
	for _, tc := range []struct {
		name             string
		of               BulkOwner
		series, instance string
	}{
		{"the link's instance", BulkOwner{"1.2", "1.3", "1.4"}, "1.3", "1.4"},
		{"an instance whatever the path says", BulkOwner{"1.2", "1.7", "1.8"}, "1.7", "1.8"},
		{"an instance of another study", BulkOwner{"9.9", "1.3", "1.4"}, "", ""},
		{"no instance", BulkOwner{"1.2", "1.3", ""}, "", ""},
		{"a series that is not a UID", BulkOwner{"1.2", "1.3/../x", "1.4"}, "", ""},
		{"nothing known", BulkOwner{}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, ok := s.Sign("XA1", rel, testCaller, tc.of)
			if !ok {
				t.Fatal("Sign refused a path under a study")
			}
			link, err := s.Verify(tok)
			if err != nil || link.Study != "1.2" || link.Rel != rel || link.Series != tc.series || link.Instance != tc.instance {
				t.Errorf("Verify = %+v, %v; want study 1.2, the path, series %q and instance %q", link, err, tc.series, tc.instance)
			}
		})
	}
	later := time.Now().Add(time.Hour)
	for _, tc := range []struct{ name, tail string }{
		{"one UID", "\x00\x031.3"},
		{"trailing bytes", "\x00\x031.3\x031.4x"},
		{"an empty instance", "\x00\x031.3\x00"},
		{"not a UID", "\x00\x031.3\x03a.b"},
		{"a length past the end", "\x00\x091.3"},
	} {
		t.Run("forged tail, "+tc.name, func(t *testing.T) {
			if link, err := s.Verify(forgeToken(testKey, tokenVersion, later, "XA1", "1.2", rel+tc.tail)); !errors.Is(err, ErrBadToken) {
				t.Errorf("Verify = %+v, %v; want %v", link, err, ErrBadToken)
			}
		})
	}
}

// forgeRawToken signs any payload with key.
func forgeRawToken(key string, payload []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(payload)
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// TestSignRefuses: Sign makes no link for a path the proxy would not serve, so such a
// BulkDataURI is dropped from metadata rather than handed out.
func TestSignRefuses(t *testing.T) {
	s := NewSigner([]byte(testKey), time.Hour, nil)
	for _, rel := range []string{
		"", "other", "studies", "studies/", "studies/not-a-uid/bulk", "studies/1.2/", "studies/1.2/./bulk",
		"studies/1.2/../1.3/bulk", "studies//1.2", "/studies/1.2", "studies/1.2//x", "studies/1.2/bu%2flk",
		"studies/1.2/b lk", "studies/1.2/bulk?a=b#c", "studies/1.2/bulk?a=%zz", "studies/1.2\\x", "series/1.2",
		"studies/1.2/" + strings.Repeat("a", maxBulkRel),
	} {
		if tok, ok := s.Sign("XA1", rel, testCaller, BulkOwner{}); ok {
			t.Errorf("Sign(%q) = %q; want no link", rel, tok)
		}
	}
	if _, ok := s.Sign("", "studies/1.2", testCaller, BulkOwner{}); ok {
		t.Error("Sign made a link without a source")
	}
}

func testSource(raw string) *upstream.Source {
	base, _ := url.Parse(raw)
	return &upstream.Source{SourceConfig: upstream.SourceConfig{ID: "XA1", BaseURL: base}}
}

func TestRelativeTo(t *testing.T) {
	src := testSource("http://pacs.example:8042/dicom-web")
	tests := []struct {
		name, raw, want string
	}{
		{name: "absolute", raw: "http://pacs.example:8042/dicom-web/studies/1.2/series/1.3", want: "studies/1.2/series/1.3"},
		{name: "another port and scheme of the same host", raw: "https://PACS.example/dicom-web/studies/1.2", want: "studies/1.2"},
		{name: "absolute path", raw: "/dicom-web/studies/1.2/bulk/1?x=1", want: "studies/1.2/bulk/1?x=1"},
		{name: "encoded dots of a UID, decoded once", raw: "/dicom-web/studies/1%2E2", want: "studies/1.2"},
		{name: "another host", raw: "http://internal.example/dicom-web/studies/1.2"},
		{name: "network-path reference to another host", raw: "//attacker.example/dicom-web/studies/1.2"},
		{name: "double slash after the root", raw: "http://pacs.example:8042/dicom-web//attacker.example/studies/1.2"},
		{name: "not under a study", raw: "http://pacs.example:8042/dicom-web/other"},
		{name: "traversal", raw: "http://pacs.example:8042/dicom-web/studies/1.2/../../admin"},
		{name: "traversal into a study", raw: "http://pacs.example:8042/admin/../dicom-web/studies/1.2"},
		{name: "encoded traversal", raw: "http://pacs.example:8042/dicom-web/studies/1.2/%2e%2e/1.3"},
		{name: "encoded slash", raw: "http://pacs.example:8042/dicom-web/studies%2F1.2"},
		{name: "double encoding", raw: "http://pacs.example:8042/dicom-web/studies/1.2/%252e%252e"},
		{name: "dot segment", raw: "http://pacs.example:8042/dicom-web/studies/1.2/./bulk"},
		{name: "backslash", raw: "http://pacs.example:8042/dicom-web/studies/1.2\\..\\x"},
		{name: "relative reference", raw: "studies/1.2"},
		{name: "user info", raw: "http://u:p@pacs.example:8042/dicom-web/studies/1.2"},
		{name: "other scheme", raw: "ftp://pacs.example/dicom-web/studies/1.2"},
		{name: "fragment", raw: "http://pacs.example:8042/dicom-web/studies/1.2#x"},
		{name: "outside the root", raw: "http://pacs.example:8042/wado?requestType=WADO&studyUID=1.2"},
		{name: "root prefix without a slash", raw: "http://pacs.example:8042/dicom-webx/studies/1.2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := relativeTo(src, tc.raw)
			if ok != (tc.want != "") || got != tc.want {
				t.Fatalf("relativeTo(%q) = %q, %v; want %q", tc.raw, got, ok, tc.want)
			}
		})
	}
}

func TestRewriteDataset(t *testing.T) {
	s := testSource("http://pacs.example:8042/dicom-web")
	signer := NewSigner([]byte(testKey), time.Hour, nil)
	rw := &rewriter{base: "http://proxy:8080/dicom-web", signer: signer, caller: "the answer's caller"}
	ds := dcmjson.Dataset{
		dcmjson.TagPixelData: {VR: "OW", BulkDataURI: "http://pacs.example:8042/dicom-web/studies/1.2/series/1.3/instances/1.4/bulk/7fe00010"},
		"00420011":           {VR: "OB", BulkDataURI: "http://elsewhere.example/steal"},
		"00431028":           {VR: "OB", BulkDataURI: "http://pacs.example:8042/dicom-web/other"},
	}
	ds.SetStrings(dcmjson.TagRetrieveURL, "UR", "http://pacs.example:8042/dicom-web/studies/1.2")
	ds.SetStrings("00081191", "UR", "http://pacs.example:8042/wado?requestType=WADO")
	rw.rewriteDataset(ds, s)

	if got := ds.String(dcmjson.TagRetrieveURL); got != "http://proxy:8080/dicom-web/studies/1.2" {
		t.Errorf("RetrieveURL = %q", got)
	}
	pix := ds[dcmjson.TagPixelData].BulkDataURI
	if !strings.HasPrefix(pix, "http://proxy:8080/dicom-web/bulkdata/") {
		t.Fatalf("BulkDataURI = %q, want a proxy bulkdata link", pix)
	}
	link, err := signer.Verify(strings.TrimPrefix(pix, "http://proxy:8080/dicom-web/bulkdata/"))
	if err != nil || link.Source != "XA1" || link.Study != "1.2" || link.Rel != "studies/1.2/series/1.3/instances/1.4/bulk/7fe00010" || !signer.IssuedTo(link, "the answer's caller") {
		t.Fatalf("link names %+v (%v)", link, err)
	}
	for _, tag := range []string{"00420011", "00431028"} {
		if el := ds[tag]; el == nil || el.BulkDataURI != "" || el.VR != "OB" {
			t.Errorf("%s = %+v; a BulkDataURI the proxy cannot serve must be removed, leaving the element with its vr", tag, el)
		}
	}
	if el := ds["00081191"]; el == nil || len(el.Value) != 0 {
		t.Errorf("an upstream URL outside the DICOMweb root must be removed, got %+v", el)
	}
}

// tamper changes one character of s at i to a different base64url character.
func tamper(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

package dicomweb

import (
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/upstream"
)

func TestSigner(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	s := NewSigner([]byte("0123456789abcdef0123456789abcdef"), time.Hour, clock)
	tok := s.Sign("XA1", "studies/1.2/series/1.3/instances/1.4/bulk/7FE00010?x=1")
	tests := []struct {
		name    string
		token   string
		advance time.Duration
		signer  *Signer
		wantErr bool
	}{
		{name: "valid", token: tok},
		{name: "tampered payload", token: tamper(tok, 12), wantErr: true},
		{name: "tampered mac", token: tok[:len(tok)-2] + "AA", wantErr: true},
		{name: "spare bits of the last character changed", token: tamper(tok, len(tok)-1), wantErr: true},
		{name: "no mac", token: strings.Split(tok, ".")[0], wantErr: true},
		{name: "expired", token: tok, advance: 2 * time.Hour, wantErr: true},
		{name: "other key", token: tok, signer: NewSigner([]byte("another key of at least 32 bytes!"), time.Hour, clock), wantErr: true},
		{name: "garbage", token: "not a token", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now = time.Unix(1_700_000_000, 0).Add(tc.advance)
			v := s
			if tc.signer != nil {
				v = tc.signer
			}
			id, rel, err := v.Verify(tc.token)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && (id != "XA1" || rel != "studies/1.2/series/1.3/instances/1.4/bulk/7FE00010?x=1") {
				t.Fatalf("got %q %q", id, rel)
			}
		})
	}
}

func TestBaseURL(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name    string
		f       Forwarding
		remote  string
		host    string
		headers map[string]string
		want    string
	}{
		{name: "direct", remote: "192.0.2.1:1234", host: "proxy:8080", want: "http://proxy:8080/dicom-web"},
		{name: "public URL wins", f: Forwarding{PublicURL: "https://nir.example/"}, host: "x", want: "https://nir.example/dicom-web"},
		{name: "forwarded from trusted", f: Forwarding{TrustedProxies: trusted}, remote: "10.1.2.3:5", host: "internal",
			headers: map[string]string{"Forwarded": `for=1.2.3.4;proto=https;host="nir.example"`}, want: "https://nir.example/dicom-web"},
		{name: "x-forwarded from trusted", f: Forwarding{TrustedProxies: trusted}, remote: "10.1.2.3:5", host: "internal",
			headers: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "nir.example, other"}, want: "https://nir.example/dicom-web"},
		{name: "forwarded from untrusted ignored", f: Forwarding{TrustedProxies: trusted}, remote: "192.0.2.1:5", host: "proxy",
			headers: map[string]string{"X-Forwarded-Host": "evil.example"}, want: "http://proxy/dicom-web"},
		{name: "host with a path is refused", remote: "192.0.2.1:5", host: "evil.example/x", want: "http://localhost/dicom-web"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/dicom-web/studies", nil)
			r.RemoteAddr = tc.remote
			r.Host = tc.host
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			if got := tc.f.baseURL(r); got != tc.want {
				t.Fatalf("baseURL = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRewriteDataset(t *testing.T) {
	base, _ := url.Parse("http://pacs.example:8042/dicom-web")
	s := &upstream.Source{SourceConfig: upstream.SourceConfig{ID: "XA1", BaseURL: base}}
	signer := NewSigner([]byte("0123456789abcdef0123456789abcdef"), time.Hour, nil)
	rw := &rewriter{base: "http://proxy:8080/dicom-web", signer: signer}
	ds := dcmjson.Dataset{
		dcmjson.TagPixelData: {VR: "OW", BulkDataURI: "http://pacs.example:8042/dicom-web/studies/1.2/series/1.3/instances/1.4/bulk/7fe00010"},
		"00420011":           {VR: "OB", BulkDataURI: "http://elsewhere.example/steal"},
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
	id, rel, err := signer.Verify(strings.TrimPrefix(pix, "http://proxy:8080/dicom-web/bulkdata/"))
	if err != nil || id != "XA1" || rel != "studies/1.2/series/1.3/instances/1.4/bulk/7fe00010" {
		t.Fatalf("link names %q %q (%v)", id, rel, err)
	}
	if got := ds["00420011"].BulkDataURI; got != "" {
		t.Errorf("a BulkDataURI outside the source's root must be dropped, got %q", got)
	}
	if got := ds.String("00081191"); got != "" {
		t.Errorf("an upstream URL outside the DICOMweb root must be blanked, got %q", got)
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

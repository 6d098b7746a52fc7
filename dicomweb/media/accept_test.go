package media

import (
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func mr(t, sub string, q float64, params ...string) MediaRange {
	r := MediaRange{MediaType: MediaType{Type: t, Subtype: sub}, Q: q}
	for i := 0; i+1 < len(params); i += 2 {
		if r.Params == nil {
			r.Params = map[string]string{}
		}
		r.Params[params[i]] = params[i+1]
	}
	return r
}

func TestParseAccept(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []MediaRange
		wantErr string // a substring of the error; "" for no error
	}{
		{name: "empty", in: "", want: nil},
		{name: "only commas and spaces", in: " , ,", want: nil},
		{
			name: "dicomweb-client retrieve",
			in:   `multipart/related; type="application/dicom"; transfer-syntax=*`,
			want: []MediaRange{mr("multipart", "related", 1, "type", "application/dicom", "transfer-syntax", "*")},
		},
		{
			name: "OHIF frames, unquoted type",
			in:   `multipart/related; type=application/octet-stream; transfer-syntax=*`,
			want: []MediaRange{mr("multipart", "related", 1, "type", "application/octet-stream", "transfer-syntax", "*")},
		},
		{
			name: "json with q",
			in:   `application/dicom+json, application/json;q=0.9`,
			want: []MediaRange{mr("application", "dicom+json", 1), mr("application", "json", 0.9)},
		},
		{name: "any", in: `*/*`, want: []MediaRange{mr("*", "*", 1)}},
		{name: "image wildcard", in: `image/*`, want: []MediaRange{mr("image", "*", 1)}},
		{
			name: "browser",
			in:   `text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8`,
			want: []MediaRange{
				mr("text", "html", 1), mr("application", "xhtml+xml", 1), mr("application", "xml", 0.9),
				mr("image", "avif", 1), mr("image", "webp", 1), mr("*", "*", 0.8),
			},
		},
		{
			name: "case and white space",
			in:   "  Multipart/Related ;\tTYPE = \"Application/DICOM\" ; Transfer-Syntax=1.2.840.10008.1.2.1 ; Q=0.5 ",
			want: []MediaRange{mr("multipart", "related", 0.5, "type", "application/dicom", "transfer-syntax", "1.2.840.10008.1.2.1")},
		},
		{
			name: "quoted comma and escapes",
			in:   `text/plain; x="a,b\"c", image/png`,
			want: []MediaRange{mr("text", "plain", 1, "x", `a,b"c`), mr("image", "png", 1)},
		},
		{name: "q zero", in: `image/png;q=0`, want: []MediaRange{mr("image", "png", 0)}},
		{name: "q three decimals", in: `image/png;q=0.125`, want: []MediaRange{mr("image", "png", 0.125)}},
		{name: "trailing semicolon", in: `image/png;`, want: []MediaRange{mr("image", "png", 1)}},
		{name: "empty elements", in: `image/png,,image/jpeg,`, want: []MediaRange{mr("image", "png", 1), mr("image", "jpeg", 1)}},
		{
			name: "several types with transfer syntaxes",
			in:   `multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50, multipart/related; type="application/octet-stream"; transfer-syntax=*;q=0.5`,
			want: []MediaRange{
				mr("multipart", "related", 1, "type", "image/jpeg", "transfer-syntax", "1.2.840.10008.1.2.4.50"),
				mr("multipart", "related", 0.5, "type", "application/octet-stream", "transfer-syntax", "*"),
			},
		},
		{name: "no subtype", in: `application`, wantErr: "type/subtype"},
		{name: "empty subtype", in: `application/`, wantErr: "subtype"},
		{name: "no type", in: `/json`, wantErr: "media type"},
		{name: "wildcard type concrete subtype", in: `*/json`, wantErr: "wildcard type"},
		{name: "q above one", in: `image/png;q=1.5`, wantErr: "q=1.5"},
		{name: "q not a number", in: `image/png;q=high`, wantErr: "q=high"},
		{name: "q negative", in: `image/png;q=-1`, wantErr: "q=-1"},
		{name: "q exponent", in: `image/png;q=1e0`, wantErr: "q=1e0"},
		{name: "q twice", in: `image/png;q=1;q=0`, wantErr: "more than one q"},
		{name: "param without value", in: `image/png;level`, wantErr: `"level" of image/png has no value`},
		{name: "param with empty value", in: `image/png;level=`, wantErr: "expected a value"},
		{name: "param twice", in: `image/png;a=1;a=2`, wantErr: `parameter "a" twice`},
		{name: "unterminated quote", in: `multipart/related; type="application/dicom`, wantErr: "no closing quote"},
		{name: "junk after type", in: `image/png junk`, wantErr: `"," between media ranges`},
		{name: "garbage", in: `@@@`, wantErr: "expected a media type"},
		{name: "control character in quotes", in: "text/plain; x=\"a\x01b\"", wantErr: "control character"},
		{name: "lone backslash", in: `text/plain; x="a\`, wantErr: "lone backslash"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAccept(tc.in)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseAccept(%q) = %v, want error containing %q", tc.in, got, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAccept(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseAccept(%q)\n got %#v\nwant %#v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseAcceptQuery(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		want      []MediaRange
		wantFound bool
		wantErr   bool
	}{
		{name: "absent", raw: "limit=10&offset=0"},
		{name: "empty query", raw: ""},
		{
			name: "unescaped plus in subtype", raw: "accept=application/dicom+json",
			want: []MediaRange{mr("application", "dicom+json", 1)}, wantFound: true,
		},
		{
			name: "percent-encoded", raw: "accept=multipart%2Frelated%3B%20type%3D%22application%2Fdicom%2Bxml%22",
			want: []MediaRange{mr("multipart", "related", 1, "type", "application/dicom+xml")}, wantFound: true,
		},
		{
			name: "plus as space after semicolon", raw: "accept=multipart/related;+type=application/dicom+xml",
			want: []MediaRange{mr("multipart", "related", 1, "type", "application/dicom+xml")}, wantFound: true,
		},
		{
			name: "plus as space after encoded semicolon", raw: "accept=multipart/related%3B+type%3Dapplication/dicom+xml",
			want: []MediaRange{mr("multipart", "related", 1, "type", "application/dicom+xml")}, wantFound: true,
		},
		{
			name: "list and repeat", raw: "accept=image/png,image/jpeg;q=0.5&accept=image/gif",
			want: []MediaRange{mr("image", "png", 1), mr("image", "jpeg", 0.5), mr("image", "gif", 1)}, wantFound: true,
		},
		{name: "empty value", raw: "accept=", wantFound: true, wantErr: true},
		{name: "bad escape", raw: "accept=%zz", wantFound: true, wantErr: true},
		{name: "garbage", raw: "accept=%40%40", wantFound: true, wantErr: true},
		{name: "other parameter with accept in name", raw: "acceptx=image/png"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, found, err := ParseAcceptQuery(tc.raw)
			if found != tc.wantFound {
				t.Fatalf("found = %v, want %v", found, tc.wantFound)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestRequestRanges(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		headers []string
		want    []MediaRange
		wantErr bool
	}{
		{name: "no accept at all", target: "/studies"},
		{name: "header", target: "/studies", headers: []string{"application/dicom+json"}, want: []MediaRange{mr("application", "dicom+json", 1)}},
		{
			name: "several header lines", target: "/studies", headers: []string{"image/png", "image/jpeg;q=0.1"},
			want: []MediaRange{mr("image", "png", 1), mr("image", "jpeg", 0.1)},
		},
		{
			name: "query overrides header", target: "/studies?accept=application/dicom+json", headers: []string{"text/html"},
			want: []MediaRange{mr("application", "dicom+json", 1)},
		},
		{name: "bad header", target: "/studies", headers: []string{"nonsense"}, wantErr: true},
		{name: "bad query wins over good header", target: "/studies?accept=nonsense", headers: []string{"*/*"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.target, nil)
			for _, h := range tc.headers {
				r.Header.Add("Accept", h)
			}
			got, err := RequestRanges(r)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

// Offers as the handlers list them, default first.
var (
	retrieveOffers = []Offer{
		{Type: "multipart/related", PartType: "application/dicom"},
	}
	metadataOffers = []Offer{
		{Type: "application/dicom+json"},
		{Type: "multipart/related", PartType: "application/dicom+xml"},
		{Type: "application/json"},
	}
	frameOffers = []Offer{
		{Type: "multipart/related", PartType: "application/octet-stream"},
		{Type: "multipart/related", PartType: "image/jpeg"},
		{Type: "multipart/related", PartType: "image/jp2"},
	}
	renderedOffers = []Offer{
		{Type: "image/jpeg"},
		{Type: "image/png"},
		{Type: "image/gif"},
	}
)

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name       string
		accept     string
		offers     []Offer
		wantOK     bool
		wantOffer  string // Offer.String()
		wantTS     string
		wantRanked []string // Acceptable in order, as "offer|ts"; nil to skip
	}{
		{name: "no accept gives default", accept: "", offers: metadataOffers, wantOK: true, wantOffer: "application/dicom+json"},
		{
			name: "dicomweb-client retrieve", accept: `multipart/related; type="application/dicom"; transfer-syntax=*`,
			offers: retrieveOffers, wantOK: true, wantOffer: `multipart/related; type="application/dicom"`, wantTS: "*",
		},
		{
			name: "dicomweb-client retrieve without ts", accept: `multipart/related; type="application/dicom"`,
			offers: retrieveOffers, wantOK: true, wantOffer: `multipart/related; type="application/dicom"`,
		},
		{
			name: "OHIF frames unquoted", accept: `multipart/related; type=application/octet-stream; transfer-syntax=*`,
			offers: frameOffers, wantOK: true, wantOffer: `multipart/related; type="application/octet-stream"`, wantTS: "*",
		},
		{
			name: "json preferred over plain json", accept: `application/dicom+json, application/json;q=0.9`,
			offers: metadataOffers, wantOK: true, wantOffer: "application/dicom+json",
			wantRanked: []string{"application/dicom+json|", "application/json|"},
		},
		{
			name: "plain json preferred by weight", accept: `application/dicom+json;q=0.5, application/json`,
			offers: metadataOffers, wantOK: true, wantOffer: "application/json",
		},
		{
			name: "xml search", accept: `multipart/related; type="application/dicom+xml"`,
			offers: metadataOffers, wantOK: true, wantOffer: `multipart/related; type="application/dicom+xml"`,
		},
		{
			name: "bare multipart means default part type", accept: `multipart/related`,
			offers: frameOffers, wantOK: true, wantOffer: `multipart/related; type="application/octet-stream"`,
			wantRanked: []string{`multipart/related; type="application/octet-stream"|`},
		},
		{
			name: "bare multipart for metadata is xml", accept: `multipart/related`,
			offers: metadataOffers, wantOK: true, wantOffer: `multipart/related; type="application/dicom+xml"`,
		},
		{
			name: "any gives default and everything in offer order", accept: `*/*`,
			offers: renderedOffers, wantOK: true, wantOffer: "image/jpeg",
			wantRanked: []string{"image/jpeg|", "image/png|", "image/gif|"},
		},
		{
			name: "image wildcard with preference", accept: `image/*;q=0.5, image/png`,
			offers: renderedOffers, wantOK: true, wantOffer: "image/png",
			wantRanked: []string{"image/png|", "image/jpeg|", "image/gif|"},
		},
		{
			name: "specific q=0 excludes despite wildcard", accept: `image/*, image/jpeg;q=0`,
			offers: renderedOffers, wantOK: true, wantOffer: "image/png",
			wantRanked: []string{"image/png|", "image/gif|"},
		},
		{
			name: "wildcard q=0 does not exclude named type", accept: `*/*;q=0, image/gif`,
			offers: renderedOffers, wantOK: true, wantOffer: "image/gif",
			wantRanked: []string{"image/gif|"},
		},
		{name: "only q=0", accept: `image/jpeg;q=0`, offers: renderedOffers[:1], wantOK: false},
		{
			name: "part type wildcard", accept: `multipart/related; type="image/*"`,
			offers: frameOffers, wantOK: true, wantOffer: `multipart/related; type="image/jpeg"`,
			wantRanked: []string{`multipart/related; type="image/jpeg"|`, `multipart/related; type="image/jp2"|`},
		},
		{
			name: "multipart wildcard subtype", accept: `multipart/*`,
			offers: metadataOffers, wantOK: true, wantOffer: `multipart/related; type="application/dicom+xml"`,
		},
		{
			name: "several transfer syntaxes for one part type", accept: `multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50, multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.70;q=0.8, multipart/related; type=application/octet-stream; transfer-syntax=*;q=0.5`,
			offers: frameOffers, wantOK: true, wantOffer: `multipart/related; type="image/jpeg"`, wantTS: "1.2.840.10008.1.2.4.50",
			wantRanked: []string{
				`multipart/related; type="image/jpeg"|1.2.840.10008.1.2.4.50`,
				`multipart/related; type="image/jpeg"|1.2.840.10008.1.2.4.70`,
				`multipart/related; type="application/octet-stream"|*`,
			},
		},
		{
			name: "ties keep offer order", accept: `multipart/related; type="image/jp2", multipart/related; type="image/jpeg"`,
			offers: frameOffers, wantOK: true, wantOffer: `multipart/related; type="image/jpeg"`,
		},
		{name: "single-part dicom is not offered for a study", accept: `application/dicom`, offers: retrieveOffers, wantOK: false},
		{name: "wrong part type", accept: `multipart/related; type="image/png"`, offers: retrieveOffers, wantOK: false},
		{name: "malformed part type never matches", accept: `multipart/related; type=dicom`, offers: retrieveOffers, wantOK: false},
		{name: "html only", accept: `text/html`, offers: metadataOffers, wantOK: false},
		{name: "no offers", accept: `*/*`, offers: nil, wantOK: false},
		{
			name: "browser gets default via wildcard", accept: `text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8`,
			offers: metadataOffers, wantOK: true, wantOffer: "application/dicom+json",
		},
		{
			name: "charset is carried, not matched", accept: `application/dicom+json; charset=utf-8`,
			offers: metadataOffers, wantOK: true, wantOffer: "application/dicom+json",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ranges, err := ParseAccept(tc.accept)
			if err != nil {
				t.Fatalf("ParseAccept: %v", err)
			}
			m, ok := Negotiate(ranges, tc.offers)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v (match %+v)", ok, tc.wantOK, m)
			}
			if !ok {
				return
			}
			if got := m.Offer.String(); got != tc.wantOffer {
				t.Errorf("offer = %s, want %s", got, tc.wantOffer)
			}
			if got := m.TransferSyntax(); got != tc.wantTS {
				t.Errorf("transfer syntax = %q, want %q", got, tc.wantTS)
			}
			if tc.offers[m.OfferIndex] != m.Offer {
				t.Errorf("OfferIndex %d does not point at %v", m.OfferIndex, m.Offer)
			}
			if tc.wantRanked != nil {
				var got []string
				for _, m := range Acceptable(ranges, tc.offers) {
					got = append(got, m.Offer.String()+"|"+m.TransferSyntax())
				}
				if !reflect.DeepEqual(got, tc.wantRanked) {
					t.Errorf("Acceptable =\n %q\nwant\n %q", got, tc.wantRanked)
				}
			}
		})
	}
}

func TestAcceptableWithoutRangesListsEveryOffer(t *testing.T) {
	got := Acceptable(nil, frameOffers)
	if len(got) != len(frameOffers) {
		t.Fatalf("got %d matches, want %d", len(got), len(frameOffers))
	}
	for i, m := range got {
		if m.Offer != frameOffers[i] || m.OfferIndex != i || m.Range.Q != 1 || m.TransferSyntax() != "" {
			t.Errorf("match %d = %+v", i, m)
		}
	}
}

func TestParseMediaType(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    MediaType
		wantErr bool
	}{
		{
			name: "orthanc style unquoted", in: `multipart/related; type=application/dicom; boundary=abc-123`,
			want: MediaType{Type: "multipart", Subtype: "related", Params: map[string]string{"type": "application/dicom", "boundary": "abc-123"}},
		},
		{
			name: "quoted boundary keeps case", in: `multipart/related; type="application/dicom"; boundary="AbC:d"`,
			want: MediaType{Type: "multipart", Subtype: "related", Params: map[string]string{"type": "application/dicom", "boundary": "AbC:d"}},
		},
		{name: "q is a plain parameter", in: `text/plain; q=x`, want: MediaType{Type: "text", Subtype: "plain", Params: map[string]string{"q": "x"}}},
		{name: "wildcard refused", in: `image/*`, wantErr: true},
		{name: "list refused", in: `image/png, image/jpeg`, wantErr: true},
		{name: "empty", in: ``, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMediaType(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestMediaTypeString(t *testing.T) {
	tests := []struct {
		name string
		in   MediaRange
		want string
	}{
		{name: "plain", in: mr("application", "dicom+json", 1), want: "application/dicom+json"},
		{
			name: "type first and quoted", in: mr("multipart", "related", 1, "transfer-syntax", "*", "type", "application/dicom"),
			want: `multipart/related; type="application/dicom"; transfer-syntax=*`,
		},
		{name: "weight", in: mr("image", "png", 0.5), want: "image/png; q=0.5"},
		{name: "quoting", in: mr("text", "plain", 1, "x", `a "b"`), want: `text/plain; x="a \"b\""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.in.String(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			// What we format, we parse back.
			back, err := ParseAccept(tc.in.String())
			if err != nil || len(back) != 1 || !reflect.DeepEqual(back[0], tc.in) {
				t.Fatalf("round trip of %s = %#v, %v", tc.in, back, err)
			}
		})
	}
}

func TestBoundary(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "bare", in: `multipart/related; type=application/dicom; boundary=1234`, want: "1234"},
		{name: "quoted with specials", in: `multipart/related; boundary="a b:c=d"`, want: "a b:c=d"},
		{name: "not multipart", in: `application/dicom`, wantErr: true},
		{name: "missing", in: `multipart/related; type="application/dicom"`, wantErr: true},
		{name: "too long", in: `multipart/related; boundary=` + strings.Repeat("x", 71), wantErr: true},
		{name: "bad character", in: `multipart/related; boundary="a@b"`, wantErr: true},
		{name: "trailing space", in: `multipart/related; boundary="ab "`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Boundary(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

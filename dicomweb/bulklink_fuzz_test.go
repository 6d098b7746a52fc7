package dicomweb

import (
	"crypto/hmac"
	"encoding/base64"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
	"time"
)

// bulkLinkSeeds are paths (with queries) seeded into FuzzVerifyBulkLink: good ones and each
// kind of bad one.
var bulkLinkSeeds = []string{
	"studies/1.2/series/1.3/instances/1.4/bulk/7FE00010",
	"studies/1.2.840.113619.2.55.3/series/1.3/instances/1.4/bulk/00420011?offset=0&length=10",
	"studies/1.2",
	"other",
	"studies/1.2/../../admin",
	"studies/1.2//attacker.example/x",
	"studies/1.2/%2e%2e/x",
	"studies/01.2/bulk",
	"studies/1.2/bulk?a=%zz",
	"studies/1.2/./bulk",
	"/studies/1.2",
}

// FuzzVerifyBulkLink: Verify never panics; what it accepts was signed by the key and names a
// source, a valid study UID and a clean path under studies/{that UID} with a query that parses;
// that holds also for payloads of any shape signed by the key (so the parsing after the MAC is
// fuzzed too); and Sign either refuses a source and path or makes a link Verify gives back
// unchanged.
func FuzzVerifyBulkLink(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	s := NewSigner([]byte(testKey), time.Hour, func() time.Time { return now })
	for _, rel := range bulkLinkSeeds {
		tok, _ := s.Sign("XA1", rel, testCaller, BulkOwner{})
		f.Add(tok, "XA1", rel)
		f.Add(forgeToken(testKey, tokenVersion, now.Add(time.Minute), "XA1", "1.2", rel), "", rel)
	}
	owned, _ := s.Sign("XA1", bulkLinkSeeds[0], testCaller, BulkOwner{Study: "1.2", Series: "1.3", Instance: "1.4"})
	f.Add(owned, "XA1", bulkLinkSeeds[0])
	f.Add("AAAA.BBBB", "", "")
	f.Add(forgeToken(testKey, 1, now.Add(time.Minute), "XA1", "", bulkLinkSeeds[0]), "XA1", "studies/1.2")
	f.Fuzz(func(t *testing.T, token, src, rel string) {
		if link, err := s.Verify(token); err == nil {
			checkSignedByKey(t, token)
			checkAcceptedLink(t, link)
		}
		if link, err := s.Verify(forgeRawToken(testKey, []byte(token))); err == nil {
			checkAcceptedLink(t, link)
		}
		tok, ok := s.Sign(src, rel, testCaller, BulkOwner{})
		if !ok {
			if _, good := bulkStudy(rel); good && src != "" && len(src) <= 255 {
				t.Fatalf("Sign(%q, %q) refused a link under a study", src, rel)
			}
			return
		}
		link, err := s.Verify(tok)
		if err != nil || link.Source != src || link.Rel != rel {
			t.Fatalf("Sign(%q, %q) then Verify = %+v, %v", src, rel, link, err)
		}
		checkAcceptedLink(t, link)
	})
}

// checkSignedByKey fails unless token's MAC is the key's HMAC of its payload, computed here
// apart from Verify.
func checkSignedByKey(t *testing.T, token string) {
	t.Helper()
	p, m, _ := strings.Cut(token, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	sum, err2 := base64.RawURLEncoding.DecodeString(m)
	if err1 != nil || err2 != nil || !hmac.Equal(sum, NewSigner([]byte(testKey), time.Hour, nil).mac(payload)) {
		t.Fatalf("Verify accepted %q, which the key did not sign", token)
	}
}

// checkAcceptedLink fails unless link names a source, a valid study, and a clean path under it.
func checkAcceptedLink(t *testing.T, link BulkLink) {
	t.Helper()
	p, q, hasQuery := strings.Cut(link.Rel, "?")
	under := "studies/" + link.Study
	switch {
	case link.Source == "":
		t.Fatalf("accepted %+v, which names no source", link)
	case !validUID(link.Study):
		t.Fatalf("accepted %+v, whose study is not a UID", link)
	case (link.Series != "" || link.Instance != "") && (!validUID(link.Series) || !validUID(link.Instance)):
		t.Fatalf("accepted %+v, whose series and instance are not both UIDs", link)
	case path.Clean(p) != p || p != under && !strings.HasPrefix(p, under+"/"):
		t.Fatalf("accepted %+v, whose path is not clean under %s", link, under)
	case strings.ContainsAny(p, "%\\ ") || slices.Contains(strings.Split(p, "/"), ".."):
		t.Fatalf("accepted %+v, whose path holds an escape, a backslash, a space or ..", link)
	}
	if hasQuery {
		if _, err := url.ParseQuery(q); err != nil {
			t.Fatalf("accepted %+v, whose query does not parse", link)
		}
	}
}

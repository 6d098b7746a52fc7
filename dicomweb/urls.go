package dicomweb

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/upstream"
)

// Root is where the DICOMweb service is mounted.
const Root = "/dicom-web"

// Signer makes and checks the opaque bulkdata links the proxy hands out. A link names a source,
// a study and a path below that source's DICOMweb root under that study, the caller it was
// issued to, the series and instance whose metadata it was found in when that is known (for
// the audit record: see BulkOwner), and carries an expiry and an HMAC, so no client can make the proxy fetch an address
// of its choosing, the study a link is authorised for is the one it was signed for, and a link
// passed on to someone else does not work for them.
type Signer struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// NewSigner returns a signer with the given secret key and link lifetime, which must be
// positive (the configuration's bulkdataLinkTTL).
func NewSigner(key []byte, ttl time.Duration, now func() time.Time) *Signer {
	if now == nil {
		now = time.Now
	}
	if ttl <= 0 {
		panic(fmt.Sprintf("dicomweb: NewSigner: the link lifetime %v is not positive", ttl))
	}
	return &Signer{key: append([]byte(nil), key...), ttl: ttl, now: now}
}

// tokenVersion is the first byte of every token. Versions 1 (no study) and 2 (no caller) are
// refused. A version 3 payload is the version, the expiry, the caller's tag, the source and the
// study (each length-prefixed), the relative path, and, when the link knows them, a zero byte
// and the series and instance UIDs (each length-prefixed): links signed before the series and
// instance were carried lack the tail, and stay valid until they expire.
const tokenVersion = 3

// callerTagBytes is the length of the tag that binds a link to its caller: a keyed hash of the
// caller, so that no identifier of theirs is in the URL.
const callerTagBytes = 16

// maxTokenLength bounds a token before any decoding.
const maxTokenLength = 4096

// maxBulkRel bounds the signed path and query, so every link fits in maxTokenLength.
const maxBulkRel = 2048

var (
	// ErrBadToken is a bulkdata link that is malformed, forged, signed by another key or names a
	// path the proxy does not serve.
	ErrBadToken = errors.New("bulkdata link is invalid")
	// ErrExpiredToken is a genuine bulkdata link whose lifetime is over.
	ErrExpiredToken = errors.New("bulkdata link has expired")
	// ErrOldToken is a link of a token version this proxy no longer accepts.
	ErrOldToken = errors.New("bulkdata link is of an old version")
)

// BulkLink is what a verified bulkdata link names.
type BulkLink struct {
	// Source is the id of the trust the link was found at.
	Source string
	// Study is the StudyInstanceUID the path is under: what authorization checks.
	Study string
	// Rel is the path below the source's DICOMweb root (clean, under studies/{Study}), with its
	// query if it has one.
	Rel string
	// Series and Instance are the series and SOP instance UIDs whose metadata named the bulk
	// data, when the link was signed knowing them (Sign's BulkOwner); both "" when not. They
	// are for the audit record only: nothing is authorized or fetched by them.
	Series, Instance string
	// caller is the tag of the caller the link was issued to (see IssuedTo).
	caller []byte
}

// BulkOwner is the study, series and SOP instance whose metadata (a dataset's own
// StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID) holds a BulkDataURI: in DICOM JSON a
// BulkDataURI is the value of an attribute of the dataset it is in, so the bulk data is that
// instance's, whatever the trust's URL looks like. The zero BulkOwner knows none.
type BulkOwner struct {
	Study, Series, Instance string
}

// ownerOf is the BulkOwner a top-level dataset names.
func ownerOf(ds dcmjson.Dataset) BulkOwner {
	return BulkOwner{Study: ds.String(dcmjson.TagStudyInstanceUID), Series: ds.String(dcmjson.TagSeriesInstanceUID),
		Instance: ds.String(dcmjson.TagSOPInstanceUID)}
}

// in is o's series and instance when o is of study and both are valid UIDs; else both "", so
// that a link never names an instance of another study than the one it is authorized for.
func (o BulkOwner) in(study string) (series, instance string) {
	if o.Study != study || !validUID(o.Series) || !validUID(o.Instance) {
		return "", ""
	}
	return o.Series, o.Instance
}

// Sign returns a link token for rel (a path relative to the source's root, with its query),
// issued to caller (callerOf), or false when rel is not one the proxy hands out: see bulkStudy.
// The link names of's series and instance when of is of rel's study and both are UIDs, and
// neither otherwise (see BulkOwner.in); of never makes Sign refuse.
func (s *Signer) Sign(sourceID, rel, caller string, of BulkOwner) (string, bool) {
	study, ok := bulkStudy(rel)
	if !ok || sourceID == "" || len(sourceID) > 255 {
		return "", false
	}
	var b bytes.Buffer
	b.WriteByte(tokenVersion)
	var exp [8]byte
	binary.BigEndian.PutUint64(exp[:], uint64(s.now().Add(s.ttl).Unix()))
	b.Write(exp[:])
	b.Write(s.callerTag(caller))
	b.WriteByte(byte(len(sourceID)))
	b.WriteString(sourceID)
	b.WriteByte(byte(len(study)))
	b.WriteString(study)
	b.WriteString(rel)
	if series, instance := of.in(study); series != "" {
		// The zero byte cannot be in rel (bulkStudy), so it ends rel unambiguously.
		b.WriteByte(0)
		b.WriteByte(byte(len(series)))
		b.WriteString(series)
		b.WriteByte(byte(len(instance)))
		b.WriteString(instance)
	}
	payload := b.Bytes()
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload)), true
}

func (s *Signer) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(payload)
	return m.Sum(nil)
}

// callerTag is the keyed hash that stands for caller in a link.
func (s *Signer) callerTag(caller string) []byte {
	return s.mac([]byte("caller\x00" + caller))[:callerTagBytes]
}

// IssuedTo reports whether link was issued to caller (callerOf).
func (s *Signer) IssuedTo(link BulkLink, caller string) bool {
	return len(link.caller) == callerTagBytes && hmac.Equal(link.caller, s.callerTag(caller))
}

// TTL is how long the links this signer makes stay valid.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Verify checks a token and returns what it names. It accepts only a token this signer's key
// signed, of the current version, not expired, whose path is clean and under studies/{the
// signed study}; anything else is ErrBadToken, ErrOldToken or ErrExpiredToken.
func (s *Signer) Verify(token string) (BulkLink, error) {
	p, m, ok := strings.Cut(token, ".")
	if !ok || len(token) > maxTokenLength {
		return BulkLink{}, ErrBadToken
	}
	payload, err1 := base64.RawURLEncoding.Strict().DecodeString(p)
	sum, err2 := base64.RawURLEncoding.Strict().DecodeString(m)
	if err1 != nil || err2 != nil || len(payload) < 1 {
		return BulkLink{}, ErrBadToken
	}
	if !hmac.Equal(sum, s.mac(payload)) {
		return BulkLink{}, ErrBadToken
	}
	if payload[0] != tokenVersion {
		return BulkLink{}, ErrOldToken
	}
	if len(payload) < 9+callerTagBytes {
		return BulkLink{}, ErrBadToken
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(payload[1:9])), 0)
	caller := payload[9 : 9+callerTagBytes]
	rest := payload[9+callerTagBytes:]
	src, rest, ok1 := cutField(rest)
	study, rest, ok2 := cutField(rest)
	if !ok1 || !ok2 || src == "" {
		return BulkLink{}, ErrBadToken
	}
	rel, owner, owned := bytes.Cut(rest, []byte{0})
	if got, ok := bulkStudy(string(rel)); !ok || got != study {
		return BulkLink{}, ErrBadToken
	}
	link := BulkLink{Source: src, Study: study, Rel: string(rel), caller: caller}
	if owned {
		series, tail, ok1 := cutField(owner)
		instance, tail, ok2 := cutField(tail)
		if !ok1 || !ok2 || len(tail) != 0 || !validUID(series) || !validUID(instance) {
			return BulkLink{}, ErrBadToken
		}
		link.Series, link.Instance = series, instance
	}
	if !s.now().Before(exp) {
		return BulkLink{}, ErrExpiredToken
	}
	return link, nil
}

// cutField splits a length-prefixed field off b.
func cutField(b []byte) (field string, rest []byte, ok bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}

// bulkStudy returns the study a relative link (path below a source's root, and query) is under,
// or false when the proxy does not sign or serve it: the path must be clean (path.Clean leaves
// it unchanged: no "..", ".", "//" or trailing "/"), made only of letters, digits and ". _ - , /"
// (so nothing is percent-encoded, not even once more), and start studies/{valid UID}; the query,
// if any, must be printable ASCII without "#" and parse.
func bulkStudy(rel string) (string, bool) {
	if len(rel) > maxBulkRel {
		return "", false
	}
	p, q, hasQuery := strings.Cut(rel, "?")
	if !safePath(p) || path.Clean(p) != p {
		return "", false
	}
	parts := strings.SplitN(p, "/", 3)
	if len(parts) < 2 || parts[0] != "studies" || !validUID(parts[1]) {
		return "", false
	}
	if hasQuery && !safeQuery(q) {
		return "", false
	}
	return parts[1], true
}

func safePath(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-,/", c) >= 0) {
			return false
		}
	}
	return true
}

func safeQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if q[i] <= ' ' || q[i] >= 0x7f || q[i] == '#' {
			return false
		}
	}
	_, err := url.ParseQuery(q)
	return err == nil
}

// Forwarding says how the proxy names itself in the links it hands out.
type Forwarding struct {
	// PublicURL is the absolute URL clients reach the proxy at (no DICOMweb root). It is the
	// only source of the links in answers: the Host header and Forwarded / X-Forwarded-*
	// headers never shape them, so no client can point another client's links elsewhere.
	// Required: Register panics without it.
	PublicURL string
}

// base is the absolute URL of the DICOMweb root, e.g. https://imaging.example.nhs.uk/dicom-web.
func (f Forwarding) base() string {
	return strings.TrimSuffix(f.PublicURL, "/") + Root
}

// tagRetrieveURI is RetrieveURI (0040,E010), a UR naming where an object can be had.
const tagRetrieveURI = "0040E010"

// rewriter replaces a trust's URLs in its answers with the proxy's, and removes what it cannot
// replace, so that no address of a trust, or any other address a trust names, reaches a client.
type rewriter struct {
	base   string // absolute DICOMweb root of the proxy
	signer *Signer
	// caller is who the answer is for: every bulk data link in it is issued to them.
	caller string
}

// relativeTo returns the path (and query) of raw below src's DICOMweb root, or false when raw
// does not point there or names nothing the proxy serves. raw must be an absolute http(s) URL on
// src's host name (the port and scheme may differ: a PACS behind its own front end may name
// itself so) or an absolute path; it is percent-decoded exactly once (by url.Parse), and refused,
// never rewritten, when its path changes under path.Clean, holds an encoded "/", "\" or "%", or
// is not under studies/{valid UID} (see bulkStudy). A relative reference is refused rather than
// resolved, since resolving would remove dot segments.
func relativeTo(src *upstream.Source, raw string) (string, bool) {
	if len(raw) > maxBulkRel+len(src.BaseURL.String()) || strings.ContainsAny(raw, "\\\x00") {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Fragment != "" || !strings.HasPrefix(u.Path, "/") {
		return "", false
	}
	if u.Scheme != "" || u.Host != "" {
		if u.Scheme != "http" && u.Scheme != "https" || !strings.EqualFold(u.Hostname(), src.BaseURL.Hostname()) {
			return "", false
		}
	}
	esc := strings.ToLower(u.EscapedPath())
	if strings.Contains(esc, "%2f") || strings.Contains(esc, "%5c") || strings.Contains(esc, "%25") {
		return "", false
	}
	p := u.Path
	root := strings.TrimSuffix(src.BaseURL.Path, "/")
	if path.Clean(p) != p || !strings.HasPrefix(p, root+"/") {
		return "", false
	}
	rel := p[len(root)+1:]
	if u.RawQuery != "" || u.ForceQuery {
		rel += "?" + u.RawQuery
	}
	if _, ok := bulkStudy(rel); !ok {
		return "", false
	}
	return rel, true
}

// rewriteDataset makes ds, at any depth, safe to hand to a client:
//   - a BulkDataURI below src's root under a study becomes a signed link at the proxy, naming
//     the series and instance ds is (BulkOwner) when ds is of that study; any other is removed
//     (the element stays, with its vr only, so the client knows the attribute exists but the
//     proxy cannot serve its value; PS3.18 F.2.2 lets an attribute have no value);
//   - every value of VR UR, and of RetrieveURL and RetrieveURI whatever their VR, that names a
//     resource of src the proxy serves becomes that resource at the proxy; any other is removed;
//   - any other value that holds "://" or names src's host is removed;
//   - an element whose tag is not 8 hex digits or whose VR is not two capital letters is dropped,
//     and a sequence item that is not a DICOM JSON object is emptied.
//
// A removed value becomes null (an empty value) when others remain, keeping their positions;
// an element left with no value keeps only its vr. A sequence item that cannot hold anything
// to rewrite (see mayNeedRewrite) is left as it came.
func (rw *rewriter) rewriteDataset(ds dcmjson.Dataset, src *upstream.Source) {
	host := strings.ToLower(src.BaseURL.Hostname())
	var owner *BulkOwner // ds's, looked up at its first BulkDataURI
	link := func(raw string) string {
		if owner == nil {
			o := ownerOf(ds)
			owner = &o
		}
		return rw.bulkLink(src, raw, *owner)
	}
	items := func(raw json.RawMessage) bool { return mayNeedRewrite(raw, host) }
	ds.Walk(func(holder dcmjson.Dataset, tag string, el *dcmjson.Element) dcmjson.ItemFilter {
		switch {
		case !dcmjson.IsTag(tag) || !validVRName(el.VR):
			delete(holder, tag)
		case el.BulkDataURI != "":
			el.BulkDataURI = link(el.BulkDataURI)
		case el.VR == "SQ":
			return items
		case el.VR == "UR" || strings.EqualFold(tag, dcmjson.TagRetrieveURL) || strings.EqualFold(tag, tagRetrieveURI):
			rw.rewriteURLs(el, src)
		default:
			scrubValues(el, host, !opaqueVR(el.VR))
		}
		return nil
	})
}

// bulkLink is the proxy's signed link for a trust's BulkDataURI found in the metadata of
// owner, or "" when it has none.
func (rw *rewriter) bulkLink(src *upstream.Source, raw string, owner BulkOwner) string {
	rel, ok := relativeTo(src, raw)
	if !ok {
		return ""
	}
	tok, ok := rw.signer.Sign(src.ID, rel, rw.caller, owner)
	if !ok {
		return ""
	}
	return rw.base + "/bulkdata/" + tok
}

// proxyURL is the proxy's URL for a trust's URL of a resource, or false when it has none.
func (rw *rewriter) proxyURL(src *upstream.Source, raw string) (string, bool) {
	rel, ok := relativeTo(src, raw)
	if !ok {
		return "", false
	}
	return rw.base + "/" + stripQuery(rel), true
}

func (rw *rewriter) rewriteURLs(el *dcmjson.Element, src *upstream.Source) {
	for i, raw := range el.Value {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if u, ok := rw.proxyURL(src, s); ok {
				el.Value[i], _ = json.Marshal(u)
				continue
			}
		}
		el.Value[i] = jsonNull
	}
	compactValues(el)
}

var jsonNull = json.RawMessage("null")

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// mayNeedRewrite is a quick look at a sequence item's bytes, so that the many items that need
// nothing are not decoded and encoded again: false only when they hold no escape, and, in any
// letter case, no BulkDataURI, no UR, no URL-valued tag, no "://", not the source's host and no
// object key other than a tag's or an element's.
func mayNeedRewrite(raw []byte, host string) bool {
	if bytes.IndexByte(raw, '\\') >= 0 {
		return true
	}
	lower := bytes.ToLower(raw)
	for _, s := range []string{"bulkdatauri", `"ur"`, "0040e010", "00081190", "://"} {
		if bytes.Contains(lower, []byte(s)) {
			return true
		}
	}
	return host != "" && bytes.Contains(lower, []byte(host)) || hasOddKey(lower)
}

// hasOddKey reports whether a lower-cased item's bytes have an object key other than a tag
// (8 hex digits) or a member of an element (vr, value, bulkdatauri, inlinebinary) or of a
// person name (alphabetic, ideographic, phonetic).
func hasOddKey(lower []byte) bool {
	for i := 0; i < len(lower); i++ {
		if lower[i] != '"' {
			continue
		}
		end := bytes.IndexByte(lower[i+1:], '"')
		if end < 0 {
			return true
		}
		s := lower[i+1 : i+1+end]
		j := i + 1 + end + 1
		for j < len(lower) && (lower[j] == ' ' || lower[j] == '\t' || lower[j] == '\n' || lower[j] == '\r') {
			j++
		}
		if j < len(lower) && lower[j] == ':' && !knownKey(string(s)) {
			return true
		}
		i += end + 1
	}
	return false
}

func knownKey(k string) bool {
	switch k {
	case "vr", "value", "bulkdatauri", "inlinebinary", "alphabetic", "ideographic", "phonetic":
		return true
	}
	return dcmjson.IsTag(k)
}

// scrubValues removes every value of el that holds "://", or, when checkHost is set, host, or,
// when it is not (numbers, dates and UIDs), a character such values do not have, so that no
// host name hides there. A value with escapes is looked at as the client will read it.
func scrubValues(el *dcmjson.Element, host string, checkHost bool) {
	changed := false
	for i, raw := range el.Value {
		if isNull(raw) {
			continue
		}
		s := []byte(raw)
		if bytes.IndexByte(raw, '\\') >= 0 {
			var v any
			if json.Unmarshal(raw, &v) == nil {
				s, _ = json.Marshal(v)
			}
		}
		lower := bytes.ToLower(s)
		if bytes.Contains(lower, []byte("://")) || checkHost && host != "" && bytes.Contains(lower, []byte(host)) || !checkHost && !opaqueChars(el.VR, lower) {
			el.Value[i] = jsonNull
			changed = true
		}
	}
	if changed {
		compactValues(el)
	}
}

// opaqueVR reports whether values of vr are numbers, dates or UIDs, which are not checked for
// the host name (a host that is an IP address can be part of a UID).
func opaqueVR(vr string) bool {
	switch vr {
	case "UI", "DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "AT", "DA", "TM", "DT":
		return true
	}
	return false
}

// opaqueChars reports whether a lower-cased JSON value of an opaque VR (see opaqueVR) holds only
// what such values are written with: digits, ". + - e :", spaces and quotes, and for AT hex digits.
func opaqueChars(vr string, lower []byte) bool {
	for _, c := range lower {
		if !(c >= '0' && c <= '9' || strings.IndexByte(`.+-e: "`, c) >= 0 || vr == "AT" && c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// compactValues drops el's values when every one is null.
func compactValues(el *dcmjson.Element) {
	for _, v := range el.Value {
		if !isNull(v) {
			return
		}
	}
	el.Value = nil
}

func validVRName(vr string) bool {
	return len(vr) == 2 && vr[0] >= 'A' && vr[0] <= 'Z' && vr[1] >= 'A' && vr[1] <= 'Z'
}

func stripQuery(rel string) string {
	p, _, _ := strings.Cut(rel, "?")
	return p
}

// bulkLinkError is the answer to a bulkdata link Verify refused: 404, saying why, so that a
// client knows to fetch the metadata again. Nothing is asked of any trust.
func bulkLinkError(err error, ttl time.Duration) *Error {
	switch {
	case errors.Is(err, ErrExpiredToken):
		return notFound("The bulkdata link has expired (links are valid for %s); fetch the metadata again for current links.", shortDuration(ttl))
	case errors.Is(err, ErrOldToken):
		return notFound("The bulkdata link is of a format this proxy does not accept (links made before an upgrade are not); fetch the metadata again for current links.")
	default:
		return notFound("The bulkdata link is invalid: it was not made by this proxy, was altered or names no study; fetch the metadata again for current links.")
	}
}

// shortDuration writes d without zero minutes or seconds: 1h, 1h30m, 45m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

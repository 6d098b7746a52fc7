package dicomweb

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/upstream"
)

// Root is where the DICOMweb service is mounted.
const Root = "/dicom-web"

// Signer makes and checks the opaque bulkdata links the proxy hands out. A link names a source
// and a path below that source's DICOMweb root, and carries an expiry and an HMAC, so no client
// can make the proxy fetch an address of its choosing.
type Signer struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// NewSigner returns a signer with the given secret key and link lifetime.
func NewSigner(key []byte, ttl time.Duration, now func() time.Time) *Signer {
	if now == nil {
		now = time.Now
	}
	return &Signer{key: append([]byte(nil), key...), ttl: ttl, now: now}
}

const tokenVersion = 1

// ErrBadToken is a bulkdata link that is malformed, forged or expired.
var ErrBadToken = errors.New("bulkdata link is invalid or expired")

// Sign returns a link token for rel (a path relative to the source's root, with its query).
func (s *Signer) Sign(sourceID, rel string) string {
	var b bytes.Buffer
	b.WriteByte(tokenVersion)
	var exp [8]byte
	binary.BigEndian.PutUint64(exp[:], uint64(s.now().Add(s.ttl).Unix()))
	b.Write(exp[:])
	b.WriteByte(byte(len(sourceID)))
	b.WriteString(sourceID)
	b.WriteString(rel)
	payload := b.Bytes()
	mac := hmac.New(sha256.New, s.key)
	mac.Write(payload)
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Verify checks a token and returns the source id and relative path it names.
func (s *Signer) Verify(token string) (sourceID, rel string, err error) {
	p, m, ok := strings.Cut(token, ".")
	if !ok || len(token) > 4096 {
		return "", "", ErrBadToken
	}
	payload, err1 := base64.RawURLEncoding.Strict().DecodeString(p)
	sum, err2 := base64.RawURLEncoding.Strict().DecodeString(m)
	if err1 != nil || err2 != nil || len(payload) < 10 || payload[0] != tokenVersion {
		return "", "", ErrBadToken
	}
	mac := hmac.New(sha256.New, s.key)
	mac.Write(payload)
	if !hmac.Equal(sum, mac.Sum(nil)) {
		return "", "", ErrBadToken
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(payload[1:9])), 0)
	if !s.now().Before(exp) {
		return "", "", ErrBadToken
	}
	n := int(payload[9])
	if len(payload) < 10+n {
		return "", "", ErrBadToken
	}
	return string(payload[10 : 10+n]), string(payload[10+n:]), nil
}

// Forwarding says how the proxy learns its own public address.
type Forwarding struct {
	// PublicURL, when set, is the absolute URL clients reach the proxy at (no DICOMweb root).
	PublicURL string
	// TrustedProxies are the front ends whose Forwarded / X-Forwarded-* headers are believed.
	TrustedProxies []netip.Prefix
}

// baseURL is the absolute URL of the DICOMweb root as the client reached it, e.g.
// http://127.0.0.1:8080/dicom-web. Forwarded headers count only from trusted front ends.
func (f Forwarding) baseURL(r *http.Request) string {
	if f.PublicURL != "" {
		return strings.TrimSuffix(f.PublicURL, "/") + Root
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if f.trusted(r.RemoteAddr) {
		if fwd := r.Header.Get("Forwarded"); fwd != "" {
			first, _, _ := strings.Cut(fwd, ",")
			for _, pair := range strings.Split(first, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
				v = strings.Trim(v, `"`)
				switch strings.ToLower(k) {
				case "proto":
					if v == "http" || v == "https" {
						scheme = v
					}
				case "host":
					if validHost(v) {
						host = v
					}
				}
			}
		} else {
			if v := firstValue(r.Header.Get("X-Forwarded-Proto")); v == "http" || v == "https" {
				scheme = v
			}
			if v := firstValue(r.Header.Get("X-Forwarded-Host")); validHost(v) {
				host = v
			}
		}
	}
	if !validHost(host) {
		host = "localhost"
	}
	return scheme + "://" + host + Root
}

func firstValue(h string) string {
	v, _, _ := strings.Cut(h, ",")
	return strings.TrimSpace(v)
}

// validHost accepts host[:port] made of the characters a hostname or IP literal can have, so a
// forged Host header cannot inject a path or another URL into links the proxy hands out.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]", r)) {
			return false
		}
	}
	return true
}

func (f Forwarding) trusted(remoteAddr string) bool {
	if len(f.TrustedProxies) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range f.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// rewriter replaces upstream URLs in answers with the proxy's: RetrieveURL-like UR values
// become the same resource at the proxy; BulkDataURIs become signed links.
type rewriter struct {
	base   string // absolute DICOMweb root of the proxy
	signer *Signer
}

// relativeTo returns the path (and query) of raw below src's DICOMweb root, or false when raw is
// not below it. Only the path is compared: a PACS behind its own front end may name itself by
// another host, and the host is never used.
func relativeTo(src *upstream.Source, raw string) (string, bool) {
	u, err := src.BaseURL.Parse(raw)
	if err != nil {
		return "", false
	}
	root := strings.TrimSuffix(src.BaseURL.Path, "/")
	p := path.Clean("/" + u.Path)
	if !strings.HasPrefix(p, root+"/") {
		return "", false
	}
	rel := strings.TrimPrefix(p, root+"/")
	if u.RawQuery != "" {
		rel += "?" + u.RawQuery
	}
	return rel, true
}

// rewriteDataset rewrites every URL in ds, at any depth, that came from src. A BulkDataURI that
// is not below src's root is removed rather than handed out.
func (rw *rewriter) rewriteDataset(ds dcmjson.Dataset, src *upstream.Source) {
	for tag, el := range ds {
		if el == nil {
			continue
		}
		switch {
		case el.BulkDataURI != "":
			if rel, ok := relativeTo(src, el.BulkDataURI); ok {
				el.BulkDataURI = rw.base + "/bulkdata/" + rw.signer.Sign(src.ID, rel)
			} else {
				el.BulkDataURI = ""
			}
		case el.VR == "UR":
			for i, raw := range el.Value {
				var s string
				if json.Unmarshal(raw, &s) != nil {
					continue
				}
				if rel, ok := relativeTo(src, s); ok {
					enc, _ := json.Marshal(rw.base + "/" + stripQuery(rel))
					el.Value[i] = enc
				} else if looksUpstream(src, s) {
					el.Value[i] = json.RawMessage(`""`)
				}
			}
		case el.VR == "SQ":
			for i, raw := range el.Value {
				if !bytes.Contains(raw, []byte("BulkDataURI")) && !bytes.Contains(raw, []byte(`"UR"`)) {
					continue
				}
				var item dcmjson.Dataset
				if json.Unmarshal(raw, &item) != nil || item == nil {
					continue
				}
				rw.rewriteDataset(item, src)
				if enc, err := json.Marshal(item); err == nil {
					el.Value[i] = enc
				}
			}
		}
		_ = tag
	}
}

func stripQuery(rel string) string {
	p, _, _ := strings.Cut(rel, "?")
	return p
}

// looksUpstream reports whether s is a URL on the source's host (outside its DICOMweb root,
// e.g. a WADO-URI link), which must not be handed to clients either.
func looksUpstream(src *upstream.Source, s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, src.BaseURL.Host)
}

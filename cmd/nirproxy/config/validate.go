package config

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MinSigningKeyBytes is the shortest signing key accepted.
const MinSigningKeyBytes = 32

// MinBulkdataLinkTTL and MaxBulkdataLinkTTL bound [Config.BulkdataLinkTTL].
const (
	MinBulkdataLinkTTL = time.Minute
	MaxBulkdataLinkTTL = 24 * time.Hour
)

// MinCacheKeySecretBytes is the shortest [Cache.KeySecret] accepted.
const MinCacheKeySecretBytes = 32

// EncryptionKeyBytes is the length of each decoded [Cache.EncryptionKeys] key (AES-256).
const EncryptionKeyBytes = 32

// MinMemoryMaxBytes is the smallest [Cache.MemoryMaxBytes] accepted for an in-process cache.
const MinMemoryMaxBytes = 1 << 20

// validSourceID reports whether id looks like an ODS code: 3 to 10 upper-case letters or digits.
func validSourceID(id string) bool {
	if len(id) < 3 || len(id) > 10 {
		return false
	}
	for _, c := range id {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Validate checks every value of c and returns every problem found, in the order of the keys; none
// means c can be used. It does not read files or the environment (Load did that), except the
// system's time zone database for authorization.dsptTimeZone and the files of each source's tls
// section, which it parses; check-config also reads the onboarding registry (see [CheckFile]).
func (c Config) Validate() []Problem {
	var ps Problems
	c.checkFront(&ps)
	checkIssuer(&ps, "patientIdentifierIssuer", c.PatientIdentifierIssuer, true)
	checkPositive(&ps, "requestTimeout", c.RequestTimeout, "30s")
	checkPositive(&ps, "clientWriteTimeout", c.ClientWriteTimeout, "60s")
	switch c.PartialRetrieve {
	case PartialRetrieveFail, PartialRetrieveWarn, PartialRetrieve206:
	default:
		ps.add("partialRetrieve", "%q is not a policy; write fail (refuse an incomplete study, the safe default), warn or 206", c.PartialRetrieve)
	}
	switch c.PartialSearch {
	case PartialRetrieveWarn, PartialRetrieveFail:
	default:
		ps.add("partialSearch", "%q is not a policy; write warn (answer with what the trusts that answered hold, naming the others) or fail", c.PartialSearch)
	}
	if d := c.RetryAfter.Std(); d < time.Second || d > time.Hour {
		ps.add("retryAfter", "is %s; use 1s to 1h, like 30s", d)
	}
	if c.MaxFrames < 1 || c.MaxFrames > 100000 {
		ps.add("maxFrames", "is %d; use 1 to 100000, like 1000", c.MaxFrames)
	}
	checkViewport(&ps, "thumbnailViewport", c.ThumbnailViewport)
	if c.Incidents.WebhookURL != "" {
		checkHTTPURL(&ps, "incidents.webhookURL", c.Incidents.WebhookURL, "https://alerts.example.nhs.uk/nirproxy")
	}
	checkPositive(&ps, "incidents.webhookTimeout", c.Incidents.WebhookTimeout, "5s")
	if c.Incidents.WebhookRetries < 0 || c.Incidents.WebhookRetries > 10 {
		ps.add("incidents.webhookRetries", "is %d; use 0 to 10", c.Incidents.WebhookRetries)
	}
	checkSearch(&ps, c.Search)
	checkPositive(&ps, "locator.ttl", c.Locator.TTL, "10m")
	checkCache(&ps, c.Cache)
	checkLogging(&ps, c.Logging)
	checkSources(&ps, c.Sources)
	c.checkAccess(&ps)
	return ps
}

// checkFront checks what clients see of the proxy: where it listens and with what TLS, the URL
// its links start with, the admin listener, CORS, and its bulkdata links.
func (c Config) checkFront(ps *Problems) {
	checkAddress(ps, "listen", c.Listen, "127.0.0.1:8080 (or :8080 for every interface)")
	if c.PublicURL != "" {
		checkHTTPURL(ps, "publicURL", c.PublicURL, "https://imaging.example.nhs.uk")
	} else if host, _, err := net.SplitHostPort(c.Listen); err == nil && !isLoopback(host) {
		ps.add("publicURL", "is required when listen (%q) is not a loopback address: links in answers are built only from it, never from a request's Host; set it to the URL clients reach the proxy at, like https://imaging.example.nhs.uk, or listen on 127.0.0.1", c.Listen)
	}
	c.checkListeners(ps)
	for i, o := range c.CORS.AllowedOrigins {
		checkOrigin(ps, fmt.Sprintf("cors.allowedOrigins[%d]", i), o)
	}
	checkPositive(ps, "cors.maxAge", c.CORS.MaxAge, "10m")
	if n := len(c.SigningKey); n > 0 && n < MinSigningKeyBytes {
		ps.add("signingKey", "is %d bytes long; use at least %d random bytes, such as the output of `openssl rand -base64 48`, or leave it empty for a random key per process",
			n, MinSigningKeyBytes)
	}
	if d := c.BulkdataLinkTTL.Std(); d < MinBulkdataLinkTTL || d > MaxBulkdataLinkTTL {
		ps.add("bulkdataLinkTTL", "is %s; use %s to %s, like 1h (the default)", d, MinBulkdataLinkTTL, MaxBulkdataLinkTTL)
	}
}

// checkLogging checks the log's level and format.
func checkLogging(ps *Problems, l Logging) {
	switch strings.ToLower(l.Level) {
	case "debug", "info", "warn", "error":
	default:
		ps.add("logging.level", "%q is not a level; write debug, info, warn or error", l.Level)
	}
	switch l.Format {
	case "json", "text":
	default:
		ps.add("logging.format", "%q is not a format; write json or text", l.Format)
	}
}

// Warnings are settings that are valid but risky, for the log at start-up.
func (c Config) Warnings() []Problem {
	var ps Problems
	for i, o := range c.CORS.AllowedOrigins {
		if o == "*" {
			ps.add(fmt.Sprintf("cors.allowedOrigins[%d]", i), `"*" lets a page of any web site call the proxy from a user's browser; list the viewers' origins instead`)
		}
	}
	if c.SigningKey == "" {
		ps.add("signingKey", "empty, so a random key is made for this process; several replicas behind one load balancer must share one key, or bulkdata links from one fail at another")
	}
	c.listenerWarnings(&ps)
	cacheWarnings(&ps, c.Cache)
	sourceWarnings(&ps, c.Sources)
	issuerWarnings(&ps, c.Authentication)
	if c.Audit.PARS.URL == "" {
		ps.add("audit.pars.url", "is empty: audit records are kept in the spool only, not sent to the Patient Audit Record Service")
	}
	if c.Cache.RedisEnabled() && c.RateLimit.KeySecret == "" {
		ps.add("rateLimit.keySecret", "empty, so a random secret is made for this process; replicas sharing the cache's Redis must share one, or each counts its callers apart and a caller gets each replica's limits")
	}
	return ps
}

// sourceWarnings are the sources' valid but risky settings: each that says insecure: true.
func sourceWarnings(ps *Problems, sources []Source) {
	for i, s := range sources {
		p := fmt.Sprintf("sources[%d].insecure", i)
		switch {
		case !s.Insecure:
		case isPlainHTTP(s.URL):
			ps.add(p, "is true: %s is reached over plain HTTP, which sends patients' data unencrypted; for a demo or test only: use an https url and remove insecure", s.ID)
		default:
			ps.add(p, "is true, but %s's url is https, which is verified all the same; remove insecure", s.ID)
		}
	}
}

// checkCache checks the cache section. Values are checked whether or not the cache is enabled; what
// Redis needs (the key secret and the encryption keys) is required only when the cache is enabled
// and redis.addrs is set.
func checkCache(ps *Problems, c Cache) {
	switch {
	case c.MemoryMaxBytes < 0:
		ps.add("cache.memoryMaxBytes", "is %d; it cannot be negative; write a size in bytes, like 67108864 (64 MiB)", c.MemoryMaxBytes)
	case c.Enabled && len(c.Redis.Addrs) == 0 && c.MemoryMaxBytes < MinMemoryMaxBytes:
		ps.add("cache.memoryMaxBytes", "is %d; the in-process cache needs at least %d (1 MiB), like 67108864 (64 MiB); to turn the cache off, set cache.enabled: false",
			c.MemoryMaxBytes, MinMemoryMaxBytes)
	}
	if c.MaxRetention <= 0 {
		ps.add("cache.maxRetention", "is %s; it must be greater than 0, like 24h; to turn the cache off, set cache.enabled: false", c.MaxRetention)
	}
	switch n := len(c.KeySecret); {
	case n > 0 && n < MinCacheKeySecretBytes:
		ps.add("cache.keySecret", "is %d bytes long; use at least %d random bytes; generate one with: openssl rand -base64 48", n, MinCacheKeySecretBytes)
	case n == 0 && c.RedisEnabled():
		ps.add("cache.keySecret", "is missing; with Redis every replica must derive cache keys from the same secret; set it, or cache.keySecretFile, "+
			"or the variable %sCACHE_KEY_SECRET; generate one with: openssl rand -base64 48", EnvPrefix)
	}
	if len(c.EncryptionKeys) == 0 && c.RedisEnabled() {
		ps.add("cache.encryptionKeys", "is missing; with Redis every value is encrypted, and every replica needs the same keys; set it, or cache.encryptionKeysFile, "+
			"or the variable %sCACHE_ENCRYPTION_KEYS; generate one with: openssl rand -base64 32", EnvPrefix)
	}
	checkEncryptionKeys(ps, c)
	checkFreshness(ps, "cache.search", c.Search, "30s", "15m")
	checkFreshness(ps, "cache.metadata", c.Metadata, "5m", "1h")
	checkFreshness(ps, "cache.rendered", c.Rendered.Freshness(), "1h", "1h")
	switch {
	case c.Rendered.MaxBytes < 0:
		ps.add("cache.rendered.maxBytes", "is %d; it cannot be negative; write a size in bytes, like 2097152 (2 MiB)", c.Rendered.MaxBytes)
	case c.Rendered.MaxBytes == 0 && c.Rendered.Fresh > 0:
		ps.add("cache.rendered.maxBytes", "is 0, so no rendered image would be cached; write a size in bytes, like 2097152 (2 MiB), or set cache.rendered.fresh: 0 to cache none")
	}
	checkRedis(ps, c.Redis)
}

// checkFreshness checks one kind's windows. Stale without Fresh is allowed: the kind is not cached.
func checkFreshness(ps *Problems, p string, f Freshness, fresh, stale string) {
	if f.Fresh < 0 {
		ps.add(p+".fresh", "is %s; it cannot be negative; write a duration like %s, or 0 not to cache this kind", f.Fresh, fresh)
	}
	if f.Stale < 0 {
		ps.add(p+".stale", "is %s; it cannot be negative; write a duration like %s, or 0 to keep nothing past fresh", f.Stale, stale)
	}
}

// checkEncryptionKeys checks each encryption key given (with Redis or not): the base64 of
// EncryptionKeyBytes bytes, each once.
func checkEncryptionKeys(ps *Problems, c Cache) {
	from := ""
	if c.EncryptionKeysFile != "" {
		from = " (counting from 0 the keys of the file cache.encryptionKeysFile names, not its comments or blank lines)"
	}
	var decoded [][]byte
	for i, k := range c.EncryptionKeys {
		p := fmt.Sprintf("cache.encryptionKeys[%d]", i)
		key, problem := decodeEncryptionKey(k)
		if problem != "" {
			ps.add(p, "%s%s; each key must be the base64 of %d random bytes; generate one with: openssl rand -base64 32", problem, from, EncryptionKeyBytes)
			decoded = append(decoded, nil)
			continue
		}
		for j, earlier := range decoded {
			if earlier != nil && bytes.Equal(earlier, key) {
				ps.add(p, "is the same key as cache.encryptionKeys[%d]%s; remove one of them", j, from)
				key = nil
				break
			}
		}
		decoded = append(decoded, key)
	}
}

// checkRedis checks where the Redis cache is, when any of it is configured.
func checkRedis(ps *Problems, r Redis) {
	for i, a := range r.Addrs {
		if _, ok := redisHost(a); !ok {
			ps.add(fmt.Sprintf("cache.redis.addrs[%d]", i), "%q is not host:port; write it like redis.example.internal:6379 or 10.0.0.5:6379", showURL(a))
		}
	}
	if r.MasterName != "" && len(r.Addrs) == 0 {
		ps.add("cache.redis.masterName", "is set but cache.redis.addrs is empty; list the sentinels' host:port under cache.redis.addrs, or remove masterName")
	}
	switch {
	case r.DB < 0:
		ps.add("cache.redis.db", "is %d; write a database number, 0 or more (the default is 0)", r.DB)
	case r.DB != 0 && len(r.Addrs) >= 2 && r.MasterName == "":
		ps.add("cache.redis.db", "is %d, but two or more addrs make a Redis Cluster, which has only db 0; set db: 0, or set masterName if the addrs are sentinels", r.DB)
	}
	if r.PoolSize < 0 {
		ps.add("cache.redis.poolSize", "is %d; write 0 for go-redis's default, or a number of connections per node, like 20", r.PoolSize)
	}
	if len(r.Addrs) == 0 {
		return // Nothing below is used without Redis.
	}
	checkPositive(ps, "cache.redis.opTimeout", r.OpTimeout, "250ms")
	checkPositive(ps, "cache.redis.dialTimeout", r.DialTimeout, "200ms")
	checkPositive(ps, "cache.redis.readTimeout", r.ReadTimeout, "200ms")
	checkPositive(ps, "cache.redis.writeTimeout", r.WriteTimeout, "200ms")
	if r.BreakerFailures < 1 {
		ps.add("cache.redis.breakerFailures", "is %d; it must be at least 1, like 5", r.BreakerFailures)
	}
	checkPositive(ps, "cache.redis.breakerCooldown", r.BreakerCooldown, "5s")
}

// cacheWarnings are the cache's valid but risky settings.
func cacheWarnings(ps *Problems, c Cache) {
	if !c.Enabled {
		ps.add("cache.enabled", "is false: every request goes to the trusts; no stale copies while a trust is down")
		return
	}
	if c.MaxRetention > 0 {
		kinds := []struct {
			path string
			f    Freshness
		}{{"cache.search", c.Search}, {"cache.metadata", c.Metadata}, {"cache.rendered", c.Rendered.Freshness()}}
		for _, k := range kinds {
			if k.f.Fresh > 0 && k.f.Stale >= 0 && k.f.Fresh+k.f.Stale > c.MaxRetention {
				ps.add(k.path, "fresh %s and stale %s together (%s) are longer than cache.maxRetention (%s); entries will be cut to maxRetention",
					k.f.Fresh, k.f.Stale, k.f.Fresh+k.f.Stale, c.MaxRetention)
			}
		}
	}
	if c.RedisEnabled() && !c.Redis.TLS {
		for i, a := range c.Redis.Addrs {
			if host, ok := redisHost(a); ok && !isLoopback(host) {
				ps.add("cache.redis.tls", "is false and cache.redis.addrs[%d] (%s) is not a loopback address: values are encrypted, but the Redis password and the HMAC'd keys cross the network in clear; set tls: true if the Redis accepts TLS",
					i, showURL(a))
				break
			}
		}
	}
}

// redisHost is the host of a Redis address, and whether the address is host:port with a port
// from 1 to 65535.
func redisHost(addr string) (host string, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, " /@") {
		return "", false
	}
	n, err := strconv.Atoi(port)
	return host, err == nil && n >= 1 && n <= 65535
}

// isLoopback reports whether host is localhost or a loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkAddress checks the host:port a listener at path listens on; like is an example.
func checkAddress(ps *Problems, path, addr, like string) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && validPort(port) && !strings.ContainsAny(host, " /") {
		return
	}
	ps.add(path, "%q is not host:port; write it like %s", addr, like)
}

// validPort reports whether port is a number from 0 to 65535.
func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// checkHTTPURL checks an absolute http(s) URL without query, fragment or user info.
func checkHTTPURL(ps *Problems, path, raw, example string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		ps.add(path, "%q is not an absolute http(s) URL; write it like %s", showURL(raw), example)
		return
	}
	if u.Port() != "" && !validPort(u.Port()) {
		ps.add(path, "%q has an invalid port; write it like %s", showURL(raw), example)
	}
	if u.User != nil {
		ps.add(path, "%q holds a user name or password; remove them from the URL (a source's credentials go under auth)", showURL(raw))
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		ps.add(path, "%q must have no query (?...) or fragment (#...); write it like %s", showURL(raw), example)
	}
}

// showURL is raw for a message, with any password in it masked.
func showURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return u.Redacted()
	}
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		if scheme := strings.Index(raw, "://"); scheme >= 0 && scheme < at {
			return raw[:scheme+3] + "xxxxx" + raw[at:]
		}
		return "xxxxx" + raw[at:]
	}
	return raw
}

// checkOrigin checks a CORS origin: "*" or scheme://host[:port], as browsers send it.
func checkOrigin(ps *Problems, path, o string) {
	if o == "*" {
		return
	}
	const example = "http://localhost:3000 or https://viewer.example.nhs.uk"
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		ps.add(path, "%q is not an origin; write scheme://host[:port] like %s, or \"*\"", o, example)
		return
	}
	want := u.Scheme + "://" + u.Host
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(o, "#") {
		ps.add(path, "%q is not an origin: an origin has no path, query or user; write %q", o, strings.ToLower(want))
		return
	}
	if u.Port() != "" && !validPort(u.Port()) {
		ps.add(path, "%q has an invalid port; write scheme://host[:port] like %s", o, example)
		return
	}
	if o != strings.ToLower(want) {
		ps.add(path, "%q is not how browsers send an origin; write it in lower case: %q", o, strings.ToLower(want))
	}
}

// checkPositive checks that a duration is greater than zero.
func checkPositive(ps *Problems, path string, d Duration, example string) {
	if d <= 0 {
		ps.add(path, "is %s; it must be greater than 0, like %s", d, example)
	}
}

// checkViewport checks a rendering's viewport: width,height in pixels.
func checkViewport(ps *Problems, path, viewport string) {
	w, h, _ := strings.Cut(viewport, ",")
	for _, n := range []string{w, h} {
		if v, err := strconv.Atoi(n); err != nil || v < 1 || v > 4096 {
			ps.add(path, "%q is not a width and a height; write two whole numbers from 1 to 4096 separated by a comma, like 128,128", viewport)
			return
		}
	}
}

// checkIssuer checks an IssuerOfPatientID (a DICOM LO value).
func checkIssuer(ps *Problems, path, issuer string, required bool) {
	switch {
	case issuer == "" && required:
		ps.add(path, "is empty; write the issuer of NHS numbers, like 2.16.840.1.113883.2.1.4.1")
	case len(issuer) > 64:
		ps.add(path, "is %d characters long; an IssuerOfPatientID holds at most 64", len(issuer))
	case strings.ContainsFunc(issuer, func(r rune) bool { return r == '\\' || r < 0x20 || r == 0x7f }):
		ps.add(path, "%q contains a backslash or a control character, which an IssuerOfPatientID cannot hold", issuer)
	}
}

// checkSearch checks the search limits.
func checkSearch(ps *Problems, s Search) {
	if s.MaxResultsPerSource < 1 {
		ps.add("search.maxResultsPerSource", "is %d; it must be at least 1, like 1000", s.MaxResultsPerSource)
	}
	if s.MaxLimit < 1 {
		ps.add("search.maxLimit", "is %d; it must be at least 1, like 1000", s.MaxLimit)
	}
	switch {
	case s.DefaultLimit < 0:
		ps.add("search.defaultLimit", "is %d; write 0 for no limit, or a page size up to search.maxLimit", s.DefaultLimit)
	case s.MaxLimit >= 1 && s.DefaultLimit > s.MaxLimit:
		ps.add("search.defaultLimit", "is %d, above search.maxLimit (%d); lower it or raise search.maxLimit", s.DefaultLimit, s.MaxLimit)
	}
	for _, c := range []struct {
		key           string
		value, lo, hi int
		like          string
	}{
		// A query string cannot be longer than net/http's header limit (1 MiB) allows.
		{"search.maxQueryLength", s.MaxQueryLength, 1024, 1 << 20, "8192"},
		{"search.maxMatchingKeys", s.MaxMatchingKeys, 1, 1000, "32"},
		{"search.maxIncludeFields", s.MaxIncludeFields, 1, 10000, "128"},
		{"search.maxValuesPerKey", s.MaxValuesPerKey, 1, 10000, "100"},
	} {
		if c.value < c.lo || c.value > c.hi {
			ps.add(c.key, "is %d; it must be from %d to %d, like %s", c.value, c.lo, c.hi, c.like)
		}
	}
}

// checkSources checks the list of sources and each source.
func checkSources(ps *Problems, sources []Source) {
	if len(sources) == 0 {
		ps.add("sources", "no source is configured; list at least one trust's PACS with its id, name and url (see config.example.yaml)")
		return
	}
	firstIndex := map[string]int{}
	for i, s := range sources {
		p := fmt.Sprintf("sources[%d]", i)
		switch {
		case s.ID == "":
			ps.add(p+".id", "is missing; give the trust's ODS code, like RXA")
		case !validSourceID(s.ID):
			hint := ""
			if up := strings.ToUpper(s.ID); validSourceID(up) {
				hint = fmt.Sprintf("; here write %s", up)
			}
			ps.add(p+".id", "%q is not an ODS code; use 3 to 10 upper-case letters or digits, like RXA%s", s.ID, hint)
		default:
			if j, dup := firstIndex[s.ID]; dup {
				ps.add(p+".id", "%q is also the id of sources[%d]; give each source its own id", s.ID, j)
			} else {
				firstIndex[s.ID] = i
			}
		}
		if strings.TrimSpace(s.Name) == "" {
			ps.add(p+".name", "is missing; write the trust's name, like Example Hospitals NHS Trust")
		}
		if s.URL == "" {
			ps.add(p+".url", "is missing; write the PACS's DICOMweb base URL, like https://pacs.example.nhs.uk/dicom-web")
		} else {
			checkSourceURL(ps, p, s)
		}
		checkPositive(ps, p+".timeout", s.Timeout, "10s")
		checkPositive(ps, p+".idleTimeout", s.IdleTimeout, "30s")
		if s.Retries < 0 || s.Retries > 5 {
			ps.add(p+".retries", "is %d; use 0 to 5 (each retry adds to a clinician's wait)", s.Retries)
		}
		checkPositive(ps, p+".retryWaitMin", s.RetryWaitMin, "50ms")
		if s.RetryWaitMax < s.RetryWaitMin {
			ps.add(p+".retryWaitMax", "is %s, below retryWaitMin (%s); use retryWaitMin or more, like 1s", s.RetryWaitMax, s.RetryWaitMin)
		}
		if s.MaxConcurrent < 1 || s.MaxConcurrent > 10000 {
			ps.add(p+".maxConcurrent", "is %d; use 1 to 10000, like 32", s.MaxConcurrent)
		}
		if s.MaxConnections < 1 || s.MaxConnections > 10000 {
			ps.add(p+".maxConnections", "is %d; use 1 to 10000, like 64", s.MaxConnections)
		}
		checkBreaker(ps, p+".breaker", s.Breaker)
		checkAuth(ps, p+".auth", s.ID, s.Auth)
		_, tlsProblems := s.TLS.clientTLS(p + ".tls")
		*ps = append(*ps, tlsProblems...)
		checkPatientID(ps, p+".patientId", s.PatientID)
	}
}

// checkSourceURL checks the url of source s, whose keys are under p: an absolute https URL, or
// plain http where s says insecure: true, which then has no tls section for it to ignore.
func checkSourceURL(ps *Problems, p string, s Source) {
	before := len(*ps)
	checkHTTPURL(ps, p+".url", s.URL, "http://127.0.0.1:8042/dicom-web")
	switch {
	case len(*ps) > before || !isPlainHTTP(s.URL):
	case !s.Insecure:
		ps.add(p+".url", "%q is plain HTTP, which sends patients' data unencrypted; use https, or set insecure: true for a demo or test", showURL(s.URL))
	case s.TLS != (SourceTLS{}):
		ps.add(p+".tls", "is set, but url is plain http, which does not use it; use an https url, or remove tls")
	}
}

// isPlainHTTP reports whether raw is a URL of scheme http.
func isPlainHTTP(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "http"
}

// Bounds of a source's breaker settings.
const (
	minBreakerWindow = Duration(time.Second)
	maxBreakerWindow = Duration(24 * time.Hour)
)

// checkBreaker checks a source's circuit breaker settings.
func checkBreaker(ps *Problems, p string, b Breaker) {
	if b.Window < minBreakerWindow || b.Window > maxBreakerWindow {
		ps.add(p+".window", "is %s; use %s to %s, like 60s (failures older than it no longer count)", b.Window, minBreakerWindow, maxBreakerWindow)
	}
	if b.MinRequests < 1 || b.MinRequests > 100000 {
		ps.add(p+".minRequests", "is %d; use 1 to 100000, like 20 (the fewest calls within the window before the failure ratio may open the breaker)", b.MinRequests)
	}
	if !(b.FailureRatio > 0 && b.FailureRatio <= 1) {
		ps.add(p+".failureRatio", "is %v; use a number greater than 0 and at most 1, like 0.5 (the share of failed calls that opens the breaker)", b.FailureRatio)
	}
	if b.ConsecutiveUnreachable < 1 || b.ConsecutiveUnreachable > 1000 {
		ps.add(p+".consecutiveUnreachable", "is %d; use 1 to 1000, like 5 (calls in a row that could not connect before the breaker opens)", b.ConsecutiveUnreachable)
	}
	checkPositive(ps, p+".openFor", b.OpenFor, "30s")
}

// checkAuth checks a source's credentials: a known type with its fields, and no others.
func checkAuth(ps *Problems, p, id string, a Auth) {
	type field struct {
		key string
		set bool
	}
	username := field{"username", a.Username != ""}
	password := field{"password", a.Password != "" || a.PasswordFile != ""}
	token := field{"token", a.Token != "" || a.TokenFile != ""}
	var need, forbid []field
	switch a.Type {
	case AuthNone:
		forbid = []field{username, password, token}
	case AuthBasic:
		need = []field{username, password}
		forbid = []field{token}
	case AuthBearer:
		need = []field{token}
		forbid = []field{username, password}
	default:
		ps.add(p+".type", "%q is not an authentication type; write none, basic or bearer", a.Type)
		return
	}
	for _, f := range need {
		if !f.set {
			how := ""
			if f.key != "username" {
				how = fmt.Sprintf("; set it, or %s.%sFile, or the variable %sSOURCES_%s_AUTH_%s",
					p, f.key, EnvPrefix, strings.ToUpper(firstOr([]string{id}, "ID")), strings.ToUpper(f.key))
			}
			ps.add(p+"."+f.key, "is missing; auth type %s needs it%s", a.Type, how)
		}
	}
	for _, f := range forbid {
		if f.set {
			ps.add(p+"."+f.key, "is set but auth type %s does not use it; remove it, or change %s.type", a.Type, p)
		}
	}
}

// checkPatientID checks where a source keeps the NHS number.
func checkPatientID(ps *Problems, p string, pid PatientID) {
	switch pid.Attribute {
	case AttributePatientID:
		checkIssuer(ps, p+".issuer", pid.Issuer, false)
	case AttributeOtherPatientIDsSequence:
		if pid.Issuer == "" {
			ps.add(p+".issuer", "is missing; with attribute OtherPatientIDsSequence, write the IssuerOfPatientID that marks the NHS number in that sequence, like NHS")
		} else {
			checkIssuer(ps, p+".issuer", pid.Issuer, true)
		}
	default:
		ps.add(p+".attribute", "%q is not known; write PatientID or OtherPatientIDsSequence", pid.Attribute)
	}
}

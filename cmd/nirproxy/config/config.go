// Package config is nirproxy's configuration: one YAML file, overridden key by key from the
// environment (NIRPROXY_...), with a default for every optional key and a validation that reports
// every problem with the key's path and how to fix it.
//
// # Life of a configuration
//
// [Load] (or [Parse]) starts from [Default], lays the YAML file over it, then the environment
// overrides, then reads the secrets named by the *File keys and the listener's TLS files. It
// reports what it could not read (syntax, unknown keys, values of the wrong type, unknown
// overrides, unreadable secret files, a certificate, key or CA bundle it cannot use) as
// [Problems], and does not judge the values: [Config.Validate] does that. [LoadValid] runs both,
// and is how serve, cache purge and check-config ([CheckFile]) read their file.
//
// # Secrets
//
// Secret values (the signing key, passwords, tokens, the cache's keys) have the type [Secret], which prints as
// "REDACTED" through fmt, log/slog, encoding/json and YAML marshalling, so a Config can be logged
// or printed without leaking them. Convert with string(s) only where the secret is used. No error or
// problem of this package ever contains a secret's value.
//
// # Defaults
//
// [Default] is the one place a default is written: cmd/nirproxy sets every setting of the packages
// it wires from a Config, and upstream, cache, policy/authn and policy/authz refuse incomplete
// settings (the last two offer their defaults, which Default takes). The methods that turn a
// Config into those packages' settings are here (see [Source.UpstreamOptions], [Config.Authn],
// [Config.AuthzRules]), so that cmd/nirproxy and tests build them the same way.
//
// # Access control
//
// The auth, onboarding and authorization sections configure policy/authn and policy/authz. Those
// packages judge the values: [Config.Validate] asks them and names the key and the fix, so that a
// configuration it accepts is one they accept. serve does not use these sections yet, and every
// key of them is optional.
package config

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/policy/authz"
)

// Values of [Auth.Type].
// The partialRetrieve policies.
const (
	PartialRetrieveFail = "fail"
	PartialRetrieveWarn = "warn"
	PartialRetrieve206  = "206"
)

const (
	// AuthNone sends no credentials.
	AuthNone = "none"
	// AuthBasic sends HTTP Basic credentials (username and password).
	AuthBasic = "basic"
	// AuthBearer sends "Authorization: Bearer TOKEN".
	AuthBearer = "bearer"
)

// Values of [PatientID.Attribute]: where a trust's PACS keeps the NHS number.
const (
	// AttributePatientID means the NHS number is the PatientID (0010,0020).
	AttributePatientID = "PatientID"
	// AttributeOtherPatientIDsSequence means the NHS number is an item of OtherPatientIDsSequence
	// (0010,1002), the one whose IssuerOfPatientID is [PatientID.Issuer].
	AttributeOtherPatientIDsSequence = "OtherPatientIDsSequence"
)

// Redaction is what a [Secret]'s String puts in place of its value.
const Redaction = "REDACTED"

// Config is the whole configuration of one nirproxy process. The yaml tags are the keys of the
// file; each key's environment override is derived from its path: NIRPROXY_ and the path in upper
// case with camelCase split into words by "_" (NIRPROXY_SEARCH_MAX_LIMIT), and for a source's
// keys, its id (NIRPROXY_SOURCES_RXA_AUTH_TOKEN). config.example.yaml documents every key.
type Config struct {
	// Listen is the host:port the proxy listens on. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// PublicURL is the absolute http(s) URL every URL handed to clients starts with
	// (RetrieveURL, BulkDataURI): the only source of links, which the Host and X-Forwarded-*
	// headers never shape. Required unless Listen is a loopback address, where empty means
	// http:// (https:// with TLS) and the address listened on. With TLS it must be https.
	PublicURL string `yaml:"publicURL"`
	// TLS, when its certFile and keyFile are set, makes the proxy terminate TLS itself on
	// Listen, and say whether clients present certificates. Default off.
	TLS ListenTLS `yaml:"tls"`
	// AdminListen is the host:port of the admin listener, which alone serves /status and
	// /metrics, in plain HTTP without authentication; "" turns it off. Default 127.0.0.1:9090.
	AdminListen string `yaml:"adminListen"`
	// CORS says which browser origins may call the proxy.
	CORS CORS `yaml:"cors"`
	// SigningKey is the secret that signs bulkdata links, at least 32 bytes. Empty means a random
	// key per process, which is fine for one replica; several replicas must share one key.
	SigningKey Secret `yaml:"signingKey"`
	// SigningKeyFile names a file holding SigningKey (trailing newlines are dropped). A relative
	// path is taken from the config file's directory.
	SigningKeyFile string `yaml:"signingKeyFile"`
	// BulkdataLinkTTL is how long a bulkdata link in metadata stays valid, from 1m to 24h.
	// Default 1h.
	BulkdataLinkTTL Duration `yaml:"bulkdataLinkTTL"`
	// PatientIdentifierIssuer is the IssuerOfPatientID written into answers next to the NHS
	// number. Default 2.16.840.1.113883.2.1.4.1 (the NHS number's OID).
	PatientIdentifierIssuer string `yaml:"patientIdentifierIssuer"`
	// RequestTimeout is the deadline for a whole client request's fan-out (searches, locating a
	// study). Default 30s.
	RequestTimeout Duration `yaml:"requestTimeout"`
	// ClientWriteTimeout is how long a client may stop reading a response before it is cut
	// off (the deadline is extended with every 64 KiB it takes in). The cut is the client's
	// failure: the trust is not charged. Default 60s.
	ClientWriteTimeout Duration `yaml:"clientWriteTimeout"`
	// PartialRetrieve says what a study or series retrieve (or its metadata) answers when some
	// trust that may hold part of it cannot be asked: fail (503, the default: nobody may read an
	// incomplete study as complete), warn (200 with what can be had and a Warning naming what is
	// missing) or 206 (for clients that follow PS3.18 before CP-2418).
	PartialRetrieve string `yaml:"partialRetrieve"`
	// PartialSearch says what a search answers when some trusts do not: warn (the default: 200
	// with what answered and a Warning naming each missing trust) or fail (503). A client
	// overrides it per request with partial=warn|fail.
	PartialSearch string `yaml:"partialSearch"`
	// RetryAfter is the Retry-After sent with a 503 when no trust could answer, from 1s to 1h.
	// Default 30s.
	RetryAfter Duration `yaml:"retryAfter"`
	// MaxFrames is the most frames one request may name (frames/1,2,3), from 1 to 100000.
	// Default 1000.
	MaxFrames int `yaml:"maxFrames"`
	// ThumbnailViewport is the size, "width,height" in pixels, asked of a trust when a thumbnail
	// is made from a rendering because the trust makes none. Default 128,128.
	ThumbnailViewport string `yaml:"thumbnailViewport"`
	// Incidents says where breaker state changes are escalated.
	Incidents Incidents `yaml:"incidents"`
	// Search bounds searches (QIDO-RS).
	Search Search `yaml:"search"`
	// Locator tunes the memory of which trusts hold which study.
	Locator Locator `yaml:"locator"`
	// Cache configures the cache of the trusts' answers.
	Cache Cache `yaml:"cache"`
	// Logging sets the level and format of the process's logs.
	Logging Logging `yaml:"logging"`
	// Sources are the trusts' PACS, at least one.
	Sources []Source `yaml:"sources"`
	// Authentication says which token issuers callers' bearer tokens may come from. serve
	// needs at least one: it answers only authenticated callers.
	Authentication Authentication `yaml:"auth"`
	// Onboarding says where the registry of onboarded organisations and systems is. serve
	// needs it: it answers only onboarded organisations.
	Onboarding Onboarding `yaml:"onboarding"`
	// Authorization says what each job role may do and how purposes of use and DSPT years are
	// judged.
	Authorization Authorization `yaml:"authorization"`
	// RateLimit limits each caller's requests and distinct patients.
	RateLimit RateLimit `yaml:"rateLimit"`
	// Audit says where the patient audit record is kept. serve needs it: nothing is answered
	// that cannot be recorded.
	Audit Audit `yaml:"audit"`
}

// Incidents configures escalation of incidents (a trust's circuit breaker opening or closing).
type Incidents struct {
	// WebhookURL, when set, receives each breaker state change as a JSON POST. Delivery is
	// retried and never delays a client request. Default none (the log only).
	WebhookURL string `yaml:"webhookURL"`
	// WebhookTimeout bounds one delivery attempt. Default 5s.
	WebhookTimeout Duration `yaml:"webhookTimeout"`
	// WebhookRetries is how many times a failed delivery is retried. Default 3.
	WebhookRetries int `yaml:"webhookRetries"`
}

// Breaker tunes a source's circuit breaker. It opens on a failure ratio over a minimum of calls
// within a rolling window, so that a few failures one client provokes (a query the trust
// answers with 500) do not open it for every user; and after a run of calls that could not
// connect at all, which no client can provoke. docs/clinical-safety/degraded-modes.md says what
// it takes to open it and how to tune it.
type Breaker struct {
	// Window is how far back calls count, rolling (it forgets a tenth of itself at a time).
	// Default 60s.
	Window Duration `yaml:"window"`
	// MinRequests is the fewest calls ended within Window before FailureRatio may open the
	// breaker. Default 20.
	MinRequests int `yaml:"minRequests"`
	// FailureRatio is the share of those calls that failed (5xx, 429, time-outs, refused
	// connections, invalid answers; never another 4xx, never a client hanging up) at which the
	// breaker opens: greater than 0, at most 1. Default 0.5.
	FailureRatio float64 `yaml:"failureRatio"`
	// ConsecutiveUnreachable is how many calls in a row that could not connect to the PACS at all
	// (refused, unknown host, no route, connection attempt timed out) open the breaker, however
	// few calls Window holds. Default 5.
	ConsecutiveUnreachable int `yaml:"consecutiveUnreachable"`
	// OpenFor is how long an open breaker refuses calls before one probe is let through.
	// Default 30s.
	OpenFor Duration `yaml:"openFor"`
}

// DefaultBreaker is a source's breaker with every default filled in.
func DefaultBreaker() Breaker {
	return Breaker{
		Window:                 Duration(60 * time.Second),
		MinRequests:            20,
		FailureRatio:           0.5,
		ConsecutiveUnreachable: 5,
		OpenFor:                Duration(30 * time.Second),
	}
}

// retiredKeys are the keys that older releases read in struct type t, each with why it is no
// longer read and what replaces it. A file (or an environment override) that still has one is
// refused with that message rather than "unknown key", since reading it as something else would
// change behaviour unseen.
func retiredKeys(t reflect.Type) map[string]string {
	if t == reflect.TypeFor[Breaker]() {
		return map[string]string{"failures": "is no longer read: a breaker no longer opens after failures in a row, which one client's " +
			"queries could cause; it opens when at least failureRatio (default 0.5) of at least minRequests " +
			"calls (default 20) within window (default 60s) failed, or after consecutiveUnreachable (default 5) " +
			"calls in a row could not connect; remove failures, and set those keys if the defaults do not suit " +
			"(see docs/clinical-safety/degraded-modes.md)"}
	}
	return nil
}

// CORS is the cross-origin policy for browser viewers.
type CORS struct {
	// AllowedOrigins are exact origins (scheme://host[:port], like http://localhost:3000) whose
	// pages may call the proxy; "*" allows every origin. Default none.
	AllowedOrigins []string `yaml:"allowedOrigins"`
	// MaxAge is how long a browser may cache a preflight answer. Default 10m.
	MaxAge Duration `yaml:"maxAge"`
}

// Search bounds searches.
type Search struct {
	// MaxResultsPerSource is the most matches asked of each source; the proxy merges, sorts and
	// pages the answers itself. Default 1000.
	MaxResultsPerSource int `yaml:"maxResultsPerSource"`
	// DefaultLimit is the page size when the client sends no limit; 0 means no limit. Default 0.
	DefaultLimit int `yaml:"defaultLimit"`
	// MaxLimit is the largest limit a client may ask for (larger ones are lowered to it).
	// Default 1000.
	MaxLimit int `yaml:"maxLimit"`
	// MaxQueryLength is the longest query string, in bytes, of any DICOMweb request; a longer
	// one is refused (400). Default 8192.
	MaxQueryLength int `yaml:"maxQueryLength"`
	// MaxMatchingKeys is the most attribute matching keys one search may hold. Default 32.
	MaxMatchingKeys int `yaml:"maxMatchingKeys"`
	// MaxIncludeFields is the most attributes one search may name with includefield, over
	// all its includefield parameters. Default 128.
	MaxIncludeFields int `yaml:"maxIncludeFields"`
	// MaxValuesPerKey is the most values in one matching key's list (a\b\c). Default 100.
	MaxValuesPerKey int `yaml:"maxValuesPerKey"`
}

// Locator tunes the study locator.
type Locator struct {
	// TTL is how long "which trusts hold study X" is remembered. Default 10m.
	TTL Duration `yaml:"ttl"`
}

// Cache configures the cache of upstream answers: in-process by default, Redis when Redis.Addrs is
// set. It holds each trust's answers to searches, metadata, locator entries and rendered images;
// whole studies, series, instances and frames are never cached (they are large, and fetched once
// per viewing).
//
// Every entry is fresh for a while (it answers without asking its trust), then stale for a while
// more (it answers only when its trust cannot, if ServeStale), then gone; MaxRetention bounds the
// two together.
type Cache struct {
	// Enabled turns the cache off when false: every request goes to the trusts, and nothing
	// answers for a trust that is down. Default true.
	Enabled bool `yaml:"enabled"`
	// MemoryMaxBytes bounds the in-process cache (used when no Redis is configured), keys and
	// values included; the least recently used entries go first. At least 1 MiB. Default 67108864
	// (64 MiB).
	MemoryMaxBytes int `yaml:"memoryMaxBytes"`
	// MaxRetention is the longest anything stays in the cache, fresh and stale together; a kind
	// whose fresh+stale is longer is cut to it. It is the bound to wait for before an encryption
	// key is retired. Default 24h.
	MaxRetention Duration `yaml:"maxRetention"`
	// ServeStale lets a stale copy answer for a trust that cannot answer (down, its breaker open,
	// timed out); the answer carries Warning 110 (stale) and 299 naming the trust. When false, a
	// stale copy is never used. Default true.
	ServeStale bool `yaml:"serveStale"`
	// KeySecret is the HMAC secret cache keys are derived with (at least 32 bytes), so that nothing
	// readable in Redis names a patient or a study. Required with Redis, where every replica must
	// share it; empty without Redis means a random secret per process.
	KeySecret Secret `yaml:"keySecret"`
	// KeySecretFile names a file holding KeySecret (trailing newlines are dropped). A relative path
	// is taken from the config file's directory.
	KeySecretFile string `yaml:"keySecretFile"`
	// EncryptionKeys are the AES-256 keys values are sealed with in Redis, each the base64
	// (standard encoding) of exactly 32 bytes. The first seals; every one opens. To rotate, put the
	// new key first and keep the old ones until MaxRetention has passed. Required with Redis;
	// unused by the in-process cache. From the environment, NIRPROXY_CACHE_ENCRYPTION_KEYS is the
	// keys separated by commas.
	EncryptionKeys []Secret `yaml:"encryptionKeys"`
	// EncryptionKeysFile names a file holding EncryptionKeys, one base64 key per line (blank lines
	// and lines starting with # are ignored); the first key seals. A relative path is taken from
	// the config file's directory.
	EncryptionKeysFile string `yaml:"encryptionKeysFile"`
	// Search is for each trust's answer to a search. Default fresh 30s, stale 15m.
	Search Freshness `yaml:"search"`
	// Metadata is for each trust's study, series and instance metadata. Default fresh 5m,
	// stale 1h.
	Metadata Freshness `yaml:"metadata"`
	// Rendered is for rendered images and thumbnails. Default fresh 1h, stale 1h, maxBytes
	// 2097152 (2 MiB).
	Rendered Rendered `yaml:"rendered"`
	// Redis, when Addrs is set, holds the cache in Redis, shared by every replica, instead of in
	// each process.
	Redis Redis `yaml:"redis"`
}

// RedisEnabled reports whether the cache is on and kept in Redis.
func (c Cache) RedisEnabled() bool { return c.Enabled && len(c.Redis.Addrs) > 0 }

// Keys decodes EncryptionKeys, in order (the first seals). Each key is trimmed of spaces and must
// be the standard base64 of exactly [EncryptionKeyBytes] bytes. An error names the key's index,
// never its value.
func (c Cache) Keys() ([][]byte, error) {
	keys := make([][]byte, 0, len(c.EncryptionKeys))
	for i, k := range c.EncryptionKeys {
		key, problem := decodeEncryptionKey(k)
		if problem != "" {
			return nil, fmt.Errorf("decode cache.encryptionKeys[%d]: %s", i, problem)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// decodeEncryptionKey decodes one encryption key; problem says what is wrong with it, without its
// value.
func decodeEncryptionKey(k Secret) (key []byte, problem string) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(k)))
	switch {
	case strings.TrimSpace(string(k)) == "":
		return nil, "is empty"
	case err != nil:
		return nil, "is not base64 (standard encoding)"
	case len(key) != EncryptionKeyBytes:
		return nil, fmt.Sprintf("is the base64 of %d bytes, not %d", len(key), EncryptionKeyBytes)
	}
	return key, ""
}

// Freshness is how long one kind of entry answers directly (Fresh) and then how long more it is
// kept for use only when its trust fails (Stale). Fresh 0 means the kind is not cached at all,
// whatever Stale says.
type Freshness struct {
	// Fresh is how long an entry answers without asking its trust; 0 turns caching of the kind
	// off.
	Fresh Duration `yaml:"fresh"`
	// Stale is how long after Fresh an entry is kept, to answer (marked stale) only for a trust
	// that cannot answer; 0 keeps nothing past Fresh.
	Stale Duration `yaml:"stale"`
}

// Rendered is [Freshness] plus a size cap: larger images are passed on but not cached.
type Rendered struct {
	// Fresh is how long a rendered image answers without asking its trust; 0 turns caching of
	// rendered images off. Default 1h.
	Fresh Duration `yaml:"fresh"`
	// Stale is how long after Fresh it is kept for use only when its trust cannot answer.
	// Default 1h.
	Stale Duration `yaml:"stale"`
	// MaxBytes is the largest rendered image cached; larger ones are passed on but not cached.
	// Default 2097152 (2 MiB).
	MaxBytes int `yaml:"maxBytes"`
}

// Freshness is r's windows without the size cap.
func (r Rendered) Freshness() Freshness { return Freshness{Fresh: r.Fresh, Stale: r.Stale} }

// Redis says where the shared cache is. One address is a single node; two or more are Redis
// Cluster seed nodes; MasterName selects Sentinel (Addrs are then the sentinels).
type Redis struct {
	// Addrs are host:port addresses: the node, the Cluster's seed nodes, or the sentinels. Empty
	// (the default) keeps the cache in process.
	Addrs []string `yaml:"addrs"`
	// MasterName is the Sentinel master's name; empty when not using Sentinel.
	MasterName string `yaml:"masterName"`
	// Username is the Redis ACL user; empty for requirepass or no authentication.
	Username string `yaml:"username"`
	// Password authenticates to Redis (ACL user's password, or requirepass).
	Password Secret `yaml:"password"`
	// PasswordFile names a file holding Password; a relative path is taken from the config file's
	// directory.
	PasswordFile string `yaml:"passwordFile"`
	// SentinelPassword authenticates to the sentinels, when they require it.
	SentinelPassword Secret `yaml:"sentinelPassword"`
	// SentinelPasswordFile names a file holding SentinelPassword; a relative path is taken from
	// the config file's directory.
	SentinelPasswordFile string `yaml:"sentinelPasswordFile"`
	// DB is the database number, for a single node or Sentinel; Redis Cluster has only 0.
	// Default 0.
	DB int `yaml:"db"`
	// TLS connects with TLS, verifying the server against the system's roots. Default false.
	TLS bool `yaml:"tls"`
	// OpTimeout bounds one cache operation, dialling and retries included; a slower Redis is a
	// miss. Default 250ms.
	OpTimeout Duration `yaml:"opTimeout"`
	// DialTimeout bounds one connection attempt. Default 200ms.
	DialTimeout Duration `yaml:"dialTimeout"`
	// ReadTimeout bounds one read from a Redis connection. Default 200ms.
	ReadTimeout Duration `yaml:"readTimeout"`
	// WriteTimeout bounds one write to a Redis connection. Default 200ms.
	WriteTimeout Duration `yaml:"writeTimeout"`
	// PoolSize is the number of connections per node; 0 (the default) keeps go-redis's default
	// of 10 per CPU.
	PoolSize int `yaml:"poolSize"`
	// BreakerFailures is how many consecutive failures stop the proxy using Redis (every lookup a
	// miss, at no cost) for BreakerCooldown. Default 5.
	BreakerFailures int `yaml:"breakerFailures"`
	// BreakerCooldown is how long Redis is left alone after BreakerFailures; then one probe is
	// let through, and decides. Default 5s.
	BreakerCooldown Duration `yaml:"breakerCooldown"`
}

// Logging sets how the process logs.
type Logging struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or text. Default json.
	Format string `yaml:"format"`
}

// SlogLevel is Level as a log/slog level; an unknown level (which Validate reports) is
// slog.LevelInfo.
func (l Logging) SlogLevel() slog.Level {
	switch strings.ToLower(l.Level) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// Source is one trust's PACS.
type Source struct {
	// ID is the trust's ODS code: 3 to 10 upper-case letters or digits, unique. It names the
	// source in answers (RetrieveAETitle), warnings, logs and environment overrides.
	ID string `yaml:"id"`
	// Name is the trust's name, for people. Required.
	Name string `yaml:"name"`
	// URL is the PACS's DICOMweb base URL: absolute https (http only with Insecure), no query
	// or fragment. Required.
	URL string `yaml:"url"`
	// Priority orders the trusts that hold the same study: lower is preferred; ties go to the
	// order in the file. Default 100.
	Priority int `yaml:"priority"`
	// Timeout is the time allowed until the upstream's response headers. Default 10s.
	Timeout Duration `yaml:"timeout"`
	// IdleTimeout is the longest the proxy waits on one read of a streaming response body; time
	// spent not reading (writing to a slow client) does not count. Default 30s.
	IdleTimeout Duration `yaml:"idleTimeout"`
	// Retries is how many times a failed idempotent request is retried (refused connections,
	// 429, 502, 503, 504; never a time-out, never once a byte went to the client). Default 1.
	Retries int `yaml:"retries"`
	// RetryWaitMin is the shortest wait before a retry. Default 50ms.
	RetryWaitMin Duration `yaml:"retryWaitMin"`
	// RetryWaitMax is the longest wait before a retry; a Retry-After asking for longer is cut
	// to it. Default 1s.
	RetryWaitMax Duration `yaml:"retryWaitMax"`
	// MaxConcurrent bounds the requests in flight to this source; more wait for a slot until
	// their deadline. Default 32.
	MaxConcurrent int `yaml:"maxConcurrent"`
	// MaxConnections bounds the connections open to this source. Default 64.
	MaxConnections int `yaml:"maxConnections"`
	// Breaker tunes this source's circuit breaker.
	Breaker Breaker `yaml:"breaker"`
	// Required, when true, makes a search fail if this source does not answer. Default false.
	Required bool `yaml:"required"`
	// Auth is how the proxy authenticates to this PACS.
	Auth Auth `yaml:"auth"`
	// TLS is how the proxy verifies this PACS and proves itself to it over https.
	TLS SourceTLS `yaml:"tls"`
	// Insecure, when true, lets URL be plain http, which sends patients' data unencrypted: for
	// a demo or a test PACS only, and warned about at start-up. It turns no verification off: an
	// https URL is verified all the same. Default false.
	Insecure bool `yaml:"insecure"`
	// PatientID says where this PACS keeps the NHS number.
	PatientID PatientID `yaml:"patientId"`
}

// Auth is the credentials the proxy sends to one source.
type Auth struct {
	// Type is none, basic or bearer. Default none.
	Type string `yaml:"type"`
	// Username is the basic-auth user name.
	Username string `yaml:"username"`
	// Password is the basic-auth password.
	Password Secret `yaml:"password"`
	// PasswordFile names a file holding Password; a relative path is taken from the config
	// file's directory.
	PasswordFile string `yaml:"passwordFile"`
	// Token is the bearer token.
	Token Secret `yaml:"token"`
	// TokenFile names a file holding Token; a relative path is taken from the config file's
	// directory.
	TokenFile string `yaml:"tokenFile"`
}

// SourceTLS is how the proxy connects to a source's PACS over https: TLS 1.2 or later, the PACS's
// certificate verified against CAFile's certificates (or the system's roots), and, with CertFile
// and KeyFile, a client certificate presented to the PACS (mutual TLS). The files are read when
// the configuration is validated and when serve starts: a renewed certificate takes a restart.
// A relative path is taken from the config file's directory.
type SourceTLS struct {
	// CAFile names a PEM file of the CA certificates that may sign the PACS's certificate, such
	// as the trust's own CA. Default: the system's roots.
	CAFile string `yaml:"caFile"`
	// CertFile names a PEM file of the client certificate the proxy presents to the PACS,
	// followed by any intermediate certificates. KeyFile is required with it. Default none.
	CertFile string `yaml:"certFile"`
	// KeyFile names a PEM file of CertFile's private key. CertFile is required with it.
	KeyFile string `yaml:"keyFile"`
	// ServerName is the name the PACS's certificate must carry and the name sent in SNI, for a
	// PACS whose URL's host is not on its certificate (an IP address, say). Default: the URL's
	// host.
	ServerName string `yaml:"serverName"`
}

// PatientID says where a source's PACS keeps the NHS number.
type PatientID struct {
	// Attribute is PatientID or OtherPatientIDsSequence. Default PatientID.
	Attribute string `yaml:"attribute"`
	// Issuer is the IssuerOfPatientID that marks the NHS number; required for
	// OtherPatientIDsSequence, optional for PatientID.
	Issuer string `yaml:"issuer"`
}

// Default is the configuration with every default filled in and no sources.
func Default() Config {
	return Config{
		Listen:                  "127.0.0.1:8080",
		TLS:                     ListenTLS{ClientAuth: ClientAuthNone},
		AdminListen:             DefaultAdminListen,
		CORS:                    CORS{MaxAge: Duration(10 * time.Minute)},
		BulkdataLinkTTL:         Duration(time.Hour),
		PatientIdentifierIssuer: "2.16.840.1.113883.2.1.4.1",
		RequestTimeout:          Duration(30 * time.Second),
		ClientWriteTimeout:      Duration(60 * time.Second),
		PartialRetrieve:         PartialRetrieveFail,
		PartialSearch:           PartialRetrieveWarn,
		RetryAfter:              Duration(30 * time.Second),
		MaxFrames:               1000,
		ThumbnailViewport:       "128,128",
		Incidents:               Incidents{WebhookTimeout: Duration(5 * time.Second), WebhookRetries: 3},
		Search:                  Search{MaxResultsPerSource: 1000, DefaultLimit: 0, MaxLimit: 1000, MaxQueryLength: 8192, MaxMatchingKeys: 32, MaxIncludeFields: 128, MaxValuesPerKey: 100},
		Locator:                 Locator{TTL: Duration(10 * time.Minute)},
		Cache:                   DefaultCache(),
		Logging:                 Logging{Level: "info", Format: "json"},
		Authentication: Authentication{
			CacheTTL:    Duration(5 * time.Minute),
			CacheSize:   10000,
			HTTPTimeout: Duration(5 * time.Second),
		},
		Onboarding: Onboarding{ReloadEvery: Duration(30 * time.Second)},
		Audit: Audit{SegmentBytes: 64 << 20, MaxBytes: 10 << 30, Retention: Duration(30 * 24 * time.Hour), RetentionInterval: Duration(time.Hour),
			Forward: AuditForward{MinBackoff: Duration(time.Second), MaxBackoff: Duration(time.Minute), SendTimeout: Duration(30 * time.Second),
				RejectAttempts: 3, MaxLag: 10000, MaxLagAge: Duration(15 * time.Minute),
				AckEvery: 1000, AckInterval: Duration(time.Second), MaxInFlight: 8},
			PARS: PARS{ObserverSystem: "https://fhir.nhs.uk/Id/accredited-system", SystemIDSystem: "https://fhir.nhs.uk/Id/product-id"},
			ATNA: ATNA{DialTimeout: Duration(10 * time.Second), MaxMessageSize: 32768}},
		RateLimit: RateLimit{
			User:         Rate{Requests: 600, Period: Duration(time.Minute), Burst: 300},
			Organisation: Rate{Requests: 6000, Period: Duration(time.Minute), Burst: 1000},
			Patients:     PatientLimit{Patients: 50, Window: Duration(time.Hour)},
			MaxKeys:      100000,
		},
		Authorization: Authorization{
			RoleActions:          authz.DefaultRoleActions(),
			AcceptRequestPurpose: false,
			DSPTYearStart:        formatMonthDay(authz.DefaultDSPTYear()),
			DSPTTimeZone:         zoneName(authz.DefaultDSPTYear().Location),
		},
	}
}

// DefaultCache is the cache section with every default filled in: in process, 64 MiB.
func DefaultCache() Cache {
	return Cache{
		Enabled:        true,
		MemoryMaxBytes: 64 << 20,
		MaxRetention:   Duration(24 * time.Hour),
		ServeStale:     true,
		Search:         Freshness{Fresh: Duration(30 * time.Second), Stale: Duration(15 * time.Minute)},
		Metadata:       Freshness{Fresh: Duration(5 * time.Minute), Stale: Duration(time.Hour)},
		Rendered:       Rendered{Fresh: Duration(time.Hour), Stale: Duration(time.Hour), MaxBytes: 2 << 20},
		Redis: Redis{
			OpTimeout:       Duration(250 * time.Millisecond),
			DialTimeout:     Duration(200 * time.Millisecond),
			ReadTimeout:     Duration(200 * time.Millisecond),
			WriteTimeout:    Duration(200 * time.Millisecond),
			BreakerFailures: 5,
			BreakerCooldown: Duration(5 * time.Second),
		},
	}
}

// DefaultSource is a source with every default filled in; each source of the file starts from it.
func DefaultSource() Source {
	return Source{
		Priority:       100,
		Timeout:        Duration(10 * time.Second),
		IdleTimeout:    Duration(30 * time.Second),
		Retries:        1,
		RetryWaitMin:   Duration(50 * time.Millisecond),
		RetryWaitMax:   Duration(time.Second),
		MaxConcurrent:  32,
		MaxConnections: 64,
		Breaker:        DefaultBreaker(),
		Auth:           Auth{Type: AuthNone},
		PatientID:      PatientID{Attribute: AttributePatientID},
	}
}

// DefaultTokenIssuer is a token issuer with every default filled in; each entry of auth.issuers
// starts from it. Its cis2 settings are NHS services' (see [CIS2]); they are passed on only
// for an issuer of profile cis2, or where the file changes them.
func DefaultTokenIssuer() TokenIssuer {
	return TokenIssuer{
		Algorithms: []string{"RS256"},
		ClockSkew:  Duration(60 * time.Second),
		KeyRefresh: Duration(5 * time.Minute),
		KeyMaxAge:  Duration(time.Hour),
		CIS2:       CIS2{MinIDAssuranceLevel: 3, ACRPrefix: "AAL3_"},
	}
}

// entryDefault is what a new entry of a list of t starts from: [DefaultSource] for sources,
// [DefaultTokenIssuer] for token issuers; false for lists whose entries start empty.
func entryDefault(t reflect.Type) (reflect.Value, bool) {
	switch t {
	case reflect.TypeFor[Source]():
		return reflect.ValueOf(DefaultSource()), true
	case reflect.TypeFor[TokenIssuer]():
		return reflect.ValueOf(DefaultTokenIssuer()), true
	}
	return reflect.Value{}, false
}

// SourceIDs lists the sources' ids in the order of the file.
func (c Config) SourceIDs() []string {
	ids := make([]string, len(c.Sources))
	for i, s := range c.Sources {
		ids[i] = s.ID
	}
	return ids
}

// Secret is a configuration value that must not be shown: it prints and marshals as "REDACTED"
// (or as nothing when empty). Use string(s) where the value itself is needed.
type Secret string

// String is "REDACTED", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redaction
}

// GoString is like String, so %#v does not leak the value either.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.String()) }

// LogValue makes log/slog print the redacted form.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText makes encoding/json and YAML marshalling print the redacted form.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Duration is a time.Duration written in the file as a Go duration string, like 10s or 1m30s.
type Duration time.Duration

// Std is d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String is d as a Go duration string.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration string; it is what YAML decoders use too.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// parseDuration reads a Go duration string, with an error that says how to write one.
func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write it like 10s, 1m30s or 500ms", s)
	}
	return Duration(v), nil
}

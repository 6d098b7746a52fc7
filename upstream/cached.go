package upstream

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/cache"
	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// CacheOptions says which of a source's answers are kept in the cache, and for how long.
// Whole studies, series, instances, frames and bulk data are never cached: they are large, a
// viewer reads each once per viewing, and holding pixel data of many patients in a shared cache
// would multiply what is at rest for little gain.
type CacheOptions struct {
	// Store is the cache; nil caches nothing.
	Store *cache.Store
	// Search is for the source's answers to searches.
	Search cache.Freshness
	// Metadata is for study, series and instance metadata.
	Metadata cache.Freshness
	// Rendered is for rendered images and thumbnails.
	Rendered cache.Freshness
	// RenderedMaxBytes is the largest rendered image kept; larger ones pass through uncached.
	// Required when Rendered is enabled.
	RenderedMaxBytes int64
}

// maxCachedMetadata is the largest metadata answer kept (a few thousand instances); larger ones
// stream through uncached. An answer is read whole before it is passed on, so this is also the
// memory one metadata request may hold.
const maxCachedMetadata = 8 << 20

// check names what is missing from o when it has a Store.
func (o CacheOptions) check() error {
	if o.Store != nil && o.Rendered.Enabled() && o.RenderedMaxBytes <= 0 {
		return fmt.Errorf("CacheOptions.RenderedMaxBytes is %d; it must be positive when Rendered is enabled", o.RenderedMaxBytes)
	}
	return nil
}

// StaleError is what a source's cache returns, together with a stale copy of the answer, when
// the source failed and the caller accepts stale copies (see AcceptStale). Err is the source's
// failure; Age is how old the copy is. The fallback package decides whether the copy is used.
type StaleError struct {
	Source string
	Age    time.Duration
	Err    error
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("source %s failed (%v); a copy cached %s ago is available", e.Source, e.Err, e.Age)
}

func (e *StaleError) Unwrap() error { return e.Err }

// AsStale returns the StaleError in err's chain, if any.
func AsStale(err error) (*StaleError, bool) {
	var se *StaleError
	ok := errors.As(err, &se)
	return se, ok
}

type ctxKey int

const (
	acceptStaleKey ctxKey = iota
	bypassCacheKey
)

// AcceptStale marks ctx so that a source's cache, when the source fails and it holds a stale
// copy, returns that copy together with a *StaleError instead of the bare error: Search returns
// the datasets, Fetch a response the caller must close. Callers that do not ask never receive a
// stale copy, so nothing stale is ever used silently.
func AcceptStale(ctx context.Context) context.Context {
	return context.WithValue(ctx, acceptStaleKey, true)
}

// BypassCache marks ctx so that calls go to the source, neither reading nor writing the cache
// (for planning a retrieve, which must see the source as it is now).
func BypassCache(ctx context.Context) context.Context {
	return context.WithValue(ctx, bypassCacheKey, true)
}

func flag(ctx context.Context, k ctxKey) bool { v, _ := ctx.Value(k).(bool); return v }

// cachedClient is the outermost wrapper: fresh copies answer without reaching the source's
// breaker, limit or statistics (which describe the PACS, not the cache); concurrent identical
// searches share one call; failures may be answered with a stale copy.
type cachedClient struct {
	next     Client
	cfg      SourceConfig
	opts     CacheOptions
	store    *cache.Store
	searches cache.Flight[[]byte]
}

// newCachedClient caches next's answers as opts say; opts must be complete (see check).
func newCachedClient(next Client, cfg SourceConfig, opts CacheOptions) *cachedClient {
	return &cachedClient{next: next, cfg: cfg, opts: opts, store: opts.Store}
}

// key is the entry key of one request to this source. The source's URL is part of it, so a
// trust whose address changes does not answer from its old PACS's entries.
func (c *cachedClient) key(kind, path string, query url.Values, accept string) string {
	return c.store.Key(kind, c.cfg.ID, c.cfg.BaseURL.String(), path, encodeQuery(query), accept)
}

func (c *cachedClient) Search(ctx context.Context, path string, query url.Values) ([]dcmjson.Dataset, error) {
	if !c.opts.Search.Enabled() || flag(ctx, bypassCacheKey) {
		return c.next.Search(ctx, path, query)
	}
	key := c.key("search", path, query, "")
	entry, have := c.store.Lookup(ctx, "search", key)
	if have && entry.Fresh(c.store.Now()) {
		if ds, err := dcmjson.Decode(entry.Value); err == nil {
			return ds, nil
		}
		have = false
	}
	body, shared, err := c.searches.Do(ctx, key, func(ctx context.Context) ([]byte, error) {
		ds, err := c.next.Search(ctx, path, query)
		if err != nil {
			return nil, err
		}
		b := encodeDatasets(ds)
		links := c.links(key, query, ds)
		if study := studyOfPath(path); study != "" {
			// An answer below a study's path is about that study even when its results do not
			// say so, or list nothing (the last page of an instance listing): purging the
			// study's patient must reach it.
			links = append(links, cache.Link{Index: c.store.StudyIndex(study), Member: key})
		}
		c.store.Put(ctx, key, b, c.opts.Search, links...)
		return b, nil
	})
	if shared {
		c.store.Metrics().Coalesced("search")
	}
	if err == nil {
		ds, derr := dcmjson.Decode(body)
		if derr != nil {
			return nil, &InvalidResponseError{Source: c.cfg.ID, Err: derr}
		}
		return ds, nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		var te *TransportError
		if !errors.As(err, &te) {
			err = &TransportError{Source: c.cfg.ID, Err: err}
		}
	}
	if have && flag(ctx, acceptStaleKey) && standsIn(err) {
		if ds, derr := dcmjson.Decode(entry.Value); derr == nil {
			return ds, &StaleError{Source: c.cfg.ID, Age: entry.Age(c.store.Now()), Err: err}
		}
	}
	return nil, err
}

// standsIn reports whether a stale copy may stand in for a call that failed with err: only
// when the source failed (down, timed out, 5xx, garbage, breaker open), never when it answered
// (a 404 says the resource is gone) or when our own client left.
func standsIn(err error) bool { return Classify(err).CountsAgainstBreaker() }

// links lists the indexes an answer's entry belongs to: the patient and the studies the query
// names, each patient and study in the answer, and each study under its patient, so that
// purging a patient finds every entry about them.
func (c *cachedClient) links(key string, query url.Values, list []dcmjson.Dataset) []cache.Link {
	seen := map[cache.Link]bool{}
	var out []cache.Link
	add := func(index, member string) {
		l := cache.Link{Index: index, Member: member}
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	for _, k := range []string{dcmjson.TagPatientID, dcmjson.TagOtherPatientIDsSequence + "." + dcmjson.TagPatientID} {
		if v := strings.TrimSpace(query.Get(k)); v != "" {
			add(c.store.PatientIndex(v), key)
		}
	}
	// A search by study UID is about those studies even when it finds none (the locator asks
	// every trust, and most hold nothing): it goes under each study named.
	for _, uid := range strings.FieldsFunc(query.Get(dcmjson.TagStudyInstanceUID), func(r rune) bool { return r == ',' || r == '\\' }) {
		add(c.store.StudyIndex(strings.TrimSpace(uid)), key)
	}
	for _, ds := range list {
		nhs := c.cfg.NHSNumberOf(ds)
		study := ds.String(dcmjson.TagStudyInstanceUID)
		if nhs != "" {
			add(c.store.PatientIndex(nhs), key)
		}
		if study != "" {
			add(c.store.StudyIndex(study), key)
			if nhs != "" {
				add(c.store.PatientIndex(nhs), c.store.StudyIndex(study))
			}
		}
	}
	return out
}

// fetchKind says whether a fetch is cached, as which kind, and up to what size.
func (c *cachedClient) fetchKind(path string, query url.Values) (string, cache.Freshness, int64) {
	switch {
	case strings.HasSuffix(path, "/metadata") && len(query) == 0:
		return "metadata", c.opts.Metadata, maxCachedMetadata
	case strings.HasSuffix(path, "/rendered") || strings.HasSuffix(path, "/thumbnail"):
		return "rendered", c.opts.Rendered, c.opts.RenderedMaxBytes
	}
	return "", cache.Freshness{}, 0
}

func (c *cachedClient) Fetch(ctx context.Context, path string, query url.Values, accept string) (*http.Response, error) {
	kind, fresh, limit := c.fetchKind(path, query)
	if kind == "" || !fresh.Enabled() || flag(ctx, bypassCacheKey) {
		return c.next.Fetch(ctx, path, query, accept)
	}
	key := c.key(kind, path, query, accept)
	entry, have := c.store.Lookup(ctx, kind, key)
	if have && entry.Fresh(c.store.Now()) {
		if resp, ok := decodeFetched(entry.Value); ok {
			return resp, nil
		}
		have = false
	}
	resp, err := c.next.Fetch(ctx, path, query, accept)
	if err != nil {
		if have && flag(ctx, acceptStaleKey) && standsIn(err) {
			if stale, ok := decodeFetched(entry.Value); ok {
				return stale, &StaleError{Source: c.cfg.ID, Age: entry.Age(c.store.Now()), Err: err}
			}
		}
		return nil, err
	}
	return c.keep(ctx, kind, key, fresh, limit, path, resp)
}

// keep reads an answer of at most limit bytes into memory, stores it when it is what it claims
// to be, and returns it as a fresh response. A larger answer is passed on as a stream, its
// first bytes replayed, and not stored: memory stays bounded by limit per request.
func (c *cachedClient) keep(ctx context.Context, kind, key string, fresh cache.Freshness, limit int64, path string, resp *http.Response) (*http.Response, error) {
	buf, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		resp.Body.Close()
		var te *TransportError
		if !errors.As(err, &te) {
			err = &TransportError{Source: c.cfg.ID, Err: err}
		}
		return nil, err
	}
	if int64(len(buf)) > limit {
		resp.Body = &replayBody{Reader: io.MultiReader(bytes.NewReader(buf), resp.Body), orig: resp.Body}
		return resp, nil
	}
	ct := resp.Header.Get("Content-Type")
	var links []cache.Link
	ok := false
	switch kind {
	case "metadata":
		list, derr := dcmjson.Decode(buf)
		if derr == nil && len(list) > 0 {
			ok = true
			links = c.links(key, nil, list)
			if study := studyOfPath(path); study != "" {
				links = append(links, cache.Link{Index: c.store.StudyIndex(study), Member: key})
			}
		}
	case "rendered":
		if study := studyOfPath(path); study != "" && strings.HasPrefix(strings.ToLower(ct), "image/") {
			ok = true
			links = []cache.Link{{Index: c.store.StudyIndex(study), Member: key}}
		}
	}
	resp.Body.Close()
	if ok {
		c.store.Put(ctx, key, encodeFetched(resp.StatusCode, ct, buf), fresh, links...)
	}
	return bufferedResponse(resp.StatusCode, ct, buf), nil
}

// studyOfPath is the Study Instance UID of a path "studies/{uid}/...".
func studyOfPath(path string) string {
	rest, ok := strings.CutPrefix(strings.TrimPrefix(path, "/"), "studies/")
	if !ok {
		return ""
	}
	uid, _, _ := strings.Cut(rest, "/")
	return uid
}

// replayBody is a response body whose first bytes were read ahead; failures found by the
// reader still reach the source's wrappers.
type replayBody struct {
	io.Reader
	orig io.ReadCloser
}

func (b *replayBody) Close() error         { return b.orig.Close() }
func (b *replayBody) markFailed(err error) { MarkFailed(b.orig, err) }

func bufferedResponse(status int, ct string, body []byte) *http.Response {
	h := http.Header{}
	if ct != "" {
		h.Set("Content-Type", ct)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
	}
}

// A fetched answer is stored as: status (2 bytes) | uvarint length of the content type | the
// content type | the body.
func encodeFetched(status int, ct string, body []byte) []byte {
	out := make([]byte, 2, 2+binary.MaxVarintLen64+len(ct)+len(body))
	binary.BigEndian.PutUint16(out, uint16(status))
	out = binary.AppendUvarint(out, uint64(len(ct)))
	out = append(out, ct...)
	return append(out, body...)
}

func decodeFetched(v []byte) (*http.Response, bool) {
	if len(v) < 3 {
		return nil, false
	}
	status := int(binary.BigEndian.Uint16(v))
	n, k := binary.Uvarint(v[2:])
	if k <= 0 || status < 200 || status > 299 || uint64(len(v)-2-k) < n {
		return nil, false
	}
	ct := string(v[2+k : 2+k+int(n)])
	return bufferedResponse(status, ct, v[2+k+int(n):]), true
}

func encodeDatasets(list []dcmjson.Dataset) []byte {
	return dcmjson.AppendArray(make([]byte, 0, 512*len(list)+2), list)
}

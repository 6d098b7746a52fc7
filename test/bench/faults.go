package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HangingOrigin is a stand-in for a trust whose PACS accepts a request and never answers: it
// reads the request and then holds the connection open, sending nothing, until the client
// gives up or Close is called. It takes no CPU while it holds.
type HangingOrigin struct {
	// URL is the origin's address; its DICOMweb root is URL + "/dicom-web".
	URL string

	srv      *httptest.Server
	stop     chan struct{}
	once     sync.Once
	requests atomic.Int64
}

// StartHangingOrigin starts a HangingOrigin on a loopback port.
func StartHangingOrigin() *HangingOrigin {
	h := &HangingOrigin{stop: make(chan struct{})}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-h.stop:
		}
	}))
	h.URL = h.srv.URL
	return h
}

// Requests is how many requests the origin has received so far.
func (h *HangingOrigin) Requests() int64 { return h.requests.Load() }

// Close releases every held request and stops the origin. It may be called more than once.
func (h *HangingOrigin) Close() {
	h.once.Do(func() {
		close(h.stop)
		h.srv.CloseClientConnections()
		h.srv.Close()
	})
}

// studyUIDTag is StudyInstanceUID (0020,000D) as DICOM JSON names it.
const studyUIDTag = "0020000D"

// RelabelAnswer returns a DICOM JSON search answer like answer but with every study's
// StudyInstanceUID, wherever it appears (also inside RetrieveURLs), replaced by one derived
// from source and the old UID. Copies of one real answer relabelled for several sources then
// hold different studies of the same shape, so a proxy merging them answers every copy's
// studies instead of folding them into one set.
func RelabelAnswer(answer []byte, source string) ([]byte, error) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(answer, &list); err != nil {
		return nil, fmt.Errorf("relabel search answer for %s: %w", source, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("relabel search answer for %s: the answer holds no study", source)
	}
	pairs := make([]string, 0, 2*len(list))
	for i, ds := range list {
		var el struct {
			Value []string `json:"Value"`
		}
		if raw, ok := ds[studyUIDTag]; ok {
			if err := json.Unmarshal(raw, &el); err != nil {
				return nil, fmt.Errorf("relabel search answer for %s: result %d: %w", source, i+1, err)
			}
		}
		if len(el.Value) != 1 || el.Value[0] == "" {
			return nil, fmt.Errorf("relabel search answer for %s: result %d has no StudyInstanceUID", source, i+1)
		}
		pairs = append(pairs, el.Value[0], UID("relabel/"+source+"/"+el.Value[0]))
	}
	return []byte(strings.NewReplacer(pairs...).Replace(string(answer))), nil
}

// Check judges one answer of a recorded target from its status and headers. It returns a
// short note to count (for example the text of a Warning header, "" for none) and an error
// when the answer is not what the measurement expects.
type Check func(status int, header http.Header) (note string, err error)

// Observations is every answer of a recorded target, as the load driver saw it.
type Observations struct {
	// Latencies holds one entry per answer, failed or not: from sending the request to its
	// last byte, or to the failure.
	Latencies []time.Duration
	// Failed counts answers that were not 200 or not read to the end; Rejected counts 200s
	// the check refused.
	Failed, Rejected int
	// FirstProblem describes the first failed or refused answer.
	FirstProblem string
	// Notes counts the notes the check returned, by text.
	Notes map[string]int
}

// Count is how many answers were observed.
func (o Observations) Count() int { return len(o.Latencies) }

// Over counts the answers slower than limit.
func (o Observations) Over(limit time.Duration) int {
	n := 0
	for _, d := range o.Latencies {
		if d > limit {
			n++
		}
	}
	return n
}

// Max is the slowest answer's latency, or 0 when there were none.
func (o Observations) Max() time.Duration {
	var m time.Duration
	for _, d := range o.Latencies {
		m = max(m, d)
	}
	return m
}

// Merge adds o2's answers to o. It never writes into the latencies or notes o shares with a
// copy of it, so `all := a; all.Merge(b)` leaves a as it was.
func (o *Observations) Merge(o2 Observations) {
	o.Latencies = append(slices.Clip(o.Latencies), o2.Latencies...)
	o.Failed += o2.Failed
	o.Rejected += o2.Rejected
	if o.FirstProblem == "" {
		o.FirstProblem = o2.FirstProblem
	}
	notes := make(map[string]int, len(o.Notes)+len(o2.Notes))
	for _, m := range []map[string]int{o.Notes, o2.Notes} {
		for k, v := range m {
			notes[k] += v
		}
	}
	o.Notes = notes
}

// Recorder keeps every answer of a target, including those Run counts as errors (whose
// latencies Run drops), and checks each answer's status and headers. It is safe for
// concurrent use.
type Recorder struct {
	check Check
	mu    sync.Mutex
	obs   Observations
}

// NewRecorder returns a Recorder that judges answers with check (nil accepts every 200).
func NewRecorder(check Check) *Recorder {
	return &Recorder{check: check}
}

// Target returns a GET of url with header that records every answer in r when loaded (Run,
// Fetch); its URL and Header are set too, for callers that send the request themselves,
// unrecorded. Answers cut short because ctx ended (the run was stopped) are not recorded.
func (r *Recorder) Target(name, url string, header http.Header) Target {
	return Target{Name: name, URL: url, Header: header, Do: func(ctx context.Context, client *http.Client) (int64, error) {
		start := time.Now()
		n, status, h, err := get(ctx, client, name, url, header)
		elapsed := time.Since(start)
		if ctx.Err() != nil {
			return n, err
		}
		var note string
		var rejected error
		if err == nil && r.check != nil {
			note, rejected = r.check(status, h)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.obs.Latencies = append(r.obs.Latencies, elapsed)
		if note != "" {
			if r.obs.Notes == nil {
				r.obs.Notes = map[string]int{}
			}
			r.obs.Notes[note]++
		}
		switch {
		case err != nil:
			r.obs.Failed++
			if r.obs.FirstProblem == "" {
				r.obs.FirstProblem = err.Error()
			}
		case rejected != nil:
			r.obs.Rejected++
			if r.obs.FirstProblem == "" {
				r.obs.FirstProblem = fmt.Sprintf("%s: %v", name, rejected)
			}
		}
		// A refused answer is still an answer to the load: Run measures it as usual.
		return n, err
	}}
}

// Take returns what r has observed since the last Take and starts afresh.
func (r *Recorder) Take() Observations {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.obs
	r.obs = Observations{}
	return o
}

// get sends one GET and reads the answer to the end, returning the body's length, the status
// and the headers; an answer that is not 200 is an error.
func get(ctx context.Context, client *http.Client, name, url string, header http.Header) (int64, int, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("build request for %s: %w", name, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("get %s: %w", name, err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return n, resp.StatusCode, resp.Header, fmt.Errorf("get %s: %w %d", name, errStatus, resp.StatusCode)
	}
	if err != nil {
		return n, resp.StatusCode, resp.Header, fmt.Errorf("read %s after %d bytes: %w", name, n, err)
	}
	return n, resp.StatusCode, resp.Header, nil
}

// ErrNoWarning marks an answer that lacks the Warning a check expected.
var ErrNoWarning = errors.New("no Warning: 299 naming the source")

// WarnsAbout returns a Check that wants every answer to carry a `Warning: 299` header whose
// text names the source id; its note is that warning's text without the warn-agent (which
// holds the proxy's address), so that the reasons given can be counted.
func WarnsAbout(id string) Check {
	return func(_ int, h http.Header) (string, error) {
		for _, v := range h.Values("Warning") {
			code, rest, _ := strings.Cut(strings.TrimSpace(v), " ")
			if code != "299" {
				continue
			}
			_, text, ok := strings.Cut(rest, " ")
			if !ok || !containsWord(text, id) {
				continue
			}
			return strings.TrimSpace(text), nil
		}
		return "", ErrNoWarning
	}
}

// containsWord reports whether s holds word with no letter, digit or '_' either side.
func containsWord(s, word string) bool {
	isWordByte := func(c byte) bool {
		return c == '_' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
	}
	for i := 0; ; {
		j := strings.Index(s[i:], word)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(word)
		if (j == 0 || !isWordByte(s[j-1])) && (end == len(s) || !isWordByte(s[end])) {
			return true
		}
		i = j + 1
	}
}

// BreakerState asks the proxy at baseURL (its root, not its DICOMweb root) for GET /status
// and returns the breaker state it reports for the source id ("closed", "open", "half-open").
func BreakerState(ctx context.Context, client *http.Client, baseURL, id string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/status", nil)
	if err != nil {
		return "", fmt.Errorf("build status request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("get the proxy's status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("get the proxy's status: %w %d", errStatus, resp.StatusCode)
	}
	var body struct {
		Sources []struct {
			ID      string `json:"id"`
			Breaker string `json:"breaker"`
		} `json:"sources"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("decode the proxy's status: %w", err)
	}
	for _, s := range body.Sources {
		if s.ID == id {
			return s.Breaker, nil
		}
	}
	return "", fmt.Errorf("read the proxy's status: source %s is not listed", id)
}

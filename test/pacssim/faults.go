package pacssim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FaultMode says how a faulted request goes wrong.
type FaultMode int

// The ways a trust can misbehave. Every mode but FaultLatency decides the answer; latency
// adds to whatever else happens.
const (
	// FaultLatency waits Delay before the request is handled, so before any header is sent.
	FaultLatency FaultMode = iota + 1
	// FaultHang accepts the request and never answers, until the client gives up (the
	// request's context ends) or the trust's faults change.
	FaultHang
	// FaultStatus answers Status with an Orthanc-like JSON error body, and a Retry-After
	// header when RetryAfter is set.
	FaultStatus
	// FaultReset sends the headers and the first ResetAfter bytes of the real answer's body,
	// then resets the connection (TCP RST). An answer shorter than that is reset at its end,
	// so it never ends cleanly either.
	FaultReset
	// FaultTruncatedMultipart ends a multipart answer (retrieve, frames, bulk data) cleanly at
	// the HTTP level but without its closing delimiter, after Parts parts (0: after all of
	// them). Other answers are sent as they are.
	FaultTruncatedMultipart
	// FaultTruncatedJSON sends the real answer cut to half its length, with a Content-Length
	// to match: on a search or metadata, a DICOM JSON array that never closes.
	FaultTruncatedJSON
	// FaultNotDICOMJSON answers 200 with {"not":"dicom"} as application/dicom+json.
	FaultNotDICOMJSON
	// FaultWrongContentType answers 200 with an HTML sign-in page, as a PACS behind a
	// misconfigured single sign-on gateway does.
	FaultWrongContentType
	// FaultDuplicateParts sends every part of a multipart answer twice in a row, each copy
	// whole; the answer is otherwise well formed. Other answers are sent as they are.
	FaultDuplicateParts
	// FaultOmitInstance leaves the instance SOPInstanceUID out of retrieve answers (study,
	// series or instance), which are otherwise well formed, while searches and metadata
	// still list it: a PACS whose index and store disagree.
	FaultOmitInstance
	// FaultActiveContent answers 200 with a body that runs script in a browser (an HTML page,
	// or an SVG), labelled ContentType: see hostile.go.
	FaultActiveContent
	// FaultActiveParts answers 200 with multipart/related of the part type asked for whose
	// parts are HTML pages with a script.
	FaultActiveParts
	// FaultHostileHeaders sends the real answer with HostileResponseHeaders (Set-Cookie,
	// WWW-Authenticate, Access-Control-Allow-Origin, internal URLs in Location and Link, ...)
	// and, in multipart answers, part headers naming InternalHost.
	FaultHostileHeaders
	// FaultInternalURLs plants InternalHost and InternalMetadataHost URLs (UR elements,
	// RetrieveURL, RetrieveURI, BulkDataURIs, nested in sequences) in every DICOM JSON answer.
	FaultInternalURLs
	// FaultOversized answers searches and metadata with a DICOM JSON array holding Size bytes
	// of text; other answers are sent as they are.
	FaultOversized
	// FaultRelabel sends the real answer labelled ContentType.
	FaultRelabel
)

// Fault is one way a trust misbehaves. Make one with a constructor (Latency, Hang, Status,
// TooManyRequests, ResetMidStream, TruncatedMultipart, TruncatedJSON, NotDICOMJSON,
// WrongContentType, DuplicateParts, OmitInstance, and the hostile ActiveContent, Relabel,
// ActiveParts, HostileHeaders, InternalURLs, Oversized) and narrow it with Only and Flapping:
//
//	trust.SetFaults(pacssim.Latency(3*time.Second).Only(pacssim.KindSearch))
//	trust.SetFaults(pacssim.Status(500).Flapping(pacssim.Flap{FailRequests: 2, WorkRequests: 3}))
//
// Refusing connections is not a Fault, since it acts on the listener rather than on
// requests: see Trust.RefuseConnections.
type Fault struct {
	Mode FaultMode
	// Kinds restricts the fault to these kinds of request; empty means every kind.
	Kinds []RequestKind
	// Delay is FaultLatency's wait.
	Delay time.Duration
	// Status is FaultStatus's status code, 400 to 599.
	Status int
	// RetryAfter, when positive, is sent with FaultStatus as Retry-After in whole seconds,
	// rounded up.
	RetryAfter time.Duration
	// ResetAfter is how many body bytes FaultReset sends before the reset.
	ResetAfter int64
	// Parts is how many parts FaultTruncatedMultipart sends; 0 sends every part.
	Parts int
	// SOPInstanceUID is the instance FaultOmitInstance leaves out.
	SOPInstanceUID string
	// ContentType is what FaultActiveContent labels its body.
	ContentType string
	// Size is how many bytes of text FaultOversized sends.
	Size int64
	// Flap, when set, makes the fault come and go; nil applies it to every request.
	Flap *Flap
}

// Flap makes a fault alternate: it applies for a while (the failing phase), then not for a
// while (the working phase), and so on, starting with the failing phase when the fault is
// set. Phases are counted either in requests (FailRequests, WorkRequests: the fault's own
// count of requests of its kinds, so sequential requests see a deterministic pattern) or in
// time (Fail, Work, read from Clock); set one pair only.
type Flap struct {
	Fail, Work                 time.Duration
	FailRequests, WorkRequests int
	// Clock tells the time for phases in time; nil uses time.Now. Tests inject a fake one.
	Clock func() time.Time
}

// Latency delays every request by d before it is handled.
func Latency(d time.Duration) Fault { return Fault{Mode: FaultLatency, Delay: d} }

// Hang accepts every request and never answers it, until the client gives up or the faults
// change.
func Hang() Fault { return Fault{Mode: FaultHang} }

// Status answers every request with the error status code (400 to 599), such as 500.
func Status(code int) Fault { return Fault{Mode: FaultStatus, Status: code} }

// TooManyRequests answers 429 with Retry-After: retryAfter (in whole seconds, rounded up).
func TooManyRequests(retryAfter time.Duration) Fault {
	return Fault{Mode: FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: retryAfter}
}

// ResetMidStream sends the headers and the first afterBytes bytes of each answer's body,
// then resets the connection.
func ResetMidStream(afterBytes int64) Fault { return Fault{Mode: FaultReset, ResetAfter: afterBytes} }

// TruncatedMultipart ends multipart answers cleanly but without their closing delimiter,
// after parts parts (0: after all of them).
func TruncatedMultipart(parts int) Fault { return Fault{Mode: FaultTruncatedMultipart, Parts: parts} }

// TruncatedJSON sends each answer cut to half its length, so searches and metadata are
// DICOM JSON arrays that never close.
func TruncatedJSON() Fault { return Fault{Mode: FaultTruncatedJSON} }

// NotDICOMJSON answers 200 with {"not":"dicom"} as application/dicom+json.
func NotDICOMJSON() Fault { return Fault{Mode: FaultNotDICOMJSON} }

// WrongContentType answers 200 with an HTML sign-in page.
func WrongContentType() Fault { return Fault{Mode: FaultWrongContentType} }

// DuplicateParts sends every part of multipart answers twice.
func DuplicateParts() Fault { return Fault{Mode: FaultDuplicateParts} }

// OmitInstance leaves the instance sopInstanceUID out of retrieve answers, while searches
// and metadata still list it.
func OmitInstance(sopInstanceUID string) Fault {
	return Fault{Mode: FaultOmitInstance, SOPInstanceUID: sopInstanceUID}
}

// Only returns f restricted to the given kinds of request.
func (f Fault) Only(kinds ...RequestKind) Fault {
	f.Kinds = slices.Clone(kinds)
	return f
}

// Flapping returns f made to come and go as fl says.
func (f Fault) Flapping(fl Flap) Fault {
	f.Flap = &fl
	return f
}

// Validate reports what is wrong with f, if anything. Faults made by the constructors are
// valid unless given a negative duration or count, or a status outside 400 to 599.
func (f Fault) Validate() error {
	var problems []string
	switch f.Mode {
	case FaultLatency:
		if f.Delay < 0 {
			problems = append(problems, "latency is negative")
		}
	case FaultStatus:
		if f.Status < 400 || f.Status > 599 {
			problems = append(problems, fmt.Sprintf("status %d is not an error status (400 to 599)", f.Status))
		}
		if f.RetryAfter < 0 {
			problems = append(problems, "Retry-After is negative")
		}
	case FaultReset:
		if f.ResetAfter < 0 {
			problems = append(problems, "reset after a negative number of bytes")
		}
	case FaultTruncatedMultipart:
		if f.Parts < 0 {
			problems = append(problems, "truncated after a negative number of parts")
		}
	case FaultOmitInstance:
		if !validUID(f.SOPInstanceUID) {
			problems = append(problems, fmt.Sprintf("instance to omit %q is not a valid UID", f.SOPInstanceUID))
		}
	case FaultActiveContent, FaultRelabel:
		if f.ContentType == "" {
			problems = append(problems, "active content has no content type")
		}
	case FaultOversized:
		if f.Size <= 0 {
			problems = append(problems, "oversized answer of no size")
		}
	case FaultHang, FaultTruncatedJSON, FaultNotDICOMJSON, FaultWrongContentType, FaultDuplicateParts,
		FaultActiveParts, FaultHostileHeaders, FaultInternalURLs:
	default:
		problems = append(problems, fmt.Sprintf("mode %d is not a FaultMode", f.Mode))
	}
	for _, k := range f.Kinds {
		if !k.known() {
			problems = append(problems, fmt.Sprintf("kind %q is not a RequestKind", k))
		}
	}
	if fl := f.Flap; fl != nil {
		byCount := fl.FailRequests != 0 || fl.WorkRequests != 0
		byTime := fl.Fail != 0 || fl.Work != 0
		switch {
		case byCount && byTime:
			problems = append(problems, "flap counts both requests and time; set one pair")
		case fl.FailRequests < 0 || fl.WorkRequests < 0 || fl.Fail < 0 || fl.Work < 0:
			problems = append(problems, "flap phase is negative")
		case !byCount && !byTime:
			problems = append(problems, "flap has no phases; set Fail and Work, or FailRequests and WorkRequests")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("check fault %s: %s", f, strings.Join(problems, "; "))
	}
	return nil
}

func (k RequestKind) known() bool {
	switch k {
	case KindSearch, KindRetrieve, KindMetadata, KindFrames, KindBulk, KindRendered, KindThumbnail, KindOther:
		return true
	}
	return false
}

// String describes f in words, as the demo prints it.
func (f Fault) String() string {
	var s string
	switch f.Mode {
	case FaultLatency:
		s = "latency " + f.Delay.String()
	case FaultHang:
		s = "hang (never answer)"
	case FaultStatus:
		s = "HTTP " + strconv.Itoa(f.Status)
		if f.RetryAfter > 0 {
			s += " with Retry-After: " + strconv.FormatInt(retryAfterSeconds(f.RetryAfter), 10)
		}
	case FaultReset:
		s = fmt.Sprintf("connection reset after %d body bytes", f.ResetAfter)
	case FaultTruncatedMultipart:
		s = "multipart without its closing delimiter"
		if f.Parts > 0 {
			s = fmt.Sprintf("multipart cut after %d parts, without its closing delimiter", f.Parts)
		}
	case FaultTruncatedJSON:
		s = "answer cut in half (JSON that never closes)"
	case FaultNotDICOMJSON:
		s = `{"not":"dicom"} as DICOM JSON`
	case FaultWrongContentType:
		s = "an HTML sign-in page instead of DICOMweb"
	case FaultDuplicateParts:
		s = "every multipart part sent twice"
	case FaultOmitInstance:
		s = "instance " + f.SOPInstanceUID + " left out of retrieves"
	case FaultActiveContent:
		s = "script served as " + f.ContentType
	case FaultActiveParts:
		s = "multipart answer of HTML parts with a script"
	case FaultHostileHeaders:
		s = "Set-Cookie, WWW-Authenticate, CORS and internal URLs in headers"
	case FaultInternalURLs:
		s = "internal URLs planted in DICOM JSON"
	case FaultOversized:
		s = fmt.Sprintf("DICOM JSON of %d bytes", f.Size)
	case FaultRelabel:
		s = "the real answer labelled " + f.ContentType
	default:
		s = "fault mode " + strconv.Itoa(int(f.Mode))
	}
	if len(f.Kinds) > 0 {
		kinds := make([]string, len(f.Kinds))
		for i, k := range f.Kinds {
			kinds[i] = string(k)
		}
		s += " on " + strings.Join(kinds, ", ")
	}
	if fl := f.Flap; fl != nil {
		if fl.FailRequests != 0 || fl.WorkRequests != 0 {
			s += fmt.Sprintf(", flapping: for %d requests, then not for %d", fl.FailRequests, fl.WorkRequests)
		} else {
			s += fmt.Sprintf(", flapping: for %s, then not for %s", fl.Fail, fl.Work)
		}
	}
	return s
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, int64((d+time.Second-1)/time.Second))
}

// faultState is a trust's faults and the listeners it serves on.
type faultState struct {
	set atomic.Pointer[faultSet]

	mu        sync.Mutex // serialises changes to the set, refusing and endpoints
	refusing  atomic.Bool
	endpoints map[*endpoint]struct{}
}

// faultSet is the faults in force from one SetFaults call to the next. Its changed channel
// is closed when it is replaced, which ends every wait of a request it was delaying.
type faultSet struct {
	faults  []*activeFault
	changed chan struct{}
}

// activeFault is a fault in force, with what its flapping needs.
type activeFault struct {
	Fault
	since time.Time    // when it was set, by its flap's clock
	seen  atomic.Int64 // requests of its kinds since it was set
}

func newFaultSet(faults []Fault) *faultSet {
	set := &faultSet{changed: make(chan struct{})}
	for _, f := range faults {
		f.Kinds = slices.Clone(f.Kinds)
		af := &activeFault{Fault: f}
		if f.Flap != nil {
			fl := *f.Flap
			af.Flap = &fl
			af.since = fl.now()
		}
		set.faults = append(set.faults, af)
	}
	return set
}

func (fl *Flap) now() time.Time {
	if fl.Clock != nil {
		return fl.Clock()
	}
	return time.Now()
}

// decide returns how long a request of the kind waits, and the fault that answers it (nil
// for the trust's real answer). It counts the request for every flapping fault of its kind.
func (s *faultSet) decide(kind RequestKind) (delay time.Duration, answer *activeFault) {
	for _, f := range s.faults {
		if len(f.Kinds) > 0 && !slices.Contains(f.Kinds, kind) {
			continue
		}
		if !f.failing() {
			continue
		}
		switch {
		case f.Mode == FaultLatency:
			delay += f.Delay
		case answer == nil:
			answer = f
		}
	}
	return delay, answer
}

// failing reports whether a request now falls in the fault's failing phase.
func (f *activeFault) failing() bool {
	fl := f.Flap
	switch {
	case fl == nil:
		return true
	case fl.FailRequests != 0 || fl.WorkRequests != 0:
		n := f.seen.Add(1) - 1
		return n%int64(fl.FailRequests+fl.WorkRequests) < int64(fl.FailRequests)
	}
	elapsed := max(0, fl.now().Sub(f.since))
	return elapsed%(fl.Fail+fl.Work) < fl.Fail
}

// waitResult says how a wait ended.
type waitResult int

const (
	waitElapsed   waitResult = iota // the time passed
	waitCancelled                   // the request's context ended
	waitChanged                     // the faults changed
)

// forever is the wait of a hung request.
const forever time.Duration = -1

// wait waits d (or forever), until the request's context ends or the faults change.
func (s *faultSet) wait(ctx context.Context, d time.Duration) waitResult {
	var elapsed <-chan time.Time
	switch {
	case d == 0:
		return waitElapsed
	case d != forever:
		timer := time.NewTimer(d)
		defer timer.Stop()
		elapsed = timer.C
	}
	select {
	case <-elapsed:
		return waitElapsed
	case <-ctx.Done():
		return waitCancelled
	case <-s.changed:
		return waitChanged
	}
}

// SetFaults replaces the trust's faults with these, at once, while it serves: every request
// waiting on a latency or a hang is released and handled anew under the new faults, and
// flapping starts again with its failing phase. With no faults the trust answers normally.
// The first fault (in order) whose kinds and phase match a request decides its answer;
// latencies all add up before it. SetFaults leaves refused connections as they are, and it
// panics if a fault is invalid (see Fault.Validate), as regexp.MustCompile does.
func (t *Trust) SetFaults(faults ...Fault) {
	for _, f := range faults {
		if err := f.Validate(); err != nil {
			panic(fmt.Sprintf("pacssim: set faults of trust %s: %v", t.ID, err))
		}
	}
	t.faults.mu.Lock()
	defer t.faults.mu.Unlock()
	old := t.faults.set.Swap(newFaultSet(faults))
	close(old.changed)
}

// ClearFaults removes every fault, releasing hung requests, and accepts connections again
// if the trust was refusing them. It returns an error only if a listener could not be
// opened again.
func (t *Trust) ClearFaults() error {
	t.SetFaults()
	return t.AcceptConnections()
}

// serveWithFaults handles a counted request under the trust's faults.
func (t *Trust) serveWithFaults(w http.ResponseWriter, r *http.Request, kind RequestKind) {
	if t.faults.refusing.Load() {
		// A request that still gets here came through Handler on a listener the trust does
		// not own; refuse it as well as this level can.
		resetConnection(w)
		return
	}
	for {
		set := t.faults.set.Load()
		delay, answer := set.decide(kind)
		switch set.wait(r.Context(), delay) {
		case waitCancelled:
			return
		case waitChanged:
			continue
		}
		if answer != nil && answer.Mode == FaultHang {
			switch set.wait(r.Context(), forever) {
			case waitCancelled:
				return
			case waitChanged:
				continue
			}
		}
		t.answer(w, r, answer)
		return
	}
}

// answer sends the trust's real answer as the fault (nil for none) has it.
func (t *Trust) answer(w http.ResponseWriter, r *http.Request, f *activeFault) {
	next := *t.chain.Load()
	if f == nil {
		next.ServeHTTP(w, r)
		return
	}
	switch f.Mode {
	case FaultStatus:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(f.RetryAfter), 10))
		}
		writeError(w, r, f.Status, "%s (a fault injected by pacssim)", http.StatusText(f.Status))
	case FaultReset:
		rw := &resetWriter{ResponseWriter: w, left: f.ResetAfter}
		next.ServeHTTP(rw, r)
		rw.reset()
	case FaultTruncatedMultipart:
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), truncationKey{}, f.Parts)))
	case FaultDuplicateParts, FaultOmitInstance:
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), partFaultKey{}, f.Fault)))
	case FaultTruncatedJSON:
		sendEdited(w, r, next, func(_ int, body []byte) []byte { return body[:len(body)/2] })
	case FaultNotDICOMJSON:
		writeBody(w, "application/dicom+json", `{"not":"dicom"}`)
	case FaultWrongContentType:
		writeBody(w, "text/html; charset=utf-8",
			"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"+
				"<body><form method=\"post\" action=\"/login\"><p>Please sign in to continue.</p></form></body></html>\n")
	case FaultActiveContent, FaultActiveParts, FaultHostileHeaders, FaultInternalURLs, FaultOversized, FaultRelabel:
		t.answerHostile(w, r, f, next)
	default:
		next.ServeHTTP(w, r)
	}
}

// sendEdited sends the real answer, recorded whole, with its body changed by edit (given the
// status) and a Content-Length to match.
func sendEdited(w http.ResponseWriter, r *http.Request, next http.Handler, edit func(status int, body []byte) []byte) {
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	next.ServeHTTP(rec, r)
	body := edit(rec.status, rec.body.Bytes())
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.status)
	_, _ = w.Write(body)
}

func writeBody(w http.ResponseWriter, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(body))
}

// truncationKey carries FaultTruncatedMultipart's part count in a request's context to
// the multipart writer.
type truncationKey struct{}

// truncationOf returns how many parts a multipart answer may send (0: all) and whether it
// must go without its closing delimiter.
func truncationOf(ctx context.Context) (parts int, truncated bool) {
	parts, truncated = ctx.Value(truncationKey{}).(int)
	return parts, truncated
}

// partFaultKey carries FaultDuplicateParts or FaultOmitInstance in a request's context to
// the retrieve handler and the multipart writer.
type partFaultKey struct{}

// duplicatesParts reports whether multipart answers to the request send each part twice.
func duplicatesParts(ctx context.Context) bool {
	f, ok := ctx.Value(partFaultKey{}).(Fault)
	return ok && f.Mode == FaultDuplicateParts
}

// omittedInstance returns the SOP instance UID that retrieves must leave out, or "".
func omittedInstance(ctx context.Context) string {
	if f, ok := ctx.Value(partFaultKey{}).(Fault); ok && f.Mode == FaultOmitInstance {
		return f.SOPInstanceUID
	}
	return ""
}

// errTruncated stops a multipart answer that a fault truncates.
var errTruncated = errors.New("multipart answer truncated by an injected fault")

// errConnectionReset is what writes return once FaultReset has reset the connection.
var errConnectionReset = errors.New("connection reset by an injected fault")

// resetWriter passes the first left bytes of the body through, then resets the connection.
type resetWriter struct {
	http.ResponseWriter
	left int64
	done bool
}

func (rw *resetWriter) Write(p []byte) (int, error) {
	if rw.done {
		return 0, errConnectionReset
	}
	if int64(len(p)) <= rw.left {
		n, err := rw.ResponseWriter.Write(p)
		rw.left -= int64(n)
		return n, err
	}
	n, err := rw.ResponseWriter.Write(p[:rw.left])
	rw.left -= int64(n)
	if err != nil {
		return n, err
	}
	rw.reset()
	return n, errConnectionReset
}

// FlushError flushes until the reset, and fails after it: the connection is gone.
func (rw *resetWriter) FlushError() error {
	if rw.done {
		return errConnectionReset
	}
	return http.NewResponseController(rw.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (rw *resetWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// reset sends what has been written and resets the connection, once.
func (rw *resetWriter) reset() {
	if rw.done {
		return
	}
	rw.done = true
	_ = http.NewResponseController(rw.ResponseWriter).Flush()
	resetConnection(rw.ResponseWriter)
}

// resetConnection takes the connection from the server and closes it with SO_LINGER 0, so
// the client gets a TCP RST. Where the connection cannot be taken (HTTP/2), it aborts the
// handler instead, which the server answers by dropping the stream.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	nc := conn
	if u, ok := conn.(interface{ NetConn() net.Conn }); ok { // TLS
		nc = u.NetConn()
	}
	if tcp, ok := nc.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

// recorder keeps an answer to be sent otherwise. Flushing it is not supported, which the
// multipart writer tolerates.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (rec *recorder) Header() http.Header { return rec.header }

func (rec *recorder) WriteHeader(status int) {
	if !rec.wrote {
		rec.status, rec.wrote = status, true
	}
}

func (rec *recorder) Write(p []byte) (int, error) {
	rec.wrote = true
	return rec.body.Write(p)
}

// endpoint is a listener address the trust serves on, kept so that refusing connections can
// close it and accepting them again can reopen the same address.
type endpoint struct {
	network, addr string
	srv           *http.Server  // nil while refusing or stopped
	done          chan struct{} // closed when srv's Serve has returned
}

// Start listens on addr (such as "127.0.0.1:0" for a free loopback port) and serves the
// trust there until stop is called. url is the server's root, like httptest.Server.URL; the
// DICOMweb root is url + "/dicom-web". Only a trust served with Start or Serve can refuse
// connections for real.
func (t *Trust) Start(addr string) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("start trust %s: %w", t.ID, err)
	}
	url = "http://" + ln.Addr().String()
	return url, t.Serve(ln), nil
}

// Serve serves the trust on ln, in the background, until stop is called; stop closes the
// listener and every connection, and waits for the server to return (requests it was
// handling see their context end). If the trust is refusing connections, ln is closed at
// once and its address opened again by AcceptConnections.
func (t *Trust) Serve(ln net.Listener) (stop func()) {
	fs := &t.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	ep := &endpoint{network: ln.Addr().Network(), addr: ln.Addr().String()}
	fs.endpoints[ep] = struct{}{}
	if fs.refusing.Load() {
		_ = ln.Close()
	} else {
		t.serveOn(ep, ln)
	}
	return sync.OnceFunc(func() {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		delete(fs.endpoints, ep)
		ep.close()
	})
}

// serveOn starts serving ep on ln. The caller holds t.faults.mu.
func (t *Trust) serveOn(ep *endpoint, ln net.Listener) {
	ep.srv = &http.Server{Handler: t.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ep.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(ep.srv, ep.done)
}

// close stops ep's server, if it runs: its listener and connections close at once.
func (ep *endpoint) close() {
	if ep.srv == nil {
		return
	}
	_ = ep.srv.Close()
	<-ep.done
	ep.srv, ep.done = nil, nil
}

// RefuseConnections makes the trust refuse connections, like a PACS whose process has died:
// the listeners opened by Start and Serve close, so connecting gets ECONNREFUSED, and open
// connections close with whatever they were doing. A request that reaches the trust some
// other way (its Handler mounted elsewhere) has its connection reset. Faults set with
// SetFaults are kept for when connections are accepted again.
func (t *Trust) RefuseConnections() {
	fs := &t.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.refusing.Swap(true) {
		return
	}
	for ep := range fs.endpoints {
		ep.close()
	}
}

// AcceptConnections undoes RefuseConnections, opening every listener again on the address
// it had. It returns an error naming the addresses that could not be opened (another
// process may have taken the port meanwhile).
func (t *Trust) AcceptConnections() error {
	fs := &t.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !fs.refusing.Swap(false) {
		return nil
	}
	var errs []error
	for ep := range fs.endpoints {
		ln, err := net.Listen(ep.network, ep.addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("reopen trust %s on %s: %w", t.ID, ep.addr, err))
			continue
		}
		t.serveOn(ep, ln)
	}
	return errors.Join(errs...)
}

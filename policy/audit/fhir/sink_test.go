package fhir

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	r4 "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/nirproxy/nirproxy/policy/audit"
)

// received is one request the fake PARS received.
type received struct {
	method, path, auth, contentType string
	id                              string // the AuditEvent's id
	valid                           error  // the body checked as R4
}

// fakePARS is a FHIR server that takes AuditEvents and keeps one per id. answer, when set,
// decides the status of the nth request (from 1); otherwise a new id is 201 and one it holds
// is 409.
type fakePARS struct {
	mu       sync.Mutex
	requests []received
	held     map[string]bool
	answer   func(n int) (status int, retryAfter string)
}

func (f *fakePARS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	got := received{method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type")}
	got.valid = checkR4(body)
	if ae, err := r4.UnmarshalAuditEvent(body); err == nil && ae.Id != nil {
		got.id = *ae.Id
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, got)
	status := http.StatusCreated
	if f.held[got.id] {
		status = http.StatusConflict
	}
	if f.answer != nil {
		var after string
		status, after = f.answer(len(f.requests))
		if after != "" {
			w.Header().Set("Retry-After", after)
		}
	}
	if status/100 == 2 {
		f.held[got.id] = true
	}
	w.Header().Set("Content-Type", MediaType)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"patient `+nhsNumber+`"}]}`)
}

// setAnswer sets answer, under the lock the handler reads it under.
func (f *fakePARS) setAnswer(answer func(n int) (status int, retryAfter string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer = answer
}

// heldCount is how many records the server holds.
func (f *fakePARS) heldCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.held)
}

// received are the requests so far.
func (f *fakePARS) received() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.requests...)
}

// newPARS starts a fake PARS and a Sink that sends to it with a bearer token, logging at debug
// level into logs.
func newPARS(t *testing.T, put bool, logs *bytes.Buffer) (*fakePARS, *Sink) {
	t.Helper()
	f := &fakePARS{held: map[string]bool{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, newSink(t, srv.URL+"/fhir/R4/", put, logs)
}

func newSink(t *testing.T, base string, put bool, logs *bytes.Buffer) *Sink {
	t.Helper()
	if logs == nil {
		logs = &bytes.Buffer{}
	}
	token := func(context.Context) (string, error) { return "tok-1", nil }
	s, err := NewSink(SinkOptions{BaseURL: base, Token: token, Put: put, Timeout: 5 * time.Second, Event: testOptions()},
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSinkPosts: an event goes by POST to [base]/AuditEvent as application/fhir+json with the
// bearer token, as a valid R4 AuditEvent carrying its record's id.
func TestSinkPosts(t *testing.T) {
	f, s := newPARS(t, false, nil)
	rec := record(3, "posted")
	if err := s.Send(t.Context(), rec, clinicianRetrieve()); err != nil {
		t.Fatal(err)
	}
	got := f.received()
	if len(got) != 1 {
		t.Fatalf("%d requests, want 1", len(got))
	}
	r := got[0]
	if r.method != http.MethodPost || r.path != "/fhir/R4/AuditEvent" || r.auth != "Bearer tok-1" || r.contentType != MediaType {
		t.Errorf("request %s %s, Authorization %q, Content-Type %q; want POST /fhir/R4/AuditEvent, the bearer token, %s",
			r.method, r.path, r.auth, r.contentType, MediaType)
	}
	if r.valid != nil || r.id != RecordID(rec) {
		t.Errorf("body: id %q (want %q), R4 check: %v", r.id, RecordID(rec), r.valid)
	}
	if s.Name() != "pars" {
		t.Errorf("Name = %q, want pars", s.Name())
	}
}

// TestSinkPuts: with Put, an event is written at [base]/AuditEvent/{id}.
func TestSinkPuts(t *testing.T) {
	f, s := newPARS(t, true, nil)
	rec := record(4, "put")
	if err := s.Send(t.Context(), rec, clinicianRetrieve()); err != nil {
		t.Fatal(err)
	}
	if r := f.received()[0]; r.method != http.MethodPut || r.path != "/fhir/R4/AuditEvent/"+RecordID(rec) || r.id != RecordID(rec) {
		t.Errorf("request %s %s with id %s; want PUT at the record's id", r.method, r.path, r.id)
	}
}

// TestSinkResends: a record sent while PARS is down, then again, then once more after a lost
// answer carries the same id each time, and PARS ends up holding it once: its 409 for the id
// it has counts as delivered.
func TestSinkResends(t *testing.T) {
	f, s := newPARS(t, false, nil)
	var down atomic.Bool
	down.Store(true)
	f.setAnswer(func(n int) (int, string) {
		if down.Load() {
			return http.StatusServiceUnavailable, "30"
		}
		if n == 2 {
			return http.StatusCreated, ""
		}
		return http.StatusConflict, ""
	})
	rec, e := record(5, "resent"), clinicianRetrieve()
	err := s.Send(t.Context(), rec, e)
	var de *DeliveryError
	if !errors.Is(err, ErrRetry) || !errors.As(err, &de) || de.Status != 503 || de.RetryAfter != 30*time.Second {
		t.Fatalf("while down: %v, want ErrRetry with status 503 and a 30 s Retry-After", err)
	}
	down.Store(false)
	for range 2 {
		if err := s.Send(t.Context(), rec, e); err != nil {
			t.Fatalf("once back: %v", err)
		}
	}
	got := f.received()
	for _, r := range got {
		if r.id != got[0].id {
			t.Errorf("ids %q and %q for one record", got[0].id, r.id)
		}
	}
	if len(got) != 3 || f.heldCount() != 1 {
		t.Errorf("%d requests and %d records held, want 3 and 1", len(got), f.heldCount())
	}
}

// TestSinkClassifies: 2xx and 409/412 are delivered; 408, 429 and 5xx may pass (ErrRetry);
// any other 4xx is this record refused (ErrRejected).
func TestSinkClassifies(t *testing.T) {
	cases := []struct {
		status int
		want   error // nil: delivered
	}{
		{200, nil}, {201, nil}, {204, nil}, {409, nil}, {412, nil},
		{400, ErrRejected}, {401, ErrRejected}, {403, ErrRejected}, {404, ErrRejected}, {422, ErrRejected},
		{408, ErrRetry}, {429, ErrRetry}, {500, ErrRetry}, {502, ErrRetry}, {503, ErrRetry}, {504, ErrRetry},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			f, s := newPARS(t, false, nil)
			f.setAnswer(func(int) (int, string) { return tc.status, "" })
			err := s.Send(t.Context(), record(6, "classified"), clinicianRetrieve())
			if tc.want == nil {
				if err != nil {
					t.Errorf("Send = %v, want delivered", err)
				}
				return
			}
			other := map[error]error{ErrRetry: ErrRejected, ErrRejected: ErrRetry}[tc.want]
			if !errors.Is(err, tc.want) || errors.Is(err, other) || !strings.Contains(err.Error(), "HTTP "+strconv.Itoa(tc.status)) {
				t.Errorf("Send = %v, want %v naming the status", err, tc.want)
			}
		})
	}
}

// TestSinkNoAnswer: no server, a cancelled context and a token that cannot be had are all
// failures that may pass.
func TestSinkNoAnswer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	_ = l.Close()
	if err := newSink(t, closed, false, nil).Send(t.Context(), record(7, "refused"), clinicianRetrieve()); !errors.Is(err, ErrRetry) {
		t.Errorf("to a closed port: %v, want ErrRetry", err)
	}

	f, s := newPARS(t, false, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Send(ctx, record(7, "cancelled"), clinicianRetrieve()); !errors.Is(err, ErrRetry) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want ErrRetry and context.Canceled", err)
	}

	s.token = func(context.Context) (string, error) { return "", errors.New("token endpoint down") }
	if err := s.Send(t.Context(), record(7, "no token"), clinicianRetrieve()); !errors.Is(err, ErrRetry) {
		t.Errorf("without a token: %v, want ErrRetry", err)
	}
	if n := len(f.received()); n != 0 {
		t.Errorf("%d requests reached PARS, want none", n)
	}
}

// TestSinkEventsItCannotSend: an event with no patient is not PARS's and is passed over as
// delivered; one PARS would refuse is rejected without being sent, as a permanent error.
func TestSinkEventsItCannotSend(t *testing.T) {
	f, s := newPARS(t, false, nil)
	e := clinicianRetrieve()
	e.PatientID = ""
	if err := s.Send(t.Context(), record(8, "no patient"), e); err != nil {
		t.Errorf("no patient: %v, want nil", err)
	}
	e = clinicianRetrieve()
	e.Organisation = ""
	if err := s.Send(t.Context(), record(8, "no organisation"), e); !errors.Is(err, ErrRejected) || !errors.Is(err, ErrIncomplete) {
		t.Errorf("no organisation: %v, want ErrRejected and ErrIncomplete", err)
	}
	if n := len(f.received()); n != 0 {
		t.Errorf("%d requests reached PARS, want none", n)
	}
}

// TestSinkNamesNoPatient: neither the sink's log lines nor its errors name a patient, even when
// the server's answer does.
func TestSinkNamesNoPatient(t *testing.T) {
	var logs bytes.Buffer
	f, s := newPARS(t, false, &logs)
	statuses := []int{201, 400, 503, 409}
	f.setAnswer(func(n int) (int, string) { return statuses[(n-1)%len(statuses)], "" })
	var errs []string
	send := func(e audit.Event, name string) {
		if err := s.Send(t.Context(), record(9, name), e); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, name := range []string{"a", "b", "c", "d"} {
		send(clinicianRetrieve(), name)
	}
	noPatient, noOrg := clinicianRetrieve(), clinicianRetrieve()
	noPatient.PatientID, noOrg.Organisation = "", ""
	send(noPatient, "e")
	send(noOrg, "f")
	if logs.Len() == 0 || len(errs) != 3 {
		t.Fatalf("logs %q and errors %q: want some of each", logs.String(), errs)
	}
	if all := logs.String() + strings.Join(errs, "\n"); strings.Contains(all, nhsNumber) {
		t.Errorf("the NHS number is in the sink's logs or errors:\n%s", all)
	}
}

// TestNewSink: a base URL that is not http(s) and options without an observer are refused at
// start-up, naming the field.
func TestNewSink(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts SinkOptions
		says string
	}{
		{"no base", SinkOptions{Event: testOptions()}, "BaseURL"},
		{"not http", SinkOptions{BaseURL: "ftp://pars/", Event: testOptions()}, "BaseURL"},
		{"no observer", SinkOptions{BaseURL: "https://pars/FHIR/R4"}, "Observer"},
		{"no timeout: the package has no defaults", SinkOptions{BaseURL: "https://pars/FHIR/R4", Event: testOptions()}, "Timeout"},
	} {
		if _, err := NewSink(tc.opts, nil); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.says)
		}
	}
	s, err := NewSink(SinkOptions{Name: "pars-test", BaseURL: "https://pars/FHIR/R4/", Timeout: time.Second, Event: testOptions()}, nil)
	if err != nil || s.Name() != "pars-test" || s.endpoint != "https://pars/FHIR/R4/AuditEvent" {
		t.Errorf("NewSink = %+v, %v", s, err)
	}
}

// TestRetryAfter: seconds and HTTP dates; anything else is no wait.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 30, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "-1": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}

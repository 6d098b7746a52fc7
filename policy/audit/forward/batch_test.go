package forward

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
)

// waitLag waits until the spool's persisted lag of the sink is want.
func waitLag(t *testing.T, lag func(string) uint64, sink string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for lag(sink) != want {
		if time.Now().After(deadline) {
			t.Fatalf("lag of %s = %d; want %d", sink, lag(sink), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatchedAckCrashResendsOnlyTheUnpersisted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	sp := openSpoolIn(t, dir, time.Now)
	appendEvents(t, sp, 0, 7)
	s := newSink("pars")
	// AckEvery 3 and an AckInterval no test outlasts: the cursor is written after records 3 and
	// 6, and record 7 waits for its acknowledgement to be persisted.
	_, stop := start(t, sp, []Sink{s}, Options{Sleep: noSleep, AckEvery: 3, AckInterval: time.Hour})
	s.waitStored(t, 7)
	waitLag(t, sp.Lag, "pars", 1)

	// A crash now leaves the disk as it is: a copy of it is what nirproxy restarts on.
	crashed := filepath.Join(t.TempDir(), "crashed")
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	stop()
	if lag := sp.Lag("pars"); lag != 0 {
		t.Errorf("lag after Close = %d; want 0: Close persists what was acknowledged", lag)
	}

	after := openSpoolIn(t, crashed, time.Now)
	if lag := after.Lag("pars"); lag != 1 {
		t.Fatalf("lag after the crash = %d; want 1 (the one unpersisted acknowledgement)", lag)
	}
	_, stop = start(t, after, []Sink{s}, Options{Sleep: noSleep, AckEvery: 3, AckInterval: time.Hour})
	s.waitStored(t, 8)
	stop()
	got, _ := s.received()
	if want := append(requestIDs(0, 7), requestID(6)); !slices.Equal(got, want) {
		t.Errorf("the sink stored %v; want %v: only the record whose acknowledgement was not persisted again", got, want)
	}
	if lag := after.Lag("pars"); lag != 0 {
		t.Errorf("lag after the restart's Close = %d; want 0", lag)
	}
}

func TestAckIntervalPersistsAnIdleSinksAcknowledgement(t *testing.T) {
	sp := openSpool(t, time.Now)
	appendEvents(t, sp, 0, 2)
	s := newSink("pars")
	_, stop := start(t, sp, []Sink{s}, Options{Sleep: noSleep, AckEvery: 1000, AckInterval: 20 * time.Millisecond})
	s.waitStored(t, 2)
	waitLag(t, sp.Lag, "pars", 0) // with no more records and 998 short of AckEvery
	appendEvents(t, sp, 2, 3)
	s.waitStored(t, 3)
	waitLag(t, sp.Lag, "pars", 0)
	stop()
}

func TestInFlightAcksOnlyContiguousRecords(t *testing.T) {
	sp := openSpool(t, time.Now)
	appendEvents(t, sp, 0, 10)
	s := concurrentSink{newSink("pars")}
	release := make(chan struct{})
	s.before = func(ctx context.Context, e audit.Event) error {
		if e.RequestID == requestID(1) { // record 2 is slow
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	fw, stop := start(t, sp, []Sink{s}, Options{Sleep: noSleep, MaxInFlight: 4, AckEvery: 1})
	// Record 1 is taken, then 2 to 5 are in flight: 3, 4 and 5 are taken, and wait for 2.
	s.waitStored(t, 4)
	waitLag(t, sp.Lag, "pars", 9)
	time.Sleep(20 * time.Millisecond)
	if lag := sp.Lag("pars"); lag != 9 {
		t.Errorf("lag = %d while record 2 is in flight; want 9: records 3 to 5 must not be acknowledged before it", lag)
	}
	got, attempts := s.received()
	if want := []string{requestID(0), requestID(2), requestID(3), requestID(4)}; !slices.Equal(sorted(got), want) {
		t.Errorf("stored %v while record 2 is in flight; want %v", got, want)
	}
	if len(attempts) != 5 {
		t.Errorf("sent %v; want 5 records: 1 and the 4 in flight", attempts)
	}
	if st := fw.Status()[0]; !st.Oldest.Equal(recordTime(t, sp, 2)) {
		t.Errorf("Status().Oldest = %v; want the slow record 2's time", st.Oldest)
	}

	close(release)
	s.waitStored(t, 10)
	waitLag(t, sp.Lag, "pars", 0)
	stop()
	if got, _ := s.received(); !slices.Equal(sorted(got), requestIDs(0, 10)) {
		t.Errorf("stored %v; want each of %v once", got, requestIDs(0, 10))
	}
}

func TestRejectionWithRecordsInFlight(t *testing.T) {
	sp := openSpool(t, time.Now)
	appendEvents(t, sp, 0, 8)
	s := concurrentSink{newSink("pars")}
	release := make(chan struct{})
	rejecting := true
	s.before = func(ctx context.Context, e audit.Event) error {
		switch e.RequestID {
		case requestID(1): // record 2, before the rejected one, is slow
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		case requestID(2):
			if rejecting {
				return fmt.Errorf("post AuditEvent: answered 422: %w", ErrRejected)
			}
		}
		return nil
	}
	incidents := make(chan Incident, 10)
	opts := Options{Sleep: noSleep, MaxInFlight: 4, RejectAttempts: 1, AckEvery: 1, Notify: collect(incidents)}
	fw, stop := start(t, sp, []Sink{s}, opts)
	s.waitStored(t, 1) // record 1; 2 is held, 3 rejected, and 4 and 5 perhaps taken
	select {
	case in := <-incidents:
		t.Fatalf("incident %+v while record 2, before the rejected one, is in flight", in)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	in := receive(t, incidents, "the stopped incident")
	if in.Event != IncidentStopped || in.Seq != 3 || in.Lag != 6 {
		t.Errorf("incident = %+v; want %s at record 3 with lag 6 (records 1 and 2 acknowledged)", in, IncidentStopped)
	}
	if st := fw.Status()[0]; st.State != StateStopped || st.StoppedAt != 3 || st.Lag != 6 {
		t.Errorf("Status() = %+v; want stopped at 3 with lag 6", st)
	}
	_, attempts := s.received()
	for _, id := range requestIDs(5, 8) {
		if slices.Contains(attempts, id) {
			t.Errorf("sent %v; want nothing after the records in flight when the sink stopped", attempts)
		}
	}
	stop()

	// Once the sink takes the record, it resumes at it; records after it that it took
	// before it stopped are sent again, which it de-duplicates by id.
	rejecting = false
	_, stop = start(t, sp, []Sink{s}, opts)
	waitLag(t, sp.Lag, "pars", 0)
	stop()
	got, _ := s.received()
	if byID := slices.Compact(sorted(got)); !slices.Equal(byID, requestIDs(0, 8)) {
		t.Errorf("stored %v; want every record at least once", got)
	}
}

// sorted is a sorted copy of ids.
func sorted(ids []string) []string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

// recordTime is when the record seq of sp was appended.
func recordTime(t *testing.T, sp *spool.Spool, seq uint64) time.Time {
	t.Helper()
	var at time.Time
	err := sp.Scan(context.Background(), seq, func(rec spool.Record) bool {
		at = rec.Time
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	return at
}

package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/policy"
)

func TestGuard(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: start}
	l, err := New(testConfig(clock.Now), nil, discard())
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	g := NewGuard(l, slog.New(slog.NewJSONHandler(&logged, nil)))
	p := policy.Principal{Issuer: issuer, Subject: alice, Organisation: orgA, Role: "R8000"}
	search := policy.Action{Kind: "search"}

	t.Run("the user's rate refuses with 429 and when to retry", func(t *testing.T) {
		for i := range 3 {
			if _, err := g.Authorize(ctx, p, search); err != nil {
				t.Fatalf("request %d: %v", i+1, err)
			}
		}
		_, err := g.Authorize(ctx, p, search)
		var r *policy.Refusal
		if !errors.As(err, &r) || r.Status != http.StatusTooManyRequests || r.Rule != RuleUserRate || r.RetryAfter <= 0 || r.RetryAfter > 20*time.Second {
			t.Fatalf("fourth request: %#v, want a 429 of %s retrying within 20s", err, RuleUserRate)
		}
		if !errors.Is(err, policy.ErrLimited) {
			t.Errorf("refusal does not wrap ErrLimited")
		}
	})

	t.Run("the distinct-patient limit refuses a new patient and logs a security event without it", func(t *testing.T) {
		bob := policy.Principal{Issuer: issuer, Subject: bob, Organisation: orgB, Role: "R8000"}
		patients := []string{"9434765870", "9434765889", "9434765897"}
		for _, n := range patients {
			if err := g.AuthorizePatient(ctx, bob, policy.Action{Kind: "retrieve", PatientID: n}); err != nil {
				t.Fatalf("patient within the limit refused: %v", err)
			}
		}
		err := g.AuthorizePatient(ctx, bob, policy.Action{Kind: "retrieve", PatientID: nhsNumber})
		var r *policy.Refusal
		if !errors.As(err, &r) || r.Status != http.StatusTooManyRequests || r.Rule != RulePatients || !strings.Contains(r.Message, "security event") {
			t.Fatalf("fourth patient: %#v, want a 429 of %s", err, RulePatients)
		}
		if err := g.AuthorizePatient(ctx, bob, policy.Action{Kind: "retrieve", PatientID: patients[0]}); err != nil {
			t.Errorf("a patient already opened was refused: %v", err)
		}
		out := logged.String()
		if !strings.Contains(out, "security event") || strings.Count(out, "security event") != 1 {
			t.Errorf("want one security event logged, got %q", out)
		}
		if strings.Contains(out, nhsNumber) || strings.Contains(out, patients[0]) {
			t.Errorf("the log names a patient: %q", out)
		}
	})

	t.Run("an action naming no patient counts none", func(t *testing.T) {
		if err := g.AuthorizePatient(ctx, policy.Principal{Issuer: issuer, Subject: carol, Organisation: orgA}, policy.Action{Kind: "search"}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a caller naming no organisation is refused", func(t *testing.T) {
		_, err := g.Authorize(ctx, policy.Principal{Issuer: issuer, Subject: carol}, search)
		var r *policy.Refusal
		if !errors.As(err, &r) || r.Status != http.StatusForbidden || r.Rule != RuleIdentifiedCaller {
			t.Fatalf("got %#v, want a 403 of %s", err, RuleIdentifiedCaller)
		}
	})
}

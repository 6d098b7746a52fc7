package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// sourceStatus is the part of a GET /status entry the test reads.
type sourceStatus struct {
	ID        string  `json:"id"`
	Breaker   string  `json:"breaker"`
	ErrorRate float64 `json:"recentErrorRate"`
}

// breakerStates asks the proxy's GET /status (on its admin listener) for each source's breaker
// state (closed, open or half-open), by source id.
func (c *chaos) breakerStates(ctx context.Context) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.proxy.AdminURL+"/status", nil)
	if err != nil {
		return nil, fmt.Errorf("build GET /status: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /status: status %d", resp.StatusCode)
	}
	var body struct {
		Sources []sourceStatus `json:"sources"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decode GET /status: %w", err)
	}
	out := make(map[string]string, len(body.Sources))
	for _, s := range body.Sources {
		out[s.ID] = s.Breaker
	}
	return out, nil
}

// waitBreaker polls GET /status until id's breaker is in state want and has stayed so for
// stable, or within has passed. It returns how long the wait took.
func (c *chaos) waitBreaker(ctx context.Context, id, want string, within, stable time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(within)
	var since time.Time
	last, lastErr := "", error(nil)
	for {
		states, err := c.breakerStates(ctx)
		now := time.Now()
		switch {
		case err != nil:
			lastErr, since = err, time.Time{}
		case states[id] == want:
			if since.IsZero() {
				since = now
			}
			if now.Sub(since) >= stable {
				return now.Sub(start), nil
			}
		default:
			last, since = states[id], time.Time{}
		}
		if now.After(deadline) {
			return now.Sub(start), fmt.Errorf("%s's breaker not %s (for %v) within %v: last state %q, last error %v",
				id, want, stable, within, last, lastErr)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// breakerTimeline records every breaker state change GET /status showed, for the test's log.
type breakerTimeline struct {
	mu      sync.Mutex
	changes []breakerChange
}

type breakerChange struct {
	at       time.Time
	id, to   string
	failedAt bool // GET /status itself failed
}

// record polls GET /status every 100 ms until ctx ends, noting changes; the returned channel
// is closed when it has stopped.
func (b *breakerTimeline) record(ctx context.Context, c *chaos) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := map[string]string{}
		for ctx.Err() == nil {
			states, err := c.breakerStates(ctx)
			now := time.Now()
			b.mu.Lock()
			if err != nil && ctx.Err() == nil {
				b.changes = append(b.changes, breakerChange{at: now, failedAt: true, to: err.Error()})
			}
			for id, st := range states {
				if last[id] != st {
					b.changes = append(b.changes, breakerChange{at: now, id: id, to: st})
					last[id] = st
				}
			}
			b.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return done
}

// String lists the changes in seconds from t0.
func (b *breakerTimeline) String(t0 time.Time) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sb strings.Builder
	for _, ch := range b.changes {
		if ch.failedAt {
			fmt.Fprintf(&sb, "  %6.2f  GET /status failed: %s\n", ch.at.Sub(t0).Seconds(), ch.to)
			continue
		}
		fmt.Fprintf(&sb, "  %6.2f  %s %s\n", ch.at.Sub(t0).Seconds(), ch.id, ch.to)
	}
	return sb.String()
}

// faultLog records when each trust was made faulty and when the proxy was seen to have
// recovered from it: the windows in which an answer may name that trust as missing.
type faultLog struct {
	mu      sync.Mutex
	windows []faultWindow
}

type faultWindow struct {
	id       string
	from, to time.Time // to is zero while the fault lasts
}

// begin opens a window for id; call it before the signal is sent.
func (f *faultLog) begin(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.windows = append(f.windows, faultWindow{id: id, from: time.Now()})
}

// end closes id's open window; call it once the proxy shows id recovered.
func (f *faultLog) end(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.windows {
		if f.windows[i].id == id && f.windows[i].to.IsZero() {
			f.windows[i].to = time.Now()
		}
	}
}

// covers reports whether a request that ran from start to end overlapped a fault of id
// (extended by recoveryGrace after its recovery).
func (f *faultLog) covers(id string, start, end time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.windows {
		if w.id != id {
			continue
		}
		if !end.Before(w.from) && (w.to.IsZero() || start.Before(w.to.Add(recoveryGrace))) {
			return true
		}
	}
	return false
}

// faulted lists the trusts that ever had a fault.
func (f *faultLog) faulted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, w := range f.windows {
		if !slices.Contains(out, w.id) {
			out = append(out, w.id)
		}
	}
	return out
}

// String lists the windows in seconds from t0.
func (f *faultLog) String(t0 time.Time) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var sb strings.Builder
	for _, w := range f.windows {
		to := "(not recovered)"
		if !w.to.IsZero() {
			to = fmt.Sprintf("%6.2f", w.to.Sub(t0).Seconds())
		}
		fmt.Fprintf(&sb, "  %s  %6.2f .. %s\n", w.id, w.from.Sub(t0).Seconds(), to)
	}
	return sb.String()
}

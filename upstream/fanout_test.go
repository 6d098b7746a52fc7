package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func sourcesNamed(ids ...string) []*Source {
	out := make([]*Source, len(ids))
	for i, id := range ids {
		out[i] = &Source{SourceConfig: SourceConfig{ID: id, Name: id + " Trust"}}
	}
	return out
}

func TestFanOutOrder(t *testing.T) {
	sources := sourcesNamed("A", "B", "C", "D")
	boom := errors.New("boom")
	// Later sources answer first, so arrival order is the reverse of source order.
	results := FanOut(context.Background(), sources, func(ctx context.Context, s *Source) (string, error) {
		i := slices.Index(sources, s)
		time.Sleep(time.Duration(len(sources)-i) * 10 * time.Millisecond)
		if s.ID == "C" {
			return "", boom
		}
		return "from " + s.ID, nil
	})
	if len(results) != len(sources) {
		t.Fatalf("%d results; want %d", len(results), len(sources))
	}
	for i, r := range results {
		t.Run(sources[i].ID, func(t *testing.T) {
			if r.Source != sources[i] {
				t.Fatalf("result %d is from %s; want %s", i, r.Source.ID, sources[i].ID)
			}
			if r.Duration <= 0 {
				t.Errorf("Duration = %v; want > 0", r.Duration)
			}
			if r.Source.ID == "C" {
				if !r.Failed() || !errors.Is(r.Err, boom) {
					t.Fatalf("C: Failed %v, Err %v; want the source's error", r.Failed(), r.Err)
				}
				return
			}
			if r.Failed() || r.Value != "from "+r.Source.ID {
				t.Fatalf("Value %q, Err %v; want %q", r.Value, r.Err, "from "+r.Source.ID)
			}
		})
	}
}

// TestFanOutParallel checks that every source is called at once: each call waits until all n
// have started, which serial calls never do. The wait is bounded generously, so a busy machine
// cannot fail it, and a serial fan-out fails it instead of hanging.
func TestFanOutParallel(t *testing.T) {
	const wait = 30 * time.Second
	tests := []struct {
		name string
		n    int
		fan  func(ctx context.Context, sources []*Source, fn func(context.Context, *Source) (int, error)) []Result[int]
	}{
		{name: "FanOut 8 sources", n: 8, fan: FanOut[int]},
		{name: "FanOutOpen 8 sources", n: 8, fan: FanOutOpen[int]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ids []string
			for i := range tc.n {
				ids = append(ids, fmt.Sprintf("S%d", i))
			}
			var mu sync.Mutex
			started := 0
			all := make(chan struct{})
			results := tc.fan(context.Background(), sourcesNamed(ids...), func(ctx context.Context, _ *Source) (int, error) {
				mu.Lock()
				started++
				if started == tc.n {
					close(all)
				}
				mu.Unlock()
				select {
				case <-all:
					return 0, nil
				case <-time.After(wait):
					mu.Lock()
					defer mu.Unlock()
					return 0, fmt.Errorf("only %d of %d calls had started after %v: the calls are not made at once", started, tc.n, wait)
				}
			})
			for _, r := range results {
				if r.Err != nil {
					t.Fatalf("%s: %v", r.Source.ID, r.Err)
				}
			}
		})
	}
}

func TestFanOutContext(t *testing.T) {
	type key struct{}
	tests := []struct {
		name          string
		fan           func(ctx context.Context, sources []*Source, fn func(context.Context, *Source) (context.Context, error)) []Result[context.Context]
		wantCancelled bool
	}{
		{name: "FanOut cancels its child context on return", fan: FanOut[context.Context], wantCancelled: true},
		{name: "FanOutOpen leaves the context to the caller", fan: FanOutOpen[context.Context], wantCancelled: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := context.WithValue(context.Background(), key{}, "request")
			results := tc.fan(parent, sourcesNamed("A", "B"), func(ctx context.Context, _ *Source) (context.Context, error) {
				if ctx.Err() != nil {
					return nil, errors.New("context already done during the call")
				}
				return ctx, nil
			})
			for _, r := range results {
				if r.Err != nil {
					t.Fatal(r.Err)
				}
				if r.Value.Value(key{}) != "request" {
					t.Errorf("call context does not descend from the request's")
				}
				if cancelled := r.Value.Err() != nil; cancelled != tc.wantCancelled {
					t.Errorf("call context cancelled after return = %v; want %v", cancelled, tc.wantCancelled)
				}
			}
		})
	}
}

func TestFanOutNoSources(t *testing.T) {
	called := false
	got := FanOut(context.Background(), nil, func(context.Context, *Source) (int, error) {
		called = true
		return 0, nil
	})
	if len(got) != 0 || called {
		t.Fatalf("FanOut over no sources = %v (called %v); want nothing", got, called)
	}
}

func TestByPriority(t *testing.T) {
	tests := []struct {
		name       string
		priorities []int
		want       []string
	}{
		{name: "ties keep configured order", priorities: []int{1, 0, 1, 0, 1}, want: []string{"S1", "S3", "S0", "S2", "S4"}},
		{name: "all equal", priorities: []int{5, 5, 5}, want: []string{"S0", "S1", "S2"}},
		{name: "descending input", priorities: []int{3, 2, 1}, want: []string{"S2", "S1", "S0"}},
		{name: "negative first", priorities: []int{0, -1, 0}, want: []string{"S1", "S0", "S2"}},
		{name: "none", priorities: nil, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in []*Source
			for i, p := range tc.priorities {
				in = append(in, &Source{SourceConfig: SourceConfig{ID: fmt.Sprintf("S%d", i), Priority: p}})
			}
			orig := slices.Clone(in)
			var got []string
			for _, s := range ByPriority(in) {
				got = append(got, s.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ByPriority = %v; want %v", got, tc.want)
			}
			if !slices.Equal(in, orig) {
				t.Fatalf("ByPriority reordered its input")
			}
		})
	}
}

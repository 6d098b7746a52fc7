package upstream

import (
	"context"
	"sort"
	"time"
)

// Outcome is what happened at one source during one client request.
type Outcome struct {
	Source   *Source
	Err      error
	Duration time.Duration
}

// Failed reports whether the source did not answer usefully.
func (o Outcome) Failed() bool { return o.Err != nil }

// Result is a source's outcome and, when it answered, its value.
type Result[T any] struct {
	Outcome
	Value T
}

// FanOut calls fn once per source, all in parallel, and returns the results in the order of
// sources. Each call gets a child of ctx that is cancelled when FanOut returns, so nothing
// outlives the client request. fn must honour its context.
//
// FanOut never fails as a whole: each source's error is in its Result, for the fallback
// package to judge.
func FanOut[T any](ctx context.Context, sources []*Source, fn func(ctx context.Context, s *Source) (T, error)) []Result[T] {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return fanOut(ctx, sources, fn)
}

// FanOutOpen is FanOut for calls whose results outlive it, such as open response bodies that
// are read after every source has answered: the calls run under ctx itself, which the caller
// cancels (typically the client request's context).
func FanOutOpen[T any](ctx context.Context, sources []*Source, fn func(ctx context.Context, s *Source) (T, error)) []Result[T] {
	return fanOut(ctx, sources, fn)
}

func fanOut[T any](ctx context.Context, sources []*Source, fn func(ctx context.Context, s *Source) (T, error)) []Result[T] {
	type indexed struct {
		i int
		r Result[T]
	}
	ch := make(chan indexed, len(sources))
	for i, s := range sources {
		go func() {
			start := time.Now()
			v, err := fn(ctx, s)
			ch <- indexed{i: i, r: Result[T]{Outcome: Outcome{Source: s, Err: err, Duration: time.Since(start)}, Value: v}}
		}()
	}
	out := make([]Result[T], len(sources))
	for range sources {
		r := <-ch
		out[r.i] = r.r
	}
	return out
}

// ByPriority returns the sources ordered by preference: priority ascending, then the order
// they were configured in.
func ByPriority(sources []*Source) []*Source {
	out := append([]*Source(nil), sources...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority < out[j].Priority })
	return out
}

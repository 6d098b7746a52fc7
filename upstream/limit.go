package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// ErrBusy is returned when a source's concurrency limit is reached and no slot freed up before
// the request's deadline.
var ErrBusy = errors.New("every connection to it is in use")

// limitClient bounds the requests in flight to one source, so one slow trust cannot hold every
// connection and goroutine of the proxy. A request waits for a slot until its context ends or
// maxWait passes (a retrieve's context has no deadline: it streams as long as it takes, but
// must not queue for ever behind other streams). A fetch holds its slot until its body is
// closed.
type limitClient struct {
	next    Client
	id      string
	slots   chan struct{}
	maxWait time.Duration
}

func (l *limitClient) acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	timer := time.NewTimer(l.maxWait)
	defer timer.Stop()
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-timer.C:
		return &TransportError{Source: l.id, Err: fmt.Errorf("wait %v for a connection: %w", l.maxWait, ErrBusy)}
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) {
			return ctx.Err()
		}
		return &TransportError{Source: l.id, Err: fmt.Errorf("wait for a connection: %w", ErrBusy)}
	}
}

func (l *limitClient) release() { <-l.slots }

func (l *limitClient) Search(ctx context.Context, path string, query url.Values) ([]dcmjson.Dataset, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	defer l.release()
	return l.next.Search(ctx, path, query)
}

func (l *limitClient) Fetch(ctx context.Context, path string, query url.Values, accept string) (*http.Response, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	resp, err := l.next.Fetch(ctx, path, query, accept)
	if err != nil {
		l.release()
		return nil, err
	}
	resp.Body = &closeHook{ReadCloser: resp.Body, ctx: ctx, onClose: func(error) { l.release() }}
	return resp, nil
}

package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Incident is an event operators must hear about: a trust's circuit breaker opening (the trust
// is now left out of every answer) or closing again.
type Incident struct {
	Event      string `json:"event"` // circuit_open, circuit_half_open, circuit_closed
	Source     string `json:"source"`
	SourceName string `json:"sourceName"`
	From       string `json:"from"`
	To         string `json:"to"`
	// Failure is the source's last failure; the webhook words it as Reason.
	Failure *Failure  `json:"-"`
	Reason  string    `json:"reason,omitempty"` // the last failure, identifier-free
	Time    time.Time `json:"time"`
}

// Notifier escalates incidents. Notify must not block: it is called from the breaker's state
// change, under the breaker's lock.
type Notifier interface {
	Notify(Incident)
}

// Webhook POSTs incidents as JSON to a URL, in the background, retrying failed deliveries.
// Incidents that arrive while the queue is full are dropped and logged: a flood of state
// changes must never slow a clinician's request.
type Webhook struct {
	url     string
	client  *http.Client
	retries int
	backoff time.Duration
	log     *slog.Logger
	// describe words a failure for operators (fallback.Reason).
	describe func(Failure) string
	queue    chan Incident
	wg       sync.WaitGroup
	stop     context.CancelFunc
	ctx      context.Context
}

// NewWebhook starts a webhook sender. Close stops it after trying to deliver what is queued.
// describe words an incident's failure as its reason (fallback.Reason); nil sends none.
func NewWebhook(url string, timeout time.Duration, retries int, describe func(Failure) string, log *slog.Logger) *Webhook {
	ctx, stop := context.WithCancel(context.Background())
	w := &Webhook{
		url:      url,
		client:   &http.Client{Timeout: timeout, CheckRedirect: noRedirects},
		retries:  retries,
		backoff:  500 * time.Millisecond,
		log:      log,
		describe: describe,
		queue:    make(chan Incident, 256),
		stop:     stop,
		ctx:      ctx,
	}
	w.wg.Add(1)
	go w.run()
	return w
}

// Notify implements Notifier.
func (w *Webhook) Notify(in Incident) {
	select {
	case w.queue <- in:
	default:
		w.log.Error("incident webhook queue full; incident dropped from the webhook (it is in the log)", "source", in.Source, "event", in.Event)
	}
}

// Close stops the sender, waiting for the queue to drain or for ctx to end.
func (w *Webhook) Close(ctx context.Context) {
	close(w.queue)
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		w.stop()
		<-done
	}
}

func (w *Webhook) run() {
	defer w.wg.Done()
	for in := range w.queue {
		w.deliver(in)
	}
}

func (w *Webhook) deliver(in Incident) {
	if in.Failure != nil && w.describe != nil {
		in.Reason = w.describe(*in.Failure)
	}
	body, _ := json.Marshal(in)
	var err error
	for attempt := 0; attempt <= w.retries; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(w.backoff << (attempt - 1)):
			case <-w.ctx.Done():
				return
			}
		}
		if err = w.post(body); err == nil {
			return
		}
	}
	w.log.Error("incident webhook delivery failed", "source", in.Source, "event", in.Event, "attempts", w.retries+1, "err", err)
}

func (w *Webhook) post(body []byte) error {
	req, err := http.NewRequestWithContext(w.ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

// incidentEvent names the event of a breaker moving to state to.
func incidentEvent(to string) string {
	switch to {
	case "open":
		return "circuit_open"
	case "half-open":
		return "circuit_half_open"
	}
	return "circuit_closed"
}

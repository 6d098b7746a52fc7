package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/policy/audit/fhir"
	"github.com/nirproxy/nirproxy/policy/audit/forward"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
	"github.com/nirproxy/nirproxy/upstream"
)

// startForwarder delivers the audit spool's records to the sinks cfg configures (PARS), in the
// background, raising its incidents on webhook (when not nil); nil when no sink is configured.
// Close the Forwarder before the spool.
func startForwarder(cfg config.Config, sp *spool.Spool, reg prometheus.Registerer, webhook *upstream.Webhook, log *slog.Logger) (*forward.Forwarder, error) {
	if cfg.Audit.PARS.URL == "" {
		return nil, nil
	}
	so, err := cfg.PARSSink(cis2Issuers(cfg))
	if err != nil {
		return nil, fmt.Errorf("configure the PARS sink: %w", err)
	}
	sink, err := fhir.NewSink(so, log)
	if err != nil {
		return nil, fmt.Errorf("configure the PARS sink: %w", err)
	}
	opts := cfg.Audit.ForwardOptions(time.Now)
	opts.Metrics = forward.NewMetrics(reg)
	if webhook != nil {
		// The webhook queues: Notify never holds up the sink for a delivery.
		opts.Notify = func(_ context.Context, in forward.Incident) {
			webhook.Notify(upstream.Incident{Event: in.Event, Source: in.Sink, Reason: in.Reason, Time: in.Time})
		}
	}
	fw, err := forward.New(sp, []forward.Sink{sink}, opts, log)
	if err != nil {
		return nil, fmt.Errorf("start forwarding the audit record: %w", err)
	}
	go func() {
		if err := fw.Run(context.Background()); err != nil {
			log.Error("audit forwarding stopped", "err", err)
		}
	}()
	return fw, nil
}

// forwardStatus answers GET /status/audit on the admin listener: each sink's state and lag.
func forwardStatus(fw *forward.Forwarder) echo.HandlerFunc {
	return func(c *echo.Context) error {
		var sinks []forward.Status
		if fw != nil {
			sinks = fw.Status()
		}
		return c.JSON(http.StatusOK, map[string]any{"sinks": sinks})
	}
}

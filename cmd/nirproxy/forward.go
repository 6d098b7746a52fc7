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
	"github.com/nirproxy/nirproxy/policy/audit/dicomaudit"
	"github.com/nirproxy/nirproxy/policy/audit/fhir"
	"github.com/nirproxy/nirproxy/policy/audit/forward"
	"github.com/nirproxy/nirproxy/policy/audit/spool"
	"github.com/nirproxy/nirproxy/upstream"
)

// forwarding is the audit record's delivery: the Forwarder and the sinks it must close.
type forwarding struct {
	*forward.Forwarder
	atna *dicomaudit.Sink
}

// Close stops the delivery, then the ATNA sink's connection.
func (f *forwarding) Close() error {
	err := f.Forwarder.Close()
	if f.atna != nil {
		f.atna.Close()
	}
	return err
}

// auditSinks are the sinks cfg configures: PARS (FHIR AuditEvents) and an ATNA repository
// (DICOM audit messages over TLS syslog), each when its address is set; atna is the latter.
func auditSinks(cfg config.Config, log *slog.Logger) (sinks []forward.Sink, atna *dicomaudit.Sink, err error) {
	if cfg.Audit.PARS.URL != "" {
		so, err := cfg.PARSSink(cis2Issuers(cfg))
		if err != nil {
			return nil, nil, fmt.Errorf("configure the PARS sink: %w", err)
		}
		pars, err := fhir.NewSink(so, log)
		if err != nil {
			return nil, nil, fmt.Errorf("configure the PARS sink: %w", err)
		}
		sinks = append(sinks, pars)
	}
	if cfg.Audit.ATNA.Address != "" {
		if atna, err = dicomaudit.NewSink(cfg.ATNASink(), log); err != nil {
			return nil, nil, fmt.Errorf("configure the ATNA sink: %w", err)
		}
		sinks = append(sinks, atna)
	}
	return sinks, atna, nil
}

// startForwarder delivers the audit spool's records to the sinks cfg configures, in the
// background, raising its incidents on webhook (when not nil); nil when no sink is configured.
// Close it before the spool.
func startForwarder(cfg config.Config, sp *spool.Spool, reg prometheus.Registerer, webhook *upstream.Webhook, log *slog.Logger) (*forwarding, error) {
	sinks, atna, err := auditSinks(cfg, log)
	if err != nil || len(sinks) == 0 {
		return nil, err
	}
	opts := cfg.Audit.ForwardOptions(time.Now)
	opts.Metrics = forward.NewMetrics(reg)
	if webhook != nil {
		// The webhook queues: Notify never holds up the sink for a delivery.
		opts.Notify = func(_ context.Context, in forward.Incident) {
			webhook.Notify(upstream.Incident{Event: in.Event, Source: in.Sink, Reason: in.Reason, Time: in.Time})
		}
	}
	fw, err := forward.New(sp, sinks, opts, log)
	if err != nil {
		if atna != nil {
			atna.Close()
		}
		return nil, fmt.Errorf("start forwarding the audit record: %w", err)
	}
	go func() {
		if err := fw.Run(context.Background()); err != nil {
			log.Error("audit forwarding stopped", "err", err)
		}
	}()
	return &forwarding{Forwarder: fw, atna: atna}, nil
}

// forwardStatus answers GET /status/audit on the admin listener: each sink's state and lag.
func forwardStatus(fw *forwarding) echo.HandlerFunc {
	return func(c *echo.Context) error {
		var sinks []forward.Status
		if fw != nil {
			sinks = fw.Status()
		}
		return c.JSON(http.StatusOK, map[string]any{"sinks": sinks})
	}
}

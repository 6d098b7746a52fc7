package dicomweb

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/upstream"
)

// health asks fallback how the service stands, from every source's state.
func (s *Server) health() fallback.Health {
	sources := s.locator.Sources()
	states := make([]upstream.Status, len(sources))
	for i, src := range sources {
		states[i] = src.Status()
	}
	return fallback.Assess(states)
}

// ready answers GET /readyz: ready unless no data request could be answered: the audit record
// cannot be written (every answer would be refused, hazard H15), or fallback judges every
// source's breaker open.
func (s *Server) ready(c *echo.Context) error {
	if err := s.audit.Healthy(); err != nil {
		s.log.Warn("not ready: the audit record cannot be written", "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Message: "the audit record cannot be written"}
	}
	if !s.health().Ready {
		return &Error{Status: http.StatusServiceUnavailable, Message: "every source's circuit breaker is open"}
	}
	return c.String(http.StatusOK, "ready\n")
}

// Status answers GET /status: the service's health as fallback judges it, each source's
// breaker state, recent error rate and latency, and the cache's backend and whether it is in
// use (null when there is no cache), for operators. It carries no patient data, but names the
// trusts and their state, so Register does not mount it: the deployment serves it where only
// operators reach it (cmd/nirproxy's admin listener).
func (s *Server) Status(c *echo.Context) error {
	type cacheState struct {
		Backend   string `json:"backend"`
		Available bool   `json:"available"`
	}
	type body struct {
		Status  string                  `json:"status"`
		Time    string                  `json:"time"`
		Cache   *cacheState             `json:"cache"`
		Sources []fallback.SourceHealth `json:"sources"`
	}
	h := s.health()
	b := body{Status: h.Status, Time: s.now().UTC().Format(time.RFC3339), Sources: h.Sources}
	if s.cache != nil {
		// A cache that is down degrades speed, not answers: the status stays as the
		// sources make it.
		name, up := s.cache.Backend()
		b.Cache = &cacheState{Backend: name, Available: up}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, b)
}

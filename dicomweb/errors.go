package dicomweb

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy"
)

// Error is a DICOMweb error answer: an HTTP status and a message that tells the client what was
// wrong, without internals. Warnings and RetryAfter go into headers.
type Error struct {
	Status     int
	Message    string
	Warnings   []string
	RetryAfter time.Duration
	// Err is the cause, for logs only.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Status, e.Message, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *Error {
	return &Error{Status: http.StatusNotFound, Message: fmt.Sprintf(format, args...)}
}

func notAcceptable(format string, args ...any) *Error {
	return &Error{Status: http.StatusNotAcceptable, Message: fmt.Sprintf(format, args...)}
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Status  int    `json:"status"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

// ErrorHandler is the Echo error handler: every error leaves as a DICOMweb error body with the
// right status. A governance refusal (policy.Refusal) answers with its own status and message,
// naming its rule, and with its Retry-After (a 429); a 401 says a bearer token is wanted; a
// governance step that cannot decide now answers 503 with retryAfter. Unknown errors are 500s whose detail goes to the log, not
// the client.
func ErrorHandler(log *slog.Logger, retryAfter time.Duration) echo.HTTPErrorHandler {
	return errorHandler(log, retryAfter, nil)
}

// errorHandler is ErrorHandler telling audited (when not nil) of every error it answers, before
// the answer is written.
func errorHandler(log *slog.Logger, retryAfter time.Duration, audited func(c *echo.Context, de *Error, err error)) echo.HTTPErrorHandler {
	return func(c *echo.Context, err error) {
		if r, uErr := echo.UnwrapResponse(c.Response()); uErr == nil && r.Committed {
			return
		}
		var de *Error
		var he *echo.HTTPError
		var sc echo.HTTPStatusCoder
		var refusal *policy.Refusal
		switch {
		case errors.As(err, &de):
		case errors.As(err, &refusal):
			de = decisionError(fallback.Refused(refusal.Status, refusal.Message, refusal.RetryAfter, retryAfter))
		case errors.Is(err, policy.ErrUnauthenticated):
			de = &Error{Status: http.StatusUnauthorized, Message: "Authentication is required."}
		case errors.Is(err, policy.ErrForbidden):
			de = &Error{Status: http.StatusForbidden, Message: "This request is not permitted for the caller."}
		case errors.Is(err, policy.ErrUnavailable):
			de = decisionError(fallback.Refused(http.StatusServiceUnavailable, "", 0, retryAfter))
		case errors.As(err, &he):
			de = &Error{Status: he.Code, Message: httpErrorMessage(he.Code, he.Message)}
		case errors.As(err, &sc) && sc.StatusCode() >= 400:
			// Echo's own sentinels (ErrNotFound, ErrMethodNotAllowed, ...).
			de = &Error{Status: sc.StatusCode(), Message: httpErrorMessage(sc.StatusCode(), "")}
		default:
			de = &Error{Status: http.StatusInternalServerError, Message: "The proxy failed to handle the request; the incident is logged.", Err: err}
		}
		if de.Status >= 500 {
			log.Error("request failed", "request_id", requestID(c), "route", c.Path(), "status", de.Status, "err", de.Err)
		}
		if audited != nil {
			audited(c, de, err)
		}
		writeError(c, de)
	}
}

func httpErrorMessage(code int, msg string) string {
	switch code {
	case http.StatusNotFound:
		return "No such DICOMweb resource."
	case http.StatusMethodNotAllowed:
		return "This method is not allowed here; the registry is read-only."
	}
	if msg != "" {
		return msg
	}
	return http.StatusText(code)
}

func writeError(c *echo.Context, de *Error) {
	h := c.Response().Header()
	if de.Status == http.StatusUnauthorized {
		// RFC 6750 §3: a bearer token is what the proxy takes.
		h.Set("WWW-Authenticate", `Bearer realm="nirproxy"`)
	}
	for _, w := range de.Warnings {
		h.Add("Warning", w)
	}
	if de.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((de.RetryAfter+time.Second-1)/time.Second)))
	}
	body, _ := json.Marshal(errorBody{Status: de.Status, Error: http.StatusText(de.Status), Message: de.Message})
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	c.Response().WriteHeader(de.Status)
	_, _ = c.Response().Write(body)
}

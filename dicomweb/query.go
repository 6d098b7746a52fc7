package dicomweb

import (
	"net/url"
	"strings"

	"github.com/labstack/echo/v5"
)

// multiValued are the query parameters that may be repeated: every other one names one thing,
// and a second copy would be dropped by whoever reads the first, so it is refused.
var multiValued = map[string]bool{"includefield": true}

// parseRawQuery parses a request's raw query string itself, where url.ParseQuery (and so
// Echo's QueryParams) drops a parameter it cannot decode and, past 10,000 parameters, all of
// them. The string is refused whole, with a 400 naming what is wrong, when it is longer than
// maxLen bytes, when a parameter has a malformed percent-escape or a ';' separator, or when a
// parameter other than includefield is given twice. Nothing of the query is dropped.
func parseRawQuery(raw string, maxLen int) (url.Values, error) {
	if maxLen > 0 && len(raw) > maxLen {
		return nil, badRequest("the query string is %d bytes long; at most %d are accepted (search.maxQueryLength)", len(raw), maxLen)
	}
	q := url.Values{}
	for rest := raw; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		if strings.Contains(pair, ";") {
			return nil, badRequest("the query string contains ';': parameters are separated by '&', and a ';' in a value is written %%3B")
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			return nil, badRequest("a query parameter name has a malformed percent-escape (%s); write %%25 for a literal %%", shorten(rawKey))
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			// The value is not shown: it may be a patient identifier.
			return nil, badRequest("the value of query parameter %q has a malformed percent-escape; write %%25 for a literal %%", shorten(key))
		}
		if key == "" {
			return nil, badRequest("a query parameter has no name")
		}
		if q.Has(key) && !multiValued[strings.ToLower(key)] {
			return nil, badRequest("query parameter %q may be given only once; list several values as a\\b", shorten(key))
		}
		q.Add(key, value)
	}
	return q, nil
}

// shorten bounds client text quoted in an error message.
func shorten(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// checkQuery refuses, before any handler runs, a data request whose query string parseRawQuery
// refuses: too long, malformed escapes, ';' separators or repeated parameters. Handlers that
// read single parameters (c.QueryParam) would otherwise see a malformed one as absent.
func (s *Server) checkQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if _, err := parseRawQuery(c.QueryString(), s.cfg.Search.MaxQueryLength); err != nil {
			return err
		}
		return next(c)
	}
}

package config

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// CheckFile is the check-config sub-command: it loads the file at path with the overrides of
// environ and validates it. It writes every problem to w, one per line as "path: message", or
// else one line that sums the valid configuration up, and reports whether there was no problem.
func CheckFile(path string, environ []string, w io.Writer) (ok bool) {
	cfg, err := Load(path, environ)
	var problems []Problem
	var loadProblems Problems
	switch {
	case errors.As(err, &loadProblems):
		problems = append(problems, loadProblems...)
	case err != nil:
		fmt.Fprintf(w, "%s: %v\n", path, err)
		return false
	}
	problems = append(problems, cfg.Validate()...)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(w, p.String())
		}
		return false
	}
	noun := "sources"
	if len(cfg.Sources) == 1 {
		noun = "source"
	}
	fmt.Fprintf(w, "%s is valid: %d %s (%s), listening on %s\n",
		path, len(cfg.Sources), noun, strings.Join(cfg.SourceIDs(), ", "), cfg.Listen)
	return true
}

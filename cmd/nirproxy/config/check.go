package config

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// CheckFile is the check-config sub-command: it loads the file at path with the overrides of
// environ and validates it (LoadValid). It writes every problem to w, one per line as "path:
// message", or else a line that sums the valid configuration up, a line saying where the cache
// is, and each warning; it reports whether there was no problem.
func CheckFile(path string, environ []string, w io.Writer) (ok bool) {
	cfg, err := LoadValid(path, environ)
	var fe *FileError
	switch {
	case errors.As(err, &fe):
		fmt.Fprintln(w, fe)
		return false
	case err != nil:
		fmt.Fprintf(w, "%s: %v\n", path, err)
		return false
	}
	noun := "sources"
	if len(cfg.Sources) == 1 {
		noun = "source"
	}
	fmt.Fprintf(w, "%s is valid: %d %s (%s), listening on %s\n",
		path, len(cfg.Sources), noun, strings.Join(cfg.SourceIDs(), ", "), cfg.Listen)
	fmt.Fprintf(w, "cache: %s\n", cfg.Cache.Describe())
	for _, p := range cfg.Warnings() {
		fmt.Fprintf(w, "warning: %s\n", p.String())
	}
	return true
}

// Describe says where the cache is, in a few words with addresses but no secret: "off",
// "in process, 64 MiB", "Redis at host:6379", "Redis Cluster at a:6379, b:6379, c:6379" or
// "Redis Sentinel master M at ...".
func (c Cache) Describe() string {
	switch {
	case !c.Enabled:
		return "off"
	case !c.RedisEnabled():
		return fmt.Sprintf("in process, %d MiB", c.MemoryMaxBytes>>20)
	case c.Redis.MasterName != "":
		return fmt.Sprintf("Redis Sentinel master %s at %s", c.Redis.MasterName, strings.Join(c.Redis.Addrs, ", "))
	case len(c.Redis.Addrs) > 1:
		return "Redis Cluster at " + strings.Join(c.Redis.Addrs, ", ")
	}
	return "Redis at " + c.Redis.Addrs[0]
}

package config

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nirproxy/nirproxy/policy/authz"
)

// CheckFile is the check-config sub-command: it loads the file at path with the overrides of
// environ and validates it (LoadValid), and reads and checks the onboarding registry file it
// names, if any. It writes every problem to w, one per line as "path: message", or else a line
// that sums the valid configuration up, a line for the listener's TLS when it is on and one
// when the admin listener is off, a line saying where the cache is, a line for the registry and
// one for the token issuers where they are set, and each warning; it reports whether there was
// no problem.
func CheckFile(path string, environ []string, w io.Writer) (ok bool) {
	cfg, err := LoadValid(path, environ)
	var fe *FileError
	if err != nil && !errors.As(err, &fe) {
		fmt.Fprintf(w, "%s: %v\n", path, err)
		return false
	}
	registry, problems := cfg.Onboarding.loadRegistry()
	if len(problems) > 0 {
		fe = cmp.Or(fe, &FileError{})
		fe.Invalid = append(fe.Invalid, problems...)
	}
	if fe != nil {
		fmt.Fprintln(w, fe)
		return false
	}
	noun := "sources"
	if len(cfg.Sources) == 1 {
		noun = "source"
	}
	fmt.Fprintf(w, "%s is valid: %d %s (%s), listening on %s\n",
		path, len(cfg.Sources), noun, strings.Join(cfg.SourceIDs(), ", "), cfg.Listen)
	if cfg.TLS.Enabled() {
		fmt.Fprintf(w, "tls: %s\n", cfg.TLS.Describe())
	}
	if cfg.AdminListen == "" {
		fmt.Fprintln(w, "admin listener: off (adminListen is empty): /status and /metrics are served nowhere")
	}
	fmt.Fprintf(w, "cache: %s\n", cfg.Cache.Describe())
	if registry != nil {
		orgs, systems := registry.Len()
		fmt.Fprintf(w, "onboarding registry: %s (organisations: %d, systems: %d)\n", cfg.Onboarding.RegistryFile, orgs, systems)
	}
	fmt.Fprintf(w, "audit spool: %s\n", cfg.Audit.SpoolDir)
	if issuers := cfg.Authentication.Issuers; len(issuers) > 0 {
		names := make([]string, len(issuers))
		for i, iss := range issuers {
			names[i] = fmt.Sprintf("%s (%s)", iss.Issuer, iss.Profile)
		}
		fmt.Fprintf(w, "token issuers: %s\n", strings.Join(names, ", "))
	}
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

// loadRegistry reads and checks the registry file RegistryFile names, if any, with every
// problem under onboarding.registryFile.
func (o Onboarding) loadRegistry() (*authz.Registry, Problems) {
	const p = "onboarding.registryFile"
	if o.RegistryFile == "" {
		return nil, nil
	}
	data, unreadable := readFile(o.RegistryFile)
	if unreadable != "" {
		return nil, Problems{{Path: p, Message: unreadable}}
	}
	r, err := authz.ParseRegistry(data)
	var re *authz.RegistryError
	var ps Problems
	switch {
	case errors.As(err, &re):
		for _, rp := range re.Problems {
			ps.add(p, "%s: %s", o.RegistryFile, rp)
		}
	case err != nil:
		ps.add(p, "%s: %v", o.RegistryFile, err)
	}
	return r, ps
}

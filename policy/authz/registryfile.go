package authz

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// RegistrySource gives the onboarding registry in force now.
type RegistrySource interface {
	// Registry is the registry in force; it never returns nil once the source is made.
	Registry() *Registry
}

// RegistryFile is the onboarding registry read from a file, reloaded when the file changes.
// A new file that cannot be read or is not valid is logged and leaves the last good registry in
// force: a registry is replaced whole, never in part.
type RegistryFile struct {
	path    string
	log     *slog.Logger
	current atomic.Pointer[Registry]

	mu      sync.Mutex // serialises reloads and guards the fields below
	stamp   fileStamp  // the file as it was when last read
	digest  [sha256.Size]byte
	lastErr string // the last failure logged, so that one failure is logged once
}

// fileStamp is what a poll compares to notice a change without reading the file.
type fileStamp struct {
	modTime time.Time
	size    int64
}

// OpenRegistryFile reads the registry at path. It fails when the file cannot be read or is
// not valid: nirproxy does not start without a registry. A nil log discards.
func OpenRegistryFile(path string, log *slog.Logger) (*RegistryFile, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &RegistryFile{path: path, log: log}
	if _, err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Registry is the registry in force.
func (f *RegistryFile) Registry() *Registry { return f.current.Load() }

// Reload reads the file again if its modification time or size changed since it was last read,
// and puts it in force if it is valid. It reports whether a new registry came into force; on
// failure the error says why, it is logged (once for each distinct failure), and the registry
// in force stays.
func (f *RegistryFile) Reload() (bool, error) {
	changed, err := f.reload()
	if err != nil {
		f.mu.Lock()
		if err.Error() != f.lastErr {
			f.lastErr = err.Error()
			f.log.Error("onboarding registry not reloaded: the last good registry stays in force",
				"path", f.path, "err", err)
		}
		f.mu.Unlock()
	}
	return changed, err
}

// reload is Reload without the logging.
func (f *RegistryFile) reload() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, err := os.Stat(f.path)
	if err != nil {
		return false, fmt.Errorf("read onboarding registry: %w", err)
	}
	stamp := fileStamp{modTime: info.ModTime(), size: info.Size()}
	if f.current.Load() != nil && stamp == f.stamp {
		return false, nil
	}
	// The stamp is taken before reading: a write during the read changes it again, and the
	// next poll reads the file again.
	data, err := os.ReadFile(f.path)
	if err != nil {
		return false, fmt.Errorf("read onboarding registry: %w", err)
	}
	digest := sha256.Sum256(data)
	if f.current.Load() != nil && bytes.Equal(digest[:], f.digest[:]) {
		f.stamp = stamp // touched, not changed
		return false, nil
	}
	r, err := ParseRegistry(data)
	if err != nil {
		return false, fmt.Errorf("%s: %w", f.path, err)
	}
	f.current.Store(r)
	f.stamp, f.digest, f.lastErr = stamp, digest, ""
	orgs, systems := r.Len()
	f.log.Info("onboarding registry in force", "path", f.path, "organisations", orgs, "systems", systems)
	return true, nil
}

// Watch polls the file every interval (which must be positive) and reloads it when it changed,
// until ctx is done. It blocks; run it in its own goroutine.
func (f *RegistryFile) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = f.Reload() // Reload logs its failures; the last good registry stays
		}
	}
}

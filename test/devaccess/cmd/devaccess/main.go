// Command devaccess gives a nirproxy run by hand the access control serve requires: it starts
// test/devaccess's development token issuer on a loopback port, writes the onboarding registry
// and a configuration fragment (the auth and onboarding sections, to merge into a
// configuration's top level) into a directory, prints every persona's token as a shell export
// line, and keeps the issuer running until interrupted (Ctrl-C). The issuer mints whatever it is
// asked and keeps its key in memory: it is for development only, and its tokens die with it.
//
// Usage:
//
//	go run ./test/devaccess/cmd/devaccess -dir DIR [-lifetime 12h]
//
// It writes DIR/registry.yaml and DIR/access.yaml, then prints "ready" on a line of its own
// after the export lines. test/scripts/orthancs.sh runs it to write a whole configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/nirproxy/nirproxy/test/devaccess"
)

// fragmentName is the configuration fragment's file name in -dir.
const fragmentName = "access.yaml"

func main() {
	dir := flag.String("dir", "", "directory to write registry.yaml and "+fragmentName+" into (created if missing); required")
	lifetime := flag.Duration("lifetime", 12*time.Hour, "how long the printed tokens are valid")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *dir, *lifetime, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "devaccess:", err)
		os.Exit(1)
	}
}

// run starts the issuer, writes the files into dir, prints the tokens to w and waits for ctx.
func run(ctx context.Context, dir string, lifetime time.Duration, w io.Writer) error {
	if dir == "" {
		return errors.New("-dir is required: the directory to write the registry and the configuration fragment into")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolve -dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create -dir: %w", err)
	}
	acc, err := devaccess.Start(devaccess.Options{Dir: dir, Lifetime: lifetime})
	if err != nil {
		return err
	}
	defer acc.Close()
	fragment, err := writeFragment(dir, acc)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "issuer %s (development only: it mints whatever it is asked; tokens valid for %s, and only while it runs)\n", acc.Issuer().URL(), lifetime)
	fmt.Fprintf(w, "registry %s\n", acc.RegistryPath())
	fmt.Fprintf(w, "config %s (the auth and onboarding sections: merge them into your nirproxy configuration's top level)\n", fragment)
	if err := acc.WriteExports(w); err != nil {
		return err
	}
	fmt.Fprintln(w, "ready; interrupt to stop")
	<-ctx.Done()
	return nil
}

// writeFragment writes acc's configuration sections as YAML into dir, whole or not at all (a
// script waiting for the file never reads half of it), and returns its path.
func writeFragment(dir string, acc *devaccess.Access) (string, error) {
	data, err := yaml.Marshal(acc.Config())
	if err != nil {
		return "", fmt.Errorf("encode the configuration fragment: %w", err)
	}
	data = append([]byte("# Written by test/devaccess/cmd/devaccess: nirproxy's auth and onboarding sections for its\n"+
		"# development token issuer, valid while that runs. Never for production.\n"), data...)
	path := filepath.Join(dir, fragmentName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return "", fmt.Errorf("write the configuration fragment: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write the configuration fragment: %w", err)
	}
	return path, nil
}

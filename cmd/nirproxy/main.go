// Command nirproxy is the national imaging registry's DICOMweb endpoint: one QIDO-RS and
// WADO-RS service over many trusts' PACS.
//
//	nirproxy serve --config FILE [--addr HOST:PORT]
//	nirproxy demo [--addr HOST:PORT]
//	nirproxy check-config FILE
//	nirproxy cache purge --config FILE --patient NHSNUMBER
//	nirproxy audit verify [--key PUBLICKEY] DIR
//	nirproxy audit export --config FILE --patient NHSNUMBER [--from WHEN] [--to WHEN]
//	nirproxy version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	// The time-zone database is built in, so that authorization.dsptTimeZone (Europe/London,
	// say) works in a minimal container without the system's zoneinfo.
	_ "time/tzdata"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

const usage = `nirproxy: a DICOMweb registry proxy over many trusts' PACS.

Usage:
  nirproxy serve --config FILE [--addr HOST:PORT]   run the proxy
  nirproxy demo [--addr HOST:PORT]                  run a demo with three built-in sample trusts
  nirproxy check-config FILE                        check a configuration file and print every problem
  nirproxy cache purge --config FILE --patient N    remove every cached entry about a patient from Redis
  nirproxy audit verify [--key PUBLICKEY] DIR       check the audit spool's hash chain, naming the first break
  nirproxy audit export --config FILE --patient N [--from WHEN] [--to WHEN]
                                                    print a FHIR Bundle of the patient's access events (AuditEvents)
  nirproxy version                                  print the version
`

// run is main without the process: it returns the exit code, so tests can drive it.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveCommand(ctx, args[1:], environ, stderr)
	case "demo":
		err = demoCommand(ctx, args[1:], environ, stdout, stderr)
	case "cache":
		err = cacheCommand(ctx, args[1:], environ, stdout, stderr)
	case "audit":
		if len(args) > 1 && args[1] == "export" {
			err = auditExportCommand(ctx, args[2:], environ, stdout, stderr)
		} else {
			err = auditCommand(args[1:], stdout)
		}
	case "check-config":
		return checkConfigCommand(args[1:], environ, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "nirproxy %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "nirproxy: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "nirproxy: %v\n", err)
		return 1
	}
	return 0
}

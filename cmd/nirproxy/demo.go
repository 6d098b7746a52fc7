package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// demoCommand runs three sample trusts' PACS in this process, each on its own loopback port,
// and the proxy over them with an in-process cache: everything a newcomer needs to try
// nirproxy with curl or a viewer, and nothing but Go.
func demoCommand(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen on `HOST:PORT`")
	origin := fs.String("cors-origin", "http://localhost:3000", "browser `ORIGIN` allowed by CORS (a viewer such as OHIF)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	trusts, err := pacssim.DemoTrusts()
	if err != nil {
		return fmt.Errorf("make demo trusts: %w", err)
	}
	cfg := config.Default()
	cfg.Listen = *addr
	cfg.Logging.Format = "text"
	if *origin != "" {
		cfg.CORS.AllowedOrigins = []string{*origin}
	}
	for i, t := range trusts {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen for demo trust %s: %w", t.ID, err)
		}
		hs := &http.Server{Handler: t.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
		src := config.DefaultSource()
		src.ID, src.Name = t.ID, t.Name
		src.URL = "http://" + ln.Addr().String() + "/dicom-web"
		src.Priority = i + 1
		if t.ID == pacssim.DemoTrustC {
			src.PatientID = config.PatientID{Attribute: config.AttributeOtherPatientIDsSequence, Issuer: "NHS"}
		}
		cfg.Sources = append(cfg.Sources, src)
	}
	if problems := cfg.Validate(); len(problems) > 0 {
		return fmt.Errorf("demo configuration is invalid: %v", problems)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (use --addr to choose another): %w", cfg.Listen, err)
	}
	printDemoHelp(stdout, "http://"+ln.Addr().String(), cfg)
	return serve(ctx, cfg, ln, newLogger(cfg.Logging, stderr))
}

func printDemoHelp(w io.Writer, base string, cfg config.Config) {
	fmt.Fprintf(w, "nirproxy demo: DICOMweb at %s/dicom-web over three sample trusts:\n", base)
	for _, s := range cfg.Sources {
		fmt.Fprintf(w, "  %s  %-40s %s\n", s.ID, s.Name, s.URL)
	}
	fmt.Fprintf(w, `
Try:
  # Every study of patient 9434765919, merged across the three trusts (one is held at two)
  curl -s '%[1]s/dicom-web/studies?PatientID=9434765919' | jq .
  # The same, paged
  curl -si '%[1]s/dicom-web/studies?PatientID=9434765919&limit=2&offset=0'
  # The series of the study held at two trusts (each copy contributes)
  curl -s '%[1]s/dicom-web/studies/%[2]s/series' | jq .
  # Its metadata: every instance once, bulk data links pointing at the proxy
  curl -s '%[1]s/dicom-web/studies/%[2]s/metadata' | jq length
  # The whole study as multipart DICOM
  curl -s -o study.multipart -H 'Accept: multipart/related; type="application/dicom"' '%[1]s/dicom-web/studies/%[2]s'
  # A rendered frame of the multi-frame ultrasound, and a thumbnail
  curl -s -o frame.jpg '%[1]s/dicom-web/studies/%[3]s/series/%[4]s/instances/%[5]s/frames/1/rendered'
  curl -s -o thumb.jpg '%[1]s/dicom-web/studies/%[3]s/thumbnail'
  # Refused: a search with no patient, and an NHS number with a wrong check digit
  curl -si '%[1]s/dicom-web/studies?Modality=CT'
  curl -si '%[1]s/dicom-web/studies?PatientID=9434765918'
  # What the service supports
  curl -s -X OPTIONS '%[1]s/dicom-web'

`, base, pacssim.DemoSharedStudyUID, pacssim.DemoUltrasoundStudyUID, pacssim.DemoMultiFrameSeriesUID, pacssim.DemoMultiFrameInstanceUID)
}

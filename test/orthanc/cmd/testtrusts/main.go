// Command testtrusts starts Orthanc servers on loopback ports loaded with the integration data
// set, writes a nirproxy configuration naming them, and keeps them running until interrupted:
// for trying the proxy by hand, demos against real servers and benchmarks.
//
// Usage:
//
//	go run ./test/orthanc/cmd/testtrusts [-n 2] [-config FILE] [-listen 127.0.0.1:8080] [-empty]
//
// The first two servers are ORA and ORB with the data set's files; further ones (ORC, ...)
// hold copies of ORA's files. It prints one line per server and, with -config, the path of the
// proxy configuration it wrote.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/nirproxy/nirproxy/test/orthanc"
)

func main() {
	n := flag.Int("n", 2, "number of Orthanc servers (2 to 9)")
	configPath := flag.String("config", "", "write a nirproxy configuration naming the servers to this file")
	listen := flag.String("listen", "127.0.0.1:8080", "listen address written into the configuration")
	empty := flag.Bool("empty", false, "start the servers without loading the data set")
	flag.Parse()
	if err := run(*n, *configPath, *listen, *empty); err != nil {
		fmt.Fprintln(os.Stderr, "testtrusts:", err)
		os.Exit(1)
	}
}

func run(n int, configPath, listen string, empty bool) error {
	if n < 2 || n > 9 {
		return fmt.Errorf("-n %d: want 2 to 9", n)
	}
	if err := orthanc.MissingError(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	setup, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	m, err := orthanc.BuildDataSet(setup, "")
	if err != nil {
		return err
	}
	names := append([]string(nil), m.Sources...)
	for i := len(names); i < n; i++ {
		names = append(names, "OR"+string(rune('A'+i)))
	}
	servers, err := orthanc.StartMany(setup, orthanc.Options{}, names...)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range servers {
			_ = s.Stop()
		}
	}()
	var sources []orthanc.ProxySource
	for i, s := range servers {
		holder := s.Name
		if i >= len(m.Sources) {
			holder = orthanc.SourceA
		}
		if !empty {
			if _, err := s.UploadFiles(setup, m.FilesFor(holder)...); err != nil {
				return err
			}
		}
		sources = append(sources, orthanc.ProxySource{
			ID: s.Name, Name: "Orthanc " + s.Name + " Test Trust", URL: s.DICOMwebURL(), Priority: i + 1,
		})
		fmt.Printf("%s %s pid=%d dir=%s\n", s.Name, s.DICOMwebURL(), s.PID(), s.Dir())
	}
	fmt.Printf("manifest %s/manifest.json\n", m.Dir)
	if configPath != "" {
		data, err := yaml.Marshal(map[string]any{"listen": listen, "sources": sources})
		if err != nil {
			return fmt.Errorf("encode configuration: %w", err)
		}
		if err := os.WriteFile(configPath, data, 0o644); err != nil {
			return fmt.Errorf("write configuration: %w", err)
		}
		fmt.Printf("config %s\n", configPath)
	}
	fmt.Println("ready; interrupt to stop")
	select {
	case <-ctx.Done():
	case <-servers[0].Exited():
		return fmt.Errorf("Orthanc %s exited; log %s", servers[0].Name, servers[0].LogPath())
	}
	return nil
}

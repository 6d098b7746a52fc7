package orthanc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nirproxy/nirproxy/test/childproc"
)

// jpeg2000Syntaxes are the transfer syntaxes the GDCM plugin is allowed to handle. Left
// unrestricted, GDCM 3.0.21 (Debian 12) also takes over JPEG, RLE and even implicit VR
// transcoding and crashes Orthanc within a few requests; DCMTK, built into Orthanc, handles
// those reliably. Even restricted, transcoding JPEG 2000 (a retrieve or frames request without
// transfer-syntax=*) segfaults Orthanc after a few requests; rendering JPEG 2000 is stable.
var jpeg2000Syntaxes = []string{
	"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
	"1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93",
}

// Options configures one Orthanc server. Every field is optional.
type Options struct {
	// Name is Orthanc's name and DICOM AE title; default "ORTHANC".
	Name string
	// Binary is the Orthanc executable; default "Orthanc" from PATH.
	Binary string
	// Dir holds the configuration, storage and log; default a new temporary directory,
	// removed by Stop. A given Dir is left in place.
	Dir string
	// Port is the HTTP port; default a free one.
	Port int
	// Username and Password, when set, turn on HTTP basic authentication.
	Username, Password string
	// StartTimeout bounds the wait for GET /system to answer; default 30 s.
	StartTimeout time.Duration
	// Config holds extra top-level configuration keys, merged over the defaults.
	Config map[string]any
}

// Server is a running Orthanc with the DICOMweb and GDCM plugins, listening on a loopback port.
// Its methods are safe for concurrent use.
type Server struct {
	// Name is the name given in Options.
	Name string
	// Port is the HTTP port.
	Port int
	// URL is the REST API's base, "http://127.0.0.1:PORT", without a trailing slash.
	URL string

	dir        string
	ownDir     bool
	configPath string
	binary     string
	timeout    time.Duration
	client     *http.Client
	username   string
	password   string

	mu   sync.Mutex
	proc *childproc.Process
}

// Instance is Orthanc's answer to an upload.
type Instance struct {
	ID           string `json:"ID"`
	ParentStudy  string `json:"ParentStudy"`
	ParentSeries string `json:"ParentSeries"`
	Status       string `json:"Status"`
}

// Start writes a configuration for opts and starts Orthanc as a direct child process, then
// waits until GET /system answers. A port taken by someone else between choosing and binding
// it is retried with another port.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Name == "" {
		opts.Name = "ORTHANC"
	}
	if opts.Binary == "" {
		opts.Binary = "Orthanc"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	s := &Server{
		Name: opts.Name, dir: opts.Dir, binary: opts.Binary, timeout: opts.StartTimeout,
		client:   &http.Client{Timeout: 60 * time.Second},
		username: opts.Username, password: opts.Password,
	}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "orthanc-"+strings.ToLower(opts.Name)+"-")
		if err != nil {
			return nil, fmt.Errorf("create directory for Orthanc %s: %w", opts.Name, err)
		}
		s.dir, s.ownDir = dir, true
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := opts.Port
		if port == 0 {
			p, err := FreePort()
			if err != nil {
				return nil, err
			}
			port = p
		}
		if err := s.writeConfig(port, opts); err != nil {
			s.cleanup()
			return nil, err
		}
		s.Port, s.URL = port, loopbackURL(port)
		err := s.launch(ctx)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if opts.Port != 0 || ctx.Err() != nil {
			break
		}
	}
	s.cleanup()
	return nil, lastErr
}

// writeConfig writes Orthanc's JSON configuration for port into the server's directory.
func (s *Server) writeConfig(port int, opts Options) error {
	storage := filepath.Join(s.dir, "storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return fmt.Errorf("create storage of Orthanc %s: %w", s.Name, err)
	}
	cfg := map[string]any{
		"Name":                   opts.Name,
		"StorageDirectory":       storage,
		"IndexDirectory":         storage,
		"Plugins":                []string{DICOMwebPlugin, GDCMPlugin},
		"HttpPort":               port,
		"RemoteAccessAllowed":    false,
		"AuthenticationEnabled":  opts.Username != "",
		"DicomServerEnabled":     false,
		"DicomAet":               opts.Name,
		"WebDavEnabled":          false,
		"HttpCompressionEnabled": false,
		"StorageCompression":     false,
		"SaveJobs":               false,
		"ConcurrentJobs":         1,
		"DicomWeb": map[string]any{
			"Enable": true, "Root": "/dicom-web/", "EnableWado": true, "WadoRoot": "/wado", "Ssl": false,
		},
		"Gdcm": map[string]any{"Enable": true, "RestrictTransferSyntaxes": jpeg2000Syntaxes},
	}
	if opts.Username != "" {
		cfg["RegisteredUsers"] = map[string]string{opts.Username: opts.Password}
	}
	for k, v := range opts.Config {
		cfg[k] = v
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("encode configuration of Orthanc %s: %w", s.Name, err)
	}
	s.configPath = filepath.Join(s.dir, "orthanc.json")
	if err := os.WriteFile(s.configPath, data, 0o644); err != nil {
		return fmt.Errorf("write configuration of Orthanc %s: %w", s.Name, err)
	}
	return nil
}

// launch starts the Orthanc process and waits until it answers.
func (s *Server) launch(ctx context.Context) error {
	proc, err := childproc.Start("Orthanc "+s.Name, s.dir, filepath.Join(s.dir, "orthanc.log"), nil,
		s.binary, s.configPath)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()
	if err := waitHTTP(ctx, proc, s.URL+"/system", s.timeout, s.authorize); err != nil {
		_ = proc.Kill()
		return err
	}
	return nil
}

// current returns the running (or last) process.
func (s *Server) current() *childproc.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// DICOMwebURL is the DICOMweb root, "http://127.0.0.1:PORT/dicom-web", without a trailing slash.
func (s *Server) DICOMwebURL() string { return s.URL + "/dicom-web" }

// PID is the process id of Orthanc itself (not of a shell).
func (s *Server) PID() int { return s.current().PID() }

// Dir is the directory holding the configuration, storage and log.
func (s *Server) Dir() string { return s.dir }

// LogPath is the file Orthanc's output goes to.
func (s *Server) LogPath() string { return s.current().LogPath() }

// Exited is closed when the current Orthanc process has ended (crashed, killed or stopped).
func (s *Server) Exited() <-chan struct{} { return s.current().Done() }

// Running reports whether the current Orthanc process is alive.
func (s *Server) Running() bool { return !s.current().Exited() }

// Stop ends Orthanc (SIGTERM, then SIGKILL after a few seconds) and removes its directory if
// Start created it. Calling it again does nothing.
func (s *Server) Stop() error {
	err := s.current().Terminate(stopGrace)
	s.cleanup()
	return err
}

// Kill ends Orthanc at once with SIGKILL, keeping its storage so that Restart can bring the
// same data back on the same port.
func (s *Server) Kill() error { return s.current().Kill() }

// Pause freezes Orthanc with SIGSTOP: connections are accepted by the kernel but nothing answers.
func (s *Server) Pause() error { return s.current().Pause() }

// Resume undoes Pause with SIGCONT.
func (s *Server) Resume() error { return s.current().Resume() }

// Restart starts Orthanc again with the same configuration, storage and port, after Kill,
// a crash or a terminate. It first ends a process that is still running.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.current().Terminate(stopGrace); err != nil {
		return err
	}
	return s.launch(ctx)
}

// cleanup removes the directory if Start created it.
func (s *Server) cleanup() {
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
}

// newRequest builds a request to the REST API, with credentials when configured.
func (s *Server) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, body)
	if err != nil {
		return nil, fmt.Errorf("build %s %s for Orthanc %s: %w", method, path, s.Name, err)
	}
	s.authorize(req)
	return req, nil
}

// authorize adds basic credentials to req when the server has them.
func (s *Server) authorize(req *http.Request) {
	if s.username != "" {
		req.SetBasicAuth(s.username, s.password)
	}
}

// Do sends method path (relative to URL, e.g. "/dicom-web/studies") with header and returns
// the status, header and whole body.
func (s *Server) Do(ctx context.Context, method, path string, header http.Header, body []byte) (int, http.Header, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := s.newRequest(ctx, method, path, r)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s on Orthanc %s: %w", method, path, s.Name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, nil, fmt.Errorf("read %s %s from Orthanc %s: %w", method, path, s.Name, err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// Upload stores one DICOM file with POST /instances.
func (s *Server) Upload(ctx context.Context, path string) (Instance, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Instance{}, fmt.Errorf("read %s for Orthanc %s: %w", path, s.Name, err)
	}
	status, _, body, err := s.Do(ctx, http.MethodPost, "/instances",
		http.Header{"Content-Type": {"application/dicom"}}, data)
	if err != nil {
		return Instance{}, err
	}
	if status != http.StatusOK {
		return Instance{}, fmt.Errorf("upload %s to Orthanc %s: status %d: %s", filepath.Base(path), s.Name, status, body)
	}
	var inst Instance
	if err := json.Unmarshal(body, &inst); err != nil {
		return Instance{}, fmt.Errorf("decode upload answer of Orthanc %s: %w", s.Name, err)
	}
	if inst.Status != "Success" && inst.Status != "AlreadyStored" {
		return inst, fmt.Errorf("upload %s to Orthanc %s: status %q", filepath.Base(path), s.Name, inst.Status)
	}
	return inst, nil
}

// UploadFiles stores every file in paths, one after another, and returns Orthanc's answers in
// the same order.
func (s *Server) UploadFiles(ctx context.Context, paths ...string) ([]Instance, error) {
	out := make([]Instance, 0, len(paths))
	for _, p := range paths {
		inst, err := s.Upload(ctx, p)
		if err != nil {
			return out, err
		}
		out = append(out, inst)
	}
	return out, nil
}

// ErrNotFound is returned when Orthanc does not hold what was asked for.
var ErrNotFound = errors.New("not found in Orthanc")

// LookupInstance returns Orthanc's own id of the instance with SOP Instance UID sopUID.
func (s *Server) LookupInstance(ctx context.Context, sopUID string) (string, error) {
	status, _, body, err := s.Do(ctx, http.MethodPost, "/tools/lookup", nil, []byte(sopUID))
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("look up %s in Orthanc %s: status %d", sopUID, s.Name, status)
	}
	var found []struct {
		ID   string `json:"ID"`
		Type string `json:"Type"`
	}
	if err := json.Unmarshal(body, &found); err != nil {
		return "", fmt.Errorf("decode lookup answer of Orthanc %s: %w", s.Name, err)
	}
	for _, f := range found {
		if f.Type == "Instance" {
			return f.ID, nil
		}
	}
	return "", fmt.Errorf("look up instance %s in Orthanc %s: %w", sopUID, s.Name, ErrNotFound)
}

// InstanceFile returns the stored file of the instance with SOP Instance UID sopUID, exactly as
// Orthanc keeps it (GET /instances/{id}/file).
func (s *Server) InstanceFile(ctx context.Context, sopUID string) ([]byte, error) {
	id, err := s.LookupInstance(ctx, sopUID)
	if err != nil {
		return nil, err
	}
	status, _, body, err := s.Do(ctx, http.MethodGet, "/instances/"+id+"/file", nil, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("get file of %s from Orthanc %s: status %d", sopUID, s.Name, status)
	}
	return body, nil
}

// StartMany starts one Orthanc per name in parallel with the given template options (Name is
// set from names) and returns them in the same order. On any failure it stops those that started.
func StartMany(ctx context.Context, template Options, names ...string) ([]*Server, error) {
	servers := make([]*Server, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := template
			opts.Name = name
			if template.Dir != "" {
				opts.Dir = filepath.Join(template.Dir, name)
			}
			servers[i], errs[i] = Start(ctx, opts)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range servers {
			if s != nil {
				_ = s.Stop()
			}
		}
		return nil, err
	}
	return servers, nil
}

// StartLoaded starts one Orthanc per source of the data set m (with the template options, as
// StartMany) and loads each with its files, in parallel. It returns the servers by source id;
// on any failure it stops them all.
func StartLoaded(ctx context.Context, m *Manifest, template Options) (map[string]*Server, error) {
	servers, err := StartMany(ctx, template, m.Sources...)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*Server, len(servers))
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		byID[s.Name] = s
		wg.Go(func() {
			if _, err := s.UploadFiles(ctx, m.FilesFor(s.Name)...); err != nil {
				errs[i] = fmt.Errorf("load Orthanc %s: %w", s.Name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		StopAll(byID)
		return nil, err
	}
	return byID, nil
}

// StopAll stops the servers in parallel (each takes seconds to shut down cleanly).
func StopAll(servers map[string]*Server) {
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() { _ = s.Stop() })
	}
	wg.Wait()
}

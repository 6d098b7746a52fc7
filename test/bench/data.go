package bench

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nirproxy/nirproxy/test/orthanc"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// NHS numbers of the benchmark's patients (valid check digits). SearchPatient's studies are
// what the searches find; RetrievePatient holds the studies that are retrieved, so that they
// never appear in the searches.
const (
	SearchPatient   = orthanc.PatientAlpha
	RetrievePatient = orthanc.PatientBravo
)

// UID derives a stable UID under the 2.25 (UUID-derived) root from name.
func UID(name string) string {
	sum := sha256.Sum256([]byte("nirproxy-bench-v1/" + name))
	sum[6] = sum[6]&0x0f | 0x80
	sum[8] = sum[8]&0x3f | 0x80
	return "2.25." + new(big.Int).SetBytes(sum[:16]).String()
}

// SearchStudies returns the search data of one source: studies searchStudies of
// SearchPatient and as many of another patient, each of two series of one small image. The
// UIDs depend on source, so every source holds different studies of the same shape.
func SearchStudies(source string, searchStudies int) ([]*pacssim.Instance, error) {
	patients := []pacssim.Patient{
		{NHSNumber: SearchPatient, Name: "BENCH^SEARCH", BirthDate: "19700101", Sex: "F"},
		{NHSNumber: "9449306052", Name: "BENCH^OTHER", BirthDate: "19810101", Sex: "M"},
	}
	var out []*pacssim.Instance
	for p, pat := range patients {
		for i := 0; i < searchStudies; i++ {
			key := fmt.Sprintf("search/%s/%d/%d", source, p, i)
			spec := pacssim.StudySpec{
				UID: UID(key), Patient: pat,
				Date:            fmt.Sprintf("2024%02d%02d", 1+i%12, 1+i%28),
				Time:            "101500",
				AccessionNumber: fmt.Sprintf("B%s%03d", source, i),
				StudyID:         strconv.Itoa(i + 1),
				Description:     "BENCH SEARCH STUDY",
				Institution:     source,
				Series: []pacssim.SeriesSpec{
					{Number: 1, Modality: "CT", Description: "AXIAL", BodyPart: "CHEST", Instances: 1, Rows: 32, Columns: 32, Pixels: pacssim.Mono8},
					{Number: 2, Modality: "MR", Description: "T1", BodyPart: "CHEST", Instances: 1, Rows: 32, Columns: 32, Pixels: pacssim.Mono8},
				},
			}
			ins, err := pacssim.Synthesize(uint64(i), spec, pacssim.PatientIDScheme{})
			if err != nil {
				return nil, fmt.Errorf("synthesise search study %s: %w", key, err)
			}
			out = append(out, ins...)
		}
	}
	return out, nil
}

// SyntheticStudy describes a study of RetrievePatient of one CT series whose instances are
// written and uploaded one at a time, so that a study of hundreds of megabytes never sits in
// memory whole.
type SyntheticStudy struct {
	Key                     string
	Instances, Rows, Column int
}

// UID is the study's StudyInstanceUID.
func (s SyntheticStudy) UID() string { return UID("retrieve/" + s.Key) }

// Upload synthesises the study's instances and stores them in srv, two at a time, returning
// the bytes uploaded.
func (s SyntheticStudy) Upload(ctx context.Context, srv *orthanc.Server) (int64, error) {
	spec := pacssim.StudySpec{
		UID:     s.UID(),
		Patient: pacssim.Patient{NHSNumber: RetrievePatient, Name: "BENCH^RETRIEVE", BirthDate: "19810101", Sex: "M"},
		Date:    "20230101", Time: "080000", AccessionNumber: "BR" + s.Key, StudyID: "1",
		Description: "BENCH RETRIEVE " + s.Key, Institution: srv.Name,
	}
	var total int64
	var mu sync.Mutex
	err := forEach(ctx, s.Instances, 2, func(ctx context.Context, i int) error {
		one := spec
		// One instance per series keeps each call to Synthesize to one instance's memory;
		// series numbers then count the instances.
		one.Series = []pacssim.SeriesSpec{{Number: i + 1, Modality: "CT", Description: "AXIAL", BodyPart: "CHEST",
			Instances: 1, Rows: s.Rows, Columns: s.Column, Pixels: pacssim.Mono16}}
		ins, err := pacssim.Synthesize(uint64(i), one, pacssim.PatientIDScheme{})
		if err != nil {
			return fmt.Errorf("synthesise instance %d of study %s: %w", i+1, s.Key, err)
		}
		if err := UploadBytes(ctx, srv, ins[0].Bytes()); err != nil {
			return err
		}
		mu.Lock()
		total += int64(len(ins[0].Bytes()))
		mu.Unlock()
		return nil
	})
	return total, err
}

// UploadInstances stores instances in srv, four at a time.
func UploadInstances(ctx context.Context, srv *orthanc.Server, ins []*pacssim.Instance) error {
	return forEach(ctx, len(ins), 4, func(ctx context.Context, i int) error {
		return UploadBytes(ctx, srv, ins[i].Bytes())
	})
}

// UploadFiles stores the DICOM files at paths in srv, four at a time.
func UploadFiles(ctx context.Context, srv *orthanc.Server, paths []string) error {
	return forEach(ctx, len(paths), 4, func(ctx context.Context, i int) error {
		data, err := os.ReadFile(paths[i])
		if err != nil {
			return fmt.Errorf("read %s: %w", paths[i], err)
		}
		return UploadBytes(ctx, srv, data)
	})
}

// UploadBytes stores one Part-10 file in srv with POST /instances. A failure to send is
// tried again twice: Orthanc closes keep-alive connections after a second idle, and a POST on
// a connection it is closing fails (storing the same instance again is harmless).
func UploadBytes(ctx context.Context, srv *orthanc.Server, part10 []byte) error {
	var status int
	var body []byte
	var err error
	for try := 0; try < 3; try++ {
		status, _, body, err = srv.Do(ctx, http.MethodPost, "/instances",
			http.Header{"Content-Type": {"application/dicom"}}, part10)
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("upload to Orthanc %s: %w", srv.Name, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("upload to Orthanc %s: status %d: %.200s", srv.Name, status, body)
	}
	return nil
}

// forEach runs fn for 0..n-1 on up to parallel goroutines and returns the first error; after
// an error no new call starts.
func forEach(ctx context.Context, n, parallel int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	errs := make(chan error, parallel)
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
loop:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break loop
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// RelabelledCopies writes n copies of a pydicom sample file into dir, relabelled with one
// dcmodify call as one study of RetrievePatient (new SOP Instance UIDs, one series), and
// returns their paths and the StudyInstanceUID.
func RelabelledCopies(ctx context.Context, dir, sample string, n int) ([]string, string, error) {
	src := filepath.Join(orthanc.PydicomTestFiles, sample)
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, "", fmt.Errorf("read pydicom sample %s (%s): %w", sample, orthanc.InstallHint, err)
	}
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("copy%04d.dcm", i+1))
		if err := os.WriteFile(paths[i], data, 0o644); err != nil {
			return nil, "", fmt.Errorf("write copy of %s: %w", sample, err)
		}
	}
	study := UID("retrieve/" + sample + "/" + strconv.Itoa(n))
	args := []string{"-nb", "-imt", "-gin",
		"-i", "PatientID=" + RetrievePatient, "-i", "PatientName=BENCH^RETRIEVE",
		"-i", "StudyInstanceUID=" + study, "-i", "SeriesInstanceUID=" + study + ".1",
		"-i", "AccessionNumber=BRCOPIES", "-i", "StudyDate=20230202",
		"-e", "(0010,1000)", "-e", "(0010,1001)"}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "dcmodify", append(args, paths...)...).CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("relabel copies of %s with dcmodify: %w: %s", sample, err, out)
	}
	return paths, study, nil
}

// OrthancVersions asks srv for its own and its DICOMweb plugin's versions.
func OrthancVersions(ctx context.Context, srv *orthanc.Server) (server, dicomweb string, err error) {
	get := func(path string) (string, error) {
		status, _, body, err := srv.Do(ctx, http.MethodGet, path, nil, nil)
		if err != nil {
			return "", err
		}
		if status != http.StatusOK {
			return "", fmt.Errorf("get %s from Orthanc %s: status %d", path, srv.Name, status)
		}
		var v struct {
			Version string `json:"Version"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return "", fmt.Errorf("decode %s of Orthanc %s: %w", path, srv.Name, err)
		}
		return v.Version, nil
	}
	if server, err = get("/system"); err != nil {
		return "", "", err
	}
	if dicomweb, err = get("/plugins/dicom-web"); err != nil {
		return server, "", err
	}
	return server, dicomweb, nil
}

// CaptureQuery starts a throw-away DICOMweb origin that answers every search with [] and
// records the query string of the first study search for SearchPatient; it returns the origin's root URL, a function that
// returns what was captured, and a function that stops the origin.
func CaptureQuery() (root string, captured func() string, stop func()) {
	var mu sync.Mutex
	var first string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if first == "" && r.URL.Path == "/dicom-web/studies" && strings.Contains(r.URL.RawQuery, SearchPatient) {
			first = r.URL.RawQuery
		}
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/dicom+json")
		_, _ = io.WriteString(w, "[]")
	}))
	return srv.URL + "/dicom-web", func() string {
		mu.Lock()
		defer mu.Unlock()
		return first
	}, srv.Close
}

// StartDelayedOrigin starts a stand-in for a distant trust's PACS: a DICOMweb origin that
// answers every request, after delay, with answer as DICOM JSON. Its root URL is
// srv.URL + "/dicom-web". It takes no CPU while it waits, so a proxy in front of several of
// them shows whether it waits for them in parallel or one after another.
func StartDelayedOrigin(answer []byte, delay time.Duration) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/dicom+json")
		_, _ = w.Write(answer)
	}))
}

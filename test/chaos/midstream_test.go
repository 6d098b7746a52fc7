package chaos_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/test/orthanc"
	"github.com/nirproxy/nirproxy/test/pacssim"
)

// The large study that makes a fault land in the middle of a stream: the integration data
// set's studies are a few hundred kilobytes and pass through the proxy in milliseconds, so a
// kill or pause during the load almost never catches one mid-stream. This one is tens of
// megabytes, held at ORB only, and belongs to a patient of its own, so no search of the load
// finds it.
const (
	// bigPatient is the large study's NHS number (valid check digit, not in the data set).
	bigPatient = "9990000018"
	// bigInstances instances of bigRows x bigColumns 16-bit pixels: about 47 MB, more than
	// the socket buffers between Orthanc, the proxy and the client can hold at the moment
	// the fault strikes. At most 9, so that the instances' UIDs have one length.
	bigInstances = 9
	bigRows      = 1024
	bigColumns   = 2560
	// faultAfter is how much of the body the client has read when the fault is made.
	faultAfter = 256 << 10
)

// bigStudy is the large study as uploaded.
type bigStudy struct {
	uid   string
	bytes int64
	// hashes are the SHA-256 of each instance file.
	hashes map[[32]byte]bool
}

// bigStudyUID is the large study's StudyInstanceUID; its one series is bigStudyUID + ".1" and
// its instances bigStudyUID + ".1.N", N from 1 to bigInstances.
const bigStudyUID = "2.25.99900000180000000000000000000000001"

// uploadBigStudy stores the large study in srv. One instance is synthesised; the others are
// copies of it with their own SOP Instance UIDs, which have the same length, so the files stay
// well formed.
func uploadBigStudy(ctx context.Context, srv *orthanc.Server) (*bigStudy, error) {
	big := &bigStudy{uid: bigStudyUID, hashes: map[[32]byte]bool{}}
	series := big.uid + ".1"
	first, err := bigInstance()
	if err != nil {
		return nil, err
	}
	sop := []byte(series + ".1")
	for i := 1; i <= bigInstances; i++ {
		data := bytes.ReplaceAll(first, sop, []byte(series+"."+strconv.Itoa(i)))
		var status int
		var body []byte
		var err error
		// A send that fails is tried again: Orthanc closes keep-alive connections after a
		// second idle, and a POST on a connection it is closing fails. Storing the same
		// instance twice is harmless.
		for try := 0; try < 3; try++ {
			status, _, body, err = srv.Do(ctx, http.MethodPost, "/instances", http.Header{"Content-Type": {"application/dicom"}}, data)
			if err == nil || ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("upload instance %d of the large study: %w", i, err)
		}
		stored := bytes.Contains(body, []byte(`"Success"`)) || bytes.Contains(body, []byte(`"AlreadyStored"`))
		if status != http.StatusOK || !stored {
			return nil, fmt.Errorf("upload instance %d of the large study to Orthanc %s: status %d: %.200s", i, srv.Name, status, body)
		}
		big.bytes += int64(len(data))
		big.hashes[sha256.Sum256(data)] = true
	}
	return big, nil
}

// bigInstance returns the first instance of the large study. Synthesising it takes seconds
// under the race detector (about 0.1 s a megabyte, far more on a busy machine), so it is kept
// beside the integration data set (orthanc.DefaultDataDir) and reused while it is well formed.
func bigInstance() ([]byte, error) {
	sop := []byte(bigStudyUID + ".1.1")
	valid := func(data []byte) bool { return bytes.Count(data, sop) == 2 } // meta header and data set
	cached := filepath.Join(orthanc.DefaultDataDir(), fmt.Sprintf("chaos-large-v1-%dx%d.dcm", bigRows, bigColumns))
	if data, err := os.ReadFile(cached); err == nil && valid(data) {
		return data, nil
	}
	ins, err := pacssim.Synthesize(1, pacssim.StudySpec{
		UID:     bigStudyUID,
		Patient: pacssim.Patient{NHSNumber: bigPatient, Name: "CHAOS^LARGE", BirthDate: "19900101", Sex: "O"},
		Date:    "20240101", Time: "120000", AccessionNumber: "CHAOSBIG", StudyID: "1",
		Description: "CHAOS LARGE STUDY", Institution: "CHAOS",
		Series: []pacssim.SeriesSpec{{UID: bigStudyUID + ".1", Number: 1, Modality: "CT", Description: "LARGE", BodyPart: "CHEST",
			Instances: 1, Rows: bigRows, Columns: bigColumns, Pixels: pacssim.Mono16}},
	}, pacssim.PatientIDScheme{})
	if err != nil {
		return nil, fmt.Errorf("synthesise the large study: %w", err)
	}
	data := ins[0].Bytes()
	if !valid(data) {
		return nil, fmt.Errorf("the large study's instance has SOP Instance UID %q %d times, want twice (meta header and data set)",
			sop, bytes.Count(data, sop))
	}
	// Written under a temporary name and renamed, so a concurrent run never reads half a file.
	// A cache that cannot be written only costs the next run the synthesis.
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err == nil {
		if f, err := os.CreateTemp(filepath.Dir(cached), "chaos-large-*.tmp"); err == nil {
			_, werr := f.Write(data)
			cerr := f.Close()
			if werr != nil || cerr != nil || os.Rename(f.Name(), cached) != nil {
				os.Remove(f.Name())
			}
		}
	}
	return data, nil
}

// midStream is what the client saw of a retrieve broken by a fault.
type midStream struct {
	status int
	header http.Header
	// before is how much of the body had arrived when the fault was made.
	before int
	body   []byte
	// readErr is how the body broke off; nil if it ended cleanly.
	readErr error
	// fault is when the fault was begun, faulted when it had taken effect (the process had
	// died, or was seen stopped).
	start, fault, faulted, end time.Time
	// lastData is when the last bytes of the body arrived.
	lastData time.Time
	// tries is how many retrieves it took to get the stream started.
	tries int
}

// retrieveBroken retrieves the large study through the proxy, makes the fault once faultAfter
// bytes of the body have arrived, and reads on to the end.
//
// On a loaded machine Orthanc may take longer than the source timeout to start sending tens of
// megabytes, and the proxy then rightly refuses the retrieve; such a start, before any fault is
// made, is tried again (up to startTries times, once ORB's breaker is closed).
func (c *chaos) retrieveBroken(ctx context.Context, fault func() error) (midStream, error) {
	const startTries = 4
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var resp *http.Response
	var ms midStream
	var buf bytes.Buffer
	for try := 1; ; try++ {
		ms = midStream{start: time.Now(), tries: try}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.proxy.DICOMwebURL()+"/studies/"+c.big.uid, nil)
		if err != nil {
			return ms, fmt.Errorf("build the large retrieve: %w", err)
		}
		req.Header.Set("Accept", acceptDICOMAsStored)
		resp, err = c.client.Do(req)
		if err != nil {
			return ms, fmt.Errorf("retrieve the large study: %w", err)
		}
		ms.status, ms.header = resp.StatusCode, resp.Header
		buf.Reset()
		_, err = io.CopyN(&buf, resp.Body, faultAfter)
		if err == nil {
			break
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || try == startTries {
			return ms, fmt.Errorf("read the first %d bytes of the large study (status %d, try %d): %w; body %.300s",
				faultAfter, resp.StatusCode, try, err, buf.Bytes())
		}
		if _, err := c.waitBreaker(ctx, orthanc.SourceB, "closed", recoverWithin, 0); err != nil {
			return ms, err
		}
	}
	defer resp.Body.Close()
	ms.before = buf.Len()
	ms.fault = time.Now()
	if err := fault(); err != nil {
		return ms, err
	}
	ms.faulted = time.Now()
	chunk := make([]byte, 256<<10)
	for {
		n, err := resp.Body.Read(chunk)
		if n > 0 {
			buf.Write(chunk[:n])
			ms.lastData = time.Now()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			ms.readErr = err
			break
		}
	}
	ms.end = time.Now()
	ms.body = buf.Bytes()
	return ms, nil
}

// checkBroken judges a retrieve broken mid-stream: the client must see the stream break
// (an error reading the body) within within of the fault, never a body that ends cleanly.
// A body that ends cleanly is either truncated and closed as complete (the hazard), or
// complete because the fault came too late (the test failed to make its condition).
func (c *chaos) checkBroken(t *testing.T, ms midStream, within time.Duration) {
	t.Helper()
	broke := ms.end.Sub(ms.fault)
	t.Logf("large study (try %d): status %d, %d bytes before the fault (made at %s, in effect after %v), %d of about %d in all; body %s %v after the fault (%v; last data %v after the fault)",
		ms.tries, ms.status, ms.before, ms.fault.UTC().Format("15:04:05.000"), ms.faulted.Sub(ms.fault).Round(time.Millisecond), len(ms.body), c.big.bytes,
		map[bool]string{true: "broke off", false: "ended cleanly"}[ms.readErr != nil], broke.Round(time.Millisecond), ms.readErr, ms.lastData.Sub(ms.fault).Round(time.Millisecond))
	if ms.status != http.StatusOK {
		t.Errorf("the large study's retrieve answered %d before the fault, want 200", ms.status)
	}
	if broke > within {
		t.Errorf("the broken stream took %v after the fault to end, past the bound of %v", broke.Round(time.Millisecond), within)
	}
	if ms.readErr != nil {
		return
	}
	parts, closed := c.bigParts(ms)
	if !closed || parts < bigInstances {
		t.Errorf("TRUNCATED STUDY CLOSED AS COMPLETE: the large study's body ended cleanly after %d bytes with %d of %d instances (closing delimiter: %v)",
			len(ms.body), parts, bigInstances, closed)
		return
	}
	t.Errorf("the whole large study (%d bytes) was sent before the fault: the phase did not test a break mid-stream", len(ms.body))
}

// bigParts counts the large study's instances in a body and says whether it has its closing
// delimiter.
func (c *chaos) bigParts(ms midStream) (int, bool) {
	_, params, err := mime.ParseMediaType(ms.header.Get("Content-Type"))
	if err != nil {
		return 0, false
	}
	mr := multipart.NewReader(bytes.NewReader(ms.body), params["boundary"])
	n := 0
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return n, true
		}
		if err != nil {
			return n, false
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return n, false
		}
		if c.big.hashes[sha256.Sum256(data)] {
			n++
		}
	}
}

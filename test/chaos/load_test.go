package chaos_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/nirproxy/nirproxy/test/orthanc"
)

// Accept headers of the operations. Instances are asked for as stored: transcoding the data
// set's JPEG 2000 instance crashes Orthanc 1.10 (see package orthanc), which would add faults
// the controller did not make.
const (
	acceptJSON          = "application/dicom+json"
	acceptDICOMAsStored = `multipart/related; type="application/dicom"; transfer-syntax=*`
)

// kind is what an operation asks for, and so how its answer is judged.
type kind int

const (
	search   kind = iota // QIDO-RS study search: a DICOM JSON list of studies
	retrieve             // WADO-RS study or series retrieve: multipart/related DICOM instances
	metadata             // WADO-RS study metadata: a DICOM JSON list of instances
)

// operation is one request the load sends over and over, with what a complete answer holds.
type operation struct {
	name   string
	kind   kind
	path   string // below the proxy's /dicom-web, with any query
	accept string
	// held maps each source id to the UIDs it holds of what is asked for: study UIDs for a
	// search, SOP Instance UIDs for a retrieve or metadata.
	held map[string][]string
	// all is the union of held: what a complete answer holds, each once.
	all []string
	// keys maps each UID to its manifest key, for messages.
	keys map[string]string
}

// operations are the requests of the load, from the manifest: searches by patient, retrieves
// and metadata of the study both trusts hold (whose copies differ, so a complete answer needs
// both) and of studies only one trust holds.
func operations(m *orthanc.Manifest) []*operation {
	searchFor := func(name, patient string) *operation {
		op := &operation{name: name, kind: search, accept: acceptJSON,
			path: "/studies?" + url.Values{"PatientID": {patient}}.Encode(),
			held: map[string][]string{}, keys: map[string]string{}}
		for _, st := range m.StudiesOf(patient, "") {
			for _, h := range st.Holders {
				op.held[h] = append(op.held[h], st.StudyInstanceUID)
			}
			op.keys[st.StudyInstanceUID] = st.Key
		}
		return op.withUnion()
	}
	instancesOf := func(name string, k kind, path, accept string, ins []orthanc.ManifestInstance) *operation {
		op := &operation{name: name, kind: k, path: path, accept: accept,
			held: map[string][]string{}, keys: map[string]string{}}
		for _, in := range ins {
			for _, h := range in.Holders {
				op.held[h] = append(op.held[h], in.SOPInstanceUID)
			}
			op.keys[in.SOPInstanceUID] = in.Key
		}
		return op.withUnion()
	}
	studyPath := func(key string) string { return "/studies/" + m.Study(key).StudyInstanceUID }
	shared := m.Study(orthanc.StudyShared)
	sharedMR := shared.SeriesByKey("SHARED_MR")
	return []*operation{
		searchFor("search patient at both trusts", orthanc.PatientAlpha),
		instancesOf("retrieve shared study", retrieve, studyPath(orthanc.StudyShared), acceptDICOMAsStored, shared.Instances()),
		instancesOf("metadata of shared study", metadata, studyPath(orthanc.StudyShared)+"/metadata", acceptJSON, shared.Instances()),
		searchFor("search patient at ORA only", orthanc.PatientBravo),
		instancesOf("retrieve ORA-only study", retrieve, studyPath(orthanc.StudyAlphaA), acceptDICOMAsStored, m.Study(orthanc.StudyAlphaA).Instances()),
		instancesOf("retrieve ORB-only study", retrieve, studyPath(orthanc.StudyAlphaB), acceptDICOMAsStored, m.Study(orthanc.StudyAlphaB).Instances()),
		instancesOf("metadata of ORB-only study", metadata, studyPath(orthanc.StudyAlphaB)+"/metadata", acceptJSON, m.Study(orthanc.StudyAlphaB).Instances()),
		instancesOf("retrieve shared series", retrieve, studyPath(orthanc.StudyShared)+"/series/"+sharedMR.SeriesInstanceUID, acceptDICOMAsStored, sharedMR.Instances),
		searchFor("search patient at both trusts", orthanc.PatientAlpha),
		instancesOf("retrieve ORA-only segmentation", retrieve, studyPath(orthanc.StudyAlphaA2), acceptDICOMAsStored, m.Study(orthanc.StudyAlphaA2).Instances()),
	}
}

// withUnion fills all from held.
func (op *operation) withUnion() *operation {
	for _, uids := range op.held {
		for _, u := range uids {
			if !slices.Contains(op.all, u) {
				op.all = append(op.all, u)
			}
		}
	}
	slices.Sort(op.all)
	return op
}

// outcome is what the client saw of one request.
type outcome struct {
	start, end time.Time
	// headers is the time until the response headers arrived.
	headers time.Duration
	// err is set when no response arrived at all.
	err    error
	status int
	header http.Header
	body   []byte
	// readErr is set when the body broke off: an aborted stream.
	readErr error
}

// send sends op to the proxy and reads the whole answer. The client's own time limit is well
// past maxWait, so a request that overruns is measured, not cut short.
func (c *chaos) send(op *operation) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), maxWait+15*time.Second)
	defer cancel()
	o := outcome{start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.proxy.DICOMwebURL()+op.path, nil)
	if err != nil {
		o.err, o.end = err, time.Now()
		return o
	}
	req.Header.Set("Accept", op.accept)
	resp, err := c.client.Do(req)
	if err != nil {
		o.err, o.end = err, time.Now()
		return o
	}
	o.headers = time.Since(o.start)
	o.status, o.header = resp.StatusCode, resp.Header
	o.body, o.readErr = io.ReadAll(resp.Body)
	resp.Body.Close()
	o.end = time.Now()
	return o
}

// load is the stream of requests: workers goroutines, each sending the operations in turn
// (each from a different place in the list) with a short pause between requests.
type load struct {
	done     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	verdicts []verdict
}

// startLoad starts the workers; stop ends them and returns every verdict.
func (c *chaos) startLoad(ops []*operation) *load {
	l := &load{done: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := w * len(ops) / workers; ; i++ {
				select {
				case <-l.done:
					return
				default:
				}
				op := ops[i%len(ops)]
				v := c.judge(op, c.send(op))
				l.mu.Lock()
				l.verdicts = append(l.verdicts, v)
				l.mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	return l
}

// stop ends the load, waiting for requests in flight, and returns what was seen.
func (l *load) stop() []verdict {
	close(l.done)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.verdicts)
}

// String names the operation for messages.
func (op *operation) String() string { return fmt.Sprintf("%s (GET %s)", op.name, op.path) }

package dicomweb

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/upstream"
)

// metadataAccept is the representation metadata is asked of a trust in.
const metadataAccept = "application/dicom+json"

// fetchMetadata asks src for the metadata at path and checks that the answer is DICOM JSON
// (checkRepresentation): an HTML page or any other type is refused before a byte of it is
// parsed, the trust charged. A stale copy the cache stands in with is checked the same way.
func fetchMetadata(ctx context.Context, src *upstream.Source, path string) (*http.Response, error) {
	resp, err := src.Fetch(ctx, path, nil, metadataAccept)
	if resp == nil {
		return nil, err
	}
	if cerr := refuseUnlessAsked(src, resp, metadataAccept); cerr != nil {
		return nil, cerr
	}
	return resp, err
}

// maxMetadataDatasetBytes bounds the DICOM JSON of one instance in a trust's metadata answer,
// which is decoded whole into memory: far above a real instance's (its pixel data and other
// bulk data are links, not inline), far below what would strain the proxy. A larger dataset
// is the trust's invalid answer. The bound is approximate by the JSON decoder's read-ahead.
const maxMetadataDatasetBytes = 16 << 20

// errDatasetTooLarge is the reason a metadata dataset over maxMetadataDatasetBytes is refused.
var errDatasetTooLarge = fmt.Errorf("a metadata dataset is larger than %d bytes", maxMetadataDatasetBytes)

// boundedReader fails with errDatasetTooLarge once more than its allowance has been read
// since the last reset.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) reset() { b.left = maxMetadataDatasetBytes }

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errDatasetTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// metadataStream decodes one holder's metadata array one dataset at a time, each at most
// maxMetadataDatasetBytes.
type metadataStream struct {
	src    *upstream.Source
	body   io.ReadCloser
	dec    *json.Decoder
	limit  *boundedReader
	peeked dcmjson.Dataset // the first dataset, read by openMetadata
	ended  bool            // the array ended before a first dataset
}

// openMetadata reads the start of one holder's metadata answer, whose media type
// fetchMetadata checked: the opening bracket and the first dataset, so that an answer that is
// not a DICOM JSON array, or whose first dataset is too large or invalid, fails before
// anything is sent. On failure the body is closed and the trust charged.
func openMetadata(src *upstream.Source, resp *http.Response) (*metadataStream, error) {
	lim := &boundedReader{r: resp.Body}
	lim.reset()
	ms := &metadataStream{src: src, body: resp.Body, dec: json.NewDecoder(lim), limit: lim}
	tok, err := ms.dec.Token()
	if err == nil && tok != json.Delim('[') {
		err = fmt.Errorf("metadata is not a JSON array")
	}
	if err == nil {
		ms.peeked, err = ms.next()
		if err == io.EOF {
			ms.ended, err = true, nil
		}
	}
	if err != nil {
		err = invalidAnswer(src, err)
		refuse(resp, err)
		return nil, err
	}
	return ms, nil
}

// openMetadataStreams opens the holders' answers (openMetadata) in priority order. The
// answers of holders after the first are read ahead (upstream.ReadAhead), so no trust waits
// on the proxy, and none is timed, while another holder's metadata goes to the client. It
// returns the streams opened and the outcomes of the holders whose answers failed to open.
func openMetadataStreams(open []upstream.Result[*http.Response]) ([]*metadataStream, []upstream.Outcome) {
	var streams []*metadataStream
	var failed []upstream.Outcome
	for i, r := range open {
		if i > 0 {
			r.Value.Body = upstream.ReadAhead(r.Value.Body, maxMetadataReadAhead)
		}
		ms, err := openMetadata(r.Source, r.Value)
		if err != nil {
			failed = append(failed, upstream.Outcome{Source: r.Source, Err: err})
			continue
		}
		streams = append(streams, ms)
	}
	return streams, failed
}

// next returns the next dataset, or io.EOF after the closing bracket.
func (m *metadataStream) next() (dcmjson.Dataset, error) {
	if m.peeked != nil {
		ds := m.peeked
		m.peeked = nil
		return ds, nil
	}
	if m.ended {
		return nil, io.EOF
	}
	m.limit.reset()
	if !m.dec.More() {
		if tok, err := m.dec.Token(); err != nil || tok != json.Delim(']') {
			return nil, &upstream.InvalidResponseError{Source: m.src.ID, Err: fmt.Errorf("metadata array does not end")}
		}
		m.ended = true
		return nil, io.EOF
	}
	var ds dcmjson.Dataset
	if err := m.dec.Decode(&ds); err != nil {
		return nil, invalidAnswer(m.src, err)
	}
	if err := ds.Validate(); err != nil {
		return nil, &upstream.InvalidResponseError{Source: m.src.ID, Err: err}
	}
	return ds, nil
}

// maxMetadataReadAhead bounds what is read ahead of one later holder's metadata while an
// earlier holder's is sent: the size of a large study's metadata. Beyond it reading pauses,
// which is not charged to the trust (its idle timer runs only while the proxy waits on it).
const maxMetadataReadAhead = 16 << 20

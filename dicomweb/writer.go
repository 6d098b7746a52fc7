package dicomweb

import (
	"io"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/fallback"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

// answerStream is an answer on its way to the client: its writes are gathered into large ones
// (media.Coalescer), and once its status line is sent a failure aborts it (abort), so that no
// client can take a truncated answer for a complete one.
type answerStream struct {
	s   *Server
	c   *echo.Context
	out *media.Coalescer // nil for a body copied straight through
}

// openStream returns an answer stream over the response, coalescing its writes.
func (s *Server) openStream(c *echo.Context) *answerStream {
	return &answerStream{s: s, c: c, out: media.NewCoalescer(c.Response())}
}

// close sends what is pending and ends the stream's writes.
func (st *answerStream) close() error {
	if st.out == nil {
		return nil
	}
	return st.out.Close()
}

// abort ends a response whose body is already partly sent, without its closing delimiter or
// final chunk: the connection is reset so the client sees an error, never a short answer. src
// is the trust whose answer was being sent; err says what broke.
func (st *answerStream) abort(src *upstream.Source, err error) {
	if st.out != nil {
		st.out.Discard()
	}
	st.s.aborted(st.c, src, err)
	panic(http.ErrAbortHandler)
}

// aborted logs and counts an aborted answer by who broke it, as fallback judges (Aborted).
func (s *Server) aborted(c *echo.Context, src *upstream.Source, err error) {
	blame := fallback.Aborted(clientCutOff(c), isWriteError(err) || c.Request().Context().Err() != nil)
	s.metrics.abort(src.ID, string(blame))
	switch blame {
	case fallback.BlameClientTimeout:
		s.log.Warn("client stopped reading; response cut off", "request_id", requestID(c), "source", src.ID, "client_write_timeout", s.cfg.ClientWriteTimeout.String())
	case fallback.BlameClient:
		s.log.Info("client left during a stream", "request_id", requestID(c), "source", src.ID)
	default:
		s.log.Error("upstream stream broke; response aborted", "request_id", requestID(c), "source", src.ID, "reason", fallback.Reason(upstream.Classify(err)), "err", err)
	}
}

// datasetWriter streams datasets as a DICOM JSON array or as multipart/related DICOM XML: the
// one writer of search answers and metadata.
type datasetWriter struct {
	*answerStream
	xml *media.Writer
	n   int
	buf []byte
}

// startDatasets starts an answer of datasets in the representation rep with the verdict v: the
// access is recorded and the status line sent (startAnswer). The caller writes the datasets
// and closes the writer.
func (s *Server) startDatasets(c *echo.Context, rep media.Match, v fallback.Decision, e audit.Event) (*datasetWriter, error) {
	w := &datasetWriter{answerStream: s.openStream(c)}
	ct := rep.Offer.Type
	if rep.Offer.PartType == "application/dicom+xml" {
		w.xml = media.NewWriter(w.out)
		ct = w.xml.ContentType(rep.Offer.PartType)
	}
	if ct == "" {
		ct = "application/dicom+json"
	}
	if err := s.startAnswer(c, v, e, ct, -1); err != nil {
		w.out.Discard()
		return nil, err
	}
	return w, nil
}

// write sends one dataset.
func (w *datasetWriter) write(ds dcmjson.Dataset) error {
	if w.xml != nil {
		pw, err := w.xml.CreatePart("application/dicom+xml", "")
		if err != nil {
			return err
		}
		return dcmjson.WriteXML(pw, ds)
	}
	sep := byte(',')
	if w.n == 0 {
		sep = '['
	}
	w.n++
	w.buf = ds.AppendJSON(append(w.buf[:0], sep))
	_, err := w.out.Write(w.buf)
	return err
}

// close ends the array or the multipart body and sends what is pending.
func (w *datasetWriter) close() error {
	if w.xml != nil {
		if err := w.xml.Close(); err != nil {
			return err
		}
		return w.out.Close()
	}
	end := "]"
	if w.n == 0 {
		end = "[]"
	}
	if _, err := io.WriteString(w.out, end); err != nil {
		return err
	}
	return w.out.Close()
}

// abortDatasets aborts the answer (answerStream.abort), ending a multipart body first so that
// its writer holds nothing back.
func (w *datasetWriter) abortDatasets(src *upstream.Source, err error) {
	if w.xml != nil {
		w.xml.Abort()
	}
	w.abort(src, err)
}

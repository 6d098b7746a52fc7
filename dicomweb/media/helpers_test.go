package media

import (
	"fmt"
	"io"
)

// setBoundary replaces w's random boundary, before any part is written, so that tests can
// compare bodies byte for byte.
func (w *Writer) setBoundary(b string) error {
	if err := validBoundary(b); err != nil {
		return fmt.Errorf("set multipart boundary: %w", err)
	}
	w.boundary = b
	return nil
}

// writePart writes a whole part whose body is read from body, as a handler does with
// CreatePart and Copy.
func (w *Writer) writePart(contentType, location string, body io.Reader) (int64, error) {
	pw, err := w.CreatePart(contentType, location)
	if err != nil {
		return 0, err
	}
	return Copy(pw, body)
}

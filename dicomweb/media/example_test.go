package media_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nirproxy/nirproxy/dicomweb/media"
)

func ExampleNegotiate() {
	// What OHIF sends for frames, and what the frames resource offers (default first).
	ranges, err := media.ParseAccept(`multipart/related; type=application/octet-stream; transfer-syntax=*`)
	if err != nil {
		fmt.Println("400:", err)
		return
	}
	offers := []media.Offer{
		{Type: "multipart/related", PartType: "application/octet-stream"},
		{Type: "multipart/related", PartType: "image/jpeg"},
	}
	m, ok := media.Negotiate(ranges, offers)
	if !ok {
		fmt.Println("406")
		return
	}
	fmt.Println(m.Offer, "transfer-syntax", m.TransferSyntax())
	// Output: multipart/related; type="application/octet-stream" transfer-syntax *
}

func ExampleWriter() {
	var body strings.Builder
	w := media.NewWriter(&body)
	pw, _ := w.CreatePart("application/dicom+xml", "")
	io.WriteString(pw, "<NativeDicomModel/>")
	w.Close()
	// The boundary is random; it is shown here as XYZ.
	xyz := strings.NewReplacer(w.Boundary(), "XYZ")
	fmt.Println(xyz.Replace(w.ContentType("application/dicom+xml")))
	fmt.Printf("%q\n", xyz.Replace(body.String()))
	// Output:
	// multipart/related; type="application/dicom+xml"; boundary=XYZ
	// "--XYZ\r\nContent-Type: application/dicom+xml\r\n\r\n<NativeDicomModel/>\r\n--XYZ--\r\n"
}

// A merged retrieve: parts read from one upstream are written into our own body; when an
// upstream fails mid-stream the body is aborted, never closed.
func ExampleReader() {
	upstream := strings.NewReader("--up\r\nContent-Type: application/dicom\r\n\r\nDICM...\r\n--up--\r\n")
	r := media.NewReader(upstream, "up")
	w := media.NewWriter(io.Discard)
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		var pw io.Writer
		if err == nil {
			pw, err = w.CreatePart(p.Header.Get("Content-Type"), p.ContentLocation())
		}
		if err == nil {
			_, err = media.Copy(pw, p)
		}
		if err != nil {
			w.Abort() // and panic(http.ErrAbortHandler) in a handler
			fmt.Println("aborted:", errors.Is(err, media.ErrTruncated))
			return
		}
	}
	fmt.Println("close:", w.Close())
	// Output: close: <nil>
}

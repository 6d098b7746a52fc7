package dicomweb

import (
	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/media"
)

// frameOffers are the representations of frames and bulkdata: uncompressed bytes by default,
// or the compressed bitstream as stored when the client asks for it (transfer-syntax=*). Only
// the one the client prefers is forwarded: origins such as Orthanc refuse an Accept that lists
// several.
var frameOffers = []media.Offer{
	{Type: "multipart/related", PartType: "application/octet-stream"},
	{Type: "multipart/related", PartType: "image/jpeg"},
	{Type: "multipart/related", PartType: "image/jls"},
	{Type: "multipart/related", PartType: "image/jp2"},
	{Type: "multipart/related", PartType: "image/jpx"},
	{Type: "multipart/related", PartType: "image/dicom-rle"},
	{Type: "multipart/related", PartType: "video/mpeg"},
	{Type: "multipart/related", PartType: "video/mp4"},
	{Type: "multipart/related", PartType: "video/H265"},
}

// framesHandler answers frames of an instance (PS3.18 §10.4.1.1.3) from the first holder that
// sends them.
func (s *Server) framesHandler(c *echo.Context) error {
	var frames string
	r, err := s.prepare(c, InstanceLevel, frameOffers, "Frames", func(*retrieval) (err error) {
		frames, err = framesOf(c, s.cfg.MaxFrames)
		return err
	})
	if err != nil {
		return err
	}
	defer r.cancel()
	return s.streamFromFirst(r, r.t.path()+frames, nil, upstreamAccept(r.rep))
}

package dicomweb

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"
)

// capability is one resource of the service, as the WADL lists it.
type capability struct {
	path     string
	doc      string
	produces []string
	params   []string
}

var qidoParams = []string{"limit", "offset", "includefield", "fuzzymatching", "partial", "{attributeID}"}
var renderParamsList = []string{"viewport", "quality", "window", "annotation"}

var capabilities = []capability{
	{"studies", "QIDO-RS search for studies; must name PatientID (NHS number), StudyInstanceUID or AccessionNumber", qidoProduces(), qidoParams},
	{"series", "QIDO-RS search for series", qidoProduces(), qidoParams},
	{"instances", "QIDO-RS search for instances", qidoProduces(), qidoParams},
	{"studies/{study}", "WADO-RS retrieve a study", []string{`multipart/related; type="application/dicom"`}, nil},
	{"studies/{study}/series", "QIDO-RS search for a study's series", qidoProduces(), qidoParams},
	{"studies/{study}/instances", "QIDO-RS search for a study's instances", qidoProduces(), qidoParams},
	{"studies/{study}/metadata", "WADO-RS study metadata", qidoProduces(), nil},
	{"studies/{study}/rendered", "WADO-RS rendered study", []string{"image/jpeg", "image/png"}, renderParamsList},
	{"studies/{study}/thumbnail", "WADO-RS study thumbnail", []string{"image/jpeg", "image/png"}, []string{"viewport"}},
	{"studies/{study}/series/{series}", "WADO-RS retrieve a series", []string{`multipart/related; type="application/dicom"`}, nil},
	{"studies/{study}/series/{series}/instances", "QIDO-RS search for a series' instances", qidoProduces(), qidoParams},
	{"studies/{study}/series/{series}/metadata", "WADO-RS series metadata", qidoProduces(), nil},
	{"studies/{study}/series/{series}/rendered", "WADO-RS rendered series", []string{"image/jpeg", "image/png"}, renderParamsList},
	{"studies/{study}/series/{series}/thumbnail", "WADO-RS series thumbnail", []string{"image/jpeg", "image/png"}, []string{"viewport"}},
	{"studies/{study}/series/{series}/instances/{instance}", "WADO-RS retrieve an instance", []string{`multipart/related; type="application/dicom"`}, nil},
	{"studies/{study}/series/{series}/instances/{instance}/metadata", "WADO-RS instance metadata", qidoProduces(), nil},
	{"studies/{study}/series/{series}/instances/{instance}/frames/{frames}", "WADO-RS frames", []string{`multipart/related; type="application/octet-stream"`, `multipart/related; type="image/jpeg"`, `multipart/related; type="image/jp2"`, `multipart/related; type="image/jls"`}, nil},
	{"studies/{study}/series/{series}/instances/{instance}/rendered", "WADO-RS rendered instance", []string{"image/jpeg", "image/png"}, renderParamsList},
	{"studies/{study}/series/{series}/instances/{instance}/thumbnail", "WADO-RS instance thumbnail", []string{"image/jpeg", "image/png"}, []string{"viewport"}},
	{"studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered", "WADO-RS rendered frames", []string{"image/jpeg", "image/png"}, renderParamsList},
	{"bulkdata/{token}", "WADO-RS bulk data, by the signed links found in metadata", []string{`multipart/related; type="application/octet-stream"`}, nil},
}

func qidoProduces() []string {
	return []string{"application/dicom+json", "application/json", `multipart/related; type="application/dicom+xml"`}
}

// capabilities answers OPTIONS (and GET) on the service root with a WADL document of what the
// proxy supports (PS3.18 §8.9). Writes are listed nowhere: the registry is read-only.
func (s *Server) capabilities(c *echo.Context) error {
	var b strings.Builder
	b.WriteString(xml.Header)
	fmt.Fprintf(&b, "<application xmlns=\"http://wadl.dev.java.net/2009/02\">\n")
	b.WriteString("  <doc title=\"nirproxy\">DICOMweb registry proxy: QIDO-RS and WADO-RS over the participating trusts. Read-only: STOW-RS and other writes are refused with 405.</doc>\n")
	fmt.Fprintf(&b, "  <resources base=\"%s/\">\n", xmlEscape(s.cfg.Forwarding.base()))
	for _, cp := range capabilities {
		fmt.Fprintf(&b, "    <resource path=\"%s\">\n", xmlEscape(cp.path))
		fmt.Fprintf(&b, "      <method name=\"GET\">\n        <doc>%s</doc>\n", xmlEscape(cp.doc))
		if len(cp.params) > 0 {
			b.WriteString("        <request>\n")
			for _, p := range cp.params {
				fmt.Fprintf(&b, "          <param name=\"%s\" style=\"query\"/>\n", xmlEscape(p))
			}
			b.WriteString("        </request>\n")
		}
		b.WriteString("        <response status=\"200\">\n")
		for _, p := range cp.produces {
			fmt.Fprintf(&b, "          <representation mediaType=\"%s\"/>\n", xmlEscape(p))
		}
		b.WriteString("        </response>\n      </method>\n    </resource>\n")
	}
	b.WriteString("  </resources>\n</application>\n")
	c.Response().Header().Set("Allow", "GET, OPTIONS")
	return c.Blob(http.StatusOK, "application/vnd.sun.wadl+xml", []byte(b.String()))
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

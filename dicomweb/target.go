package dicomweb

import (
	"strconv"

	"github.com/labstack/echo/v5"

	"github.com/nirproxy/nirproxy/dicomweb/media"
)

// target is the resource a WADO-RS request names, its UIDs validated.
type target struct {
	level              Level
	study, series, sop string
}

// parseTarget validates the UIDs in the path; nothing reaches an upstream before this passes.
func parseTarget(c *echo.Context, level Level) (target, error) {
	t := target{level: level, study: c.Param("study"), series: c.Param("series"), sop: c.Param("instance")}
	if err := checkUID("study UID", t.study); err != nil {
		return t, err
	}
	if level >= SeriesLevel {
		if err := checkUID("series UID", t.series); err != nil {
			return t, err
		}
	}
	if level == InstanceLevel {
		if err := checkUID("SOP instance UID", t.sop); err != nil {
			return t, err
		}
	}
	return t, nil
}

// path is the resource's path below the DICOMweb root.
func (t target) path() string {
	p := "studies/" + t.study
	if t.level >= SeriesLevel {
		p += "/series/" + t.series
	}
	if t.level == InstanceLevel {
		p += "/instances/" + t.sop
	}
	return p
}

// describe names the resource at the start of a sentence a client reads.
func (t target) describe() string {
	switch t.level {
	case StudyLevel:
		return "The study"
	case SeriesLevel:
		return "The series"
	}
	return "The instance"
}

// upstreamAccept re-states the chosen representation for an upstream, keeping the client's
// transfer-syntax. Quoting the type parameter is what PS3.18 shows and every origin accepts.
func upstreamAccept(m media.Match) string {
	a := m.Offer.Type
	if m.Offer.PartType != "" {
		a += `; type="` + m.Offer.PartType + `"`
	}
	if ts := m.TransferSyntax(); ts != "" {
		a += "; transfer-syntax=" + ts
	}
	return a
}

// framesOf parses the frame list of a path (validated, at most max frames) as the path segment
// the trusts are asked for.
func framesOf(c *echo.Context, max int) (string, error) {
	frames, err := parseFrameList(c.Param("frames"), max)
	if err != nil {
		return "", err
	}
	return "/frames/" + formatFrameList(frames), nil
}

// firstFrameOf parses the frame list of a thumbnail's path, of which only the first frame is
// shown.
func firstFrameOf(c *echo.Context, max int) (string, error) {
	frames, err := parseFrameList(c.Param("frames"), max)
	if err != nil {
		return "", err
	}
	return "/frames/" + strconv.Itoa(frames[0]), nil
}

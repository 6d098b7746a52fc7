package dcmjson

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Attribute names one data element of the standard dictionary.
type Attribute struct {
	Tag     string // eight upper-case hex digits
	Keyword string // "" for private or unknown tags
	VR      string // the first VR the dictionary gives; "UN" when unknown
}

// LookupAttribute resolves a keyword ("StudyInstanceUID") or a tag written as eight hex digits
// ("0020000D") to its attribute. Unknown keywords are an error; unknown tags resolve with VR "UN"
// so that private attributes can still be named by tag.
func LookupAttribute(s string) (Attribute, error) {
	if IsTag(s) {
		up := strings.ToUpper(s)
		n, _ := strconv.ParseUint(up, 16, 32)
		t := tag.Tag{Group: uint16(n >> 16), Element: uint16(n)}
		if info, err := tag.Find(t); err == nil {
			return Attribute{Tag: up, Keyword: info.Keyword, VR: firstVR(info.VRs)}, nil
		}
		return Attribute{Tag: up, VR: "UN"}, nil
	}
	info, err := tag.FindByKeyword(s)
	if err != nil {
		return Attribute{}, fmt.Errorf("%q is neither a DICOM keyword nor a tag of eight hex digits", s)
	}
	return Attribute{Tag: FormatTag(uint32(info.Tag.Group)<<16 | uint32(info.Tag.Element)), Keyword: info.Keyword, VR: firstVR(info.VRs)}, nil
}

// FormatTag writes a tag as DICOM JSON keys it: eight upper-case hex digits.
func FormatTag(t uint32) string {
	return fmt.Sprintf("%08X", t)
}

func firstVR(vrs []string) string {
	if len(vrs) == 0 || vrs[0] == "" {
		return "UN"
	}
	return vrs[0]
}

package dcmjson

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

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
	if a, ok := keywords.Load(s); ok {
		return a.(Attribute), nil
	}
	info, err := tag.FindByKeyword(s)
	if err != nil || info.Keyword != s {
		return Attribute{}, fmt.Errorf("%q is neither a DICOM keyword nor a tag of eight hex digits", s)
	}
	a := Attribute{Tag: FormatTag(uint32(info.Tag.Group)<<16 | uint32(info.Tag.Element)), Keyword: info.Keyword, VR: firstVR(info.VRs)}
	if n := keywordCount.Add(1); n <= maxRememberedKeywords {
		keywords.Store(s, a)
	}
	return a, nil
}

// keywords remembers keyword look-ups: the dictionary's FindByKeyword scans every entry, and
// clients name the same few keywords in every search. It is a memo of read-only data (only
// keywords that exist are stored, so clients cannot grow it without bound), the one
// package-level state here.
var (
	keywords     sync.Map
	keywordCount atomic.Int64
)

const maxRememberedKeywords = 5000

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

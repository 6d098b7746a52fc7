package dicomweb

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// wildcardVRs are the VRs whose values may hold the wildcards * and ? (PS3.4 C.2.2.2.4: not
// dates, times, numbers, binary values, attribute tags, age strings, UIDs or unknown values).
// URIs (UR) are left out too: a PACS has no business matching them by pattern.
var wildcardVRs = map[string]bool{"AE": true, "CS": true, "LO": true, "LT": true, "PN": true, "SH": true, "ST": true, "UC": true, "UT": true}

// listVRs are the VRs whose matching value may be a list of values separated by a backslash
// (PS3.5 6.2 and PS3.4 C.2.2.2.8; UI is split by addMatch's rules). In the others a backslash
// is text (LT, ST, UT, UR), cannot occur (DA, TM, DT) or is refused (an unknown VR).
var listVRs = map[string]bool{"AE": true, "AS": true, "AT": true, "CS": true, "DS": true, "IS": true, "LO": true, "PN": true, "SH": true, "UC": true,
	"FL": true, "FD": true, "SS": true, "US": true, "SL": true, "UL": true, "SV": true, "UV": true}

// binaryVRs have no text form to match on; only universal matching (an empty value) is
// meaningful for them.
var binaryVRs = map[string]bool{"OB": true, "OD": true, "OF": true, "OL": true, "OV": true, "OW": true}

// intBits are the integer VRs and the size of their values; the unsigned ones are in
// unsignedVRs.
var intBits = map[string]int{"IS": 32, "SS": 16, "US": 16, "SL": 32, "UL": 32, "SV": 64, "UV": 64}

var unsignedVRs = map[string]bool{"US": true, "UL": true, "UV": true}

// maxUnknownValue bounds a value of an attribute whose VR the proxy does not know.
const maxUnknownValue = 64

// checkMatchValue checks one matching value against the syntax and length of its VR
// (PS3.5 6.2): its characters, the length of each value, wildcards only where PS3.4 allows
// wildcard matching, and at most maxValues values in a list (values are separated by a
// backslash; UIDs by a comma too). An empty value is universal matching, allowed for every VR
// but the binary ones.
// A value of a VR the proxy does not know (UN: an unknown tag) must be one short value of
// printable ASCII, without wildcards. DA, TM, DT and UI values are checked further by
// addMatch.
func checkMatchValue(key, vr, v string, maxValues int) error {
	if binaryVRs[vr] {
		// Not even universal matching: a trust would put the binary value, pixel data
		// perhaps, in every result.
		return badRequest("%s has VR %s, which cannot be matched on or asked for in a search", key, vr)
	}
	if v == "" {
		return nil
	}
	if strings.ContainsAny(v, "*?") && !wildcardVRs[vr] {
		return badRequest("%s (VR %s) does not allow wildcard matching; * and ? may be used only with the VRs AE, CS, LO, LT, PN, SH, ST, UC and UT", key, vr)
	}
	values := []string{v}
	switch {
	case vr == "UI":
		values = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\\' })
		if n := strings.Count(v, ",") + strings.Count(v, `\`) + 1; n != len(values) {
			return badRequest("%s has an empty value in its list; separate UIDs by a single , or \\", key)
		}
	case listVRs[vr]:
		values = strings.Split(v, `\`)
	}
	if maxValues > 0 && len(values) > maxValues {
		return badRequest("%s has %d values; at most %d are accepted per key (search.maxValuesPerKey)", key, len(values), maxValues)
	}
	if len(values) > 1 && slicesContainEmpty(values) {
		return badRequest("%s has an empty value in its list", key)
	}
	for _, one := range values {
		if why := vrSyntax(vr, one); why != "" {
			return badRequest("%s (VR %s): %s", key, vr, why)
		}
	}
	return nil
}

func slicesContainEmpty(vals []string) bool {
	for _, v := range vals {
		if v == "" {
			return true
		}
	}
	return false
}

// vrSyntax says what is wrong with one value of a VR, or "" when nothing is.
func vrSyntax(vr, v string) string {
	if bits, ok := intBits[vr]; ok {
		return checkInteger(vr, v, bits)
	}
	switch vr {
	case "AE":
		return checkText(v, 16, false, asciiOnly)
	case "AS":
		if len(v) != 4 || !allDigits(v[:3]) || !strings.Contains("DWMY", v[3:]) {
			return "an age is three digits and D, W, M or Y, like 045Y"
		}
	case "AT":
		if !dcmjson.IsTag(v) {
			return "an attribute tag is eight hex digits, like 00100020"
		}
	case "CS":
		return checkCodeString(v)
	case "DA", "TM", "DT":
		if r := rangeLimits[vr]; len(v) > r.max {
			return r.problem
		}
	case "DS":
		return checkDecimal(v)
	case "FL", "FD":
		f, err := strconv.ParseFloat(v, 64)
		if len(v) > 32 || err != nil || !finite(f) {
			return "the value must be a finite number"
		}
	case "LO":
		return checkText(v, 64, false, anyPrintable)
	case "SH":
		return checkText(v, 16, false, anyPrintable)
	case "PN":
		return checkPersonName(v)
	case "LT", "ST", "UT", "UC":
		return checkText(v, maxQueryValue, true, anyPrintable)
	case "UI":
		// Each UID is checked by addMatch.
	case "UR":
		return checkText(v, maxQueryValue, true, asciiNoSpace)
	default:
		// An unknown VR (UN, an attribute the dictionary does not have): one short value of
		// printable ASCII.
		if strings.ContainsAny(v, `\*?`) {
			return "an attribute of unknown VR is matched on one literal value, without \\, * or ?"
		}
		return checkText(v, maxUnknownValue, false, asciiOnly)
	}
	return ""
}

// rangeLimits bound the length of a date, time or date-time value, a range included.
var rangeLimits = map[string]struct {
	max     int
	problem string
}{
	"DA": {17, "a date or date range is at most 17 characters (YYYYMMDD-YYYYMMDD)"},
	"TM": {33, "a time or time range is at most 33 characters (HHMMSS.FFFFFF-HHMMSS.FFFFFF)"},
	"DT": {53, "a date-time or date-time range is at most 53 characters"},
}

// checkCodeString says what is wrong with a CS value (wildcards allowed), or "".
func checkCodeString(v string) string {
	if len(v) > 16 {
		return "a code string has at most 16 characters"
	}
	for _, r := range v {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ' ' || r == '_' || r == '*' || r == '?') {
			return "a code string has only upper-case letters, digits, space and _"
		}
	}
	return ""
}

// checkDecimal says what is wrong with a DS value, or "". PS3.5 6.2: leading and trailing
// spaces (0x20 only) are allowed; a tab or other control character is not, and is never
// passed on.
func checkDecimal(v string) string {
	t := strings.Trim(v, " ")
	f, err := strconv.ParseFloat(t, 64)
	if len(v) > 16 || err != nil || !finite(f) || strings.ContainsFunc(t, func(r rune) bool { return !strings.ContainsRune("0123456789+-.eE", r) }) {
		return "a decimal string is a finite number of at most 16 characters, like 1.5 or -2E3"
	}
	return ""
}

// repertoire is the set of characters a text VR allows.
type repertoire int

const (
	asciiOnly    repertoire = iota // printable ASCII, space included
	asciiNoSpace                   // printable ASCII, no space
	anyPrintable                   // any printable Unicode character (for the specific character sets)
)

// checkText checks a text value: at most maxLen characters of the repertoire, no control
// character, and no backslash unless backslash is text in the VR.
func checkText(v string, maxLen int, backslash bool, rep repertoire) string {
	if !utf8.ValidString(v) {
		return "the value is not valid UTF-8"
	}
	if n := utf8.RuneCountInString(v); n > maxLen {
		return "the value has " + strconv.Itoa(n) + " characters; at most " + strconv.Itoa(maxLen) + " are allowed"
	}
	for _, r := range v {
		switch {
		case unicode.IsControl(r):
			return "the value contains a control character"
		case r == '\\' && !backslash:
			return "the value contains a backslash, which separates values"
		case rep != anyPrintable && (r > '~' || r < ' '):
			return "the value must be printable ASCII"
		case rep == asciiNoSpace && r == ' ':
			return "the value must not contain spaces"
		case rep == anyPrintable && !unicode.IsPrint(r) && r != ' ':
			return "the value contains a character that is not printable"
		}
	}
	return ""
}

// checkPersonName checks a PN value: up to three component groups (alphabetic, ideographic,
// phonetic) separated by =, each of up to five components separated by ^ and at most 64
// characters.
func checkPersonName(v string) string {
	groups := strings.Split(v, "=")
	if len(groups) > 3 {
		return "a person name has at most three component groups separated by ="
	}
	for _, g := range groups {
		if strings.Count(g, "^") > 4 {
			return "a person name has at most five components separated by ^"
		}
		if why := checkText(g, 64, false, anyPrintable); why != "" {
			return "a component group of a person name: " + why
		}
	}
	return ""
}

// checkInteger checks a value of an integer VR: an integer within the VR's range (an IS
// value may be padded with spaces and has at most 12 characters).
func checkInteger(vr, v string, bits int) string {
	t := v
	if vr == "IS" {
		if len(v) > 12 {
			return "an integer string has at most 12 characters"
		}
		t = strings.Trim(v, " ") // spaces only (PS3.5 6.2), never a tab or newline
	}
	var err error
	if unsignedVRs[vr] {
		_, err = strconv.ParseUint(strings.TrimPrefix(t, "+"), 10, bits)
	} else {
		_, err = strconv.ParseInt(t, 10, bits)
	}
	if err != nil {
		return "the value must be an integer within the range of VR " + vr
	}
	return ""
}

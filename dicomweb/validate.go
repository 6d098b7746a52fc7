package dicomweb

import (
	"math"
	"strconv"
	"strings"

	"github.com/nirproxy/nirproxy/upstream"
)

// maxUIDLength is the longest UID DICOM allows (PS3.5 §9.1).
const maxUIDLength = 64

// validUID reports whether s is a DICOM UID: digits and dots, at most 64 characters, no empty
// component and no leading zero in a multi-digit component. Only valid UIDs ever reach an
// upstream URL.
func validUID(s string) bool {
	if s == "" || len(s) > maxUIDLength {
		return false
	}
	for _, comp := range strings.Split(s, ".") {
		if comp == "" {
			return false
		}
		if len(comp) > 1 && comp[0] == '0' {
			return false
		}
		for i := 0; i < len(comp); i++ {
			if comp[i] < '0' || comp[i] > '9' {
				return false
			}
		}
	}
	return true
}

// checkUID returns a 400 naming what is wrong with a UID taken from the request.
func checkUID(what, s string) error {
	if validUID(s) {
		return nil
	}
	shown := s
	if len(shown) > 80 {
		shown = shown[:80] + "..."
	}
	return badRequest("%s %q is not a valid DICOM UID (digits and dots, at most 64 characters)", what, shown)
}

// NormaliseNHSNumber checks an NHS number (ten digits with a modulus-11 check digit, spaces
// allowed between groups as it is often written) and returns its ten digits. It is
// upstream.NormaliseNHSNumber, so that the locator's patients and the front's are one form.
func NormaliseNHSNumber(s string) (string, error) { return upstream.NormaliseNHSNumber(s) }

// parseFrameList parses a WADO-RS frame list ("1", "1,3,5"): positive integers, at most max
// of them.
func parseFrameList(s string, maxFrames int) ([]int, error) {
	if s == "" {
		return nil, badRequest("the frame list is empty; name frames like 1 or 1,3")
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxFrames {
		return nil, badRequest("at most %d frames may be asked for in one request", maxFrames)
	}
	out := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, badRequest("frame number %q is not a positive integer; frames are numbered from 1", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// formatFrameList writes frames back in canonical form.
func formatFrameList(frames []int) string {
	s := make([]string, len(frames))
	for i, f := range frames {
		s[i] = strconv.Itoa(f)
	}
	return strings.Join(s, ",")
}

// renderParams are the validated query parameters of a rendered or thumbnail request
// (PS3.18 §8.3.5), re-encoded canonically for the upstream.
func renderParams(get func(string) string, allowAnnotation bool) (map[string]string, error) {
	out := map[string]string{}
	if v := get("viewport"); v != "" {
		nums, err := intList(v)
		if err != nil || !(len(nums) == 2 || len(nums) == 6) || nums[0] <= 0 || nums[1] <= 0 || nums[0] > 8192 || nums[1] > 8192 {
			return nil, badRequest("viewport %q must be vw,vh (1-8192 pixels each), optionally followed by sx,sy,sw,sh", v)
		}
		if len(nums) == 6 {
			// The source region: an offset within the image and a size, which may be negative
			// (a flip) but not zero.
			sx, sy, sw, sh := nums[2], nums[3], nums[4], nums[5]
			if sx < 0 || sy < 0 || sx > maxImageSide || sy > maxImageSide || sw == 0 || sh == 0 || abs(sw) > maxImageSide || abs(sh) > maxImageSide {
				return nil, badRequest("viewport %q: the source region sx,sy (0-%d) and sw,sh (not 0, at most %d either way) is out of range", v, maxImageSide, maxImageSide)
			}
		}
		// Passed on as parsed, never as the client wrote it.
		out["viewport"] = joinInts(nums)
	}
	if v := get("quality"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return nil, badRequest("quality %q must be an integer from 1 to 100", v)
		}
		out["quality"] = strconv.Itoa(n)
	}
	if v := get("window"); v != "" {
		parts := strings.Split(v, ",")
		if len(parts) != 3 {
			return nil, badRequest("window %q must be center,width,function (function linear, linear-exact or sigmoid)", v)
		}
		c, err1 := strconv.ParseFloat(parts[0], 64)
		w, err2 := strconv.ParseFloat(parts[1], 64)
		// PS3.18 writes the functions in lower case with a hyphen; the VOI LUT Function
		// spelling (LINEAR_EXACT) is accepted too.
		fn := strings.ReplaceAll(strings.ToLower(parts[2]), "_", "-")
		if err1 != nil || err2 != nil || !finite(c) || !finite(w) || w <= 0 || !(fn == "linear" || fn == "linear-exact" || fn == "sigmoid") {
			return nil, badRequest("window %q must be center,width,function with finite numbers, a positive width and function linear, linear-exact or sigmoid", v)
		}
		out["window"] = strconv.FormatFloat(c, 'f', -1, 64) + "," + strconv.FormatFloat(w, 'f', -1, 64) + "," + fn
	}
	if v := get("annotation"); v != "" {
		for _, a := range strings.Split(v, ",") {
			if a != "patient" && a != "technique" {
				return nil, badRequest("annotation %q: only patient and technique are defined", a)
			}
		}
		if allowAnnotation {
			out["annotation"] = v
		}
	}
	return out, nil
}

// maxImageSide bounds a coordinate of a rendered image's source region: DICOM Rows and
// Columns are 16-bit.
const maxImageSide = 65535

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func joinInts(nums []int) string {
	parts := make([]string, len(nums))
	for i, n := range nums {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func intList(s string) ([]int, error) {
	parts := strings.Split(s, ",")
	out := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

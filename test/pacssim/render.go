package pacssim

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// renderOptions are the rendered resources' query parameters (PS3.18 §8.3.5.1).
type renderOptions struct {
	width, height int // viewport; 0 keeps the image's own size
	quality       int // JPEG quality, 1 to 100
	window        *voiWindow
}

// voiWindow is a VOI LUT window (PS3.3 C.11.2.1.2).
type voiWindow struct {
	center, width float64
	function      string // linear, linear-exact or sigmoid
}

// parseRenderOptions reads viewport, quality and window; other parameters (annotation,
// iccprofile, ...) are ignored.
func parseRenderOptions(v url.Values) (renderOptions, error) {
	o := renderOptions{quality: 90}
	if s := v.Get("viewport"); s != "" {
		parts := strings.Split(s, ",")
		if len(parts) != 2 && len(parts) != 6 {
			return o, fmt.Errorf("viewport=%q: want vw,vh", s)
		}
		w, werr := strconv.Atoi(strings.TrimSpace(parts[0]))
		h, herr := strconv.Atoi(strings.TrimSpace(parts[1]))
		if werr != nil || herr != nil || w < 1 || h < 1 || w > 4096 || h > 4096 {
			return o, fmt.Errorf("viewport=%q: width and height must be whole numbers from 1 to 4096", s)
		}
		o.width, o.height = w, h
	}
	if s := v.Get("quality"); s != "" {
		q, err := strconv.Atoi(s)
		if err != nil || q < 1 || q > 100 {
			return o, fmt.Errorf("quality=%q: want a whole number from 1 to 100", s)
		}
		o.quality = q
	}
	if s := v.Get("window"); s != "" {
		parts := strings.Split(s, ",")
		if len(parts) != 2 && len(parts) != 3 {
			return o, fmt.Errorf("window=%q: want center,width[,function]", s)
		}
		c, cerr := strconv.ParseFloat(strings.TrimSpace(parts[0]), 64)
		w, werr := strconv.ParseFloat(strings.TrimSpace(parts[1]), 64)
		if cerr != nil || werr != nil || w <= 0 {
			return o, fmt.Errorf("window=%q: center and width must be numbers, width above 0", s)
		}
		win := &voiWindow{center: c, width: w, function: "linear"}
		if len(parts) == 3 {
			win.function = strings.ToLower(strings.TrimSpace(parts[2]))
		}
		switch win.function {
		case "linear", "linear-exact", "sigmoid":
		default:
			return o, fmt.Errorf("window=%q: function must be linear, linear-exact or sigmoid", s)
		}
		if win.function == "linear" && w < 1 {
			return o, fmt.Errorf("window=%q: a linear window is at least 1 wide", s)
		}
		o.window = win
	}
	return o, nil
}

// rendered answers .../instances/{I}/rendered and .../frames/{n}/rendered.
func (t *Trust) rendered(w http.ResponseWriter, r *http.Request) {
	tg, ok := t.resolve(w, r)
	if !ok {
		return
	}
	t.sendRendered(w, r, tg.instance, 0)
}

// thumbnail answers the thumbnail resources when the trust offers them: the rendered
// middle image of the study's first series, the series or the instance, 128 pixels by
// default.
func (t *Trust) thumbnail(w http.ResponseWriter, r *http.Request) {
	if !t.opts.Thumbnails {
		writeError(w, r, http.StatusNotFound, "thumbnails are not supported")
		return
	}
	tg, ok := t.resolve(w, r)
	if !ok {
		return
	}
	in := tg.instance
	if in == nil {
		se := tg.series
		if se == nil {
			se = tg.study.series[0]
		}
		in = se.instances[len(se.instances)/2]
	}
	t.sendRendered(w, r, in, 128)
}

func (t *Trust) sendRendered(w http.ResponseWriter, r *http.Request, in *held, defaultSize int) {
	frame := 1
	if s := r.PathValue("frames"); s != "" {
		list, err := parseFrameList(s)
		if err != nil || len(list) != 1 {
			writeError(w, r, http.StatusBadRequest, "frames %q: a rendered frame is one frame number", s)
			return
		}
		frame = list[0]
	}
	o, err := parseRenderOptions(r.URL.Query())
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	if o.width == 0 && defaultSize > 0 {
		o.width, o.height = defaultSize, defaultSize
	}
	typ := imageType(r)
	if typ == "" {
		writeError(w, r, http.StatusNotAcceptable, "rendered images are offered as image/jpeg or image/png")
		return
	}
	pixels, err := in.Frame(frame)
	if err != nil {
		writeError(w, r, http.StatusNotFound, "%v", err)
		return
	}
	img := render(pixels, in.format, o)
	w.Header().Set("Content-Type", typ)
	bw := bufio.NewWriter(w)
	if err := encodeImage(bw, img, typ, o.quality); err != nil {
		return // the client has gone
	}
	_ = bw.Flush()
}

func encodeImage(w io.Writer, img image.Image, typ string, quality int) error {
	if typ == "image/png" {
		return png.Encode(w, img)
	}
	return jpeg.Encode(w, img, &jpeg.Options{Quality: quality})
}

// render turns one frame's native pixels into an 8-bit image: the modality LUT (rescale),
// then the VOI window asked for, else the one stored, else the frame's full range; colour
// images pass through. The result is scaled to fit the viewport, keeping its aspect ratio.
func render(pixels []byte, f pixelFormat, o renderOptions) image.Image {
	n := f.rows * f.cols
	var out []uint8
	if f.samples == 3 {
		out = append([]uint8(nil), pixels[:3*n]...)
	} else {
		vals := make([]float64, n)
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := range vals {
			var stored float64
			switch {
			case f.bitsAllocated == 8:
				stored = float64(pixels[i])
			case f.signed:
				stored = float64(int16(binary.LittleEndian.Uint16(pixels[2*i:])))
			default:
				stored = float64(binary.LittleEndian.Uint16(pixels[2*i:]))
			}
			vals[i] = stored*f.slope + f.intercept
			lo, hi = math.Min(lo, vals[i]), math.Max(hi, vals[i])
		}
		win := o.window
		switch {
		case win != nil:
		case f.width > 0:
			win = &voiWindow{center: f.center, width: f.width, function: "linear"}
		default:
			win = &voiWindow{center: (lo + hi + 1) / 2, width: math.Max(hi-lo+1, 1), function: "linear"}
		}
		out = make([]uint8, n)
		for i, x := range vals {
			y := win.apply(x)
			if f.photometric == "MONOCHROME1" {
				y = 255 - y
			}
			out[i] = uint8(math.Round(y))
		}
	}
	w, h := fit(f.cols, f.rows, o.width, o.height)
	out = resize(out, f.cols, f.rows, f.samples, w, h)
	if f.samples == 3 {
		img := image.NewRGBA(image.Rect(0, 0, w, h))
		for i := 0; i < w*h; i++ {
			copy(img.Pix[4*i:], out[3*i:3*i+3])
			img.Pix[4*i+3] = 255
		}
		return img
	}
	return &image.Gray{Pix: out, Stride: w, Rect: image.Rect(0, 0, w, h)}
}

// apply maps a modality value to 0..255 by the window's function (PS3.3 C.11.2.1.2.1, .3.2).
func (v *voiWindow) apply(x float64) float64 {
	c, w := v.center, v.width
	switch v.function {
	case "sigmoid":
		return 255 / (1 + math.Exp(-4*(x-c)/w))
	case "linear-exact":
		switch {
		case x <= c-w/2:
			return 0
		case x > c+w/2:
			return 255
		}
		return ((x-c)/w + 0.5) * 255
	}
	switch {
	case x <= c-0.5-(w-1)/2:
		return 0
	case x > c-0.5+(w-1)/2:
		return 255
	}
	return ((x-(c-0.5))/(w-1) + 0.5) * 255
}

// fit returns the size of a cols×rows image scaled to fit a vw×vh viewport with its aspect
// ratio kept; a zero viewport keeps the size.
func fit(cols, rows, vw, vh int) (int, int) {
	if vw == 0 || vh == 0 {
		return cols, rows
	}
	scale := math.Min(float64(vw)/float64(cols), float64(vh)/float64(rows))
	return max(1, int(math.Round(float64(cols)*scale))), max(1, int(math.Round(float64(rows)*scale)))
}

// resize scales interleaved 8-bit samples bilinearly.
func resize(src []uint8, sw, sh, ch, dw, dh int) []uint8 {
	if sw == dw && sh == dh {
		return src
	}
	dst := make([]uint8, dw*dh*ch)
	for y := 0; y < dh; y++ {
		fy := math.Max(0, (float64(y)+0.5)*float64(sh)/float64(dh)-0.5)
		y0 := min(int(fy), sh-1)
		y1 := min(y0+1, sh-1)
		wy := fy - float64(y0)
		for x := 0; x < dw; x++ {
			fx := math.Max(0, (float64(x)+0.5)*float64(sw)/float64(dw)-0.5)
			x0 := min(int(fx), sw-1)
			x1 := min(x0+1, sw-1)
			wx := fx - float64(x0)
			for c := 0; c < ch; c++ {
				at := func(xx, yy int) float64 { return float64(src[(yy*sw+xx)*ch+c]) }
				top := at(x0, y0)*(1-wx) + at(x1, y0)*wx
				bottom := at(x0, y1)*(1-wx) + at(x1, y1)*wx
				dst[(y*dw+x)*ch+c] = uint8(math.Round(top*(1-wy) + bottom*wy))
			}
		}
	}
	return dst
}

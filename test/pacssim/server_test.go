package pacssim

import (
	"bytes"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

func TestRetrieve(t *testing.T) {
	d := newDemo(t)
	shared := "/studies/" + DemoSharedStudyUID
	tests := []struct {
		name   string
		trust  string
		path   string
		accept string
		want   []string // SOP instance UIDs, in order
	}{
		{"instance, quoted type", "XA1", shared + "/series/" + DemoSharedStudyUID + ".1/instances/" + DemoSharedStudyUID + ".1.3",
			`multipart/related; type="application/dicom"`, []string{DemoSharedStudyUID + ".1.3"}},
		{"instance, unquoted type with transfer syntax", "XA1", shared + "/series/" + DemoSharedStudyUID + ".1/instances/" + DemoSharedStudyUID + ".1.3",
			`multipart/related; type=application/dicom; transfer-syntax=*`, []string{DemoSharedStudyUID + ".1.3"}},
		{"series, no Accept", "XB2", shared + "/series/" + DemoSharedExtraSeriesUID, "",
			[]string{DemoSharedExtraSeriesUID + ".1", DemoSharedExtraSeriesUID + ".2", DemoSharedExtraSeriesUID + ".3",
				DemoSharedExtraSeriesUID + ".4", DemoSharedExtraSeriesUID + ".5", DemoSharedExtraSeriesUID + ".6"}},
		{"study, explicit little endian asked for", "XC3", "/studies/" + DemoUltrasoundStudyUID,
			`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1`,
			[]string{DemoUltrasoundStudyUID + ".1.1", DemoUltrasoundStudyUID + ".1.2", DemoMultiFrameInstanceUID}},
		{"study, any type", "XB2", "/studies/" + DemoChestCRStudyUID, "*/*",
			[]string{DemoChestCRStudyUID + ".1.1", DemoChestCRStudyUID + ".1.2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parts := readMultipart(t, get(t, d.base(tc.trust)+tc.path, tc.accept), "application/dicom")
			var got []string
			for _, p := range parts {
				if !strings.HasPrefix(p.contentType, "application/dicom") {
					t.Errorf("part Content-Type %q", p.contentType)
				}
				ds, err := dicom.Parse(bytes.NewReader(p.body), int64(len(p.body)), nil)
				if err != nil {
					t.Fatalf("parse part: %v", err)
				}
				el, err := ds.FindElementByTag(tag.SOPInstanceUID)
				if err != nil {
					t.Fatalf("part without SOPInstanceUID: %v", err)
				}
				got = append(got, dicom.MustGetStrings(el.Value)[0])
			}
			if mustJSON(got) != mustJSON(tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestMetadataAndBulkData(t *testing.T) {
	d := newDemo(t)
	base := d.base("XC3")
	tests := []struct {
		name      string
		path      string
		instances int
	}{
		{"study", "/studies/" + DemoUltrasoundStudyUID + "/metadata", 3},
		{"series", "/studies/" + DemoUltrasoundStudyUID + "/series/" + DemoMultiFrameSeriesUID + "/metadata", 1},
		{"instance", "/studies/" + DemoUltrasoundStudyUID + "/series/" + DemoUltrasoundStudyUID + ".1/instances/" + DemoUltrasoundStudyUID + ".1.2/metadata", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := getJSON(t, base+tc.path)
			if len(got) != tc.instances {
				t.Fatalf("%d instances, want %d", len(got), tc.instances)
			}
			for _, ds := range got {
				uid := ds.String(dcmjson.TagSOPInstanceUID)
				in := d.trusts["XC3"].byStudy[DemoUltrasoundStudyUID].bySeries[ds.String(dcmjson.TagSeriesInstanceUID)].byInstance[uid]
				wantURL := base + "/studies/" + in.StudyUID + "/series/" + in.SeriesUID + "/instances/" + uid
				if got := ds.String(dcmjson.TagRetrieveURL); got != wantURL {
					t.Errorf("RetrieveURL %q, want %q", got, wantURL)
				}
				if got := ds.String(dcmjson.TagTransferSyntaxUID); got != ExplicitVRLittleEndian {
					t.Errorf("TransferSyntaxUID %q in metadata, want %s (viewers decode frames by it)", got, ExplicitVRLittleEndian)
				}
				if _, ok := ds["00020000"]; ok {
					t.Error("file meta group length in metadata")
				}
				pd := ds[dcmjson.TagPixelData]
				if pd == nil || pd.BulkDataURI != wantURL+"/bulk/7FE00010" || pd.InlineBinary != "" {
					t.Fatalf("PixelData %s", mustJSON(pd))
				}
				parts := readMultipart(t, get(t, pd.BulkDataURI, ""), "application/octet-stream")
				if len(parts) != 1 || !bytes.Equal(parts[0].body, in.PixelData()) {
					t.Errorf("bulk data: %d parts, not the pixel data", len(parts))
				}
				if frames, _ := ds.Int(dcmjson.TagNumberOfFrames); in.frames > 1 && int(frames) != in.frames {
					t.Errorf("NumberOfFrames %d", frames)
				}
			}
		})
	}

	t.Run("bulk data as a single part", func(t *testing.T) {
		in := d.trusts["XC3"].byStudy[DemoUltrasoundStudyUID].instances[0]
		resp := get(t, in.URL(base)+"/bulk/7FE00010", "application/octet-stream")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/octet-stream") || !bytes.Equal(body, in.PixelData()) {
			t.Errorf("status %d, Content-Type %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	})
	t.Run("unknown bulk path", func(t *testing.T) {
		in := d.trusts["XC3"].byStudy[DemoUltrasoundStudyUID].instances[0]
		if resp := get(t, in.URL(base)+"/bulk/00100010", ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("URLs follow Forwarded", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/studies/"+DemoHandDXStudyUID+"/metadata", nil)
		req.Header.Set("Forwarded", `for=10.0.0.1;host="pacs.example:8443";proto=https`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		ds, err := dcmjson.Decode(body)
		if err != nil || len(ds) == 0 {
			t.Fatalf("decode: %v", err)
		}
		if got := ds[0][dcmjson.TagPixelData].BulkDataURI; !strings.HasPrefix(got, "https://pacs.example:8443/dicom-web/studies/") {
			t.Errorf("BulkDataURI %q", got)
		}
	})
}

func TestFrames(t *testing.T) {
	d := newDemo(t)
	tr := d.trusts["XC3"]
	mf := tr.byStudy[DemoUltrasoundStudyUID].bySeries[DemoMultiFrameSeriesUID].byInstance[DemoMultiFrameInstanceUID]
	single := tr.byStudy[DemoHandDXStudyUID].instances[0]
	base := d.base("XC3")
	tests := []struct {
		name   string
		in     *held
		frames string
		accept string
		status int
		want   []int // frame numbers of the parts, when 200
	}{
		{"one frame, OHIF's Accept", mf, "1", "multipart/related; type=application/octet-stream; transfer-syntax=*", http.StatusOK, []int{1}},
		{"list in the order asked", mf, "3,1,16", `multipart/related; type="application/octet-stream"`, http.StatusOK, []int{3, 1, 16}},
		{"no Accept", mf, "2", "", http.StatusOK, []int{2}},
		{"single-frame image", single, "1", "", http.StatusOK, []int{1}},
		{"frame out of range", mf, "17", "", http.StatusNotFound, nil},
		{"frame 2 of a single frame", single, "2", "", http.StatusNotFound, nil},
		{"frame zero", mf, "0", "", http.StatusBadRequest, nil},
		{"not a number", mf, "1,x", "", http.StatusBadRequest, nil},
		{"compressed syntax not offered", mf, "1", "multipart/related; type=image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50", http.StatusNotAcceptable, nil},
		{"other transfer syntax not offered", mf, "1", "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2", http.StatusNotAcceptable, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, tc.in.URL(base)+"/frames/"+tc.frames, tc.accept)
			if tc.status != http.StatusOK {
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != tc.status || !strings.Contains(string(body), `"HttpStatus"`) {
					t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
				}
				return
			}
			parts := readMultipart(t, resp, "application/octet-stream")
			if len(parts) != len(tc.want) {
				t.Fatalf("%d parts, want %d", len(parts), len(tc.want))
			}
			for i, n := range tc.want {
				want, _ := tc.in.Frame(n)
				if !bytes.Equal(parts[i].body, want) {
					t.Errorf("part %d is not frame %d", i+1, n)
				}
				if parts[i].contentType != "application/octet-stream; transfer-syntax="+ExplicitVRLittleEndian {
					t.Errorf("part Content-Type %q", parts[i].contentType)
				}
			}
		})
	}
}

func TestRendered(t *testing.T) {
	d := newDemo(t)
	ct := d.trusts["XA1"].byStudy[DemoHeadCTStudyUID].bySeries[DemoHeadCTStudyUID+".2"].instances[5]
	rgb := d.trusts["XC3"].byStudy[DemoUltrasoundStudyUID].instances[0]
	mf := d.trusts["XC3"].byStudy[DemoUltrasoundStudyUID].bySeries[DemoMultiFrameSeriesUID].instances[0]
	tests := []struct {
		name   string
		url    string
		accept string
		status int
		format string // "jpeg" or "png"
		w, h   int
	}{
		{"CT default JPEG", ct.URL(d.base("XA1")) + "/rendered", "", http.StatusOK, "jpeg", 128, 128},
		{"CT PNG", ct.URL(d.base("XA1")) + "/rendered", "image/png", http.StatusOK, "png", 128, 128},
		{"PNG preferred by q", ct.URL(d.base("XA1")) + "/rendered", "image/jpeg;q=0.5, image/png", http.StatusOK, "png", 128, 128},
		{"viewport keeps aspect", rgb.URL(d.base("XC3")) + "/rendered?viewport=64,64", "image/png", http.StatusOK, "png", 64, 48},
		{"window and quality", ct.URL(d.base("XA1")) + "/rendered?window=40,80,linear&quality=50", "image/jpeg", http.StatusOK, "jpeg", 128, 128},
		{"sigmoid window", ct.URL(d.base("XA1")) + "/rendered?window=40,400,sigmoid", "*/*", http.StatusOK, "jpeg", 128, 128},
		{"frame of a multi-frame", mf.URL(d.base("XC3")) + "/frames/9/rendered?viewport=128,128", "image/*", http.StatusOK, "jpeg", 128, 128},
		{"frame out of range", mf.URL(d.base("XC3")) + "/frames/99/rendered", "", http.StatusNotFound, "", 0, 0},
		{"bad viewport", ct.URL(d.base("XA1")) + "/rendered?viewport=0,10", "", http.StatusBadRequest, "", 0, 0},
		{"bad quality", ct.URL(d.base("XA1")) + "/rendered?quality=101", "", http.StatusBadRequest, "", 0, 0},
		{"bad window function", ct.URL(d.base("XA1")) + "/rendered?window=40,400,cubic", "", http.StatusBadRequest, "", 0, 0},
		{"GIF not offered", ct.URL(d.base("XA1")) + "/rendered", "image/gif", http.StatusNotAcceptable, "", 0, 0},
		{"thumbnail not supported at XA1", ct.URL(d.base("XA1")) + "/thumbnail", "", http.StatusNotFound, "", 0, 0},
		{"study thumbnail at XB2", d.base("XB2") + "/studies/" + DemoSharedStudyUID + "/thumbnail", "", http.StatusOK, "jpeg", 128, 128},
		{"series thumbnail at XB2", d.base("XB2") + "/studies/" + DemoChestCRStudyUID + "/series/" + DemoChestCRStudyUID + ".1/thumbnail?viewport=64,64", "image/png", http.StatusOK, "png", 53, 64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, tc.url, tc.accept)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status != http.StatusOK {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "image/"+tc.format {
				t.Errorf("Content-Type %q", ct)
			}
			var img image.Image
			var err error
			if tc.format == "png" {
				img, err = png.Decode(bytes.NewReader(body))
			} else {
				img, err = jpeg.Decode(bytes.NewReader(body))
			}
			if err != nil {
				t.Fatalf("decode %s: %v", tc.format, err)
			}
			if b := img.Bounds(); b.Dx() != tc.w || b.Dy() != tc.h {
				t.Errorf("size %dx%d, want %dx%d", b.Dx(), b.Dy(), tc.w, tc.h)
			}
		})
	}
}

func TestRenderWindow(t *testing.T) {
	// Two pixels of a 16-bit CT image, stored 1024 and 1064: 0 and 40 HU.
	f := pixelFormat{rows: 1, cols: 2, samples: 1, bitsAllocated: 16, slope: 1, intercept: -1024, photometric: "MONOCHROME2"}
	pixels := []byte{0x00, 0x04, 0x28, 0x04}
	tests := []struct {
		name   string
		window *voiWindow
		format pixelFormat
		want   [2]uint8
	}{
		{"asked window", &voiWindow{center: 20, width: 20, function: "linear"}, f, [2]uint8{0, 255}},
		{"linear-exact centre", &voiWindow{center: 40, width: 80, function: "linear-exact"}, f, [2]uint8{0, 128}},
		{"stored window", nil, func() pixelFormat { g := f; g.center, g.width = 40, 80; return g }(), [2]uint8{0, 129}},
		{"full range without a window", nil, f, [2]uint8{0, 255}},
		{"MONOCHROME1 inverts", &voiWindow{center: 20, width: 20, function: "linear"}, func() pixelFormat { g := f; g.photometric = "MONOCHROME1"; return g }(), [2]uint8{255, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := render(pixels, tc.format, renderOptions{window: tc.window}).(*image.Gray)
			got := [2]uint8{img.Pix[0], img.Pix[1]}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestErrorsAndMethods(t *testing.T) {
	d := newDemo(t)
	base := d.base("XA1")
	series := base + "/studies/" + DemoSharedStudyUID + "/series/" + DemoSharedStudyUID + ".1"
	tests := []struct {
		name   string
		method string
		url    string
		accept string
		status int
	}{
		{"unknown study", http.MethodGet, base + "/studies/1.2.3", "", http.StatusNotFound},
		{"study held elsewhere", http.MethodGet, base + "/studies/" + DemoChestCRStudyUID + "/metadata", "", http.StatusNotFound},
		{"unknown series", http.MethodGet, base + "/studies/" + DemoSharedStudyUID + "/series/1.2.3", "", http.StatusNotFound},
		{"series only XB2 has", http.MethodGet, base + "/studies/" + DemoSharedStudyUID + "/series/" + DemoSharedExtraSeriesUID + "/metadata", "", http.StatusNotFound},
		{"unknown instance", http.MethodGet, series + "/instances/1.2.3", "", http.StatusNotFound},
		{"malformed study UID", http.MethodGet, base + "/studies/1.2.abc", "", http.StatusBadRequest},
		{"UID too long", http.MethodGet, base + "/studies/1." + strings.Repeat("2", 64), "", http.StatusBadRequest},
		{"malformed instance UID", http.MethodGet, series + "/instances/x/frames/1", "", http.StatusBadRequest},
		{"single-part DICOM not offered", http.MethodGet, series, "application/dicom", http.StatusNotAcceptable},
		{"transfer syntax not offered", http.MethodGet, series, `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90`, http.StatusNotAcceptable},
		{"metadata as XML not offered", http.MethodGet, series + "/metadata", `multipart/related; type="application/dicom+xml"`, http.StatusNotAcceptable},
		{"STOW refused", http.MethodPost, base + "/studies", "", http.StatusMethodNotAllowed},
		{"delete refused", http.MethodDelete, base + "/studies/" + DemoSharedStudyUID, "", http.StatusMethodNotAllowed},
		{"unknown resource", http.MethodGet, base + "/workitems", "", http.StatusNotFound},
		{"outside the root", http.MethodGet, d.servers["XA1"].URL + "/system", "", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" || !strings.Contains(string(body), `"HttpStatus"`) {
				t.Errorf("error answer %q: %s", ct, body)
			}
		})
	}
}

func TestCountersAndWrap(t *testing.T) {
	d := newDemo(t)
	tr := d.trusts["XB2"]
	base := d.base("XB2")
	in := tr.byStudy[DemoChestCRStudyUID].instances[0]
	for _, url := range []string{
		base + "/studies",
		base + "/studies/" + DemoChestCRStudyUID + "/series",
		base + "/studies/" + DemoChestCRStudyUID,
		in.URL(base) + "/metadata",
		in.URL(base) + "/frames/1",
		in.URL(base) + "/bulk/7FE00010",
		in.URL(base) + "/rendered",
		in.URL(base) + "/thumbnail",
		base + "/nothing",
	} {
		io.Copy(io.Discard, get(t, url, "").Body)
	}
	want := map[RequestKind]int64{KindSearch: 2, KindRetrieve: 1, KindMetadata: 1, KindFrames: 1, KindBulk: 1, KindRendered: 1, KindThumbnail: 1, KindOther: 1}
	for kind, n := range want {
		if got := tr.RequestsOf(kind); got != n {
			t.Errorf("%s: %d requests, want %d", kind, got, n)
		}
	}
	if tr.Requests() != 9 {
		t.Errorf("%d requests in all, want 9", tr.Requests())
	}

	tr.Wrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		})
	})
	if resp := get(t, base+"/studies", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("wrapped: status %d", resp.StatusCode)
	}
	tr.Unwrap()
	if resp := get(t, base+"/studies", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("unwrapped: status %d", resp.StatusCode)
	}
	if tr.Requests() != 11 || tr.RequestsOf(KindSearch) != 4 {
		t.Errorf("requests through a middleware are counted: %d, %d searches", tr.Requests(), tr.RequestsOf(KindSearch))
	}
}

func TestAcceptParsing(t *testing.T) {
	tests := []struct {
		name   string
		accept []string
		want   bool
	}{
		{"none", nil, true},
		{"quoted", []string{`multipart/related; type="application/dicom"`}, true},
		{"unquoted", []string{`multipart/related; type=application/dicom`}, true},
		{"no type", []string{`multipart/related`}, true},
		{"other type", []string{`multipart/related; type="application/octet-stream"`}, false},
		{"q=0 refuses", []string{`multipart/related; type="application/dicom"; q=0`}, false},
		{"second header", []string{`application/dicom`, `multipart/related; type="application/dicom"`}, true},
		{"several in one header", []string{`application/dicom, multipart/related; type="application/dicom"; transfer-syntax="1.2.840.10008.1.2.1"`}, true},
		{"wildcard", []string{`*/*`}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "/", nil)
			for _, a := range tc.accept {
				r.Header.Add("Accept", a)
			}
			if got := acceptsMultipart(r, "application/dicom"); got != tc.want {
				t.Errorf("acceptsMultipart = %v", got)
			}
		})
	}
}

package pacssim

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// ExplicitVRLittleEndian is the one transfer syntax the simulated PACS stores and serves.
const ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"

// Patient is the person a study belongs to.
type Patient struct {
	NHSNumber string // ten digits with a valid check digit
	LocalID   string // the hospital number, used as PatientID where the NHS number lives elsewhere
	Name      string // DICOM person name, "FAMILY^GIVEN"
	BirthDate string // YYYYMMDD
	Sex       string // M, F or O
}

// StudySpec describes one study to synthesise.
type StudySpec struct {
	UID                string
	Patient            Patient
	Date               string // YYYYMMDD
	Time               string // HHMMSS
	AccessionNumber    string
	StudyID            string
	Description        string
	ReferringPhysician string // DICOM person name
	Institution        string // where the study was performed; a copy held elsewhere keeps it
	Series             []SeriesSpec
}

// SeriesSpec describes one series of a study.
type SeriesSpec struct {
	UID         string // "" derives StudyUID + "." + Number
	Number      int
	Modality    string // CT, MR, CR, DX or US; anything else is stored as Secondary Capture
	Description string
	BodyPart    string // BodyPartExamined, e.g. HEAD, CHEST, KNEE
	Instances   int
	Frames      int // frames per instance; 0 or 1 for single-frame images
	Rows        int
	Columns     int
	Pixels      PixelKind
	// Held lists the instance numbers (1 to Instances) this copy of the series holds; nil
	// holds all of them. An instance's bytes depend on the seed, the study and series specs
	// and its number only, so two trusts given the same seed and specs, with different Held,
	// hold copies of the series that share byte-identical instances and differ in others.
	Held []int
}

// PixelKind is the pixel format of a series.
type PixelKind int

// The pixel formats the generator writes, all uncompressed.
const (
	Mono16 PixelKind = iota // MONOCHROME2, 16 bits allocated, 12 stored, unsigned
	Mono8                   // MONOCHROME2, 8 bits
	RGB8                    // RGB, 8 bits per sample, interleaved (PlanarConfiguration 0)
)

// PatientIDScheme says where a trust's PACS keeps the NHS number.
type PatientIDScheme struct {
	// InOtherPatientIDs puts the NHS number in OtherPatientIDsSequence (0010,1002) and the
	// patient's local hospital number in PatientID. When false, PatientID is the NHS number.
	InOtherPatientIDs bool
	// Issuer is the IssuerOfPatientID written with the NHS number, e.g. "NHS"; "" writes none.
	Issuer string
	// LocalIssuer is the IssuerOfPatientID written with the local number, when
	// InOtherPatientIDs is set; "" writes none.
	LocalIssuer string
}

// Instance is one synthesised SOP instance: its Part-10 bytes and what a PACS indexes
// about it. Its fields and the slices its methods return must not be modified.
type Instance struct {
	StudyUID       string
	SeriesUID      string
	SOPInstanceUID string
	SOPClassUID    string
	Modality       string
	InstanceNumber int

	part10      []byte
	pixelOffset int // where the PixelData value starts in part10
	frames      int
	frameSize   int
	format      pixelFormat
	meta        dcmjson.Dataset // PixelData's BulkDataURI holds its tag, made absolute per request
}

// Bytes returns the instance as a DICOM Part-10 file (Explicit VR Little Endian).
func (in *Instance) Bytes() []byte { return in.part10 }

// PixelData returns the native PixelData value: every frame, padded to an even length.
func (in *Instance) PixelData() []byte { return in.part10[in.pixelOffset:] }

// Frame returns the native pixel bytes of frame n, counted from 1.
func (in *Instance) Frame(n int) ([]byte, error) {
	if n < 1 || n > in.frames {
		return nil, fmt.Errorf("frame %d of instance %s does not exist (it has %d)", n, in.SOPInstanceUID, in.frames)
	}
	start := in.pixelOffset + (n-1)*in.frameSize
	return in.part10[start : start+in.frameSize], nil
}

// Metadata returns the instance's DICOM JSON with BulkDataURIs under base, the origin's
// DICOMweb root ("http://host/dicom-web"), and RetrieveURL set to the instance's URL.
func (in *Instance) Metadata(base string) dcmjson.Dataset {
	url := in.URL(base)
	ds := in.meta.Clone()
	ds.Walk(func(_ dcmjson.Dataset, _ string, el *dcmjson.Element) dcmjson.ItemFilter {
		if el.BulkDataURI != "" {
			el.BulkDataURI = url + "/bulk/" + el.BulkDataURI
		}
		return hasBulkData
	})
	ds.SetStrings(dcmjson.TagRetrieveURL, "UR", url)
	// Viewers read the transfer syntax from metadata to decode frames; Orthanc includes it too.
	ds.SetStrings(dcmjson.TagTransferSyntaxUID, "UI", ExplicitVRLittleEndian)
	return ds
}

// hasBulkData is the ItemFilter for walks that change only BulkDataURIs.
func hasBulkData(raw json.RawMessage) bool { return bytes.Contains(raw, []byte(`"BulkDataURI"`)) }

// URL returns the instance's WADO-RS URL under base.
func (in *Instance) URL(base string) string {
	return base + "/studies/" + in.StudyUID + "/series/" + in.SeriesUID + "/instances/" + in.SOPInstanceUID
}

// pixelFormat is what rendering needs to know about an instance's pixels, read back from
// its attributes as a PACS would.
type pixelFormat struct {
	rows, cols, samples, bitsAllocated int
	signed                             bool
	photometric                        string
	slope, intercept                   float64
	center, width                      float64 // the stored VOI window; width 0 when none
}

// Synthesize writes every instance of study as Part-10 bytes, deterministically: the same
// seed, spec and scheme give the same bytes. SOPInstanceUIDs are SeriesUID + "." + the
// instance number, so tests can name them.
func Synthesize(seed uint64, study StudySpec, ids PatientIDScheme) ([]*Instance, error) {
	if !validUID(study.UID) {
		return nil, fmt.Errorf("synthesise study %q: not a valid UID", study.UID)
	}
	if len(study.Series) == 0 {
		return nil, fmt.Errorf("synthesise study %s: it has no series", study.UID)
	}
	var out []*Instance
	for _, se := range study.Series {
		if se.Instances < 1 || se.Rows < 1 || se.Columns < 1 || se.Pixels < Mono16 || se.Pixels > RGB8 {
			return nil, fmt.Errorf("synthesise study %s series %d: want at least one instance, rows and columns, and a known pixel kind", study.UID, se.Number)
		}
		if se.UID == "" {
			se.UID = study.UID + "." + strconv.Itoa(se.Number)
		}
		if se.Frames < 1 {
			se.Frames = 1
		}
		for _, n := range se.Held {
			if n < 1 || n > se.Instances {
				return nil, fmt.Errorf("synthesise study %s series %d: held instance %d is not between 1 and %d", study.UID, se.Number, n, se.Instances)
			}
		}
		for n := 1; n <= se.Instances; n++ {
			if se.Held != nil && !slices.Contains(se.Held, n) {
				continue
			}
			in, err := synthesizeInstance(seed, &study, &se, n, ids)
			if err != nil {
				return nil, fmt.Errorf("synthesise study %s series %d instance %d: %w", study.UID, se.Number, n, err)
			}
			out = append(out, in)
		}
	}
	return out, nil
}

// sopClass picks the storage SOP class a modality's images are stored as.
func sopClass(modality string, frames int) string {
	switch {
	case modality == "CT":
		return "1.2.840.10008.5.1.4.1.1.2"
	case modality == "MR":
		return "1.2.840.10008.5.1.4.1.1.4"
	case modality == "CR":
		return "1.2.840.10008.5.1.4.1.1.1"
	case modality == "DX":
		return "1.2.840.10008.5.1.4.1.1.1.1"
	case modality == "US" && frames > 1:
		return "1.2.840.10008.5.1.4.1.1.3.1"
	case modality == "US":
		return "1.2.840.10008.5.1.4.1.1.6.1"
	default:
		return "1.2.840.10008.5.1.4.1.1.7"
	}
}

// elements collects data elements, keeping the first error, so a long list of attributes
// reads as a list.
type elements struct {
	list []*dicom.Element
	err  error
}

func (e *elements) add(t tag.Tag, data any) {
	if e.err != nil {
		return
	}
	el, err := dicom.NewElement(t, data)
	if err != nil {
		e.err = fmt.Errorf("build element %v: %w", t, err)
		return
	}
	e.list = append(e.list, el)
}

// sorted returns the elements in ascending tag order, the order DICOM requires.
func (e *elements) sorted() []*dicom.Element {
	slices.SortFunc(e.list, func(a, b *dicom.Element) int {
		return int(uint32(a.Tag.Group)<<16|uint32(a.Tag.Element)) - int(uint32(b.Tag.Group)<<16|uint32(b.Tag.Element))
	})
	return e.list
}

func synthesizeInstance(seed uint64, st *StudySpec, se *SeriesSpec, n int, ids PatientIDScheme) (*Instance, error) {
	sopUID := se.UID + "." + strconv.Itoa(n)
	if !validUID(sopUID) {
		return nil, fmt.Errorf("derived SOP instance UID %q is not a valid UID", sopUID)
	}
	class := sopClass(se.Modality, se.Frames)
	samples, bits, photometric := 1, 16, "MONOCHROME2"
	switch se.Pixels {
	case Mono8:
		bits = 8
	case RGB8:
		samples, bits, photometric = 3, 8, "RGB"
	}
	stored := bits
	if se.Pixels == Mono16 {
		stored = 12
	}

	var e elements
	e.add(tag.FileMetaInformationVersion, []byte{0, 1})
	e.add(tag.MediaStorageSOPClassUID, []string{class})
	e.add(tag.MediaStorageSOPInstanceUID, []string{sopUID})
	e.add(tag.TransferSyntaxUID, []string{ExplicitVRLittleEndian})
	e.add(tag.ImplementationClassUID, []string{"1.2.999.826.0.1"})
	e.add(tag.ImplementationVersionName, []string{"PACSSIM_1"})

	e.add(tag.SpecificCharacterSet, []string{"ISO_IR 192"})
	e.add(tag.ImageType, []string{"ORIGINAL", "PRIMARY"})
	e.add(tag.SOPClassUID, []string{class})
	e.add(tag.SOPInstanceUID, []string{sopUID})
	e.add(tag.StudyDate, []string{st.Date})
	e.add(tag.SeriesDate, []string{st.Date})
	e.add(tag.ContentDate, []string{st.Date})
	e.add(tag.StudyTime, []string{st.Time})
	e.add(tag.SeriesTime, []string{st.Time})
	e.add(tag.ContentTime, []string{st.Time})
	e.add(tag.AccessionNumber, []string{st.AccessionNumber})
	e.add(tag.Modality, []string{se.Modality})
	e.add(tag.Manufacturer, []string{"nirproxy pacssim"})
	e.add(tag.InstitutionName, []string{st.Institution})
	e.add(tag.ReferringPhysicianName, []string{st.ReferringPhysician})
	e.add(tag.StudyDescription, []string{st.Description})
	e.add(tag.SeriesDescription, []string{se.Description})
	e.add(tag.PatientName, []string{st.Patient.Name})
	if ids.InOtherPatientIDs {
		e.add(tag.PatientID, []string{st.Patient.LocalID})
		if ids.LocalIssuer != "" {
			e.add(tag.IssuerOfPatientID, []string{ids.LocalIssuer})
		}
		var item elements
		item.add(tag.PatientID, []string{st.Patient.NHSNumber})
		if ids.Issuer != "" {
			item.add(tag.IssuerOfPatientID, []string{ids.Issuer})
		}
		item.add(tag.TypeOfPatientID, []string{"TEXT"})
		if item.err != nil {
			return nil, item.err
		}
		e.add(tag.OtherPatientIDsSequence, [][]*dicom.Element{item.sorted()})
	} else {
		e.add(tag.PatientID, []string{st.Patient.NHSNumber})
		if ids.Issuer != "" {
			e.add(tag.IssuerOfPatientID, []string{ids.Issuer})
		}
	}
	e.add(tag.PatientBirthDate, []string{st.Patient.BirthDate})
	e.add(tag.PatientSex, []string{st.Patient.Sex})
	e.add(tag.BodyPartExamined, []string{se.BodyPart})
	e.add(tag.StudyInstanceUID, []string{st.UID})
	e.add(tag.SeriesInstanceUID, []string{se.UID})
	e.add(tag.StudyID, []string{st.StudyID})
	e.add(tag.SeriesNumber, []string{strconv.Itoa(se.Number)})
	e.add(tag.InstanceNumber, []string{strconv.Itoa(n)})
	e.add(tag.PerformedProcedureStepStartDate, []string{st.Date})
	e.add(tag.PerformedProcedureStepStartTime, []string{st.Time})

	spacing := 220.0 / float64(se.Columns)
	switch se.Modality {
	case "CT", "MR":
		z := float64(n-1) * 5
		e.add(tag.SliceThickness, []string{"5"})
		e.add(tag.ImagePositionPatient, []string{formatDS(-110), formatDS(-110), formatDS(z)})
		e.add(tag.ImageOrientationPatient, []string{"1", "0", "0", "0", "1", "0"})
		e.add(tag.FrameOfReferenceUID, []string{st.UID + ".0"})
		e.add(tag.SliceLocation, []string{formatDS(z)})
		e.add(tag.PixelSpacing, []string{formatDS(spacing), formatDS(spacing)})
	case "CR", "DX":
		views := []string{"PA", "LL", "AP", "RL"}
		e.add(tag.ViewPosition, []string{views[(n-1)%len(views)]})
		e.add(tag.ImagerPixelSpacing, []string{"0.5", "0.5"})
	}
	if se.Frames > 1 {
		e.add(tag.FrameTime, []string{"40"})
		e.add(tag.NumberOfFrames, []string{strconv.Itoa(se.Frames)})
		e.add(tag.FrameIncrementPointer, []int{int(tag.FrameTime.Group), int(tag.FrameTime.Element)})
	}

	e.add(tag.SamplesPerPixel, []int{samples})
	e.add(tag.PhotometricInterpretation, []string{photometric})
	if samples == 3 {
		e.add(tag.PlanarConfiguration, []int{0})
	}
	e.add(tag.Rows, []int{se.Rows})
	e.add(tag.Columns, []int{se.Columns})
	e.add(tag.BitsAllocated, []int{bits})
	e.add(tag.BitsStored, []int{stored})
	e.add(tag.HighBit, []int{stored - 1})
	e.add(tag.PixelRepresentation, []int{0})
	switch se.Modality {
	case "CT":
		e.add(tag.WindowCenter, []string{"40"})
		e.add(tag.WindowWidth, []string{"400"})
		e.add(tag.RescaleIntercept, []string{"-1024"})
		e.add(tag.RescaleSlope, []string{"1"})
		e.add(tag.RescaleType, []string{"HU"})
	case "CR", "DX":
		e.add(tag.WindowCenter, []string{"2048"})
		e.add(tag.WindowWidth, []string{"4096"})
	}

	// The pixels are handed to the writer as the bytes of the value: the library's
	// frame-by-frame writer boxes every sample and would make the demo slow to start.
	// TestSynthesizeParses checks that the library reads them back as the frames meant.
	rng := rand.New(rand.NewPCG(seed, hashString(sopUID)))
	var pixels []byte
	for f := 0; f < se.Frames; f++ {
		// Position of this image within its series (or frame within its cine), 0 to 1.
		pos := 0.0
		if total := se.Instances * se.Frames; total > 1 {
			pos = float64((n-1)*se.Frames+f) / float64(total-1)
		}
		pixels = append(pixels, paint(se, pos, rng)...)
	}
	if len(pixels)%2 != 0 {
		pixels = append(pixels, 0)
	}
	e.add(tag.PixelData, dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: pixels})
	if e.err != nil {
		return nil, e.err
	}
	if bits == 8 {
		e.list[len(e.list)-1].RawValueRepresentation = "OB"
	}

	var buf bytes.Buffer
	if err := dicom.Write(&buf, dicom.Dataset{Elements: e.sorted()}); err != nil {
		return nil, fmt.Errorf("write Part-10: %w", err)
	}
	return index(buf.Bytes())
}

// index reads back what a PACS keeps about a Part-10 file: its attributes as DICOM JSON
// (PixelData skipped, not decoded) and where each frame's pixels sit in the bytes.
func index(part10 []byte) (*Instance, error) {
	parsed, err := dicom.Parse(bytes.NewReader(part10), int64(len(part10)), nil, dicom.SkipPixelData())
	if err != nil {
		return nil, fmt.Errorf("parse written Part-10: %w", err)
	}
	meta, err := fromDICOM(parsed, func(path string) string {
		if path == dcmjson.TagPixelData {
			return path
		}
		return ""
	})
	if err != nil {
		return nil, fmt.Errorf("convert to DICOM JSON: %w", err)
	}
	in := &Instance{
		StudyUID:       meta.String(dcmjson.TagStudyInstanceUID),
		SeriesUID:      meta.String(dcmjson.TagSeriesInstanceUID),
		SOPInstanceUID: meta.String(dcmjson.TagSOPInstanceUID),
		SOPClassUID:    meta.String(dcmjson.TagSOPClassUID),
		Modality:       meta.String(dcmjson.TagModality),
		part10:         part10,
		meta:           meta,
		frames:         1,
	}
	num, _ := meta.Int(dcmjson.TagInstanceNumber)
	in.InstanceNumber = int(num)
	if nf, ok := meta.Int(dcmjson.TagNumberOfFrames); ok {
		in.frames = int(nf)
	}
	in.format = readPixelFormat(meta)
	f := in.format
	in.frameSize = f.rows * f.cols * f.samples * f.bitsAllocated / 8
	size := in.frameSize * in.frames
	size += size % 2
	in.pixelOffset = len(part10) - size
	// The PixelData header (tag, VR, two reserved bytes, 32-bit length) sits just before
	// the value; PixelData is the last element written.
	hdr := in.pixelOffset - 12
	if hdr < 0 || binary.LittleEndian.Uint16(part10[hdr:]) != 0x7FE0 || binary.LittleEndian.Uint16(part10[hdr+2:]) != 0x0010 ||
		int(binary.LittleEndian.Uint32(part10[hdr+8:])) != size {
		return nil, fmt.Errorf("locate PixelData: the file does not end with a %d-byte PixelData value", size)
	}
	return in, nil
}

func readPixelFormat(meta dcmjson.Dataset) pixelFormat {
	num := func(t string, def float64) float64 {
		s := meta.String(t)
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
		return def
	}
	pr, _ := meta.Int("00280103")
	return pixelFormat{
		rows:          int(num(dcmjson.TagRows, 0)),
		cols:          int(num(dcmjson.TagColumns, 0)),
		samples:       int(num("00280002", 1)),
		bitsAllocated: int(num("00280100", 16)),
		signed:        pr == 1,
		photometric:   meta.String("00280004"),
		slope:         num("00281053", 1),
		intercept:     num("00281052", 0),
		center:        num("00281050", 0),
		width:         num("00281051", 0),
	}
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// formatDS writes a decimal string short enough for DS (16 characters).
func formatDS(f float64) string { return strconv.FormatFloat(f, 'g', 10, 64) }

// paint draws one frame of a series as native little-endian samples: simple anatomy-like
// shapes that change with pos (the frame's place in the series, 0 to 1), plus a little
// noise, so that every image differs and scrolling through a series shows movement.
func paint(se *SeriesSpec, pos float64, rng *rand.Rand) []byte {
	rows, cols := se.Rows, se.Columns
	switch se.Pixels {
	case Mono8:
		out := make([]byte, rows*cols)
		forEachPixel(rows, cols, func(i int, u, v float64) {
			out[i] = uint8(clamp(ultrasound(u, v, pos)*255+rng.NormFloat64()*6, 0, 255))
		})
		return out
	case RGB8:
		out := make([]byte, 3*rows*cols)
		forEachPixel(rows, cols, func(i int, u, v float64) {
			g := clamp(ultrasound(u, v, pos)*255+rng.NormFloat64()*6, 0, 255)
			r, gg, b := g, g, g
			// A colour Doppler box: flow towards the probe red, away blue.
			if math.Abs(u) < 0.25 && v > 0.2 && v < 0.6 {
				if flow := math.Sin((u + pos) * 2 * math.Pi * 2); flow > 0.2 {
					r, gg, b = 200*flow+55, 30, 30
				} else if flow < -0.2 {
					r, gg, b = 30, 60, -200*flow+55
				}
			}
			out[3*i], out[3*i+1], out[3*i+2] = uint8(r), uint8(gg), uint8(b)
		})
		return out
	default:
		out := make([]byte, 2*rows*cols)
		shade := crossSection
		switch se.Modality {
		case "CR", "DX":
			shade = radiograph
		case "MR":
			shade = func(u, v, pos float64) float64 { return magnetic(u, v, pos, se.Number) }
		}
		forEachPixel(rows, cols, func(i int, u, v float64) {
			binary.LittleEndian.PutUint16(out[2*i:], uint16(clamp(shade(u, v, pos)+rng.NormFloat64()*8, 0, 4095)))
		})
		return out
	}
}

// forEachPixel calls fn for each pixel with its index and its coordinates u (left to right)
// and v (top to bottom), both from -1 to 1.
func forEachPixel(rows, cols int, fn func(i int, u, v float64)) {
	for y := 0; y < rows; y++ {
		for x := 0; x < cols; x++ {
			u := 2*(float64(x)+0.5)/float64(cols) - 1
			v := 2*(float64(y)+0.5)/float64(rows) - 1
			fn(y*cols+x, u, v)
		}
	}
}

func inEllipse(u, v, cu, cv, ru, rv float64) bool {
	du, dv := (u-cu)/ru, (v-cv)/rv
	return du*du+dv*dv <= 1
}

// crossSection is an axial CT slice of a head: stored values are HU + 1024.
func crossSection(u, v, pos float64) float64 {
	hu := -1000.0
	switch {
	case !inEllipse(u, v, 0, 0, 0.8, 0.92):
	case !inEllipse(u, v, 0, 0, 0.72, 0.84):
		hu = 1000 // skull
	default:
		hu = 35
		r := 0.1 + 0.15*math.Sin(pos*math.Pi)
		if inEllipse(u, v, -0.15, -0.1, r/2, r) || inEllipse(u, v, 0.15, -0.1, r/2, r) {
			hu = 5 // ventricles
		}
		if inEllipse(u, v, 0.4*math.Cos(pos*4), 0.4*math.Sin(pos*4), 0.06, 0.06) {
			hu = 300 // a contrast-filled vessel
		}
	}
	return hu + 1024
}

// magnetic is an MR slice; even-numbered series invert the contrast (T1 against T2).
func magnetic(u, v, pos float64, series int) float64 {
	if !inEllipse(u, v, 0, 0, 0.85, 0.6) {
		return 0
	}
	bias := 1 - 0.25*(u+1)/2 // a coil's falling sensitivity
	tissue, fluid := 700.0, 250.0
	if series%2 == 0 {
		tissue, fluid = 300, 900
	}
	val := tissue
	if inEllipse(u, v, 0.3*math.Cos(pos*3), 0, 0.2, 0.35) {
		val = fluid
	}
	if inEllipse(u, v, -0.4, 0.1*math.Sin(pos*5), 0.12, 0.12) {
		val = 1100 // fat
	}
	return val * bias
}

// radiograph is a chest film: high values (bright) where the beam was absorbed.
func radiograph(u, v, pos float64) float64 {
	if !inEllipse(u, v, 0, 0.1, 0.9, 1.0) {
		return 200
	}
	val := 1800.0
	if inEllipse(u, v, -0.4, -0.05, 0.28, 0.6) || inEllipse(u, v, 0.4, -0.05, 0.28, 0.6) {
		val = 700 // lungs
		if math.Mod((v+1)*6+pos, 1) < 0.12 {
			val = 2400 // ribs
		}
	}
	if math.Abs(u) < 0.07 {
		val = 3000 // spine
	}
	if inEllipse(u, v, 0.12, 0.3, 0.25, 0.22) {
		val = math.Max(val, 2100) // heart
	}
	return val
}

// ultrasound is a sector scan, 0 to 1, apex at the top, with a cyst that moves with pos.
func ultrasound(u, v, pos float64) float64 {
	dy := v + 1
	r := math.Hypot(u, dy)
	angle := math.Atan2(u, dy)
	if r < 0.15 || r > 1.9 || math.Abs(angle) > 0.6 {
		return 0
	}
	val := 0.35 + 0.1*math.Sin(r*18)
	if inEllipse(u, v, -0.2+0.4*pos, 0.3, 0.18, 0.14) {
		val = 0.05 // a cyst
	}
	if math.Abs(v-0.75) < 0.03 {
		val = 0.9 // a bright interface
	}
	return val
}

func clamp(f, lo, hi float64) float64 {
	return math.Max(lo, math.Min(hi, f))
}

// validUID reports whether s is a UID as DICOM allows: digits and dots, at most 64
// characters, no empty components.
func validUID(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if s[i-1] == '.' {
				return false
			}
			continue
		}
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

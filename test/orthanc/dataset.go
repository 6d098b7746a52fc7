package orthanc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// Source ids of the two test trusts: the ids the proxy's configuration gives the Orthancs and
// the holder names in a Manifest.
const (
	SourceA = "ORA"
	SourceB = "ORB"
)

// NHS numbers of the test patients. Both are valid (modulus-11 check digit).
const (
	// PatientAlpha has studies at both trusts, one of them held by both.
	PatientAlpha = "9434765919"
	// PatientBravo has studies at SourceA only.
	PatientBravo = "9449306052"
)

// Keys of the data set's studies in a Manifest.
const (
	// StudyShared is held by both trusts; SourceB's copy has a series SourceA lacks and
	// SourceA's copy has an instance SourceB lacks.
	StudyShared = "SHARED"
	// StudyAlphaA is PatientAlpha's JPEG and JPEG 2000 study at SourceA.
	StudyAlphaA = "ALPHA_A"
	// StudyAlphaA2 is PatientAlpha's segmentation study at SourceA, on the same date as StudyAlphaB
	// and earlier that day, though its UID sorts first: the order of search results by StudyTime
	// differs from their order by UID.
	StudyAlphaA2 = "ALPHA_A2"
	// StudyAlphaB is PatientAlpha's RT dose and ECG study at SourceB.
	StudyAlphaB = "ALPHA_B"
	// StudyBravoA is PatientBravo's study at SourceA.
	StudyBravoA = "BRAVO_A"
)

// dataSetVersion changes every UID (and so the cache) when the data set's design changes.
const dataSetVersion = "nirproxy-testdata-v1"

// studySpec, seriesSpec and instanceSpec describe the data set before it is built.
type studySpec struct {
	Key, PatientID, PatientName, BirthDate, Sex string
	Date, Time, Accession, Description          string
	Series                                      []seriesSpec
}

type seriesSpec struct {
	Key, Description string
	Number           int
	Instances        []instanceSpec
}

// instanceSpec names a pydicom test file and what is known of it (checked against Orthanc by
// this package's tests).
type instanceSpec struct {
	Key, Source                              string
	Holders                                  []string
	Modality, SOPClassUID, TransferSyntaxUID string
	Frames, Rows, Columns                    int
	HasPixels, Renderable, TranscodeUnsafe   bool
}

// Well-known UIDs of the files used.
const (
	tsExplicitLE   = "1.2.840.10008.1.2.1"
	tsImplicitLE   = "1.2.840.10008.1.2"
	tsRLE          = "1.2.840.10008.1.2.5"
	tsJPEGBaseline = "1.2.840.10008.1.2.4.50"
	tsJPEGLS       = "1.2.840.10008.1.2.4.80"
	tsJPEG2000     = "1.2.840.10008.1.2.4.91"
	classCT        = "1.2.840.10008.5.1.4.1.1.2"
	classMR        = "1.2.840.10008.5.1.4.1.1.4"
	classSC        = "1.2.840.10008.5.1.4.1.1.7"
	classRTDose    = "1.2.840.10008.5.1.4.1.1.481.2"
	classECG       = "1.2.840.10008.5.1.4.1.1.9.1.1"
	classSeg       = "1.2.840.10008.5.1.4.1.1.66.4"
	classSR        = "1.2.840.10008.5.1.4.1.1.88.33"
)

// dataSetSpec is the integration data set: real files from pydicom, relabelled.
func dataSetSpec() []studySpec {
	both := []string{SourceA, SourceB}
	onlyA := []string{SourceA}
	onlyB := []string{SourceB}
	return []studySpec{
		{
			Key: StudyShared, PatientID: PatientAlpha, PatientName: "TESTPATIENT^ALPHA", BirthDate: "19700101", Sex: "F",
			Date: "20240315", Time: "101500", Accession: "NIRACC0001", Description: "CT MR SHARED",
			Series: []seriesSpec{
				{Key: "SHARED_CT", Number: 1, Description: "CT SMALL", Instances: []instanceSpec{
					{Key: "SHARED_CT_1", Source: "CT_small.dcm", Holders: both, Modality: "CT", SOPClassUID: classCT,
						TransferSyntaxUID: tsExplicitLE, Frames: 1, Rows: 128, Columns: 128, HasPixels: true, Renderable: true},
				}},
				{Key: "SHARED_MR", Number: 2, Description: "MR SMALL", Instances: []instanceSpec{
					{Key: "SHARED_MR_1", Source: "MR_small.dcm", Holders: both, Modality: "MR", SOPClassUID: classMR,
						TransferSyntaxUID: tsExplicitLE, Frames: 1, Rows: 64, Columns: 64, HasPixels: true, Renderable: true},
					{Key: "SHARED_MR_2", Source: "MR_small_jpeg_ls_lossless.dcm", Holders: onlyA, Modality: "MR", SOPClassUID: classMR,
						TransferSyntaxUID: tsJPEGLS, Frames: 1, Rows: 64, Columns: 64, HasPixels: true, Renderable: true},
				}},
				{Key: "SHARED_OT", Number: 3, Description: "RGB RLE TWO FRAMES", Instances: []instanceSpec{
					{Key: "SHARED_OT_1", Source: "SC_rgb_rle_2frame.dcm", Holders: onlyB, Modality: "OT", SOPClassUID: classSC,
						TransferSyntaxUID: tsRLE, Frames: 2, Rows: 100, Columns: 100, HasPixels: true, Renderable: true},
				}},
			},
		},
		{
			Key: StudyAlphaA, PatientID: PatientAlpha, PatientName: "TESTPATIENT^ALPHA", BirthDate: "19700101", Sex: "F",
			Date: "20230601", Time: "090000", Accession: "NIRACC0002", Description: "NM JPEG2000 AND JPEG",
			Series: []seriesSpec{
				{Key: "ALPHA_A_NM", Number: 1, Description: "NM JPEG 2000", Instances: []instanceSpec{
					{Key: "ALPHA_A_NM_1", Source: "JPEG2000.dcm", Holders: onlyA, Modality: "NM", SOPClassUID: classSC,
						TransferSyntaxUID: tsJPEG2000, Frames: 1, Rows: 1024, Columns: 256, HasPixels: true, Renderable: true,
						TranscodeUnsafe: true},
				}},
				{Key: "ALPHA_A_OT", Number: 2, Description: "RGB JPEG BASELINE", Instances: []instanceSpec{
					{Key: "ALPHA_A_OT_1", Source: "SC_rgb_jpeg_dcmtk.dcm", Holders: onlyA, Modality: "OT", SOPClassUID: classSC,
						TransferSyntaxUID: tsJPEGBaseline, Frames: 1, Rows: 100, Columns: 100, HasPixels: true, Renderable: true},
				}},
			},
		},
		{
			Key: StudyAlphaA2, PatientID: PatientAlpha, PatientName: "TESTPATIENT^ALPHA", BirthDate: "19700101", Sex: "F",
			Date: "20220110", Time: "083000", Accession: "NIRACC0003", Description: "SEG LIVER",
			Series: []seriesSpec{
				{Key: "ALPHA_A2_SEG", Number: 1, Description: "LIVER SEGMENTATION", Instances: []instanceSpec{
					{Key: "ALPHA_A2_SEG_1", Source: "liver_1frame.dcm", Holders: onlyA, Modality: "SEG", SOPClassUID: classSeg,
						TransferSyntaxUID: tsExplicitLE, Frames: 1, Rows: 512, Columns: 512, HasPixels: true, Renderable: true},
				}},
			},
		},
		{
			Key: StudyAlphaB, PatientID: PatientAlpha, PatientName: "TESTPATIENT^ALPHA", BirthDate: "19700101", Sex: "F",
			Date: "20220110", Time: "140000", Accession: "NIRACC0004", Description: "RT DOSE AND ECG",
			Series: []seriesSpec{
				{Key: "ALPHA_B_RTDOSE", Number: 1, Description: "RT DOSE 15 FRAMES", Instances: []instanceSpec{
					{Key: "ALPHA_B_RTDOSE_1", Source: "rtdose.dcm", Holders: onlyB, Modality: "RTDOSE", SOPClassUID: classRTDose,
						TransferSyntaxUID: tsImplicitLE, Frames: 15, Rows: 10, Columns: 10, HasPixels: true},
				}},
				{Key: "ALPHA_B_ECG", Number: 2, Description: "TWELVE LEAD ECG", Instances: []instanceSpec{
					{Key: "ALPHA_B_ECG_1", Source: "waveform_ecg.dcm", Holders: onlyB, Modality: "ECG", SOPClassUID: classECG,
						TransferSyntaxUID: tsExplicitLE},
				}},
			},
		},
		{
			Key: StudyBravoA, PatientID: PatientBravo, PatientName: "TESTPATIENT^BRAVO", BirthDate: "19811111", Sex: "M",
			Date: "20210520", Time: "113000", Accession: "NIRACC0005", Description: "MR HEAD WITH REPORT",
			Series: []seriesSpec{
				{Key: "BRAVO_A_MR", Number: 1, Description: "MR SMALL", Instances: []instanceSpec{
					{Key: "BRAVO_A_MR_1", Source: "MR_small.dcm", Holders: onlyA, Modality: "MR", SOPClassUID: classMR,
						TransferSyntaxUID: tsExplicitLE, Frames: 1, Rows: 64, Columns: 64, HasPixels: true, Renderable: true},
				}},
				{Key: "BRAVO_A_SR", Number: 2, Description: "STRUCTURED REPORT", Instances: []instanceSpec{
					{Key: "BRAVO_A_SR_1", Source: "test-SR.dcm", Holders: onlyA, Modality: "SR", SOPClassUID: classSR,
						TransferSyntaxUID: tsExplicitLE},
				}},
			},
		},
	}
}

// Manifest describes a built data set: which file goes to which Orthanc and every UID the
// tests expect. It is written as manifest.json beside the files, for the Node tests too.
type Manifest struct {
	// Version names the data set's design; UIDs change with it.
	Version string `json:"version"`
	// Dir is the directory holding the files.
	Dir string `json:"dir"`
	// Sources are the holder names used below, in the proxy's priority order.
	Sources []string        `json:"sources"`
	Studies []ManifestStudy `json:"studies"`
}

// ManifestStudy is one study of the data set.
type ManifestStudy struct {
	Key              string           `json:"key"`
	StudyInstanceUID string           `json:"studyInstanceUID"`
	PatientID        string           `json:"patientID"`
	PatientName      string           `json:"patientName"`
	StudyDate        string           `json:"studyDate"`
	StudyTime        string           `json:"studyTime"`
	AccessionNumber  string           `json:"accessionNumber"`
	StudyDescription string           `json:"studyDescription"`
	Holders          []string         `json:"holders"`
	Series           []ManifestSeries `json:"series"`
}

// ManifestSeries is one series of a study.
type ManifestSeries struct {
	Key               string             `json:"key"`
	SeriesInstanceUID string             `json:"seriesInstanceUID"`
	SeriesNumber      int                `json:"seriesNumber"`
	SeriesDescription string             `json:"seriesDescription"`
	Modality          string             `json:"modality"`
	Holders           []string           `json:"holders"`
	Instances         []ManifestInstance `json:"instances"`
}

// ManifestInstance is one instance (one file) of a series.
type ManifestInstance struct {
	Key               string `json:"key"`
	SOPInstanceUID    string `json:"sopInstanceUID"`
	SOPClassUID       string `json:"sopClassUID"`
	TransferSyntaxUID string `json:"transferSyntaxUID"`
	Modality          string `json:"modality"`
	// File is the built file's name within Manifest.Dir.
	File string `json:"file"`
	// Source is the pydicom test file it was made from.
	Source  string   `json:"source"`
	Holders []string `json:"holders"`
	// Frames, Rows and Columns are 0 for instances without pixel data.
	Frames  int `json:"frames"`
	Rows    int `json:"rows"`
	Columns int `json:"columns"`
	// HasPixels says the instance has a PixelData element (frames can be asked for).
	HasPixels bool `json:"hasPixels"`
	// Renderable says Orthanc renders it (rendered, thumbnail); RT dose and non-images do not.
	Renderable bool `json:"renderable"`
	// TranscodeUnsafe says Orthanc must only be asked for it as stored (transfer-syntax=*) or
	// rendered: transcoding it (JPEG 2000 through GDCM) crashes Orthanc 1.10 on Debian 12.
	TranscodeUnsafe bool `json:"transcodeUnsafe"`
}

// Study returns the study with key, or panics: keys are constants of this package.
func (m *Manifest) Study(key string) *ManifestStudy {
	for i := range m.Studies {
		if m.Studies[i].Key == key {
			return &m.Studies[i]
		}
	}
	panic("orthanc: no study " + key + " in the manifest")
}

// SeriesByKey returns the series with key, or panics.
func (s *ManifestStudy) SeriesByKey(key string) *ManifestSeries {
	for i := range s.Series {
		if s.Series[i].Key == key {
			return &s.Series[i]
		}
	}
	panic("orthanc: no series " + key + " in study " + s.Key)
}

// Instances returns every instance of the study, in manifest order.
func (s *ManifestStudy) Instances() []ManifestInstance {
	var out []ManifestInstance
	for _, se := range s.Series {
		out = append(out, se.Instances...)
	}
	return out
}

// Instance returns the instance with key from any study, with its study and series, or panics.
func (m *Manifest) Instance(key string) (*ManifestStudy, *ManifestSeries, *ManifestInstance) {
	for i := range m.Studies {
		st := &m.Studies[i]
		for j := range st.Series {
			se := &st.Series[j]
			for k := range se.Instances {
				if se.Instances[k].Key == key {
					return st, se, &se.Instances[k]
				}
			}
		}
	}
	panic("orthanc: no instance " + key + " in the manifest")
}

// StudiesOf returns the studies of patientID held by holder ("" for any holder).
func (m *Manifest) StudiesOf(patientID, holder string) []ManifestStudy {
	var out []ManifestStudy
	for _, st := range m.Studies {
		if st.PatientID == patientID && (holder == "" || slices.Contains(st.Holders, holder)) {
			out = append(out, st)
		}
	}
	return out
}

// FilesFor returns the paths of the files holder must be loaded with.
func (m *Manifest) FilesFor(holder string) []string {
	var out []string
	for _, st := range m.Studies {
		for _, in := range st.Instances() {
			if slices.Contains(in.Holders, holder) {
				out = append(out, filepath.Join(m.Dir, in.File))
			}
		}
	}
	return out
}

// Path returns the full path of an instance's file.
func (m *Manifest) Path(in *ManifestInstance) string { return filepath.Join(m.Dir, in.File) }

// uidFor derives a stable UID under the 2.25 (UUID-derived) root from name, so a rebuilt data
// set has the same UIDs.
func uidFor(name string) string {
	sum := sha256.Sum256([]byte(dataSetVersion + "/" + name))
	sum[6] = sum[6]&0x0f | 0x80 // shape it as a name-based UUID, as 2.25 UIDs are
	sum[8] = sum[8]&0x3f | 0x80
	return "2.25." + new(big.Int).SetBytes(sum[:16]).String()
}

// manifestFor lays out the manifest of the spec in dir, without building anything.
func manifestFor(spec []studySpec, dir string) *Manifest {
	m := &Manifest{Version: dataSetVersion, Dir: dir, Sources: []string{SourceA, SourceB}}
	for _, st := range spec {
		ms := ManifestStudy{
			Key: st.Key, StudyInstanceUID: uidFor("study/" + st.Key), PatientID: st.PatientID,
			PatientName: st.PatientName, StudyDate: st.Date, StudyTime: st.Time,
			AccessionNumber: st.Accession, StudyDescription: st.Description,
		}
		for _, se := range st.Series {
			mse := ManifestSeries{
				Key: se.Key, SeriesInstanceUID: uidFor("series/" + se.Key), SeriesNumber: se.Number,
				SeriesDescription: se.Description,
			}
			for _, in := range se.Instances {
				mse.Modality = in.Modality
				mse.Instances = append(mse.Instances, ManifestInstance{
					Key: in.Key, SOPInstanceUID: uidFor("instance/" + in.Key), SOPClassUID: in.SOPClassUID,
					TransferSyntaxUID: in.TransferSyntaxUID, Modality: in.Modality,
					File: in.Key + ".dcm", Source: in.Source, Holders: in.Holders,
					Frames: in.Frames, Rows: in.Rows, Columns: in.Columns,
					HasPixels: in.HasPixels, Renderable: in.Renderable, TranscodeUnsafe: in.TranscodeUnsafe,
				})
				mse.Holders = union(mse.Holders, in.Holders)
			}
			ms.Holders = union(ms.Holders, mse.Holders)
			ms.Series = append(ms.Series, mse)
		}
		m.Studies = append(m.Studies, ms)
	}
	return m
}

// union returns the sources in a or b, in the order of SourceA, SourceB.
func union(a, b []string) []string {
	var out []string
	for _, s := range []string{SourceA, SourceB} {
		if slices.Contains(a, s) || slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// DefaultDataDir is where BuildDataSet keeps data sets unless told otherwise:
// $NIRPROXY_TESTDATA_DIR, else a directory under the system's temporary directory.
func DefaultDataDir() string {
	if d := os.Getenv("NIRPROXY_TESTDATA_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "nirproxy-testdata")
}

// BuildDataSet builds the integration data set under root (DefaultDataDir when empty) from
// pydicom's test files with dcmodify, unless an identical build is already there, and returns
// its manifest. Builds are keyed by a hash of the design and the source files, and made in a
// scratch directory renamed into place, so concurrent test binaries can share one.
func BuildDataSet(ctx context.Context, root string) (*Manifest, error) {
	if root == "" {
		root = DefaultDataDir()
	}
	spec := dataSetSpec()
	key, err := specKey(spec)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, key)
	if m, err := ReadManifest(filepath.Join(dir, "manifest.json")); err == nil {
		return m, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("create data set root %s: %w", root, err)
	}
	scratch, err := os.MkdirTemp(root, key+".build-")
	if err != nil {
		return nil, fmt.Errorf("create scratch directory for the data set: %w", err)
	}
	defer os.RemoveAll(scratch)
	m := manifestFor(spec, scratch)
	for i := range spec {
		st := &spec[i]
		ms := m.Study(st.Key)
		for j := range st.Series {
			se := &st.Series[j]
			mse := ms.SeriesByKey(se.Key)
			for k := range se.Instances {
				if err := relabel(ctx, st, se, ms, mse, &mse.Instances[k], scratch); err != nil {
					return nil, err
				}
			}
		}
	}
	m.Dir = dir
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode the data set's manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(scratch, "manifest.json"), data, 0o644); err != nil {
		return nil, fmt.Errorf("write the data set's manifest: %w", err)
	}
	if err := os.Rename(scratch, dir); err != nil {
		// Another process may have finished the same build first; use its copy.
		if m2, err2 := ReadManifest(filepath.Join(dir, "manifest.json")); err2 == nil {
			return m2, nil
		}
		return nil, fmt.Errorf("move the data set into %s: %w", dir, err)
	}
	return m, nil
}

// ReadManifest reads a manifest.json written by BuildDataSet.
func ReadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode manifest %s: %w", path, err)
	}
	if m.Version != dataSetVersion || len(m.Studies) == 0 {
		return nil, fmt.Errorf("manifest %s: version %q, want %q", path, m.Version, dataSetVersion)
	}
	return &m, nil
}

// specKey hashes the design and the size of every source file into a directory name.
func specKey(spec []studySpec) (string, error) {
	h := sha256.New()
	enc, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("encode data set design: %w", err)
	}
	h.Write(enc)
	for _, st := range spec {
		for _, se := range st.Series {
			for _, in := range se.Instances {
				fi, err := os.Stat(filepath.Join(PydicomTestFiles, in.Source))
				if err != nil {
					return "", fmt.Errorf("find pydicom test file %s (%s): %w", in.Source, InstallHint, err)
				}
				fmt.Fprintf(h, "%s:%d;", in.Source, fi.Size())
			}
		}
	}
	return dataSetVersion + "-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// relabel copies one pydicom file into dir and rewrites its patient, study, series and
// instance attributes with dcmodify.
func relabel(ctx context.Context, st *studySpec, se *seriesSpec, ms *ManifestStudy, mse *ManifestSeries, in *ManifestInstance, dir string) error {
	dst := filepath.Join(dir, in.File)
	if err := copyFile(filepath.Join(PydicomTestFiles, in.Source), dst); err != nil {
		return err
	}
	args := []string{"-nb", "-imt"}
	for _, kv := range [][2]string{
		{"PatientID", st.PatientID},
		{"PatientName", st.PatientName},
		{"PatientBirthDate", st.BirthDate},
		{"PatientSex", st.Sex},
		{"StudyInstanceUID", ms.StudyInstanceUID},
		{"StudyDate", st.Date},
		{"StudyTime", st.Time},
		{"StudyID", st.Key},
		{"AccessionNumber", st.Accession},
		{"StudyDescription", st.Description},
		{"ReferringPhysicianName", "TESTREFERRER^NIRPROXY"},
		{"SeriesInstanceUID", mse.SeriesInstanceUID},
		{"SeriesNumber", strconv.Itoa(se.Number)},
		{"SeriesDescription", se.Description},
		{"SOPInstanceUID", in.SOPInstanceUID},
		{"InstanceNumber", strconv.Itoa(instanceNumber(mse, in))},
	} {
		args = append(args, "-i", kv[0]+"="+kv[1])
	}
	// Identifiers of the original subjects that would otherwise survive the relabelling.
	// They are given by number: dcmtk's dictionary calls (0010,1000) RETIRED_OtherPatientIDs.
	for _, tag := range []string{"(0010,1000)", "(0010,1002)", "(0010,1001)", "(0010,0021)"} {
		args = append(args, "-e", tag)
	}
	args = append(args, dst)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dcmodify", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("relabel %s with dcmodify: %w: %s", in.Source, err, out)
	}
	return nil
}

// instanceNumber is the 1-based position of in within its series.
func instanceNumber(se *ManifestSeries, in *ManifestInstance) int {
	for i := range se.Instances {
		if se.Instances[i].Key == in.Key {
			return i + 1
		}
	}
	return 1
}

// copyFile copies src to dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}

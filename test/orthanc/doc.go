// Package orthanc runs the real servers nirproxy's integration, conformance and chaos tests
// talk to: Orthanc 1.10 (Debian's orthanc, with the orthanc-dicomweb and orthanc-gdcm plugins)
// as each trust's PACS, and the nirproxy binary itself, each as a direct child process on a
// free loopback port; and it builds the integration data set from the real DICOM files that
// Debian's python3-pydicom ships, relabelled with dcmtk's dcmodify.
//
// # Typical use
//
//	func TestMain(m *testing.M) {
//		if err := orthanc.MissingError(); err != nil { ... skip, or fail when orthanc.Strict() }
//		manifest, _ := orthanc.BuildDataSet(ctx, "")
//		servers, _ := orthanc.StartMany(ctx, orthanc.Options{}, manifest.Sources...)
//		for _, s := range servers {
//			s.UploadFiles(ctx, manifest.FilesFor(s.Name)...)
//		}
//		bin, _ := orthanc.BuildProxy(ctx, t.TempDir())
//		proxy, _ := orthanc.StartProxy(ctx, orthanc.ProxyOptions{Binary: bin, Sources: ...})
//		...
//	}
//
// In a test, Require(t) skips (or, with NIRPROXY_REQUIRE_REAL_SERVERS=1, fails) when a tool
// is missing.
//
// # The data set
//
// Patient 9434765919 (PatientAlpha) has four studies: StudyShared at both trusts (ORA and ORB),
// where ORB's copy has a series ORA's lacks and ORA's copy has an instance ORB's lacks;
// StudyAlphaA and StudyAlphaA2 at ORA; StudyAlphaB at ORB (on the same date as StudyAlphaA2 but
// later that day, though its UID sorts after StudyAlphaA2's, so that sorting by StudyTime and
// sorting by UID give different orders).
// Patient 9449306052 (PatientBravo) has one study, at ORA. The files cover uncompressed,
// implicit VR, RLE (multi-frame), JPEG baseline, JPEG-LS and JPEG 2000 pixel data, a 15-frame
// RT dose, an ECG waveform (nested bulk data), a segmentation and a structured report. UIDs are
// derived from names, so every build has the same ones. The Manifest (also written as
// manifest.json) says which file goes to which Orthanc and every UID tests expect.
//
// # Orthanc facts the tests rely on
//
//   - GDCM is restricted to JPEG 2000: left to take every transfer syntax it crashes Orthanc.
//   - Transcoding JPEG 2000 (a retrieve or frames request without transfer-syntax=*) still
//     segfaults Orthanc within a few requests; ManifestInstance.TranscodeUnsafe marks such
//     instances, and tests only ask for them as stored or rendered.
//   - Orthanc omits PixelData from metadata for encapsulated (compressed) instances, so bulk
//     data links exist only for uncompressed pixel data and other binary attributes.
//   - Orthanc does not decode %2A or %2C in query values: `StudyDescription=%2ASHARED%2A`
//     matches nothing and `includefield=00081030%2C00080020` includes nothing; `*`, `?` and
//     `,` must be sent unescaped.
//   - Frames requests with `image/jpeg` and no transfer-syntax get JPEG lossless (the PS3.18
//     default), not the stored baseline bitstream.
package orthanc

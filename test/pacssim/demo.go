package pacssim

// The demo's patients, trusts and the UIDs tests name. UIDs live under a made-up root
// (1.2.999 is no ISO member body); series are StudyUID.N and instances SeriesUID.N.
const (
	DemoUIDRoot = "1.2.999.826"
	DemoSeed    = 20250101

	// DemoPatientNHSNumber has studies at all three trusts, one of them at two.
	DemoPatientNHSNumber = "9434765919"
	DemoPatientName      = "DEMO^ALICE"
	// DemoPatientLocalID is her PatientID at XC3, which keeps NHS numbers in
	// OtherPatientIDsSequence.
	DemoPatientLocalID = "MRN12345"

	// DemoSecondPatientNHSNumber has studies at XB2 only.
	DemoSecondPatientNHSNumber = "9449306052"
	DemoSecondPatientName      = "DEMO^BOB"

	DemoTrustA = "XA1" // Northfield: NHS number in PatientID, no thumbnails
	DemoTrustB = "XB2" // Southbank: NHS number in PatientID, thumbnails
	DemoTrustC = "XC3" // Westmoor: NHS number in OtherPatientIDsSequence (issuer "NHS")

	// DemoHeadCTStudyUID is Alice's CT head at XA1.
	DemoHeadCTStudyUID = DemoUIDRoot + ".1.1"
	// DemoSharedStudyUID is Alice's MR knee, held at XA1 (series 1 and 2) and XB2
	// (series 1, 2 and DemoSharedExtraSeriesUID): the proxy must union the copies.
	DemoSharedStudyUID       = DemoUIDRoot + ".1.2"
	DemoSharedExtraSeriesUID = DemoSharedStudyUID + ".3"
	// DemoChestCRStudyUID is Alice's chest radiograph at XB2.
	DemoChestCRStudyUID = DemoUIDRoot + ".1.3"
	// DemoUltrasoundStudyUID is Alice's abdominal ultrasound at XC3: an RGB series and
	// the multi-frame cine series.
	DemoUltrasoundStudyUID      = DemoUIDRoot + ".1.4"
	DemoMultiFrameSeriesUID     = DemoUltrasoundStudyUID + ".2"
	DemoMultiFrameInstanceUID   = DemoMultiFrameSeriesUID + ".1"
	DemoMultiFrameFrames        = 16
	DemoHandDXStudyUID          = DemoUIDRoot + ".1.5"
	DemoSecondPatientCTStudyUID = DemoUIDRoot + ".2.1"
	DemoSecondPatientCRStudyUID = DemoUIDRoot + ".2.2"
)

// Trust names of the demo.
const (
	DemoTrustAName = "Northfield Demo Hospitals NHS Trust"
	DemoTrustBName = "Southbank Demo Hospitals NHS Trust"
	DemoTrustCName = "Westmoor Demo Hospitals NHS Trust"
)

// DemoTrusts returns the demo's three trusts, XA1, XB2 and XC3, in that order. Patient
// 9434765919 (DEMO^ALICE) has studies at all three, and DemoSharedStudyUID at XA1 and XB2,
// XB2's copy holding one series more. Patient 9449306052 (DEMO^BOB) has two studies at XB2
// only. Together they hold CT, MR, CR, DX and US images (16-bit and 8-bit greyscale, RGB)
// and one multi-frame instance, about 2.5 MB in all; making them takes a fraction of a
// second.
func DemoTrusts() ([]*Trust, error) {
	alice := Patient{NHSNumber: DemoPatientNHSNumber, LocalID: DemoPatientLocalID, Name: DemoPatientName, BirthDate: "19800214", Sex: "F"}
	bob := Patient{NHSNumber: DemoSecondPatientNHSNumber, LocalID: "MRN67890", Name: DemoSecondPatientName, BirthDate: "19521103", Sex: "M"}

	headCT := StudySpec{
		UID: DemoHeadCTStudyUID, Patient: alice, Date: "20210314", Time: "091500", AccessionNumber: "XA1-0001",
		StudyID: "1001", Description: "CT HEAD WITHOUT CONTRAST", ReferringPhysician: "GREEN^HANNAH", Institution: DemoTrustAName,
		Series: []SeriesSpec{
			{Number: 1, Modality: "CT", Description: "Scout", BodyPart: "HEAD", Instances: 1, Rows: 128, Columns: 128},
			{Number: 2, Modality: "CT", Description: "Axial 5mm", BodyPart: "HEAD", Instances: 12, Rows: 128, Columns: 128},
		},
	}
	sharedAtA := StudySpec{
		UID: DemoSharedStudyUID, Patient: alice, Date: "20230602", Time: "143000", AccessionNumber: "XA1-0002",
		StudyID: "1002", Description: "MR KNEE LEFT", ReferringPhysician: "OKAFOR^JAMES", Institution: DemoTrustAName,
		Series: []SeriesSpec{
			{Number: 1, Modality: "MR", Description: "Sag T1", BodyPart: "KNEE", Instances: 8, Rows: 128, Columns: 128},
			{Number: 2, Modality: "MR", Description: "Sag T2", BodyPart: "KNEE", Instances: 8, Rows: 128, Columns: 128},
		},
	}
	// XB2 received a copy of the knee MR and later added a series of its own.
	sharedAtB := sharedAtA
	sharedAtB.Series = append(append([]SeriesSpec(nil), sharedAtA.Series...),
		SeriesSpec{UID: DemoSharedExtraSeriesUID, Number: 3, Modality: "MR", Description: "Cor PD", BodyPart: "KNEE", Instances: 6, Rows: 128, Columns: 128})
	chestCR := StudySpec{
		UID: DemoChestCRStudyUID, Patient: alice, Date: "20240120", Time: "101010", AccessionNumber: "XB2-0001",
		StudyID: "2001", Description: "XR CHEST", ReferringPhysician: "PATEL^ASHA", Institution: DemoTrustBName,
		Series: []SeriesSpec{
			{Number: 1, Modality: "CR", Description: "Chest PA and lateral", BodyPart: "CHEST", Instances: 2, Rows: 192, Columns: 160},
		},
	}
	bobCT := StudySpec{
		UID: DemoSecondPatientCTStudyUID, Patient: bob, Date: "20250305", Time: "080000", AccessionNumber: "XB2-0002",
		StudyID: "2002", Description: "CT CHEST", ReferringPhysician: "PATEL^ASHA", Institution: DemoTrustBName,
		Series: []SeriesSpec{
			{Number: 1, Modality: "CT", Description: "Axial 5mm", BodyPart: "CHEST", Instances: 10, Rows: 128, Columns: 128},
		},
	}
	bobCR := StudySpec{
		UID: DemoSecondPatientCRStudyUID, Patient: bob, Date: "20250301", Time: "170000", AccessionNumber: "XB2-0003",
		StudyID: "2003", Description: "XR CHEST", ReferringPhysician: "PATEL^ASHA", Institution: DemoTrustBName,
		Series: []SeriesSpec{
			{Number: 1, Modality: "CR", Description: "Chest PA", BodyPart: "CHEST", Instances: 1, Rows: 192, Columns: 160},
		},
	}
	ultrasound := StudySpec{
		UID: DemoUltrasoundStudyUID, Patient: alice, Date: "20220909", Time: "113000", AccessionNumber: "XC3-0001",
		StudyID: "3001", Description: "US ABDOMEN", ReferringPhysician: "NOWAK^EWA", Institution: DemoTrustCName,
		Series: []SeriesSpec{
			{Number: 1, Modality: "US", Description: "Liver Doppler", BodyPart: "ABDOMEN", Instances: 2, Rows: 96, Columns: 128, Pixels: RGB8},
			{Number: 2, Modality: "US", Description: "Liver cine", BodyPart: "ABDOMEN", Instances: 1, Frames: DemoMultiFrameFrames, Rows: 64, Columns: 64, Pixels: Mono8},
		},
	}
	handDX := StudySpec{
		UID: DemoHandDXStudyUID, Patient: alice, Date: "20200707", Time: "154500", AccessionNumber: "XC3-0002",
		StudyID: "3002", Description: "XR HAND RIGHT", ReferringPhysician: "NOWAK^EWA", Institution: DemoTrustCName,
		Series: []SeriesSpec{
			{Number: 1, Modality: "DX", Description: "Hand PA", BodyPart: "HAND", Instances: 2, Rows: 160, Columns: 128},
		},
	}

	a, err := NewTrust(DemoTrustA, DemoTrustAName, Options{Seed: DemoSeed}, headCT, sharedAtA)
	if err != nil {
		return nil, err
	}
	b, err := NewTrust(DemoTrustB, DemoTrustBName, Options{Seed: DemoSeed, Thumbnails: true}, sharedAtB, chestCR, bobCT, bobCR)
	if err != nil {
		return nil, err
	}
	c, err := NewTrust(DemoTrustC, DemoTrustCName, Options{
		Seed:       DemoSeed,
		PatientIDs: PatientIDScheme{InOtherPatientIDs: true, Issuer: "NHS", LocalIssuer: DemoTrustC},
	}, ultrasound, handDX)
	if err != nil {
		return nil, err
	}
	return []*Trust{a, b, c}, nil
}

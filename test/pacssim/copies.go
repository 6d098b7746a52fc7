package pacssim

import "strconv"

// Differing copies: one study held at two trusts whose copies overlap but differ, neither
// holding every instance the other has, so a proxy can answer it in full only by combining
// both; the second trust can also cap its search answers, as a PACS with a result limit does.
const (
	// CopiesTrustA and CopiesTrustB hold the two copies; A is the one to prefer.
	CopiesTrustA     = "XD4"
	CopiesTrustB     = "XE5"
	CopiesTrustAName = "Eastgate Demo Hospitals NHS Trust"
	CopiesTrustBName = "Riverside Demo Hospitals NHS Trust"

	// CopiesPatientNHSNumber (DEMO^CAROL) has the one study, CopiesStudyUID, at both.
	CopiesPatientNHSNumber = "9990012342"
	CopiesPatientName      = "DEMO^CAROL"

	// CopiesStudyUID is a CT chest held at both trusts:
	//
	//	series                      instances   at XD4   at XE5
	//	CopiesSharedSeriesUID (1)   12          1-8      5-12    both, different instances
	//	CopiesSameSeriesUID (2)     6           1-6      1-6     both, the same instances
	//	CopiesOnlyAtASeriesUID (3)  4           1-4      -       XD4 only
	//	CopiesOnlyAtBSeriesUID (4)  3           -        1-3     XE5 only
	//
	// The union is 25 instances; XD4 holds 18 of them and XE5 17. Instances held at both are
	// byte-identical.
	CopiesStudyUID         = DemoUIDRoot + ".3.1"
	CopiesSharedSeriesUID  = CopiesStudyUID + ".1"
	CopiesSameSeriesUID    = CopiesStudyUID + ".2"
	CopiesOnlyAtASeriesUID = CopiesStudyUID + ".3"
	CopiesOnlyAtBSeriesUID = CopiesStudyUID + ".4"
	// CopiesUnionInstances is how many distinct instances the two copies hold together.
	CopiesUnionInstances = 25
)

// CopiesOptions varies the trusts of CopiesTrusts.
type CopiesOptions struct {
	// SearchCap is XE5's Options.SearchCap: with it below 17, an unpaged search of XE5's
	// instances of the study misses some that only XE5 holds. 0 answers in full.
	SearchCap int
	// Seed is both trusts' seed; 0 uses DemoSeed.
	Seed uint64
}

// CopiesTrusts returns XD4 and XE5 holding their copies of CopiesStudyUID, and nothing
// else. Their instances are small (64 by 64, 16-bit), about 200 KB in all.
func CopiesTrusts(o CopiesOptions) (a, b *Trust, err error) {
	seed := o.Seed
	if seed == 0 {
		seed = DemoSeed
	}
	carol := Patient{NHSNumber: CopiesPatientNHSNumber, LocalID: "MRN24680", Name: CopiesPatientName, BirthDate: "19670925", Sex: "F"}
	spec := StudySpec{
		UID: CopiesStudyUID, Patient: carol, Date: "20240815", Time: "104500", AccessionNumber: "XD4-0001",
		StudyID: "4001", Description: "CT CHEST WITH CONTRAST", ReferringPhysician: "ADEYEMI^TOBI", Institution: CopiesTrustAName,
	}
	series := func(number, instances int, description string, held []int) SeriesSpec {
		return SeriesSpec{Number: number, Modality: "CT", Description: description, BodyPart: "CHEST",
			Instances: instances, Rows: 64, Columns: 64, Held: held}
	}
	atA, atB := spec, spec
	atA.Series = []SeriesSpec{
		series(1, 12, "Axial 5mm", numbers(1, 8)),
		series(2, 6, "Coronal", nil),
		series(3, 4, "Sagittal", nil),
	}
	atB.Series = []SeriesSpec{
		series(1, 12, "Axial 5mm", numbers(5, 12)),
		series(2, 6, "Coronal", nil),
		series(4, 3, "Axial lung window", nil),
	}
	if a, err = NewTrust(CopiesTrustA, CopiesTrustAName, Options{Seed: seed}, atA); err != nil {
		return nil, nil, err
	}
	if b, err = NewTrust(CopiesTrustB, CopiesTrustBName, Options{Seed: seed, SearchCap: o.SearchCap}, atB); err != nil {
		return nil, nil, err
	}
	return a, b, nil
}

// numbers returns from, from+1, ..., to.
func numbers(from, to int) []int {
	var out []int
	for n := from; n <= to; n++ {
		out = append(out, n)
	}
	return out
}

// CopiesInstanceUID names instance n of one of CopiesStudyUID's series.
func CopiesInstanceUID(seriesUID string, n int) string { return seriesUID + "." + strconv.Itoa(n) }

package pacssim

import (
	"bytes"
	"slices"
	"testing"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// TestDemoManifest checks the facts the demo and the proxy's tests rely on.
func TestDemoManifest(t *testing.T) {
	trusts, err := DemoTrusts()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	byID := map[string]*Trust{}
	total := 0
	for _, tr := range trusts {
		ids = append(ids, tr.ID)
		byID[tr.ID] = tr
		for _, in := range tr.Instances() {
			total += len(in.Bytes())
		}
	}
	if !slices.Equal(ids, []string{"XA1", "XB2", "XC3"}) {
		t.Fatalf("trust ids %v", ids)
	}
	if total > 5<<20 {
		t.Errorf("demo data is %d bytes; keep it to a few MB", total)
	}

	// studiesOf lists the studies a trust holds for an NHS number, wherever it keeps it.
	studiesOf := func(tr *Trust, nhs string) []string {
		var out []string
		for _, st := range tr.studies {
			rec := st.instances[0].record
			held := rec.String(dcmjson.TagPatientID) == nhs
			for _, item := range rec.Items(dcmjson.TagOtherPatientIDsSequence) {
				held = held || item.String(dcmjson.TagPatientID) == nhs
			}
			if held {
				out = append(out, st.uid)
			}
		}
		return out
	}
	seriesOf := func(tr *Trust, study string) []string {
		var out []string
		for _, se := range tr.byStudy[study].series {
			out = append(out, se.uid)
		}
		return out
	}

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{name: "first patient at every trust", check: func(t *testing.T) {
			for _, tr := range trusts {
				if len(studiesOf(tr, DemoPatientNHSNumber)) == 0 {
					t.Errorf("%s holds no study of %s", tr.ID, DemoPatientNHSNumber)
				}
			}
		}},
		{name: "second patient at XB2 only", check: func(t *testing.T) {
			for _, tr := range trusts {
				if got := len(studiesOf(tr, DemoSecondPatientNHSNumber)) > 0; got != (tr.ID == DemoTrustB) {
					t.Errorf("%s holds studies of the second patient: %v", tr.ID, got)
				}
			}
		}},
		{name: "shared study at XA1 and XB2, XB2 with one series more", check: func(t *testing.T) {
			a, b := seriesOf(byID["XA1"], DemoSharedStudyUID), seriesOf(byID["XB2"], DemoSharedStudyUID)
			if len(b) != len(a)+1 || !slices.Equal(a, b[:len(a)]) || b[len(a)] != DemoSharedExtraSeriesUID {
				t.Errorf("XA1 series %v, XB2 series %v", a, b)
			}
			if byID["XC3"].byStudy[DemoSharedStudyUID] != nil {
				t.Error("XC3 holds the shared study")
			}
			// The copies of the common series are the same files.
			for _, uid := range a {
				sa, sb := byID["XA1"].byStudy[DemoSharedStudyUID].bySeries[uid], byID["XB2"].byStudy[DemoSharedStudyUID].bySeries[uid]
				for i := range sa.instances {
					if !bytes.Equal(sa.instances[i].Bytes(), sb.instances[i].Bytes()) {
						t.Errorf("instance %s differs between the copies", sa.instances[i].SOPInstanceUID)
					}
				}
			}
		}},
		{name: "XC3 keeps the NHS number in OtherPatientIDsSequence", check: func(t *testing.T) {
			rec := byID["XC3"].studies[0].instances[0].record
			if rec.String(dcmjson.TagPatientID) != DemoPatientLocalID {
				t.Errorf("PatientID %q", rec.String(dcmjson.TagPatientID))
			}
			items := rec.Items(dcmjson.TagOtherPatientIDsSequence)
			if len(items) != 1 || items[0].String(dcmjson.TagIssuerOfPatientID) != "NHS" {
				t.Errorf("OtherPatientIDsSequence %s", mustJSON(items))
			}
		}},
		{name: "multi-frame instance", check: func(t *testing.T) {
			se := byID["XC3"].byStudy[DemoUltrasoundStudyUID].bySeries[DemoMultiFrameSeriesUID]
			if se == nil || se.byInstance[DemoMultiFrameInstanceUID] == nil {
				t.Fatal("multi-frame instance missing")
			}
			if n := se.byInstance[DemoMultiFrameInstanceUID].frames; n != DemoMultiFrameFrames {
				t.Errorf("%d frames", n)
			}
		}},
		{name: "several modalities", check: func(t *testing.T) {
			seen := map[string]bool{}
			for _, tr := range trusts {
				for _, in := range tr.Instances() {
					seen[in.Modality] = true
				}
			}
			for _, m := range []string{"CT", "MR", "CR", "DX", "US"} {
				if !seen[m] {
					t.Errorf("no %s images", m)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.check)
	}
}

package orthanc_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/test/orthanc"
)

// TestDataSetLoadsIntoOrthanc builds the data set, loads it into two Orthancs as the manifest
// says, and checks what each Orthanc then holds against the manifest.
func TestDataSetLoadsIntoOrthanc(t *testing.T) {
	orthanc.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	m, err := orthanc.BuildDataSet(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	servers, err := orthanc.StartMany(ctx, orthanc.Options{}, m.Sources...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		t.Cleanup(func() { _ = s.Stop() })
		if _, err := s.UploadFiles(ctx, m.FilesFor(s.Name)...); err != nil {
			t.Fatal(err)
		}
	}

	for _, s := range servers {
		for _, st := range m.Studies {
			for _, se := range st.Series {
				for _, in := range se.Instances {
					held := slices.Contains(in.Holders, s.Name)
					t.Run(s.Name+"/"+in.Key, func(t *testing.T) {
						status, _, body, err := s.Do(ctx, http.MethodGet,
							"/dicom-web/studies/"+st.StudyInstanceUID+"/series/"+se.SeriesInstanceUID+
								"/instances?SOPInstanceUID="+in.SOPInstanceUID+"&includefield=00280008", nil, nil)
						if err != nil || status != http.StatusOK {
							t.Fatalf("QIDO: status %d, err %v", status, err)
						}
						ds, err := dcmjson.Decode(body)
						if err != nil {
							t.Fatal(err)
						}
						if !held {
							if len(ds) != 0 {
								t.Fatalf("holds %s, which the manifest gives to %v only", in.Key, in.Holders)
							}
							return
						}
						if len(ds) != 1 {
							t.Fatalf("found %d instances for %s, want 1", len(ds), in.Key)
						}
						d := ds[0]
						for tag, want := range map[string]string{
							dcmjson.TagSOPClassUID:      in.SOPClassUID,
							dcmjson.TagStudyInstanceUID: st.StudyInstanceUID,
						} {
							if got := d.String(tag); got != want {
								t.Errorf("%s = %q, want %q", tag, got, want)
							}
						}
						if in.Frames > 1 {
							if n, _ := d.Int(dcmjson.TagNumberOfFrames); int(n) != in.Frames {
								t.Errorf("NumberOfFrames = %d, want %d", n, in.Frames)
							}
						}
						id, err := s.LookupInstance(ctx, in.SOPInstanceUID)
						if err != nil {
							t.Fatal(err)
						}
						status, _, ts, err := s.Do(ctx, http.MethodGet, "/instances/"+id+"/metadata/TransferSyntax", nil, nil)
						if err != nil || status != http.StatusOK {
							t.Fatalf("transfer syntax: status %d, err %v", status, err)
						}
						if string(ts) != in.TransferSyntaxUID {
							t.Errorf("transfer syntax %s, want %s", ts, in.TransferSyntaxUID)
						}
					})
				}
			}
		}
	}

	t.Run("patient searches", func(t *testing.T) {
		for _, s := range servers {
			for _, pid := range []string{orthanc.PatientAlpha, orthanc.PatientBravo} {
				status, _, body, err := s.Do(ctx, http.MethodGet, "/dicom-web/studies?PatientID="+pid, nil, nil)
				if err != nil || status != http.StatusOK {
					t.Fatalf("QIDO: status %d, err %v", status, err)
				}
				ds, err := dcmjson.Decode(body)
				if err != nil {
					t.Fatal(err)
				}
				var got, want []string
				for _, d := range ds {
					got = append(got, d.String(dcmjson.TagStudyInstanceUID))
				}
				for _, st := range m.StudiesOf(pid, s.Name) {
					want = append(want, st.StudyInstanceUID)
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s: studies of a patient %v, want %v", s.Name, got, want)
				}
			}
		}
	})
}

// TestServerLifecycle exercises Pause, Resume, Kill, Restart and Stop on one Orthanc.
func TestServerLifecycle(t *testing.T) {
	orthanc.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	m, err := orthanc.BuildDataSet(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := orthanc.Start(ctx, orthanc.Options{Name: "LIFECYCLE", Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	_, _, in := m.Instance("SHARED_CT_1")
	if _, err := s.Upload(ctx, m.Path(in)); err != nil {
		t.Fatal(err)
	}
	if s.PID() <= 0 || !s.Running() {
		t.Fatalf("pid %d, running %v", s.PID(), s.Running())
	}

	// Without credentials Orthanc refuses.
	resp, err := http.Get(s.URL + "/system")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /system without credentials: %d, want 401", resp.StatusCode)
	}

	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, _, _, err = s.Do(short, http.MethodGet, "/system", nil, nil)
	cancelShort()
	if err == nil {
		t.Error("a paused Orthanc answered")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if status, _, _, err := s.Do(ctx, http.MethodGet, "/system", nil, nil); err != nil || status != http.StatusOK {
		t.Fatalf("after Resume: status %d, err %v", status, err)
	}

	oldPID := s.PID()
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Exited():
	default:
		t.Fatal("Exited not closed after Kill")
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.PID() == oldPID {
		t.Error("Restart kept the old pid")
	}
	file, err := s.InstanceFile(ctx, in.SOPInstanceUID)
	if err != nil {
		t.Fatalf("instance lost across Kill and Restart: %v", err)
	}
	if len(file) < 1000 || !strings.HasPrefix(string(file[128:132]), "DICM") {
		t.Errorf("instance file of %d bytes is not DICOM", len(file))
	}
	var sys struct{ Name string }
	_, _, body, err := s.Do(ctx, http.MethodGet, "/system", nil, nil)
	if err != nil || json.Unmarshal(body, &sys) != nil || sys.Name != "LIFECYCLE" {
		t.Errorf("system name %q (err %v)", sys.Name, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Error("running after Stop")
	}
}

package dicomweb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/upstream"
)

// The benchmarks of this file measure the proxy's own CPU work on the hot paths of searches and
// metadata, without any network: what is left of a request once the upstreams have answered.
// `make bench` runs them and copies their output into docs/performance.md.

// benchNHSNumber is the patient every benchmark answer belongs to (a valid NHS number).
const benchNHSNumber = "9434765919"

// benchSource is a source whose DICOMweb root is http://pacs-<id>.example:8042/dicom-web.
func benchSource(id string, priority int) *upstream.Source {
	u, err := url.Parse("http://pacs-" + id + ".example:8042/dicom-web")
	if err != nil {
		panic(err)
	}
	return &upstream.Source{SourceConfig: upstream.SourceConfig{ID: id, Name: id + " Trust", BaseURL: u,
		Priority: priority, PatientID: upstream.InPatientID}}
}

// benchStudy is a study-level answer as Orthanc 1.10 gives it to the proxy's query (the
// proxy's required fields and Orthanc's defaults), with a RetrieveURL at the source.
func benchStudy(src *upstream.Source, uid string, n int) dcmjson.Dataset {
	ds := dcmjson.Dataset{}
	ds.SetStrings(dcmjson.TagSpecificCharacterSet, "CS", "ISO_IR 100")
	ds.SetStrings(dcmjson.TagStudyDate, "DA", fmt.Sprintf("20%02d%02d%02d", 10+n%15, 1+n%12, 1+n%28))
	ds.SetStrings(dcmjson.TagStudyTime, "TM", fmt.Sprintf("%02d%02d00", n%24, n%60))
	ds.SetStrings(dcmjson.TagAccessionNumber, "SH", fmt.Sprintf("ACC%07d", n))
	ds.SetStrings(dcmjson.TagModalitiesInStudy, "CS", []string{"CT", "MR", "CR", "US"}[n%4])
	ds.SetStrings(dcmjson.TagReferringPhysicianName, "PN", "REFERRER^BENCH")
	ds.SetStrings(dcmjson.TagRetrieveURL, "UR", src.BaseURL.String()+"/studies/"+uid)
	ds.SetStrings(dcmjson.TagPatientName, "PN", "BENCH^PATIENT")
	ds.SetStrings(dcmjson.TagPatientID, "LO", benchNHSNumber)
	ds.SetStrings(dcmjson.TagPatientBirthDate, "DA", "19700101")
	ds.SetStrings(dcmjson.TagPatientSex, "CS", "F")
	ds.SetStrings(dcmjson.TagStudyInstanceUID, "UI", uid)
	ds.SetStrings(dcmjson.TagStudyID, "SH", fmt.Sprint(n))
	ds.SetInt(dcmjson.TagNumberOfStudyRelatedSeries, "IS", int64(1+n%4))
	ds.SetInt(dcmjson.TagNumberOfStudyRelatedInstances, "IS", int64(10+n%300))
	return ds
}

// benchAnswers returns each source's answer of perSource studies of one patient; the first
// shared studies are held by every source (the same UIDs), the rest by one source only.
func benchAnswers(sources []*upstream.Source, perSource, shared int) []sourceAnswer {
	out := make([]sourceAnswer, len(sources))
	for i, src := range sources {
		a := sourceAnswer{source: src}
		for n := 0; n < perSource; n++ {
			uid := fmt.Sprintf("1.2.826.0.1.3680043.10.543.%d.%d", i, n)
			if n < shared {
				uid = fmt.Sprintf("1.2.826.0.1.3680043.10.543.9.%d", n)
			}
			a.results = append(a.results, benchStudy(src, uid, n))
		}
		out[i] = a
	}
	return out
}

// benchSearchSize is the shape of a search benchmark: sources × studies per source.
type benchSearchSize struct {
	name               string
	sources, perSource int
}

// benchSearchSizes are the shapes the search benchmarks run at.
func benchSearchSizes() []benchSearchSize {
	return []benchSearchSize{
		{name: "1x500", sources: 1, perSource: 500},
		{name: "3x500", sources: 3, perSource: 500},
	}
}

func benchSources(n int) []*upstream.Source {
	ids := []string{"RXA", "RXB", "RXC"}
	out := make([]*upstream.Source, n)
	for i := range out {
		out[i] = benchSource(ids[i], i+1)
	}
	return out
}

// BenchmarkSearchMergeSort merges the sources' answers into one entry per study (a fifth of
// the studies held by every source) and sorts them, as every study search does.
func BenchmarkSearchMergeSort(b *testing.B) {
	for _, size := range benchSearchSizes() {
		b.Run(size.name, func(b *testing.B) {
			answers := benchAnswers(benchSources(size.sources), size.perSource, size.perSource/5)
			b.ReportAllocs()
			for b.Loop() {
				all := mergeAnswers(StudyLevel, answers)
				sortResults(all)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(size.sources*size.perSource), "ns/study")
		})
	}
}

// BenchmarkSearchAnswer is the whole of a study search's work after the fan-out: decoding each
// source's DICOM JSON, filtering, normalising the patient identity, rewriting URLs, merging,
// sorting, paging and encoding the answer.
func BenchmarkSearchAnswer(b *testing.B) {
	lim := testConfig("").Search
	search, err := parseSearch(StudyLevel, "", "", url.Values{"PatientID": {benchNHSNumber}}, lim)
	if err != nil {
		b.Fatal(err)
	}
	rw := &rewriter{base: "https://nirproxy.example/dicom-web", signer: NewSigner([]byte("0123456789abcdef0123456789abcdef"), 12*time.Hour, nil)}
	for _, size := range benchSearchSizes() {
		b.Run(size.name, func(b *testing.B) {
			answers := benchAnswers(benchSources(size.sources), size.perSource, size.perSource/5)
			bodies := make([][]byte, len(answers))
			for i, a := range answers {
				if bodies[i], err = json.Marshal(a.results); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				var got []sourceAnswer
				for i, a := range answers {
					list, err := dcmjson.Decode(bodies[i])
					if err != nil {
						b.Fatal(err)
					}
					kept, _ := filterAnswer(search, a.source, list)
					for _, ds := range kept {
						normalise(ds, a.source, "2.16.840.1.113883.2.1.4.1")
						rw.rewriteDataset(ds, a.source)
					}
					got = append(got, sourceAnswer{source: a.source, results: kept})
				}
				all := mergeAnswers(StudyLevel, byAnswerPriority(got))
				sortResults(all)
				items, _ := page(all, 0, 0)
				out := make([]dcmjson.Dataset, len(items))
				for i, m := range items {
					finish(StudyLevel, m, search, rw)
					out[i] = m.ds
				}
				// As writeDatasets encodes the answer.
				body := []byte{'['}
				for i, ds := range out {
					if i > 0 {
						body = append(body, ',')
					}
					body = ds.AppendJSON(body)
				}
				_ = append(body, ']')
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(size.sources*size.perSource), "ns/study")
		})
	}
}

// BenchmarkMetadataInstance is the per-instance work of a metadata answer: decoding one
// instance's DICOM JSON from the upstream, checking it, normalising the patient identity,
// rewriting its RetrieveURL and signing its BulkDataURIs, and encoding it for the client. The
// instance is pydicom's CT_small.dcm as Orthanc 1.10 with DICOMweb 1.7 describes it (257
// attributes, a sequence, four BulkDataURIs).
func BenchmarkMetadataInstance(b *testing.B) {
	src := benchSource("a", 1)
	rw := &rewriter{base: "https://nirproxy.example/dicom-web", signer: NewSigner([]byte("0123456789abcdef0123456789abcdef"), 12*time.Hour, nil)}
	raw := []byte(benchCTSmallMetadata)
	steps := []struct {
		name    string
		rewrite bool
		encode  bool
	}{
		{name: "decode"},
		{name: "decode+rewrite", rewrite: true},
		{name: "decode+rewrite+encode", rewrite: true, encode: true},
	}
	for _, st := range steps {
		b.Run(st.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				var ds dcmjson.Dataset
				if err := json.Unmarshal(raw, &ds); err != nil {
					b.Fatal(err)
				}
				if err := ds.Validate(); err != nil {
					b.Fatal(err)
				}
				if st.rewrite {
					normalise(ds, src, "2.16.840.1.113883.2.1.4.1")
					rw.rewriteDataset(ds, src)
				}
				if st.encode {
					if _, err := json.Marshal(ds); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// TestBenchCTSmallMetadataRewritten checks that the metadata benchmark does the work it
// claims: every upstream URL of the instance is rewritten or signed.
func TestBenchCTSmallMetadataRewritten(t *testing.T) {
	src := benchSource("a", 1)
	rw := &rewriter{base: "https://nirproxy.example/dicom-web", signer: NewSigner([]byte("0123456789abcdef0123456789abcdef"), 12*time.Hour, nil)}
	var ds dcmjson.Dataset
	if err := json.Unmarshal([]byte(benchCTSmallMetadata), &ds); err != nil {
		t.Fatal(err)
	}
	normalise(ds, src, "2.16.840.1.113883.2.1.4.1")
	rw.rewriteDataset(ds, src)
	enc, err := json.Marshal(ds)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, substr string
		want         bool
	}{
		{name: "no upstream URL is left", substr: "pacs-a.example", want: false},
		{name: "bulkdata links are the proxy's", substr: `"BulkDataURI":"https://nirproxy.example/dicom-web/bulkdata/`, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := json.Valid(enc) && bytes.Contains(enc, []byte(tc.substr)); got != tc.want {
				t.Fatalf("answer contains %q: %v, want %v", tc.substr, got, tc.want)
			}
		})
	}
}

// benchCTSmallMetadata is Orthanc's DICOM JSON for pydicom's CT_small.dcm, relabelled with
// dcmodify as the benchmarks' patient, with the origin renamed pacs-a.example:8042.
const benchCTSmallMetadata = `{
"00080005":{"Value":["ISO_IR 100"],"vr":"CS"},
"00080008":{"Value":["ORIGINAL","PRIMARY","AXIAL"],"vr":"CS"},
"00080012":{"Value":["20040119"],"vr":"DA"},
"00080013":{"Value":["072731"],"vr":"TM"},
"00080014":{"Value":["1.3.6.1.4.1.5962.3"],"vr":"UI"},
"00080016":{"Value":["1.2.840.10008.5.1.4.1.1.2"],"vr":"UI"},
"00080018":{"Value":["1.2.276.0.7230010.3.1.4.8323328.18502.1795880302.283641"],"vr":"UI"},
"00080020":{"Value":["20230202"],"vr":"DA"},
"00080021":{"Value":["19970430"],"vr":"DA"},
"00080022":{"Value":["19970430"],"vr":"DA"},
"00080023":{"Value":["19970430"],"vr":"DA"},
"00080030":{"Value":["072730"],"vr":"TM"},
"00080031":{"Value":["112749"],"vr":"TM"},
"00080032":{"Value":["112936"],"vr":"TM"},
"00080033":{"Value":["113008"],"vr":"TM"},
"00080050":{"Value":["BRCOPIES"],"vr":"SH"},
"00080060":{"Value":["CT"],"vr":"CS"},
"00080070":{"Value":["GE MEDICAL SYSTEMS"],"vr":"LO"},
"00080080":{"Value":["JFK IMAGING CENTER"],"vr":"LO"},
"00080090":{"vr":"PN"},
"00080201":{"Value":["-0500"],"vr":"SH"},
"00081010":{"Value":["CT01_OC0"],"vr":"SH"},
"00081030":{"Value":["e+1"],"vr":"LO"},
"00081090":{"Value":["RHAPSODE"],"vr":"LO"},
"00090010":{"Value":["GEMS_IDEN_01"],"vr":"LO"},
"00091001":{"Value":["GE_GENESIS_FF"],"vr":"LO"},
"00091002":{"Value":["CT01"],"vr":"SH"},
"00091004":{"Value":["HiSpeed CT/i"],"vr":"SH"},
"00091027":{"Value":[862399669],"vr":"SL"},
"00091030":{"vr":"SH"},
"00091031":{"vr":"SH"},
"000910E6":{"Value":["05"],"vr":"SH"},
"000910E7":{"Value":[973283917],"vr":"UL"},
"000910E9":{"Value":[862399669],"vr":"SL"},
"00100010":{"Value":[{"Alphabetic":"BENCH^RETRIEVE"}],"vr":"PN"},
"00100020":{"Value":["9449306052"],"vr":"LO"},
"00100030":{"vr":"DA"},
"00100040":{"Value":["O"],"vr":"CS"},
"00101002":{"Value":[{"00100020":{"Value":["ABCD1234"],"vr":"LO"},"00100022":{"Value":["TEXT"],"vr":"CS"}},{"00100020":{"Value":["1234ABCD"],"vr":"LO"},"00100022":{"Value":["TEXT"],"vr":"CS"}}],"vr":"SQ"},
"00101010":{"Value":["000Y"],"vr":"AS"},
"00101030":{"Value":[0],"vr":"DS"},
"001021B0":{"vr":"LT"},
"00110010":{"Value":["GEMS_PATI_01"],"vr":"LO"},
"00111010":{"Value":[0],"vr":"SS"},
"00180010":{"Value":["ISOVUE300/100"],"vr":"LO"},
"00180022":{"Value":["HELICAL MODE"],"vr":"CS"},
"00180050":{"Value":[5],"vr":"DS"},
"00180060":{"Value":[120],"vr":"DS"},
"00180088":{"Value":[5],"vr":"DS"},
"00180090":{"Value":[480],"vr":"DS"},
"00181020":{"Value":["05"],"vr":"LO"},
"00181040":{"Value":["IV"],"vr":"LO"},
"00181100":{"Value":[338.6716],"vr":"DS"},
"00181110":{"Value":[1099.3100585938],"vr":"DS"},
"00181111":{"Value":[630],"vr":"DS"},
"00181120":{"Value":[0],"vr":"DS"},
"00181130":{"Value":[133.699997],"vr":"DS"},
"00181150":{"Value":[1601],"vr":"IS"},
"00181151":{"Value":[170],"vr":"IS"},
"00181152":{"Value":[170],"vr":"IS"},
"00181160":{"Value":["LARGE BOWTIE FIL"],"vr":"SH"},
"00181190":{"Value":[0.7],"vr":"DS"},
"00181210":{"Value":["STANDARD"],"vr":"SH"},
"00185100":{"Value":["FFS"],"vr":"CS"},
"00190010":{"Value":["GEMS_ACQU_01"],"vr":"LO"},
"00191002":{"Value":[912],"vr":"SL"},
"00191003":{"Value":[373.75],"vr":"DS"},
"00191004":{"Value":[1.0166],"vr":"DS"},
"0019100F":{"Value":[955.799988],"vr":"DS"},
"00191011":{"Value":[2],"vr":"SS"},
"00191013":{"Value":[0],"vr":"SS"},
"00191014":{"Value":[0],"vr":"SS"},
"00191015":{"Value":[0],"vr":"SS"},
"00191016":{"Value":[0],"vr":"SS"},
"00191017":{"Value":[2],"vr":"SS"},
"00191018":{"Value":["S"],"vr":"LO"},
"00191019":{"Value":[7.79187],"vr":"DS"},
"0019101A":{"Value":["I"],"vr":"LO"},
"0019101B":{"Value":[-320.197968],"vr":"DS"},
"0019101E":{"Value":[0],"vr":"DS"},
"00191023":{"Value":[5],"vr":"DS"},
"00191024":{"Value":[17.784578],"vr":"DS"},
"00191025":{"Value":[1],"vr":"SS"},
"00191026":{"Value":[0],"vr":"SL"},
"00191027":{"Value":[1],"vr":"DS"},
"0019102A":{"Value":[178.079926],"vr":"DS"},
"0019102B":{"Value":[3994.299316],"vr":"DS"},
"0019102C":{"Value":[10431],"vr":"SL"},
"0019102E":{"Value":[-718.079956],"vr":"DS"},
"0019102F":{"Value":[984],"vr":"DS"},
"00191039":{"Value":[16],"vr":"SS"},
"00191040":{"Value":[0],"vr":"SS"},
"00191041":{"Value":[1],"vr":"SS"},
"00191042":{"Value":[0],"vr":"SS"},
"00191043":{"Value":[0],"vr":"SS"},
"00191044":{"Value":[1],"vr":"DS"},
"00191047":{"Value":[1],"vr":"SS"},
"0019104A":{"Value":[6],"vr":"SS"},
"0019104B":{"Value":[10431],"vr":"SL"},
"00191052":{"Value":[1],"vr":"SS"},
"00191057":{"Value":[-95],"vr":"SS"},
"00191058":{"Value":[0],"vr":"SS"},
"0019105E":{"Value":[763],"vr":"SL"},
"0019105F":{"Value":[1],"vr":"SL"},
"00191060":{"Value":[1969],"vr":"SL"},
"00191061":{"Value":[1576],"vr":"SL"},
"00191062":{"Value":[1],"vr":"SL"},
"0019106A":{"Value":[4],"vr":"SS"},
"0019106B":{"Value":[852],"vr":"SS"},
"00191070":{"Value":[1],"vr":"SS"},
"00191071":{"Value":[0],"vr":"SS"},
"00191072":{"Value":[0],"vr":"DS"},
"00191073":{"Value":[0],"vr":"DS"},
"00191074":{"Value":[0],"vr":"DS"},
"00191075":{"Value":[0],"vr":"DS"},
"00191076":{"Value":[0],"vr":"DS"},
"001910DA":{"Value":[0],"vr":"SS"},
"001910DB":{"Value":[0],"vr":"DS"},
"001910DC":{"Value":[1],"vr":"SS"},
"001910DD":{"Value":[1],"vr":"SS"},
"001910DE":{"Value":[0],"vr":"DS"},
"0020000D":{"Value":["2.25.185689803028245942836595386239898585595"],"vr":"UI"},
"0020000E":{"Value":["2.25.185689803028245942836595386239898585595.1"],"vr":"UI"},
"00200010":{"Value":["1CT1"],"vr":"SH"},
"00200011":{"Value":[1],"vr":"IS"},
"00200012":{"Value":[2],"vr":"IS"},
"00200013":{"Value":[1],"vr":"IS"},
"00200032":{"Value":[-158.135803,-179.035797,-75.699997],"vr":"DS"},
"00200037":{"Value":[1,0,0,0,1,0],"vr":"DS"},
"00200052":{"Value":["1.3.6.1.4.1.5962.1.4.1.1.20040119072730.12322"],"vr":"UI"},
"00200060":{"vr":"CS"},
"00201040":{"Value":["SN"],"vr":"LO"},
"00201041":{"Value":[-77.2040634155],"vr":"DS"},
"00204000":{"Value":["Uncompressed"],"vr":"LT"},
"00210010":{"Value":["GEMS_RELA_01"],"vr":"LO"},
"00211003":{"Value":[2],"vr":"SS"},
"00211005":{"Value":["05"],"vr":"SH"},
"00211007":{"Value":[1605775145],"vr":"UL"},
"00211015":{"Value":[24078],"vr":"US"},
"00211016":{"Value":[2],"vr":"SS"},
"00211018":{"Value":["05"],"vr":"SH"},
"00211019":{"Value":[750675506],"vr":"UL"},
"00211037":{"Value":[16],"vr":"SS"},
"0021104A":{"vr":"LO"},
"00211090":{"Value":[7400],"vr":"SS"},
"00211091":{"Value":[0],"vr":"SS"},
"00211092":{"Value":[0],"vr":"FL"},
"00211093":{"Value":[0],"vr":"FL"},
"00230010":{"Value":["GEMS_STDY_01"],"vr":"LO"},
"00231070":{"Value":[862399761.111079],"vr":"FD"},
"00231074":{"Value":[1],"vr":"SL"},
"0023107D":{"Value":[0],"vr":"SS"},
"00250010":{"Value":["GEMS_SERS_01"],"vr":"LO"},
"00251006":{"Value":[0],"vr":"SS"},
"00251007":{"Value":[44],"vr":"SL"},
"00251010":{"Value":[0],"vr":"SL"},
"00251011":{"Value":[0],"vr":"SS"},
"00251017":{"Value":[0],"vr":"SL"},
"00251018":{"Value":[0],"vr":"SL"},
"00251019":{"Value":[4],"vr":"SL"},
"0025101A":{"vr":"SH"},
"00270010":{"Value":["GEMS_IMAG_01"],"vr":"LO"},
"00271006":{"Value":[1],"vr":"SL"},
"00271010":{"Value":[0],"vr":"SS"},
"0027101C":{"Value":[150],"vr":"SL"},
"0027101D":{"Value":[1],"vr":"SS"},
"0027101E":{"Value":[24],"vr":"SL"},
"0027101F":{"Value":[129],"vr":"SL"},
"00271020":{"Value":[1],"vr":"SS"},
"00271030":{"vr":"SH"},
"00271035":{"Value":[2],"vr":"SS"},
"00271040":{"Value":["I"],"vr":"SH"},
"00271041":{"Value":[-77.20406341552734],"vr":"FL"},
"00271042":{"Value":[-11.199999809265137],"vr":"FL"},
"00271043":{"Value":[9.699999809265137],"vr":"FL"},
"00271044":{"Value":[-75.69999694824219],"vr":"FL"},
"00271045":{"Value":[0],"vr":"FL"},
"00271046":{"Value":[0],"vr":"FL"},
"00271047":{"Value":[-1],"vr":"FL"},
"00271048":{"Value":[-180.53579711914062],"vr":"FL"},
"00271049":{"Value":[179.03579711914062],"vr":"FL"},
"0027104A":{"Value":[-75.69999694824219],"vr":"FL"},
"0027104B":{"Value":[-180.53579711914062],"vr":"FL"},
"0027104C":{"Value":[-159.63580322265625],"vr":"FL"},
"0027104D":{"Value":[-75.69999694824219],"vr":"FL"},
"00271050":{"Value":[-63.19999694824219],"vr":"FL"},
"00271051":{"Value":[-116.20304870605469],"vr":"FL"},
"00271052":{"Value":["L"],"vr":"SH"},
"00271053":{"Value":["A"],"vr":"SH"},
"00271054":{"Value":["I"],"vr":"SH"},
"00271055":{"Value":["I"],"vr":"SH"},
"00280002":{"Value":[1],"vr":"US"},
"00280004":{"Value":["MONOCHROME2"],"vr":"CS"},
"00280010":{"Value":[128],"vr":"US"},
"00280011":{"Value":[128],"vr":"US"},
"00280030":{"Value":[0.661468,0.661468],"vr":"DS"},
"00280100":{"Value":[16],"vr":"US"},
"00280101":{"Value":[16],"vr":"US"},
"00280102":{"Value":[15],"vr":"US"},
"00280103":{"Value":[1],"vr":"US"},
"00280120":{"Value":[-2000],"vr":"SS"},
"00281052":{"Value":[-1024],"vr":"DS"},
"00281053":{"Value":[1],"vr":"DS"},
"00290010":{"Value":["GEMS_IMPS_01"],"vr":"LO"},
"00291004":{"Value":[0],"vr":"SL"},
"00291005":{"Value":[0],"vr":"DS"},
"00291006":{"Value":[0],"vr":"DS"},
"00291007":{"Value":[87],"vr":"SL"},
"00291008":{"vr":"SH"},
"00291009":{"vr":"SH"},
"0029100A":{"Value":[764],"vr":"SS"},
"00291026":{"Value":[2],"vr":"SS"},
"00291034":{"Value":[0],"vr":"SL"},
"00291035":{"Value":[0],"vr":"SL"},
"00430010":{"Value":["GEMS_PARM_01"],"vr":"LO"},
"00431010":{"Value":[400],"vr":"US"},
"00431011":{"Value":[10431],"vr":"US"},
"00431012":{"Value":[14,2,3],"vr":"SS"},
"00431013":{"Value":[107,21,4,2,20],"vr":"SS"},
"00431014":{"Value":[4,4,5],"vr":"SS"},
"00431015":{"Value":[10431],"vr":"SS"},
"00431016":{"Value":[0],"vr":"SS"},
"00431017":{"Value":[0.095],"vr":"DS"},
"00431018":{"Value":[0.085,1.102,0.095],"vr":"DS"},
"00431019":{"Value":[350],"vr":"SS"},
"0043101A":{"Value":[7],"vr":"SL"},
"0043101B":{"Value":[0,0,0,0,0],"vr":"SS"},
"0043101C":{"Value":[0],"vr":"SS"},
"0043101D":{"Value":[40],"vr":"SS"},
"0043101E":{"Value":[2],"vr":"DS"},
"0043101F":{"Value":[0],"vr":"SL"},
"00431020":{"Value":[0],"vr":"DS"},
"00431021":{"Value":[0],"vr":"SS"},
"00431025":{"Value":[1,2,3,748,749,750],"vr":"SS"},
"00431026":{"Value":[0,1,1,0,0,0],"vr":"US"},
"00431027":{"Value":["/1.0:1"],"vr":"SH"},
"00431028":{"BulkDataURI":"http://pacs-a.example:8042/dicom-web/studies/2.25.185689803028245942836595386239898585595/series/2.25.185689803028245942836595386239898585595.1/instances/1.2.276.0.7230010.3.1.4.8323328.18502.1795880302.283641/bulk/00431028","vr":"OB"},
"00431029":{"BulkDataURI":"http://pacs-a.example:8042/dicom-web/studies/2.25.185689803028245942836595386239898585595/series/2.25.185689803028245942836595386239898585595.1/instances/1.2.276.0.7230010.3.1.4.8323328.18502.1795880302.283641/bulk/00431029","vr":"OB"},
"0043102A":{"BulkDataURI":"http://pacs-a.example:8042/dicom-web/studies/2.25.185689803028245942836595386239898585595/series/2.25.185689803028245942836595386239898585595.1/instances/1.2.276.0.7230010.3.1.4.8323328.18502.1795880302.283641/bulk/0043102a","vr":"OB"},
"0043102B":{"Value":[4,4,0,0],"vr":"SS"},
"00431031":{"Value":[-11.2,9.7],"vr":"DS"},
"00431040":{"Value":[178.07992553710938],"vr":"FL"},
"00431041":{"Value":[3816.219482421875],"vr":"FL"},
"00431042":{"Value":[0],"vr":"SL"},
"00431043":{"Value":[0],"vr":"SL"},
"00431044":{"Value":[1],"vr":"SL"},
"00431045":{"Value":[1],"vr":"SL"},
"00431046":{"Value":[3],"vr":"SL"},
"00431047":{"Value":[-1],"vr":"SL"},
"00431048":{"Value":[1],"vr":"SL"},
"00431049":{"Value":[0],"vr":"SL"},
"0043104A":{"Value":[1],"vr":"SS"},
"0043104B":{"Value":[0],"vr":"SL"},
"0043104C":{"Value":[0],"vr":"SS"},
"0043104D":{"Value":[0],"vr":"FL"},
"0043104E":{"Value":[10.60060977935791],"vr":"FL"},
"7FE00010":{"BulkDataURI":"http://pacs-a.example:8042/dicom-web/studies/2.25.185689803028245942836595386239898585595/series/2.25.185689803028245942836595386239898585595.1/instances/1.2.276.0.7230010.3.1.4.8323328.18502.1795880302.283641/bulk/7fe00010","vr":"OW"}
}`

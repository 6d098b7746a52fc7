package dcmjson

import (
	"encoding/json"
	"reflect"
	"testing"
)

// decodeStd is the reference: encoding/json into the same model.
func decodeStd(data []byte) ([]map[string]*Element, error) {
	var out []map[string]*Element
	err := json.Unmarshal(data, &out)
	return out, err
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{name: "empty array", in: `[]`},
		{name: "indented, as Orthanc writes", in: "[\n\t{\n\t\t\"0020000D\" : \n\t\t{\n\t\t\t\"Value\" : \n\t\t\t[\n\t\t\t\t\"1.2.3\"\n\t\t\t],\n\t\t\t\"vr\" : \"UI\"\n\t\t}\n\t}\n]\n"},
		{name: "numbers, names, bulk data", in: `[{"00201208":{"vr":"IS","Value":[12]},"00100010":{"vr":"PN","Value":[{"Alphabetic":"DOE^J"}]},"7FE00010":{"vr":"OW","BulkDataURI":"http://x/bulk"},"00281052":{"vr":"DS","Value":[-1024.5e0]}}]`},
		{name: "escapes", in: `[{"00081030":{"vr":"LO","Value":["a\"b\\c\u00e9\n"]}}]`},
		{name: "sequence", in: `[{"00101002":{"vr":"SQ","Value":[{"00100020":{"vr":"LO","Value":["9434765919"]}}]}}]`},
		{name: "empty value and null", in: `[{"00080050":{"vr":"SH"},"00080090":{"vr":"PN","Value":[null]}}]`},
		{name: "lower-case tag", in: `[{"0020000d":{"vr":"UI","Value":["1.2"]}}]`},
		{name: "unknown member", in: `[{"00080050":{"vr":"SH","Extra":{"a":[1,2]}}}]`},
		{name: "truncated", in: `[{"00080050":{"vr":"SH","Value":["A"`, wantErr: true},
		{name: "trailing garbage", in: `[] x`, wantErr: true},
		{name: "bad number", in: `[{"00201208":{"vr":"IS","Value":[01]}}]`, wantErr: true},
		{name: "bad literal", in: `[{"00201208":{"vr":"IS","Value":[tru]}}]`, wantErr: true},
		{name: "control character", in: "[{\"00080050\":{\"vr\":\"SH\",\"Value\":[\"a\x01\"]}}]", wantErr: true},
		{name: "not an array", in: `{"00080050":{"vr":"SH"}}`, wantErr: true},
		{name: "bad escape", in: `[{"00080050":{"vr":"SH","Value":["\x"]}}]`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := scanner{data: []byte(tc.in)}
			got, err := sc.decodeArray()
			if err == nil {
				sc.ws()
				if sc.i != len(sc.data) {
					err = sc.errorf("data after the array")
				}
			}
			want, stdErr := decodeStd([]byte(tc.in))
			if (err != nil) != tc.wantErr || (stdErr != nil) != tc.wantErr {
				t.Fatalf("scanner err %v, encoding/json err %v, wantErr %v", err, stdErr, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			assertSame(t, got, want)
		})
	}
}

// assertSame compares the scanner's datasets with encoding/json's, values compared as
// compacted JSON and keys upper-cased.
func assertSame(t *testing.T, got []Dataset, want []map[string]*Element) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d datasets, encoding/json %d", len(got), len(want))
	}
	for i := range want {
		norm := map[string]*Element{}
		for k, v := range want[i] {
			norm[upperHex(k)] = v
		}
		if len(got[i]) != len(norm) {
			t.Fatalf("dataset %d: %d elements, encoding/json %d", i, len(got[i]), len(norm))
		}
		for k, w := range norm {
			g := got[i][k]
			if (g == nil) != (w == nil) {
				t.Fatalf("%s: %v vs %v", k, g, w)
			}
			if g == nil {
				continue
			}
			if g.VR != w.VR || g.BulkDataURI != w.BulkDataURI || g.InlineBinary != w.InlineBinary || len(g.Value) != len(w.Value) {
				t.Fatalf("%s: %+v vs %+v", k, g, w)
			}
			for j := range w.Value {
				var a, b any
				json.Unmarshal(g.Value[j], &a)
				json.Unmarshal(w.Value[j], &b)
				if !reflect.DeepEqual(a, b) {
					t.Fatalf("%s value %d: %s vs %s", k, j, g.Value[j], w.Value[j])
				}
			}
		}
	}
}

// FuzzDecode checks the scanner against encoding/json on arbitrary input: the same verdict on
// validity and the same model.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`[{"0020000D":{"vr":"UI","Value":["1.2.3"]}}]`))
	f.Add([]byte(`[{"00101002":{"vr":"SQ","Value":[{"00100020":{"vr":"LO","Value":["x\u0041"]}}]},"00201208":{"vr":"IS","Value":[1.5e3]}}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := scanner{data: data}
		got, err := sc.decodeArray()
		if err == nil {
			sc.ws()
			if sc.i != len(data) {
				err = sc.errorf("data after the array")
			}
		}
		want, stdErr := decodeStd(data)
		if stdErr == nil {
			for _, m := range want {
				if m == nil {
					stdErr = errString // a null where an object belongs: the scanner refuses it
				}
			}
		}
		if (err == nil) != (stdErr == nil) {
			t.Fatalf("scanner err %v, encoding/json err %v on %q", err, stdErr, data)
		}
		if err == nil {
			assertSame(t, got, want)
		}
	})
}

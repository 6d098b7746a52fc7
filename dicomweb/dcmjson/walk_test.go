package dcmjson

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestWalk(t *testing.T) {
	// upper changes every LO value to upper case, deletes every element of VR UN and asks
	// for the sequence items the test names.
	upper := func(items ItemFilter) func(ds Dataset, tag string, el *Element) ItemFilter {
		return func(ds Dataset, tag string, el *Element) ItemFilter {
			switch el.VR {
			case "UN":
				delete(ds, tag)
			case "LO":
				for i, v := range el.Value {
					el.Value[i] = bytes.ToUpper(v)
				}
			}
			return items
		}
	}
	all := func(json.RawMessage) bool { return true }
	tests := []struct {
		name  string
		in    string
		items ItemFilter
		want  string
	}{
		{
			name:  "top level",
			in:    `{"00100020":{"vr":"LO","Value":["mrn1"]},"00291010":{"vr":"UN","InlineBinary":"AA=="},"00080050":null}`,
			items: all,
			want:  `{"00080050":null,"00100020":{"vr":"LO","Value":["MRN1"]}}`,
		},
		{
			name:  "nested items, null items kept",
			in:    `{"00101002":{"vr":"SQ","Value":[{"00100020":{"vr":"LO","Value":["a"]},"00082218":{"vr":"SQ","Value":[{"00291010":{"vr":"UN"},"00080100":{"vr":"LO","Value":["b"]}}]}},null]}}`,
			items: all,
			want:  `{"00101002":{"vr":"SQ","Value":[{"00082218":{"vr":"SQ","Value":[{"00080100":{"vr":"LO","Value":["B"]}}]},"00100020":{"vr":"LO","Value":["A"]}},null]}}`,
		},
		{
			name: "items the filter refuses keep their bytes",
			in:   `{"00101002":{"vr":"SQ","Value":[{"00100020":{"vr":"LO","Value":["a"]}},{ "00100020" : {"vr":"LO","Value":["skip"]} }]}}`,
			items: func(raw json.RawMessage) bool {
				return !bytes.Contains(raw, []byte("skip"))
			},
			want: `{"00101002":{"vr":"SQ","Value":[{"00100020":{"vr":"LO","Value":["A"]}},{ "00100020" : {"vr":"LO","Value":["skip"]} }]}}`,
		},
		{
			name: "no filter, no descent",
			in:   `{"00101002":{"vr":"SQ","Value":[{"00100020":{"vr":"LO","Value":["a"]}}]}}`,
			want: `{"00101002":{"vr":"SQ","Value":[{"00100020":{"vr":"LO","Value":["a"]}}]}}`,
		},
		{
			name:  "an item that is not a DICOM JSON object is emptied",
			in:    `{"00101002":{"vr":"SQ","Value":["text",{"x":1},{"00100020":{"vr":"LO","Value":["a"]}}]}}`,
			items: all,
			want:  `{"00101002":{"vr":"SQ","Value":[{},{},{"00100020":{"vr":"LO","Value":["A"]}}]}}`,
		},
		{
			name:  "values of other VRs are not items",
			in:    `{"00100020":{"vr":"LO","Value":["{}"]}}`,
			items: all,
			want:  `{"00100020":{"vr":"LO","Value":["{}"]}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ds Dataset
			if err := json.Unmarshal([]byte(tc.in), &ds); err != nil {
				t.Fatal(err)
			}
			ds.Walk(upper(tc.items))
			if got := string(ds.AppendJSON(nil)); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

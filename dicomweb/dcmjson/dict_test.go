package dcmjson

import "testing"

func TestLookupAttribute(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Attribute
		wantErr bool
	}{
		{name: "keyword", in: "StudyInstanceUID", want: Attribute{Tag: "0020000D", Keyword: "StudyInstanceUID", VR: "UI"}},
		{name: "tag lower case", in: "0020000d", want: Attribute{Tag: "0020000D", Keyword: "StudyInstanceUID", VR: "UI"}},
		{name: "person name", in: "00100010", want: Attribute{Tag: "00100010", Keyword: "PatientName", VR: "PN"}},
		{name: "private tag", in: "00291010", want: Attribute{Tag: "00291010", VR: "UN"}},
		{name: "unknown keyword", in: "NoSuchThing", wantErr: true},
		{name: "short tag", in: "0020000", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LookupAttribute(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

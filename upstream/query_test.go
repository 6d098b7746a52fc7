package upstream

import (
	"net/url"
	"testing"
)

func TestEncodeQuery(t *testing.T) {
	tests := []struct {
		name string
		in   url.Values
		want string
	}{
		{name: "wildcards and lists stay literal", in: url.Values{"00100010": {"DOE^J*"}, "includefield": {"00081030,00080060"}, "00080050": {"A?C"}},
			want: "00080050=A?C&00100010=DOE^J*&includefield=00081030,00080060"},
		{name: "attribute path and range", in: url.Values{"00101002.00100020": {"9434765919"}, "00080020": {"20200101-"}},
			want: "00080020=20200101-&00101002.00100020=9434765919"},
		{name: "separators escaped", in: url.Values{"k": {"a&b=c+d#e f%"}}, want: "k=a%26b%3Dc%2Bd%23e%20f%25"},
		{name: "non-ASCII escaped", in: url.Values{"00100010": {"MÜLLER"}}, want: "00100010=M%C3%9CLLER"},
		{name: "repeated key", in: url.Values{"includefield": {"a", "b"}}, want: "includefield=a&includefield=b"},
		{name: "empty", in: url.Values{}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := encodeQuery(tc.in)
			if got != tc.want {
				t.Fatalf("encodeQuery = %q, want %q", got, tc.want)
			}
			back, err := url.ParseQuery(got)
			if err != nil {
				t.Fatalf("the encoding does not parse back: %v", err)
			}
			for k, vs := range tc.in {
				if len(back[k]) != len(vs) || (len(vs) > 0 && back[k][0] != vs[0]) {
					t.Fatalf("round trip of %s: %v, want %v", k, back[k], vs)
				}
			}
		})
	}
}

package dicomweb

import (
	"strings"
	"testing"
)

func TestNormaliseNHSNumber(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        string
	}{
		{name: "valid", in: "9434765919", want: "9434765919"},
		{name: "valid with spaces", in: "943 476 5919", want: "9434765919"},
		{name: "second demo patient", in: "9449306052", want: "9449306052"},
		{name: "wrong check digit", in: "9434765918", wantErr: "check digit"},
		{name: "check digit would be 10", in: "1000000010", wantErr: "check digit"},
		{name: "too short", in: "943476591", wantErr: "10 digits"},
		{name: "letters", in: "94347659AB", wantErr: "only digits"},
		{name: "wildcard", in: "943476591*", wantErr: "only digits"},
		{name: "empty", in: "", wantErr: "10 digits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormaliseNHSNumber(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestValidUID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"typical", "1.2.840.113619.2.55.3.604688119", true},
		{"single component", "2", true},
		{"zero component", "1.0.2", true},
		{"empty", "", false},
		{"leading zero", "1.02.3", false},
		{"empty component", "1..2", false},
		{"trailing dot", "1.2.", false},
		{"letters", "1.2.abc", false},
		{"path traversal", "../../etc/passwd", false},
		{"url", "http://evil/", false},
		{"65 characters", "1." + strings.Repeat("2", 63), false},
		{"64 characters", "1." + strings.Repeat("2", 62), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := validUID(tc.in); got != tc.want {
				t.Fatalf("validUID(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseFrameList(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "one", in: "1", want: "1"},
		{name: "several", in: "1,3,5", want: "1,3,5"},
		{name: "zero", in: "0", wantErr: true},
		{name: "negative", in: "-1", wantErr: true},
		{name: "text", in: "a", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "too many", in: strings.Repeat("1,", 10) + "1", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFrameList(tc.in, 10)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && formatFrameList(got) != tc.want {
				t.Fatalf("got %v, want %s", got, tc.want)
			}
		})
	}
}

func TestRenderParams(t *testing.T) {
	tests := []struct {
		name    string
		q       map[string]string
		want    map[string]string
		wantErr string
	}{
		{name: "none", q: nil, want: map[string]string{}},
		{name: "viewport", q: map[string]string{"viewport": "128,128"}, want: map[string]string{"viewport": "128,128"}},
		{name: "bad viewport", q: map[string]string{"viewport": "128"}, wantErr: "viewport"},
		{name: "quality", q: map[string]string{"quality": "80"}, want: map[string]string{"quality": "80"}},
		{name: "quality out of range", q: map[string]string{"quality": "101"}, wantErr: "quality"},
		{name: "window", q: map[string]string{"window": "40,400,linear"}, want: map[string]string{"window": "40,400,linear"}},
		{name: "window in VOI LUT spelling", q: map[string]string{"window": "40,400,LINEAR_EXACT"}, want: map[string]string{"window": "40,400,linear-exact"}},
		{name: "window bad function", q: map[string]string{"window": "40,400,CUBIC"}, wantErr: "window"},
		{name: "window zero width", q: map[string]string{"window": "40,0,LINEAR"}, wantErr: "window"},
		{name: "window NaN width", q: map[string]string{"window": "40,NaN,linear"}, wantErr: "finite"},
		{name: "window NaN center", q: map[string]string{"window": "NaN,400,linear"}, wantErr: "finite"},
		{name: "window infinite width", q: map[string]string{"window": "40,Inf,linear"}, wantErr: "finite"},
		{name: "window minus infinite center", q: map[string]string{"window": "-Inf,400,linear"}, wantErr: "finite"},
		{name: "viewport as parsed, not as written", q: map[string]string{"viewport": "+128, 64"}, want: map[string]string{"viewport": "128,64"}},
		{name: "viewport with a source region", q: map[string]string{"viewport": "128,128,0,0,512,-512"}, want: map[string]string{"viewport": "128,128,0,0,512,-512"}},
		{name: "viewport region negative offset", q: map[string]string{"viewport": "128,128,-1,0,512,512"}, wantErr: "source region"},
		{name: "viewport region of zero width", q: map[string]string{"viewport": "128,128,0,0,0,512"}, wantErr: "source region"},
		{name: "viewport region too large", q: map[string]string{"viewport": "128,128,0,0,99999999,512"}, wantErr: "source region"},
		{name: "viewport zero", q: map[string]string{"viewport": "0,128"}, wantErr: "viewport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := renderParams(func(k string) string { return tc.q[k] }, true)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

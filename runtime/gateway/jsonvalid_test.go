package gateway

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestValidJSON: validJSON answers as json.Valid on each input, which
// says what it is.
func TestValidJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{`{"mcp":"tools","params":{"n":5}}`, true},
		{" \t\r\n{ \"a\" : [ 1 , -2.5e+3 , true , false , null , \"\" ] } \n", true},
		{`[]`, true}, {`{}`, true}, {`[[],{}]`, true}, {`0`, true}, {`-0.0E-0`, true}, {`"x"`, true},
		{`"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"`, true},
		{"\"\xff\xfe invalid UTF-8, which json.Valid does not check\"", true},
		{"\"\u2028\"", true},
		{``, false}, {` `, false}, {`{`, false}, {`}`, false}, {`[1,]`, false}, {`{"a":1,}`, false}, {`{,}`, false},
		{`{"a" 1}`, false}, {`{"a":}`, false}, {`{1:2}`, false}, {`{"a":1 "b":2}`, false}, {`[1 2]`, false},
		{`{"amount":5,000}`, false}, {`01`, false}, {`1.`, false}, {`.5`, false}, {`1e`, false}, {`1e+`, false},
		{`-`, false}, {`+1`, false}, {`0x10`, false}, {`NaN`, false}, {`Infinity`, false}, {`1 2`, false},
		{`tru`, false}, {`truex`, false}, {`nul`, false}, {`True`, false}, {`[true false]`, false},
		{`"abc`, false}, {`"\x"`, false}, {`"\u12"`, false}, {`"\u12G4"`, false}, {"\"a\tb\"", false}, {"\"\x00\"", false},
		{`{"a":"b"}}`, false}, {`[1]]`, false}, {`[}`, false}, {`{]`, false}, {`{"a":1]`, false}, {"\x00", false},
		{"\ufeff{}", false}, // a byte order mark
		{strings.Repeat("[", maxNestingDepth) + strings.Repeat("]", maxNestingDepth), true},
		{strings.Repeat("[", maxNestingDepth+1) + strings.Repeat("]", maxNestingDepth+1), false},
		{strings.Repeat(`{"a":`, maxNestingDepth) + "1" + strings.Repeat("}", maxNestingDepth), true},
		{strings.Repeat(`{"a":`, maxNestingDepth+1) + "1" + strings.Repeat("}", maxNestingDepth+1), false},
	} {
		if got, std := validJSON([]byte(tc.in)), json.Valid([]byte(tc.in)); got != tc.want || std != tc.want {
			in := tc.in
			if len(in) > 60 {
				in = in[:60] + "…"
			}
			t.Errorf("%q: validJSON = %v, json.Valid = %v, want %v", in, got, std, tc.want)
		}
	}
}

// FuzzValidJSON holds validJSON to json.Valid on any input.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{
		`{"mcp":"tools","action":"echo","params":{"text":"hi","n":-1.5e3},"plan":{"steps":[{"a":[true,false,null]}]}}`,
		`[1,2]`, `"\u00e9\n"`, `{"a":5,000}`, `01`, `[1,]`, "\"\xff\"", `{"a" :1 }`, ` 0 `, `-`, `1e+5`, `"\uZZZZ"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

package intent

import (
	"reflect"
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"object", `{"a":1,"b":[true,false,null],"c":{"d":"e"}}`},
		{"numbers keep their text", `[1, 1.0, -0, 1e3, 1E+3, 12345678901234567890123]`},
		{"duplicate keys: the last wins", `{"a":1,"a":2}`},
		{"escapes", `"a\"b\\c\/d\u00e9\ud83d\ude00\n"`},
		{"invalid UTF-8 becomes U+FFFD", "\"a\xffb\""},
		{"lone surrogate escape", `"\ud800"`},
		{"non-ASCII plain", `{"k\u00e9y":"caf` + "\u00e9" + `"}`},
		{"empty containers", ` { "o" : { } , "a" : [ ] } `},
		{"trailing data", `{} {}`},
		{"truncated", `{"a":`},
		{"empty", ``},
		{"bare word", `nope`},
	}
	for _, tt := range tests {
		got, gerr := DecodeJSON([]byte(tt.in))
		want, werr := decodeStream([]byte(tt.in))
		if (gerr == nil) != (werr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: DecodeJSON(%q) = %#v, %v; the json.Decoder gives %#v, %v", tt.name, tt.in, got, gerr, want, werr)
		}
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,"x\u00e9"],"b":null}`, `[[],{}]`, "\"\xff\"", `{"a":1,"a":{"b":true}}`, `-1e-9`, `{} x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, gerr := DecodeJSON([]byte(in))
		want, werr := decodeStream([]byte(in))
		if (gerr == nil) != (werr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("DecodeJSON(%q) = %#v, %v; the json.Decoder gives %#v, %v", in, got, gerr, want, werr)
		}
	})
}

func BenchmarkDecodeJSON(b *testing.B) {
	in := []byte(`{"text":"` + strings.Repeat("a", 1<<20) + `"}`)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeJSON(in); err != nil {
			b.Fatal(err)
		}
	}
}

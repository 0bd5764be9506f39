package store

import (
	"encoding/json"
	"testing"
)

// FuzzAppendJSONString: AppendJSONString writes what encoding/json writes for a
// string, byte for byte (HTML characters, U+2028 and U+2029 escaped,
// invalid UTF-8 as U+FFFD).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote \" backslash \\", "<b>&</b>", "\u2028\u2029", "\x00\x1f\x7f", "a\xffb\xc3", "Zürich 🌍", "\b\f\n\r\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("AppendJSONString(%q) = %s, want %s", s, got[1:], want)
		}
	})
}

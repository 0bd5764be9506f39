package mcpadapter

import (
	"strings"
	"testing"
)

func TestLineLogger(t *testing.T) {
	var got []string
	w := &lineLogger{log: func(s string) { got = append(got, s) }}
	for _, chunk := range []string{"first li", "ne\r\nsecond\n\nthird", " part\n", "unterminated"} {
		w.Write([]byte(chunk))
	}
	if want := "first line|second|third part"; strings.Join(got, "|") != want {
		t.Errorf("lines: got %q, want %q", strings.Join(got, "|"), want)
	}
}

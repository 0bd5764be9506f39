package gateway

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// TestInvokeResultWrite: the answer to a forwarded /invoke call, written by
// hand, is byte for byte what writeJSON writes for the map it replaced,
// headers and status included.
func TestInvokeResultWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   string
		res  string
	}{
		{"plain result", "req_0123456789ab0123456789abcdef0123", `{"content":[{"type":"text","text":"echo: hi"}]}`},
		{"spaces and newlines to compact", "req-1", "{ \"content\" : [ {\"type\": \"text\",\n\t\"text\": \"a  b\"} ] }\n"},
		{"HTML characters and U+2028 in the result", "req-2", `{"content":[{"type":"text","text":"<b>&amp;</b> ` + "\u2028\u2029" + `"}]}`},
		{"escapes kept as sent", "req-3", `{"t":"\u003c\n\"\\"}`},
		{"HTML characters in the id", "a<b>&c", `{}`},
		{"an id with every character ids may have", "aZ09._:-/+=", `[1,2.5e3,true,null]`},
		{"invalid JSON", "req-4", `{"content":`},
		{"empty result", "req-5", ``},
		{"invalid UTF-8 in a string", "req-6", "{\"t\":\"\xff\xfe\"}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res json.RawMessage
			if tc.res != "" {
				res = json.RawMessage(tc.res)
			}
			got := httptest.NewRecorder()
			invokeResult{id: tc.id, res: res}.write(got)
			want := httptest.NewRecorder()
			writeJSON(want, 200, map[string]any{"jsonrpc": "2.0", "id": tc.id, "result": res})
			if got.Code != want.Code || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
				t.Errorf("wrote %d %q, want %d %q", got.Code, got.Body, want.Code, want.Body)
			}
			for _, h := range []string{"Content-Type", "Cache-Control"} {
				if got.Header().Get(h) != want.Header().Get(h) {
					t.Errorf("%s = %q, want %q", h, got.Header().Get(h), want.Header().Get(h))
				}
			}
		})
	}
}

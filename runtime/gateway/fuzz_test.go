package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/armoriq/controlplane/runtime/store"
)

// FuzzEntryPoints sends arbitrary bodies and headers to every entry point
// that reads one. Whatever arrives, the gateway answers with a 4xx (or a
// 2xx for a well-formed request), never a 5xx other than the documented
// "store unavailable" 503 (and the upstream's own 502/504), never a panic,
// never echoes the API key, and never lets the upstream run a call that has
// no committed request record.
func FuzzEntryPoints(f *testing.F) {
	// A short call timeout: a fuzzed call to the tool that waits for a
	// release must not stall the fuzzer.
	g := newTestGateway(f, nil, func(c *Config) { c.CallTimeout = 200 * time.Millisecond })
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
	good, hdr := invokeRequestFor(tok, "tools", "echo", map[string]any{"text": "hi"})
	mcpCall := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tools_echo","arguments":{"text":"hi"}}}`)
	mcpInit := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`)
	seeds := [][]byte{
		good, mcpCall, mcpInit, []byte(`{}`), []byte(`null`), []byte(`[]`), []byte(`{"mcp":"tools","action":"echo"}`),
		[]byte(`{"user_id":"a","agent_id":"b","plan":{"steps":[{"action":"x","mcp":"tools"}]}}`),
		[]byte(`{"plan":{"steps":[]}}`), []byte(`{"name":"k","role":"agent"}`), []byte("\x1f\x8b\x08"),
		[]byte(`{"mcp":"tools","action":"echo","token":{"plan_hash":"x","expires_at":1e308}}`),
		bytes.Replace(good, []byte(`"params":{"text":"hi"}`), []byte(`"params":{"text":"hi","user_email":"b\u0000b@x.com"}`), 1),
		// The red team's: lookalike users, numbers beyond float64, a batch.
		bytes.Replace(good, []byte(`"params":{"text":"hi"}`), []byte(`"params":{"text":"hi","user_email":"b\u043eb@x.com"}`), 1),
		bytes.Replace(good, []byte(`"params":{"text":"hi"}`), []byte(`"params":{"text":"hi","user_email":"bob\uff20x.com."}`), 1),
		[]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tools_add","arguments":{"a":-1e309,"b":1}}}`),
		[]byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"tools_echo","arguments":{"text":"a"}}},{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"test://x"}}]`),
	}
	headerSeeds := []struct{ name, value string }{
		{"X-Request-ID", "req-1"}, {"X-Request-ID", "\xff"}, {"X-Armoriq-User", "bob@example.com"},
		{"X-Armoriq-User", "b\xffob"}, {"X-CSRG-Proof", hdr["X-CSRG-Proof"]}, {"Mcp-Session-Id", "x"},
		{"Mcp-Protocol-Version", "2026-07-28"}, {"Content-Type", "text/plain"}, {"X-Request-ID", g.agentKey},
		{"X-Armoriq-User", "b\u043eb@example.com"}, {"X-Armoriq-User", "bob\uff20example.com"},
		// Access tokens (the last routes send no API key): JWT-shaped,
		// unsigned, truncated, an API key as a bearer.
		{"Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xIn0."},
		{"Authorization", "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.AAAA"},
		{"Authorization", "bearer " + g.agentKey}, {"Authorization", "Bearer a.b.c"},
	}
	for i, s := range seeds {
		for route := 0; route < 8; route++ {
			h := headerSeeds[(i+route)%len(headerSeeds)]
			f.Add(route, s, hdr["X-CSRG-Proof"], h.name, h.value)
		}
	}
	routes := []struct{ method, path, key string }{
		{"POST", "/invoke", g.agentKey},
		{"POST", "/iap/sdk/token", g.agentKey},
		{"PUT", "/v1/bundle", g.adminKey},
		{"POST", "/v1/keys", g.adminKey},
		{"POST", "/iap/sdk/register", g.adminKey},
		{"POST", "/mcp", g.agentKey},
		{"POST", "/mcp", ""},
		{"POST", "/iap/sdk/token", ""},
	}
	h := g.srv.Handler()
	f.Fuzz(func(t *testing.T, route int, body []byte, proof, hname, hvalue string) {
		if route < 0 {
			route = -route
		}
		r := routes[route%len(routes)]
		req := httptest.NewRequest(r.method, r.path, bytes.NewReader(body))
		if r.key != "" {
			req.Header.Set("X-API-Key", r.key)
		}
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-CSRG-Proof", proof)
		req.Header.Set("X-CSRG-Path", "/steps/[0]/action")
		if hname != "" && validHeaderName(hname) {
			// Set the raw value as a server would receive it: net/http's
			// own parser refuses control characters before the gateway
			// sees them, but bytes ≥ 0x80 pass.
			req.Header[http.CanonicalHeaderKey(hname)] = []string{hvalue}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable && w.Code != http.StatusBadGateway && w.Code != http.StatusGatewayTimeout {
			t.Fatalf("%s %s with %q and %s: %q: status %d: %s", r.method, r.path, body, hname, hvalue, w.Code, w.Body.String())
		}
		if w.Code == http.StatusServiceUnavailable && !strings.Contains(w.Body.String(), "unavailable") {
			t.Fatalf("%s %s: 503 that is not the documented store-unavailable answer: %s", r.method, r.path, w.Body.String())
		}
		if r.key != "" && bytes.Contains(w.Body.Bytes(), []byte(r.key)) {
			t.Fatalf("%s %s: the answer contains the API key", r.method, r.path)
		}
		// No execution without a committed request record.
		g.srv.waitOutcomes(5 * time.Second)
		recs, err := g.store.ListAudit(context.Background(), store.AuditFilter{Phase: store.PhaseRequest, Limit: 1000, AfterSeq: 0})
		if err != nil {
			t.Fatal(err)
		}
		if n := g.execs.Load(); n > int64(len(recs)) && len(recs) < 1000 {
			t.Fatalf("%s %s with %q: the upstream ran %d calls, only %d request records exist", r.method, r.path, body, n, len(recs))
		}
	})
}

func validHeaderName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	// The key headers stay what the route needs; the fuzzer varies the rest.
	switch http.CanonicalHeaderKey(s) {
	case "X-Api-Key", "Authorization", "Content-Length", "Host":
		return false
	}
	return true
}

// FuzzIsToolError checks that isToolError, which skips decoding a result
// none of whose keys can be isError, answers as decoding it always would.
func FuzzIsToolError(f *testing.F) {
	for _, s := range []string{
		`{"content":[{"type":"text","text":"echo: hi"}]}`, `{"isError":true}`, `{"ISERROR":true}`, `{"iſError":true}`,
		`{"\u0069sError":true}`, `{"content":[],"isError":false}`, `{"isError":"yes"}`, `{"a":{"isError":true}}`, `not json isError`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v struct {
			IsError bool `json:"isError"`
		}
		_ = json.Unmarshal(b, &v)
		if got := isToolError(b); got != v.IsError {
			t.Fatalf("isToolError(%q) = %v, decoding says %v", b, got, v.IsError)
		}
	})
}

// FuzzParseInputRequired holds parseInputRequired, which scans a result
// without decoding it, to decoding it: the same verdict (input_required or
// not, malformed or not) and the same requests and state, for any valid
// JSON; no panic on anything else.
func FuzzParseInputRequired(f *testing.F) {
	for _, s := range []string{
		`{"content":[{"type":"text","text":"hi"}]}`, `{"content":[],"resultType":"complete"}`,
		`{"inputRequests":{"name":{"method":"elicitation/create","params":{"message":"Your name?"}}},"requestState":"s1","resultType":"input_required"}`,
		`{"resultType":"input_required"}`, `{"resultType":"input_required","inputRequests":{}}`, `{"inputRequests":null}`,
		`{"\u0069nputRequests":{"a":{"method":"x"}}}`, `{"resultType":"\u0069nput_required"}`, `{"inputRequests":[1]}`,
		`{"inputRequests":{"a":{}},"requestState":7}`, `{"InputRequests":{"a":{}}}`, `{"inputRequests":{"a":{}},"inputRequests":null}`,
		`[1,2]`, `"input"`, `{"a":{"inputRequests":{}}}`, `not json inputRequests`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ir, err := parseInputRequired(b)
		if !json.Valid(b) {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			if ir != nil || err != nil {
				t.Fatalf("parseInputRequired(%q) = %v, %v for what is not an object", b, ir, err)
			}
			return
		}
		var rt string
		_ = json.Unmarshal(m["resultType"], &rt)
		reqs := m["inputRequests"]
		has := len(reqs) > 0 && string(reqs) != "null"
		if rt != "input_required" && !has {
			if ir != nil || err != nil {
				t.Fatalf("parseInputRequired(%q) = %v, %v; decoding says it is not input_required", b, ir, err)
			}
			return
		}
		want := &inputRequired{}
		var werr error
		if has {
			if json.Unmarshal(reqs, &want.requests) != nil || want.requests == nil {
				werr = errors.New("requests")
			}
		}
		if st := m["requestState"]; werr == nil && len(st) > 0 && string(st) != "null" && json.Unmarshal(st, &want.state) != nil {
			werr = errors.New("state")
		}
		switch {
		case (err != nil) != (werr != nil):
			t.Fatalf("parseInputRequired(%q) error %v, decoding says %v", b, err, werr)
		case err == nil && (ir == nil || !reflect.DeepEqual(ir, want)):
			t.Fatalf("parseInputRequired(%q) = %+v, decoding says %+v", b, ir, want)
		}
	})
}

// FuzzAnswerPlain holds annotatePlain, which annotates a 2026-07-28 result
// without decoding it, to the decoding path: whatever it takes, it writes
// what answerDecoded writes.
func FuzzAnswerPlain(f *testing.F) {
	for _, s := range []string{
		`{"content":[{"type":"text","text":"echo: hi"}]}`, `{"content":null}`, `{}`, ` { "b" : 1 , "a" : [ ] } `,
		`{"content":[],"resultType":"input_required","inputRequests":{}}`, `{"content":[],"_meta":{"a":1}}`,
		`{"a":1,"a":2}`, `{"a<b":1}`, `{"\u0061":1}`, `{"é":1}`, `{"structuredContent":{"x":"<&>"}}`, `[1]`, `null`, `{"a":`,
		`{"isError":true,"content":[]}`, `{"zz":1,"Content":2,"_":3,"~":4}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := annotatePlain(b)
		if !ok {
			return
		}
		want, wantOK := answerDecoded(b, true)
		if !wantOK || !bytes.Equal(got, want) {
			t.Fatalf("annotatePlain(%q) = %s; answerDecoded: %s, %v", b, got, want, wantOK)
		}
	})
}

// FuzzSkipValue holds skipValue, which finds a string's end with
// IndexByte and counts the backslashes before a quote, to a byte-by-byte
// scan, and both to encoding/json, on the values of valid JSON: a value
// at the start of the text, and every member of an object.
func FuzzSkipValue(f *testing.F) {
	for _, s := range []string{
		`{"a":"b\"c","d":["\\",{"e":"\\\""}],"f":1.5}`, `"\\\\"`, `["a\"b\\"]`, ` {"x" : [ ] , "y" : "\u0022" } `, `true`, `-1e5`,
		`{"plan":{"steps":[{"action":"echo","params":{"text":"\\\\\"hi\\\\"}}]},"token":"t"}`,
	} {
		f.Add([]byte(s))
	}
	byteByByte := func(b []byte, i int) int {
		if b[i] != '"' && b[i] != '{' && b[i] != '[' {
			return skipValue(b, i) // numbers and literals: one loop, unchanged
		}
		depth, inString := 0, false
		for j := i; j < len(b); j++ {
			c := b[j]
			if inString {
				switch c {
				case '\\':
					j++
				case '"':
					inString = false
					if depth == 0 {
						return j + 1
					}
				}
				continue
			}
			switch c {
			case '"':
				inString = true
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		i := skipSpace(b, 0)
		end := skipValue(b, i)
		var raw json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil || string(b[i:end]) != string(bytes.TrimSpace(raw)) || end != byteByByte(b, i) {
			t.Fatalf("skipValue(%q, %d) = %d (byte by byte: %d); the value is %q", b, i, end, byteByByte(b, i), bytes.TrimSpace(raw))
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil || bytes.Contains(b, []byte(`\`)) {
			return // not an object, or keys objectScanner leaves to others
		}
		s := objectScanner{b: b}
		for k, v := range s.fields() {
			if !utf8.Valid(k) {
				continue // encoding/json replaces the bytes: not its key
			}
			if want, ok := m[string(k)]; !ok || (!bytes.Equal(v, want) && strings.Count(string(b), `"`+string(k)+`"`) == 1) {
				t.Fatalf("member %q of %q = %q, encoding/json says %q", k, b, v, want)
			}
		}
		if s.bad {
			t.Fatalf("objectScanner refused the object %q", b)
		}
	})
}

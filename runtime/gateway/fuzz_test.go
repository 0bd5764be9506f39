package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzEntryPoints sends arbitrary bodies and headers to every entry point
// that reads one: whatever arrives, the gateway answers with a 4xx (or a
// 2xx for a well-formed request), never a 5xx or a panic, and never echoes
// the API key.
func FuzzEntryPoints(f *testing.F) {
	g := newTestGateway(f, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "echo", map[string]any{"text": "hi"}))
	good, hdr := invokeRequestFor(tok, "tools", "echo", map[string]any{"text": "hi"})
	seeds := [][]byte{
		good, []byte(`{}`), []byte(`null`), []byte(`[]`), []byte(`{"mcp":"tools","action":"echo"}`),
		[]byte(`{"user_id":"a","agent_id":"b","plan":{"steps":[{"action":"x","mcp":"tools"}]}}`),
		[]byte(`{"plan":{"steps":[]}}`), []byte(`{"name":"k","role":"agent"}`), []byte("\x1f\x8b\x08"),
		[]byte(`{"mcp":"tools","action":"echo","token":{"plan_hash":"x","expires_at":1e308}}`),
	}
	for _, s := range seeds {
		for route := 0; route < 5; route++ {
			f.Add(route, s, hdr["X-CSRG-Proof"])
		}
	}
	routes := []struct{ method, path, key string }{
		{"POST", "/invoke", g.agentKey},
		{"POST", "/iap/sdk/token", g.agentKey},
		{"PUT", "/v1/bundle", g.adminKey},
		{"POST", "/v1/keys", g.adminKey},
		{"POST", "/iap/sdk/register", g.adminKey},
	}
	h := g.srv.Handler()
	f.Fuzz(func(t *testing.T, route int, body []byte, proof string) {
		if route < 0 {
			route = -route
		}
		r := routes[route%len(routes)]
		req := httptest.NewRequest(r.method, r.path, bytes.NewReader(body))
		req.Header.Set("X-API-Key", r.key)
		req.Header.Set("X-CSRG-Proof", proof)
		req.Header.Set("X-CSRG-Path", "/steps/[0]/action")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable && w.Code != http.StatusBadGateway && w.Code != http.StatusGatewayTimeout {
			t.Fatalf("%s %s with %q: status %d: %s", r.method, r.path, body, w.Code, w.Body.String())
		}
		if bytes.Contains(w.Body.Bytes(), []byte(r.key)) {
			t.Fatalf("%s %s: the answer contains the API key", r.method, r.path)
		}
	})
}

package mcpadapter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
)

// pinServer is a go-sdk server (of the versions in opts, nil: all) whose
// tool "era" says how its session was opened: the protocol version in the
// request's _meta under 2026-07-28, else "initialize <version>" of the
// session's initialize handshake.
func pinServer(opts *mcp.ServerOptions) *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "pin", Version: "1"}, opts)
	mcp.AddTool(srv, &mcp.Tool{Name: "era", Description: "how the session was opened"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		if v, _ := req.Params.Meta[plugins.MetaProtocolVersion].(string); v != "" {
			return text(v), nil, nil
		}
		if p := req.Session.InitializeParams(); p != nil {
			return text("initialize " + p.ProtocolVersion), nil, nil
		}
		return text("neither"), nil, nil
	})
	return srv
}

// pinnedStdio runs the test binary as pinServer on stdio under an adapter
// whose server is pinned to pin ("" for none).
func pinnedStdio(t *testing.T, pin string) *Adapter {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := NewStdio()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := plugins.ServerConfig{ID: "local", Transport: plugins.TransportStdio, Command: exe, Env: map[string]string{"ARMORIQ_TEST_ROLE": "stdio-era"}, Protocol: pin}
	if err := a.Configure(ctx, cfg); err != nil {
		t.Fatalf("pin %q: %v", pin, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestStdioProtocolPin: a stdio server pinned below 2026-07-28 gets the
// initialize handshake at the pinned version, for calls of both eras
// (one session, one process); unpinned, or pinned at 2026-07-28, it gets
// the stateless protocol, as before.
func TestStdioProtocolPin(t *testing.T) {
	for _, tc := range []struct {
		pin, want, reported string
	}{
		{"", "2026-07-28", "2026-07-28"},
		{"2026-07-28", "2026-07-28", "2026-07-28"},
		{"2025-11-25", "initialize 2025-11-25", "2025-11-25"},
		{"2025-06-18", "initialize 2025-06-18", "2025-06-18"},
		{"2024-11-05", "initialize 2024-11-05", "2024-11-05"},
	} {
		a := pinnedStdio(t, tc.pin)
		for _, legacy := range []bool{false, true} {
			if seen, pv := eraOf(t, a, legacy); seen != tc.want || pv != tc.reported {
				t.Errorf("pin %q, legacy call %v: the upstream saw %q, the adapter reported %q; want %q, %q", tc.pin, legacy, seen, pv, tc.want, tc.reported)
			}
		}
		// The SDK's path (resources, prompts, contract 2's calls) goes on
		// the same session.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		raw, err := a.CallTool(ctx, "era", nil, nil)
		cancel()
		if err != nil || !strings.Contains(string(raw), `"`+tc.want+`"`) {
			t.Errorf("pin %q: CallTool(era) = %s, %v; want %q", tc.pin, raw, err, tc.want)
		}
	}
}

// TestHTTPProtocolPin: an HTTP server of both eras pinned below
// 2026-07-28 gets one session, under the initialize handshake at the
// pinned version, for calls of both eras: no 2026-07-28 session, so no
// second one for legacy calls.
func TestHTTPProtocolPin(t *testing.T) {
	for _, pin := range []string{"2025-11-25", "2025-06-18"} {
		url, inits := eraUpstream(t, false)
		a := NewHTTP()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := a.Configure(ctx, plugins.ServerConfig{ID: "s", Transport: plugins.TransportHTTP, URL: url, Protocol: pin}); err != nil {
			t.Fatal(err)
		}
		cancel()
		t.Cleanup(func() { a.Close() })
		for i := range 2 {
			for _, legacy := range []bool{false, true} {
				if seen, pv := eraOf(t, a, legacy); seen != "handshake" || pv != pin {
					t.Errorf("pin %s, call %d, legacy %v: the upstream saw %q, the adapter reported %q; want handshake, %s", pin, i, legacy, seen, pv, pin)
				}
			}
		}
		if n := inits.Load(); n != 1 {
			t.Errorf("pin %s: the upstream saw %d initialize requests, want 1", pin, n)
		}
		a.mu.Lock()
		legacy := a.legacy
		a.mu.Unlock()
		if legacy != nil {
			t.Errorf("pin %s: the adapter opened a second session", pin)
		}
	}
}

// TestProtocolPinRefused: an unknown version is refused at Configure, and
// an upstream that answers the handshake with a version newer than the
// pin (it does not speak the pinned one) fails the start, saying why,
// rather than run above the pin.
func TestProtocolPinRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := NewHTTP().Configure(ctx, plugins.ServerConfig{ID: "s", Transport: plugins.TransportHTTP, URL: "http://127.0.0.1:1/", Protocol: "2025-11-26"})
	if err == nil || !strings.Contains(err.Error(), `protocol "2025-11-26" is not an MCP protocol version`) {
		t.Errorf("Configure with protocol 2025-11-26: %v, want it refused", err)
	}

	srv := pinServer(&mcp.ServerOptions{SupportedProtocolVersions: []string{"2026-07-28", "2025-11-25"}})
	ts := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	defer ts.Close()
	a := NewHTTP()
	defer a.Close()
	err = a.Configure(ctx, plugins.ServerConfig{ID: "s", Transport: plugins.TransportHTTP, URL: ts.URL + "/", Protocol: "2025-06-18"})
	if err == nil || !strings.Contains(err.Error(), "protocol 2025-11-25, newer than the server's protocol pin 2025-06-18") {
		t.Errorf("an upstream of 2025-11-25 and newer, pinned at 2025-06-18: %v, want the start refused", err)
	}
}

package plugins_test

import (
	"context"
	"strings"
	"testing"

	"github.com/armoriq/controlplane/plugins"
)

// TestProtocolPinCrossesContracts: a server's protocol pin reaches the
// built-in adapter whatever contract it negotiates (1 carries it in
// armoriq.plugins.v1's ServerConfig, 2 to 5 in armoriq.plugins.v2's), and
// the upstream then speaks the pinned version; unpinned it speaks the
// newest, as before.
func TestProtocolPinCrossesContracts(t *testing.T) {
	for _, tc := range []struct {
		role     string
		contract int
		pin      string
		want     string
	}{
		{"adapter", plugins.ProtocolVersion, "2025-06-18", "2025-06-18"},
		{"adapter", plugins.ProtocolVersion, "", "2026-07-28"},
		{"adapter-v1", 1, "2025-06-18", "2025-06-18"},
		{"adapter-v1", 1, "", "2026-07-28"},
	} {
		u := newUpstream(nil)
		cfg := httpServer("up", u.serveHTTP(t, true))
		cfg.Protocol = tc.pin
		h := newHost(t, plugins.WithEnv("ARMORIQ_TEST_ROLE="+tc.role))
		a := startAdapter(t, h, cfg)
		if got := contract(h, "up"); got != tc.contract {
			t.Fatalf("%s: negotiated contract %d, want %d", tc.role, got, tc.contract)
		}
		if got := mustCall(t, a, "echo", map[string]any{"text": "hi"}); got != "hi" {
			t.Errorf("%s, pin %q: echo answered %q", tc.role, tc.pin, got)
		}
		if got, _ := u.version.Load().(string); got != tc.want {
			t.Errorf("%s (contract %d), pin %q: the upstream spoke %s, want %s", tc.role, tc.contract, tc.pin, got, tc.want)
		}
	}
}

// TestProtocolPinRefused: the host runs no adapter for a pin it cannot
// hold: a version the adapters do not speak, or a pin on a custom adapter,
// which may ignore the field and run unpinned.
func TestProtocolPinRefused(t *testing.T) {
	exe := testExe(t)
	for _, tc := range []struct {
		cfg  plugins.ServerConfig
		want string
	}{
		{plugins.ServerConfig{ID: "custom", Transport: plugins.TransportPlugin, Path: exe, SHA256: sha256File(t, exe), Protocol: "2025-11-25"},
			`adapter "custom": protocol "2025-11-25": only the built-in http and stdio adapters honour a protocol pin, not a custom adapter`},
		{plugins.ServerConfig{ID: "typo", Transport: plugins.TransportHTTP, URL: "http://127.0.0.1:1/", Protocol: "2025-11-26"},
			`adapter "typo": protocol "2025-11-26" is not an MCP protocol version the adapters speak (2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05)`},
	} {
		h := newHost(t)
		err := h.Sync(context.Background(), []plugins.ServerConfig{tc.cfg})
		if err == nil || err.Error() != tc.want {
			t.Errorf("Sync(%s):\ngot  %v\nwant %s", tc.cfg.ID, err, tc.want)
		}
		if st := h.Status()[0]; st.State != plugins.StateFailed || st.PID != 0 || !strings.Contains(st.LastError, "protocol") {
			t.Errorf("status of %s: %+v, want failed, no process, the error", tc.cfg.ID, st)
		}
	}
}

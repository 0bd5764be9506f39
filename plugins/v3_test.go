package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/plugins"
)

// rawHost is the face of Host.Get's adapter a gateway uses for raw calls.
type rawHost interface {
	plugins.AdapterRaw
	UpstreamProtocol() (string, bool)
}

// TestContractV3 sends tools/calls as bytes through the host and the
// built-in adapters, as the gateway does: the params built once for the
// upstream session's protocol version, the answer as the upstream wrote
// it, and the path each call took (raw, over HTTP and stdio alike).
func TestContractV3(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      func(t *testing.T) plugins.ServerConfig
		version  string // the upstream session's
		wantPath string
	}{
		{"http stateless", func(t *testing.T) plugins.ServerConfig {
			return httpServer("up", newUpstream(nil).serveHTTP(t, true))
		}, "2026-07-28", plugins.PathRaw},
		{"http with sessions", func(t *testing.T) plugins.ServerConfig {
			return httpServer("up", newUpstream(nil).serveHTTP(t, false))
		}, "2025-11-25", plugins.PathRaw},
		{"stdio", func(t *testing.T) plugins.ServerConfig { return stdioServer("up") }, "2026-07-28", plugins.PathRaw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t)
			a, ok := startAdapter(t, h, tc.cfg(t)).(rawHost)
			if !ok {
				t.Fatal("Host.Get's adapter does not forward raw calls")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			call := func(tool, args string, client map[string]any, ev *plugins.CallEvents) (*plugins.RawResult, error) {
				pv, raw := a.UpstreamProtocol()
				if !raw {
					t.Fatalf("UpstreamProtocol says the adapter does not take raw calls")
				}
				meta := client
				if pv != "" {
					meta = plugins.UpstreamMeta(client, pv)
				}
				rc := &plugins.RawCall{Method: "tools/call", Name: tool, ProtocolVersion: pv}
				if ev != nil && ev.Progress != nil {
					if meta == nil {
						meta = map[string]any{}
					}
					rc.ProgressToken = "armoriq-g1"
					meta["progressToken"] = rc.ProgressToken
				}
				params, err := plugins.AppendToolCallParams(nil, tool, json.RawMessage(args), meta, nil, "")
				if err != nil {
					t.Fatal(err)
				}
				rc.Params = params
				return a.CallRaw(ctx, rc, ev)
			}

			// The first call is built without knowing the upstream's
			// version; its answer says it, and the next is built for it.
			if pv, _ := a.UpstreamProtocol(); pv != "" {
				t.Errorf("upstream version before any call: %q, want unknown", pv)
			}
			res, err := call("echo", `{"text":"hi"}`, nil, nil)
			if got, err2 := resultTextOf(res, err); got != "hi" || err2 != nil {
				t.Fatalf("echo: %q, %v", got, err2)
			}
			if res.Path != tc.wantPath || res.ProtocolVersion != tc.version {
				t.Errorf("echo went path %q, version %q; want %q, %q", res.Path, res.ProtocolVersion, tc.wantPath, tc.version)
			}
			if pv, _ := a.UpstreamProtocol(); pv != tc.version {
				t.Errorf("upstream version after a call: %q, want %q", pv, tc.version)
			}

			// _meta as the SDK path sends it: the client's keys, the
			// envelope for the session's version.
			res, err = call("meta", "", map[string]any{"x-trace": "t1", plugins.MetaClientCapabilities: map[string]any{"elicitation": map[string]any{}}}, nil)
			txt, err := resultTextOf(res, err)
			if err != nil {
				t.Fatal(err)
			}
			var seen struct {
				Meta map[string]any `json:"meta"`
			}
			if err := json.Unmarshal([]byte(txt), &seen); err != nil {
				t.Fatalf("meta answered %s: %v", txt, err)
			}
			modern := tc.version >= plugins.FirstStatelessVersion
			if seen.Meta["x-trace"] != "t1" {
				t.Errorf("upstream saw _meta %v, want x-trace t1", seen.Meta)
			}
			if _, ok := seen.Meta[plugins.MetaClientCapabilities]; ok != modern {
				t.Errorf("upstream saw _meta %v: client capabilities present %v, want %v", seen.Meta, ok, modern)
			}

			// Progress and log messages, in order, before the result.
			var events []string
			res, err = call("slow", `{"ms":30,"steps":2}`, nil, &plugins.CallEvents{
				Progress: func(p plugins.Progress) { events = append(events, fmt.Sprintf("progress %v/%v", p.Progress, p.Total)) },
			})
			if got, err := resultTextOf(res, err); got != "done" || err != nil {
				t.Errorf("slow: %q, %v", got, err)
			}
			if got := strings.Join(events, "; "); got != "progress 1/2; progress 2/2" {
				t.Errorf("slow's progress: %q", got)
			}
			events = nil
			res, err = call("logs", "", nil, &plugins.CallEvents{Log: func(m plugins.LogMessage) { events = append(events, string(m.Data)) }})
			if got, err := resultTextOf(res, err); got != "logged" || err != nil {
				t.Errorf("logs: %q, %v", got, err)
			}
			if got := strings.Join(events, "; "); got != `"message 1"; "message 2"; "message 3"` {
				t.Errorf("logs relayed: %q", got)
			}

			// The upstream's JSON-RPC error is its answer.
			_, err = call("no-such-tool", "", nil, nil)
			var rpcErr *plugins.RPCError
			if !errors.As(err, &rpcErr) {
				t.Errorf("unknown tool: %v, want the upstream's JSON-RPC error", err)
			}

			if !modern && tc.wantPath == plugins.PathRaw {
				// A server request on the call's stream reaches its hook.
				res, err = call("elicit", "", nil, &plugins.CallEvents{
					Request: func(_ context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
						return json.RawMessage(`{"action":"accept","content":{"name":"Ada"}}`), nil
					},
				})
				if got, err := resultTextOf(res, err); got != "Hello, Ada" || err != nil {
					t.Errorf("elicit: %q, %v", got, err)
				}
			}
			st := h.Status()[0]
			if tc.wantPath == plugins.PathRaw && (st.RawCalls == 0 || st.SDKCalls != 0) || tc.wantPath == plugins.PathSDK && st.RawCalls != 0 {
				t.Errorf("status counts raw %d, sdk %d; want every call on the %s path", st.RawCalls, st.SDKCalls, tc.wantPath)
			}
		})
	}
}

// TestRawCallToV2Adapter: under an adapter that speaks contract version 2
// the host decodes the raw params and calls CallToolV2 (path "sdk").
func TestRawCallToV2Adapter(t *testing.T) {
	h := newHost(t, plugins.WithEnv("ARMORIQ_TEST_ROLE=adapter-asker"))
	a := startAdapter(t, h, plugins.ServerConfig{ID: "asker", Transport: plugins.TransportHTTP, URL: "http://127.0.0.1:1"}).(rawHost)
	if _, raw := a.UpstreamProtocol(); raw {
		t.Error("a contract 2 adapter reported as taking raw calls")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	params, _ := plugins.AppendToolCallParams(nil, "ask", nil, nil, nil, "")
	res, err := a.CallRaw(ctx, &plugins.RawCall{Method: "tools/call", Name: "ask", Params: params}, &plugins.CallEvents{
		Request: func(context.Context, string, json.RawMessage) (json.RawMessage, error) {
			return json.RawMessage(`{"action":"accept"}`), nil
		},
	})
	if got, err := resultTextOf(res, err); err != nil || got != `{"action":"accept"}` || res.Path != plugins.PathSDK {
		t.Errorf("raw call to a contract 2 adapter: %q, %v, %+v", got, err, res)
	}
}

func resultTextOf(res *plugins.RawResult, err error) (string, error) {
	if err != nil {
		return "", err
	}
	return resultText(res.Result)
}

// TestContractV3LegacyCalls: the host keeps apart the version legacy calls
// (RawCall.Legacy) were served at, so that the gateway builds each kind's
// _meta for the session that serves it and the adapter rebuilds none: a
// stateless HTTP upstream serves them on a session under the handshake,
// a stdio server on its one 2026-07-28 session.
func TestContractV3LegacyCalls(t *testing.T) {
	for _, tc := range []struct {
		name           string
		cfg            func(t *testing.T) plugins.ServerConfig
		legacy, modern string // the versions each kind is served at
	}{
		{"http stateless", func(t *testing.T) plugins.ServerConfig {
			return httpServer("up", newUpstream(nil).serveHTTP(t, true))
		}, plugins.LegacyVersion, plugins.FirstStatelessVersion},
		{"stdio", func(t *testing.T) plugins.ServerConfig { return stdioServer("up") }, plugins.FirstStatelessVersion, plugins.FirstStatelessVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t)
			a, ok := startAdapter(t, h, tc.cfg(t)).(interface {
				plugins.AdapterRaw
				UpstreamProtocolFor(bool) (string, bool)
			})
			if !ok {
				t.Fatal("Host.Get's adapter does not report versions by kind of call")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			call := func(legacy bool) *plugins.RawResult {
				t.Helper()
				pv, _ := a.UpstreamProtocolFor(legacy)
				if legacy && pv == "" {
					pv = plugins.LegacyVersion // as the gateway guesses it
				}
				var meta map[string]any
				if pv != "" {
					meta = plugins.UpstreamMeta(nil, pv)
				}
				params, err := plugins.AppendToolCallParams(nil, "echo", json.RawMessage(`{"text":"hi"}`), meta, nil, "")
				if err != nil {
					t.Fatal(err)
				}
				res, err := a.CallRaw(ctx, &plugins.RawCall{Method: "tools/call", Name: "echo", Params: params, ProtocolVersion: pv, Legacy: legacy}, nil)
				if got, err := resultTextOf(res, err); got != "hi" || err != nil {
					t.Fatalf("echo (legacy %v): %q, %v", legacy, got, err)
				}
				return res
			}
			for i := range 3 {
				if res := call(true); res.ProtocolVersion != tc.legacy {
					t.Errorf("legacy call %d served at %q, want %q", i, res.ProtocolVersion, tc.legacy)
				}
				if res := call(false); res.ProtocolVersion != tc.modern {
					t.Errorf("call %d served at %q, want %q", i, res.ProtocolVersion, tc.modern)
				}
			}
			if pv, _ := a.UpstreamProtocolFor(true); pv != tc.legacy {
				t.Errorf("legacy calls' version: %q, want %q", pv, tc.legacy)
			}
			if pv, _ := a.UpstreamProtocolFor(false); pv != tc.modern {
				t.Errorf("other calls' version: %q, want %q", pv, tc.modern)
			}
		})
	}
}

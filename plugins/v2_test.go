package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
)

// v2 returns the contract version 2 face of a host's adapter.
func v2(t testing.TB, a plugins.Adapter) plugins.AdapterV2 {
	t.Helper()
	a2, ok := a.(plugins.AdapterV2)
	if !ok {
		t.Fatalf("Host.Get returned a %T, not a plugins.AdapterV2", a)
	}
	return a2
}

func contract(h *plugins.Host, id string) int {
	for _, st := range h.Status() {
		if st.ID == id {
			return st.Contract
		}
	}
	return 0
}

// TestContractV2 checks what version 2 adds, through the built-in
// adapters: the request's _meta reaches the upstream, log messages come
// back in order before the result, and an input_required result and the
// retry's answers pass through (under 2026-07-28).
func TestContractV2(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    func(t *testing.T) plugins.ServerConfig
		modern bool // the adapter speaks 2026-07-28 to the upstream
	}{
		{"http stateless", func(t *testing.T) plugins.ServerConfig {
			return httpServer("up", newUpstream(nil).serveHTTP(t, true))
		}, true},
		{"http with sessions", func(t *testing.T) plugins.ServerConfig {
			return httpServer("up", newUpstream(nil).serveHTTP(t, false))
		}, false},
		{"stdio", func(t *testing.T) plugins.ServerConfig { return stdioServer("up") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t)
			a := v2(t, startAdapter(t, h, tc.cfg(t)))
			// The built-in adapters speak version 3, which serves
			// version 2's methods unchanged.
			if got := contract(h, "up"); got != plugins.ProtocolVersion {
				t.Errorf("negotiated contract: got %d, want %d", got, plugins.ProtocolVersion)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			// _meta: the client's keys pass; the protocol version is the
			// adapter's session's, and the client's capabilities pass only
			// under 2026-07-28.
			meta := `{"x-trace":"t1","io.modelcontextprotocol/protocolVersion":"2099-01-01",` +
				`"io.modelcontextprotocol/clientCapabilities":{"elicitation":{"form":{}}}}`
			raw, err := a.CallToolV2(ctx, &plugins.ToolCall{Name: "meta", RequestExtra: plugins.RequestExtra{Meta: json.RawMessage(meta)}}, nil)
			if err != nil {
				t.Fatalf("CallToolV2(meta): %v", err)
			}
			txt, err := resultText(raw)
			if err != nil {
				t.Fatal(err)
			}
			var seen struct {
				Meta map[string]any          `json:"meta"`
				Caps *mcp.ClientCapabilities `json:"caps"`
			}
			if err := json.Unmarshal([]byte(txt), &seen); err != nil {
				t.Fatalf("meta tool answered %s: %v", txt, err)
			}
			if seen.Meta["x-trace"] != "t1" {
				t.Errorf("upstream saw _meta %v, want x-trace t1 in it", seen.Meta)
			}
			if v, _ := seen.Meta["io.modelcontextprotocol/protocolVersion"].(string); v == "2099-01-01" {
				t.Errorf("upstream saw the client's protocol version %s, want the adapter's session's", v)
			}
			if _, passed := seen.Meta["io.modelcontextprotocol/clientCapabilities"]; passed != tc.modern {
				t.Errorf("upstream saw _meta %v: the client's capabilities passed = %v, want %v", seen.Meta, passed, tc.modern)
			}
			// Under 2026-07-28 the client's; under the initialize handshake
			// the adapter's own, which relays sampling and elicitation.
			if seen.Caps == nil || seen.Caps.Elicitation == nil {
				t.Errorf("upstream saw client capabilities %+v, want elicitation declared", seen.Caps)
			}

			// Log messages arrive in order, before the result.
			var events []string
			raw, err = a.CallToolV2(ctx, &plugins.ToolCall{Name: "logs"}, &plugins.CallEvents{Log: func(m plugins.LogMessage) {
				events = append(events, fmt.Sprintf("%s %s %s", m.Level, m.Logger, m.Data))
			}})
			if err != nil {
				t.Fatalf("CallToolV2(logs): %v", err)
			}
			events = append(events, "result")
			want := `info test "message 1"; info test "message 2"; info test "message 3"; result`
			if got := strings.Join(events, "; "); got != want {
				t.Errorf("events of logs: got %q, want %q", got, want)
			}

			if !tc.modern {
				// The upstream asks its client during the call: the
				// request comes to the call's hook, the answer goes back.
				raw, err = a.CallToolV2(ctx, &plugins.ToolCall{Name: "elicit"}, &plugins.CallEvents{
					Request: func(_ context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
						if method != "elicitation/create" || !strings.Contains(string(params), "Your name?") {
							return nil, &plugins.RPCError{Code: -32602, Message: "unexpected " + method + " " + string(params)}
						}
						return json.RawMessage(`{"action":"accept","content":{"name":"Ada"}}`), nil
					},
				})
				if got, err2 := resultText(raw); err != nil || err2 != nil || got != "Hello, Ada" {
					t.Errorf("elicit: got %q, %v, %v; want Hello, Ada", got, err, err2)
				}
				return
			}
			// SEP-2322: the input_required result comes back as the
			// upstream wrote it; the retry carries the answers and state.
			raw, err = a.CallToolV2(ctx, &plugins.ToolCall{Name: "ask"}, nil)
			if err != nil {
				t.Fatalf("CallToolV2(ask): %v", err)
			}
			var ir struct {
				ResultType    string                     `json:"resultType"`
				InputRequests map[string]json.RawMessage `json:"inputRequests"`
				RequestState  string                     `json:"requestState"`
			}
			if err := json.Unmarshal(raw, &ir); err != nil || ir.ResultType != "input_required" || ir.InputRequests["name"] == nil || ir.RequestState != "s1" {
				t.Fatalf("ask: got %s (%v), want an input_required result asking for name, state s1", raw, err)
			}
			raw, err = a.CallToolV2(ctx, &plugins.ToolCall{Name: "ask", RequestExtra: plugins.RequestExtra{
				InputResponses: json.RawMessage(`{"name":{"action":"accept","content":{"name":"Ada"}}}`),
				RequestState:   ir.RequestState,
			}}, nil)
			if err != nil {
				t.Fatalf("CallToolV2(ask, answered): %v", err)
			}
			if got, err := resultText(raw); err != nil || got != "Hello, Ada (state s1)" {
				t.Errorf("ask, answered: got %q, %v; want Hello, Ada (state s1)", got, err)
			}
		})
	}
}

// TestContractV1Adapter runs an adapter built before version 2: the host
// negotiates version 1 and every call works, without the extras.
func TestContractV1Adapter(t *testing.T) {
	url := newUpstream(nil).serveHTTP(t, true)
	h := newHost(t, plugins.WithEnv("ARMORIQ_TEST_ROLE=adapter-v1"))
	a := startAdapter(t, h, httpServer("old", url))
	if got := contract(h, "old"); got != 1 {
		t.Fatalf("negotiated contract: got %d, want 1", got)
	}
	exercise(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	logs := 0
	raw, err := v2(t, a).CallToolV2(ctx, &plugins.ToolCall{Name: "logs", RequestExtra: plugins.RequestExtra{Meta: json.RawMessage(`{"x-trace":"t1"}`)}},
		&plugins.CallEvents{Log: func(plugins.LogMessage) { logs++ }})
	if got, err2 := resultText(raw); err != nil || err2 != nil || got != "logged" {
		t.Fatalf("CallToolV2(logs) under contract 1: %q, %v, %v", got, err, err2)
	}
	if logs != 0 {
		t.Errorf("contract 1 relayed %d log messages, want none", logs)
	}
}

// asker is a custom adapter whose tool "ask" asks its client a question
// through the host (a server-to-client request) and answers with the reply.
type asker struct{}

func (asker) Configure(context.Context, plugins.ServerConfig) error { return nil }
func (asker) ListTools(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"tools":[{"name":"ask","inputSchema":{"type":"object"}}]}`), nil
}
func (asker) CallTool(context.Context, string, json.RawMessage, func(plugins.Progress)) (json.RawMessage, error) {
	return nil, errors.New("contract 2 only")
}
func (asker) ListResources(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"resources":[]}`), nil
}
func (asker) ReadResource(context.Context, string) (json.RawMessage, error) {
	return nil, &plugins.RPCError{Code: -32002, Message: "not found"}
}
func (asker) ListPrompts(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"prompts":[]}`), nil
}
func (asker) GetPrompt(context.Context, string, map[string]string) (json.RawMessage, error) {
	return nil, &plugins.RPCError{Code: -32602, Message: "no prompts"}
}
func (asker) Health(context.Context) error { return nil }
func (asker) GetPromptV2(ctx context.Context, name string, args map[string]string, _ *plugins.RequestExtra) (json.RawMessage, error) {
	return asker{}.GetPrompt(ctx, name, args)
}
func (asker) ReadResourceV2(ctx context.Context, uri string, _ *plugins.RequestExtra) (json.RawMessage, error) {
	return asker{}.ReadResource(ctx, uri)
}
func (asker) CallToolV2(ctx context.Context, call *plugins.ToolCall, ev *plugins.CallEvents) (json.RawMessage, error) {
	reply, err := ev.Request(ctx, "elicitation/create", json.RawMessage(`{"message":"Your name?","requestedSchema":{"type":"object"}}`))
	answer := string(reply)
	if err != nil {
		answer = "error: " + err.Error()
	}
	b, _ := json.Marshal(answer)
	return json.RawMessage(`{"content":[{"type":"text","text":` + string(b) + `}]}`), nil
}

// TestServerRequestRelay checks the glue of server-to-client requests: the
// adapter's request reaches the host's hook on the call's stream, and the
// answer (or the refusal, without a hook) goes back to the adapter.
func TestServerRequestRelay(t *testing.T) {
	h := newHost(t, plugins.WithEnv("ARMORIQ_TEST_ROLE=adapter-asker"))
	a := v2(t, startAdapter(t, h, plugins.ServerConfig{ID: "asker", Transport: plugins.TransportHTTP, URL: "http://127.0.0.1:1"}))
	if got := contract(h, "asker"); got != 2 {
		t.Errorf("an adapter implementing AdapterV2 but not AdapterRaw negotiated contract %d, want 2", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var asked string
	raw, err := a.CallToolV2(ctx, &plugins.ToolCall{Name: "ask"}, &plugins.CallEvents{
		Request: func(_ context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
			asked = method + " " + string(params)
			return json.RawMessage(`{"action":"accept","content":{"name":"Ada"}}`), nil
		},
	})
	got, err2 := resultText(raw)
	if err != nil || err2 != nil || got != `{"action":"accept","content":{"name":"Ada"}}` {
		t.Errorf("ask with a hook: got %q, %v, %v; want the hook's answer", got, err, err2)
	}
	if !strings.HasPrefix(asked, `elicitation/create {"message":"Your name?"`) {
		t.Errorf("the hook was asked %q", asked)
	}
	raw, err = a.CallToolV2(ctx, &plugins.ToolCall{Name: "ask"}, nil)
	got, err2 = resultText(raw)
	if err != nil || err2 != nil || !strings.Contains(got, "error: upstream error -32601") {
		t.Errorf("ask without a hook: got %q, %v, %v; want the adapter to see a -32601 refusal", got, err, err2)
	}
}

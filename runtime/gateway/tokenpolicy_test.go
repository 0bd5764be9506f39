package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/intent"
	"github.com/armoriq/controlplane/runtime/store"
)

// tokenWithPolicy asks for a token with the token policy pol, as
// getIntentToken(plan, pol) does, and returns the status and the answer
// with the plan remembered for sdkInvoke.
func (g *testGateway) tokenWithPolicy(pol any, steps ...map[string]any) (int, map[string]any) {
	g.t.Helper()
	anySteps := make([]any, len(steps))
	for i, s := range steps {
		anySteps[i] = s
	}
	planObj := map[string]any{"goal": "test", "steps": anySteps}
	resp, data := g.send("POST", "/iap/sdk/token", g.agentKey, map[string]any{
		"user_id": "alice@example.com", "agent_id": "agent-1", "context_id": "default",
		"plan": planObj, "policy": pol, "expires_in": 60.0,
	}, nil)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		g.t.Fatalf("token answer %s: %v", data, err)
	}
	var plan map[string]any
	j, _ := json.Marshal(planObj)
	json.Unmarshal(j, &plan)
	out["plan_echo"] = plan
	return resp.StatusCode, out
}

// TestTokenPolicyAtIssue: a step the token's own policy leaves out is
// refused at issue exactly as a step the bundle denies.
func TestTokenPolicyAtIssue(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	echo, add := step("tools", "echo", map[string]any{"text": "hi"}), step("tools", "add", map[string]any{"a": 1, "b": 2})
	tests := []struct {
		name       string
		pol        any
		status     int
		denied     []string
		reasonPart string
	}{
		{"no policy", nil, 200, nil, ""},
		{"allow everything", map[string]any{"allow": []string{"*"}, "deny": []string{}}, 200, nil, ""},
		{"allow both by glob", map[string]any{"allow": []string{"tools/*"}}, 200, nil, ""},
		{"dot form", map[string]any{"allow": []string{"tools.echo", "tools.add"}}, 200, nil, ""},
		{"allow leaves out a step", map[string]any{"allow": []string{"tools/echo"}}, 403, []string{"add"}, `tools/add is not allowed by the token's policy (allow ["tools/echo"])`},
		{"deny a step", map[string]any{"deny": []string{"tools/a*"}}, 403, []string{"add"}, `tools/add is denied by the token's policy (deny "tools/a*")`},
		{"allowed_tools leaves out a step", map[string]any{"allowed_tools": []string{"echo"}}, 403, []string{"add"}, `tools/add is not in the token's allowed_tools ["echo"]`},
		{"deny wins over allow", map[string]any{"allow": []string{"*"}, "deny": []string{"*"}}, 403, []string{"echo", "add"}, `denied by the token's policy (deny "*")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := g.tokenWithPolicy(tt.pol, echo, add)
			if status != tt.status {
				t.Fatalf("policy %v: status %d, want %d: %v", tt.pol, status, tt.status, out)
			}
			pv := out["policy_validation"].(map[string]any)
			if status == 200 {
				if d := pv["denied_tools"].([]any); len(d) != 0 {
					t.Errorf("policy %v: denied_tools = %v, want none", tt.pol, d)
				}
				return
			}
			if out["success"] != false || out["enforcement"].(map[string]any)["action"] != "block" {
				t.Errorf("policy %v: answer %v, want success false and an enforcement block", tt.pol, out)
			}
			d := pv["denied_tools"].([]any)
			if len(d) != len(tt.denied) {
				t.Fatalf("policy %v: denied_tools = %v, want %v", tt.pol, d, tt.denied)
			}
			for i := range d {
				if d[i] != tt.denied[i] {
					t.Errorf("policy %v: denied_tools = %v, want %v", tt.pol, d, tt.denied)
				}
			}
			if r := pv["denied_reasons"].([]any); !strings.Contains(r[0].(string), tt.reasonPart) {
				t.Errorf("policy %v: denied_reasons = %v, want one containing %q", tt.pol, r, tt.reasonPart)
			}
		})
	}
	recs, _ := g.store.ListAudit(context.Background(), store.AuditFilter{Decision: store.Blocked})
	if len(recs) == 0 || recs[0].Rule != tokenPolicyRule {
		t.Errorf("audit of tokens refused by their policy = %+v; want blocked records naming %q", recs, tokenPolicyRule)
	}

	// A bundle deny is still reported as the bundle's, whatever the token allows.
	status, out := g.tokenWithPolicy(map[string]any{"allow": []string{"*"}}, step("tools", "delete_repo", nil))
	if r := out["policy_validation"].(map[string]any)["denied_reasons"].([]any); status != 403 || !strings.Contains(r[0].(string), "policy.deny[0]") {
		t.Errorf("bundle-denied step under a permissive token policy: status %d: %v", status, out)
	}
}

func TestTokenPolicyInvalid(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	tests := []struct {
		pol  any
		want string
	}{
		{map[string]any{"allow": "tools/*"}, "policy.allow must be a list of strings"},
		{map[string]any{"allow": []any{"tools/echo", 3}}, "policy.allow[1] must be a string, got a number"},
		{map[string]any{"permit": []string{"*"}}, `policy: unknown key "permit"`},
		{map[string]any{"deny": []string{"tools/[ab]"}}, "policy.deny[0]: pattern \"tools/[ab]\": only '*' and '?' are wildcards"},
		{[]string{"*"}, "policy must be an object"},
	}
	for _, tt := range tests {
		status, out := g.tokenWithPolicy(tt.pol, step("tools", "echo", nil))
		if status != 400 || !strings.Contains(out["message"].(string), tt.want) {
			t.Errorf("policy %v: status %d: %v; want 400 with %q", tt.pol, status, out, tt.want)
		}
	}
}

// TestTokenPolicyAtInvoke: the policy signed into the token is checked for
// each call, and cannot be edited.
func TestTokenPolicyAtInvoke(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	echo, add := step("tools", "echo", map[string]any{"text": "hi"}), step("tools", "add", map[string]any{"a": 1, "b": 2})

	// A token issued with allow: ["tools/ech*"] for a plan of echo only:
	// the policy is in the signed token.
	status, tok := g.tokenWithPolicy(map[string]any{"allow": []string{"tools.ech*"}}, echo)
	if status != 200 {
		t.Fatalf("token: status %d: %v", status, tok)
	}
	signed := tok["token"].(map[string]any)["policy"].(map[string]any)["token_policy"].(map[string]any)
	if a := signed["allow"].([]any); len(a) != 1 || a[0] != "tools/ech*" {
		t.Errorf("signed token_policy = %v, want allow [tools/ech*]", signed)
	}
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil); resp.StatusCode != 200 {
		t.Fatalf("echo under its token policy: status %d: %v", resp.StatusCode, out)
	}

	// Editing the policy inside the token breaks its signature.
	edited := cloneJSON(t, tok)
	edited["token"].(map[string]any)["policy"].(map[string]any)["token_policy"] = map[string]any{"allow": []any{"*"}, "deny": []any{}}
	et := edited["token"]
	resp, out := g.sdkInvoke(g.agentKey, edited, "tools", "echo", map[string]any{"text": "hi"}, map[string]any{"token": et, "csrg_token": et})
	if resp.StatusCode != 401 || !strings.Contains(out["message"].(string), "signature") {
		t.Errorf("token with an edited policy: status %d: %v; want 401 (signature)", resp.StatusCode, out)
	}

	// A token of this gateway whose plan holds a step its own policy
	// leaves out (issue refuses to make one; an older gateway could): the
	// call is refused with the SDK's enforcement block.
	full := g.issue("alice@example.com", echo, add)
	var rt intent.Token
	raw, _ := json.Marshal(full["token"])
	if err := json.Unmarshal(raw, &rt); err != nil {
		t.Fatal(err)
	}
	rt.Policy["token_policy"] = map[string]any{"allow": []any{"tools/ech*"}, "deny": []any{}}
	if err := intent.SignToken(&rt, g.srv.signingKey().PrivateKey); err != nil {
		t.Fatal(err)
	}
	extra := map[string]any{"token": rt, "csrg_token": rt, "intent_token": map[string]any{"token": rt, "plan": full["plan_echo"], "intent_reference": full["intent_reference"]}}
	if resp, out := g.sdkInvoke(g.agentKey, full, "tools", "echo", map[string]any{"text": "hi"}, extra); resp.StatusCode != 200 {
		t.Errorf("echo allowed by the re-signed token's policy: status %d: %v", resp.StatusCode, out)
	}
	resp, out = g.sdkInvoke(g.agentKey, full, "tools", "add", map[string]any{"a": 1, "b": 2}, extra)
	enf, _ := out["enforcement"].(map[string]any)
	if resp.StatusCode != 403 || enf["action"] != "block" || !strings.Contains(enf["reason"].(string), `tools/add is not allowed by the token's policy (allow ["tools/ech*"])`) {
		t.Fatalf("add outside the token's policy: status %d: %v; want 403 with an enforcement block", resp.StatusCode, out)
	}
	if md, _ := enf["metadata"].(map[string]any); md["rule"] != tokenPolicyRule {
		t.Errorf("enforcement metadata = %v, want rule %q", enf["metadata"], tokenPolicyRule)
	}
	recs, _ := g.store.ListAudit(context.Background(), store.AuditFilter{Decision: store.Blocked, Tool: "add"})
	if len(recs) == 0 || recs[len(recs)-1].Rule != tokenPolicyRule {
		t.Errorf("audit of the call outside the token's policy = %+v; want a blocked record naming rule %q", recs, tokenPolicyRule)
	}
}

func cloneJSON(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTokenPolicyOnMCP: on /mcp, a call carrying an intent token is checked
// against the token's own policy too, and refused with the blocked code.
func TestTokenPolicyOnMCP(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	pol := bundle.Policy{RequireCSRG: true, Rules: []bundle.Rule{{ID: "ann", Effect: bundle.Allow, Tools: []string{"web/*"}, Users: []string{"ann@example.com"}}}}
	g.pushServers("tp1", 1, pol, bundle.Server{ID: "web", Transport: "http", URL: g.upstream + "/", ToolPrefix: "never"})
	cs := g.mcpClient(g.agentKey, map[string]string{headerUser: "ann@example.com"})

	tok := g.issue("ann@example.com", step("web", "echo", map[string]any{"text": "hi"}), step("web", "add", map[string]any{"a": 1, "b": 2}))
	var rt intent.Token
	raw, _ := json.Marshal(tok["token"])
	if err := json.Unmarshal(raw, &rt); err != nil {
		t.Fatal(err)
	}
	rt.Policy["token_policy"] = map[string]any{"allow": []any{"web/ech*"}, "deny": []any{}}
	if err := intent.SignToken(&rt, g.srv.signingKey().PrivateKey); err != nil {
		t.Fatal(err)
	}
	meta := map[string]any{"token": rt, "plan": tok["plan_echo"], "intent_reference": tok["intent_reference"]}
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Meta: mcp.Meta{metaIntent: meta}, Name: "echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil || res.Content[0].(*mcp.TextContent).Text != "echo: hi" {
		t.Fatalf("echo within the token's policy: %v %v", res, err)
	}
	_, err = cs.CallTool(context.Background(), &mcp.CallToolParams{Meta: mcp.Meta{metaIntent: meta}, Name: "add", Arguments: map[string]any{"a": 1, "b": 2}})
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) || werr.Code != codeBlocked || !strings.Contains(werr.Message, `web/add is not allowed by the token's policy (allow ["web/ech*"])`) {
		t.Fatalf("add outside the token's policy: %v; want code %d naming the token's policy", err, codeBlocked)
	}
	g.srv.waitOutcomes(5 * time.Second) // echo's outcome is appended after the answer
	recs, _ := g.store.ListAudit(context.Background(), store.AuditFilter{Tool: "add"})
	if len(recs) != 1 || recs[0].Decision != store.Blocked || recs[0].Rule != tokenPolicyRule {
		t.Errorf("audit of add = %+v; want one record, blocked by %q", recs, tokenPolicyRule)
	}
}

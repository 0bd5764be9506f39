package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func enforcementOf(out map[string]any) (action string, dc map[string]any, reason string) {
	e, _ := out["enforcement"].(map[string]any)
	action, _ = e["action"].(string)
	reason, _ = e["reason"].(string)
	dc, _ = out["delegation_context"].(map[string]any)
	return action, dc, reason
}

// TestHeldCallRunsOnceAfterApproval: /invoke of a held call makes a pending
// approval; retried before a decision it stays held; approved, the same
// call retried with _delegation_id runs exactly once; the audit chain links
// the hold, the approval and the execution by the approval id.
func TestHeldCallRunsOnceAfterApproval(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, testPolicy())
	params := map[string]any{"text": "pay 5000"}
	tok := g.issue("eve@example.com", step("tools", "echo", params))

	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", params, nil)
	action, dc, _ := enforcementOf(out)
	id, _ := dc["delegationId"].(string)
	if resp.StatusCode != 403 || action != "hold" || !strings.HasPrefix(id, "apv_") || dc["intentReference"] != tok["intent_reference"] || dc["planId"] == "" {
		t.Fatalf("held call: %d %v", resp.StatusCode, out)
	}
	// Retried before anyone decides: the same approval, still held.
	resp, out = g.sdkInvoke(g.agentKey, tok, "tools", "echo", params, nil)
	if _, dc2, _ := enforcementOf(out); resp.StatusCode != 403 || dc2["delegationId"] != id {
		t.Fatalf("retry while pending: %d %v, want the same approval %s", resp.StatusCode, out, id)
	}
	withID := map[string]any{"text": "pay 5000", "_delegation_id": id}
	if resp, _ := g.sdkInvoke(g.agentKey, tok, "tools", "echo", withID, nil); resp.StatusCode != 403 {
		t.Fatalf("retry with the id while pending: %d, want 403", resp.StatusCode)
	}
	// The calling key cannot approve its own call.
	g.do("POST", "/v1/approvals/"+id+"/approve", g.agentKey, nil, 403, nil)
	g.do("POST", "/v1/approvals/"+id+"/approve", g.adminKey, map[string]any{"comment": "invoice 42"}, 200, nil)

	// Concurrent retries: exactly one runs.
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			resp, _ := g.sdkInvoke(g.agentKey, tok, "tools", "echo", withID, nil)
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[200] != 1 || codes[403] != 4 {
		t.Fatalf("concurrent retries after approval: %v, want one 200 and four 403", codes)
	}
	resp, out = g.sdkInvoke(g.agentKey, tok, "tools", "echo", withID, nil)
	if action, _, reason := enforcementOf(out); resp.StatusCode != 403 || action != "block" || !strings.Contains(reason, "already used") {
		t.Errorf("retry after execution: %d %v, want blocked as used", resp.StatusCode, out)
	}
	if got, _ := g.srv.human.approvals.Get(context.Background(), id); got.State != store.ApprovalExecuted {
		t.Errorf("approval state %s, want executed", got.State)
	}

	// The audit chain: held (with the id), the approval (who, why), the
	// execution's request and outcome, all naming the approval.
	g.srv.waitOutcomes(readWait)
	var recs []store.AuditRecord
	g.store.ExportAudit(context.Background(), store.AuditFilter{}, func(r store.AuditRecord) error {
		if r.ApprovalID == id {
			recs = append(recs, r)
		}
		return nil
	})
	var held, approved, request, outcome int
	for _, r := range recs {
		switch {
		case r.Phase == store.PhaseApproval && r.Decision == store.Allowed && strings.Contains(r.Outcome, "approved by bootstrap admin: invoice 42"):
			approved++
		case r.Phase == store.PhaseRequest && r.Decision == store.Allowed && r.Rule == "hold-eve":
			request++
		case r.Phase == store.PhaseOutcome:
			outcome++
		case r.Decision == store.Held:
			held++
		}
	}
	if held < 1 || approved != 1 || request != 1 || outcome != 1 {
		t.Errorf("audit records of %s: held %d, approval %d, request %d, outcome %d; want ≥1, 1, 1, 1: %+v", id, held, approved, request, outcome, recs)
	}
	if rep, err := g.store.VerifyAudit(context.Background()); err != nil || !rep.OK() {
		t.Errorf("the chain does not verify: %+v, %v", rep, err)
	}
}

func TestHeldCallDeniedOrForeign(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, testPolicy())
	params := map[string]any{"text": "wire"}
	tok := g.issue("eve@example.com", step("tools", "echo", params))
	_, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", params, nil)
	_, dc, _ := enforcementOf(out)
	id := dc["delegationId"].(string)
	g.do("POST", "/v1/approvals/"+id+"/deny", g.adminKey, map[string]any{"comment": "not a known vendor"}, 200, nil)
	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "wire", "_delegation_id": id}, nil)
	if action, _, reason := enforcementOf(out); resp.StatusCode != 403 || action != "block" || !strings.Contains(reason, "not a known vendor") {
		t.Errorf("retry after denial: %d %v, want blocked with the reason", resp.StatusCode, out)
	}

	// An approval of another call does not let this one through.
	tok2 := g.issue("eve@example.com", step("tools", "echo", map[string]any{"text": "other"}))
	_, out = g.sdkInvoke(g.agentKey, tok2, "tools", "echo", map[string]any{"text": "other"}, nil)
	_, dc, _ = enforcementOf(out)
	other := dc["delegationId"].(string)
	g.do("POST", "/v1/approvals/"+other+"/approve", g.adminKey, nil, 200, nil)
	tok3 := g.issue("eve@example.com", step("tools", "echo", map[string]any{"text": "third"}))
	resp, out = g.sdkInvoke(g.agentKey, tok3, "tools", "echo", map[string]any{"text": "third", "_delegation_id": other}, nil)
	if action, _, reason := enforcementOf(out); resp.StatusCode != 403 || action != "block" || !strings.Contains(reason, "another token") {
		t.Errorf("a foreign approval: %d %v, want blocked", resp.StatusCode, out)
	}
	// Junk ids are refused before any lookup.
	resp, _ = g.sdkInvoke(g.agentKey, tok3, "tools", "echo", map[string]any{"text": "third", "_delegation_id": "x'; drop"}, nil)
	if resp.StatusCode != 403 {
		t.Errorf("a junk approval id: %d, want 403", resp.StatusCode)
	}
	// The approved call itself runs, with its own approval.
	resp, _ = g.sdkInvoke(g.agentKey, tok2, "tools", "echo", map[string]any{"text": "other", "_delegation_id": other}, nil)
	if resp.StatusCode != 200 {
		t.Errorf("the approved call itself: %d, want 200", resp.StatusCode)
	}
}

// TestMCPHeldCallApproved: on /mcp, a held call's JSON-RPC error names its
// approval; approved, the same call with _delegation_id runs once.
func TestMCPHeldCallApproved(t *testing.T) {
	g := adapterGateway(t, "1", nil)
	pol := bundle.Policy{Rules: []bundle.Rule{
		{ID: "ok", Effect: bundle.Allow, Tools: []string{"web/add"}},
		{ID: "big-sums", Effect: bundle.Hold, Tools: []string{"web/add"}, When: "args.a > 1000", Reason: "big sums need approval"},
	}}
	g.pushServers("p1", 1, pol, bundle.Server{ID: "web", Transport: "http", URL: g.upstream + "/", ToolPrefix: "never"})
	cs := g.mcpClient(g.agentKey, nil)
	_, err := callText(t, cs, "add", map[string]any{"a": 5000, "b": 1})
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) || werr.Code != codeHeld || !strings.Contains(werr.Message, "apv_") {
		t.Fatalf("held call: err = %v, want a hold naming its approval", err)
	}
	var list struct {
		Approvals []store.Approval `json:"approvals"`
	}
	g.do("GET", "/v1/approvals?state=pending", g.adminKey, nil, 200, &list)
	if len(list.Approvals) != 1 || !strings.Contains(werr.Message, list.Approvals[0].ID) || !strings.Contains(string(werr.Data), list.Approvals[0].ID) {
		t.Fatalf("pending approvals %+v for hold %v", list.Approvals, werr)
	}
	id := list.Approvals[0].ID
	g.do("POST", "/v1/approvals/"+id+"/approve", g.adminKey, nil, 200, nil)
	if out, err := callText(t, cs, "add", map[string]any{"a": 5000, "b": 1, "_delegation_id": id}); err != nil || out != "5001" {
		t.Fatalf("approved retry = %q, %v", out, err)
	}
	if _, err := callText(t, cs, "add", map[string]any{"a": 5000, "b": 1, "_delegation_id": id}); !errors.As(err, &werr) || werr.Code != codeBlocked {
		t.Fatalf("second retry: %v, want blocked (used)", err)
	}
	// The approval id in _meta instead of the arguments.
	_, err = callText(t, cs, "add", map[string]any{"a": 7000, "b": 1})
	if !errors.As(err, &werr) || werr.Code != codeHeld {
		t.Fatalf("second held call: %v", err)
	}
	g.do("GET", "/v1/approvals?state=pending", g.adminKey, nil, 200, &list)
	id2 := list.Approvals[0].ID
	g.do("POST", "/v1/approvals/"+id2+"/approve", g.adminKey, nil, 200, nil)
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "add", Arguments: map[string]any{"a": 7000, "b": 1}, Meta: mcp.Meta{metaApproval: id2}})
	if err != nil || res.Content[0].(*mcp.TextContent).Text != "7001" {
		t.Fatalf("approved retry with _meta: %v, %v", res, err)
	}
	// Other arguments are another call: a new approval.
	if _, err := callText(t, cs, "add", map[string]any{"a": 6000, "b": 1, "_delegation_id": id}); !errors.As(err, &werr) || werr.Code != codeBlocked || !strings.Contains(werr.Message, "other arguments") {
		t.Fatalf("other arguments under the approval: %v, want blocked", err)
	}
}

// TestDelegationEndpoints walks the Python SDK's invoke_with_policy flow.
func TestDelegationEndpoints(t *testing.T) {
	g := newTestGateway(t, nil)
	pol := testPolicy()
	pol.Rules[3].Approvers = []string{"eng"} // hold-eve: approvers from group eng (*@example.com)
	g.pushBundle("rev1", 1, pol)
	params := map[string]any{"text": "pay"}
	tok := g.issue("eve@example.com", step("tools", "echo", params))
	_, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", params, nil)
	_, dc, _ := enforcementOf(out)
	id := dc["delegationId"].(string)

	var got map[string]any
	g.do("POST", "/delegation/request", g.agentKey, map[string]any{
		"tool": "echo", "action": "echo", "arguments": map[string]any{"text": "pay", "_iam_context": map[string]any{}},
		"intentReference": tok["intent_reference"], "planId": dc["planId"], "reason": "pay the invoice",
	}, 200, &got)
	if got["delegationId"] != id || got["status"] != "pending" {
		t.Fatalf("/delegation/request = %v, want %s pending", got, id)
	}
	g.do("POST", "/delegation/request", g.agentKey, map[string]any{"tool": "echo", "intentReference": tok["intent_reference"], "arguments": map[string]any{"text": "else"}}, 404, nil)
	other := g.createKey("other agent", "agent")
	g.do("POST", "/delegation/request", other, map[string]any{"delegationId": id}, 404, nil)

	g.do("GET", "/delegation/check-approved?tool=echo", g.agentKey, nil, 200, &got)
	if got["approved"] != false || got["delegationId"] != id {
		t.Fatalf("check-approved while pending = %v", got)
	}
	approver := g.createKey("ann@example.com", "viewer")
	g.do("POST", "/v1/approvals/"+id+"/approve", approver, map[string]any{"comment": "ok"}, 200, nil)
	g.do("GET", "/delegation/check-approved?tool=echo", g.agentKey, nil, 200, &got)
	if got["approved"] != true || got["approverEmail"] != "ann@example.com" {
		t.Fatalf("check-approved after approval = %v", got)
	}
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "pay", "_delegation_id": id}, nil); resp.StatusCode != 200 {
		t.Fatalf("approved retry: %d %v", resp.StatusCode, out)
	}
	g.do("POST", "/delegation/mark-executed", g.agentKey, map[string]any{"delegationId": id}, 200, &got)
	if got["status"] != "executed" {
		t.Errorf("mark-executed = %v", got)
	}
	g.do("GET", "/delegation/my-role", g.agentKey, nil, 200, &got)
	if got["role"] != nil {
		t.Errorf("my-role without an email = %v, want null", got)
	}
	resp, data := g.send("GET", "/delegation/my-role", g.agentKey, nil, map[string]string{"X-User-Email": "Ann@Example.com"})
	if resp.StatusCode != 200 || !strings.Contains(string(data), `"role":"approver"`) {
		t.Errorf("my-role of an approver: %d %s", resp.StatusCode, data)
	}
	g.do("POST", "/delegation/create", g.agentKey, map[string]any{"token": map[string]any{}}, 400, nil)
}

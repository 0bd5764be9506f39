package gateway

import (
	"strings"
	"testing"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// redteamPolicy holds every large payment for approval, for anyone; bob's
// calls are denied outright.
func redteamPolicy() bundle.Policy {
	return bundle.Policy{Rules: []bundle.Rule{
		{ID: "pay", Effect: bundle.Allow, Tools: []string{"tools/pay", "tools/echo"}},
		{ID: "big-payments", Effect: bundle.Hold, Tools: []string{"tools/pay"}, When: "args.amount > 1000", Reason: "payments over 1000 need approval"},
		{ID: "no-bob", Effect: bundle.Deny, Tools: []string{"tools/*"}, Users: []string{"bob@customer.com"}, Reason: "bob may not use tools"},
	}}
}

// sdkUser is what @armoriq/sdk 0.2.6 adds to params for invoke(..., email).
func sdkUser(params map[string]any, email string) map[string]any {
	out := map[string]any{"user_email": email, "_iam_context": map[string]any{"email": email, "user_email": email, "user_id": "svc", "agent_id": "agent-1"}}
	for k, v := range params {
		out[k] = v
	}
	return out
}

// TestApprovalIsForOneEndUser: an approval a person gave for alice's held
// call does not let the same call run for another end user, whether the
// retry names the approval or not. A service key names its end users, so
// an approval granted for one of them must not carry over to the others.
func TestApprovalIsForOneEndUser(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 1, redteamPolicy())
	params := map[string]any{"amount": 5000}
	tok := g.issue("svc", step("tools", "pay", params))

	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "pay", sdkUser(params, "alice@customer.com"), nil)
	action, dc, _ := enforcementOf(out)
	id, _ := dc["delegationId"].(string)
	if resp.StatusCode != 403 || action != "hold" || id == "" {
		t.Fatalf("alice's payment: %d %v, want held", resp.StatusCode, out)
	}
	g.do("POST", "/v1/approvals/"+id+"/approve", g.adminKey, map[string]any{"comment": "alice's invoice"}, 200, nil)
	before := g.execs.Load()

	// carol, same token, same step, same arguments: not alice's approval.
	// One approval is open per token, step and arguments, so hers waits
	// until alice's is settled.
	resp, out = g.sdkInvoke(g.agentKey, tok, "tools", "pay", sdkUser(params, "carol@customer.com"), nil)
	if msg, _ := out["message"].(string); resp.StatusCode != 400 || !strings.Contains(msg, "already held for another end user") {
		t.Errorf("carol's identical payment after alice's approval: %d %v; want 400 saying it is held for another end user", resp.StatusCode, out)
	}
	// carol presenting alice's approval id: refused.
	withID := map[string]any{"amount": 5000, "_delegation_id": id}
	resp, out = g.sdkInvoke(g.agentKey, tok, "tools", "pay", sdkUser(withID, "carol@customer.com"), nil)
	if action, _, _ := enforcementOf(out); resp.StatusCode != 403 || action != "block" {
		t.Errorf("carol retrying with alice's approval: %d %v; want blocked", resp.StatusCode, out)
	}
	if got := g.execs.Load(); got != before {
		t.Fatalf("alice's approval ran %d payment(s) for carol", got-before)
	}
	// alice's own retry still runs, once.
	if resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "pay", sdkUser(withID, "alice@customer.com"), nil); resp.StatusCode != 200 {
		t.Errorf("alice's approved retry: %d %v, want 200", resp.StatusCode, out)
	}
	g.checkNoUnauditedExecution()
}

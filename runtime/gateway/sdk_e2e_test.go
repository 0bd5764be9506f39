package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
)

// TestOfficialTypeScriptSDK runs the real @armoriq/sdk (npm, 0.2.6) against
// a real gateway: capture → token → invoke, and each refusal. .ci/run
// installs the package; without Node or the package the test skips.
func TestOfficialTypeScriptSDK(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, testPolicy())
	agentID, _, _ := store.ParseAPIKey(g.agentKey)
	bodies := recordInvokeBodies(g)
	results := runSDKScript(t, g, "e2e.js", "ADMIN_KEY="+g.adminKey, "AGENT_KEY_ID="+agentID)
	text := func(r map[string]any) string {
		v, _ := r["value"].(map[string]any)
		c, _ := v["content"].([]any)
		if len(c) == 0 {
			return ""
		}
		s, _ := c[0].(map[string]any)["text"].(string)
		return s
	}

	// What SDK 0.2.6 raises is fixed by its code: for /invoke it turns
	// every status >= 400 into MCPInvocationException("HTTP <status>"),
	// and for token issuance every status >= 400 into InvalidTokenException.
	tests := []struct {
		scenario  string
		wantOK    bool
		wantErr   string // exception class
		wantInMsg string
		wantText  string
	}{
		{scenario: "health", wantOK: true},
		{scenario: "token", wantOK: true},
		{scenario: "invoke-allowed", wantOK: true, wantText: "echo: hello from the sdk"},
		{scenario: "invoke-second-server", wantOK: true, wantText: "5"},
		{scenario: "tampered-params", wantErr: "MCPInvocationException", wantInMsg: "HTTP 409"},
		{scenario: "action-not-in-plan", wantErr: "IntentMismatchException", wantInMsg: "not found in the original plan"},
		{scenario: "denied-at-issue", wantErr: "InvalidTokenException", wantInMsg: "plan denied by policy: tools/delete_repo"},
		{scenario: "token-policy-leaves-out-a-step", wantErr: "InvalidTokenException", wantInMsg: `other/add is not allowed by the token's policy (allow ["tools/*"])`},
		{scenario: "token-policy-allowed", wantOK: true, wantText: "echo: hello from the sdk"},
		{scenario: "expired-local", wantErr: "TokenExpiredException"},
		{scenario: "expired-server", wantErr: "MCPInvocationException", wantInMsg: "HTTP 401"},
		{scenario: "revoked-key", wantErr: "MCPInvocationException", wantInMsg: "HTTP 401"},
	}
	for _, tt := range tests {
		r, ok := results[tt.scenario]
		if !ok {
			t.Errorf("%s: no result from the SDK script", tt.scenario)
			continue
		}
		if got := r["ok"] == true; got != tt.wantOK {
			t.Errorf("%s: ok = %v, want %v (%v)", tt.scenario, got, tt.wantOK, r)
			continue
		}
		if tt.wantErr != "" && r["error"] != tt.wantErr {
			t.Errorf("%s: SDK raised %v, want %s (%v)", tt.scenario, r["error"], tt.wantErr, r["message"])
		}
		if msg, _ := r["message"].(string); tt.wantInMsg != "" && !strings.Contains(msg, tt.wantInMsg) {
			t.Errorf("%s: message %q does not contain %q", tt.scenario, msg, tt.wantInMsg)
		}
		if tt.wantText != "" && text(r) != tt.wantText {
			t.Errorf("%s: tool result %q, want %q (%v)", tt.scenario, text(r), tt.wantText, r)
		}
	}
	if r := results["token"]; r["stepProofs"] != float64(2) || r["jwt"] != true {
		t.Errorf("token: %v; want 2 step proofs and a JWT", r)
	}
	if r := results["revoked-health"]; r["status"] != float64(401) || r["revokedHeader"] != "true" {
		t.Errorf("health with the revoked key: %v; want 401 with X-Armoriq-Revoked: true", r)
	}

	// The bodies the SDK sent, byte for byte: the hand decoder takes every
	// one (the SDK writes them plainly) and decodes each as json.Unmarshal.
	sent := bodies()
	if len(sent) < 3 {
		t.Fatalf("the gateway saw %d POST /invoke bodies from the SDK; want at least 3", len(sent))
	}
	for _, b := range sent {
		if !decodeBoth(t, b) {
			t.Errorf("the hand decoder passed on a body the SDK sent, to json.Unmarshal: %s", b)
		}
	}

	// Every refusal and success is in the audit log, and the chain holds.
	recs := g.records(store.AuditFilter{})
	count := map[store.Decision]int{}
	for _, r := range recs {
		if r.Phase == store.PhaseRequest || r.Phase == store.PhaseDecision {
			count[r.Decision]++
		}
		if strings.Contains(string(r.Arguments), "_iam_context") {
			t.Errorf("audit record %d keeps the SDK's _iam_context: %s", r.Seq, r.Arguments)
		}
	}
	if count[store.Allowed] != 3 || count[store.Blocked] < 4 {
		t.Errorf("audit decisions = %v; want 3 allowed and at least 4 blocked", count)
	}
	if rep, err := g.store.VerifyAudit(context.Background()); err != nil || !rep.OK() {
		t.Errorf("VerifyAudit = %+v, %v", rep, err)
	}
}

// recordInvokeBodies makes g's server keep a copy of every POST /invoke
// body it receives (before the first request: the handler is swapped
// unsynchronized), and returns what was kept so far.
func recordInvokeBodies(g *testGateway) func() [][]byte {
	var mu sync.Mutex
	var bodies [][]byte
	next := g.http.Config.Handler
	g.http.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/invoke" {
			b, err := io.ReadAll(r.Body)
			r.Body.Close()
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			mu.Lock()
			bodies = append(bodies, b)
			mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		next.ServeHTTP(w, r)
	})
	return func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(bodies)
	}
}

// runSDKScript runs a Node script of testdata/sdk-e2e against g with the
// agent key and returns its RESULT lines by scenario. It skips without
// Node or the installed package.
func runSDKScript(t *testing.T, g *testGateway, script string, env ...string) map[string]map[string]any {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the TypeScript SDK test needs Node.js (.ci/run installs it)")
	}
	dir, _ := filepath.Abs("testdata/sdk-e2e")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@armoriq", "sdk")); err != nil {
		t.Skip("@armoriq/sdk is not installed: run `npm install` in runtime/gateway/testdata/sdk-e2e (.ci/run does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GATEWAY="+g.http.URL, "ARMORIQ_API_KEY="+g.agentKey), env...)
	before := g.front.Stats()
	res := nodeResults(t, cmd, script)
	// What the official SDK sends, byte for byte, is what the gateway's
	// front serves itself: none of it goes to net/http.
	if st := g.front.Stats(); st.HandedOff != before.HandedOff || st.Lean == before.Lean {
		t.Errorf("node %s: the front served %d requests and handed %d connections to net/http; want every request served by the front",
			script, st.Lean-before.Lean, st.HandedOff-before.HandedOff)
	}
	return res
}

// nodeResults runs a Node script of testdata (cmd) to its end and returns
// its results by scenario: the JSON of each "RESULT " line; the script
// ends with a DONE line (testdata/sdk-e2e/results.js).
func nodeResults(t *testing.T, cmd *exec.Cmd, script string) map[string]map[string]any {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || !bytes.Contains(out, []byte("\nDONE")) {
		t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s", script, err, out, stderr.String())
	}
	results := map[string]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "RESULT ")
		if !ok {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad result line %q: %v", line, err)
		}
		results[r["scenario"].(string)] = r
	}
	return results
}

// TestOfficialSDKQuickstart is the seeds' quickstart with the real
// @armoriq/sdk 0.2.6: one service key and one token, calls for alice
// (allowed) and bob (denied by a rule) named only inside the params; a
// token policy that leaves out a planned step; a payment whose amount is
// written "5,000" against a hold rule (refused, never allowed) and the same
// as a number (held).
func TestOfficialSDKQuickstart(t *testing.T) {
	g := newTestGateway(t, nil)
	g.pushBundle("rev1", 100, bundle.Policy{Rules: []bundle.Rule{
		{ID: "tools-for-all", Effect: bundle.Allow, Tools: []string{"tools/echo", "tools/pay"}},
		{ID: "no-bob", Effect: bundle.Deny, Tools: []string{"tools/*"}, Users: []string{"bob@customer.com"}, Reason: "bob's account is suspended"},
		{ID: "big-payments", Effect: bundle.Hold, Tools: []string{"tools/pay"}, When: "args.amount > 1000", Reason: "payments over 1000 need a human",
			Pos: bundle.Pos{File: "armoriq.yaml", Line: 12, Col: 7}},
	}})
	res := runSDKScript(t, g, "quickstart.js")
	for _, tt := range []struct {
		scenario, wantErr, wantInMsg string
	}{
		{"alice", "", ""},
		{"bob", "MCPInvocationException", "HTTP 403"},
		{"token-policy-leaves-out-pay", "InvalidTokenException", "not allowed by the token's policy"},
		{"payment-5,000", "InvalidTokenException", "big-payments"},
		{"payment-5000-held", "MCPInvocationException", "HTTP 403"},
	} {
		r := res[tt.scenario]
		if r == nil {
			t.Errorf("%s: no result", tt.scenario)
			continue
		}
		if (r["ok"] == true) != (tt.wantErr == "") || (tt.wantErr != "" && r["error"] != tt.wantErr) {
			t.Errorf("%s: got %v, want error %q", tt.scenario, r, tt.wantErr)
		}
		if msg, _ := r["message"].(string); !strings.Contains(msg, tt.wantInMsg) {
			t.Errorf("%s: message %q does not contain %q", tt.scenario, msg, tt.wantInMsg)
		}
	}

	// The audit names both end users and the service, and every refusal.
	byUser := map[string]store.Decision{}
	var fiveThousand, held bool
	for _, r := range g.records(store.AuditFilter{}) {
		if r.Phase == store.PhaseOutcome {
			continue
		}
		if r.Tool == "echo" {
			byUser[r.User] = r.Decision
			if r.Service != "agent" || r.Client != "weather-agent" {
				t.Errorf("record %d: service %q client %q, want the key's name and the SDK's agent id", r.Seq, r.Service, r.Client)
			}
		}
		if r.Tool == "pay" && r.Decision == store.Blocked && r.Rule == "big-payments" && strings.Contains(r.Outcome, "armoriq.yaml:12:7") {
			fiveThousand = true
		}
		if r.Tool == "pay" && r.Decision == store.Held && r.User == "alice@customer.com" {
			held = true
		}
	}
	if byUser["alice@customer.com"] != store.Allowed || byUser["bob@customer.com"] != store.Blocked {
		t.Errorf("echo decisions by user = %v; want alice allowed, bob blocked", byUser)
	}
	if !fiveThousand {
		t.Errorf("no blocked record for the \"5,000\" payment naming big-payments and its position")
	}
	if !held {
		t.Errorf("no held record for alice's 5000 payment")
	}
	g.checkNoUnauditedExecution()
}

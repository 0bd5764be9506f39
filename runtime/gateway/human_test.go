package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/approval"
	"github.com/armoriq/controlplane/runtime/store"
)

func (g *testGateway) caller(key string) caller {
	g.t.Helper()
	var who struct {
		KeyID string     `json:"key_id"`
		Name  string     `json:"name"`
		Role  store.Role `json:"role"`
	}
	g.do("GET", "/v1/whoami", key, nil, 200, &who)
	return caller{KeyID: who.KeyID, Name: who.Name, Role: who.Role}
}

func pollCode(g *testGateway, code string) (int, map[string]any) {
	g.t.Helper()
	resp, data := g.send("POST", "/auth/device/token", "", map[string]any{"deviceCode": code}, nil)
	var out map[string]any
	json.Unmarshal(data, &out)
	return resp.StatusCode, out
}

func TestDeviceLogin(t *testing.T) {
	g := newTestGateway(t, nil)
	var st DeviceStart
	g.do("POST", "/auth/device/code", "", map[string]any{"client": "armoriq CLI on laptop\x1b[31m"}, 200, &st)
	if _, ok := NormalizeUserCode(st.UserCode); !ok || !strings.HasPrefix(st.DeviceCode, "dc_") || st.Interval != 5 ||
		!strings.HasSuffix(st.VerificationURIComplete, "/console/device?code="+st.UserCode) || st.DeviceCodeRFC != st.DeviceCode {
		t.Fatalf("device code answer = %+v", st)
	}
	if status, out := pollCode(g, st.DeviceCode); status != 400 || out["error"] != "authorization_pending" {
		t.Errorf("first poll: %d %v, want 400 authorization_pending", status, out)
	}
	if status, out := pollCode(g, st.DeviceCode); status != 400 || out["error"] != "slow_down" {
		t.Errorf("immediate second poll: %d %v, want 400 slow_down", status, out)
	}
	if status, out := pollCode(g, "dc_nonsense"); status != 400 || out["error"] != "invalid_grant" {
		t.Errorf("unknown code: %d %v, want invalid_grant", status, out)
	}

	// A viewer may grant only viewer, named after themself.
	viewer := g.caller(g.createKey("vera@example.com", "viewer"))
	ctx := context.Background()
	if _, err := g.srv.decideDevice(ctx, viewer, st.UserCode, true, store.RoleAdmin, ""); err == nil || asError(err).Kind != KindForbidden {
		t.Errorf("viewer granting admin: %v, want forbidden", err)
	}
	if _, err := g.srv.decideDevice(ctx, caller{KeyID: "agentkey", Role: store.RoleAgent}, st.UserCode, true, store.RoleAgent, ""); err == nil {
		t.Error("an agent key decided a device login")
	}
	d, err := g.srv.decideDevice(ctx, viewer, strings.ToLower(strings.ReplaceAll(st.UserCode, "-", " ")), true, store.RoleViewer, "mallory@example.com")
	if err != nil || d.Email != "vera@example.com" || d.Role != store.RoleViewer {
		t.Fatalf("viewer approving for viewer: %+v, %v; want the viewer's own identity", d, err)
	}
	if _, err := g.srv.decideDevice(ctx, viewer, st.UserCode, false, "", ""); err == nil || asError(err).Kind != KindConflict {
		t.Errorf("deciding twice: %v, want conflict", err)
	}
	g.clock.advance(6 * time.Second)
	status, out := pollCode(g, st.DeviceCode)
	key, _ := out["apiKey"].(string)
	if status != 200 || !strings.HasPrefix(key, "ak_live_") || out["role"] != "viewer" || out["email"] != "vera@example.com" {
		t.Fatalf("poll after approval: %d %v", status, out)
	}
	if who := g.caller(key); who.Role != store.RoleViewer || who.Name != "vera@example.com" {
		t.Errorf("the new key is %+v", who)
	}
	g.clock.advance(6 * time.Second)
	if status, out := pollCode(g, st.DeviceCode); status != 400 || out["error"] != "expired_token" {
		t.Errorf("polling a used code: %d %v, want expired_token", status, out)
	}

	// Denied, then expired.
	var st2, st3 DeviceStart
	g.do("POST", "/auth/device/code", "", nil, 200, &st2)
	g.do("POST", "/auth/device/code", "", nil, 200, &st3)
	admin := g.caller(g.adminKey)
	if _, err := g.srv.decideDevice(ctx, admin, st2.UserCode, false, "", ""); err != nil {
		t.Fatal(err)
	}
	if status, out := pollCode(g, st2.DeviceCode); status != 400 || out["error"] != "access_denied" {
		t.Errorf("denied: %d %v, want access_denied", status, out)
	}
	g.clock.advance(11 * time.Minute)
	if status, out := pollCode(g, st3.DeviceCode); status != 400 || out["error"] != "expired_token" {
		t.Errorf("expired: %d %v, want expired_token", status, out)
	}
	if _, err := g.srv.decideDevice(ctx, admin, st3.UserCode, true, store.RoleAdmin, ""); err == nil || asError(err).Kind != KindConflict {
		t.Errorf("approving an expired code: %v, want conflict", err)
	}
	list, _ := g.store.ListDeviceLogins(ctx, time.Time{})
	for _, d := range list {
		if strings.ContainsAny(d.Client, "\x1b") {
			t.Errorf("a control character reached the store: %q", d.Client)
		}
	}
}

func TestDeviceLoginFloodCap(t *testing.T) {
	g := newTestGateway(t, nil)
	for range maxPendingDevices {
		g.do("POST", "/auth/device/code", "", nil, 200, nil)
	}
	g.do("POST", "/auth/device/code", "", nil, 503, nil)
}

func TestWhoami(t *testing.T) {
	g := newTestGateway(t, nil)
	var out map[string]any
	g.do("GET", "/v1/whoami", g.agentKey, nil, 200, &out)
	if out["role"] != "agent" || out["valid"] != true {
		t.Errorf("whoami of the agent key = %v", out)
	}
	g.do("GET", "/v1/whoami", "", nil, 401, nil)
}

// heldPayment makes a pending approval as the call path does.
func heldPayment(t *testing.T, g *testGateway, token string, approvers ...string) store.Approval {
	t.Helper()
	agent := g.caller(g.agentKey)
	a, _, err := g.srv.human.approvals.Request(context.Background(), approval.Call{
		TokenID: token, PlanHash: "ph", Step: 0, Server: "tools", Tool: "echo",
		Args: map[string]any{"text": "pay 5000"}, Redacted: json.RawMessage(`{"text":"pay 5000"}`),
		User: "eve@example.com", Agent: "agent", Rule: "hold-eve", Reason: "eve's calls need approval", Approvers: approvers,
		RequesterKeyID: agent.KeyID, Requester: agent.Name, RequestID: "req-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestApprovalsAPI(t *testing.T) {
	g := newTestGateway(t, nil)
	a := heldPayment(t, g, "tok1")
	var list struct {
		Approvals []store.Approval `json:"approvals"`
	}
	viewer := g.createKey("vera@example.com", "viewer")
	g.do("GET", "/v1/approvals?state=pending", viewer, nil, 200, &list)
	if len(list.Approvals) != 1 || list.Approvals[0].ID != a.ID {
		t.Fatalf("pending approvals = %+v", list.Approvals)
	}
	g.do("GET", "/v1/approvals?state=bogus", viewer, nil, 400, nil)
	g.do("GET", "/v1/approvals", g.agentKey, nil, 403, nil)
	// A viewer the rule does not name cannot decide; the caller neither.
	g.do("POST", "/v1/approvals/"+a.ID+"/approve", viewer, map[string]any{"comment": "ok"}, 403, nil)
	g.do("POST", "/v1/approvals/"+a.ID+"/approve", g.agentKey, nil, 403, nil)
	var got store.Approval
	g.do("POST", "/v1/approvals/"+a.ID+"/approve", g.adminKey, map[string]any{"comment": "checked the invoice"}, 200, &got)
	if got.State != store.ApprovalApproved || got.Comment != "checked the invoice" {
		t.Errorf("approved: %+v", got)
	}
	g.do("POST", "/v1/approvals/"+a.ID+"/deny", g.adminKey, nil, 409, nil)
	g.do("GET", "/v1/approvals/apv_nosuchapprovalxxxx", viewer, nil, 404, nil)
	g.do("GET", "/v1/approvals/"+a.ID, viewer, nil, 200, &got)
	if got.DecidedBy != "bootstrap admin" {
		t.Errorf("decided by %q", got.DecidedBy)
	}
	// The decision is in the audit log.
	var recs struct {
		Records []store.AuditRecord `json:"records"`
	}
	g.do("GET", "/v1/audit", g.adminKey, nil, 200, &recs)
	if n := len(recs.Records); n != 1 || !strings.Contains(recs.Records[0].Outcome, "approved by bootstrap admin: checked the invoice") {
		t.Errorf("audit after the decision = %+v", recs.Records)
	}

	// A rule naming approvers: its viewer decides, an admin not named does not.
	b := heldPayment(t, g, "tok2", "vera@example.com")
	g.do("POST", "/v1/approvals/"+b.ID+"/deny", g.adminKey, nil, 403, nil)
	g.do("POST", "/v1/approvals/"+b.ID+"/deny", viewer, map[string]any{"comment": "no"}, 200, &got)
	if got.State != store.ApprovalDenied {
		t.Errorf("denied by the named viewer: %+v", got)
	}
}

func TestApprovalsWebhook(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	var sigOK []bool
	fails := 2
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			w.WriteHeader(502)
			return
		}
		bodies = append(bodies, body)
		sigOK = append(sigOK, r.Header.Get(WebhookSignatureHeader) == SignWebhook([]byte("s3cret"), r.Header.Get(WebhookTimestampHeader), body))
	}))
	defer hook.Close()
	g := newTestGateway(t, nil, func(c *Config) {
		c.Human.ApprovalsWebhook, c.Human.WebhookSecret = hook.URL, "s3cret"
	})
	g.srv.human.notify.backoff = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	a := heldPayment(t, g, "tok1")
	g.do("POST", "/v1/approvals/"+a.ID+"/approve", g.adminKey, map[string]any{"comment": "fine"}, 200, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(bodies)
		mu.Unlock()
		if n >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 || !sigOK[0] {
		t.Fatalf("webhook got %d notices (signatures ok %v), want 1 after 2 failures", len(bodies), sigOK)
	}
	var n approvalNotice
	if err := json.Unmarshal(bodies[0], &n); err != nil || n.Event != "approved" || !strings.Contains(n.Text, "by bootstrap admin: fine") || n.Approval.ID != a.ID {
		t.Errorf("notice = %+v, %v", n, err)
	}
}

// TestWebhookNeverBlocks: a webhook that hangs does not slow a decision.
func TestWebhookNeverBlocks(t *testing.T) {
	stop := make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stop }))
	defer hook.Close()
	defer close(stop)
	g := newTestGateway(t, nil, func(c *Config) { c.Human.ApprovalsWebhook = hook.URL })
	for range 300 { // more than the queue holds
		g.srv.notifyApproval("requested", store.Approval{ID: "x"}, "")
	}
	a := heldPayment(t, g, "tok1")
	start := time.Now()
	g.do("POST", "/v1/approvals/"+a.ID+"/approve", g.adminKey, nil, 200, nil)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a decision took %s with a hanging webhook", d)
	}
}

func FuzzNormalizeUserCode(f *testing.F) {
	for _, s := range []string{"BCDF-GHJK", "bcdf ghjk", "", "AEIO-UUUU", "BCDF-GHJK-", "ßßßß-ßßßß", "bcdfghjk\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := NormalizeUserCode(s)
		if !ok {
			return
		}
		if len(c) != 9 || c[4] != '-' {
			t.Fatalf("NormalizeUserCode(%q) = %q", s, c)
		}
		for i, r := range c {
			if i != 4 && !strings.ContainsRune(userCodeAlphabet, r) {
				t.Fatalf("NormalizeUserCode(%q) = %q has %q", s, c, r)
			}
		}
		if again, ok := NormalizeUserCode(c); !ok || again != c {
			t.Fatalf("not idempotent: %q → %q → %q", s, c, again)
		}
	})
}

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/client"
	"github.com/armoriq/controlplane/runtime/intent"
)

// TestGoSDK runs the Go SDK (runtime/client) against a real gateway: the
// same scenarios as the TypeScript SDK, with the typed errors of the
// troubleshooting table.
func TestGoSDK(t *testing.T) {
	g := newTestGateway(t, nil)
	lenient := testPolicy()
	lenient.Rules = append(lenient.Rules[:2:2], lenient.Rules[3:]...)
	g.pushBundle("rev1", 100, lenient)
	ctx := context.Background()
	noEnv := func(string) string { return "" }
	newClient := func(key, user string) *client.Client {
		c, err := client.New(client.Options{APIKey: key, UserID: user, AgentID: "go-agent", Endpoint: g.http.URL, Getenv: noEnv, HomeDir: t.TempDir(), Now: g.clock.now})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := newClient(g.agentKey, "alice@example.com")
	if err := c.Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}
	plan, err := c.CapturePlan("say hi and add", []intent.Step{
		{Action: "echo", MCP: "tools", Params: map[string]any{"text": "from go"}},
		{Action: "add", MCP: "other", Params: map[string]any{"a": 2, "b": 40}},
		{Action: "add", MCP: "tools", Params: map[string]any{"a": 5000, "b": 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.GetIntentToken(ctx, plan, client.Validity(time.Minute))
	if err != nil {
		t.Fatalf("GetIntentToken: %v", err)
	}
	g.pushBundle("rev2", 200, testPolicy()) // the size limit lands after issuance
	text := func(res *client.InvokeResult) string {
		var r struct {
			Content []struct{ Text string } `json:"content"`
		}
		json.Unmarshal(res.Result, &r)
		if len(r.Content) == 0 {
			return string(res.Result)
		}
		return r.Content[0].Text
	}
	res, err := c.Invoke(ctx, "tools", "echo", tok, map[string]any{"text": "from go"})
	if err != nil || text(res) != "echo: from go" {
		t.Fatalf("Invoke echo = %v, %v", res, err)
	}
	res, err = c.Invoke(ctx, "other", "add", tok, map[string]any{"a": 2, "b": 40})
	if err != nil || text(res) != "42" {
		t.Fatalf("Invoke other/add = %v, %v", res, err)
	}

	tests := []struct {
		name    string
		call    func() error
		want    error
		wantMsg string
	}{
		{"tampered params", func() error {
			_, err := c.Invoke(ctx, "tools", "echo", tok, map[string]any{"text": "changed"})
			return err
		}, client.ErrIntentMismatch, "differ from those planned"},
		{"denied by a when condition", func() error {
			_, err := c.Invoke(ctx, "tools", "add", tok, map[string]any{"a": 5000, "b": 1})
			return err
		}, client.ErrPolicyBlocked, "sums over 1000 need review"},
		{"enforce only", func() error {
			d, err := c.Enforce(ctx, "tools", "add", tok, map[string]any{"a": 5000, "b": 1})
			if err == nil && (d.Allowed || d.Action != "block") {
				return errors.New("enforce_only said allowed")
			}
			return client.ErrPolicyBlocked
		}, client.ErrPolicyBlocked, ""},
	}
	for _, tt := range tests {
		err := tt.call()
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.want)
		} else if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("%s: error %q does not say %q", tt.name, err, tt.wantMsg)
		}
	}

	// Refused at issue time.
	denied, _ := c.CapturePlan("delete", []intent.Step{{Action: "delete_repo", MCP: "tools"}})
	if _, err := c.GetIntentToken(ctx, denied); !errors.Is(err, client.ErrPolicyBlocked) {
		t.Errorf("token for a denied tool: %v, want ErrPolicyBlocked", err)
	}
	// Held for eve.
	eve := newClient(g.agentKey, "eve@example.com")
	ep, _ := eve.CapturePlan("hi", []intent.Step{{Action: "echo", MCP: "tools", Params: map[string]any{"text": "x"}}})
	etok, err := eve.GetIntentToken(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	_, err = eve.Invoke(ctx, "tools", "echo", etok, map[string]any{"text": "x"})
	var ce *client.Error
	if !errors.Is(err, client.ErrPolicyHold) || !errors.As(err, &ce) || ce.DelegationContext == nil {
		t.Errorf("held call: %v, want ErrPolicyHold with a delegation context", err)
	}
	// Expired on the gateway's clock (the client shares it here).
	g.clock.advance(2 * time.Minute)
	if _, err := c.Invoke(ctx, "tools", "echo", tok, map[string]any{"text": "from go"}); !errors.Is(err, client.ErrTokenExpired) {
		t.Errorf("expired token: %v, want ErrTokenExpired", err)
	}
	// Revoked key.
	id := strings.SplitN(strings.TrimPrefix(g.agentKey, "ak_live_"), "_", 2)[0]
	g.do("DELETE", "/v1/keys/"+id, g.adminKey, nil, 200, nil)
	if err := c.Health(ctx); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("health with a revoked key: %v, want ErrRevoked", err)
	}
}

package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/intent"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func newTestClient(t *testing.T, url string, now func() time.Time) *Client {
	t.Helper()
	c, err := New(Options{APIKey: testAPIKey, UserID: "ana", AgentID: "agent-1", Endpoint: url,
		Getenv: env(nil), HomeDir: t.TempDir(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var searchParams = map[string]any{"query": "status:500", "limit": 200, "ratio": 0.5}

func testSteps() []intent.Step {
	return []intent.Step{
		{Action: "get_alert", MCP: "pager", Params: map[string]any{"id": "A-1"}},
		{Action: "search_logs", MCP: "logs", Params: searchParams, Description: "find the errors"},
		{Action: "post_message", MCP: "chat", Params: map[string]any{"text": "résumé 😀"}},
	}
}

func TestFlow(t *testing.T) {
	clk := &clock{t: time.Unix(1700000000, 0)}
	g, srv := newFakeGateway(t, clk.Now)
	c := newTestClient(t, srv.URL+"/", clk.Now)
	ctx := context.Background()
	if err := c.Health(ctx); err != nil {
		t.Fatalf("Health = %v", err)
	}
	plan, err := c.CapturePlan("triage", testSteps())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.GetIntentToken(ctx, plan, UserEmail("ana@example.com"), Policy(map[string]any{"max": 3}))
	if err != nil {
		t.Fatalf("GetIntentToken = %v", err)
	}
	if tok.PlanHash != plan.Hash || tok.TokenID != "ir-1" || tok.PlanID != "plan-1" || len(tok.StepProofs) != 3 || tok.JWT != "jwt" ||
		!tok.ExpiresAt.Equal(clk.Now().Add(time.Minute)) || tok.PolicyValidation == nil {
		t.Errorf("token = %+v", tok)
	}
	if tb := g.lastTokenBody; tb["user_id"] != "ana" || tb["agent_id"] != "agent-1" || tb["context_id"] != "default" ||
		tb["user_email"] != "ana@example.com" || tb["expires_in"] != json.Number("60.0") {
		t.Errorf("token request = %v", tb)
	}

	res, err := c.Invoke(ctx, "logs", "search_logs", tok, searchParams, UserEmail("ana@example.com"))
	if err != nil {
		t.Fatalf("Invoke = %v", err)
	}
	var result struct {
		Step int            `json:"step"`
		Echo map[string]any `json:"echo"`
	}
	if err := json.Unmarshal(res.Result, &result); err != nil || result.Step != 1 || result.Echo["query"] != "status:500" || res.IsError {
		t.Errorf("result = %s (%v)", res.Result, err)
	}
	h := g.lastHeader
	for k, want := range map[string]string{
		"X-Csrg-Path":         "/steps/[1]/action",
		"X-Csrg-Value-Digest": intent.ValueDigest("search_logs"),
		"X-Csrg-Proof":        string(g.issuedProofs[1]),
		"X-Api-Key":           testAPIKey,
		"Authorization":       "Bearer " + testAPIKey,
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	b := g.lastBody
	if b["user_email"] != "ana@example.com" || b["tool"] != "search_logs" || b["merkle_proof"] != nil {
		t.Errorf("invoke body = %v", b)
	}
	if iam, _ := b["_iam_context"].(map[string]any); iam["user_email"] != "ana@example.com" || iam["user_id"] != "ana" {
		t.Errorf("_iam_context = %v", b["_iam_context"])
	}
	if p, _ := b["params"].(map[string]any); p["limit"] != json.Number("200") || p["ratio"] != json.Number("0.5") {
		t.Errorf("params = %v, want limit 200 (int) and ratio 0.5", b["params"])
	}

	// Enforce only.
	d, err := c.Enforce(ctx, "logs", "search_logs", tok, searchParams)
	if err != nil || !d.Allowed || d.Action != "allow" || d.MatchedPolicy != "rule-1" {
		t.Errorf("Enforce = %+v, %v", d, err)
	}
	if g.lastBody["enforce_only"] != true {
		t.Errorf("enforce body lacks enforce_only: %v", g.lastBody)
	}

	// Params the plan did not sign: the gateway answers 409.
	_, err = c.Invoke(ctx, "logs", "search_logs", tok, map[string]any{"query": "*", "limit": 200, "ratio": 0.5})
	wantKind(t, "changed params", err, ErrIntentMismatch, http.StatusConflict)
	// 200.0 is not 200: Python's rules.
	_, err = c.Invoke(ctx, "logs", "search_logs", tok, map[string]any{"query": "status:500", "limit": 200.0, "ratio": 0.5})
	wantKind(t, "float for int", err, ErrIntentMismatch, http.StatusConflict)
	// Another server for a planned action.
	_, err = c.Invoke(ctx, "chat", "search_logs", tok, searchParams)
	wantKind(t, "other mcp", err, ErrIntentMismatch, http.StatusConflict)

	// An action outside the plan never leaves the client.
	before := g.invokes
	_, err = c.Invoke(ctx, "logs", "delete_logs", tok, nil)
	wantKind(t, "unplanned action", err, ErrIntentMismatch, 0)
	// Nor does an expired token.
	clk.Add(61 * time.Second)
	_, err = c.Invoke(ctx, "logs", "search_logs", tok, searchParams)
	wantKind(t, "expired locally", err, ErrTokenExpired, 0)
	if g.invokes != before {
		t.Errorf("%d requests sent for calls refused locally", g.invokes-before)
	}

	// The server's clock decides too: a token it considers expired.
	tok.ExpiresAt = clk.Now().Add(time.Hour)
	_, err = c.Invoke(ctx, "logs", "search_logs", tok, searchParams)
	wantKind(t, "expired at the gateway", err, ErrTokenExpired, http.StatusUnauthorized)
}

// A one-step plan: the proof has no siblings and is still sent.
func TestOneStepPlan(t *testing.T) {
	clk := &clock{t: time.Unix(1700000000, 0)}
	g, srv := newFakeGateway(t, clk.Now)
	c := newTestClient(t, srv.URL, clk.Now)
	plan, err := c.CapturePlan("", []intent.Step{{Action: "ping", MCP: "net"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.GetIntentToken(context.Background(), plan, Validity(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Invoke(context.Background(), "net", "ping", tok, nil); err != nil {
		t.Fatalf("Invoke = %v", err)
	}
	if p := g.lastHeader.Get("X-CSRG-Proof"); !strings.Contains(p, `"siblings":[]`) {
		t.Errorf("X-CSRG-Proof = %q", p)
	}
	if g.lastTokenBody["expires_in"] != json.Number("5.0") {
		t.Errorf("expires_in = %v", g.lastTokenBody["expires_in"])
	}
}

func wantKind(t *testing.T, what string, err, sentinel error, status int) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Errorf("%s: error %v, want %v", what, err, sentinel)
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("%s: %T is not *Error", what, err)
		return
	}
	if e.Status != status {
		t.Errorf("%s: status %d, want %d (%v)", what, e.Status, status, err)
	}
}

func TestCapturePlanErrors(t *testing.T) {
	c := newTestClient(t, "http://gw.invalid", time.Now)
	for _, tc := range []struct {
		name  string
		steps []intent.Step
		want  string
	}{
		{"no steps", nil, "steps must not be empty"},
		{"no action", []intent.Step{{MCP: "m"}}, "steps[0]: action is required"},
		{"no mcp", []intent.Step{{Action: "a"}, {Action: "b", MCP: "m"}}, "steps[0]: mcp is required"},
		{"NaN param", []intent.Step{{Action: "a", MCP: "m", Params: map[string]any{"x": func() float64 { z := 0.0; return z / z }()}}}, "no canonical JSON form"},
	} {
		_, err := c.CapturePlan("g", tc.steps)
		if !errors.Is(err, ErrConfiguration) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CapturePlan = %v, want ErrConfiguration saying %q", tc.name, err, tc.want)
		}
	}
}

func TestNew(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".armoriq"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".armoriq", "credentials.json"),
		[]byte(`{"apiKey":"ak_live_file","email":"f@x","userId":"file-user","orgId":"o","savedAt":"now"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	loginHome := t.TempDir() // as armoriq login writes it
	_ = os.MkdirAll(filepath.Join(loginHome, ".armoriq"), 0o700)
	_ = os.WriteFile(filepath.Join(loginHome, ".armoriq", "credentials.json"),
		[]byte(`{"apiKey":"ak_live_login","email":"vera@example.com","userId":"vera@example.com","gateway":"https://gw.login.example"}`), 0o600)
	badHome := t.TempDir()
	_ = os.MkdirAll(filepath.Join(badHome, ".armoriq"), 0o700)
	_ = os.WriteFile(filepath.Join(badHome, ".armoriq", "credentials.json"), []byte(`{`), 0o600)
	full := map[string]string{"ARMORIQ_API_KEY": "ak_test_env", "USER_ID": "env-user", "AGENT_ID": "env-agent", "ARMORIQ_ENDPOINT": "https://gw.example"}

	for _, tc := range []struct {
		name    string
		opts    Options
		env     map[string]string
		home    string
		wantErr string
		check   func(*Client) string
	}{
		{name: "options win", opts: Options{APIKey: "ak_live_opt", UserID: "u", AgentID: "a", Endpoint: "https://one.example/"}, env: full,
			check: func(c *Client) string {
				if c.apiKey != "ak_live_opt" || c.userID != "u" || c.agentID != "a" || c.backend != "https://one.example" || c.proxy != "https://one.example" || c.iap != "https://one.example" || c.contextID != "default" {
					return "options not used"
				}
				return ""
			}},
		{name: "environment", env: full, check: func(c *Client) string {
			if c.apiKey != "ak_test_env" || c.userID != "env-user" || c.agentID != "env-agent" || c.proxy != "https://gw.example" {
				return "environment not used"
			}
			return ""
		}},
		{name: "credentials file", home: home, env: map[string]string{"AGENT_ID": "a", "ARMORIQ_ENDPOINT": "http://gw"}, check: func(c *Client) string {
			if c.apiKey != "ak_live_file" || c.userID != "file-user" {
				return "credentials file not used"
			}
			return ""
		}},
		{name: "credentials of armoriq login name the gateway", home: loginHome, env: map[string]string{"AGENT_ID": "a"}, check: func(c *Client) string {
			if c.apiKey != "ak_live_login" || c.proxy != "https://gw.login.example" || c.backend != "https://gw.login.example" {
				return "the login's gateway not used"
			}
			return ""
		}},
		{name: "another key does not take the login's gateway", home: loginHome, env: map[string]string{"ARMORIQ_API_KEY": "ak_test_other", "AGENT_ID": "a"},
			wantErr: "gateway endpoint is required"},
		{name: "split endpoints", env: map[string]string{"ARMORIQ_API_KEY": "ak_test_x", "USER_ID": "u", "AGENT_ID": "a",
			"BACKEND_ENDPOINT": "https://api.example", "PROXY_ENDPOINT": "https://proxy.example", "IAP_ENDPOINT": "https://iap.example", "CONTEXT_ID": "ctx"},
			check: func(c *Client) string {
				if c.backend != "https://api.example" || c.proxy != "https://proxy.example" || c.iap != "https://iap.example" || c.contextID != "ctx" {
					return "split endpoints not used"
				}
				return ""
			}},
		{name: "no key", env: map[string]string{"USER_ID": "u", "AGENT_ID": "a", "ARMORIQ_ENDPOINT": "http://gw"}, wantErr: "API key is required"},
		{name: "bad key", opts: Options{APIKey: "sk-123"}, env: full, wantErr: "invalid API key format"},
		{name: "no user", env: map[string]string{"ARMORIQ_API_KEY": "ak_test_x", "AGENT_ID": "a", "ARMORIQ_ENDPOINT": "http://gw"}, wantErr: "user id is required"},
		{name: "no agent", env: map[string]string{"ARMORIQ_API_KEY": "ak_test_x", "USER_ID": "u", "ARMORIQ_ENDPOINT": "http://gw"}, wantErr: "agent id is required"},
		{name: "no endpoint", env: map[string]string{"ARMORIQ_API_KEY": "ak_test_x", "USER_ID": "u", "AGENT_ID": "a"}, wantErr: "gateway endpoint is required"},
		{name: "bad endpoint", opts: Options{Endpoint: "gw.example"}, env: full, wantErr: "not an http or https URL"},
		{name: "broken credentials file", home: badHome, env: full, wantErr: "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Getenv = env(tc.env)
			opts.HomeDir = tc.home
			if opts.HomeDir == "" {
				opts.HomeDir = t.TempDir()
			}
			c, err := New(opts)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrConfiguration) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New = %v, want ErrConfiguration saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New = %v", err)
			}
			if msg := tc.check(c); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		revoked bool
		want    error
	}{
		{"ok", 200, false, nil},
		{"bad key", 401, false, ErrConfiguration},
		{"forbidden", 403, false, ErrConfiguration},
		{"revoked", 401, true, ErrRevoked},
		{"down", 503, false, ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := stubServer(t, tc.status, "application/json", `{"message":"x"}`, tc.revoked)
			err := newTestClient(t, srv, time.Now).Health(context.Background())
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Errorf("Health = %v, want %v", err, tc.want)
			}
		})
	}
	c := newTestClient(t, "http://127.0.0.1:1", time.Now)
	if err := c.Health(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Health(unreachable) = %v, want ErrUnavailable", err)
	}
}

// stubServer answers every request with one fixed answer.
func stubServer(t *testing.T, status int, contentType, body string, revoked bool) string {
	t.Helper()
	_, srv := newFakeGateway(t, time.Now)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if revoked {
			w.Header().Set("X-Armoriq-Revoked", "true")
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	})
	return srv.URL
}

func TestErrorIs(t *testing.T) {
	e := &Error{Kind: KindRevoked, Status: 401, Message: "token verification failed"}
	if !errors.Is(e, ErrRevoked) || !errors.Is(e, ErrInvalidToken) || errors.Is(e, ErrPolicyBlocked) {
		t.Error("revoked error matches the wrong sentinels")
	}
	var wrapped error = &Error{Kind: KindPolicyHold, Reason: "over limit"}
	var got *Error
	if !errors.As(wrapped, &got) || got.Reason != "over limit" || !errors.Is(wrapped, ErrPolicyHold) {
		t.Error("errors.As / Is on a hold")
	}
	if s := (&Error{Kind: KindPolicyBlocked, Status: 403, Message: "blocked", Reason: "no"}).Error(); s != "policy_blocked: blocked (HTTP 403): no" {
		t.Errorf("Error() = %q", s)
	}
}

// One action planned twice: the call names the step it is, and both work.
func TestRepeatedAction(t *testing.T) {
	clk := &clock{t: time.Unix(1700000000, 0)}
	g, srv := newFakeGateway(t, clk.Now)
	c := newTestClient(t, srv.URL, clk.Now)
	plan, err := c.CapturePlan("twice", []intent.Step{
		{Action: "add", MCP: "calc", Params: map[string]any{"a": 1, "b": 2}},
		{Action: "echo", MCP: "calc", Params: map[string]any{"text": "x"}},
		{Action: "add", MCP: "calc", Params: map[string]any{"a": 5, "b": 6}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.GetIntentToken(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		params   map[string]any
		path     string
		proof    int
		wantStep int
	}{
		{map[string]any{"a": 5, "b": 6}, "/steps/[2]/action", 2, 2},
		{map[string]any{"a": 1, "b": 2}, "/steps/[0]/action", 0, 0},
	} {
		res, err := c.Invoke(context.Background(), "calc", "add", tok, tc.params)
		if err != nil {
			t.Fatalf("Invoke(%v) = %v", tc.params, err)
		}
		if got := g.lastHeader.Get("X-CSRG-Path"); got != tc.path {
			t.Errorf("Invoke(%v): X-CSRG-Path = %s, want %s", tc.params, got, tc.path)
		}
		if got := g.lastHeader.Get("X-CSRG-Proof"); got != string(g.issuedProofs[tc.proof]) {
			t.Errorf("Invoke(%v): proof of another step sent", tc.params)
		}
		var r struct{ Step int }
		_ = json.Unmarshal(res.Result, &r)
		if r.Step != tc.wantStep {
			t.Errorf("Invoke(%v): gateway matched step %d, want %d", tc.params, r.Step, tc.wantStep)
		}
	}
	// Unplanned params: the first step's path, and the gateway refuses.
	_, err = c.Invoke(context.Background(), "calc", "add", tok, map[string]any{"a": 9, "b": 9})
	wantKind(t, "unplanned params", err, ErrIntentMismatch, http.StatusConflict)
	if got := g.lastHeader.Get("X-CSRG-Path"); got != "/steps/[0]/action" {
		t.Errorf("X-CSRG-Path = %s, want the first step's", got)
	}
}

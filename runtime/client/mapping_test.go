package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// issuedToken gets a real token from a fake gateway whose invoke answer is
// then replaced by answer.
func issuedToken(t *testing.T, answer func(w http.ResponseWriter)) (*Client, *IntentToken) {
	t.Helper()
	g, srv := newFakeGateway(t, time.Now)
	c := newTestClient(t, srv.URL, time.Now)
	plan, err := c.CapturePlan("g", testSteps())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.GetIntentToken(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	g.invokeAnswer = answer
	return c, tok
}

func TestInvokeAnswers(t *testing.T) {
	for _, tc := range []struct {
		name        string
		status      int
		contentType string
		body        string
		revoked     bool
		want        error // nil: success
		check       func(*testing.T, *InvokeResult, *Error)
	}{
		{name: "json result", status: 200, body: `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}`,
			check: func(t *testing.T, r *InvokeResult, _ *Error) {
				if !strings.Contains(string(r.Result), `"hi"`) || strings.Contains(string(r.Result), "jsonrpc") {
					t.Errorf("result %s", r.Result)
				}
			}},
		{name: "no result key", status: 200, body: `{"answer":42}`, check: func(t *testing.T, r *InvokeResult, _ *Error) {
			if !strings.Contains(string(r.Result), "42") {
				t.Errorf("result %s", r.Result)
			}
		}},
		{name: "sse result", status: 200, contentType: "text/event-stream",
			body: "event: message\ndata: not json\ndata: {\"jsonrpc\":\"2.0\",\"result\":{\"content\":[],\"x\":1}}\n\n",
			check: func(t *testing.T, r *InvokeResult, _ *Error) {
				if !strings.Contains(string(r.Result), `"x":1`) {
					t.Errorf("result %s", r.Result)
				}
			}},
		{name: "tool error flag", status: 200, body: `{"result":{"isError":true,"content":[]}}`, check: func(t *testing.T, r *InvokeResult, _ *Error) {
			if !r.IsError {
				t.Error("IsError false")
			}
		}},
		{name: "sse without data", status: 200, contentType: "text/event-stream", body: "event: ping\n\n", want: ErrMCPInvocation},
		{name: "json-rpc error", status: 200, body: `{"jsonrpc":"2.0","error":{"code":-32000,"message":"boom","data":"d"}}`, want: ErrMCPInvocation,
			check: func(t *testing.T, _ *InvokeResult, e *Error) {
				if !strings.Contains(e.Message, "(-32000): boom - d") {
					t.Errorf("message %q", e.Message)
				}
			}},
		{name: "block 403", status: 403, body: `{"message":"no","enforcement":{"action":"block","reason":"deny rule r1","metadata":{"rule":"r1"}}}`, want: ErrPolicyBlocked,
			check: func(t *testing.T, _ *InvokeResult, e *Error) {
				if e.Reason != "deny rule r1" || e.Metadata["rule"] != "r1" || e.Status != 403 || errors.Is(e, ErrInvalidToken) {
					t.Errorf("error %+v", e)
				}
			}},
		{name: "block 200 (SDK 0.4 reads the body whatever the status)", status: 200, body: `{"enforcement":{"action":"block","reason":"r"}}`, want: ErrPolicyBlocked},
		{name: "hold 403", status: 403, body: `{"message":"held","enforcement":{"action":"hold","reason":"needs approval","metadata":{"requiresApproval":true}},"delegation_context":{"planId":"p1"}}`, want: ErrPolicyHold,
			check: func(t *testing.T, _ *InvokeResult, e *Error) {
				if e.DelegationContext["planId"] != "p1" || e.Reason != "needs approval" || e.Metadata["requiresApproval"] != true {
					t.Errorf("error %+v", e)
				}
			}},
		{name: "hold in sse", status: 200, contentType: "text/event-stream", body: "data: {\"enforcement\":{\"action\":\"hold\"}}\n\n", want: ErrPolicyHold},
		{name: "401", status: 401, body: `{"message":"bad signature"}`, want: ErrInvalidToken},
		{name: "403 without enforcement", status: 403, body: `{"message":"forbidden"}`, want: ErrInvalidToken},
		{name: "401 revoked", status: 401, body: `{"message":"key revoked"}`, revoked: true, want: ErrRevoked,
			check: func(t *testing.T, _ *InvokeResult, e *Error) {
				if !errors.Is(e, ErrInvalidToken) {
					t.Error("revoked is not an invalid token")
				}
			}},
		{name: "401 expired", status: 401, body: `{"code":"token_expired","message":"token expired at x"}`, want: ErrTokenExpired},
		{name: "409", status: 409, body: `{"message":"params differ"}`, want: ErrIntentMismatch,
			check: func(t *testing.T, _ *InvokeResult, e *Error) {
				if !strings.Contains(e.Message, "params differ") || e.Action != "search_logs" || e.MCP != "logs" {
					t.Errorf("error %+v", e)
				}
			}},
		{name: "500", status: 500, body: `{"message":"upstream down"}`, want: ErrMCPInvocation,
			check: func(t *testing.T, _ *InvokeResult, e *Error) {
				if e.Status != 500 || !strings.Contains(e.Message, "upstream down") {
					t.Errorf("error %+v", e)
				}
			}},
		{name: "502 html", status: 502, contentType: "text/html", body: `<html>bad gateway</html>`, want: ErrMCPInvocation},
		{name: "404", status: 404, body: ``, want: ErrMCPInvocation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, tok := issuedToken(t, func(w http.ResponseWriter) {
				if tc.revoked {
					w.Header().Set("X-Armoriq-Revoked", "true")
				}
				ct := tc.contentType
				if ct == "" {
					ct = "application/json"
				}
				w.Header().Set("Content-Type", ct)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			res, err := c.Invoke(context.Background(), "logs", "search_logs", tok, searchParams)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Invoke = %v, want success", err)
				}
				if tc.check != nil {
					tc.check(t, res, nil)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Invoke = %v, want %v", err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T is not *Error", err)
			}
			if tc.check != nil {
				tc.check(t, nil, e)
			}
		})
	}
}

func TestEnforceAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   Decision
		err    error
	}{
		{"allow", 200, `{"allowed":true,"action":"allow","reason":"ok","matched_policy":"r1"}`, Decision{Allowed: true, Action: "allow", Reason: "ok", MatchedPolicy: "r1"}, nil},
		{"block decision", 200, `{"allowed":false,"action":"block","reason":"deny"}`, Decision{Action: "block", Reason: "deny"}, nil},
		{"block as enforcement", 403, `{"enforcement":{"action":"block","reason":"deny"}}`, Decision{Action: "block", Reason: "deny"}, nil},
		{"hold as enforcement", 403, `{"enforcement":{"action":"hold","reason":"approve"}}`, Decision{Action: "hold", Reason: "approve"}, nil},
		{"bad token", 401, `{"message":"bad"}`, Decision{}, ErrInvalidToken},
		{"mismatch", 409, `{"message":"bad"}`, Decision{}, ErrIntentMismatch},
		{"not a decision", 200, `{"result":{}}`, Decision{}, ErrMCPInvocation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, tok := issuedToken(t, func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			d, err := c.Enforce(context.Background(), "logs", "search_logs", tok, searchParams)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Enforce = %+v, %v; want %v", d, err, tc.err)
				}
				return
			}
			if err != nil || d.Allowed != tc.want.Allowed || d.Action != tc.want.Action || d.Reason != tc.want.Reason || d.MatchedPolicy != tc.want.MatchedPolicy {
				t.Fatalf("Enforce = %+v, %v; want %+v", d, err, tc.want)
			}
		})
	}
}

func TestTokenAnswers(t *testing.T) {
	okAnswer := func(mutate func(map[string]any)) func(g *fakeGateway) func(w http.ResponseWriter) {
		return func(g *fakeGateway) func(w http.ResponseWriter) {
			return func(w http.ResponseWriter) {
				// Let the real handler build a good answer, then alter it.
				rec := &recorder{header: http.Header{}}
				g.tokenAnswer = nil
				g.token(rec, g.replayRequest(t))
				var m map[string]any
				_ = json.Unmarshal(rec.body, &m)
				mutate(m)
				writeJSON(w, rec.status, m)
			}
		}
	}
	fixed := func(status int, body string, revoked bool) func(*fakeGateway) func(w http.ResponseWriter) {
		return func(*fakeGateway) func(w http.ResponseWriter) {
			return func(w http.ResponseWriter) {
				if revoked {
					w.Header().Set("X-Armoriq-Revoked", "true")
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = w.Write([]byte(body))
			}
		}
	}
	for _, tc := range []struct {
		name   string
		answer func(*fakeGateway) func(w http.ResponseWriter)
		want   error
		reason string
	}{
		{"403 policy", fixed(403, `{"success":false,"message":"denied","policy_validation":{"denied_tools":["logs/search_logs"],"denied_reasons":["r1","r2"]}}`, false), ErrPolicyBlocked, "r1; r2"},
		{"403 plain", fixed(403, `{"message":"not for you"}`, false), ErrPolicyBlocked, "not for you"},
		{"200 with denied tools", fixed(200, `{"success":true,"policy_validation":{"denied_tools":["x"]}}`, false), ErrPolicyBlocked, "blocked by policy"},
		{"401", fixed(401, `{"message":"bad key"}`, false), ErrInvalidToken, ""},
		{"401 revoked", fixed(401, `{"message":"revoked"}`, true), ErrRevoked, ""},
		{"500", fixed(500, `oops`, false), ErrInvalidToken, ""},
		{"success false", fixed(200, `{"success":false,"message":"nope"}`, false), ErrInvalidToken, ""},
		{"not json", fixed(200, `<html>`, false), ErrInvalidToken, ""},
		{"other plan hash", okAnswer(func(m map[string]any) { m["plan_hash"] = strings.Repeat("0", 64) }), ErrInvalidToken, ""},
		{"token for other plan", okAnswer(func(m map[string]any) { m["token"].(map[string]any)["plan_hash"] = "x" }), ErrInvalidToken, ""},
		{"missing proofs", okAnswer(func(m map[string]any) { m["step_proofs"] = []any{} }), ErrInvalidToken, ""},
		{"proofs swapped", okAnswer(func(m map[string]any) {
			p := m["step_proofs"].([]any)
			p[0], p[1] = p[1], p[0]
		}), ErrInvalidToken, ""},
		{"bad root", okAnswer(func(m map[string]any) { m["merkle_root"] = strings.Repeat("ab", 32) }), ErrInvalidToken, ""},
		{"no token", okAnswer(func(m map[string]any) { delete(m, "token") }), ErrInvalidToken, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, srv := newFakeGateway(t, time.Now)
			g.tokenAnswer = tc.answer(g)
			c := newTestClient(t, srv.URL, time.Now)
			plan, err := c.CapturePlan("g", testSteps())
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetIntentToken(context.Background(), plan)
			if !errors.Is(err, tc.want) {
				t.Fatalf("GetIntentToken = %v, want %v", err, tc.want)
			}
			var e *Error
			if tc.reason != "" && (!errors.As(err, &e) || e.Reason != tc.reason) {
				t.Errorf("reason %q, want %q", e.Reason, tc.reason)
			}
		})
	}
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int)   { r.status = s }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	r.body = append(r.body, b...)
	return len(b), nil
}

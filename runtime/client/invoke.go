package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/armoriq/controlplane/runtime/intent"
)

// InvokeResult is a tool's answer.
type InvokeResult struct {
	MCP, Action string
	// Result is the JSON-RPC result (or the whole answer when it has none).
	Result json.RawMessage
	// IsError is the tool's own error flag (isError in the result): the call
	// went through and the tool reported a failure.
	IsError  bool
	Duration time.Duration
}

// Decision is the answer of an enforce_only call.
type Decision struct {
	Allowed       bool   `json:"allowed"`
	Action        string `json:"action"` // allow, block or hold
	Reason        string `json:"reason"`
	MatchedPolicy any    `json:"matched_policy"`
}

// Invoke calls action on mcp through the gateway (POST {proxy}/invoke) under
// token, as the SDKs do: the token must not have expired (KindTokenExpired,
// checked locally first), the action must be a step of the plan
// (KindIntentMismatch, checked locally first), and the request carries the
// step's X-CSRG-Path, X-CSRG-Value-Digest and X-CSRG-Proof. Answers map to
// errors as armoriq-compat.md says: an enforcement body is KindPolicyBlocked
// or KindPolicyHold whatever the status; 401/403 KindInvalidToken (KindRevoked
// with X-Armoriq-Revoked, KindTokenExpired when the gateway says expired);
// 409 KindIntentMismatch; other errors and a JSON-RPC error KindMCPInvocation.
func (c *Client) Invoke(ctx context.Context, mcp, action string, token *IntentToken, params map[string]any, opts ...InvokeOption) (*InvokeResult, error) {
	cfg := callConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	ans, elapsed, err := c.invoke(ctx, mcp, action, token, params, cfg)
	if err != nil {
		return nil, err
	}
	data, err := answerData(ans, mcp, action)
	if err != nil {
		return nil, err
	}
	if err := mapInvokeAnswer(ans, data, mcp, action); err != nil {
		return nil, err
	}
	res := &InvokeResult{MCP: mcp, Action: action, Duration: elapsed, Result: data}
	if m := decodeObject(data); m != nil {
		if r, ok := m["result"]; ok {
			res.Result, _ = json.Marshal(r)
			if rm, ok := r.(map[string]any); ok {
				res.IsError = truthy(rm["isError"]) || truthy(rm["is_error"])
			}
		}
	}
	return res, nil
}

// Enforce asks the gateway for its decision on a call without making it
// ("enforce_only": true). Blocked and held calls are decisions, not errors;
// token and intent problems are errors as for Invoke.
func (c *Client) Enforce(ctx context.Context, mcp, action string, token *IntentToken, params map[string]any, opts ...InvokeOption) (*Decision, error) {
	cfg := callConfig{enforceOnly: true}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.enforceOnly = true
	ans, _, err := c.invoke(ctx, mcp, action, token, params, cfg)
	if err != nil {
		return nil, err
	}
	data, err := answerData(ans, mcp, action)
	if err != nil {
		return nil, err
	}
	if err := mapInvokeAnswer(ans, data, mcp, action); err != nil {
		var e *Error
		if asError(err, &e) && (e.Kind == KindPolicyBlocked || e.Kind == KindPolicyHold) {
			d := &Decision{Action: "block", Reason: e.Reason}
			if e.Kind == KindPolicyHold {
				d.Action = "hold"
			}
			return d, nil
		}
		return nil, err
	}
	var d Decision
	if err := json.Unmarshal(data, &d); err != nil || d.Action == "" {
		return nil, newError(KindMCPInvocation, ans.status, "enforce answer is not a decision: %s", truncate(string(data), 200)).with(mcp, action)
	}
	return &d, nil
}

func (c *Client) invoke(ctx context.Context, mcp, action string, token *IntentToken, params map[string]any, cfg callConfig) (*answer, time.Duration, error) {
	if token == nil || token.Plan == nil {
		return nil, 0, newError(KindInvalidToken, 0, "no intent token: call GetIntentToken first").with(mcp, action)
	}
	if now := c.now(); token.Expired(now) {
		e := newError(KindTokenExpired, 0, "intent token expired %.1fs ago", now.Sub(token.ExpiresAt).Seconds()).with(mcp, action)
		return nil, 0, e
	}
	i := intent.StepIndex(token.Plan.Steps, action)
	if i < 0 {
		actions := make([]string, len(token.Plan.Steps))
		for k, s := range token.Plan.Steps {
			actions[k] = s.Action
		}
		return nil, 0, newError(KindIntentMismatch, 0, "action %q is not in the plan (plan actions: %s): invoke only actions the plan listed", action, strings.Join(actions, ", ")).with(mcp, action)
	}
	// The SDKs name the first step with this action; when another step
	// with the same action is exactly this call (same mcp and params), name
	// that one, so the proof sent is the proof of the step being made. The
	// gateway accepts either.
	if exact := matchingStep(token.Plan, mcp, action, params); exact >= 0 {
		i = exact
	}
	proof := cfg.merkleProof
	if len(proof) == 0 && i < len(token.StepProofs) {
		proof = token.StepProofs[i]
	}

	if params == nil {
		params = map[string]any{}
	}
	iam := map[string]any{"user_id": c.userID, "agent_id": c.agentID}
	if token.PolicyValidation != nil {
		iam["allowed_tools"] = token.PolicyValidation.AllowedTools
	}
	if cfg.userEmail != "" {
		iam["email"] = cfg.userEmail
		iam["user_email"] = cfg.userEmail
	}
	var rawToken any // nil, not an empty RawMessage, when the answer had none
	if len(token.RawToken) > 0 {
		rawToken = token.RawToken
	}
	stepProofs := make([]any, len(token.StepProofs))
	for k, p := range token.StepProofs {
		stepProofs[k] = p
	}
	body := map[string]any{
		"mcp":       mcp,
		"action":    action,
		"tool":      action,
		"params":    params,
		"arguments": params,
		"intent_token": map[string]any{
			"plan":               token.Plan.Object(),
			"plan_id":            token.PlanID,
			"token":              rawToken,
			"plan_hash":          token.PlanHash,
			"merkle_root":        token.MerkleRoot,
			"intent_reference":   token.TokenID,
			"composite_identity": token.CompositeIdentity,
			"step_proofs":        stepProofs,
		},
		"merkle_proof": nil,
		"plan":         token.Plan.Object(),
		"token":        rawToken,
		"csrg_token":   rawToken,
		"_iam_context": iam,
	}
	if len(cfg.merkleProof) > 0 {
		body["merkle_proof"] = cfg.merkleProof
	}
	if cfg.userEmail != "" {
		body["user_email"] = cfg.userEmail
	}
	if cfg.enforceOnly {
		body["enforce_only"] = true
	}

	h := http.Header{}
	h.Set("Accept", "application/json, text/event-stream")
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("X-Request-ID", "sdk-"+strconv.FormatInt(c.now().UnixMilli(), 10))
	h.Set("X-CSRG-Path", intent.StepPath(i))
	h.Set("X-CSRG-Value-Digest", intent.ValueDigest(token.Plan.Steps[i].Action))
	if len(proof) > 0 {
		var compact bytes.Buffer
		if err := json.Compact(&compact, proof); err != nil {
			return nil, 0, newError(KindInvalidToken, 0, "step proof %d is not JSON: %v", i, err).with(mcp, action)
		}
		h.Set("X-CSRG-Proof", compact.String())
	}
	start := c.now()
	ans, err := c.postJSON(ctx, c.proxy+"/invoke", body, h)
	if err != nil {
		return nil, 0, newError(KindMCPInvocation, 0, "MCP invocation failed: %v", err).with(mcp, action)
	}
	return ans, c.now().Sub(start), nil
}

// answerData is the answer's JSON: the body, or the first parsable "data: "
// line of an event stream.
func answerData(ans *answer, mcp, action string) (json.RawMessage, error) {
	ct := ans.header.Get("Content-Type")
	if !strings.Contains(ct, "text/event-stream") {
		return ans.body, nil
	}
	for _, line := range strings.Split(string(ans.body), "\n") {
		line = strings.TrimRight(line, "\r")
		rest, ok := strings.CutPrefix(line, "data:")
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if json.Valid([]byte(rest)) {
			return json.RawMessage(rest), nil
		}
	}
	return nil, newError(KindMCPInvocation, ans.status, "no data in SSE response").with(mcp, action)
}

// mapInvokeAnswer turns an invoke answer into the SDKs' errors, in their order:
// enforcement body, then status, then JSON-RPC error.
func mapInvokeAnswer(ans *answer, data json.RawMessage, mcp, action string) error {
	m := decodeObject(data)
	if enf, ok := m["enforcement"].(map[string]any); ok && len(enf) > 0 {
		act, _ := enf["action"].(string)
		msg, _ := m["message"].(string)
		if msg == "" {
			msg = "enforcement: " + act
		}
		e := newError(KindPolicyHold, ans.status, "%s", msg).with(mcp, action)
		if act == "block" {
			e.Kind = KindPolicyBlocked
		} else {
			e.DelegationContext, _ = m["delegation_context"].(map[string]any)
		}
		e.Reason, _ = enf["reason"].(string)
		e.Metadata, _ = enf["metadata"].(map[string]any)
		return e
	}
	if ans.status >= 400 {
		msg := ans.message()
		switch {
		case ans.status == http.StatusUnauthorized || ans.status == http.StatusForbidden:
			switch {
			case ans.revoked():
				return newError(KindRevoked, ans.status, "token verification failed: %s", msg).with(mcp, action)
			case saysExpired(m, msg):
				return newError(KindTokenExpired, ans.status, "token verification failed: %s", msg).with(mcp, action)
			}
			return newError(KindInvalidToken, ans.status, "token verification failed: %s", msg).with(mcp, action)
		case ans.status == http.StatusConflict:
			return newError(KindIntentMismatch, ans.status, "action not in plan: %s", msg).with(mcp, action)
		}
		return newError(KindMCPInvocation, ans.status, "MCP invocation failed: %s", msg).with(mcp, action)
	}
	if errVal, ok := m["error"]; ok && truthy(errVal) {
		if em, ok := errVal.(map[string]any); ok {
			code := fmt.Sprint(em["code"])
			if em["code"] == nil {
				code = "-1"
			}
			msg, _ := em["message"].(string)
			e := newError(KindMCPInvocation, ans.status, "MCP tool error (%s): %s", code, first(msg, "unknown error")).with(mcp, action)
			if d, ok := em["data"]; ok && d != nil {
				e.Message += fmt.Sprintf(" - %v", d)
			}
			return e
		}
		return newError(KindMCPInvocation, ans.status, "MCP tool error: %v", errVal).with(mcp, action)
	}
	return nil
}

// saysExpired reads a 401/403 body for an expired token: code or error
// "token_expired", or a message that says expired.
func saysExpired(m map[string]any, msg string) bool {
	for _, k := range []string{"code", "error", "reason"} {
		if s, ok := m[k].(string); ok && strings.EqualFold(s, "token_expired") {
			return true
		}
	}
	return strings.Contains(strings.ToLower(msg), "expired")
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case json.Number:
		return x != "0" && x != "0.0"
	case map[string]any:
		return len(x) > 0
	case []any:
		return len(x) > 0
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (e *Error) with(mcp, action string) *Error {
	e.MCP, e.Action = mcp, action
	return e
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
	}
	return ok
}

// matchingStep returns the first step that is exactly this call, or -1.
func matchingStep(plan *intent.Plan, mcp, action string, params map[string]any) int {
	in, err := intent.StepLeafInput(intent.Step{Action: action, MCP: mcp, Params: params})
	if err != nil {
		return -1
	}
	// Leaves hash canonical JSON, so Go values compare as the gateway will
	// see them: int 5 and json.Number "5" alike, float64 5 not.
	leaf := intent.HashLeaf(in)
	for k, s := range plan.Steps {
		if s.Action == action && intent.StepLeaf(s) == leaf {
			return k
		}
	}
	return -1
}

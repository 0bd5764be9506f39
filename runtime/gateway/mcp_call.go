package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/runtime/identity"
	"github.com/armoriq/controlplane/runtime/intent"
	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// JSON-RPC error codes of the MCP endpoint's refusals (the implementation-
// defined server error range). A refusal is always an error, never a fake
// tool result, so a client cannot mistake it for the tool's answer.
// The SDK's own codes (-32001 to -32004, -32020 to -32022, -32042) are
// avoided: its client reads some of them as a closed connection.
const (
	codeUnauthenticated int64 = -32030 // the intent token is missing or invalid
	codeBlocked         int64 = -32031 // the policy denies the call
	codeHeld            int64 = -32032 // the policy holds the call for approval
	codeUpstream        int64 = -32033 // the MCP server failed or is down
	codeTimeout         int64 = -32034 // the MCP server did not answer in time
	codeUnavailable     int64 = -32035 // the gateway cannot complete the call
	codeInputRequired   int64 = -32036 // the MCP server needs input the client cannot give
)

// metaIntent is the _meta key of a tools/call's intent: the SDK's token
// answer (or its "token" object) with the plan, and optionally the step's
// Merkle proof.
const metaIntent = "armoriq/intent"

// mcpIntent is the _meta["armoriq/intent"] object.
type mcpIntent struct {
	Token           json.RawMessage `json:"token"`
	Plan            json.RawMessage `json:"plan"`
	IntentReference string          `json:"intent_reference"`
	MerkleProof     json.RawMessage `json:"merkle_proof"`
}

// toolCall is one tools/call as the gateway checks it, whichever path
// (the SDK's or the fast one) decoded it.
type toolCall struct {
	rt             route
	args           json.RawMessage // the arguments object as sent
	meta           map[string]any  // the request's _meta
	inputResponses json.RawMessage // a multi-round-trip retry's answers (SEP-2322)
	requestState   string          // and the state it echoes
	progress       func(plugins.Progress)
	log            func(plugins.LogMessage)
	// request asks a legacy client on the call's event stream (nil: the
	// call has no way to ask it).
	request func(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error)

	// round counts the gateway's retries of a legacy client's call with
	// the answers to an upstream's input requests (mcp_input.go); deadline
	// is the call's, set at its first forward, which its rounds share.
	round    int
	deadline time.Time
	// retry is set by a round whose input requests the client answered:
	// what the next round carries.
	retry *inputRetry
}

// legacyClient reports whether the call's client speaks the initialize
// handshake (legacyMeta).
func (tc *toolCall) legacyClient() bool { return legacyMeta(tc.meta) }

func (ep *mcpEndpoint) toolHandler(rt route) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		tc := &toolCall{rt: rt, args: req.Params.Arguments, meta: req.Params.Meta, requestState: req.Params.RequestState}
		if req.Params.InputResponses != nil {
			b, err := json.Marshal(req.Params.InputResponses)
			if err != nil {
				return nil, rpcError(errorf(KindInvalid, "inputResponses do not encode as JSON: %v", err))
			}
			tc.inputResponses = b
		}
		if tok := req.Params.GetProgressToken(); tok != nil && req.Session != nil {
			tc.progress = func(p plugins.Progress) {
				_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: p.Progress, Total: p.Total, Message: p.Message})
			}
		}
		if req.Session != nil {
			// The session sends it only at or above the client's level.
			tc.log = func(m plugins.LogMessage) {
				_ = req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: mcp.LoggingLevel(m.Level), Logger: m.Logger, Data: logData(m.Data)})
			}
		}
		raw, err := ep.callTool(ctx, tc)
		if err != nil {
			return nil, rpcError(err)
		}
		res := new(mcp.CallToolResult)
		if err := json.Unmarshal(raw, res); err != nil {
			return nil, rpcError(&Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q answered with a malformed result", rt.server.ID), Err: err})
		}
		return res, nil
	}
}

// callTool runs the checks of POST /invoke on a tools/call, forwards it,
// and commits its audit record before answering. It returns the upstream's
// CallToolResult as JSON. A legacy client's call the upstream answers with
// input_required is retried with the client's answers (mcp_input.go), each
// round a call of its own to the checks and the audit.
func (ep *mcpEndpoint) callTool(ctx context.Context, tc *toolCall) (json.RawMessage, error) {
	raw, err := ep.callOnce(ctx, tc)
	if err != nil || tc.retry == nil {
		return raw, err
	}
	return ep.retryWithAnswers(ctx, *tc) // a copy: tc stays on its caller's stack
}

// retryWithAnswers runs the rounds of a call after the first, each with
// the answers the round before got from the client.
func (ep *mcpEndpoint) retryWithAnswers(ctx context.Context, tc toolCall) (json.RawMessage, error) {
	for {
		tc.inputResponses, tc.requestState = tc.retry.responses, tc.retry.state
		tc.round, tc.retry = tc.round+1, nil
		raw, err := ep.callOnce(ctx, &tc)
		if err != nil || tc.retry == nil {
			return raw, err
		}
	}
}

// callOnce is one round of callTool: one call to the upstream, or none.
func (ep *mcpEndpoint) callOnce(ctx context.Context, tc *toolCall) (json.RawMessage, error) {
	s := ep.s
	start := s.now()
	mc := mcpCallFrom(ctx)
	if mc == nil {
		return nil, errorf(KindUnavailable, "request context lost")
	}
	client := mc.client
	if ci, ok := tc.meta[metaClientInfo].(map[string]any); ok && client == "" {
		client, _ = ci["name"].(string)
	}
	inv := newInvocationAt(start, mc.reqID, mc.caller)
	rec := &inv.rec
	rec.User, rec.UserSource, rec.Client, rec.Server, rec.Tool = mc.user, mc.source, client, tc.rt.server.ID, tc.rt.name
	var err error
	if cerr := identity.Check("clientInfo.name", client, identity.MaxClient); cerr != nil {
		rec.Client, err = "", errorf(KindInvalid, "%v", cerr)
	}
	var res json.RawMessage
	if err == nil {
		res, err = ep.checkAndForward(ctx, tc, inv)
	}
	aerr := s.finish(ctx, inv, err)
	ep.metrics.call(inv.rec.Decision, s.now().Sub(start))
	if aerr != nil {
		return nil, aerr
	}
	return res, err
}

// metaClientInfo is where a 2026-07-28 client names itself in _meta.
const metaClientInfo = "io.modelcontextprotocol/clientInfo"

func (ep *mcpEndpoint) checkAndForward(ctx context.Context, tc *toolCall, inv *invocation) (json.RawMessage, error) {
	s := ep.s
	rec := &inv.rec
	rt := tc.rt
	var args map[string]any
	if raw := bytes.TrimSpace(tc.args); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		v, err := intent.DecodeJSON(raw) // in place: no second copy of large arguments
		m, ok := v.(map[string]any)
		if err != nil || !ok {
			return nil, errorf(KindInvalid, "arguments must be a JSON object")
		}
		args = m
	}
	args, approvalID := takeApprovalID(args)
	if id, ok := tc.meta[metaApproval].(string); ok && approvalID == "" {
		approvalID = id
	}
	rec.Arguments = auditArgs(args)
	ab := s.active.Load()
	if ab != nil {
		rec.BundleRevision = ab.b.Manifest.Revision
	}

	// 1. The intent token, when the bundle requires one or the client sent
	// one: it names the user and binds this call to a planned step.
	user := rec.User
	var tokenRef string
	if raw, ok := tc.meta[metaIntent]; ok || (ab != nil && ab.b.Policy.RequireCSRG) {
		if !ok {
			// A plain MCP client meets require_csrg here: say what it
			// demands and where the token goes.
			return nil, errorf(KindUnauthenticated, "this gateway requires an intent token on every tools/call (intent.require_csrg in its config): send the token and plan of POST /iap/sdk/token in params._meta[%q] (see docs/mcp.md)", metaIntent)
		}
		u, ref, err := ep.checkIntent(ctx, raw, rt, args, inv)
		if err != nil {
			return nil, err
		}
		user, tokenRef = u, ref
		rec.User = user
	}

	// 2. No secrets in arguments, nor in the answers a retry carries to
	// the upstream's input requests: they reach the upstream as arguments
	// do, and MCP forbids asking for credentials in a form (elicitation's
	// URL mode is for them).
	if p := findSecretArg(args, ""); p != "" {
		return nil, errorf(KindSecretArgument, "argument %q looks like a secret; credentials belong in the gateway's server config, not in tool arguments", p)
	}
	if len(tc.inputResponses) > 0 {
		v, err := intent.DecodeJSON(tc.inputResponses)
		if err != nil {
			return nil, errorf(KindInvalid, "inputResponses must be a JSON object")
		}
		if p := findSecretArg(v, "inputResponses"); p != "" {
			return nil, errorf(KindSecretArgument, "input response %q looks like a secret; credentials belong in the gateway's server config, not in answers to an MCP server's questions", p)
		}
	}

	// 3. The policy, for this user and the key's agent.
	d := s.decide(ctx, ab, &policy.Request{User: user, Groups: callerFrom(ctx).groupsFor(user), Agent: rec.Agent, Server: rt.server.ID, Tool: rt.name, Args: args, Time: inv.start})
	inv.decision = d
	switch d.Effect {
	case policy.Deny:
		return nil, &Error{Kind: KindPolicyBlocked, Message: d.Reason}
	case policy.Hold:
		// Held: runs only under an approval of exactly this call (held.go);
		// without an intent token the call is bound to the key instead.
		h := heldCall{tokenID: tokenRef, planHash: rec.PlanHash, step: rec.Step, server: rt.server.ID, tool: rt.name, args: args, user: user, approvalID: approvalID}
		if tokenRef == "" {
			h.tokenID, h.step = "key:"+rec.APIKeyID, 0
		}
		if err := s.hold(ctx, inv, d, h); err != nil {
			return nil, err
		}
	}

	// 4. No audit, no action: the request record is durable before the
	// upstream sees the call.
	if err := s.commitRequest(ctx, inv); err != nil {
		return nil, err
	}

	// 5. Forward, cancelled if the key or token is revoked meanwhile.
	rec.Decision = store.Allowed
	if tokenRef != "" {
		// Without a token, the request's context is the one a revoked
		// key cancels (ServeHTTP).
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		defer s.inflight.addToken(tokenRef, cancel)()
	}
	ctx = withUpstreamRequest(ctx, &upstreamRequest{
		meta:     tc.meta,
		extra:    plugins.RequestExtra{InputResponses: tc.inputResponses, RequestState: tc.requestState},
		progress: tc.progress,
		log:      tc.log,
		request:  tc.request,
	})
	// The call's time limit runs from its first forward: a legacy
	// client's rounds of input share it, the waits for its answers too.
	var cctx context.Context
	var ccancel context.CancelFunc
	if tc.deadline.IsZero() {
		cctx, ccancel = context.WithTimeout(ctx, s.callTimeout())
		tc.deadline, _ = cctx.Deadline()
	} else {
		cctx, ccancel = context.WithDeadline(ctx, tc.deadline)
	}
	defer ccancel()
	raw, err := s.cfg.Upstream.CallTool(cctx, rt.server, rt.name, args)
	if err != nil {
		rec.Decision = store.Failed
		switch {
		case context.Cause(ctx) == errRevokedInFlight:
			return nil, errorf(KindRevoked, "the API key or intent token was revoked while the call was in flight")
		case errors.Is(cctx.Err(), context.DeadlineExceeded):
			return nil, &Error{Kind: KindUpstreamTimeout, Message: fmt.Sprintf("MCP server %q did not answer within %s", rt.server.ID, s.callTimeout())}
		}
		var e *Error
		if errors.As(err, &e) {
			return nil, e
		}
		return nil, &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q failed", rt.server.ID), Err: err}
	}
	if context.Cause(ctx) == errRevokedInFlight {
		rec.Decision = store.Failed
		return nil, errorf(KindRevoked, "the API key or intent token was revoked while the call was in flight")
	}
	if isToolError(raw) {
		rec.Outcome = "tool returned an error result"
	}

	// 6. An upstream asking for input: a 2026-07-28 client gets the
	// input_required result; a legacy client, which would read it as an
	// empty success, is asked, and the call retried with its answers, or
	// is answered with an error saying what it cannot give.
	ir, err := parseInputRequired(raw)
	if !tc.legacyClient() {
		if ir != nil {
			rec.Outcome = "input required (" + ir.methodsOf() + "): handed to the client"
		}
		return raw, nil // as it is, as before
	}
	if err != nil {
		rec.Decision = store.Failed
		return nil, &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q answered input_required, malformed: %v", rt.server.ID, err)}
	}
	if ir == nil {
		return raw, nil
	}
	retry, err := ep.askClient(cctx, tc, ir)
	if err != nil {
		rec.Decision = store.Failed
		return nil, err
	}
	rec.Outcome = inputOutcome(ir, tc.round)
	tc.retry = retry
	return raw, nil
}

// checkIntent verifies the intent carried in _meta as /invoke verifies the
// SDK's token: signed by this gateway, unexpired, issued to this key, not
// revoked, its plan the signed one, and this call (action and arguments) a
// step of it. It returns the token's user and reference.
func (ep *mcpEndpoint) checkIntent(ctx context.Context, raw any, rt route, args map[string]any, inv *invocation) (string, string, error) {
	s := ep.s
	rec := &inv.rec
	b, err := json.Marshal(raw)
	if err != nil {
		return "", "", errorf(KindUnauthenticated, "_meta[%q] is malformed", metaIntent)
	}
	var in mcpIntent
	if err := json.Unmarshal(b, &in); err != nil {
		return "", "", errorf(KindUnauthenticated, "_meta[%q] is malformed: %v", metaIntent, err)
	}
	if firstJSON(in.Token) == nil {
		return "", "", errorf(KindUnauthenticated, "_meta[%q].token is required", metaIntent)
	}
	var tok intent.Token
	if err := json.Unmarshal(in.Token, &tok); err != nil {
		return "", "", errorf(KindUnauthenticated, "intent token is malformed: %v", err)
	}
	if err := intent.VerifyToken(&tok, s.tokenKeys(), s.now()); err != nil {
		return "", "", tokenError(err)
	}
	rec.PlanHash = tok.PlanHash
	ref := in.IntentReference
	pref, _ := tok.Policy["intent_ref"].(string)
	if ref == "" {
		ref = pref
	}
	if pref != "" && pref != ref {
		return "", "", errorf(KindUnauthenticated, "intent_reference %q does not belong to this token", ref)
	}
	trec, err := s.store.GetToken(ctx, ref)
	mc := mcpCallFrom(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", "", errorf(KindUnauthenticated, "unknown intent token %q", ref)
	case err != nil:
		return "", "", &Error{Kind: KindUnavailable, Message: "cannot check the intent token", Err: err}
	case !trec.RevokedAt.IsZero():
		return "", "", errorf(KindRevoked, "intent token %s was revoked", ref)
	case trec.APIKeyID != mc.caller.KeyID:
		return "", "", errorf(KindUnauthenticated, "intent token %s was issued to another API key", ref)
	case trec.PlanHash != tok.PlanHash:
		return "", "", errorf(KindUnauthenticated, "intent token %s does not match its plan hash", ref)
	}
	rec.Agent = trec.Agent
	var claims []identity.Claim
	if mc.named {
		claims = append(claims, identity.Claim{Field: headerUser, Value: mc.user})
	}
	res, err := endUserOf(&tok, trec.User, append(claims, mc.caller.endUserClaims()...))
	if err != nil {
		return "", "", err
	}
	user := res.User
	inv.rec.UserSource = res.Source
	if firstJSON(in.Plan) == nil {
		return "", "", errorf(KindInvalid, "_meta[%q].plan is required", metaIntent)
	}
	plan, err := parsePlan(in.Plan)
	if err != nil {
		return "", "", err
	}
	if err := plan.signedBy(&tok); err != nil {
		return "", "", err
	}
	hr := &http.Request{Header: http.Header{}}
	step, err := s.bindStep(hr, &invokeRequest{MCP: rt.server.ID, MerkleProof: in.MerkleProof}, plan, rt.name, args)
	if err != nil {
		return "", "", err
	}
	rec.Step = int64(step)
	if err := s.checkTokenPolicy(&tok, rt.server.ID, rt.name); err != nil {
		inv.decision = policy.Decision{Effect: policy.Deny, RuleID: tokenPolicyRule, Reason: err.Error()}
		return "", "", err
	}
	return user, ref, nil
}

// forwardMeta is the _meta a request passes on to its upstream: the
// client's, less what is the gateway's own business: the intent (a token
// for this gateway, not for the server) and the progress token (the
// adapter sets its own and relays progress back).
func forwardMeta(meta map[string]any) json.RawMessage {
	if len(meta) == 0 {
		return nil
	}
	_, hasIntent := meta[metaIntent]
	_, hasToken := meta["progressToken"]
	if hasIntent || hasToken {
		m := make(map[string]any, len(meta))
		for k, v := range meta {
			if k != metaIntent && k != "progressToken" {
				m[k] = v
			}
		}
		meta = m
	}
	if len(meta) == 0 {
		return nil
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return nil
	}
	return b
}

// logData is a log message's data for the SDK: its JSON as sent.
func logData(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	return raw
}

// rpcError turns a gateway error into the JSON-RPC error the MCP client
// sees. An upstream's own JSON-RPC error is handed on unchanged.
func rpcError(err error) *jsonrpc.Error {
	var up *plugins.RPCError
	if errors.As(err, &up) {
		return &jsonrpc.Error{Code: up.Code, Message: up.Message, Data: up.Data}
	}
	e := asError(err)
	msg := e.Message
	if e.Kind == KindInternal {
		msg = "internal error"
	}
	_, name := statusOf(e.Kind)
	data := mustJSON(map[string]string{"code": name})
	if e.Enforcement != nil {
		data = mustJSON(map[string]any{"code": name, "enforcement": e.Enforcement})
	}
	switch e.Kind {
	case KindPolicyBlocked:
		return &jsonrpc.Error{Code: codeBlocked, Message: "blocked by policy: " + msg, Data: data}
	case KindPolicyHold:
		return &jsonrpc.Error{Code: codeHeld, Message: "held for approval: " + msg, Data: data}
	case KindUnauthenticated, KindRevoked, KindExpired, KindIntentMismatch:
		return &jsonrpc.Error{Code: codeUnauthenticated, Message: msg, Data: data}
	case KindInvalid, KindSecretArgument:
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: msg, Data: data}
	case KindUpstream:
		return &jsonrpc.Error{Code: codeUpstream, Message: msg, Data: data}
	case KindUpstreamTimeout:
		return &jsonrpc.Error{Code: codeTimeout, Message: msg, Data: data}
	case KindInputRequired:
		return &jsonrpc.Error{Code: codeInputRequired, Message: msg, Data: data}
	default:
		return &jsonrpc.Error{Code: codeUnavailable, Message: msg, Data: data}
	}
}

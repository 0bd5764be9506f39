package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/armoriq/controlplane/runtime/identity"
	"github.com/armoriq/controlplane/runtime/intent"
	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/runtime/store"
)

// invokeRequest is the SDK's POST /invoke body. The SDKs send the token and
// plan in several places; the first present one is used.
type invokeRequest struct {
	MCP       string       `json:"mcp"`
	Action    string       `json:"action"`
	Tool      string       `json:"tool"`
	Params    numberObject `json:"params"`
	Arguments lazyObject   `json:"arguments"` // read only without params

	IntentToken *sdkIntentToken `json:"intent_token"`
	MerkleProof json.RawMessage `json:"merkle_proof"`
	Plan        bodyJSON        `json:"plan"`
	Token       json.RawMessage `json:"token"`
	CSRGToken   json.RawMessage `json:"csrg_token"`
	UserEmail   string          `json:"user_email"`
	EnforceOnly bool            `json:"enforce_only"`
}

// sdkIntentToken is the SDK's raw token as it echoes it back.
type sdkIntentToken struct {
	Plan            bodyJSON        `json:"plan"`
	Token           json.RawMessage `json:"token"`
	PlanHash        string          `json:"plan_hash"`
	MerkleRoot      string          `json:"merkle_root"`
	IntentReference string          `json:"intent_reference"`
}

func firstJSON[T ~[]byte](vals ...T) json.RawMessage {
	for _, v := range vals {
		if t := bytes.TrimSpace(v); len(t) > 0 && !bytes.Equal(t, []byte("null")) && !bytes.Equal(t, []byte("{}")) {
			return t
		}
	}
	return nil
}

func (s *Server) handleInvoke(w http.ResponseWriter, r *http.Request) error {
	inv := s.newInvocation(requestID(r), callerFrom(r.Context()))
	result, err := s.invoke(r, inv)
	if aerr := s.finish(r.Context(), inv, err); aerr != nil {
		return aerr
	}
	if err != nil {
		return err
	}
	w.Header().Set(headerRequestID, inv.rec.RequestID)
	if res, ok := result.(invokeResult); ok {
		res.write(w)
		return nil
	}
	writeJSON(w, http.StatusOK, result)
	return nil
}

// invokeResult is the answer to a forwarded call: the upstream's result
// under the request's id, as JSON-RPC.
type invokeResult struct {
	id  string
	res json.RawMessage
}

// write writes r as writeJSON writes the map {"jsonrpc", "id", "result"}
// (keys sorted, the result compacted, HTML characters as they are), without
// the map and the reflection.
func (r invokeResult) write(w http.ResponseWriter) {
	out := answerBuffer(len(r.res) + len(r.id) + 48)
	defer putAnswerBuffer(out)
	out.WriteString(`{"id":`)
	out.Write(store.AppendJSONString(out.AvailableBuffer(), r.id))
	out.WriteString(`,"jsonrpc":"2.0","result":`)
	// Request ids are of a few ASCII characters, which no JSON writer
	// escapes, HTML-safe or not; anything else takes writeJSON's way.
	if strings.ContainsAny(r.id, "<>&") || json.Compact(out, r.res) != nil {
		writeJSON(w, http.StatusOK, map[string]any{"jsonrpc": "2.0", "id": r.id, "result": r.res})
		return
	}
	out.WriteString("}\n")
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(out.Bytes())
}

// invoke runs the checks of an SDK call in order and forwards it. It fills
// inv.rec as it learns who, what and why.
func (s *Server) invoke(r *http.Request, inv *invocation) (any, error) {
	ctx := r.Context()
	c := callerFrom(ctx)
	rec := &inv.rec
	var req invokeRequest
	if err := unmarshalInvokeBody(r, &req); err != nil {
		return nil, err
	}
	action := req.Action
	if action == "" {
		action = req.Tool
	}
	params := map[string]any(req.Params)
	if params == nil {
		var err error
		if params, err = req.Arguments.object(); err != nil {
			return nil, errorf(KindInvalid, "arguments is not a JSON object: %v", err)
		}
	}
	args, approvalID := takeApprovalID(intent.StripInjected(params))
	rec.Arguments = auditArgs(args)

	// 0. The edge: every name and identity the call carries is usable
	// before anything is decided or recorded from it.
	if err := checkName("mcp", req.MCP); err != nil {
		return nil, err
	}
	if err := checkName("action", action); err != nil {
		return nil, err
	}
	rec.Server, rec.Tool = req.MCP, action
	if req.MCP == "" || action == "" {
		return nil, errorf(KindInvalid, "mcp and action are required")
	}
	claims, err := identity.ParamClaims(params)
	if err != nil {
		return nil, errorf(KindInvalid, "%v", err)
	}
	claims = append([]identity.Claim{{Field: "user_email", Value: req.UserEmail}}, claims...)
	for _, c := range claims {
		if _, err := identity.User(c.Field, c.Value); err != nil {
			return nil, errorf(KindInvalid, "%v", err)
		}
	}

	// 1. The token: signed by us, unexpired, issued to this key, not revoked.
	var it sdkIntentToken
	if req.IntentToken != nil {
		it = *req.IntentToken
	}
	rawTok := firstJSON(req.Token, it.Token, req.CSRGToken)
	if rawTok == nil {
		return nil, errorf(KindUnauthenticated, "an intent token is required: request one from /iap/sdk/token")
	}
	now := s.now()
	tokSum := sha256.Sum256(rawTok)
	vt, verified := s.tokens.verifiedToken(tokSum)
	if !verified {
		tok := new(intent.Token)
		if err := json.Unmarshal(rawTok, tok); err != nil {
			return nil, errorf(KindUnauthenticated, "intent token is malformed: %v", err)
		}
		if err := intent.VerifyToken(tok, s.tokenKeys(), now); err != nil {
			return nil, tokenError(err)
		}
		vt = s.tokens.markVerified(tokSum, tok, len(rawTok), floatTime(tok.ExpiresAt), now)
	} else if !now.Before(vt.expires) {
		// The same bytes verified before; only time has moved.
		return nil, tokenError(intent.ErrExpired)
	}
	tok := vt.tok // shared with every call sending the same bytes: read only
	if tok == nil {
		// Too large to keep decoded: decoded again (they verified).
		tok = new(intent.Token)
		if err := json.Unmarshal(rawTok, tok); err != nil {
			return nil, errorf(KindUnauthenticated, "intent token is malformed: %v", err)
		}
	}
	rec.PlanHash = tok.PlanHash
	ref := it.IntentReference
	if ref == "" {
		ref, _ = tok.Policy["intent_ref"].(string)
	}
	if pref, _ := tok.Policy["intent_ref"].(string); pref != "" && pref != ref {
		return nil, errorf(KindUnauthenticated, "intent_reference %q does not belong to this token", ref)
	}
	trec, cached := s.tokens.record(ref)
	if !cached {
		trec, err = s.store.GetToken(ctx, ref)
		if err == nil {
			s.tokens.putRecord(trec, now)
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errorf(KindUnauthenticated, "unknown intent token %q", ref)
	case err != nil:
		return nil, &Error{Kind: KindUnavailable, Message: "cannot check the intent token", Err: err}
	case !trec.RevokedAt.IsZero():
		return nil, errorf(KindRevoked, "intent token %s was revoked", ref)
	case trec.APIKeyID != c.KeyID:
		return nil, errorf(KindUnauthenticated, "intent token %s was issued to another API key", ref)
	case trec.PlanHash != tok.PlanHash:
		return nil, errorf(KindUnauthenticated, "intent token %s does not match its plan hash", ref)
	}
	rec.Agent, rec.Client = trec.Agent, tokenClient(tok)

	// Who the call is for: the user the token is bound to, else the one
	// the call names, else the token's user_id (docs/gateway.md).
	who, err := endUserOf(tok, trec.User, append(claims, c.endUserClaims()...))
	user := who.User
	rec.UserSource = who.Source
	if err != nil {
		return nil, err
	}
	rec.User = user

	// 2. The plan: the one the token signed, and this call one of its steps
	// with these very parameters.
	rawPlan := firstJSON(req.Plan, it.Plan)
	if rawPlan == nil {
		return nil, errorf(KindInvalid, "the plan is required with the call (intent_token.plan or plan)")
	}
	plan, err := s.tokens.plan(rawPlan)
	if err != nil {
		return nil, err
	}
	if err := plan.signedBy(tok); err != nil {
		return nil, err
	}
	step, err := s.bindStep(r, &req, plan, action, args)
	if err != nil {
		return nil, err
	}
	rec.Step = int64(step)
	tp, tpErr := vt.policy, vt.policyErr
	if vt.tok == nil {
		tp, tpErr = policy.ParseTokenPolicy(tok.Policy["token_policy"])
	}
	if err := checkTokenPolicyOf(tp, tpErr, req.MCP, action); err != nil {
		inv.decision = policy.Decision{Effect: policy.Deny, RuleID: tokenPolicyRule, Reason: err.Error()}
		return nil, err
	}

	// A token revoked while this call runs cancels it.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer s.inflight.addToken(ref, cancel)()

	// 3. No secrets in arguments.
	if p := findSecretArg(args, ""); p != "" {
		return nil, errorf(KindSecretArgument, "argument %q looks like a secret; credentials belong in the gateway's server config, not in tool arguments", p)
	}

	// 4. The policy, for this user and agent.
	ab := s.active.Load()
	if ab != nil {
		rec.BundleRevision = ab.b.Manifest.Revision
	}
	d := s.decide(ctx, ab, &policy.Request{User: user, Groups: c.groupsFor(user), Agent: trec.Agent, Server: req.MCP, Tool: action, Args: args, Time: inv.start})
	inv.decision = d
	if req.EnforceOnly {
		rec.Decision, rec.Outcome = decisionOf(d.Effect), "enforce_only"
		return enforceAnswer(d), nil
	}
	switch d.Effect {
	case policy.Deny:
		return nil, &Error{Kind: KindPolicyBlocked, Message: d.Reason, Enforcement: &Enforcement{
			Action: "block", Reason: d.Reason, Metadata: map[string]any{"rule": d.RuleID, "server": req.MCP, "tool": action, "request_id": rec.RequestID},
		}}
	case policy.Hold:
		// Held: runs only under an approval of exactly this call (held.go).
		root, _ := tok.Policy["merkle_root"].(string)
		if err := s.hold(ctx, inv, d, heldCall{tokenID: ref, planHash: tok.PlanHash, merkleRoot: root, step: int64(step),
			server: req.MCP, tool: action, args: args, user: user, approvalID: approvalID}); err != nil {
			return nil, err
		}
	}

	// 5. No audit, no action: the request record is durable before the
	// upstream sees the call.
	if err := s.commitRequest(ctx, inv); err != nil {
		return nil, err
	}

	// 6. Forward.
	rec.Decision = store.Allowed
	srv := ab.servers[req.MCP]
	cctx, ccancel := context.WithTimeout(ctx, s.callTimeout())
	defer ccancel()
	res, err := s.cfg.Upstream.CallTool(cctx, srv, action, args)
	if err != nil {
		rec.Decision = store.Failed
		switch {
		case context.Cause(ctx) == errRevokedInFlight:
			return nil, errorf(KindRevoked, "the API key or intent token was revoked while the call was in flight")
		case errors.Is(cctx.Err(), context.DeadlineExceeded):
			return nil, errorf(KindUpstreamTimeout, "MCP server %q did not answer within %s", req.MCP, s.callTimeout())
		}
		var e *Error
		if errors.As(err, &e) {
			return nil, e
		}
		return nil, &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q failed", req.MCP), Err: err}
	}
	if context.Cause(ctx) == errRevokedInFlight {
		rec.Decision = store.Failed
		return nil, errorf(KindRevoked, "the API key or intent token was revoked while the call was in flight")
	}
	if isToolError(res) {
		rec.Outcome = "tool returned an error result"
	}
	// An upstream asking for input (an input_required result, SEP-2322):
	// the SDKs can neither answer it nor be asked, and would read it as an
	// empty success. The call fails saying so, as a legacy MCP client that
	// cannot be asked is answered (mcp_input.go).
	ir, err := parseInputRequired(res)
	switch {
	case err != nil:
		rec.Decision = store.Failed
		return nil, &Error{Kind: KindUpstream, Message: fmt.Sprintf("MCP server %q answered input_required, malformed: %v", req.MCP, err)}
	case ir != nil:
		rec.Decision = store.Failed
		return nil, errorf(KindInputRequired, "MCP server %q needs input to run %s (%s), which POST /invoke cannot relay: call the tool through /mcp with a client that answers elicitation or sampling", req.MCP, action, ir.methodsOf())
	}
	return invokeResult{id: rec.RequestID, res: res}, nil
}

// bindStep finds the plan step this call is, or explains why it is none.
// The SDK names a step by X-CSRG-Path and proves it with X-CSRG-Proof; the
// gateway also checks the parameters, which the hosted service does not.
func (s *Server) bindStep(r *http.Request, req *invokeRequest, sp *signedPlan, action string, args map[string]any) (int, error) {
	if d := r.Header.Get(headerValueDigest); d != "" && !intent.MatchValueDigest(action, d) {
		return -1, errorf(KindIntentMismatch, "X-CSRG-Value-Digest does not match action %q", action)
	}
	plan, leaves, tree := sp.plan, sp.leaves, sp.tree
	leaf := intent.StepLeaf(intent.Step{Action: action, MCP: req.MCP, Params: args})
	first, n := -1, 0
	for i, l := range leaves {
		if l == leaf {
			if n++; first < 0 {
				first = i
			}
		}
	}
	// A proof that verifies against the plan's own tree (its leaf count
	// pinned) leads from the leaf at its leaf_index, so it can only name a
	// step equal to this call: with one such step that is the step, with
	// none there is none, and the proof is not even read. Only a step
	// planned twice alike needs it, to tell which of the two is called.
	if n == 1 {
		return first, nil
	}
	if n > 1 {
		if raw := proofBytes(r, req); raw != nil {
			if p, err := intent.ParseProof(raw); err == nil && tree.VerifyProof(leaf, p) == nil {
				return p.LeafIndex, nil
			}
		}
		// Without a proof that verifies: the first of them.
		return first, nil
	}
	for i, st := range plan.Steps {
		if st.Action == action && st.MCP == req.MCP {
			return -1, errorf(KindIntentMismatch, "the parameters of %s/%s differ from those planned in step %d: the plan binds parameters, not only the action", req.MCP, action, i)
		}
	}
	for i, st := range plan.Steps {
		if st.Action == action {
			return -1, errorf(KindIntentMismatch, "%s is planned for server %q in step %d, not %q", action, st.MCP, i, req.MCP)
		}
	}
	return -1, errorf(KindIntentMismatch, "action %s/%s is not a step of the signed plan", req.MCP, action)
}

func proofBytes(r *http.Request, req *invokeRequest) []byte {
	if h := r.Header.Get(headerProof); h != "" {
		return []byte(h)
	}
	return firstJSON(req.MerkleProof)
}

func (s *Server) tokenKeys() []ed25519.PublicKey {
	m := s.verifyKeys()
	out := make([]ed25519.PublicKey, 0, len(m))
	for _, k := range m {
		out = append(out, k)
	}
	return out
}

func decisionOf(e policy.Effect) store.Decision {
	switch e {
	case policy.Allow:
		return store.Allowed
	case policy.Hold:
		return store.Held
	default:
		return store.Blocked
	}
}

// enforceAnswer is the enforce_only answer.
func enforceAnswer(d policy.Decision) map[string]any {
	action := map[policy.Effect]string{policy.Allow: "allow", policy.Hold: "hold"}[d.Effect]
	if action == "" {
		action = "block"
	}
	return map[string]any{"allowed": d.Effect == policy.Allow, "action": action, "reason": d.Reason, "matched_policy": d.RuleID}
}

func isToolError(res json.RawMessage) bool {
	if !mayNameIsError(res) {
		return false // no key of res can be isError: spare decoding it
	}
	var v struct {
		IsError bool `json:"isError"`
	}
	_ = json.Unmarshal(res, &v)
	return v.IsError
}

// mayNameIsError reports whether some key of the JSON text b could be
// "isError" as encoding/json matches a field name: unescaped, in any case,
// with U+017F (long s) for s, the only rune beyond ASCII that folds to one
// of its letters. A key with an escape is taken to match.
func mayNameIsError(b []byte) bool {
	if bytes.IndexByte(b, '\\') >= 0 || bytes.Contains(b, []byte("\u017f")) {
		return true
	}
	const name = "iserror"
	for i := bytes.IndexAny(b, "iI"); i >= 0 && i+len(name) <= len(b); {
		if bytes.EqualFold(b[i:i+len(name)], []byte(name)) {
			return true
		}
		j := bytes.IndexAny(b[i+1:], "iI")
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

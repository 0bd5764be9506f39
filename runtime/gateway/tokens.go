package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/armoriq/controlplane/runtime/identity"
	"github.com/armoriq/controlplane/runtime/intent"
	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/runtime/store"
)

// tokenRequest is the SDK's POST /iap/sdk/token body.
type tokenRequest struct {
	UserID    string          `json:"user_id"`
	AgentID   string          `json:"agent_id"`
	ContextID string          `json:"context_id"`
	Plan      json.RawMessage `json:"plan"`
	Policy    json.RawMessage `json:"policy"`
	ExpiresIn *json.Number    `json:"expires_in"`
	UserEmail string          `json:"user_email"`
}

// policyValidation is the SDK's view of the issue-time policy check.
type policyValidation struct {
	AllowedTools             []string `json:"allowed_tools"`
	DeniedTools              []string `json:"denied_tools"`
	DeniedReasons            []string `json:"denied_reasons"`
	HeldTools                []string `json:"held_tools,omitempty"`
	DefaultEnforcementAction string   `json:"default_enforcement_action"`
	BundleRevision           string   `json:"bundle_revision,omitempty"`
}

// tokenResponse is what the SDKs read back (armoriq-compat: token issuance).
type tokenResponse struct {
	Success           bool             `json:"success"`
	PlanID            string           `json:"plan_id"`
	IntentReference   string           `json:"intent_reference"`
	PlanHash          string           `json:"plan_hash"`
	MerkleRoot        string           `json:"merkle_root"`
	CompositeIdentity string           `json:"composite_identity"`
	StepProofs        []intent.Proof   `json:"step_proofs"`
	JWTToken          string           `json:"jwt_token"`
	Token             *intent.Token    `json:"token"`
	PolicyValidation  policyValidation `json:"policy_validation"`
	IssuedAt          float64          `json:"issued_at"`
	ExpiresAt         float64          `json:"expires_at"`
	ExpiresIn         float64          `json:"expires_in"`
}

// endUser is the identity policies are decided for: the email when the SDK
// sends one, else its user id.
func endUser(email, userID string) string {
	if email != "" {
		return email
	}
	return userID
}

func (s *Server) handleSDKToken(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c := callerFrom(ctx)
	var req tokenRequest
	if err := unmarshalBody(r, &req); err != nil { // no interface values: decoded in place
		return err
	}
	// The edge: identities are usable before anything is decided or
	// recorded from them.
	userID, err := identity.User("user_id", req.UserID)
	if err != nil {
		return errorf(KindInvalid, "%v", err)
	}
	email, err := identity.User("user_email", req.UserEmail)
	if err != nil {
		return errorf(KindInvalid, "%v", err)
	}
	if p := c.Principal; p != nil && p.User != "" {
		// A token asked for with a user's access token is that user's:
		// bound to them as user_email binds it.
		if email != "" && email != p.User {
			return errorf(KindForbidden, "user_email %q is not the user of the access token (%q): a token asked for with a user's access token is that user's", email, p.User)
		}
		email = p.User
		if userID == "" {
			userID = p.User
		}
	}
	if userID == "" && email == "" {
		return errorf(KindInvalid, "user_id is required")
	}
	agentID := strings.TrimSpace(req.AgentID)
	if err := identity.Check("agent_id", agentID, identity.MaxAgent); err != nil {
		return errorf(KindInvalid, "%v", err)
	}
	if agentID == "" {
		return errorf(KindInvalid, "agent_id is required")
	}
	if c.AgentPinned && agentID != c.Agent {
		return errorf(KindForbidden, "agent_id %q is not the agent of API key %s (%q): an agent key acts only as its own agent", agentID, c.KeyID, c.Agent)
	}
	if len(req.Plan) == 0 || string(req.Plan) == "null" {
		return errorf(KindInvalid, "plan is required: {\"goal\", \"steps\": [{\"action\", \"mcp\", \"params\"}]}")
	}
	plan, err := intent.ParsePlan(req.Plan)
	if err != nil {
		return errorf(KindInvalid, "%v", err)
	}
	for i, st := range plan.Steps {
		if p := findSecretArg(intent.StripInjected(st.Params), ""); p != "" {
			return errorf(KindSecretArgument, "steps[%d].params.%s looks like a secret; credentials belong in the gateway's server config, not in a plan", i, p)
		}
	}
	tp, err := parseTokenPolicy(req.Policy)
	if err != nil {
		return err
	}
	user := endUser(email, userID)
	now := s.now()
	ttl, err := s.tokenTTL(req.ExpiresIn)
	if err != nil {
		return err
	}

	// Issue-time policy check: every step, for this user and agent.
	ab := s.active.Load()
	pv := policyValidation{AllowedTools: []string{}, DeniedTools: []string{}, DeniedReasons: []string{}, DefaultEnforcementAction: "block"}
	if ab != nil {
		pv.BundleRevision = ab.b.Manifest.Revision
	}
	// The first denied step and its decision go into the audit record.
	var firstDenial policy.Decision
	var firstDenied intent.Step
	for _, st := range plan.Steps {
		if err := checkName("steps.mcp", st.MCP); err != nil {
			return err
		}
		if err := checkName("steps.action", st.Action); err != nil {
			return err
		}
		// An unbound token's calls name their own end users: the step is
		// refused here only if no user could be allowed it.
		d := s.decide(ctx, ab, &policy.Request{User: user, Groups: c.groupsFor(user), AnyUser: email == "", Agent: c.Agent, Server: st.MCP, Tool: st.Action, Args: st.Params, Time: now})
		// The token's own policy narrows the bundle's, never widens it.
		if d.Effect != policy.Deny {
			if ok, reason := tp.Allows(st.MCP, st.Action); !ok {
				d = policy.Decision{Effect: policy.Deny, RuleID: tokenPolicyRule, Reason: reason}
			}
		}
		if d.Effect == policy.Deny && len(pv.DeniedTools) == 0 {
			firstDenial, firstDenied = d, st
		}
		switch d.Effect {
		case policy.Allow:
			pv.AllowedTools = appendUnique(pv.AllowedTools, st.Action)
		case policy.Hold:
			pv.AllowedTools = appendUnique(pv.AllowedTools, st.Action)
			pv.HeldTools = appendUnique(pv.HeldTools, st.Action)
		default:
			if !contains(pv.DeniedTools, st.Action) {
				pv.DeniedTools = append(pv.DeniedTools, st.Action)
				pv.DeniedReasons = append(pv.DeniedReasons, st.MCP+"/"+st.Action+": "+d.Reason)
			}
		}
	}
	planHash := intent.PlanHash(plan)
	if len(pv.DeniedTools) > 0 {
		first := firstDenied
		rec := store.AuditRecord{
			Time: now.UTC(), RequestID: requestID(r), APIKeyID: c.KeyID, Service: c.Name, User: user, Agent: c.Agent, Client: agentID,
			Server: first.MCP, Tool: first.Action, Arguments: auditArgs(first.Params), Decision: store.Blocked, Rule: firstDenial.RuleID,
			BundleRevision: pv.BundleRevision, PlanHash: planHash, Outcome: "token refused: " + strings.Join(pv.DeniedReasons, "; "),
		}
		c.stamp(&rec)
		rec.UserSource = userSource(email, c)
		err := s.audit(ctx, rec)
		if err != nil {
			return err
		}
		msg := "plan denied by policy: " + strings.Join(pv.DeniedReasons, "; ")
		writeJSON(w, http.StatusForbidden, map[string]any{
			"success": false, "message": msg, "error": errorDetail{Code: "policy_blocked", Message: msg},
			"policy_validation": pv,
			"enforcement":       Enforcement{Action: "block", Reason: msg, Metadata: map[string]any{"denied_tools": pv.DeniedTools}},
		})
		return nil
	}

	tree := intent.NewTree(intent.PlanLeaves(plan))
	root := tree.Root()
	tokenID := "it_" + randomHex(16)
	planID := "plan_" + planHash[:24]
	composite := agentID + "|" + user
	issued := roundMillis(now)
	expires := roundMillis(now.Add(ttl))
	sk := s.signingKey()
	tok := &intent.Token{
		PlanHash:  planHash,
		IssuedAt:  unixFloat(issued),
		ExpiresAt: unixFloat(expires),
		Policy: map[string]any{
			"allowed_tools":   toAny(pv.AllowedTools),
			"merkle_root":     intent.RootHex(root),
			"intent_ref":      tokenID,
			"bundle_revision": pv.BundleRevision,
			"token_policy":    tp.Signed(),
		},
		Identity: composite,
	}
	if email != "" {
		// Bound: the token acts for this user only (docs/gateway.md).
		tok.Policy[tokenUserEmail] = email
	}
	if err := intent.SignToken(tok, sk.PrivateKey); err != nil {
		return internal(err, "signing the token")
	}
	jwt, err := intent.SignJWT(intent.Claims{
		Issuer: "armoriq-gateway", Subject: user, Agent: c.Agent, PlanHash: planHash,
		MerkleRoot: intent.RootHex(root), IssuedAt: issued.Unix(), ExpiresAt: expires.Unix(), ID: tokenID,
	}, sk.ID, sk.PrivateKey)
	if err != nil {
		return internal(err, "signing the JWT")
	}
	err = s.store.PutToken(ctx, store.Token{
		ID: tokenID, PlanID: planID, PlanHash: planHash, MerkleRoot: intent.RootHex(root), APIKeyID: c.KeyID,
		User: user, Agent: c.Agent, IssuedAt: issued, ExpiresAt: expires,
	})
	if err != nil {
		return internal(err, "recording the token")
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		Success: true, PlanID: planID, IntentReference: tokenID, PlanHash: planHash, MerkleRoot: intent.RootHex(root),
		CompositeIdentity: composite, StepProofs: tree.Proofs(), JWTToken: jwt, Token: tok, PolicyValidation: pv,
		IssuedAt: tok.IssuedAt, ExpiresAt: tok.ExpiresAt, ExpiresIn: ttl.Seconds(),
	})
	return nil
}

// tokenPolicyRule is the rule a refusal by a token's own policy is
// recorded under, in audit records and enforcement metadata.
const tokenPolicyRule = "token policy"

// parseTokenPolicy reads the policy of a token request (absent or null:
// allow everything the bundle allows).
func parseTokenPolicy(raw json.RawMessage) (*policy.TokenPolicy, error) {
	var v any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, errorf(KindInvalid, "policy: %v", err)
		}
	}
	tp, err := policy.ParseTokenPolicy(v)
	if err != nil {
		return nil, errorf(KindInvalid, "%v", err)
	}
	return tp, nil
}

// checkTokenPolicy checks a call against the policy signed into its token
// (tok.Policy["token_policy"], written at issue): deny, then allow, then
// allowed_tools. Every planned step passed it at issue; this holds the
// line for the calls themselves. A token issued without one allows what
// the bundle allows. tok must have been verified.
func (s *Server) checkTokenPolicy(tok *intent.Token, server, tool string) error {
	tp, err := policy.ParseTokenPolicy(tok.Policy["token_policy"])
	return checkTokenPolicyOf(tp, err, server, tool)
}

// checkTokenPolicyOf is checkTokenPolicy with the token's policy parsed:
// tp, or the error that parsing it gave.
func checkTokenPolicyOf(tp *policy.TokenPolicy, err error, server, tool string) error {
	if err != nil {
		// We signed it, so it parsed at issue; refuse rather than guess.
		reason := "the token's policy cannot be read: " + err.Error()
		return &Error{Kind: KindPolicyBlocked, Message: reason, Enforcement: &Enforcement{
			Action: "block", Reason: reason, Metadata: map[string]any{"rule": tokenPolicyRule, "server": server, "tool": tool},
		}}
	}
	if ok, reason := tp.Allows(server, tool); !ok {
		return &Error{Kind: KindPolicyBlocked, Message: reason, Enforcement: &Enforcement{
			Action: "block", Reason: reason, Metadata: map[string]any{"rule": tokenPolicyRule, "server": server, "tool": tool},
		}}
	}
	return nil
}

// tokenTTL picks a token's validity: the request's expires_in, else the
// bundle's intent.ttl_seconds, else the default; never above the maximum.
func (s *Server) tokenTTL(expiresIn *json.Number) (time.Duration, error) {
	ttl := s.cfg.DefaultTokenTTL
	if ab := s.active.Load(); ab != nil && ab.b.Policy.DefaultTTLSeconds > 0 {
		ttl = time.Duration(ab.b.Policy.DefaultTTLSeconds) * time.Second
	}
	if expiresIn != nil {
		f, err := expiresIn.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
			return 0, errorf(KindInvalid, "expires_in must be a positive number of seconds, got %s", expiresIn.String())
		}
		ttl = time.Duration(f * float64(time.Second))
	}
	if ttl > s.live.Load().MaxTokenTTL {
		ttl = s.live.Load().MaxTokenTTL
	}
	return ttl, nil
}

// decide runs the active policy; with no bundle everything is denied.
func (s *Server) decide(ctx context.Context, ab *activeBundle, req *policy.Request) policy.Decision {
	if ab == nil {
		return policy.Decision{Effect: policy.Deny, Reason: "no policy bundle is active on this gateway"}
	}
	if _, ok := ab.servers[req.Server]; !ok {
		return policy.Decision{Effect: policy.Deny, Reason: "server " + quote(req.Server) + " is not in the active bundle " + ab.b.Manifest.Revision}
	}
	_, span := s.tracing.Tracer.Start(ctx, "armoriq.policy.decide")
	start := time.Now()
	d := ab.engine.Decide(req)
	s.metrics.PolicyDecision(time.Since(start))
	if span.IsRecording() {
		span.SetAttributes(attrPolicyEffect.String(string(d.Effect)), attrRule.String(d.RuleID), attrBundleRevision.String(ab.b.Manifest.Revision))
	}
	span.End()
	return d
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

func roundMillis(t time.Time) time.Time { return t.Round(time.Millisecond) }

func unixFloat(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func floatTime(f float64) time.Time {
	return time.UnixMilli(int64(math.Round(f * 1000)))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func appendUnique(list []string, s string) []string {
	if contains(list, s) {
		return list
	}
	return append(list, s)
}

func toAny(list []string) []any {
	out := make([]any, len(list))
	for i, s := range list {
		out[i] = s
	}
	return out
}

// tokenError maps a token verification failure to what the SDKs expect.
func tokenError(err error) *Error {
	switch {
	case errors.Is(err, intent.ErrExpired):
		return &Error{Kind: KindExpired, Message: "intent token expired; request a new one"}
	case errors.Is(err, intent.ErrUnknownKey):
		return &Error{Kind: KindUnauthenticated, Message: "intent token was not signed by this gateway"}
	case errors.Is(err, intent.ErrBadSignature):
		return &Error{Kind: KindUnauthenticated, Message: "intent token signature does not verify: the token was altered"}
	default:
		return &Error{Kind: KindUnauthenticated, Message: "invalid intent token: " + err.Error()}
	}
}

// handleRevokeToken revokes an intent token: calls in flight under it are
// cancelled and later ones refused with 401 and X-Armoriq-Revoked.
func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	at, err := s.store.RevokeToken(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(KindNotFound, "no intent token with id %q", id)
	}
	if err != nil {
		return internal(err, "revoking the token")
	}
	s.tokens.forget(id)
	s.inflight.revokeToken(id)
	s.log.Info("intent token revoked", "id", id, "by", callerFrom(r.Context()).KeyID)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "revoked_at": at.UTC()})
	return nil
}

// userSource is where the end user of a token request came from.
func userSource(email string, c caller) string {
	switch {
	case c.Principal != nil && c.Principal.User != "":
		return sourceAccessToken
	case email != "":
		return "user_email"
	}
	return "user_id"
}

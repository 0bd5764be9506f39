package client

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/armoriq/controlplane/runtime/intent"
)

// DefaultValidity is the SDKs' default token validity.
const DefaultValidity = 60 * time.Second

// PlanCapture is a checked plan, ready for GetIntentToken.
type PlanCapture struct {
	Plan *intent.Plan
	// Hash is the plan hash the gateway must sign (docs/intent.md).
	Hash string
}

// CapturePlan checks a plan locally, like the SDKs' capture_plan, with the
// gateway's own rules: at least one step, each with an action and an mcp,
// params that have a canonical JSON form. Its errors are *Error of
// KindConfiguration. Params are sent as canonical JSON: a Go float64 60 is
// the float 60.0, an int 60 the integer 60, and the call must use the same.
func (c *Client) CapturePlan(goal string, steps []intent.Step) (*PlanCapture, error) {
	built := (&intent.Plan{Goal: goal, Steps: steps}).Object()
	// Through canonical bytes, so the plan holds the values the gateway
	// will see (json.Number, map[string]any) whatever Go types came in.
	data, err := intent.Canonical(built)
	if err != nil {
		return nil, newError(KindConfiguration, 0, "plan: %v", err)
	}
	p, err := intent.ParsePlan(data)
	if err != nil {
		return nil, newError(KindConfiguration, 0, "%v", err)
	}
	return &PlanCapture{Plan: p, Hash: intent.PlanHash(p)}, nil
}

// PolicyValidation is the gateway's check of the plan's tools at issue time.
type PolicyValidation struct {
	AllowedTools             []string `json:"allowed_tools"`
	DeniedTools              []string `json:"denied_tools"`
	DeniedReasons            []string `json:"denied_reasons"`
	DefaultEnforcementAction string   `json:"default_enforcement_action"`
}

// IntentToken is a token answer, kept as the SDKs keep it so Invoke can echo
// it back unchanged.
type IntentToken struct {
	TokenID           string // intent_reference
	PlanID            string
	PlanHash          string
	MerkleRoot        string
	CompositeIdentity string
	JWT               string // jwt_token
	Plan              *intent.Plan
	// Token is the signed token object; RawToken the same bytes as received.
	Token    intent.Token
	RawToken json.RawMessage
	// StepProofs are step_proofs, one per step, as received.
	StepProofs       []json.RawMessage
	PolicyValidation *PolicyValidation
	Policy           map[string]any
	// IssuedAt and ExpiresAt are on the client's clock, as in the SDKs:
	// receipt time plus the requested validity.
	IssuedAt, ExpiresAt time.Time
}

// Expired reports whether the token's validity has run out at now.
func (t *IntentToken) Expired(now time.Time) bool { return !now.Before(t.ExpiresAt) }

// Option tunes one GetIntentToken, Invoke or Enforce call; each ignores the
// options that are not its own.
type Option func(*callConfig)

// TokenOption is an Option of GetIntentToken: Validity, Policy, UserEmail.
type TokenOption = Option

// InvokeOption is an Option of Invoke and Enforce: UserEmail, MerkleProof.
type InvokeOption = Option

type callConfig struct {
	validity    time.Duration
	policy      map[string]any
	userEmail   string
	merkleProof json.RawMessage
	enforceOnly bool
}

// Validity sets how long the token is valid (default 60 s).
func Validity(d time.Duration) Option { return func(c *callConfig) { c.validity = d } }

// Policy sends a policy with the token request (default null).
func Policy(p map[string]any) Option { return func(c *callConfig) { c.policy = p } }

// UserEmail names the end user the call is made for.
func UserEmail(email string) Option { return func(c *callConfig) { c.userEmail = email } }

// MerkleProof sends this proof instead of the token's step proof.
func MerkleProof(p json.RawMessage) Option { return func(c *callConfig) { c.merkleProof = p } }

// tokenAnswer is the body of a token answer.
type tokenAnswer struct {
	Success           bool              `json:"success"`
	Message           string            `json:"message"`
	PlanID            string            `json:"plan_id"`
	IntentReference   string            `json:"intent_reference"`
	PlanHash          string            `json:"plan_hash"`
	MerkleRoot        string            `json:"merkle_root"`
	CompositeIdentity string            `json:"composite_identity"`
	StepProofs        []json.RawMessage `json:"step_proofs"`
	JWT               string            `json:"jwt_token"`
	Token             json.RawMessage   `json:"token"`
	PolicyValidation  *PolicyValidation `json:"policy_validation"`
}

// GetIntentToken asks the gateway (POST {backend}/iap/sdk/token) to sign the
// plan. A refusal by policy (403, or denied tools) is KindPolicyBlocked; any
// other refusal, and an answer that does not sign this very plan (other plan
// hash, step proofs that do not verify against its merkle_root), is
// KindInvalidToken; a revoked key is KindRevoked.
func (c *Client) GetIntentToken(ctx context.Context, plan *PlanCapture, opts ...TokenOption) (*IntentToken, error) {
	cfg := callConfig{validity: DefaultValidity}
	for _, o := range opts {
		o(&cfg)
	}
	if plan == nil || plan.Plan == nil {
		return nil, newError(KindConfiguration, 0, "no plan: call CapturePlan first")
	}
	if cfg.validity <= 0 {
		return nil, newError(KindConfiguration, 0, "token validity %s is not positive", cfg.validity)
	}
	body := map[string]any{
		"user_id":    c.userID,
		"agent_id":   c.agentID,
		"context_id": c.contextID,
		"plan":       plan.Plan.Object(),
		"policy":     cfg.policy,
		"expires_in": cfg.validity.Seconds(),
	}
	if cfg.userEmail != "" {
		body["user_email"] = cfg.userEmail
	}
	ans, err := c.postJSON(ctx, c.backend+"/iap/sdk/token", body, nil)
	if err != nil {
		return nil, newError(KindInvalidToken, 0, "failed to get intent token: %v", err)
	}
	sent := c.now()
	var ta tokenAnswer
	decodeErr := json.Unmarshal(ans.body, &ta)
	denied := ta.PolicyValidation != nil && len(ta.PolicyValidation.DeniedTools) > 0
	switch {
	case ans.status == http.StatusForbidden || denied:
		reason := ""
		if ta.PolicyValidation != nil && len(ta.PolicyValidation.DeniedReasons) > 0 {
			reason = strings.Join(ta.PolicyValidation.DeniedReasons, "; ")
		}
		if reason == "" {
			reason = ta.Message
		}
		if reason == "" {
			reason = "blocked by policy"
		}
		if ans.status == http.StatusForbidden && ans.revoked() {
			return nil, newError(KindRevoked, ans.status, "token issuance failed: %s", ans.message())
		}
		e := newError(KindPolicyBlocked, ans.status, "policy blocked intent token issuance")
		e.Reason = reason
		if m := ans.object(); m != nil {
			e.Metadata, _ = m["policy_validation"].(map[string]any)
		}
		return nil, e
	case ans.status >= 400:
		kind := KindInvalidToken
		if ans.revoked() {
			kind = KindRevoked
		}
		return nil, newError(kind, ans.status, "token issuance failed: %s", ans.message())
	case decodeErr != nil:
		return nil, newError(KindInvalidToken, ans.status, "token issuance failed: answer is not a token answer: %v", decodeErr)
	case !ta.Success:
		return nil, newError(KindInvalidToken, ans.status, "token issuance failed: %s", first(ta.Message, "unknown error"))
	}
	tok, err := c.checkTokenAnswer(plan, &ta)
	if err != nil {
		return nil, err
	}
	tok.Policy = cfg.policy
	tok.IssuedAt = sent
	tok.ExpiresAt = sent.Add(cfg.validity)
	return tok, nil
}

// checkTokenAnswer makes sure the answer signs the plan we sent: same plan
// hash, and a step proof per step that leads from that step's leaf to the
// merkle_root.
func (c *Client) checkTokenAnswer(plan *PlanCapture, ta *tokenAnswer) (*IntentToken, error) {
	bad := func(format string, args ...any) error {
		return newError(KindInvalidToken, http.StatusOK, "token issuance failed: "+format, args...)
	}
	if ta.PlanHash != plan.Hash {
		return nil, bad("gateway signed plan hash %q, the plan's is %s", ta.PlanHash, plan.Hash)
	}
	tok := &IntentToken{
		TokenID:           first(ta.IntentReference, "unknown"),
		PlanID:            ta.PlanID,
		PlanHash:          ta.PlanHash,
		MerkleRoot:        ta.MerkleRoot,
		CompositeIdentity: ta.CompositeIdentity,
		JWT:               ta.JWT,
		Plan:              plan.Plan,
		RawToken:          ta.Token,
		StepProofs:        ta.StepProofs,
		PolicyValidation:  ta.PolicyValidation,
	}
	if len(ta.Token) == 0 || string(ta.Token) == "null" {
		return nil, bad("answer has no token")
	}
	if err := json.Unmarshal(ta.Token, &tok.Token); err != nil {
		return nil, bad("token: %v", err)
	}
	if tok.Token.PlanHash != plan.Hash {
		return nil, bad("token signs plan hash %q, the plan's is %s", tok.Token.PlanHash, plan.Hash)
	}
	if len(ta.StepProofs) != len(plan.Plan.Steps) {
		return nil, bad("%d step proofs for %d steps", len(ta.StepProofs), len(plan.Plan.Steps))
	}
	root, err := decodeRoot(ta.MerkleRoot)
	if err != nil {
		return nil, bad("merkle_root: %v", err)
	}
	for i, raw := range ta.StepProofs {
		p, err := intent.ParseProof(raw)
		if err == nil && (p.LeafIndex != i || p.LeafCount != len(plan.Plan.Steps)) {
			err = fmt.Errorf("proof is for leaf %d of %d", p.LeafIndex, p.LeafCount)
		}
		if err == nil {
			err = intent.VerifyProof(root, intent.StepLeaf(plan.Plan.Steps[i]), p)
		}
		if err != nil {
			return nil, bad("step_proofs[%d]: %v", i, err)
		}
	}
	return tok, nil
}

func decodeRoot(s string) ([32]byte, error) {
	var r [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(r) {
		return r, fmt.Errorf("%q is not 64 hex digits", s)
	}
	copy(r[:], b)
	return r, nil
}

package intent

import (
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// IssueParams are the inputs of Issue besides the plan and the key.
type IssueParams struct {
	Identity string         // the token's identity (the gateway's composite identity)
	Policy   map[string]any // the token's policy; nil is signed as null
	Now      time.Time      // issued_at
	TTL      time.Duration  // expires_at = issued_at + TTL; must be positive
}

// Issued is everything a token answer carries that this package computes.
type Issued struct {
	Plan       *Plan
	PlanHash   string   // hex SHA-256 of the canonical plan
	MerkleRoot [32]byte // root of the tree over the steps' leaves
	StepProofs []Proof  // step_proofs, one per step, in step order
	Token      Token    // the signed token object
}

// Issue hashes the plan, builds the Merkle tree over its steps with a proof
// for each, and signs a token binding the plan hash for p.TTL.
func Issue(plan *Plan, p IssueParams, key ed25519.PrivateKey) (*Issued, error) {
	if len(plan.Steps) == 0 {
		return nil, &PlanError{Problems: []string{"steps must not be empty"}}
	}
	if p.TTL <= 0 {
		return nil, fmt.Errorf("token validity %s is not positive", p.TTL)
	}
	hash, err := HashPlan(plan)
	if err != nil {
		return nil, err
	}
	leaves := make([][32]byte, len(plan.Steps))
	for i, s := range plan.Steps {
		in, err := StepLeafInput(s)
		if err != nil {
			return nil, fmt.Errorf("steps[%d]: %w", i, err)
		}
		leaves[i] = HashLeaf(in)
	}
	tree := NewTree(leaves)
	// Microsecond precision, like Python's time.time(), keeps the printed
	// float short.
	iat := math.Round(unixSeconds(p.Now)*1e6) / 1e6
	out := &Issued{
		Plan:       plan,
		PlanHash:   hash,
		MerkleRoot: tree.Root(),
		StepProofs: tree.Proofs(),
		Token: Token{
			PlanHash:  hash,
			IssuedAt:  iat,
			ExpiresAt: iat + p.TTL.Seconds(),
			Policy:    p.Policy,
			Identity:  p.Identity,
		},
	}
	if err := SignToken(&out.Token, key); err != nil {
		return nil, err
	}
	return out, nil
}

// Errors of VerifyCall besides the token errors.
var (
	// ErrPlanMismatch: the plan sent with the call is missing, invalid, or
	// not the plan the token signed. The SDKs call this an invalid token.
	ErrPlanMismatch = errors.New("plan does not match the token")
	// ErrStepMismatch: the call (action, mcp, params) is not a step of the
	// signed plan, or its CSRG path, digest or proof disagree with it. The
	// SDKs call this an intent mismatch (HTTP 409).
	ErrStepMismatch = errors.New("call is not a step of the plan")
)

// Call is what an invoke request says about itself.
type Call struct {
	Plan   json.RawMessage // body.plan (or body.intent_token.plan)
	Token  *Token          // body.token (or csrg_token, intent_token.token)
	MCP    string          // body.mcp
	Action string          // body.action (or tool)
	Params map[string]any  // body.params (or arguments), decoded with UseNumber; injected keys are stripped here

	Path        string // X-CSRG-Path
	ValueDigest string // X-CSRG-Value-Digest
	Proof       []byte // X-CSRG-Proof (or body.merkle_proof)

	// RequireCSRG refuses a call without path, digest and proof; without it
	// they are checked only when sent.
	RequireCSRG bool
}

// Verified is what VerifyCall established.
type Verified struct {
	Plan       *Plan
	PlanHash   string
	MerkleRoot [32]byte
	Step       int            // the plan step this call is
	Params     map[string]any // the call's params without injected keys, to forward
}

// VerifyCall runs the intent checks of an invoke, in this order:
//
//  1. the token verifies against trusted at now (VerifyToken's errors);
//  2. the plan parses and its hash equals the token's plan_hash (ErrPlanMismatch);
//  3. when sent (always, with RequireCSRG): X-CSRG-Path names a step whose
//     action is the call's action, the value digest is that action's, and the
//     proof is that step's proof under the root recomputed from the plan
//     (ErrStepMismatch, also matching ErrBadProof for a bad proof);
//  4. some step has exactly the call's action, mcp and params (injected keys
//     stripped), the step the path named first (ErrStepMismatch).
//
// API keys, policy and secret-looking arguments are the caller's to check.
func VerifyCall(c Call, trusted []ed25519.PublicKey, now time.Time) (*Verified, error) {
	if err := VerifyToken(c.Token, trusted, now); err != nil {
		return nil, err
	}
	if len(c.Plan) == 0 {
		return nil, fmt.Errorf("%w: the call carries no plan", ErrPlanMismatch)
	}
	plan, err := ParsePlan(c.Plan)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPlanMismatch, err)
	}
	hash, err := HashPlan(plan)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPlanMismatch, err)
	}
	if subtle.ConstantTimeCompare([]byte(hash), []byte(c.Token.PlanHash)) != 1 {
		return nil, fmt.Errorf("%w: plan hash %s, token signed %s", ErrPlanMismatch, truncate(hash, 16), truncate(c.Token.PlanHash, 16))
	}
	leaves := PlanLeaves(plan)
	tree := NewTree(leaves)
	root := tree.Root()

	named := -1
	if c.RequireCSRG || c.Path != "" || c.ValueDigest != "" || len(c.Proof) > 0 {
		i, err := checkCSRG(c, plan, leaves, tree)
		if err != nil {
			return nil, err
		}
		named = i
	}

	params := StripInjected(c.Params)
	leaf := StepLeaf(Step{Action: c.Action, MCP: c.MCP, Params: params})
	step := -1
	if named >= 0 && leaves[named] == leaf {
		step = named
	} else {
		for k, l := range leaves {
			if l == leaf {
				step = k
				break
			}
		}
	}
	if step < 0 {
		return nil, describeMismatch(plan, c)
	}
	return &Verified{Plan: plan, PlanHash: hash, MerkleRoot: root, Step: step, Params: params}, nil
}

func checkCSRG(c Call, plan *Plan, leaves [][32]byte, tree *Tree) (int, error) {
	if c.Path == "" || c.ValueDigest == "" || len(c.Proof) == 0 {
		return 0, fmt.Errorf("%w: X-CSRG-Path, X-CSRG-Value-Digest and X-CSRG-Proof are required", ErrStepMismatch)
	}
	i, err := ParseStepPath(c.Path)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrStepMismatch, err)
	}
	if i >= len(plan.Steps) {
		return 0, fmt.Errorf("%w: csrg path names step %d of %d", ErrStepMismatch, i, len(plan.Steps))
	}
	if plan.Steps[i].Action != c.Action {
		return 0, fmt.Errorf("%w: step %d is %q, the call is %q", ErrStepMismatch, i, plan.Steps[i].Action, truncate(c.Action, 80))
	}
	if !MatchValueDigest(plan.Steps[i].Action, c.ValueDigest) {
		return 0, fmt.Errorf("%w: value digest is not the digest of step %d's action", ErrStepMismatch, i)
	}
	proof, err := ParseProof(c.Proof)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStepMismatch, err)
	}
	if proof.LeafIndex != i {
		return 0, fmt.Errorf("%w: %w: proof is for step %d, path names step %d", ErrStepMismatch, ErrBadProof, proof.LeafIndex, i)
	}
	if err := tree.VerifyProof(leaves[i], proof); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStepMismatch, err)
	}
	return i, nil
}

// describeMismatch says why no step matches the call.
func describeMismatch(plan *Plan, c Call) error {
	sameAction, sameServer := false, false
	for _, s := range plan.Steps {
		if s.Action == c.Action {
			sameAction = true
			if s.MCP == c.MCP {
				sameServer = true
			}
		}
	}
	switch {
	case !sameAction:
		return fmt.Errorf("%w: action %q is not in the plan", ErrStepMismatch, truncate(c.Action, 80))
	case !sameServer:
		return fmt.Errorf("%w: action %q is planned on another mcp than %q", ErrStepMismatch, truncate(c.Action, 80), truncate(c.MCP, 80))
	default:
		return fmt.Errorf("%w: params of %q differ from every planned call of it", ErrStepMismatch, truncate(c.Action, 80))
	}
}

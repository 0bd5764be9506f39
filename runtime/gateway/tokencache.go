package gateway

import (
	"sync"
	"time"

	"github.com/armoriq/controlplane/runtime/intent"
	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/runtime/store"
)

// tokenCache keeps issued-token records and the tokens whose signature
// already verified, so a call costs neither a database read nor an Ed25519
// verification per request, nor decoding the token and the plan again when
// the SDK sends the same bytes. Records only change by revocation, which
// every replica hears (watchRevocations evicts them); expiry is still
// checked on every call against the gateway's clock. What is kept for a
// token's bytes is a function of those bytes alone: which key presents
// them, for whom and for what call is checked on every call.
type tokenCache struct {
	mu       sync.Mutex
	records  map[string]store.Token      // by token id
	verified map[[32]byte]*verifiedToken // by the sha256 of the token's exact bytes
	limit    int                         // entries per map before expired ones are swept
}

// verifiedToken is a token whose signature verified, decoded once. It is
// never modified after it is cached (a new one replaces it): every call
// presenting the same bytes reads it, its Policy map included.
type verifiedToken struct {
	tok     *intent.Token
	expires time.Time
	// policy is the token's policy parsed (ParseTokenPolicy), or the
	// error parsing it gave, in policyErr.
	policy    *policy.TokenPolicy
	policyErr error
	// plan is the plan last sent with the token whose hash is the token's
	// plan hash, and planSum the sha256 of its exact bytes: a call sending
	// the same bytes is spared parsing and hashing them again.
	planSum [32]byte
	plan    *signedPlan
}

// signedPlan is a plan checked against its token's plan hash, with what
// binding a call to one of its steps needs (bindStep). Never modified.
type signedPlan struct {
	plan   *intent.Plan
	leaves [][32]byte
	tree   *intent.Tree
}

// newSignedPlan computes the step leaves and Merkle tree of plan.
func newSignedPlan(plan *intent.Plan) *signedPlan {
	leaves := intent.PlanLeaves(plan)
	return &signedPlan{plan: plan, leaves: leaves, tree: intent.NewTree(leaves)}
}

func (c *tokenCache) init() {
	c.records = make(map[string]store.Token)
	c.verified = make(map[[32]byte]*verifiedToken)
	c.limit = 100_000
}

func (c *tokenCache) record(id string) (store.Token, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.records[id]
	return t, ok
}

func (c *tokenCache) putRecord(t store.Token, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.records) >= c.limit {
		c.sweep(now)
	}
	c.records[t.ID] = t
}

// verifiedToken returns the token whose bytes, of sha256 sum, verified
// before, if it is still cached.
func (c *tokenCache) verifiedToken(sum [32]byte) (*verifiedToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.verified[sum]
	return v, ok
}

// markVerified caches tok, decoded from bytes of sha256 sum, whose
// signature verified, and returns its entry. tok must not be modified
// after.
func (c *tokenCache) markVerified(sum [32]byte, tok *intent.Token, expires, now time.Time) *verifiedToken {
	v := &verifiedToken{tok: tok, expires: expires}
	v.policy, v.policyErr = policy.ParseTokenPolicy(tok.Policy["token_policy"])
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.verified) >= c.limit {
		c.sweep(now)
	}
	c.verified[sum] = v
	return v
}

// setPlan notes p, of bytes of sha256 planSum, as the plan of the token
// cached under sum as v (if it still is).
func (c *tokenCache) setPlan(sum [32]byte, v *verifiedToken, planSum [32]byte, p *signedPlan) {
	nv := *v
	nv.planSum, nv.plan = planSum, p
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.verified[sum] == v {
		c.verified[sum] = &nv
	}
}

// sweep drops expired entries; if the cache is still full (a flood of
// unexpired tokens) it starts over rather than grow. Callers hold mu.
func (c *tokenCache) sweep(now time.Time) {
	for id, t := range c.records {
		if now.After(t.ExpiresAt) {
			delete(c.records, id)
		}
	}
	for k, v := range c.verified {
		if now.After(v.expires) {
			delete(c.verified, k)
		}
	}
	if len(c.records) >= c.limit {
		c.records = make(map[string]store.Token)
	}
	if len(c.verified) >= c.limit {
		c.verified = make(map[[32]byte]*verifiedToken)
	}
}

func (c *tokenCache) forget(id string) {
	c.mu.Lock()
	delete(c.records, id)
	c.mu.Unlock()
}

func (c *tokenCache) reset() {
	c.mu.Lock()
	c.records = make(map[string]store.Token)
	c.mu.Unlock()
}

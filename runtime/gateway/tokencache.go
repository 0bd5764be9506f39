package gateway

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/armoriq/controlplane/runtime/intent"
	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/runtime/store"
)

// tokenCache keeps issued-token records and the tokens whose signature
// already verified, so a call costs neither a database read nor an Ed25519
// verification per request, nor decoding the same token and plan again.
// Records only change by revocation, which every replica hears
// (watchRevocations evicts them); expiry is still checked on every call
// against the gateway's clock. What is kept for a token's or a plan's bytes
// is a function of those bytes alone: which key presents them, for whom and
// for what call is checked on every call.
type tokenCache struct {
	mu       sync.Mutex
	records  map[string]store.Token      // by token id
	verified map[[32]byte]*verifiedToken // by the sha256 of the token's exact bytes
	plans    map[[32]byte]*signedPlan    // by the sha256 of the plan's exact bytes
	limit    int                         // entries per map before expired ones are swept
}

// What the cache keeps decoded is bounded: a token or plan larger than
// these is decoded on every call, as before it was cached, and at most
// maxCachedPlans plans are kept (then the set starts over), so that
// tokens minted with large plans cannot fill the gateway's memory.
const (
	maxCachedTokenBytes = 8 << 10
	maxCachedPlanBytes  = 8 << 10
	maxCachedPlans      = 1024
)

// verifiedToken is a token whose signature verified. It is never modified
// after it is cached: every call presenting the same bytes reads it, its
// Policy map included.
type verifiedToken struct {
	expires time.Time
	// tok is the token decoded, and policy its token_policy parsed (or
	// policyErr the error parsing it gave); nil for a token larger than
	// maxCachedTokenBytes, which is decoded again on each call.
	tok       *intent.Token
	policy    *policy.TokenPolicy
	policyErr error
}

// signedPlan is a plan parsed, with its canonical hash and what binding a
// call to one of its steps needs (bindStep). Never modified.
type signedPlan struct {
	plan   *intent.Plan
	hash   string
	leaves [][32]byte
	tree   *intent.Tree
}

// parsePlan parses raw and computes its hash, step leaves and Merkle tree.
func parsePlan(raw []byte) (*signedPlan, error) {
	plan, err := intent.ParsePlan(raw)
	if err != nil {
		return nil, errorf(KindUnauthenticated, "the plan sent with the call is invalid: %v", err)
	}
	leaves := intent.PlanLeaves(plan)
	return &signedPlan{plan: plan, hash: intent.PlanHash(plan), leaves: leaves, tree: intent.NewTree(leaves)}, nil
}

// signedBy checks that p is the plan tok signed.
func (p *signedPlan) signedBy(tok *intent.Token) error {
	if p.hash != tok.PlanHash {
		return errorf(KindUnauthenticated, "the plan sent with the call is not the plan the token signed (plan hash %s, token says %s)", short(p.hash), short(tok.PlanHash))
	}
	return nil
}

func (c *tokenCache) init() {
	c.records = make(map[string]store.Token)
	c.verified = make(map[[32]byte]*verifiedToken)
	c.plans = make(map[[32]byte]*signedPlan)
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

// markVerified caches that tok, decoded from size bytes of sha256 sum,
// verified, and returns its entry. tok must not be modified after.
func (c *tokenCache) markVerified(sum [32]byte, tok *intent.Token, size int, expires, now time.Time) *verifiedToken {
	v := &verifiedToken{expires: expires}
	if size <= maxCachedTokenBytes {
		v.tok = tok
		v.policy, v.policyErr = policy.ParseTokenPolicy(tok.Policy["token_policy"])
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.verified) >= c.limit {
		c.sweep(now)
	}
	c.verified[sum] = v
	return v
}

// plan returns the plan of bytes raw parsed, from the cache when the same
// bytes were parsed before.
func (c *tokenCache) plan(raw []byte) (*signedPlan, error) {
	if len(raw) > maxCachedPlanBytes {
		return parsePlan(raw)
	}
	sum := sha256.Sum256(raw)
	c.mu.Lock()
	p, ok := c.plans[sum]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := parsePlan(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.plans) >= maxCachedPlans {
		c.plans = make(map[[32]byte]*signedPlan)
	}
	c.plans[sum] = p
	c.mu.Unlock()
	return p, nil
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

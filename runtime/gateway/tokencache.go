package gateway

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
)

// tokenCache keeps issued-token records and the tokens whose signature
// already verified, so a call costs neither a database read nor an Ed25519
// verification per request. Records only change by revocation, which every
// replica hears (watchRevocations evicts them); expiry is still checked on
// every call against the gateway's clock.
type tokenCache struct {
	mu       sync.Mutex
	records  map[string]store.Token // by token id
	verified map[[32]byte]time.Time // sha256 of the token's exact bytes → its expiry
	limit    int                    // entries per map before expired ones are swept
}

func (c *tokenCache) init() {
	c.records = make(map[string]store.Token)
	c.verified = make(map[[32]byte]time.Time)
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

// isVerified reports whether raw is a token whose signature verified before.
func (c *tokenCache) isVerified(raw []byte) bool {
	sum := sha256.Sum256(raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.verified[sum]
	return ok
}

func (c *tokenCache) markVerified(raw []byte, expires, now time.Time) {
	sum := sha256.Sum256(raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.verified) >= c.limit {
		c.sweep(now)
	}
	c.verified[sum] = expires
}

// sweep drops expired entries; if the cache is still full (a flood of
// unexpired tokens) it starts over rather than grow. Callers hold mu.
func (c *tokenCache) sweep(now time.Time) {
	for id, t := range c.records {
		if now.After(t.ExpiresAt) {
			delete(c.records, id)
		}
	}
	for k, exp := range c.verified {
		if now.After(exp) {
			delete(c.verified, k)
		}
	}
	if len(c.records) >= c.limit {
		c.records = make(map[string]store.Token)
	}
	if len(c.verified) >= c.limit {
		c.verified = make(map[[32]byte]time.Time)
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

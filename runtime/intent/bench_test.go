package intent

import (
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"
)

const fiveStepPlan = `{"goal":"triage the incident","steps":[
 {"action":"get_alert","mcp":"pager","params":{"id":"A-1234"}},
 {"action":"search_logs","mcp":"logs","params":{"query":"status:500 service:api","since":"1h","limit":200}},
 {"action":"get_deploys","mcp":"ci","params":{"service":"api","count":5}},
 {"action":"summarise","mcp":"docs","params":{"max_words":300,"temperature":0.2}},
 {"action":"post_message","mcp":"chat","params":{"channel":"#incidents","text":"summary attached"}}]}`

// BenchmarkIssue5Steps: what the gateway does per token request: parse, hash,
// leaves, tree, proofs, sign.
func BenchmarkIssue5Steps(b *testing.B) {
	key := testKey(9)
	raw := json.RawMessage(fiveStepPlan)
	now := time.Unix(1700000000, 0)
	b.ReportAllocs()
	for b.Loop() {
		p, err := ParsePlan(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Issue(p, IssueParams{Identity: "agent", Now: now, TTL: time.Minute}, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyInvoke: what the gateway does per call: verify the token,
// parse and hash the echoed plan, rebuild the tree, check path, digest, proof
// and params.
func BenchmarkVerifyInvoke(b *testing.B) {
	key := testKey(9)
	trusted := []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	raw := json.RawMessage(fiveStepPlan)
	now := time.Unix(1700000000, 0)
	p, _ := ParsePlan(raw)
	iss, err := Issue(p, IssueParams{Identity: "agent", Now: now, TTL: time.Minute}, key)
	if err != nil {
		b.Fatal(err)
	}
	proof, _ := json.Marshal(iss.StepProofs[1])
	c := Call{Plan: raw, Token: &iss.Token, MCP: "logs", Action: "search_logs",
		Params: map[string]any{"query": "status:500 service:api", "since": "1h", "limit": json.Number("200")},
		Path:   StepPath(1), ValueDigest: ValueDigest("search_logs"), Proof: proof, RequireCSRG: true}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyCall(c, trusted, now); err != nil {
			b.Fatal(err)
		}
	}
}

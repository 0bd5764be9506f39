package client

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/intent"
)

const testAPIKey = "ak_test_k1_secretsecretsecret"

// fakeGateway serves the documented wire contract (armoriq-compat.md,
// docs/intent.md) with the real intent package, and checks the shape of
// every request the client sends.
type fakeGateway struct {
	t   *testing.T
	key ed25519.PrivateKey
	now func() time.Time

	// tokenAnswer and invokeAnswer, when set, replace the real answers.
	tokenAnswer  func(w http.ResponseWriter)
	invokeAnswer func(w http.ResponseWriter)

	mu            sync.Mutex
	invokes       int
	lastHeader    http.Header
	lastBody      map[string]any
	issuedProofs  []json.RawMessage
	lastTokenBody map[string]any
}

func newFakeGateway(t *testing.T, now func() time.Time) (*fakeGateway, *httptest.Server) {
	g := &fakeGateway{t: t, key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32)), now: now}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", g.health)
	mux.HandleFunc("POST /iap/sdk/token", g.token)
	mux.HandleFunc("POST /invoke", g.invoke)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return g, srv
}

func (g *fakeGateway) checkKey(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("X-API-Key") != testAPIKey || r.Header.Get("Authorization") != "Bearer "+testAPIKey {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "invalid API key"})
		return false
	}
	return true
}

func (g *fakeGateway) health(w http.ResponseWriter, r *http.Request) {
	if g.checkKey(w, r) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	}
}

func decodeBody(t *testing.T, r *http.Request) map[string]any {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	data, _ := io.ReadAll(r.Body)
	m := decodeObject(data)
	if m == nil {
		t.Errorf("body %s is not a JSON object", data)
	}
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (g *fakeGateway) token(w http.ResponseWriter, r *http.Request) {
	if !g.checkKey(w, r) {
		return
	}
	body := decodeBody(g.t, r)
	g.mu.Lock()
	g.lastTokenBody = body
	g.mu.Unlock()
	if g.tokenAnswer != nil {
		g.tokenAnswer(w)
		return
	}
	for _, k := range []string{"user_id", "agent_id", "context_id", "plan", "policy", "expires_in"} {
		if _, ok := body[k]; !ok {
			g.t.Errorf("token request lacks %q: %v", k, body)
		}
	}
	exp, ok := body["expires_in"].(json.Number)
	if !ok || !strings.Contains(string(exp), ".") {
		g.t.Errorf("expires_in = %#v, want a float like the SDK's 60.0", body["expires_in"])
	}
	secs, _ := exp.Float64()
	planObj, _ := body["plan"].(map[string]any)
	plan, err := intent.PlanFromObject(planObj)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "message": err.Error()})
		return
	}
	policy, _ := body["policy"].(map[string]any)
	iss, err := intent.Issue(plan, intent.IssueParams{Identity: body["user_id"].(string) + ":" + body["agent_id"].(string),
		Policy: policy, Now: g.now(), TTL: time.Duration(secs * float64(time.Second))}, g.key)
	if err != nil {
		g.t.Fatal(err)
	}
	proofs := make([]json.RawMessage, len(iss.StepProofs))
	for i, p := range iss.StepProofs {
		proofs[i], _ = json.Marshal(p)
	}
	g.mu.Lock()
	g.issuedProofs = proofs
	g.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true, "plan_id": "plan-1", "intent_reference": "ir-1",
		"plan_hash": iss.PlanHash, "merkle_root": intent.RootHex(iss.MerkleRoot),
		"composite_identity": iss.Token.Identity, "step_proofs": proofs, "jwt_token": "jwt",
		"token": iss.Token,
		"policy_validation": map[string]any{"allowed_tools": []string{"logs/search_logs"}, "denied_tools": []string{},
			"denied_reasons": []string{}, "default_enforcement_action": "block"},
	})
}

func (g *fakeGateway) invoke(w http.ResponseWriter, r *http.Request) {
	if !g.checkKey(w, r) {
		return
	}
	body := decodeBody(g.t, r)
	g.mu.Lock()
	g.invokes++
	g.lastHeader = r.Header.Clone()
	g.lastBody = body
	g.mu.Unlock()
	if g.invokeAnswer != nil {
		g.invokeAnswer(w)
		return
	}
	if a := r.Header.Get("Accept"); a != "application/json, text/event-stream" {
		g.t.Errorf("Accept = %q", a)
	}
	for _, k := range []string{"mcp", "action", "tool", "params", "arguments", "intent_token", "merkle_proof", "plan", "token", "csrg_token", "_iam_context"} {
		if _, ok := body[k]; !ok {
			g.t.Errorf("invoke body lacks %q", k)
		}
	}
	it, _ := body["intent_token"].(map[string]any)
	for _, k := range []string{"plan", "token", "plan_hash", "merkle_root", "intent_reference", "step_proofs"} {
		if _, ok := it[k]; !ok {
			g.t.Errorf("intent_token lacks %q", k)
		}
	}
	planRaw, _ := intent.Canonical(body["plan"])
	tokRaw, _ := json.Marshal(body["token"])
	var tok intent.Token
	if err := json.Unmarshal(tokRaw, &tok); err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "no token"})
		return
	}
	params, _ := body["params"].(map[string]any)
	v, err := intent.VerifyCall(intent.Call{
		Plan: planRaw, Token: &tok, MCP: body["mcp"].(string), Action: body["action"].(string), Params: params,
		Path: r.Header.Get("X-CSRG-Path"), ValueDigest: r.Header.Get("X-CSRG-Value-Digest"),
		Proof: []byte(r.Header.Get("X-CSRG-Proof")), RequireCSRG: true,
	}, []ed25519.PublicKey{g.key.Public().(ed25519.PublicKey)}, g.now())
	switch {
	case errors.Is(err, intent.ErrExpired):
		writeJSON(w, http.StatusUnauthorized, map[string]any{"code": "token_expired", "message": err.Error()})
		return
	case errors.Is(err, intent.ErrStepMismatch):
		writeJSON(w, http.StatusConflict, map[string]any{"message": err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": err.Error()})
		return
	}
	if body["enforce_only"] == true {
		writeJSON(w, http.StatusOK, map[string]any{"allowed": true, "action": "allow", "reason": "matched", "matched_policy": "rule-1"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"jsonrpc": "2.0", "id": 1,
		"result": map[string]any{"content": []any{map[string]any{"type": "text", "text": "ok"}}, "step": v.Step, "echo": v.Params}})
}

// replayRequest rebuilds the last token request, for answers that start
// from the real one and alter it.
func (g *fakeGateway) replayRequest(t *testing.T) *http.Request {
	g.mu.Lock()
	body := g.lastTokenBody
	g.mu.Unlock()
	data, err := intent.Canonical(body)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/iap/sdk/token", bytes.NewReader(data))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-API-Key", testAPIKey)
	r.Header.Set("Authorization", "Bearer "+testAPIKey)
	return r
}

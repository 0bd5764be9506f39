package intent

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

// Vectors is testdata/vectors.json: every value docs/intent.md quotes for the
// fixed three-step plan, recomputed on each run.
type Vectors struct {
	Plan            string          `json:"plan"`
	CanonicalPlan   string          `json:"canonical_plan"`
	PlanHash        string          `json:"plan_hash"`
	LeafInputs      []string        `json:"leaf_inputs"`
	Leaves          []string        `json:"leaves"`
	Nodes           []string        `json:"level1_nodes"`
	MerkleRoot      string          `json:"merkle_root"`
	ProofStep1      string          `json:"proof_step1"`
	CSRGPathStep1   string          `json:"csrg_path_step1"`
	ValueDigest1    string          `json:"value_digest_step1"`
	KeySeed         string          `json:"ed25519_seed"`
	PublicKey       string          `json:"public_key"`
	Token           json.RawMessage `json:"token"`
	TokenSignedData string          `json:"token_signed_payload"`
	JWTKid          string          `json:"jwt_kid"`
	JWT             string          `json:"jwt"`
}

func computeVectors(t *testing.T) Vectors {
	key := testKey(0x42)
	now := time.Unix(1700000000, 500000000)
	p, err := ParsePlan(json.RawMessage(threeStepPlan))
	if err != nil {
		t.Fatal(err)
	}
	iss, err := Issue(p, IssueParams{Identity: "agent-1@armoriq", Policy: map[string]any{"allow": []any{"billing/*", "docs/*", "mail/send_email"}}, Now: now, TTL: time.Minute}, key)
	if err != nil {
		t.Fatal(err)
	}
	v := Vectors{Plan: threeStepPlan, PlanHash: iss.PlanHash, MerkleRoot: RootHex(iss.MerkleRoot)}
	c, _ := Canonical(p.Object())
	v.CanonicalPlan = string(c)
	var leaves [][32]byte
	for _, s := range p.Steps {
		in, _ := StepLeafInput(s)
		v.LeafInputs = append(v.LeafInputs, string(in))
		l := HashLeaf(in)
		leaves = append(leaves, l)
		v.Leaves = append(v.Leaves, RootHex(l))
	}
	v.Nodes = []string{RootHex(HashNode(leaves[0], leaves[1])), RootHex(leaves[2])}
	proof, _ := json.Marshal(iss.StepProofs[1])
	v.ProofStep1 = string(proof)
	v.CSRGPathStep1 = StepPath(1)
	v.ValueDigest1 = ValueDigest(p.Steps[1].Action)
	v.KeySeed = hex.EncodeToString(key.Seed())
	v.PublicKey = hex.EncodeToString(key.Public().(ed25519.PublicKey))
	v.Token, _ = json.Marshal(iss.Token)
	signed, _ := iss.Token.SignedPayload()
	v.TokenSignedData = string(signed)
	v.JWTKid = "gw-2026-1"
	v.JWT, err = SignJWT(Claims{Issuer: "armoriq-gateway", Subject: "ana@acme.example", Agent: "agent-1", PlanHash: iss.PlanHash,
		MerkleRoot: v.MerkleRoot, IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix(), ID: "ir_0001"}, v.JWTKid, key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestGoldenVectors(t *testing.T) {
	v := computeVectors(t)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "vectors.json")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("vectors changed: got\n%s\nwant\n%s\n(run go test -update if the change is intended, and update docs/intent.md)", buf.Bytes(), want)
	}

	// The vectors verify.
	pub, _ := hex.DecodeString(v.PublicKey)
	var tok Token
	if err := json.Unmarshal(v.Token, &tok); err != nil {
		t.Fatal(err)
	}
	if err := VerifyToken(&tok, []ed25519.PublicKey{pub}, time.Unix(1700000001, 0)); err != nil {
		t.Errorf("vector token: %v", err)
	}
	if _, err := VerifyJWT(v.JWT, map[string]ed25519.PublicKey{v.JWTKid: pub}, time.Unix(1700000001, 0)); err != nil {
		t.Errorf("vector jwt: %v", err)
	}

	// docs/intent.md quotes them.
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "intent.md"))
	if err != nil {
		t.Fatal(err)
	}
	quoted := []string{v.CanonicalPlan, v.PlanHash, v.MerkleRoot, v.ProofStep1, v.ValueDigest1, v.PublicKey, v.TokenSignedData, tok.Signature, v.KeySeed, v.JWT}
	quoted = append(quoted, v.LeafInputs...)
	quoted = append(quoted, v.Leaves...)
	quoted = append(quoted, v.Nodes...)
	for _, q := range quoted {
		if !strings.Contains(string(doc), q) {
			t.Errorf("docs/intent.md does not quote %s", q)
		}
	}
}

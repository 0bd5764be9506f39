package intent

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// tokenVector is testdata/armoriq-token-vector.json, a token the ArmorIQ
// signer made and the Python SDK's own tests check.
type tokenVector struct {
	Payload   json.RawMessage `json:"payload"`
	PublicKey string          `json:"public_key"`
	Signature string          `json:"signature"`
	Canonical string          `json:"canonical"`
	Tampered  struct {
		PlanHash   string `json:"plan_hash"`
		MustVerify bool   `json:"must_verify"`
	} `json:"tampered"`
}

func loadVector(t testing.TB) tokenVector {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "armoriq-token-vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v tokenVector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestArmorIQVector(t *testing.T) {
	v := loadVector(t)
	payload := mustDecode(t, string(v.Payload))
	got, err := Canonical(payload)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != v.Canonical {
		t.Fatalf("Canonical(payload) =\n%s\nwant\n%s", got, v.Canonical)
	}
	pub, _ := hex.DecodeString(v.PublicKey)
	sig, _ := hex.DecodeString(v.Signature)
	if !ed25519.Verify(pub, got, sig) {
		t.Fatal("the vector's signature does not verify over our canonical bytes")
	}

	// The same through the Token type, decoded from the wire form.
	var tok Token
	if err := json.Unmarshal(v.Payload, &tok); err != nil {
		t.Fatal(err)
	}
	tok.Signature = v.Signature
	signed, err := tok.SignedPayload()
	if err != nil || string(signed) != v.Canonical {
		t.Fatalf("SignedPayload = %s, %v; want %s", signed, err, v.Canonical)
	}
	at := time.Unix(1700000010, 0)
	if err := VerifyToken(&tok, []ed25519.PublicKey{pub}, at); err != nil {
		t.Fatalf("VerifyToken(vector) = %v, want nil", err)
	}

	tampered := tok
	tampered.PlanHash = v.Tampered.PlanHash
	err = VerifyToken(&tampered, []ed25519.PublicKey{pub}, at)
	if v.Tampered.MustVerify || !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifyToken(tampered plan_hash) = %v, want ErrBadSignature", err)
	}
	m := payload.(map[string]any)
	m["plan_hash"] = v.Tampered.PlanHash
	c, _ := Canonical(m)
	if ed25519.Verify(pub, c, sig) {
		t.Fatal("signature verifies over the tampered payload")
	}
}

func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	return ed25519.NewKeyFromSeed(s)
}

func TestSignVerifyToken(t *testing.T) {
	key, other := testKey(1), testKey(2)
	pub := key.Public().(ed25519.PublicKey)
	now := time.Unix(1700000000, 0)
	newTok := func() Token {
		tok := Token{
			PlanHash: "abc", IssuedAt: 1700000000, ExpiresAt: 1700000060,
			Policy:   map[string]any{"max": json.Number("5"), "ratio": 0.5},
			Identity: "agent@example.com",
		}
		if err := SignToken(&tok, key); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tok := newTok()
	if tok.Version != "1.0" || tok.PublicKey != hex.EncodeToString(pub) {
		t.Fatalf("SignToken set version %q key %q", tok.Version, tok.PublicKey)
	}
	if err := VerifyToken(&tok, []ed25519.PublicKey{other.Public().(ed25519.PublicKey), pub}, now); err != nil {
		t.Fatalf("VerifyToken = %v, want nil", err)
	}

	// A round trip through JSON keeps integers in the policy as integers.
	data, _ := json.Marshal(tok)
	var back Token
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if err := VerifyToken(&back, []ed25519.PublicKey{pub}, now); err != nil {
		t.Fatalf("VerifyToken after JSON round trip = %v (%s)", err, data)
	}

	for _, tc := range []struct {
		name    string
		mutate  func(*Token)
		trusted []ed25519.PublicKey
		now     time.Time
		want    error
	}{
		{"expired at expires_at", nil, []ed25519.PublicKey{pub}, time.Unix(1700000060, 0), ErrExpired},
		{"expired later", nil, []ed25519.PublicKey{pub}, time.Unix(1800000000, 0), ErrExpired},
		{"not our key", nil, []ed25519.PublicKey{other.Public().(ed25519.PublicKey)}, now, ErrUnknownKey},
		{"no keys", nil, nil, now, ErrUnknownKey},
		{"plan hash changed", func(t *Token) { t.PlanHash = "abd" }, []ed25519.PublicKey{pub}, now, ErrBadSignature},
		{"expiry extended", func(t *Token) { t.ExpiresAt += 3600 }, []ed25519.PublicKey{pub}, now, ErrBadSignature},
		{"policy changed", func(t *Token) { t.Policy = map[string]any{"max": json.Number("6"), "ratio": 0.5} }, []ed25519.PublicKey{pub}, now, ErrBadSignature},
		{"identity changed", func(t *Token) { t.Identity = "x" }, []ed25519.PublicKey{pub}, now, ErrBadSignature},
		{"signature flipped", func(t *Token) { t.Signature = "00" + t.Signature[2:] }, []ed25519.PublicKey{pub}, now, ErrBadSignature},
		{"self-signed with its own key", func(tk *Token) {
			_ = SignToken(tk, other) // a forger signs with a key of his and puts it in public_key
		}, []ed25519.PublicKey{pub}, now, ErrUnknownKey},
		{"signature not hex", func(t *Token) { t.Signature = "zz" }, []ed25519.PublicKey{pub}, now, ErrMalformed},
		{"public key short", func(t *Token) { t.PublicKey = "abcd" }, []ed25519.PublicKey{pub}, now, ErrMalformed},
		{"no plan hash", func(t *Token) { t.PlanHash = "" }, []ed25519.PublicKey{pub}, now, ErrMalformed},
		{"issued after expiry", func(t *Token) { t.IssuedAt = t.ExpiresAt + 1 }, []ed25519.PublicKey{pub}, now, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := newTok()
			if tc.mutate != nil {
				tc.mutate(&tk)
			}
			if err := VerifyToken(&tk, tc.trusted, tc.now); !errors.Is(err, tc.want) {
				t.Errorf("VerifyToken = %v, want %v", err, tc.want)
			}
		})
	}
	if err := VerifyToken(nil, []ed25519.PublicKey{pub}, now); !errors.Is(err, ErrMalformed) {
		t.Errorf("VerifyToken(nil) = %v, want ErrMalformed", err)
	}
}

func TestJWT(t *testing.T) {
	key, other := testKey(1), testKey(2)
	keys := map[string]ed25519.PublicKey{"k1": key.Public().(ed25519.PublicKey)}
	now := time.Unix(1700000000, 0)
	claims := Claims{Subject: "ana@example.com", Agent: "agent-1", PlanHash: "ph", MerkleRoot: "mr", IssuedAt: now.Unix(), ExpiresAt: now.Unix() + 60, ID: "ref-1"}
	s, err := SignJWT(claims, "k1", key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyJWT(s, keys, now)
	if err != nil || got != claims {
		t.Fatalf("VerifyJWT = %+v, %v; want %+v", got, err, claims)
	}
	forged, _ := SignJWT(claims, "k1", other)
	otherKid, _ := SignJWT(claims, "k2", key)
	parts := splitJWT(s)
	noneAlg := b64.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"k1"}`)) + "." + parts[1] + "."
	hs256 := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"k1"}`)) + "." + parts[1] + "." + parts[2]
	longer := claims
	longer.ExpiresAt += 3600
	lc, _ := json.Marshal(longer)
	swapped := parts[0] + "." + b64.EncodeToString(lc) + "." + parts[2]
	for _, tc := range []struct {
		name string
		s    string
		now  time.Time
		want error
	}{
		{"expired", s, now.Add(60 * time.Second), ErrExpired},
		{"signed by another key", forged, now, ErrBadSignature},
		{"claims swapped", swapped, now, ErrBadSignature},
		{"unknown kid", otherKid, now, ErrUnknownKey},
		{"alg none", noneAlg, now, ErrMalformed},
		{"alg HS256", hs256, now, ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], now, ErrMalformed},
		{"garbage", "a.b.c", now, ErrMalformed},
		{"empty", "", now, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := VerifyJWT(tc.s, keys, tc.now); !errors.Is(err, tc.want) {
				t.Errorf("VerifyJWT = %v, want %v", err, tc.want)
			}
		})
	}
}

func splitJWT(s string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

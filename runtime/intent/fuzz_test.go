package intent

import (
	"crypto/ed25519"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// FuzzCanonical: the canonical form of any JSON document is valid JSON that
// decodes to the same value, and is a fixed point.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[1.5,-0.0,"é😀\u0000"]}`, `60.0`, `60`, `1e21`, `"\u007f\ud83d\ude00"`, `[[[]]]`, `{"":null}`, `12345678901234567890123`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decodeJSON(data)
		if err != nil {
			return
		}
		c, err := Canonical(v)
		if err != nil {
			return // NaN-like overflow (1e999), too deep: refused, fine
		}
		back, err := decodeJSON(c)
		if err != nil {
			t.Fatalf("Canonical(%q) = %q, not JSON: %v", data, c, err)
		}
		c2, err := Canonical(back)
		if err != nil || string(c2) != string(c) {
			t.Fatalf("not a fixed point: %q then %q (%v)", c, c2, err)
		}
		if !sameValue(v, back) {
			t.Fatalf("Canonical(%q) = %q decodes to another value", data, c)
		}
	})
}

// sameValue compares decoded JSON values, numbers by what Python would read:
// integers by value, floats by their float64.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		fx, okx := scanNumber(string(x))
		fy, oky := scanNumber(string(y))
		if !okx || !oky || fx != fy {
			return false
		}
		cx, err1 := appendNumber(nil, string(x))
		cy, err2 := appendNumber(nil, string(y))
		return err1 == nil && err2 == nil && string(cx) == string(cy)
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(a, b)
	}
}

// FuzzVerifyProof: no input makes VerifyProof panic, and whatever it accepts
// leads to the real root from the real leaf of a small real tree.
func FuzzVerifyProof(f *testing.F) {
	leaves := leavesN(5)
	tree := NewTree(leaves)
	for i := range leaves {
		b, _ := json.Marshal(tree.Proof(i))
		f.Add(b, uint8(i))
	}
	f.Add([]byte(`{"leaf_index":0,"leaf_count":1048576,"siblings":[]}`), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		p, err := ParseProof(data)
		if err != nil {
			return
		}
		i := int(which) % len(leaves)
		if VerifyProof(tree.Root(), leaves[i], p) != nil {
			return
		}
		// Short of a SHA-256 collision, a proof that verifies follows the
		// true path of leaf i: the same sides, level by level.
		if !expectedEqual(i, len(leaves), p.LeafIndex, p.LeafCount) {
			t.Fatalf("proof %s verified leaf %d off its path", data, i)
		}
	})
}

// FuzzVerifyToken: no token JSON makes VerifyToken panic; none but the
// genuine one verifies.
func FuzzVerifyToken(f *testing.F) {
	key := testKey(3)
	pub := key.Public().(ed25519.PublicKey)
	good := Token{PlanHash: "ph", IssuedAt: 1700000000, ExpiresAt: 1700000060, Policy: map[string]any{"n": json.Number("1")}, Identity: "a"}
	if err := SignToken(&good, key); err != nil {
		f.Fatal(err)
	}
	gb, _ := json.Marshal(good)
	f.Add(gb)
	f.Add([]byte(`{"plan_hash":"x","issued_at":1,"expires_at":2e9,"public_key":"00","signature":"00","version":"1.0"}`))
	now := time.Unix(1700000001, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		var tok Token
		if json.Unmarshal(data, &tok) != nil {
			return
		}
		if VerifyToken(&tok, []ed25519.PublicKey{pub}, now) == nil {
			signed, _ := tok.SignedPayload()
			want, _ := good.SignedPayload()
			if string(signed) != string(want) {
				t.Fatalf("forged token verified: %s", data)
			}
		}
	})
}

// FuzzVerifyJWT: no string makes VerifyJWT panic; none but the genuine one
// verifies.
func FuzzVerifyJWT(f *testing.F) {
	key := testKey(4)
	keys := map[string]ed25519.PublicKey{"k": key.Public().(ed25519.PublicKey)}
	claims := Claims{Subject: "u", PlanHash: "ph", IssuedAt: 1700000000, ExpiresAt: 1700000060}
	s, _ := SignJWT(claims, "k", key)
	f.Add(s)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	now := time.Unix(1700000001, 0)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := VerifyJWT(s, keys, now)
		if err == nil && got != claims {
			t.Fatalf("forged jwt verified: %q -> %+v", s, got)
		}
	})
}

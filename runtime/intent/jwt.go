package intent

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// maxJWTBytes bounds the compact JWS VerifyJWT reads.
const maxJWTBytes = 16 << 10

// Claims are the claims of the compact jwt_token of a token answer. PlanHash
// and MerkleRoot bind it to one plan; Subject is the end user, Agent the agent
// id, ID the intent reference. Times are Unix seconds.
type Claims struct {
	Issuer     string `json:"iss,omitempty"`
	Subject    string `json:"sub"`
	Agent      string `json:"agent"`
	PlanHash   string `json:"plan_hash"`
	MerkleRoot string `json:"merkle_root"`
	IssuedAt   int64  `json:"iat"`
	ExpiresAt  int64  `json:"exp"`
	ID         string `json:"jti"`
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
	Kid string `json:"kid"`
}

var b64 = base64.RawURLEncoding

// SignJWT returns the compact JWS (RFC 7515, RFC 8037 EdDSA) of claims:
// base64url({"alg":"EdDSA","typ":"JWT","kid":kid}) "." base64url(claims) "."
// base64url(Ed25519 signature of the first two parts), without padding.
func SignJWT(claims Claims, kid string, key ed25519.PrivateKey) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("signing key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if kid == "" {
		return "", errors.New("jwt needs a key id")
	}
	h, err := json.Marshal(jwtHeader{Alg: "EdDSA", Typ: "JWT", Kid: kid})
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	sig := ed25519.Sign(key, []byte(signing))
	return signing + "." + b64.EncodeToString(sig), nil
}

// VerifyJWT checks a compact JWS made by SignJWT against the keys we pin, by
// key id, in this order: three base64url parts and a header with alg "EdDSA"
// and a kid (ErrMalformed; no other alg, "none" included, is accepted); the
// kid is one of keys (ErrUnknownKey); the signature verifies (ErrBadSignature);
// the claims decode, with plan_hash and exp set (ErrMalformed); now is before
// exp (ErrExpired).
func VerifyJWT(s string, keys map[string]ed25519.PublicKey, now time.Time) (Claims, error) {
	if len(s) > maxJWTBytes {
		return Claims{}, fmt.Errorf("%w: jwt longer than %d bytes", ErrMalformed, maxJWTBytes)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Claims{}, fmt.Errorf("%w: jwt has %d parts, want 3", ErrMalformed, len(parts))
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: jwt header is not base64url", ErrMalformed)
	}
	var h jwtHeader
	if err := strictUnmarshal(hb, &h); err != nil {
		return Claims{}, fmt.Errorf("%w: jwt header: %v", ErrMalformed, err)
	}
	if h.Alg != "EdDSA" {
		return Claims{}, fmt.Errorf("%w: jwt alg %q, want EdDSA", ErrMalformed, truncate(h.Alg, 20))
	}
	if h.Typ != "" && h.Typ != "JWT" {
		return Claims{}, fmt.Errorf("%w: jwt typ %q, want JWT", ErrMalformed, truncate(h.Typ, 20))
	}
	if h.Kid == "" {
		return Claims{}, fmt.Errorf("%w: jwt header has no kid", ErrMalformed)
	}
	key, ok := keys[h.Kid]
	if !ok || len(key) != ed25519.PublicKeySize {
		return Claims{}, fmt.Errorf("%w: kid %q", ErrUnknownKey, truncate(h.Kid, 40))
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Claims{}, fmt.Errorf("%w: jwt signature is not a base64url Ed25519 signature", ErrMalformed)
	}
	if !ed25519.Verify(key, []byte(parts[0]+"."+parts[1]), sig) {
		return Claims{}, ErrBadSignature
	}
	cb, err := b64.DecodeString(parts[1])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: jwt claims are not base64url", ErrMalformed)
	}
	var c Claims
	if err := json.Unmarshal(cb, &c); err != nil {
		return Claims{}, fmt.Errorf("%w: jwt claims: %v", ErrMalformed, err)
	}
	if c.PlanHash == "" || c.ExpiresAt == 0 {
		return Claims{}, fmt.Errorf("%w: jwt claims need plan_hash and exp", ErrMalformed)
	}
	if now.Unix() >= c.ExpiresAt {
		return Claims{}, fmt.Errorf("%w at %s", ErrExpired, time.Unix(c.ExpiresAt, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}

// strictUnmarshal decodes one JSON object refusing unknown fields and
// trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}

package intent

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// TokenVersion is the version SignToken writes when a token has none.
const TokenVersion = "1.0"

// Errors of token and JWT verification; every error VerifyToken and VerifyJWT
// return matches exactly one of them with errors.Is.
var (
	ErrMalformed    = errors.New("malformed token")
	ErrUnknownKey   = errors.New("token signed by an unknown key")
	ErrBadSignature = errors.New("token signature does not verify")
	ErrExpired      = errors.New("token expired")
)

// Token is the ArmorIQ intent token object, the "token" of a token answer:
// an Ed25519 signature (hex) over the canonical JSON of every other field.
// IssuedAt and ExpiresAt are Unix seconds and are always floats in the signed
// form (1700000060.0, not 1700000060), as Python's time.time() makes them.
type Token struct {
	PlanHash  string         `json:"plan_hash"`
	IssuedAt  float64        `json:"issued_at"`
	ExpiresAt float64        `json:"expires_at"`
	Policy    map[string]any `json:"policy"`
	Identity  string         `json:"identity"`
	PublicKey string         `json:"public_key"`
	Signature string         `json:"signature"`
	Version   string         `json:"version"`
}

// UnmarshalJSON decodes a token keeping the policy's numbers as json.Number,
// so an integer in the policy is signed and verified as an integer.
func (t *Token) UnmarshalJSON(data []byte) error {
	var aux struct {
		PlanHash  string          `json:"plan_hash"`
		IssuedAt  float64         `json:"issued_at"`
		ExpiresAt float64         `json:"expires_at"`
		Policy    json.RawMessage `json:"policy"`
		Identity  string          `json:"identity"`
		PublicKey string          `json:"public_key"`
		Signature string          `json:"signature"`
		Version   string          `json:"version"`
	}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	var policy map[string]any
	if len(aux.Policy) > 0 && !bytes.Equal(aux.Policy, []byte("null")) {
		v, err := decodeJSON(aux.Policy)
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return errors.New("policy: not a JSON object")
		}
		policy = m
	}
	*t = Token{aux.PlanHash, aux.IssuedAt, aux.ExpiresAt, policy, aux.Identity, aux.PublicKey, aux.Signature, aux.Version}
	return nil
}

// SignedPayload returns the canonical JSON the token's signature covers:
// {expires_at, identity, issued_at, plan_hash, policy, public_key, version},
// keys sorted. A nil policy is written as null.
func (t *Token) SignedPayload() ([]byte, error) {
	return Canonical(map[string]any{
		"plan_hash":  t.PlanHash,
		"issued_at":  t.IssuedAt,
		"expires_at": t.ExpiresAt,
		"policy":     t.Policy,
		"identity":   t.Identity,
		"public_key": t.PublicKey,
		"version":    t.Version,
	})
}

// SignToken sets t.PublicKey to key's public key (hex), t.Version to "1.0" if
// empty, and t.Signature to the hex Ed25519 signature of t.SignedPayload().
func SignToken(t *Token, key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("signing key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if t.PlanHash == "" {
		return errors.New("token has no plan_hash")
	}
	t.PublicKey = hex.EncodeToString(key.Public().(ed25519.PublicKey))
	if t.Version == "" {
		t.Version = TokenVersion
	}
	msg, err := t.SignedPayload()
	if err != nil {
		return err
	}
	t.Signature = hex.EncodeToString(ed25519.Sign(key, msg))
	return nil
}

// VerifyToken checks t against the keys we pin, in this order: the fields are
// well formed (ErrMalformed); t.PublicKey names one of trusted (ErrUnknownKey;
// the key used is our copy, the token's field only selects it); the signature
// verifies (ErrBadSignature); now is before expires_at (ErrExpired).
func VerifyToken(t *Token, trusted []ed25519.PublicKey, now time.Time) error {
	if t == nil {
		return fmt.Errorf("%w: no token", ErrMalformed)
	}
	switch {
	case t.PlanHash == "":
		return fmt.Errorf("%w: plan_hash is empty", ErrMalformed)
	case t.Version == "":
		return fmt.Errorf("%w: version is empty", ErrMalformed)
	case !finite(t.IssuedAt) || !finite(t.ExpiresAt) || t.ExpiresAt <= 0:
		return fmt.Errorf("%w: issued_at or expires_at is not a time", ErrMalformed)
	case t.IssuedAt > t.ExpiresAt:
		return fmt.Errorf("%w: issued_at after expires_at", ErrMalformed)
	}
	pub, err := hex.DecodeString(t.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public_key is not a hex Ed25519 key", ErrMalformed)
	}
	sig, err := hex.DecodeString(t.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature is not a hex Ed25519 signature", ErrMalformed)
	}
	var key ed25519.PublicKey
	for _, k := range trusted {
		if bytes.Equal(k, pub) {
			key = k
			break
		}
	}
	if key == nil {
		return fmt.Errorf("%w: %s", ErrUnknownKey, truncate(t.PublicKey, 16))
	}
	msg, err := t.SignedPayload()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !ed25519.Verify(key, msg, sig) {
		return ErrBadSignature
	}
	if unixSeconds(now) >= t.ExpiresAt {
		return fmt.Errorf("%w at %s", ErrExpired, fromUnixSeconds(t.ExpiresAt).UTC().Format(time.RFC3339))
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func unixSeconds(t time.Time) float64 { return float64(t.Unix()) + float64(t.Nanosecond())/1e9 }

func fromUnixSeconds(s float64) time.Time {
	sec, frac := math.Modf(s)
	return time.Unix(int64(sec), int64(frac*1e9))
}

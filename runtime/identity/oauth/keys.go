package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	_ "crypto/sha256" // the hashes of RS256 …
	_ "crypto/sha512" // … and of RS384, RS512
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// publicKey is one usable signing key of an issuer's JWKS.
type publicKey struct {
	kid string
	alg string // the JWK's own "alg", if it states one
	kty string // "RSA", "EC" or "OKP"
	crv string // "P-256", "P-384", "P-521" or "Ed25519"
	rsa *rsa.PublicKey
	ec  *ecdsa.PublicKey
	ed  ed25519.PublicKey
}

// jwk is a JSON Web Key as published (RFC 7517, 7518, 8037).
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Alg    string   `json:"alg"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	D      string   `json:"d"`
	K      string   `json:"k"`
	P      string   `json:"p"`
}

// parseJWKS reads a JWK Set. It returns the usable signing keys, and why
// each other key was skipped; an error only when the document is not a JWK
// Set at all.
func parseJWKS(b []byte) (keys []*publicKey, skipped []error, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	if set.Keys == nil {
		return nil, nil, errors.New(`not a JWK Set: no "keys" array`)
	}
	if len(set.Keys) > maxKeys {
		return nil, nil, fmt.Errorf("the JWK Set holds %d keys, more than %d", len(set.Keys), maxKeys)
	}
	for i, raw := range set.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		k, err := j.publicKey()
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d (kid %q): %w", i, j.Kid, err))
			continue
		}
		keys = append(keys, k)
	}
	return keys, skipped, nil
}

// publicKey turns a JWK into a verification key, refusing keys that are
// not for signatures, publish private material, or are too weak.
func (j *jwk) publicKey() (*publicKey, error) {
	if j.D != "" || j.P != "" || j.K != "" {
		return nil, errors.New("publishes private or symmetric key material; refused")
	}
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("is for use %q, not sig", j.Use)
	}
	if j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return nil, errors.New(`its key_ops do not include "verify"`)
	}
	if j.Alg != "" && !supportedAlgs[j.Alg] {
		return nil, fmt.Errorf("its alg %q is not supported", j.Alg)
	}
	k := &publicKey{kid: j.Kid, alg: j.Alg, kty: j.Kty, crv: j.Crv}
	switch j.Kty {
	case "RSA":
		n, err := b64.DecodeString(j.N)
		if err != nil {
			return nil, errors.New("its n is not base64url")
		}
		e, err := b64.DecodeString(j.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("its e is not a base64url integer of at most 32 bits")
		}
		N := new(big.Int).SetBytes(n)
		E := new(big.Int).SetBytes(e).Int64()
		switch bits := N.BitLen(); {
		case bits < 2048:
			return nil, fmt.Errorf("an RSA key of %d bits is refused: at least 2048 are required", bits)
		case bits > 8192:
			return nil, fmt.Errorf("an RSA key of %d bits is refused: at most 8192 are accepted", bits)
		}
		if E < 3 || E%2 == 0 || E > 1<<31-1 {
			return nil, fmt.Errorf("its public exponent %d is not an odd number from 3 to 2^31-1", E)
		}
		k.crv = ""
		k.rsa = &rsa.PublicKey{N: N, E: int(E)}
	case "EC":
		var curve elliptic.Curve
		var size int
		switch j.Crv {
		case "P-256":
			curve, size = elliptic.P256(), 32
		case "P-384":
			curve, size = elliptic.P384(), 48
		case "P-521":
			curve, size = elliptic.P521(), 66
		default:
			return nil, fmt.Errorf("its curve %q is not supported", j.Crv)
		}
		x, err1 := b64.DecodeString(j.X)
		y, err2 := b64.DecodeString(j.Y)
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, fmt.Errorf("its x and y are not base64url coordinates of %d bytes", size)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("is not a point of %s: %w", j.Crv, err)
		}
		k.ec = pub
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("its curve %q is not supported (only Ed25519)", j.Crv)
		}
		x, err := b64.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("its x is not a base64url Ed25519 key of 32 bytes")
		}
		k.ed = ed25519.PublicKey(x)
	case "oct":
		return nil, errors.New("is a symmetric key; refused")
	default:
		return nil, fmt.Errorf("its kty %q is not supported", j.Kty)
	}
	return k, nil
}

// fits reports whether alg may be verified with k: the key type and curve
// the algorithm needs, and the key's own alg when it states one.
func (k *publicKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return k.rsa != nil
	case "ES256":
		return k.ec != nil && k.crv == "P-256"
	case "ES384":
		return k.ec != nil && k.crv == "P-384"
	case "ES512":
		return k.ec != nil && k.crv == "P-521"
	case "EdDSA":
		return k.ed != nil
	}
	return false
}

// verify checks sig over input with k under alg.
func (k *publicKey) verify(alg, input string, sig []byte) error {
	if !k.fits(alg) {
		return fmt.Errorf("key %q does not fit algorithm %s", k.kid, alg)
	}
	var h crypto.Hash
	switch alg[2:] {
	case "256":
		h = crypto.SHA256
	case "384":
		h = crypto.SHA384
	case "512":
		h = crypto.SHA512
	}
	digest := func() []byte {
		w := h.New()
		w.Write([]byte(input))
		return w.Sum(nil)
	}
	switch alg[:2] {
	case "RS":
		return rsa.VerifyPKCS1v15(k.rsa, h, digest(), sig)
	case "PS":
		return rsa.VerifyPSS(k.rsa, h, digest(), sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h})
	case "ES":
		size := (k.ec.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return fmt.Errorf("an %s signature is %d bytes, not %d", alg, len(sig), 2*size)
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(k.ec, digest(), r, s) {
			return errors.New("ecdsa: verification error")
		}
		return nil
	case "Ed":
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k.ed, []byte(input), sig) {
			return errors.New("ed25519: verification error")
		}
		return nil
	}
	return fmt.Errorf("algorithm %s is not supported", alg)
}

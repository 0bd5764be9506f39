package store

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"math/big"
	"strings"
)

// API keys look like ak_live_<id>_<secret>:
//
//   - id: 16 characters of [a-z0-9], public, the database key;
//   - secret: 256 random bits in base62, always 43 characters.
//
// Only HashAPISecret(id, secret) is stored. The secret carries 256 bits of
// entropy, so one SHA-256 is enough: nobody can search a 2^256 space, and a
// slow password hash (bcrypt, argon2) would only add milliseconds to every
// request. docs/store.md has the full rationale.
const (
	apiKeyPrefix    = "ak_live_"
	apiKeyIDLen     = 16
	apiKeyMinIDLen  = 12
	apiKeyMaxIDLen  = 64
	apiKeySecretLen = 43 // ceil(256 / log2(62))
	apiKeyHashLabel = "armoriq api key v1\x00"
)

const (
	base36 = "0123456789abcdefghijklmnopqrstuvwxyz"
	base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// GenerateAPIKey makes a new API key. full is shown to the user once and
// never stored; id and secretHash go into APIKey.ID and APIKey.SecretHash.
func GenerateAPIKey() (full, id string, secretHash []byte) {
	id = randomID(apiKeyIDLen)
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	secret := encodeBase62(b[:], apiKeySecretLen)
	return apiKeyPrefix + id + "_" + secret, id, HashAPISecret(id, secret)
}

// ParseAPIKey splits a full key into its id and secret, checking the format.
// The error matches ErrInvalid and never contains the key.
func ParseAPIKey(s string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(s, apiKeyPrefix)
	if !ok {
		return "", "", errorf("parse api key", ErrInvalid, "want prefix %s", apiKeyPrefix)
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok {
		return "", "", errorf("parse api key", ErrInvalid, "want ak_live_<id>_<secret>")
	}
	if len(id) < apiKeyMinIDLen || len(id) > apiKeyMaxIDLen || !only(id, base36) {
		return "", "", errorf("parse api key", ErrInvalid, "malformed key id")
	}
	if len(secret) != apiKeySecretLen || !only(secret, base62) {
		return "", "", errorf("parse api key", ErrInvalid, "malformed secret")
	}
	return id, secret, nil
}

// HashAPISecret is the stored form of a key's secret: SHA-256 over a label,
// the id and the secret. The id binds the hash to its row, so a hash copied
// onto another key's row does not authenticate that key.
func HashAPISecret(id, secret string) []byte {
	h := sha256.New()
	h.Write([]byte(apiKeyHashLabel))
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	return h.Sum(nil)
}

// CheckAPISecret reports, in constant time, whether secret matches the hash
// stored for key id.
func CheckAPISecret(id, secret string, secretHash []byte) bool {
	return subtle.ConstantTimeCompare(HashAPISecret(id, secret), secretHash) == 1
}

// APIKeyLast4 returns the part of a full key shown in listings.
func APIKeyLast4(full string) string {
	if len(full) < 4 {
		return full
	}
	return full[len(full)-4:]
}

// randomID returns n random characters of [a-z0-9].
func randomID(n int) string {
	const limit = 252 // largest multiple of 36 that fits a byte: no modulo bias
	out := make([]byte, 0, n)
	var buf [32]byte
	for len(out) < n {
		rand.Read(buf[:])
		for _, c := range buf {
			if c < limit && len(out) < n {
				out = append(out, base36[c%36])
			}
		}
	}
	return string(out)
}

// encodeBase62 encodes b as a big-endian number in base62, left-padded with
// '0' to width characters.
func encodeBase62(b []byte, width int) string {
	n := new(big.Int).SetBytes(b)
	out := []byte(n.Text(62))
	for len(out) < width {
		out = append([]byte{'0'}, out...)
	}
	return string(out)
}

func only(s, alphabet string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

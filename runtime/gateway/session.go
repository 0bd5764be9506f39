package gateway

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"
)

// A legacy (2025-11-25 and earlier) MCP session is not kept in memory: its
// state is sealed into the Mcp-Session-Id the client echoes, so any replica
// sharing the store, or this gateway after a restart, can take it up. The
// id is "ms1." + base64url(nonce ‖ AES-256-GCM(state)), the key derived
// with HKDF-SHA256 from the token-signing key every replica loads from the
// store; the sealed state binds the session to the API key that opened it.

// sessionState is what a legacy MCP session needs across requests.
type sessionState struct {
	KeyID    string `json:"k"`           // the API key that initialized the session
	Protocol string `json:"v"`           // negotiated protocol version
	Client   string `json:"c,omitempty"` // clientInfo.name, for the audit's agent
	Issued   int64  `json:"i"`           // unix seconds
	// Asks lists the requests the client declared it answers, for those an
	// upstream sends during a call: "s" sampling, "e" elicitation.
	Asks string `json:"a,omitempty"`
}

// sessionPrefix marks the format version of sealed session ids.
const sessionPrefix = "ms1."

// sessionTTL bounds a session's life: a sealed id cannot be revoked one by
// one, so it expires (the client then initializes again, as the MCP
// specification says a client does on 404).
const sessionTTL = 24 * time.Hour

var errBadSession = errors.New("unknown or expired MCP session")

// sessionSealer seals session state with a key derived from the current
// token-signing key.
type sessionSealer struct {
	mu    sync.Mutex
	kid   string
	aead  cipher.AEAD
	seeds func() (kid string, seed []byte)
}

func (z *sessionSealer) cipher() (cipher.AEAD, error) {
	kid, seed := z.seeds()
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.aead != nil && z.kid == kid {
		return z.aead, nil
	}
	key, err := hkdf.Key(sha256.New, seed, []byte(kid), "armoriq mcp session v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	z.kid, z.aead = kid, aead
	return aead, nil
}

// seal returns the session id carrying st.
func (z *sessionSealer) seal(st sessionState) (string, error) {
	aead, err := z.cipher()
	if err != nil {
		return "", err
	}
	plain, err := json.Marshal(st)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := aead.Seal(nonce, nonce, plain, []byte(sessionPrefix))
	return sessionPrefix + base64.RawURLEncoding.EncodeToString(out), nil
}

// open returns the state sealed in id, if this gateway (or a replica
// sharing its store) sealed it and it has not expired.
func (z *sessionSealer) open(id string, now time.Time) (sessionState, error) {
	var st sessionState
	rest, ok := strings.CutPrefix(id, sessionPrefix)
	if !ok || len(rest) > 2048 {
		return st, errBadSession
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return st, errBadSession
	}
	aead, err := z.cipher()
	if err != nil {
		return st, err
	}
	if len(raw) < aead.NonceSize()+aead.Overhead() {
		return st, errBadSession
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(sessionPrefix))
	if err != nil {
		return st, errBadSession
	}
	if err := json.Unmarshal(plain, &st); err != nil {
		return st, errBadSession
	}
	if age := now.Sub(time.Unix(st.Issued, 0)); age > sessionTTL || age < -time.Minute {
		return st, errBadSession
	}
	return st, nil
}

// newSessionSealer returns a sealer keyed by s's token-signing key.
func (s *Server) newSessionSealer() *sessionSealer {
	return &sessionSealer{seeds: func() (string, []byte) {
		k := s.signingKey()
		return k.ID, k.PrivateKey.Seed()
	}}
}

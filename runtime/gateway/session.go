package gateway

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
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

// sessionEncoding writes and reads the sealed bytes of a session id.
// Strict: a last character whose unused low bits are not zero is refused,
// so that one session has one id. Without it, up to 16 spellings of an id
// decode to the same bytes: each would be a session of its own to anything
// that tells sessions apart by their id (today the opened cache, which a
// client could fill with spellings of its one id, costing a decryption
// each).
var sessionEncoding = base64.RawURLEncoding.Strict()

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
	mu   sync.Mutex
	kid  string
	aead cipher.AEAD
	// keys returns the current token-signing key and its id; its seed
	// is copied out only when the id changes.
	keys func() (kid string, key ed25519.PrivateKey)
	// opened holds what ids sealed under kid opened to, so that a
	// session's every request does not decrypt and decode it again. It is
	// a function of the id's exact bytes and the key: who presents an id,
	// and whether the session expired, is checked on every request.
	opened map[string]sessionState
}

// maxOpened bounds sessionSealer.opened; when full it starts over.
const maxOpened = 4096

func (z *sessionSealer) cipher() (cipher.AEAD, error) {
	kid, priv := z.keys()
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.cipherLocked(kid, priv)
}

// cipherLocked is cipher with mu held and the key read.
func (z *sessionSealer) cipherLocked(kid string, priv ed25519.PrivateKey) (cipher.AEAD, error) {
	if z.aead != nil && z.kid == kid {
		return z.aead, nil
	}
	z.opened = nil // sealed under another key
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("no token-signing key to seal MCP sessions with")
	}
	key, err := hkdf.Key(sha256.New, priv.Seed(), []byte(kid), "armoriq mcp session v1", 32)
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
	return sessionPrefix + sessionEncoding.EncodeToString(out), nil
}

// open returns the state sealed in id, if this gateway (or a replica
// sharing its store) sealed it and it has not expired.
func (z *sessionSealer) open(id string, now time.Time) (sessionState, error) {
	st, err := z.unseal(id)
	if err != nil {
		return sessionState{}, err
	}
	if age := now.Sub(time.Unix(st.Issued, 0)); age > sessionTTL || age < -time.Minute {
		return sessionState{}, errBadSession
	}
	return st, nil
}

// unseal returns the state sealed in id under the current key, from
// opened if it was unsealed before.
func (z *sessionSealer) unseal(id string) (sessionState, error) {
	var st sessionState
	rest, ok := strings.CutPrefix(id, sessionPrefix)
	if !ok || len(rest) > 2048 {
		return st, errBadSession
	}
	kid, priv := z.keys()
	z.mu.Lock()
	aead, err := z.cipherLocked(kid, priv)
	if err != nil {
		z.mu.Unlock()
		return st, err
	}
	st, ok = z.opened[id]
	z.mu.Unlock()
	if ok {
		return st, nil
	}
	raw, err := sessionEncoding.DecodeString(rest)
	if err != nil {
		return st, errBadSession
	}
	if len(raw) < aead.NonceSize()+aead.Overhead() {
		return st, errBadSession
	}
	ns := aead.NonceSize()
	plain, err := aead.Open(raw[ns:ns], raw[:ns], raw[ns:], []byte(sessionPrefix)) // in place: raw is this call's own
	if err != nil {
		return st, errBadSession
	}
	if err := json.Unmarshal(plain, &st); err != nil {
		return st, errBadSession
	}
	z.mu.Lock()
	if z.kid == kid { // not rekeyed meanwhile
		if z.opened == nil || len(z.opened) >= maxOpened {
			z.opened = make(map[string]sessionState)
		}
		z.opened[id] = st
	}
	z.mu.Unlock()
	return st, nil
}

// newSessionSealer returns a sealer keyed by s's token-signing key.
func (s *Server) newSessionSealer() *sessionSealer {
	return &sessionSealer{keys: func() (string, ed25519.PrivateKey) {
		k := s.signingKey()
		return k.ID, k.PrivateKey
	}}
}

package gateway

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"sort"
)

// handleHealth answers the SDK's start-up probe. Without a key it reports
// liveness; with one it also checks the key (401 for a bad or revoked key).
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	out := map[string]any{"status": "ok", "service": "armoriq-gateway"}
	if presentedKey(r) != "" {
		c, err := s.authenticate(r.Context(), r)
		if err != nil {
			return err
		}
		out["key_id"], out["role"] = c.KeyID, c.Role
	}
	if ab := s.active.Load(); ab != nil {
		out["bundle_revision"] = ab.b.Manifest.Revision
	} else {
		out["bundle_revision"] = ""
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleKeysDocument publishes the token-verification keys (as hex, the
// form intent tokens carry, and as JWKs).
func (s *Server) handleKeysDocument(w http.ResponseWriter, r *http.Request) error {
	m := s.verifyKeys()
	active := s.signingKey().ID
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	keys := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		pub := []byte(m[id])
		status := "retired"
		if id == active {
			status = "active"
		}
		keys = append(keys, map[string]any{
			"kid": id, "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
			"x": base64.RawURLEncoding.EncodeToString(pub), "public_key": hex.EncodeToString(pub), "status": status,
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
	return nil
}

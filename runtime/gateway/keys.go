package gateway

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/armoriq/controlplane/runtime/identity"
	"github.com/armoriq/controlplane/runtime/store"
)

type keyView struct {
	ID    string     `json:"id"`
	Name  string     `json:"name"`
	Role  store.Role `json:"role"`
	Agent string     `json:"agent,omitempty"`
	// AssertUsers: calls with the key may name their end user in
	// X-Armoriq-User.
	AssertUsers bool       `json:"assert_users,omitempty"`
	Last4       string     `json:"last4"`
	CreatedAt   time.Time  `json:"created_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Key         string     `json:"key,omitempty"` // only in the answer to create
}

func viewKey(k store.APIKey) keyView {
	v := keyView{ID: k.ID, Name: k.Name, Role: k.Role, Agent: k.Agent, AssertUsers: k.AssertUsers, Last4: k.Last4, CreatedAt: k.CreatedAt.UTC()}
	if k.Revoked() {
		t := k.RevokedAt.UTC()
		v.RevokedAt = &t
	}
	return v
}

func (s *Server) handleCreateKey(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name  string     `json:"name"`
		Role  store.Role `json:"role"`
		Agent string     `json:"agent"`
		// AssertUsers lets an agent key name its calls' end user in
		// X-Armoriq-User (a service acting for its users).
		AssertUsers bool `json:"assert_users"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" {
		return errorf(KindInvalid, "name is required")
	}
	if len(req.Name) > 200 {
		return errorf(KindInvalid, "name is longer than 200 characters")
	}
	if err := identity.Check("name", req.Name, 200); err != nil {
		return errorf(KindInvalid, "%v", err)
	}
	if !req.Role.Valid() {
		return errorf(KindInvalid, "role %q is not one of admin, agent, viewer", req.Role)
	}
	req.Agent = strings.TrimSpace(req.Agent)
	if err := identity.Check("agent", req.Agent, identity.MaxAgent); err != nil {
		return errorf(KindInvalid, "%v", err)
	}
	if req.AssertUsers && req.Role != store.RoleAgent {
		return errorf(KindInvalid, "assert_users is for agent keys: a %s key makes no tool calls", req.Role)
	}
	full, id, hash := store.GenerateAPIKey()
	k := store.APIKey{ID: id, Name: req.Name, Role: req.Role, Agent: req.Agent, AssertUsers: req.AssertUsers, SecretHash: hash, Last4: store.APIKeyLast4(full), CreatedAt: s.now().UTC()}
	if err := s.store.CreateAPIKey(r.Context(), k); err != nil {
		return internal(err, "creating the key")
	}
	v := viewKey(k)
	v.Key = full
	s.log.Info("api key created", "id", id, "role", req.Role, "assert_users", req.AssertUsers, "by", callerFrom(r.Context()).KeyID)
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (s *Server) handleListKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.store.ListAPIKeys(r.Context())
	if err != nil {
		return &Error{Kind: KindUnavailable, Message: "cannot list keys", Err: err}
	}
	out := make([]keyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, viewKey(k))
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
	return nil
}

func (s *Server) handleRevokeKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	at, err := s.store.RevokeAPIKey(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(KindNotFound, "no API key with id %q", id)
	}
	if err != nil {
		return internal(err, "revoking the key")
	}
	// The store notifies every replica, this one included; apply it here at
	// once too so the very next request is refused.
	s.keys.forget(id)
	s.inflight.revokeKey(id)
	s.log.Info("api key revoked", "id", id, "by", callerFrom(r.Context()).KeyID)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "revoked_at": at.UTC()})
	return nil
}

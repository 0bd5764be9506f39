package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/approval"
	"github.com/armoriq/controlplane/runtime/console"
	"github.com/armoriq/controlplane/runtime/store"
)

// HumanConfig configures the human side of the gateway: approvals of held
// calls, their notifications, device logins and the console.
type HumanConfig struct {
	// ApprovalTTL is how long an approval stays open (default 1h).
	ApprovalTTL time.Duration
	// ApprovalsWebhook, when set, receives a JSON notice (Slack-compatible
	// "text") of every new approval and decision, signed with
	// WebhookSecret (HMAC-SHA256) when that is set.
	ApprovalsWebhook string
	WebhookSecret    string
	// PublicURL is the gateway's address as people reach it, for the
	// links in device logins and notifications; default: from the request.
	PublicURL string
	// DeviceTTL is how long a device login may wait (default 10 min);
	// DeviceInterval the poll interval it asks for (default 5 s).
	DeviceTTL      time.Duration
	DeviceInterval time.Duration
	// SessionTTL is how long a console session lasts (default 12h).
	SessionTTL time.Duration
	// DisableConsole leaves /console unserved.
	DisableConsole bool
}

// human is the Server's state for HumanConfig.
type human struct {
	cfg       HumanConfig
	approvals *approval.Service
	notify    *notifier
	// reconciler is the last report of a reconciler (reconcilerstatus.go).
	reconciler atomic.Pointer[console.ReconcilerStatus]
}

func (s *Server) initHuman(ctx context.Context) {
	c := s.cfg.Human
	if c.DeviceTTL <= 0 {
		c.DeviceTTL = 10 * time.Minute
	}
	if c.DeviceInterval <= 0 {
		c.DeviceInterval = 5 * time.Second
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 12 * time.Hour
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	s.human.cfg, s.human.approvals = c, approval.New(s.store, c.ApprovalTTL, s.now)
	if c.ApprovalsWebhook != "" {
		s.human.notify = newNotifier(c.ApprovalsWebhook, c.WebhookSecret, s.log)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.human.notify.run(ctx) }()
	}
	s.every(ctx, time.Minute, s.sweepHuman)
}

// sweepHuman expires open approvals past their time (so they read as
// expired everywhere and the webhook hears of it) and prunes old sessions
// and device logins.
func (s *Server) sweepHuman(ctx context.Context) {
	exp, err := s.human.approvals.Expire(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("expiring approvals failed", "error", err)
	}
	for _, a := range exp {
		s.notifyApproval("expired", a, "")
	}
	if _, err := s.store.PruneHuman(ctx, s.now().Add(-24*time.Hour)); err != nil && ctx.Err() == nil {
		s.log.Warn("pruning sessions and device logins failed", "error", err)
	}
}

// baseURL is the gateway's address for links shown to people.
func (s *Server) baseURL(r *http.Request) string {
	if s.human.cfg.PublicURL != "" {
		return s.human.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// callerIdentity is the approver or decider a request's key stands for.
func callerIdentity(c caller) approval.Approver {
	return approval.Approver{KeyID: c.KeyID, Name: c.Name, Role: c.Role}
}

// keyCaller returns the caller of a key id, refusing a missing or revoked key.
func (s *Server) keyCaller(ctx context.Context, id string) (caller, error) {
	k, ok := s.keys.get(id)
	if !ok {
		var err error
		k, err = s.store.GetAPIKey(ctx, id)
		if err != nil {
			return caller{}, err
		}
		s.keys.put(k)
	}
	if k.Revoked() {
		return caller{}, errorf(KindRevoked, "API key %s was revoked", id)
	}
	return caller{KeyID: k.ID, Name: k.Name, Role: k.Role}, nil
}

// roleRank orders roles for "never grant above your own": an admin grants
// any role, anyone else only their own.
func mayGrant(have, want store.Role) bool {
	return have == store.RoleAdmin || have == want
}

// createKey makes an API key as c (the console's form; the admin API has
// its own handler) and returns it with its full secret, shown once.
func (s *Server) createKey(ctx context.Context, c caller, name string, role store.Role, agent string) (store.APIKey, string, error) {
	name, agent = strings.TrimSpace(name), strings.TrimSpace(agent)
	switch {
	case name == "":
		return store.APIKey{}, "", errorf(KindInvalid, "name is required")
	case len(name) > 200 || len(agent) > 200:
		return store.APIKey{}, "", errorf(KindInvalid, "name and agent must be at most 200 characters")
	case strings.ContainsFunc(name+agent, isControl):
		return store.APIKey{}, "", errorf(KindInvalid, "name and agent must not contain control characters")
	case !role.Valid():
		return store.APIKey{}, "", errorf(KindInvalid, "role %q is not one of admin, agent, viewer", role)
	case agent != "" && role != store.RoleAgent:
		return store.APIKey{}, "", errorf(KindInvalid, "an agent identity is for agent keys only, not %s", role)
	}
	full, id, hash := store.GenerateAPIKey()
	k := store.APIKey{ID: id, Name: name, Role: role, SecretHash: hash, Last4: store.APIKeyLast4(full), CreatedAt: s.now().UTC()}
	k.Agent = agent
	if err := s.store.CreateAPIKey(ctx, k); err != nil {
		return store.APIKey{}, "", internal(err, "creating the key")
	}
	s.log.Info("api key created", "id", id, "role", role, "by", c.KeyID)
	return k, full, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// revokeKey revokes key id as c and applies it here at once.
func (s *Server) revokeKey(ctx context.Context, c caller, id string) (time.Time, error) {
	at, err := s.store.RevokeAPIKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return at, errorf(KindNotFound, "no API key with id %q", id)
	}
	if err != nil {
		return at, internal(err, "revoking the key")
	}
	s.keys.forget(id)
	s.inflight.revokeKey(id)
	s.log.Info("api key revoked", "id", id, "by", c.KeyID)
	return at, nil
}

// anyRole wraps h: the request needs a valid key of any role.
func (s *Server) anyRole(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.authenticate(r.Context(), r)
		if err != nil {
			return err
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, &c)))
	}
}

// approverIn reports whether email is named as an approver (directly, by
// domain or through a group) by any hold rule.
func approverIn(rules []bundle.Rule, groups []bundle.Group, email string) bool {
	members := map[string][]string{}
	for _, g := range groups {
		members[g.Name] = g.Members
	}
	match := func(entry string) bool {
		entry = strings.ToLower(strings.TrimSpace(entry))
		return entry == "*" || entry == email || strings.HasPrefix(entry, "*@") && strings.HasSuffix(email, entry[1:])
	}
	for _, r := range rules {
		if r.Effect != bundle.Hold {
			continue
		}
		for _, a := range r.Approvers {
			if match(a) {
				return true
			}
			for _, m := range members[a] {
				if match(m) {
					return true
				}
			}
		}
	}
	return false
}

// handleRevokeSelf is DELETE /v1/keys/self: any key may revoke itself
// (armoriq logout --revoke; a console sign-out by code).
func (s *Server) handleRevokeSelf(w http.ResponseWriter, r *http.Request) error {
	c := callerFrom(r.Context())
	at, err := s.revokeKey(r.Context(), c, c.KeyID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": c.KeyID, "revoked_at": at.UTC()})
	return nil
}

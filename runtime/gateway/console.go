package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/console"
	"github.com/armoriq/controlplane/runtime/store"
)

// HTTPStatus is the status e answers with (console.PublicError).
func (e *Error) HTTPStatus() int { s, _ := statusOf(e.Kind); return s }

// PublicMessage is what the caller may see of e (console.PublicError).
func (e *Error) PublicMessage() string {
	if e.Kind == KindInternal {
		return "internal error: see the gateway's log"
	}
	return e.Message
}

// consoleBackend is the gateway as the console sees it.
type consoleBackend struct{ s *Server }

var _ console.Backend = consoleBackend{}

func identityOf(c caller) console.Identity {
	return console.Identity{KeyID: c.KeyID, Name: c.Name, Role: c.Role}
}

func callerOf(id console.Identity) caller {
	return caller{KeyID: id.KeyID, Name: id.Name, Role: id.Role}
}

func (b consoleBackend) Authenticate(ctx context.Context, key string) (console.Identity, error) {
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", key)
	c, err := b.s.authenticate(ctx, r)
	return identityOf(c), err
}

func (b consoleBackend) Identity(ctx context.Context, keyID string) (console.Identity, error) {
	c, err := b.s.keyCaller(ctx, keyID)
	return identityOf(c), err
}

func (b consoleBackend) Overview(ctx context.Context) (console.Overview, error) {
	s := b.s
	var o console.Overview
	st, err := s.store.BundleStatus(ctx)
	if err != nil {
		return o, &Error{Kind: KindUnavailable, Message: "cannot read the bundle status", Err: err}
	}
	o.BundleError, o.BundleErrorAt = st.LastError, st.LastErrorAt
	o.Reconciler = s.human.reconciler.Load()
	if ab := s.active.Load(); ab != nil {
		m := ab.b.Manifest
		o.Revision, o.Sequence, o.CreatedAt, o.ActivatedAt = m.Revision, m.Sequence, m.CreatedAt, ab.activatedAt
		o.Compiler, o.Sources, o.Rules = m.Compiler, m.Sources, len(ab.b.Policy.Rules)
		states := s.serverStates()
		for _, sv := range ab.b.Servers {
			ss, ok := states[sv.ID]
			if !ok {
				ss.State = "unknown"
			}
			o.Servers = append(o.Servers, console.ServerState{ID: sv.ID, Transport: sv.Transport, State: ss.State, LastError: ss.LastError, Restarts: ss.Restarts})
		}
	}
	o.Decisions = map[store.Decision]int{}
	err = s.store.ExportAudit(ctx, store.AuditFilter{Since: s.now().Add(-time.Hour)}, func(r store.AuditRecord) error {
		if countsAsDecision(r) {
			o.Decisions[r.Decision]++
		}
		return nil
	})
	if err != nil {
		return o, &Error{Kind: KindUnavailable, Message: "cannot read the audit log", Err: err}
	}
	pending, err := s.human.approvals.List(ctx, store.ApprovalFilter{State: store.ApprovalPending, Limit: 1000})
	if err != nil {
		return o, approvalError(err)
	}
	for _, a := range pending {
		if a.State == store.ApprovalPending {
			o.PendingApprovals++
		}
	}
	o.PendingDevices, err = s.store.CountPendingDeviceLogins(ctx, s.now())
	if err != nil {
		return o, &Error{Kind: KindUnavailable, Message: "cannot count device logins", Err: err}
	}
	return o, nil
}

// countsAsDecision reports whether an audit record is a call's decision
// (not an approval event) for the overview's counts.
func countsAsDecision(r store.AuditRecord) bool {
	// A forwarded call is a request and an outcome record: count its
	// request; approval events are not calls.
	return r.Phase == store.PhaseDecision || r.Phase == store.PhaseRequest
}

func (b consoleBackend) Approvals(ctx context.Context, f store.ApprovalFilter) ([]store.Approval, error) {
	list, err := b.s.human.approvals.List(ctx, f)
	return list, approvalError(err)
}

func (b consoleBackend) Approval(ctx context.Context, id string) (store.Approval, error) {
	a, err := b.s.human.approvals.Get(ctx, id)
	return a, approvalError(err)
}

func (b consoleBackend) DecideApproval(ctx context.Context, who console.Identity, id string, approve bool, comment, link string) (store.Approval, error) {
	return b.s.decideApproval(ctx, callerOf(who), id, approve, comment, link)
}

func (b consoleBackend) Keys(ctx context.Context) ([]store.APIKey, error) {
	keys, err := b.s.store.ListAPIKeys(ctx)
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Message: "cannot list keys", Err: err}
	}
	return keys, nil
}

func (b consoleBackend) CreateKey(ctx context.Context, who console.Identity, name string, role store.Role, agent string) (string, string, error) {
	if who.Role != store.RoleAdmin {
		return "", "", errorf(KindForbidden, "only an admin creates keys")
	}
	k, full, err := b.s.createKey(ctx, callerOf(who), name, role, agent)
	return full, k.ID, err
}

func (b consoleBackend) RevokeKey(ctx context.Context, who console.Identity, id string) error {
	if who.Role != store.RoleAdmin && who.KeyID != id {
		return errorf(KindForbidden, "only an admin revokes keys")
	}
	// The console never locks everyone out: the last active admin key
	// stays (revoke it with the API once another exists).
	keys, err := b.s.store.ListAPIKeys(ctx)
	if err != nil {
		return &Error{Kind: KindUnavailable, Message: "cannot list keys", Err: err}
	}
	admins, target := 0, false
	for _, k := range keys {
		if k.Role == store.RoleAdmin && !k.Revoked() {
			admins++
			target = target || k.ID == id
		}
	}
	if target && admins == 1 {
		return errorf(KindConflict, "key %s is the last active admin key: create another admin key first", id)
	}
	_, err = b.s.revokeKey(ctx, callerOf(who), id)
	return err
}

func (b consoleBackend) Audit(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error) {
	recs, err := b.s.store.ListAudit(ctx, f)
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Message: "cannot read the audit log", Err: err}
	}
	return recs, nil
}

func (b consoleBackend) ExportAudit(ctx context.Context, f store.AuditFilter, fn func(store.AuditRecord) error) error {
	return b.s.store.ExportAudit(ctx, f, fn)
}

func (b consoleBackend) VerifyAudit(ctx context.Context) (store.VerifyReport, error) {
	return b.s.store.VerifyAudit(ctx)
}

func (b consoleBackend) Policy(ctx context.Context) (*bundle.Bundle, error) {
	return b.s.ActiveBundle(), nil
}

func (b consoleBackend) DeviceLogins(ctx context.Context) ([]store.DeviceLogin, error) {
	list, err := b.s.store.ListDeviceLogins(ctx, b.s.now().Add(-24*time.Hour))
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Message: "cannot list device logins", Err: err}
	}
	return list, nil
}

func (b consoleBackend) DecideDevice(ctx context.Context, who console.Identity, userCode string, approve bool, role store.Role, email string) error {
	_, err := b.s.decideDevice(ctx, callerOf(who), userCode, approve, role, email)
	return err
}

func (b consoleBackend) StartDevice(ctx context.Context, base, client string) (string, string, time.Duration, error) {
	st, err := b.s.startDevice(ctx, base, client)
	return st.DeviceCode, st.UserCode, b.s.human.cfg.DeviceInterval, err
}

func (b consoleBackend) PollDevice(ctx context.Context, deviceCode string) (console.Identity, string, error) {
	g, err := b.s.pollDevice(ctx, deviceCode, "console sign-in")
	var pe *devicePollError
	if errors.As(err, &pe) {
		return console.Identity{}, pe.Code, nil
	}
	if err != nil {
		return console.Identity{}, "", err
	}
	k, err := b.s.keyCaller(ctx, g.KeyID)
	return identityOf(k), "ok", err
}

// consoleHandler builds the console, or nil when it is disabled.
func (s *Server) consoleHandler() http.Handler {
	if s.cfg.Human.DisableConsole {
		return nil
	}
	c, err := console.New(console.Options{
		Backend: consoleBackend{s}, Sessions: s.store, Logger: s.log,
		SessionTTL: s.human.cfg.SessionTTL, Now: s.now,
	})
	if err != nil {
		s.log.Error("the console cannot start", "error", err)
		return nil
	}
	return c
}

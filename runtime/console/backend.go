// Package console is the operator console the gateway serves at /console:
// sign-in (an admin or viewer API key, or a device code another person
// approves), approvals of held calls, API keys, the audit log, the active
// policy and device logins. Pages are server-rendered html/template,
// embedded in the binary, and every action is a plain HTML form with a
// CSRF token: nothing needs JavaScript.
//
// The console reaches the gateway only through Backend, which the gateway
// implements; it never imports the gateway.
package console

import (
	"context"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
)

// Identity is who a session acts as: an API key.
type Identity struct {
	KeyID string
	Name  string
	Role  store.Role
}

// Backend is what the console needs of the gateway. Errors that implement
// PublicError are shown with their message and status; any other error
// shows as an internal error.
type Backend interface {
	// Authenticate checks a full API key.
	Authenticate(ctx context.Context, key string) (Identity, error)
	// Identity checks that a key still exists and is not revoked.
	Identity(ctx context.Context, keyID string) (Identity, error)

	Overview(ctx context.Context) (Overview, error)

	Approvals(ctx context.Context, f store.ApprovalFilter) ([]store.Approval, error)
	Approval(ctx context.Context, id string) (store.Approval, error)
	DecideApproval(ctx context.Context, who Identity, id string, approve bool, comment, link string) (store.Approval, error)

	Keys(ctx context.Context) ([]store.APIKey, error)
	// CreateKey makes a key and returns it whole (shown once) with its id.
	CreateKey(ctx context.Context, who Identity, name string, role store.Role, agent string) (full, id string, err error)
	RevokeKey(ctx context.Context, who Identity, id string) error

	Audit(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error)
	ExportAudit(ctx context.Context, f store.AuditFilter, fn func(store.AuditRecord) error) error
	VerifyAudit(ctx context.Context) (store.VerifyReport, error)

	// Policy returns the active bundle, nil when there is none.
	Policy(ctx context.Context) (*bundle.Bundle, error)

	DeviceLogins(ctx context.Context) ([]store.DeviceLogin, error)
	DecideDevice(ctx context.Context, who Identity, userCode string, approve bool, role store.Role, email string) error
	// StartDevice begins a device login for a browser signing in.
	StartDevice(ctx context.Context, base, client string) (deviceCode, userCode string, interval time.Duration, err error)
	// PollDevice answers a device login's poll: the key id once approved
	// (its secret is not needed: the session acts as the key), else a
	// RFC 8628 state: authorization_pending, slow_down, access_denied,
	// expired_token or invalid_grant.
	PollDevice(ctx context.Context, deviceCode string) (id Identity, state string, err error)
}

// Sessions keeps console sessions (store.Store satisfies it).
type Sessions interface {
	CreateSession(ctx context.Context, s store.Session) error
	GetSession(ctx context.Context, idHash []byte, at time.Time) (store.Session, error)
	DeleteSession(ctx context.Context, idHash []byte) error
}

// PublicError is an error whose message is safe to show and that knows its
// HTTP status.
type PublicError interface {
	error
	HTTPStatus() int
	PublicMessage() string
}

// Overview is the state the overview page shows.
type Overview struct {
	Revision    string
	Sequence    int64
	CreatedAt   time.Time
	ActivatedAt time.Time
	Compiler    string
	Sources     []bundle.Source
	Rules       int

	BundleError   string
	BundleErrorAt time.Time

	Servers []ServerState
	// Reconciler is the last status a reconciler reported, nil if none did.
	Reconciler *ReconcilerStatus

	// Decisions counts the last hour's decisions by kind.
	Decisions        map[store.Decision]int
	PendingApprovals int
	PendingDevices   int
}

// ServerState is one upstream server's adapter state.
type ServerState struct {
	ID        string
	Transport string
	State     string // starting, up, down, failed, unknown
	LastError string
	Restarts  int
}

// ReconcilerStatus is what a reconciler last said about this gateway.
type ReconcilerStatus struct {
	Source   string
	Revision string
	State    string // Ready, Waiting, Stalled
	Message  string
	At       time.Time
}

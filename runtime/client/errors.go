package client

import (
	"errors"
	"fmt"
)

// Kind classifies an *Error like the official SDKs' exception classes.
type Kind string

// The kinds, named after the SDKs' exceptions.
const (
	KindConfiguration  Kind = "configuration"   // ConfigurationException
	KindInvalidToken   Kind = "invalid_token"   // InvalidTokenException
	KindTokenExpired   Kind = "token_expired"   // TokenExpiredException
	KindPolicyBlocked  Kind = "policy_blocked"  // PolicyBlockedException
	KindPolicyHold     Kind = "policy_hold"     // PolicyHoldException
	KindIntentMismatch Kind = "intent_mismatch" // IntentMismatchException
	KindMCPInvocation  Kind = "mcp_invocation"  // MCPInvocationException
	KindRevoked        Kind = "revoked"         // InvalidTokenException, for a revoked key or token
	KindUnavailable    Kind = "unavailable"     // the gateway could not be reached or answered badly
)

// Sentinels to match with errors.Is. ErrRevoked is a kind of ErrInvalidToken:
// a revoked key or token matches both.
var (
	ErrConfiguration  = errors.New("configuration error")
	ErrInvalidToken   = errors.New("invalid token")
	ErrTokenExpired   = errors.New("token expired")
	ErrPolicyBlocked  = errors.New("blocked by policy")
	ErrPolicyHold     = errors.New("held by policy")
	ErrIntentMismatch = errors.New("intent mismatch")
	ErrMCPInvocation  = errors.New("mcp invocation failed")
	ErrRevoked        = errors.New("revoked")
	ErrUnavailable    = errors.New("gateway unavailable")
)

var sentinels = map[Kind]error{
	KindConfiguration:  ErrConfiguration,
	KindInvalidToken:   ErrInvalidToken,
	KindTokenExpired:   ErrTokenExpired,
	KindPolicyBlocked:  ErrPolicyBlocked,
	KindPolicyHold:     ErrPolicyHold,
	KindIntentMismatch: ErrIntentMismatch,
	KindMCPInvocation:  ErrMCPInvocation,
	KindRevoked:        ErrRevoked,
	KindUnavailable:    ErrUnavailable,
}

// Error is every error the client returns after New succeeds, and New's own.
type Error struct {
	Kind    Kind
	Status  int    // the HTTP status, 0 when no answer was read
	Message string // what happened, safe to show
	Reason  string // the policy's reason, for blocked and held calls
	// Metadata is the enforcement metadata of a blocked or held call, or the
	// policy_validation of a token refused at issue time.
	Metadata map[string]any
	// DelegationContext is the delegation_context of a held call: what an
	// approver needs to let it through.
	DelegationContext map[string]any
	MCP, Action       string // the call, when there was one
}

func (e *Error) Error() string {
	msg := string(e.Kind) + ": " + e.Message
	if e.Status != 0 {
		msg += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Reason != "" && e.Reason != e.Message {
		msg += ": " + e.Reason
	}
	return msg
}

// Is reports whether target is the sentinel of e's kind (or ErrInvalidToken
// for a revoked key or token).
func (e *Error) Is(target error) bool {
	if target == sentinels[e.Kind] {
		return true
	}
	return e.Kind == KindRevoked && target == ErrInvalidToken
}

func newError(kind Kind, status int, format string, args ...any) *Error {
	return &Error{Kind: kind, Status: status, Message: fmt.Sprintf(format, args...)}
}

package gateway

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies an error for the caller. Each kind maps to one HTTP status
// and one code in statusOf, the only place that mapping is made.
type Kind int

const (
	KindInternal        Kind = iota // a bug or storage failure; details only in the log
	KindInvalid                     // malformed request
	KindUnauthenticated             // no key, unknown key, bad token signature
	KindRevoked                     // revoked API key or token
	KindExpired                     // token past its validity
	KindForbidden                   // the key's role may not do this
	KindNotFound
	KindConflict         // a concurrent change won
	KindStale            // bundle older than the active one
	KindVerification     // bundle fails verification
	KindTooLarge         // body over the limit
	KindIntentMismatch   // the call is not the step the plan signed
	KindPolicyBlocked    // the policy denies the call
	KindPolicyHold       // the policy holds the call for approval
	KindSecretArgument   // an argument name looks like a secret
	KindUpstream         // the MCP server failed
	KindUpstreamTimeout  // the MCP server did not answer in time
	KindUnavailable      // shutting down, store down, no adapter
	KindNoBundle         // no policy bundle active
	KindMethodNotAllowed // wrong HTTP method
	KindTooManyRequests  // the key has too many requests running
	KindInputRequired    // the MCP server needs input the client cannot give
)

// Error is the gateway's one application error type. Message is safe to show
// to the caller; Err is the internal cause, logged but never sent.
type Error struct {
	Kind    Kind
	Message string
	Err     error
	// Enforcement is set for policy decisions the SDK must see as such.
	Enforcement *Enforcement
	// Challenge is the WWW-Authenticate value of a refused access token
	// (RFC 6750), sent with its 401 or 403.
	Challenge string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// errorf returns an *Error of kind k with a caller-safe message.
func errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// internal wraps an unexpected error: the caller sees a generic message.
func internal(err error, what string) *Error {
	return &Error{Kind: KindInternal, Message: "internal error while " + what, Err: err}
}

// Enforcement is the body the ArmorIQ SDKs read for block and hold decisions.
type Enforcement struct {
	Action            string         `json:"action"` // block | hold
	Reason            string         `json:"reason"`
	Metadata          map[string]any `json:"metadata,omitempty"`
	DelegationContext map[string]any `json:"delegation_context,omitempty"`
}

// statusOf maps a kind to its HTTP status and stable error code.
func statusOf(k Kind) (int, string) {
	switch k {
	case KindInvalid:
		return http.StatusBadRequest, "invalid"
	case KindUnauthenticated:
		return http.StatusUnauthorized, "unauthenticated"
	case KindRevoked:
		return http.StatusUnauthorized, "revoked"
	case KindExpired:
		return http.StatusUnauthorized, "token_expired"
	case KindForbidden:
		return http.StatusForbidden, "forbidden"
	case KindNotFound:
		return http.StatusNotFound, "not_found"
	case KindConflict:
		return http.StatusConflict, "conflict"
	case KindStale:
		return http.StatusConflict, "stale_bundle"
	case KindVerification:
		return http.StatusUnprocessableEntity, "verification_failed"
	case KindTooLarge:
		return http.StatusRequestEntityTooLarge, "too_large"
	case KindIntentMismatch:
		return http.StatusConflict, "intent_mismatch"
	case KindPolicyBlocked:
		return http.StatusForbidden, "policy_blocked"
	case KindPolicyHold:
		return http.StatusForbidden, "policy_hold"
	case KindSecretArgument:
		return http.StatusBadRequest, "secret_argument"
	case KindUpstream:
		return http.StatusBadGateway, "upstream_error"
	case KindUpstreamTimeout:
		return http.StatusGatewayTimeout, "upstream_timeout"
	case KindUnavailable:
		return http.StatusServiceUnavailable, "unavailable"
	case KindNoBundle:
		return http.StatusServiceUnavailable, "no_bundle"
	case KindMethodNotAllowed:
		return http.StatusMethodNotAllowed, "method_not_allowed"
	case KindTooManyRequests:
		return http.StatusTooManyRequests, "too_many_requests"
	case KindInputRequired:
		return http.StatusBadGateway, "input_required"
	default:
		return http.StatusInternalServerError, "internal"
	}
}

// asError turns any error into an *Error, treating unknown ones as internal.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return internal(err, "handling the request")
}

package gateway

import (
	"errors"
	"net/http"
	"strings"

	"github.com/armoriq/controlplane/runtime/identity"
	"github.com/armoriq/controlplane/runtime/intent"
)

// requestID is the request's X-Request-ID when it is usable, else a fresh
// one: a caller cannot make an audit record unwritable, or store a secret,
// through it.
// Request headers read on every call, spelled as net/http keeps them
// (canonical): Header.Get and Set then find them without rewriting, and
// allocating, the name first. On the wire their case does not matter.
const (
	headerAPIKey      = "X-Api-Key"           // X-API-Key
	headerRequestID   = "X-Request-Id"        // X-Request-ID
	headerProof       = "X-Csrg-Proof"        // X-CSRG-Proof
	headerValueDigest = "X-Csrg-Value-Digest" // X-CSRG-Value-Digest
)

func requestID(r *http.Request) string {
	return identity.RequestID(r.Header.Get(headerRequestID))
}

// checkName refuses a server or tool name that cannot enter a decision or
// a record (invalid UTF-8, control characters, too long, a credential).
func checkName(field, s string) error {
	if err := identity.Check(field, s, identity.MaxName); err != nil {
		return errorf(KindInvalid, "%v", err)
	}
	return nil
}

// tokenUserEmail is the key of the user a token was bound to at issue (the
// request's user_email), inside the token's signed policy object.
const tokenUserEmail = "user_email"

// endUserOf resolves the end user of a call made with tok, whose stored
// user is tokenUser, naming claims. The user is the token's bound email,
// else the one user the call names, else the token's user_id.
func endUserOf(tok *intent.Token, tokenUser string, claims []identity.Claim) (identity.Resolution, error) {
	bound, _ := tok.Policy[tokenUserEmail].(string)
	var res identity.Resolution
	var err error
	if bound != "" {
		res, err = identity.Resolve(bound, "", claims...)
	} else {
		res, err = identity.Resolve("", tokenUser, claims...)
	}
	var p *identity.Problem
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &p), errors.Is(err, identity.ErrConflict):
		return identity.Resolution{}, errorf(KindInvalid, "%v", err)
	case errors.Is(err, identity.ErrNotTokenUser):
		return identity.Resolution{}, errorf(KindUnauthenticated, "%v: a token issued with user_email acts only for that user", err)
	default:
		return identity.Resolution{}, internal(err, "resolving the end user")
	}
}

// tokenClient is the agent id the SDK named when it asked for tok (the
// first part of its identity "agent|user"): recorded, never trusted.
func tokenClient(tok *intent.Token) string {
	agent, _, _ := strings.Cut(tok.Identity, "|")
	return agent
}

// Package identity decides who is calling the gateway: it checks every
// identity string at the edge, before anything is decided or recorded, and
// resolves the end user of a call from what the token and the call name.
//
// The rules are written out in docs/gateway.md ("Who is calling"). In short:
// an identity string is valid UTF-8, holds no control or bidirectional
// formatting character, is bounded in length, and never looks like a
// credential; emails are trimmed and compared case-insensitively; the end
// user is the user a token was bound to, else the one email the call names,
// else the token's user_id.
package identity

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Length bounds of the identity strings a call may carry, in bytes.
const (
	MaxUser      = 320 // an email: 64 + 1 + 255
	MaxAgent     = 128
	MaxClient    = 256
	MaxRequestID = 128
	MaxName      = 256 // server and tool names
)

// Problem says why a string was refused at the edge.
type Problem struct {
	Field  string // where it came from: "user_id", "X-Armoriq-User", "params.user_email", …
	Reason string
}

func (p *Problem) Error() string { return p.Field + " " + p.Reason }

// Check reports whether s may enter a decision and an audit record as the
// value of field: valid UTF-8, no control, format-override or private-use
// character, at most max bytes, and nothing that looks like a credential
// (one of our API keys, an Authorization value). An empty s passes: whether
// a field is required is the caller's business.
func Check(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return &Problem{field, "is not valid UTF-8"}
	}
	if len(s) > max {
		return &Problem{field, fmt.Sprintf("is longer than %d bytes", max)}
	}
	for i, r := range s {
		if bad(r) {
			return &Problem{field, fmt.Sprintf("contains the control or formatting character %U at byte %d", r, i)}
		}
	}
	if LooksLikeCredential(s) {
		return &Problem{field, "looks like an API key or an Authorization value; credentials are never identities"}
	}
	return nil
}

// bad reports a rune no identity may contain: C0 and C1 controls (NUL,
// newline, escape…), the Unicode format characters that reorder or hide
// text (bidirectional overrides, zero-width joiners, the BOM), private-use
// and unassigned-surrogate code points.
func bad(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Co, r) ||
		unicode.Is(unicode.Cs, r) || r == utf8.RuneError || r == '\u2028' || r == '\u2029'
}

// credentialMarks are substrings that only a credential carries.
var credentialMarks = []string{"ak_live_", "ak_test_"}

// LooksLikeCredential reports whether s holds one of our API keys (anywhere
// in it) or is an Authorization value ("Bearer …", "Basic …").
func LooksLikeCredential(s string) bool {
	for _, m := range credentialMarks {
		if strings.Contains(s, m) {
			return true
		}
	}
	t := strings.TrimSpace(s)
	for _, scheme := range []string{"bearer ", "basic ", "token "} {
		if len(t) > len(scheme)+8 && strings.EqualFold(t[:len(scheme)], scheme) {
			return true
		}
	}
	return false
}

// NormalizeUser is the form a user is compared and recorded in: NFKC
// (compatibility forms folded: a fullwidth ＠ or ｂ is @ or b), trimmed,
// and, when it is an email (it holds an @), lower-cased with the domain's
// trailing dots removed. Other user ids keep their case.
func NormalizeUser(s string) string {
	if !isASCII(s) {
		s = norm.NFKC.String(s)
	}
	s = strings.TrimSpace(s)
	if strings.Contains(s, "@") {
		s = strings.TrimRightFunc(strings.ToLower(s), func(r rune) bool { return r == '.' || unicode.IsSpace(r) })
	}
	return s
}

// User checks a user named in field and returns its normal form. An empty
// or all-space value gives "". An email must look like one that cannot
// pass for another: one @ with text on both sides, an ASCII domain
// (internationalised domains in their xn-- form), and a local part whose
// letters are of one script (no Cyrillic о inside a Latin name).
func User(field, s string) (string, error) {
	if err := Check(field, s, MaxUser); err != nil {
		return "", err
	}
	u := NormalizeUser(s)
	if strings.ContainsFunc(u, unicode.IsSpace) {
		return "", &Problem{field, "contains white space inside it"}
	}
	if err := checkEmail(field, u); err != nil {
		return "", err
	}
	// Folding may have made characters Check refuses (rare, but NFKC is
	// not closed under it): check the form that is used.
	if u != s {
		if err := Check(field, u, MaxUser); err != nil {
			return "", err
		}
	}
	return u, nil
}

// checkEmail refuses a normalised email that could pass for another one.
// A string without @ is a user id, not an email, and passes.
func checkEmail(field, u string) error {
	at := strings.IndexByte(u, '@')
	if at < 0 {
		return nil
	}
	local, domain := u[:at], u[at+1:]
	switch {
	case strings.IndexByte(domain, '@') >= 0:
		return &Problem{field, "holds more than one @"}
	case local == "" || domain == "":
		return &Problem{field, "is not an email address: text is needed on both sides of the @"}
	case !isASCII(domain):
		return &Problem{field, "has a domain with non-ASCII characters: write an internationalised domain in its xn-- (A-label) form"}
	}
	if isASCII(local) {
		return nil
	}
	var first *unicode.RangeTable
	for _, r := range local {
		if !unicode.IsLetter(r) {
			continue
		}
		sc := scriptOf(r)
		if first == nil {
			first = sc
		} else if sc != first {
			return &Problem{field, fmt.Sprintf("mixes the letters of two scripts (%U at %q), which is how a name is made to look like another", r, local)}
		}
	}
	return nil
}

// scriptOf returns the Unicode script table of the letter r (nil if none).
func scriptOf(r rune) *unicode.RangeTable {
	if r < 0x80 {
		return unicode.Latin
	}
	for _, t := range unicode.Scripts {
		if t != unicode.Common && t != unicode.Inherited && unicode.Is(t, r) {
			return t
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// RequestID returns h when it is a usable request id (1 to MaxRequestID
// bytes of letters, digits and ._:-/+=, not a credential), else a new one.
// A caller cannot make a record unwritable, or store a secret, through it.
func RequestID(h string) string {
	if h != "" && len(h) <= MaxRequestID && !LooksLikeCredential(h) && strings.IndexFunc(h, notIDChar) < 0 {
		return h
	}
	return NewRequestID()
}

func notIDChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune("._:-/+=", r)
}

// NewRequestID returns a fresh request id: "req_", the time in
// milliseconds since 1970 (12 hex digits: 48 bits, good until the year
// 10889), then 10 random bytes (20 hex digits). Ids made later sort after:
// each one lands next to the previous in the audit log's index on
// request_id, where random ids dirtied a page of their own per call
// (docs/store.md); the random part keeps them unguessable and unique.
func NewRequestID() string {
	return newRequestID(time.Now())
}

func newRequestID(now time.Time) string {
	var b [4 + 32]byte
	copy(b[:], "req_")
	ms := uint64(now.UnixMilli())
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], ms)
	hex.Encode(b[4:16], t[2:])
	var r [10]byte
	_, _ = rand.Read(r[:])
	hex.Encode(b[16:], r[:])
	return string(b[:])
}

// A Claim is one place a call names its end user.
type Claim struct {
	Field string // where: "user_email", "params.user_email", "params._iam_context.email", "X-Armoriq-User"
	Value string
}

// Errors of Resolve. ErrConflict: the call names two different users.
// ErrNotTokenUser: the call names a user other than the one the token is
// bound to.
var (
	ErrConflict     = errors.New("the call names two different end users")
	ErrNotTokenUser = errors.New("the call names an end user the token was not issued for")
)

// Resolution is the outcome of Resolve.
type Resolution struct {
	User   string // the end user, normalised
	Source string // where it came from: "token user_email", a Claim's Field, or "token user_id"
}

// Resolve returns the end user of a call: the user the token was bound to
// (tokenEmail, its user_email at issue), else the one user the call's claims
// name, else the token's user_id. Every claim is checked (Check) and
// normalised; empty claims are ignored. Two different named users give
// ErrConflict; a named user other than a bound token's gives
// ErrNotTokenUser. Errors wrap a *Problem naming the field where one
// applies.
func Resolve(tokenEmail, tokenUserID string, claims ...Claim) (Resolution, error) {
	var named Resolution
	for _, c := range claims {
		u, err := User(c.Field, c.Value)
		if err != nil {
			return Resolution{}, err
		}
		if u == "" {
			continue
		}
		if named.User != "" && named.User != u {
			return Resolution{}, fmt.Errorf("%w: %s %q and %s %q", ErrConflict, named.Source, named.User, c.Field, u)
		}
		if named.User == "" {
			named = Resolution{User: u, Source: c.Field}
		}
	}
	if bound := NormalizeUser(tokenEmail); bound != "" {
		if named.User != "" && named.User != bound {
			return Resolution{}, fmt.Errorf("%w: %s %q, token issued for %q", ErrNotTokenUser, named.Source, named.User, bound)
		}
		return Resolution{User: bound, Source: "token user_email"}, nil
	}
	if named.User != "" {
		return named, nil
	}
	return Resolution{User: NormalizeUser(tokenUserID), Source: "token user_id"}, nil
}

// ParamClaims returns the end-user claims inside a call's parameters, as
// the SDKs inject them: params.user_email and params._iam_context.user_email
// or .email. A value of the wrong type is refused rather than ignored, so a
// call cannot hide a second user behind a type.
func ParamClaims(params map[string]any) ([]Claim, error) {
	var out []Claim
	add := func(field string, v any) error {
		switch x := v.(type) {
		case nil:
		case string:
			out = append(out, Claim{field, x})
		default:
			return &Problem{field, "must be a string"}
		}
		return nil
	}
	if params == nil {
		return nil, nil
	}
	if err := add("params.user_email", params["user_email"]); err != nil {
		return nil, err
	}
	switch iam := params["_iam_context"].(type) {
	case nil:
	case map[string]any:
		if err := add("params._iam_context.user_email", iam["user_email"]); err != nil {
			return nil, err
		}
		if err := add("params._iam_context.email", iam["email"]); err != nil {
			return nil, err
		}
	default:
		return nil, &Problem{"params._iam_context", "must be an object"}
	}
	return out, nil
}

package oauth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/armoriq/controlplane/runtime/identity"
)

// token is a JWS in compact form, parsed but not yet verified.
type token struct {
	alg, kid     string
	signingInput string // header.payload, as received
	sig          []byte
	claims       map[string]json.RawMessage
	iss          string // the unverified "iss", to choose the provider
}

// LooksLikeJWT reports whether s has the shape of a JWS in compact form:
// three base64url segments whose first decodes to a JSON object with a
// string "alg". It is cheap and checks nothing else; it tells a JWT from an
// API key, it does not make one trusted.
func LooksLikeJWT(s string) bool {
	if len(s) > MaxTokenSize {
		return false
	}
	h, _, _, ok := segments(s)
	if !ok {
		return false
	}
	hdr, err := decodeObject(h)
	if err != nil {
		return false
	}
	var alg string
	return json.Unmarshal(hdr["alg"], &alg) == nil
}

// segments splits s into its three segments, each non-empty but the
// signature's (checked later) and only of the base64url alphabet.
func segments(s string) (h, p, sig string, ok bool) {
	h, rest, ok1 := strings.Cut(s, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || !b64url(h) || !b64url(p) || !b64url(sig) {
		return "", "", "", false
	}
	return h, p, sig, true
}

// b64url reports whether s holds only the base64url alphabet. The decoder
// alone would skip \r and \n.
func b64url(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

var b64 = base64.RawURLEncoding.Strict()

// decodeObject decodes a base64url segment holding a JSON object. Member
// names are matched exactly (a map, unlike a struct, does not fold case).
func decodeObject(seg string) (map[string]json.RawMessage, error) {
	b, err := b64.DecodeString(seg)
	if err != nil {
		return nil, fmt.Errorf("not base64url without padding: %w", err)
	}
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("not a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return m, nil
}

// parse splits and decodes raw, checks the header, and reads the
// unverified issuer. It trusts nothing it reads.
func parse(raw string) (*token, *Error) {
	if raw == "" {
		return nil, invalid("the token is empty")
	}
	if len(raw) > MaxTokenSize {
		return nil, invalid("the token is longer than %d bytes", MaxTokenSize)
	}
	if strings.Count(raw, ".") == 4 {
		return nil, invalid("the token is encrypted (JWE); only signed JWTs are accepted")
	}
	h, p, s, ok := segments(raw)
	if !ok {
		return nil, invalid("the token is not a JWT: three base64url segments separated by dots are expected")
	}
	hdr, err := decodeObject(h)
	if err != nil {
		return nil, &Error{Code: CodeInvalidToken, Description: "the JWT header is " + err.Error()}
	}
	t := &token{signingInput: raw[:len(h)+1+len(p)]}
	if e := t.header(hdr); e != nil {
		return nil, e
	}
	if t.sig, err = b64.DecodeString(s); err != nil || len(t.sig) == 0 {
		return nil, invalid("the JWT signature is missing or not base64url without padding")
	}
	if t.claims, err = decodeObject(p); err != nil {
		return nil, &Error{Code: CodeInvalidToken, Description: "the JWT payload is " + err.Error()}
	}
	iss, ok, e := stringClaim(t.claims, "iss")
	if e != nil {
		return nil, e
	}
	if !ok || iss == "" {
		return nil, invalid("the token has no iss claim")
	}
	t.iss = iss
	return t, nil
}

// header reads the JOSE header. Key-locating members (jku, x5u, jwk, x5c)
// are never read.
func (t *token) header(hdr map[string]json.RawMessage) *Error {
	if err := json.Unmarshal(hdr["alg"], &t.alg); err != nil || hdr["alg"] == nil {
		return invalid("the JWT header has no alg string")
	}
	switch {
	case strings.EqualFold(t.alg, "none"):
		return invalid(`algorithm "none" is refused: the token is unsigned`)
	case strings.HasPrefix(strings.ToUpper(t.alg), "HS"):
		return invalid("algorithm %s is refused: an HMAC is never checked against an issuer's public key", quoteShort(t.alg))
	case !supportedAlgs[t.alg]:
		return invalid("algorithm %s is not supported", quoteShort(t.alg))
	}
	if raw, ok := hdr["kid"]; ok {
		if err := json.Unmarshal(raw, &t.kid); err != nil {
			return invalid("the JWT header's kid is not a string")
		}
	}
	if raw, ok := hdr["typ"]; ok {
		var typ string
		if err := json.Unmarshal(raw, &typ); err != nil {
			return invalid("the JWT header's typ is not a string")
		}
		switch strings.ToLower(typ) {
		case "at+jwt", "application/at+jwt", "jwt":
		default:
			return invalid("the JWT header's typ %s is not an access token's (at+jwt or JWT)", quoteShort(typ))
		}
	}
	for _, name := range []string{"crit", "cty", "b64"} {
		if _, ok := hdr[name]; ok {
			return invalid("the JWT header holds %q, an extension this gateway does not implement", name)
		}
	}
	return nil
}

// stringClaim returns claim name of m if present; a present value that is
// not a string is an error.
func stringClaim(m map[string]json.RawMessage, name string) (string, bool, *Error) {
	raw, ok := m[name]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, invalid("the %s claim is not a string", quoteShort(name))
	}
	return s, true, nil
}

// timeClaim returns the NumericDate claim name if present.
func timeClaim(m map[string]json.RawMessage, name string) (time.Time, bool, *Error) {
	raw, ok := m[name]
	if !ok {
		return time.Time{}, false, nil
	}
	bad := invalid("the %s claim is not a NumericDate (seconds since 1970)", name)
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return time.Time{}, false, bad
	}
	const maxDate = 253402300799 // 9999-12-31T23:59:59Z
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		if i < 0 || i > maxDate {
			return time.Time{}, false, bad
		}
		return time.Unix(i, 0), true, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxDate {
		return time.Time{}, false, bad
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// stringsClaim reads a claim that is one string or an array of strings.
// With split, a string is a space-separated list. An element that is not a
// string makes the token invalid: nothing is silently dropped.
func stringsClaim(m map[string]json.RawMessage, name string, split bool) ([]string, *Error) {
	raw, ok := m[name]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if split {
			return strings.Fields(s), nil
		}
		return []string{s}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, invalid("the %s claim is neither a string nor an array of strings", quoteShort(name))
	}
	return list, nil
}

// claims checks the verified payload against provider p at time now.
func (v *Verifier) claims(p Provider, t *token, now time.Time) (*Principal, *Error) {
	c := t.claims
	// aud
	auds, e := stringsClaim(c, "aud", false)
	if e != nil {
		return nil, e
	}
	if !slices.Contains(auds, p.Audience) {
		return nil, invalid("the token's audience is not this gateway (%s)", p.Audience)
	}
	// exp, nbf, iat
	exp, ok, e := timeClaim(c, "exp")
	if e != nil {
		return nil, e
	}
	if !ok {
		return nil, invalid("the token has no exp claim")
	}
	if !now.Before(exp.Add(v.skew)) {
		return nil, invalid("the token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if nbf, ok, e := timeClaim(c, "nbf"); e != nil {
		return nil, e
	} else if ok && now.Add(v.skew).Before(nbf) {
		return nil, invalid("the token is not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	if iat, ok, e := timeClaim(c, "iat"); e != nil {
		return nil, e
	} else if ok && now.Add(v.skew).Before(iat) {
		return nil, invalid("the token was issued in the future (%s)", iat.UTC().Format(time.RFC3339))
	}
	pr := &Principal{Provider: p.Name, Issuer: p.Issuer, Expiry: exp}
	// sub
	sub, ok, e := stringClaim(c, "sub")
	if e != nil {
		return nil, e
	}
	if !ok || sub == "" {
		return nil, invalid("the token has no sub claim")
	}
	if err := identity.Check("sub", sub, maxClaimString); err != nil {
		return nil, &Error{Code: CodeInvalidToken, Description: "the token's " + err.Error()}
	}
	pr.Subject = sub
	// the user
	user, ok, e := stringClaim(c, p.UserClaim)
	if e != nil {
		return nil, e
	}
	if ok {
		u, err := identity.User(p.UserClaim, user)
		if err != nil {
			return nil, &Error{Code: CodeInvalidToken, Description: "the token's user claim " + err.Error()}
		}
		pr.User = u
	}
	// the client
	for _, name := range []string{"client_id", "azp", "cid"} {
		id, ok, e := stringClaim(c, name)
		if e != nil {
			return nil, e
		}
		if ok && id != "" {
			if err := identity.Check(name, id, identity.MaxClient); err != nil {
				return nil, &Error{Code: CodeInvalidToken, Description: "the token's " + err.Error()}
			}
			pr.ClientID = id
			break
		}
	}
	// groups
	if p.GroupsClaim != "" {
		// A provider with too many groups for a token (Entra ID's
		// "overage") moves them to a distributed claim. Taking that as
		// "no groups" would slip past every deny rule on a group: refuse.
		if raw, ok := c["_claim_names"]; ok {
			var names map[string]json.RawMessage
			if json.Unmarshal(raw, &names) == nil && names[p.GroupsClaim] != nil {
				return nil, invalid("the token's %s claim is distributed (_claim_names), which this gateway does not fetch; configure the provider to put the groups in the token", quoteShort(p.GroupsClaim))
			}
		}
		groups, e := stringsClaim(c, p.GroupsClaim, false)
		if e != nil {
			return nil, e
		}
		if len(groups) > maxGroups {
			return nil, invalid("the token names more than %d groups", maxGroups)
		}
		for _, g := range groups {
			if err := identity.Check(p.GroupsClaim, g, maxClaimString); err != nil {
				return nil, &Error{Code: CodeInvalidToken, Description: "a group of the token's " + err.Error()}
			}
		}
		pr.Groups = sortedSet(groups)
	}
	// scopes
	scope, e := stringsClaim(c, "scope", true)
	if e != nil {
		return nil, e
	}
	scp, e := stringsClaim(c, "scp", true)
	if e != nil {
		return nil, e
	}
	scopes := append(scope, scp...)
	if len(scopes) > maxScopes {
		return nil, invalid("the token carries more than %d scopes", maxScopes)
	}
	for _, s := range scopes {
		if !validScope(s) {
			return nil, invalid("the token carries the scope %s, which is not a scope-token", quoteShort(s))
		}
	}
	pr.Scopes = sortedSet(scopes)
	var missing []string
	for _, s := range p.RequiredScopes {
		if _, found := slices.BinarySearch(pr.Scopes, s); !found {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return nil, &Error{
			Code:        CodeInsufficientScope,
			Description: fmt.Sprintf("the token lacks the scope %s", strings.Join(missing, " ")),
			Scope:       strings.Join(p.RequiredScopes, " "),
		}
	}
	return pr, nil
}

// sortedSet returns the non-empty strings of s, sorted, without duplicates.
func sortedSet(s []string) []string {
	s = slices.DeleteFunc(s, func(x string) bool { return x == "" })
	if len(s) == 0 {
		return nil
	}
	slices.Sort(s)
	return slices.Compact(s)
}

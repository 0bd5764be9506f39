package schema

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// The checks of identity_providers that armoriq.cue cannot make, and the
// messages for those it makes. An identity provider decides who a caller
// is, so its values are written out in the file (never $VAR references,
// which only the gateway's environment would resolve): a pull request shows
// exactly which issuer may sign in which users.

// issuerPattern is the issuer's pattern in armoriq.cue (a test keeps the two
// equal). Only a value it matches is checked further here, so that a value
// the schema refused is not reported twice.
var issuerPattern = regexp.MustCompile(`^(https://[^/?#@$\s]+|http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?)(/[^?#$\s]*)?$`)

// audiencePattern is the audience's pattern in armoriq.cue.
var audiencePattern = regexp.MustCompile(`^[^\s$]+$`)

// uriShape is an absolute URI's start: a scheme and a colon (RFC 3986).
var uriShape = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:.`)

// Bounds the gateway's token verifier puts on a provider's claim names and
// scopes: what validate accepts, the gateway runs.
const (
	maxClaimName = 128
	maxScope     = 256
)

// IsLoopbackHost reports whether host (a URL's Hostname) is one on which
// an issuer may use plain http: localhost, 127.0.0.1 or ::1.
func IsLoopbackHost(host string) bool {
	switch host {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	return false
}

// IssuerProblem explains why s is not a valid issuer, or returns "". An
// issuer is an absolute https URL without user info, query or fragment;
// http is allowed only on a loopback host, for local development.
func IssuerProblem(s string) string {
	if s == "" {
		return "must not be empty: the provider's issuer URL, as its tokens' iss claim writes it"
	}
	if strings.Contains(s, "$") {
		return "write the issuer out: a $VAR reference is not resolved here (who may sign in is reviewed with the config)"
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return "an issuer URL contains no white space"
	}
	u, err := url.Parse(s)
	if err != nil {
		return strings.TrimPrefix(err.Error(), "parse "+strconv.Quote(s)+": ")
	}
	switch {
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
		return "http is allowed only on localhost, 127.0.0.1 or [::1]: use https (tokens and keys fetched over http can be forged on the way)"
	case u.Scheme != "https" && u.Scheme != "http":
		return "want an absolute https:// URL"
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "missing host: want https://host/path"
	case u.User != nil:
		return "an issuer URL holds no user info (user@ or user:password@)"
	case u.RawQuery != "" || u.ForceQuery:
		return "an issuer URL has no query (?...)"
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "an issuer URL has no fragment (#...)"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("invalid port %q", p)
		}
	}
	if h := u.Hostname(); strings.Contains(h, ":") && net.ParseIP(h) == nil {
		return fmt.Sprintf("invalid host %q", h)
	}
	if !issuerPattern.MatchString(s) {
		return "want an absolute https URL without query or fragment (http only on localhost, 127.0.0.1 or [::1])"
	}
	return ""
}

// AudienceProblem explains why s is not a valid audience, or returns "".
// An audience that is not a URI is valid (Entra ID's v2 tokens carry the
// API's client id) but earns a warning: see AudienceNotURI.
func AudienceProblem(s string) string {
	const want = "the aud claim the provider puts in tokens for this gateway, such as https://gateway.example.com/mcp (RFC 8707)"
	switch {
	case s == "":
		return "must not be empty: want " + want
	case strings.Contains(s, "$"):
		return "write the audience out: a $VAR reference is not resolved here (who may sign in is reviewed with the config)"
	case !audiencePattern.MatchString(s):
		return "an audience contains no white space: want " + want
	}
	if uriShape.MatchString(s) {
		if _, err := url.Parse(s); err != nil {
			return strings.TrimPrefix(err.Error(), "parse "+strconv.Quote(s)+": ")
		}
	}
	return ""
}

// AudienceNotURI is the warning for an audience that is not a URI.
const AudienceNotURI = "not a URI: the MCP authorization spec has tokens name the gateway's resource URI (RFC 8707), such as https://gateway.example.com/mcp; keep it if your provider's tokens carry exactly this aud (Entra ID v2 tokens carry the API's client id)"

// providerHint is the message for a value of an identity provider that
// does not match its pattern in armoriq.cue; "" for the generic one.
func providerHint(key string, n *node) string {
	if n == nil || n.kind != kString {
		return ""
	}
	switch key {
	case "name":
		return "a provider name may contain only letters, digits, '-' and '_'"
	case "issuer":
		return IssuerProblem(n.str)
	case "audience":
		return AudienceProblem(n.str)
	case "user_claim", "groups_claim":
		return "want a claim name: not empty, no white space"
	case "required_scopes":
		return "a scope is one token of printable ASCII without spaces, quotes or backslashes (RFC 6749)"
	}
	return ""
}

// isAlgorithm reports whether labels name an entry of a provider's
// allowed_algorithms.
func isAlgorithm(labels []string) bool {
	return len(labels) == 4 && labels[0] == "identity_providers" && labels[2] == "allowed_algorithms"
}

// algorithmHint is the message for an algorithm the schema does not allow.
func algorithmHint(alg string) string {
	want := "want one of " + strings.Join(Algorithms, ", ")
	switch {
	case strings.EqualFold(alg, "none"):
		return fmt.Sprintf("algorithm %q is never allowed: a token with alg none has no signature, anyone can write one; %s", alg, want)
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return fmt.Sprintf("algorithm %q is never allowed: HMAC algorithms would check the token with a key the provider publishes, so anyone could sign one; %s", alg, want)
	}
	return fmt.Sprintf("unknown algorithm %q: %s (asymmetric signatures only)", alg, want)
}

// checkIdentityProviders reports duplicate names and issuers, duplicate or
// empty lists, and what the issuer and audience patterns let through but a
// URL parser refuses.
func checkIdentityProviders(root *node, ds *Diagnostics) {
	names := map[string]Pos{}
	issuers := map[string]Pos{}
	for i, p := range items(root.get("identity_providers")) {
		path := fmt.Sprintf("identity_providers[%d]", i)
		if n := p.get("name"); n != nil && n.kind == kString {
			if prev, dup := names[n.str]; dup {
				ds.errorf(n.pos, path+".name", "duplicate identity provider name %q (first at line %d)", n.str, prev.Line)
			} else {
				names[n.str] = n.pos
			}
		}
		if n := p.get("issuer"); n != nil && n.kind == kString && issuerPattern.MatchString(n.str) {
			if msg := IssuerProblem(n.str); msg != "" {
				ds.errorf(n.pos, path+".issuer", "invalid value %q: %s", n.str, msg)
			} else if prev, dup := issuers[n.str]; dup {
				ds.errorf(n.pos, path+".issuer", "issuer %q is already the issuer of the provider at line %d: a token's iss must name one provider", n.str, prev.Line)
			} else {
				issuers[n.str] = n.pos
			}
		}
		if n := p.get("audience"); n != nil && n.kind == kString && audiencePattern.MatchString(n.str) {
			if msg := AudienceProblem(n.str); msg != "" {
				ds.errorf(n.pos, path+".audience", "invalid value %q: %s", n.str, msg)
			} else if !uriShape.MatchString(n.str) {
				ds.warnf(n.pos, path+".audience", "audience %q is %s", n.str, AudienceNotURI)
			}
		}
		for _, k := range []string{"user_claim", "groups_claim"} {
			if n := p.get(k); n != nil && n.kind == kString && len(n.str) > maxClaimName {
				ds.errorf(n.pos, path+"."+k, "a claim name is at most %d bytes, this one is %d", maxClaimName, len(n.str))
			}
		}
		for j, n := range items(p.get("required_scopes")) {
			if n.kind == kString && len(n.str) > maxScope {
				ds.errorf(n.pos, fmt.Sprintf("%s.required_scopes[%d]", path, j), "a scope is at most %d bytes, this one is %d", maxScope, len(n.str))
			}
		}
		uniqueStrings(p.get("required_scopes"), path+".required_scopes", "scope", ds)
		if n := p.get("allowed_algorithms"); n != nil && n.kind == kList {
			if len(n.items) == 0 {
				ds.errorf(n.pos, path+".allowed_algorithms", "no algorithm is allowed, so no token would verify: list some, or leave the key out for the default (%s)", strings.Join(DefaultAlgorithms(), ", "))
			}
			uniqueStrings(n, path+".allowed_algorithms", "algorithm", ds)
		}
	}
}

// uniqueStrings reports a string listed twice in the list n.
func uniqueStrings(n *node, path, what string, ds *Diagnostics) {
	seen := map[string]Pos{}
	for j, it := range items(n) {
		if it.kind != kString {
			continue
		}
		if prev, dup := seen[it.str]; dup {
			ds.errorf(it.pos, fmt.Sprintf("%s[%d]", path, j), "duplicate %s %q (first at line %d, column %d)", what, it.str, prev.Line, prev.Col)
			continue
		}
		seen[it.str] = it.pos
	}
}

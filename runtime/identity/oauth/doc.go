// Package oauth makes the gateway an OAuth 2.1 resource server, as the MCP
// authorization specification asks: it verifies the JWT access tokens that
// configured identity providers issue (RFC 9068, RFC 7519, RFC 7515) and
// says who they name.
//
// # Trust model
//
// The only inputs trusted are the providers of the policy bundle (issuer,
// audience, claim names, required scopes, allowed algorithms), which were
// reviewed in git, and the keys each issuer publishes at the jwks_uri of its
// own discovery document, fetched over TLS. Nothing a token carries is
// believed before its signature has been checked against those keys:
//
//   - The provider is chosen by the exact "iss" of the still unverified
//     payload; the signature is then checked only with that issuer's keys, so
//     a token naming issuer A cannot be verified with issuer B's keys.
//   - The header's "alg" must be in the provider's allow list (never "none",
//     never an HMAC algorithm: a public key is never used as a shared
//     secret) and must agree with the key: its kty, its curve and, when the
//     key states one, its "alg". RSA keys shorter than 2048 bits, keys that
//     publish private material, and keys marked for another use are refused.
//   - Key-locating headers ("jku", "x5u", "jwk", "x5c") are never read: a
//     token cannot bring its own key. A "crit" header, a "cty" (nested or
//     non-JSON payloads) and a "b64" header are refused, since this package
//     implements none of those extensions.
//   - "typ", when present, must be "at+jwt", "application/at+jwt" (RFC 9068)
//     or "JWT" (what Okta, Entra ID and Keycloak write), compared without
//     case. ID tokens usually say "JWT" too; they are kept out by the
//     audience, which must be this gateway's resource URI (RFC 8707), not a
//     client id.
//   - "aud" (a string or an array) must hold Provider.Audience exactly,
//     byte for byte: no trailing-slash or case folding.
//   - "exp" is required; "exp", "nbf" and "iat" are judged with a small
//     clock skew (Options.Skew, 60 s by default). "sub" is required.
//   - The user claim (Provider.UserClaim, "email" by default) is checked with
//     identity.User: a malformed or look-alike email makes the token invalid,
//     it never becomes a different user. A token without the user claim
//     (client credentials) names no user. Groups and scopes are checked
//     like every identity string before they reach a decision or a record;
//     a groups claim that is not there but distributed (_claim_names, Entra
//     ID's overage) makes the token invalid, since reading it as "no groups"
//     would slip past deny rules on groups. An element of a wrong type in
//     groups, scope or aud makes the token invalid rather than being
//     dropped.
//
// # Keys
//
// Discovery ({issuer}/.well-known/openid-configuration, falling back to the
// RFC 8414 {origin}/.well-known/oauth-authorization-server{path}) and the
// JWKS are fetched lazily, on the first token of an issuer, and cached; a
// discovery document whose "issuer" differs from the configured issuer by a
// single byte is refused. Keys are kept for the Cache-Control max-age of the
// JWKS response, bounded to 5 minutes .. 24 hours (1 hour without one), and
// refreshed in the background of a call once stale. A token with an unknown
// "kid" makes the issuer's keys be fetched again at most once per
// Options.MinRefresh (30 s by default), and concurrent callers share that one
// fetch, so a flood of forged kids cannot make the gateway hammer the
// identity provider. A failed refresh keeps the keys already held. Every
// response is bounded to 1 MiB and every fetch to 5 seconds.
//
// Issuers, their jwks_uri and redirects must be https. The one exception is
// http to a loopback host (localhost, 127.0.0.0/8, ::1), for tests and for
// an identity provider on the same machine; nothing else travels in clear
// text.
package oauth

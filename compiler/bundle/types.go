package bundle

import "time"

// FormatVersion is the bundle format this package writes and reads.
const FormatVersion = 1

// Bundle is a compiled policy bundle: what a gateway runs.
type Bundle struct {
	Manifest Manifest
	Policy   Policy
	Servers  []Server
}

// Manifest describes where a bundle came from.
type Manifest struct {
	FormatVersion int    `json:"format_version"`
	Revision      string `json:"revision"` // git commit, or "sha256:<hex>" of the sources
	// CreatedAt is the commit time (or zero time for a content-hash
	// revision), never the wall clock, so builds are reproducible.
	CreatedAt time.Time `json:"created_at"`
	Compiler  string    `json:"compiler"` // armoriq version that compiled it
	Sources   []Source  `json:"sources"`
	// Sequence orders bundles for rollback protection: the commit time in
	// Unix seconds for git revisions; outside git, SOURCE_DATE_EPOCH or the
	// newest source file's modification time, or what the user gave
	// (compiler.Options.Sequence). A gateway refuses a bundle whose
	// Sequence is lower than the active one's, and so a bundle of
	// sequence 0 (written before every bundle had one) once a sequenced
	// one is active. Never negative.
	Sequence int64 `json:"sequence"`
}

// Source is one config file compiled into the bundle.
type Source struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Pos is a position in a source file, 1-based.
type Pos struct {
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	Col  int    `json:"col,omitempty"`
}

// Policy is the compiled policy: the SDK allow/deny lists and policy.rules in
// one form.
type Policy struct {
	Groups []Group `json:"groups,omitempty"`
	// IdentityProviders are the OAuth issuers whose access tokens the
	// gateway accepts, sorted by name, every default filled in. Absent in
	// bundles written before they existed (and when the config has none).
	IdentityProviders []IdentityProvider `json:"identity_providers,omitempty"`
	Rules             []Rule             `json:"rules"`
	// DefaultTTLSeconds is intent.ttl_seconds (0: the gateway's default).
	DefaultTTLSeconds int  `json:"default_ttl_seconds,omitempty"`
	RequireCSRG       bool `json:"require_csrg,omitempty"`
}

// Group is a named set of users: exact emails or "*@domain".
type Group struct {
	Name    string   `json:"name"`
	Members []string `json:"members"`
}

// IdentityProvider is an OAuth 2.0 / OpenID Connect issuer whose JWT
// access tokens the gateway accepts. The compiler fills in every default,
// so a gateway applies none: a bundle whose provider lacks a user claim or
// algorithms is malformed.
type IdentityProvider struct {
	Name     string `json:"name"`
	Issuer   string `json:"issuer"`   // exactly the tokens' iss
	Audience string `json:"audience"` // the aud the tokens must carry
	// UserClaim names the end user (an email, normalised like every email).
	UserClaim string `json:"user_claim"`
	// GroupsClaim lists the user's groups, joined with Policy.Groups by
	// name; "" when the provider's groups are not used.
	GroupsClaim string `json:"groups_claim,omitempty"`
	// RequiredScopes must all be in a token's scope; sorted.
	RequiredScopes []string `json:"required_scopes,omitempty"`
	// AllowedAlgorithms are the JWS algorithms accepted, a non-empty subset
	// of Algorithms; sorted.
	AllowedAlgorithms []string `json:"allowed_algorithms"`
}

// Algorithms are the JWS algorithms a provider may allow: asymmetric
// signatures only, never "none" or HMAC.
var Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Effects a rule can have.
const (
	Allow = "allow"
	Deny  = "deny"
	Hold  = "hold"
)

// Rule is one compiled rule. policy.allow entries compile to allow rules
// with no subject restriction, policy.deny entries to deny rules.
type Rule struct {
	// ID names the rule in decisions and audit records: its name if the
	// config gave one, else its config path ("policy.rules[2]", "policy.allow[0]").
	ID     string `json:"id"`
	Effect string `json:"effect"`
	// Tools are "server/tool" patterns, '*' and '?' globs allowed in each part.
	Tools  []string `json:"tools"`
	Users  []string `json:"users,omitempty"`  // emails or *@domain; empty = anyone
	Groups []string `json:"groups,omitempty"` // group names; empty = no group condition
	Agents []string `json:"agents,omitempty"` // agent ids; empty = any
	When   string   `json:"when,omitempty"`   // HCL expression over args, user, tool, server, time
	Reason string   `json:"reason,omitempty"`
	// Approvers (hold rules only) may approve a call the rule holds:
	// emails, "*@domain" or group names. Empty: any admin.
	Approvers []string `json:"approvers,omitempty"`
	Pos       Pos      `json:"pos"`
	// WhenPos is where the when expression starts in the source.
	WhenPos Pos `json:"when_pos,omitempty"`
}

// Server is one catalogue entry. It never holds secret values: credentials
// appear only as the $VAR names they are resolved from.
type Server struct {
	ID          string            `json:"id"`
	Transport   string            `json:"transport"` // http | stdio | plugin
	URL         string            `json:"url,omitempty"`
	Description string            `json:"description,omitempty"`
	ToolPrefix  string            `json:"tool_prefix"` // always | never | conditional
	Auth        *Auth             `json:"auth,omitempty"`
	Command     string            `json:"command,omitempty"`
	Args        []string          `json:"args,omitempty"`
	Env         map[string]string `json:"env,omitempty"` // values are literals or $VAR names
	Path        string            `json:"path,omitempty"`
	SHA256      string            `json:"sha256,omitempty"`
	// Protocol caps the MCP protocol version the server's adapter offers
	// it (armoriq.yaml's protocol); empty, and then absent from the JSON,
	// for the newest first, so a bundle without pins is what it was before
	// the field.
	Protocol string `json:"protocol,omitempty"`
}

// Auth is an upstream credential by reference.
type Auth struct {
	Type       string `json:"type"`                  // bearer | api_key
	ValueRef   string `json:"value_ref"`             // "$VAR" holding the token or key
	HeaderName string `json:"header_name,omitempty"` // for api_key; default X-API-Key
}

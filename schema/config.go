package schema

// Pos is a position in a source file, 1-based. A zero Pos means "unknown".
type Pos struct {
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	Col  int    `json:"col,omitempty"`
}

// Config is a loaded, validated armoriq.yaml (or armoriq.hcl). Field names
// follow the file's keys. Values may hold unresolved $VAR references: they
// are resolved only where they are used, never here.
type Config struct {
	Version     string    `json:"version"`
	Identity    *Identity `json:"identity,omitempty"`
	Environment string    `json:"environment,omitempty"` // sandbox | production
	Proxy       *Proxy    `json:"proxy,omitempty"`
	Servers     []Server  `json:"mcp_servers,omitempty"`
	Groups      []Group   `json:"groups,omitempty"` // in file order; the file writes a map
	Policy      Policy    `json:"policy"`
	Intent      *Intent   `json:"intent,omitempty"`
	Tests       []Test    `json:"tests,omitempty"`
	Gateways    []Gateway `json:"gateways,omitempty"`
	// IdentityProviders are the OAuth issuers whose access tokens the
	// gateway accepts, with their defaults applied.
	IdentityProviders []IdentityProvider `json:"identity_providers,omitempty"`

	// Sources are the files the config was loaded from, in load order.
	Sources []Source `json:"-"`
}

// Source is one file a Config was loaded from.
type Source struct {
	Path   string // as given to the loader
	SHA256 string // hex digest of the file's bytes
	Data   []byte
}

// Identity is the SDK's identity block.
type Identity struct {
	APIKey  string `json:"api_key,omitempty"` // usually "$ARMORIQ_API_KEY"
	UserID  string `json:"user_id,omitempty"`
	AgentID string `json:"agent_id,omitempty"`
}

// Proxy is the SDK's proxy block.
type Proxy struct {
	URL        string `json:"url,omitempty"`
	Timeout    int    `json:"timeout,omitempty"`     // seconds
	MaxRetries int    `json:"max_retries,omitempty"` // SDK retries
}

// Transport names how the gateway reaches an MCP server.
const (
	TransportHTTP   = "http"
	TransportStdio  = "stdio"
	TransportPlugin = "plugin"
)

// ProtocolVersions returns the MCP protocol versions a server's protocol
// may name (armoriq.cue's #ProtocolVersion), newest first: those the
// built-in adapters speak.
func ProtocolVersions() []string {
	return []string{"2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}
}

// Tool prefix modes.
const (
	PrefixAlways      = "always"
	PrefixNever       = "never"
	PrefixConditional = "conditional"
)

// Server is one entry of mcp_servers.
type Server struct {
	ID          string            `json:"id"`
	URL         string            `json:"url,omitempty"`
	Description string            `json:"description,omitempty"`
	Auth        *Auth             `json:"auth,omitempty"` // nil for "none"
	Transport   string            `json:"transport"`      // defaulted to "http"
	Command     string            `json:"command,omitempty"`
	Args        []string          `json:"args,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Path        string            `json:"path,omitempty"`   // plugin binary
	SHA256      string            `json:"sha256,omitempty"` // pinned plugin digest
	ToolPrefix  string            `json:"tool_prefix"`      // defaulted to "conditional"
	// Protocol caps the MCP protocol version the adapter offers the
	// server, one of ProtocolVersions; empty: the newest first.
	Protocol string `json:"protocol,omitempty"`
	Pos      Pos    `json:"-"` // position of the entry
}

// Auth is an MCP server's upstream credential. Secret values are normally
// $VAR references.
type Auth struct {
	Type       string `json:"type"` // bearer | api_key
	Token      string `json:"token,omitempty"`
	APIKey     string `json:"api_key,omitempty"`
	HeaderName string `json:"header_name,omitempty"`
}

// Group is a named set of users: exact emails or "*@domain".
type Group struct {
	Name    string   `json:"name"`
	Members []string `json:"members"`
	Pos     Pos      `json:"-"`
}

// Policy holds the SDK's allow/deny lists and our rules.
type Policy struct {
	Allow []Ref  `json:"allow,omitempty"`
	Deny  []Ref  `json:"deny,omitempty"`
	Rules []Rule `json:"rules,omitempty"`
}

// Ref is a tool reference as written ("server/tool" or "server.tool", globs
// allowed) with its normalized slash form.
type Ref struct {
	Raw    string `json:"raw"`
	Server string `json:"server"` // may be a glob
	Tool   string `json:"tool"`   // may be a glob
	Pos    Pos    `json:"-"`
}

// String returns the canonical "server/tool" form.
func (r Ref) String() string { return r.Server + "/" + r.Tool }

// Effects of a policy rule and outcomes of a decision.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
	EffectHold  = "hold"
)

// Rule is one entry of policy.rules.
type Rule struct {
	Name   string   `json:"name,omitempty"`
	Effect string   `json:"effect"`
	Tools  []Ref    `json:"tools"`
	Users  []string `json:"users,omitempty"`  // emails or *@domain; empty = anyone
	Groups []string `json:"groups,omitempty"` // names of Config.Groups
	Agents []string `json:"agents,omitempty"` // agent ids; empty = any
	When   string   `json:"when,omitempty"`   // HCL expression
	Reason string   `json:"reason,omitempty"`
	// Approvers (hold rules only): emails, *@domain or group names that
	// may approve a held call; empty means any admin.
	Approvers []string `json:"approvers,omitempty"`
	Pos       Pos      `json:"-"` // position of the rule
	// WhenPos is the position of the when expression's first character, so
	// HCL diagnostics inside it can be mapped back to the user's file.
	WhenPos Pos `json:"-"`
	// WhenIndent is the column at which the later lines of a multi-line
	// when text start in the file (a YAML block scalar, an HCL <<- heredoc),
	// or 0. Rule.WhenFilePos uses it.
	WhenIndent int `json:"-"`
}

// Intent is the SDK's intent block.
type Intent struct {
	TTLSeconds  int  `json:"ttl_seconds,omitempty"`
	RequireCSRG bool `json:"require_csrg,omitempty"`
}

// Test is one policy test case.
type Test struct {
	Name   string         `json:"name,omitempty"`
	User   string         `json:"user"`
	Groups []string       `json:"groups,omitempty"`
	Agent  string         `json:"agent,omitempty"`
	Tool   Ref            `json:"tool"`
	Args   map[string]any `json:"args,omitempty"`
	Expect string         `json:"expect"` // allow | deny | hold
	// Approvers, when set, must be exactly who may approve the held call.
	Approvers []string `json:"approvers,omitempty"`
	Pos       Pos      `json:"-"`
}

// Gateway is a reconcile target.
type Gateway struct {
	Name   string `json:"name,omitempty"`
	URL    string `json:"url"`
	APIKey string `json:"api_key,omitempty"` // a $VAR reference
	Pos    Pos    `json:"-"`
}

// DefaultUserClaim is the claim an identity provider's tokens name the end
// user by when the config gives no user_claim.
const DefaultUserClaim = "email"

// Algorithms are the JWS algorithms an identity provider may allow:
// asymmetric signatures only. "none" and the HMAC algorithms (HS256, ...)
// are never accepted: an HMAC "signature" checked with a public key is
// forgeable by anyone who has the key.
var Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// DefaultAlgorithms returns the algorithms an identity provider allows when
// the config gives no allowed_algorithms (a new slice each call).
func DefaultAlgorithms() []string { return []string{"RS256", "ES256", "PS256", "EdDSA"} }

// IdentityProvider is one entry of identity_providers: an OAuth 2.0 /
// OpenID Connect issuer whose JWT access tokens the gateway accepts.
// UserClaim and AllowedAlgorithms hold their defaults when the file leaves
// them out.
type IdentityProvider struct {
	Name              string   `json:"name"`
	Issuer            string   `json:"issuer"`
	Audience          string   `json:"audience"`
	UserClaim         string   `json:"user_claim"`
	GroupsClaim       string   `json:"groups_claim,omitempty"`
	RequiredScopes    []string `json:"required_scopes,omitempty"`
	AllowedAlgorithms []string `json:"allowed_algorithms"`
	Pos               Pos      `json:"-"` // position of the entry
}

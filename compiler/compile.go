package compiler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/schema"
)

// Options are the inputs of a compile that do not come from the config.
type Options struct {
	// Revision is the git commit the config was read at. Empty means the
	// sources are not (cleanly) in git: the revision is then
	// "sha256:<hex>" of their contents (see ContentRevision).
	Revision string
	// CreatedAt is the commit time, never the wall clock, so that the same
	// commit always compiles to the same bundle. Zero is allowed.
	CreatedAt time.Time
	// CompilerVersion is the armoriq version, recorded in the manifest.
	CompilerVersion string
	// Sequence, when not 0, is the manifest's sequence (rollback
	// protection); otherwise it is CreatedAt in Unix seconds, or 0 when
	// CreatedAt is zero. Outside git, LocalSequence gives one.
	Sequence int64
}

// Compile builds the bundle for cfg. The config must have passed schema
// validation; Compile adds the checks that only matter for what is written
// into a bundle, chiefly that no secret value is: credentials must be $VAR
// references. Its error, if any, is a schema.Diagnostics holding every
// problem with its position.
func Compile(cfg *schema.Config, opts Options) (*bundle.Bundle, error) {
	if cfg == nil {
		return nil, schema.Diagnostics{{Severity: schema.SeverityError, Summary: "no config to compile"}}
	}
	c := &compilation{cfg: cfg}
	b := &bundle.Bundle{
		Manifest: c.manifest(opts),
		Policy:   c.policy(),
		Servers:  c.servers(),
	}
	c.diags.Sort()
	if c.diags.HasErrors() {
		return nil, c.diags
	}
	return b, nil
}

// compilation collects the diagnostics of one Compile.
type compilation struct {
	cfg   *schema.Config
	diags schema.Diagnostics
}

func (c *compilation) errorf(pos schema.Pos, path, format string, args ...any) {
	c.diags = append(c.diags, schema.Diagnostic{
		Severity: schema.SeverityError,
		Pos:      pos,
		Path:     path,
		Summary:  fmt.Sprintf(format, args...),
	})
}

func (c *compilation) manifest(opts Options) bundle.Manifest {
	m := bundle.Manifest{
		FormatVersion: bundle.FormatVersion,
		Revision:      opts.Revision,
		Compiler:      opts.CompilerVersion,
		Sources:       []bundle.Source{},
	}
	if !opts.CreatedAt.IsZero() {
		m.CreatedAt = opts.CreatedAt.UTC().Truncate(time.Second)
		m.Sequence = m.CreatedAt.Unix()
	}
	if opts.Sequence != 0 {
		m.Sequence = opts.Sequence
	}
	for _, s := range c.cfg.Sources {
		m.Sources = append(m.Sources, bundle.Source{Path: filepath.ToSlash(s.Path), SHA256: s.SHA256})
	}
	if m.Revision == "" {
		m.Revision = ContentRevision(c.cfg)
	}
	return m
}

// ContentRevision is the revision of a config that is not committed to git:
// "sha256:" and the SHA-256 of its one source file, the same digest
// sha256sum prints. With several sources it is the SHA-256 of their hex
// digests, one per line; with none (a Config built in code) the SHA-256 of
// the config's JSON form.
func ContentRevision(cfg *schema.Config) string {
	switch len(cfg.Sources) {
	case 0:
		data, _ := json.Marshal(cfg)
		return "sha256:" + sha256Hex(data)
	case 1:
		if s := cfg.Sources[0]; s.SHA256 != "" {
			return "sha256:" + s.SHA256
		}
	}
	var lines strings.Builder
	for _, s := range cfg.Sources {
		h := s.SHA256
		if h == "" {
			h = sha256Hex(s.Data)
		}
		lines.WriteString(h + "\n")
	}
	return "sha256:" + sha256Hex([]byte(lines.String()))
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (c *compilation) policy() bundle.Policy {
	cfg := c.cfg
	p := bundle.Policy{Rules: []bundle.Rule{}}
	for _, g := range cfg.Groups {
		p.Groups = append(p.Groups, bundle.Group{Name: g.Name, Members: normalizeEmails(g.Members)})
	}
	p.IdentityProviders = identityProviders(cfg.IdentityProviders)
	if cfg.Intent != nil {
		p.DefaultTTLSeconds = cfg.Intent.TTLSeconds
		p.RequireCSRG = cfg.Intent.RequireCSRG
	}
	for _, l := range []struct {
		name   string
		refs   []schema.Ref
		effect string
	}{{"allow", cfg.Policy.Allow, bundle.Allow}, {"deny", cfg.Policy.Deny, bundle.Deny}} {
		for i, ref := range l.refs {
			p.Rules = append(p.Rules, bundle.Rule{
				ID:     fmt.Sprintf("policy.%s[%d]", l.name, i),
				Effect: l.effect,
				Tools:  []string{ref.String()},
				Pos:    bundlePos(ref.Pos),
			})
		}
	}
	groups := map[string]bool{}
	for _, g := range cfg.Groups {
		groups[g.Name] = true
	}
	names := map[string]string{} // rule name → path of its first use
	for i, r := range cfg.Policy.Rules {
		path := fmt.Sprintf("policy.rules[%d]", i)
		id := path
		if r.Name != "" {
			if prev, dup := names[r.Name]; dup {
				c.errorf(r.Pos, path+".name", "duplicate rule name %q (also %s): rule names identify decisions in the audit log", r.Name, prev)
			}
			if pathLike.MatchString(r.Name) {
				c.errorf(r.Pos, path+".name", "rule name %q looks like the path of a rule: pick another name", r.Name)
			}
			names[r.Name] = path
			id = r.Name
		}
		switch r.Effect {
		case bundle.Allow, bundle.Deny, bundle.Hold:
		default:
			c.errorf(r.Pos, path+".effect", "unknown effect %q: want allow, deny or hold", r.Effect)
		}
		if len(r.Tools) == 0 {
			c.errorf(r.Pos, path+".tools", "a rule needs at least one tool pattern")
		}
		for _, g := range r.Groups {
			if !groups[g] {
				c.errorf(r.Pos, path+".groups", "unknown group %q", g)
			}
		}
		tools := make([]string, 0, len(r.Tools))
		for _, t := range r.Tools {
			tools = append(tools, t.String())
		}
		p.Rules = append(p.Rules, bundle.Rule{
			ID:      id,
			Effect:  r.Effect,
			Tools:   tools,
			Users:   nilIfEmpty(normalizeEmails(r.Users)),
			Groups:  r.Groups,
			Agents:  r.Agents,
			When:    r.When,
			Reason:  r.Reason,
			Pos:     bundlePos(r.Pos),
			WhenPos: bundlePos(r.WhenPos),

			Approvers: r.Approvers,
		})
	}
	return p
}

// identityProviders compiles identity_providers with every default filled
// in (the gateway applies none), sorted by name, scopes and algorithms
// sorted: the bundle shows exactly who may sign in, and equal configs give
// equal bundles.
func identityProviders(ps []schema.IdentityProvider) []bundle.IdentityProvider {
	if len(ps) == 0 {
		return nil
	}
	out := make([]bundle.IdentityProvider, 0, len(ps))
	for _, p := range ps {
		bp := bundle.IdentityProvider{
			Name:              p.Name,
			Issuer:            p.Issuer,
			Audience:          p.Audience,
			UserClaim:         p.UserClaim,
			GroupsClaim:       p.GroupsClaim,
			RequiredScopes:    sortedSet(p.RequiredScopes),
			AllowedAlgorithms: sortedSet(p.AllowedAlgorithms),
		}
		if bp.UserClaim == "" {
			bp.UserClaim = schema.DefaultUserClaim
		}
		if p.AllowedAlgorithms == nil {
			bp.AllowedAlgorithms = sortedSet(schema.DefaultAlgorithms())
		}
		out = append(out, bp)
	}
	slices.SortFunc(out, func(a, b bundle.IdentityProvider) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// sortedSet returns l sorted without duplicates, nil if empty.
func sortedSet(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return slices.Compact(s)
}

func (c *compilation) servers() []bundle.Server {
	out := []bundle.Server{}
	for i, s := range c.cfg.Servers {
		path := fmt.Sprintf("mcp_servers[%d]", i)
		bs := bundle.Server{
			ID:          s.ID,
			Transport:   s.Transport,
			URL:         s.URL,
			Description: s.Description,
			ToolPrefix:  s.ToolPrefix,
			Command:     s.Command,
			Args:        s.Args,
			Path:        s.Path,
			SHA256:      s.SHA256,
			Protocol:    s.Protocol,
		}
		if bs.Transport == "" {
			bs.Transport = schema.TransportHTTP
		}
		if bs.ToolPrefix == "" {
			bs.ToolPrefix = schema.PrefixConditional
		}
		if u, err := url.Parse(s.URL); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				c.errorf(s.Pos, path+".url", "literal secret: the URL holds a password; put the credential in auth with a $VAR reference")
			}
		}
		if s.Auth != nil {
			bs.Auth = c.auth(s.Auth, s.Pos, path+".auth")
		}
		if len(s.Env) > 0 {
			bs.Env = make(map[string]string, len(s.Env))
			keys := make([]string, 0, len(s.Env))
			for k := range s.Env {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				v := s.Env[k]
				if secretName.MatchString(k) && v != "" && !isVarRef(v) {
					c.errorf(s.Pos, path+".env."+k, "literal secret: use a $VAR reference (a bundle never holds secret values)")
				}
				bs.Env[k] = v
			}
		}
		out = append(out, bs)
	}
	return out
}

// pathLike matches the ids Compile gives unnamed rules.
var pathLike = regexp.MustCompile(`^policy\.(allow|deny|rules)\[[0-9]+\]$`)

// secretName matches environment variable names whose values are secrets.
var secretName = regexp.MustCompile(`(?i)token|secret|passw(or)?d|key|credential`)

func (c *compilation) auth(a *schema.Auth, pos schema.Pos, path string) *bundle.Auth {
	ba := &bundle.Auth{Type: a.Type, HeaderName: a.HeaderName}
	for _, f := range []struct{ name, value string }{{"token", a.Token}, {"api_key", a.APIKey}} {
		if f.value != "" && !isVarRef(f.value) {
			c.errorf(pos, path+"."+f.name, "literal secret: use a $VAR reference (a bundle never holds secret values)")
		}
	}
	switch a.Type {
	case "bearer":
		ba.ValueRef = normalizeRef(a.Token)
		if a.Token == "" {
			c.errorf(pos, path+".token", "bearer auth needs a token: a $VAR reference")
		}
	case "api_key":
		ba.ValueRef = normalizeRef(a.APIKey)
		if ba.HeaderName == "" {
			ba.HeaderName = "X-API-Key"
		}
		if a.APIKey == "" {
			c.errorf(pos, path+".api_key", "api_key auth needs an api_key: a $VAR reference")
		}
	default:
		c.errorf(pos, path+".type", "unknown auth type %q: want bearer or api_key", a.Type)
	}
	return ba
}

var varRef = regexp.MustCompile(`^\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})$`)

// isVarRef reports whether s is exactly one $NAME or ${NAME} reference.
func isVarRef(s string) bool { return varRef.MatchString(s) }

// normalizeRef writes a reference as $NAME, the one form gateways resolve.
func normalizeRef(s string) string {
	m := varRef.FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return "$" + m[1] + m[2]
}

func bundlePos(p schema.Pos) bundle.Pos {
	return bundle.Pos{File: filepath.ToSlash(p.File), Line: p.Line, Col: p.Col}
}

// normalizeEmails writes users and group members the way the engine
// compares them (policy.NormalizeEmail: trimmed, lower case), so that the
// bundle shows what is enforced. Never nil.
func normalizeEmails(l []string) []string {
	out := make([]string, len(l))
	for i, u := range l {
		out[i] = policy.NormalizeEmail(u)
	}
	return out
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

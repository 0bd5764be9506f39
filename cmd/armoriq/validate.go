package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/cmd/armoriq/internal/probe"
	"github.com/armoriq/controlplane/schema"
)

// validateMemoryLimit is the soft heap limit of `armoriq validate`.
const validateMemoryLimit = 96 << 20

func validateCommand() *command {
	var (
		format    string
		online    bool
		timeout   time.Duration
		saveTools string
	)
	return &command{
		Use:   "validate [PATH...]",
		Short: "Check armoriq.yaml (or armoriq.hcl) against the schema and the policy rules",
		Long: `validate loads each config file (by default armoriq.yaml, armoriq.yml or
armoriq.hcl in the working directory; a directory stands for the one in
it), checks it against the schema and the rules between its sections, and
prints every problem as file:line:col.

With --online it also connects to each http MCP server (initialize and
tools/list) and reports policy references to tools the server does not offer,
and checks each identity provider against its issuer: the discovery document
is reachable and names exactly the configured issuer, and its JWKS holds a
signing key for an allowed algorithm (an error if not: a gateway could not
verify the provider's tokens).

Exit status: 0 valid (warnings allowed), 1 invalid, 2 usage error or unreadable file.`,
		Example: `  armoriq validate
  armoriq validate examples/quickstart/armoriq.yaml
  armoriq validate --format github armoriq.yaml
  armoriq validate --online --timeout 5s`,
		MaxArgs: -1,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&format, "format", "text", "output format: text, json or github (workflow annotations)")
			fs.BoolVar(&online, "online", false, "probe each http MCP server and check that referenced tools exist; check each identity provider's discovery document and keys")
			fs.DurationVar(&timeout, "timeout", 10*time.Second, "time allowed to each server probe with --online (an issuer's fetches are bounded to 5s each)")
			fs.StringVar(&saveTools, "save-tools", "", "with --online, write the discovered tools as JSON {server: [tools]} to this file")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			switch format {
			case "text", "json", "github":
			default:
				return usageErrorf("--format must be text, json or github, got %q", format)
			}
			if saveTools != "" && !online {
				return usageErrorf("--save-tools needs --online")
			}
			// A soft memory limit makes the GC work harder on a very large
			// file instead of letting the heap double (docs/benchmarks-validate.md).
			if e.Getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(validateMemoryLimit)
			}
			paths := args
			if len(paths) == 0 {
				p, err := schema.FindDefault(".")
				if err != nil {
					return usageErrorf("%v", err)
				}
				paths = []string{p}
			}
			rep := &report{root: e.Getenv("GITHUB_WORKSPACE")}
			unreadable := false
			discovered := map[string][]string{}
			for _, p := range paths {
				if st, err := os.Stat(p); err == nil && st.IsDir() {
					// A directory stands for its armoriq.yaml, .yml or .hcl.
					f, err := schema.FindDefault(p)
					if err != nil {
						return usageErrorf("%v", err)
					}
					p = f
				}
				c, ds := schema.LoadFile(p)
				if ds.IsNotReadable() {
					unreadable = true
				}
				if online && c != nil {
					tools, ods := checkOnline(ctx, c, e.Getenv, timeout)
					ds = append(ds, ods...)
					ds = append(ds, checkProvidersOnline(ctx, c, ds, timeout)...)
					ds.Sort()
					for k, v := range tools {
						discovered[k] = v
					}
				}
				rep.add(p, c, ds)
			}
			if saveTools != "" {
				data, _ := json.MarshalIndent(discovered, "", "  ")
				if err := os.WriteFile(saveTools, append(data, '\n'), 0o644); err != nil {
					return usageErrorf("cannot write %s: %v", saveTools, err)
				}
			}
			if err := rep.print(e.Stdout, format); err != nil {
				return err
			}
			fmt.Fprintln(e.Stderr, rep.summary())
			switch {
			case unreadable:
				return silentExit(exitUsage)
			case rep.errors > 0:
				return silentExit(exitFailure)
			}
			return nil
		},
	}
}

// report collects the outcome of validating one or more files.
type report struct {
	root     string // the repository root for annotation paths ($GITHUB_WORKSPACE)
	files    []fileResult
	diags    schema.Diagnostics
	errors   int
	warnings int
}

type fileResult struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256,omitempty"`
	Valid  bool   `json:"valid"`
}

func (r *report) add(path string, c *schema.Config, ds schema.Diagnostics) {
	fr := fileResult{Path: displayPath(path), Valid: !ds.HasErrors()}
	if c != nil && len(c.Sources) > 0 {
		fr.SHA256 = c.Sources[0].SHA256
	}
	r.files = append(r.files, fr)
	for _, d := range ds {
		d.Pos.File = displayPath(d.Pos.File)
		r.diags = append(r.diags, d)
	}
	r.errors += ds.Errors()
	r.warnings += ds.Warnings()
}

// displayPath shows a path relative to the working directory when it is
// inside it, as the user would type it.
func displayPath(p string) string {
	if p == "" || !filepath.IsAbs(p) {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

func (r *report) summary() string {
	what := "armoriq.yaml"
	if len(r.files) == 1 {
		what = r.files[0].Path
	} else {
		what = fmt.Sprintf("%d files", len(r.files))
	}
	if r.errors == 0 {
		if r.warnings == 0 {
			return what + ": valid"
		}
		return fmt.Sprintf("%s: valid, %s", what, plural(r.warnings, "warning"))
	}
	return fmt.Sprintf("%s: invalid, %s, %s", what, plural(r.errors, "error"), plural(r.warnings, "warning"))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func (r *report) print(w io.Writer, format string) error {
	switch format {
	case "json":
		type jdiag struct {
			Severity string `json:"severity"`
			File     string `json:"file"`
			Line     int    `json:"line,omitempty"`
			Col      int    `json:"col,omitempty"`
			Path     string `json:"path,omitempty"`
			Summary  string `json:"summary"`
			Detail   string `json:"detail,omitempty"`
		}
		out := struct {
			Valid       bool         `json:"valid"`
			Errors      int          `json:"errors"`
			Warnings    int          `json:"warnings"`
			Files       []fileResult `json:"files"`
			Diagnostics []jdiag      `json:"diagnostics"`
		}{Valid: r.errors == 0, Errors: r.errors, Warnings: r.warnings, Files: r.files, Diagnostics: []jdiag{}}
		for _, d := range r.diags {
			out.Diagnostics = append(out.Diagnostics, jdiag{d.Severity.String(), d.Pos.File, d.Pos.Line, d.Pos.Col, d.Path, d.Summary, d.Detail})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "github":
		for _, d := range r.diags {
			fmt.Fprintln(w, githubAnnotation(d, r.root))
		}
		return nil
	}
	for _, d := range r.diags {
		fmt.Fprintln(w, d.String())
	}
	return nil
}

// githubAnnotation formats d as a GitHub Actions workflow command, its file
// relative to the repository root (see annotationFile). Data is escaped for
// %, CR and LF; property values also for : and ,.
func githubAnnotation(d schema.Diagnostic, root string) string {
	cmd := "error"
	if d.Severity == schema.SeverityWarning {
		cmd = "warning"
	}
	props := []string{"file=" + ghProp(annotationFile(root, d.Pos.File))}
	if d.Pos.Line > 0 {
		props = append(props, fmt.Sprintf("line=%d", d.Pos.Line))
		if d.Pos.Col > 0 {
			props = append(props, fmt.Sprintf("col=%d", d.Pos.Col))
		}
	}
	title := "armoriq validate"
	if d.Path != "" {
		title += ": " + d.Path
	}
	props = append(props, "title="+ghProp(title))
	msg := d.Summary
	if d.Detail != "" {
		msg += "\n" + d.Detail
	}
	return "::" + cmd + " " + strings.Join(props, ",") + "::" + ghData(msg)
}

func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func ghProp(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// checkOnline probes every http server of c and reports references to
// tools a reachable server does not offer. It returns the tools found.
func checkOnline(ctx context.Context, c *schema.Config, getenv func(string) string, timeout time.Duration) (map[string][]string, schema.Diagnostics) {
	type outcome struct {
		res *probe.Result
		err error
	}
	results := make([]outcome, len(c.Servers))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, s := range c.Servers {
		if s.Transport != schema.TransportHTTP || s.URL == "" {
			continue
		}
		wg.Add(1)
		go func(i int, s schema.Server) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := probe.Tools(ctx, probe.Server{URL: expandVars(s.URL, getenv), Headers: authHeaders(s.Auth, getenv)}, timeout, buildVersion())
			results[i] = outcome{res, err}
		}(i, s)
	}
	wg.Wait()

	var ds schema.Diagnostics
	tools := map[string][]string{}
	for i, s := range c.Servers {
		o := results[i]
		switch {
		case o.res != nil:
			tools[s.ID] = o.res.Tools
		case o.err != nil:
			ds = append(ds, schema.Diagnostic{Severity: schema.SeverityWarning, Pos: s.Pos, Path: fmt.Sprintf("mcp_servers[%d]", i),
				Summary: fmt.Sprintf("server %q is unreachable, its tools were not checked: %v", s.ID, o.err)})
		}
	}
	check := func(r schema.Ref, path string) {
		offered, ok := tools[r.Server]
		if !ok || r.Tool == "" {
			return
		}
		if strings.ContainsAny(r.Tool, "*?[") {
			for _, t := range offered {
				if m, _ := filepath.Match(r.Tool, t); m {
					return
				}
			}
			ds = append(ds, schema.Diagnostic{Severity: schema.SeverityWarning, Pos: r.Pos, Path: path,
				Summary: fmt.Sprintf("pattern %q matches no tool of server %q (it offers: %s)", r.Tool, r.Server, listOrNone(offered))})
			return
		}
		for _, t := range offered {
			if t == r.Tool {
				return
			}
		}
		ds = append(ds, schema.Diagnostic{Severity: schema.SeverityError, Pos: r.Pos, Path: path,
			Summary: fmt.Sprintf("server %q has no tool %q (it offers: %s)", r.Server, r.Tool, listOrNone(offered))})
	}
	for i, r := range c.Policy.Allow {
		check(r, fmt.Sprintf("policy.allow[%d]", i))
	}
	for i, r := range c.Policy.Deny {
		check(r, fmt.Sprintf("policy.deny[%d]", i))
	}
	for i, rule := range c.Policy.Rules {
		for j, r := range rule.Tools {
			check(r, fmt.Sprintf("policy.rules[%d].tools[%d]", i, j))
		}
	}
	for i, t := range c.Tests {
		check(t.Tool, fmt.Sprintf("tests[%d].tool", i))
	}
	return tools, ds
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	s := append([]string(nil), l...)
	sort.Strings(s)
	if len(s) > 10 {
		return strings.Join(s[:10], ", ") + fmt.Sprintf(" and %d more", len(s)-10)
	}
	return strings.Join(s, ", ")
}

// authHeaders resolves a server's credential for a probe. The values never
// leave the request.
func authHeaders(a *schema.Auth, getenv func(string) string) http.Header {
	h := http.Header{}
	if a == nil {
		return h
	}
	switch a.Type {
	case "bearer":
		if tok := expandVars(a.Token, getenv); tok != "" {
			h.Set("Authorization", "Bearer "+tok)
		}
	case "api_key":
		name := a.HeaderName
		if name == "" {
			name = "X-API-Key"
		}
		if key := expandVars(a.APIKey, getenv); key != "" {
			h.Set(name, key)
		}
	}
	return h
}

var varRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// expandVars resolves $NAME and ${NAME} references ($$ is a literal $).
func expandVars(s string, getenv func(string) string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(m, "$"), "{"), "}")
		return getenv(name)
	})
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/cmd/armoriq/internal/probe"
	"github.com/armoriq/controlplane/schema"
)

func initCommand() *command {
	var o initOptions
	return &command{
		Use:   "init",
		Short: "Create a commented armoriq.yaml",
		Long: `init writes a commented armoriq.yaml that passes 'armoriq validate'.

On a terminal it asks for the agent id, the user id, the environment and the
MCP servers, offering defaults. Otherwise (or with --no-input) it uses the
flags only. Each server is probed (MCP initialize + tools/list). Only the
tools the server marks read-only (the MCP annotation readOnlyHint) are
written into policy.allow; the others are written there commented out, each
with what its annotations say it may do (destructive, open world), and
listed on stderr: review them and uncomment what the agent needs. The
annotations are the server's own claims. A server that does not answer gets
a warning and a placeholder comment. The file starts with the
yaml-language-server line naming the JSON Schema of armoriq.yaml (see
armoriq schema), so editors complete and check it. An existing file is
never overwritten without --force.`,
		Example: `  armoriq init
  armoriq init --server github=https://api.githubcopilot.com/mcp/ --agent-id support-bot
  armoriq init --server local=http://127.0.0.1:3000/mcp --output - `,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringArrayVar(&o.servers, "server", nil, "an MCP server as ID=URL (repeatable)")
			fs.StringVar(&o.agentID, "agent-id", "my-agent", "the agent's id")
			fs.StringVar(&o.userID, "user-id", "my-user", "the user id the SDK acts for")
			fs.StringVar(&o.environment, "environment", "sandbox", "sandbox or production")
			fs.StringVarP(&o.output, "output", "o", "armoriq.yaml", "file to write, - for standard output")
			fs.BoolVar(&o.force, "force", false, "overwrite an existing file")
			fs.BoolVar(&o.noInput, "no-input", false, "never prompt, even on a terminal")
			fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "time allowed to each server probe")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			return runInit(ctx, e, o)
		},
	}
}

type initOptions struct {
	servers     []string
	agentID     string
	userID      string
	environment string
	output      string
	force       bool
	noInput     bool
	timeout     time.Duration
}

type initServer struct {
	ID, URL string
	Tools   []probe.Tool
	Err     error // probe failure
}

var serverIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func runInit(ctx context.Context, e *env, o initOptions) error {
	var servers []initServer
	for _, s := range o.servers {
		srv, err := parseServerFlag(s)
		if err != nil {
			return usageErrorf("--server %q: %v", s, err)
		}
		servers = append(servers, srv)
	}
	if err := checkEnvironment(o.environment); err != nil {
		return usageErrorf("--environment: %v", err)
	}
	if o.output != "-" && !o.force {
		if _, err := os.Stat(o.output); err == nil {
			return &exitError{Code: exitFailure, Err: fmt.Errorf("%s already exists; use --force to overwrite it", o.output)}
		}
	}
	if e.Terminal && !o.noInput {
		var err error
		if servers, err = prompt(e, &o, servers); err != nil {
			return err
		}
	}
	if err := uniqueIDs(servers); err != nil {
		return usageErrorf("%v", err)
	}

	for i := range servers {
		s := &servers[i]
		res, err := probe.Tools(ctx, probe.Server{URL: s.URL}, o.timeout, buildVersion())
		if err != nil {
			s.Err = err
			fmt.Fprintf(e.Stderr, "armoriq: warning: server %q at %s did not answer (%v); its tools are left as a placeholder\n", s.ID, s.URL, err)
			continue
		}
		s.Tools = res.Details
		reportWithheld(e.Stderr, *s)
	}

	out := renderInit(o, servers)
	name := o.output
	if name == "-" {
		name = "armoriq.yaml"
	}
	if _, ds := schema.Parse(name, out); ds.HasErrors() {
		// The inputs were checked above; this is a bug in the template.
		return fmt.Errorf("internal error: the generated file does not validate:\n%s", ds)
	}
	if o.output == "-" {
		_, err := e.Stdout.Write(out)
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !o.force {
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(o.output, flags, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return &exitError{Code: exitFailure, Err: fmt.Errorf("%s already exists; use --force to overwrite it", o.output)}
		}
		return usageErrorf("cannot write %s: %v", o.output, err)
	}
	if _, err := f.Write(out); err != nil {
		f.Close()
		return usageErrorf("cannot write %s: %v", o.output, err)
	}
	if err := f.Close(); err != nil {
		return usageErrorf("cannot write %s: %v", o.output, err)
	}
	tools := 0
	for _, s := range servers {
		for _, t := range s.Tools {
			if t.ReadOnly {
				tools++
			}
		}
	}
	fmt.Fprintf(e.Stderr, "Wrote %s: %s, %s allowed. Check it with: armoriq validate %s\n", o.output, plural(len(servers), "server"), plural(tools, "tool"), o.output)
	return nil
}

// reportWithheld says on stderr which of s's tools init did not allow.
func reportWithheld(w io.Writer, s initServer) {
	var withheld []string
	readOnly := 0
	for _, t := range s.Tools {
		if t.ReadOnly {
			readOnly++
			continue
		}
		withheld = append(withheld, fmt.Sprintf("%s (%s)", t.Name, t.Effects()))
	}
	if len(withheld) == 0 {
		return
	}
	const shown = 10
	list := strings.Join(withheld[:min(len(withheld), shown)], ", ")
	if len(withheld) > shown {
		list += fmt.Sprintf(" and %d more", len(withheld)-shown)
	}
	fmt.Fprintf(w, "armoriq: server %q: %s allowed; %s not marked read-only left commented out in policy.allow, to review: %s\n",
		s.ID, plural(readOnly, "read-only tool"), plural(len(withheld), "tool"), list)
}

func parseServerFlag(s string) (initServer, error) {
	id, u, ok := strings.Cut(s, "=")
	if !ok {
		return initServer{}, errors.New("want ID=URL")
	}
	id, u = strings.TrimSpace(id), strings.TrimSpace(u)
	if !serverIDRE.MatchString(id) {
		return initServer{}, fmt.Errorf("server id %q may contain only letters, digits, '-' and '_'", id)
	}
	if err := checkHTTPURL(u); err != nil {
		return initServer{}, err
	}
	return initServer{ID: id, URL: u}, nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("invalid URL %q: want http:// or https:// with a host", s)
	}
	return nil
}

func checkEnvironment(s string) error {
	if s != "sandbox" && s != "production" {
		return fmt.Errorf("must be sandbox or production, got %q", s)
	}
	return nil
}

func uniqueIDs(servers []initServer) error {
	seen := map[string]bool{}
	for _, s := range servers {
		if seen[s.ID] {
			return fmt.Errorf("server id %q given twice", s.ID)
		}
		seen[s.ID] = true
	}
	return nil
}

// prompt asks for each setting on the terminal, the flags' values as
// defaults. An empty answer keeps the default.
func prompt(e *env, o *initOptions, servers []initServer) ([]initServer, error) {
	in := bufio.NewReader(e.Stdin)
	out := e.Stdout
	if o.output == "-" {
		out = e.Stderr // stdout carries the file
	}
	ask := func(question, def string, check func(string) error) (string, error) {
		for {
			if def != "" {
				fmt.Fprintf(out, "%s [%s]: ", question, def)
			} else {
				fmt.Fprintf(out, "%s: ", question)
			}
			line, err := in.ReadString('\n')
			if err != nil && (err != io.EOF || line == "") {
				if err == io.EOF {
					return def, nil
				}
				return "", err
			}
			ans := strings.TrimSpace(line)
			if ans == "" {
				ans = def
			}
			if check != nil {
				if cerr := check(ans); cerr != nil {
					fmt.Fprintf(out, "  %v\n", cerr)
					if err == io.EOF {
						return "", usageErrorf("%v", cerr)
					}
					continue
				}
			}
			return ans, nil
		}
	}
	nonEmpty := func(s string) error {
		if s == "" {
			return errors.New("a value is required")
		}
		return nil
	}
	var err error
	if o.agentID, err = ask("Agent id", o.agentID, nonEmpty); err != nil {
		return nil, err
	}
	if o.userID, err = ask("User id", o.userID, nonEmpty); err != nil {
		return nil, err
	}
	if o.environment, err = ask("Environment (sandbox or production)", o.environment, checkEnvironment); err != nil {
		return nil, err
	}
	fmt.Fprintln(out, "MCP servers, one per line as ID=URL; an empty line ends the list.")
	for {
		ans, err := ask("Server", "", func(s string) error {
			if s == "" {
				return nil
			}
			srv, err := parseServerFlag(s)
			if err != nil {
				return err
			}
			return uniqueIDs(append(append([]initServer(nil), servers...), srv))
		})
		if err != nil {
			return nil, err
		}
		if ans == "" {
			return servers, nil
		}
		srv, _ := parseServerFlag(ans)
		servers = append(servers, srv)
	}
}

// renderInit writes the commented file. Values are quoted where YAML could
// read them as something else.
func renderInit(o initOptions, servers []initServer) []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# yaml-language-server: $schema=%s\n", schema.JSONSchemaURL(buildVersion()))
	w("# armoriq.yaml: the MCP servers this agent may use, and who may call which tool.\n")
	w("# Written by `armoriq init`. Check it with `armoriq validate`; the keys are\n")
	w("# described in docs/config.md. Keep secrets out of this file: write $VAR\n")
	w("# references, resolved from the environment where they are used.\n")
	w("version: v1\n\n")
	w("identity:\n")
	w("  api_key: $ARMORIQ_API_KEY\n")
	w("  user_id: %s\n", yamlString(o.userID))
	w("  agent_id: %s\n\n", yamlString(o.agentID))
	w("# sandbox or production.\n")
	w("environment: %s\n\n", o.environment)
	w("# Where the SDK sends tool calls: your armoriq gateway.\n")
	w("# proxy:\n#   url: https://gateway.example.com\n#   timeout: 30\n#   max_retries: 3\n\n")
	w("# The MCP servers. transport defaults to http (url); stdio takes command,\n")
	w("# args and env; plugin takes path and a pinned sha256.\n")
	if len(servers) == 0 {
		w("mcp_servers: []\n")
		w("#  - id: github\n#    url: https://api.githubcopilot.com/mcp/\n#    auth: {type: bearer, token: $GITHUB_TOKEN}\n")
	} else {
		w("mcp_servers:\n")
		for _, s := range servers {
			w("  - id: %s\n", s.ID)
			w("    url: %s\n", yamlString(s.URL))
			w("    # auth: {type: bearer, token: $%s_TOKEN}\n", envName(s.ID))
		}
	}
	w("\n# Named sets of users: emails or *@domain.\n")
	w("# groups:\n#   engineering: [\"*@example.com\"]\n\n")
	w("policy:\n")
	w("  # Tools the agent may call, as server/tool; * and ? match many.\n")
	var allow, withheld, placeholders []string
	width := 0
	for _, s := range servers {
		for _, t := range s.Tools {
			width = max(width, len(yamlString(s.ID+"/"+t.Name)))
		}
	}
	for _, s := range servers {
		if s.Err != nil {
			placeholders = append(placeholders, fmt.Sprintf("    # - %s/TOOL_NAME   # %s did not answer at init time: list its tools here", s.ID, s.ID))
			continue
		}
		if len(s.Tools) == 0 {
			placeholders = append(placeholders, fmt.Sprintf("    # %s offers no tools", s.ID))
		}
		for _, t := range s.Tools {
			if _, _, ok := schema.ParseRef(s.ID + "/" + t.Name); !ok {
				placeholders = append(placeholders, fmt.Sprintf("    # %s offers %q, a name policy references cannot express", s.ID, t.Name))
				continue
			}
			ref := fmt.Sprintf("%-*s", width, yamlString(s.ID+"/"+t.Name))
			if t.ReadOnly {
				allow = append(allow, "    - "+ref+"   # read-only")
			} else {
				withheld = append(withheld, "    # - "+ref+"   # "+t.Effects())
			}
		}
	}
	withheldNote := []string{
		"    # Not allowed by init: their server does not mark them read-only. Review",
		"    # each and uncomment those the agent needs (the marks are the server's own).",
	}
	if len(allow) == 0 {
		// Placeholders go above an empty list, so that uncommenting one
		// line cannot produce invalid YAML.
		for _, s := range servers {
			switch {
			case s.Err != nil:
				w("  # %s did not answer at init time: list its tools, e.g. allow: [%s/TOOL_NAME]\n", s.ID, s.ID)
			case len(s.Tools) == 0:
				w("  # %s offers no tools\n", s.ID)
			}
		}
		if len(withheld) > 0 {
			w("%s\n", strings.TrimPrefix(withheldNote[0], "  "))
			w("%s\n", strings.TrimPrefix(withheldNote[1], "  "))
			w("  # To allow some, replace \"allow: []\" with \"allow:\" and these lines, uncommented:\n")
			for _, l := range withheld {
				w("  #   - %s\n", strings.TrimPrefix(l, "    # - "))
			}
		}
		w("  allow: []\n")
	} else {
		w("  allow:\n")
		for _, a := range allow {
			w("%s\n", a)
		}
		if len(withheld) > 0 {
			w("%s\n%s\n", withheldNote[0], withheldNote[1])
			for _, l := range withheld {
				w("%s\n", l)
			}
		}
		for _, p := range placeholders {
			w("%s\n", p)
		}
	}
	w("  # Tools nobody may call, whatever allow says.\n")
	w("  deny: []\n")
	w("  # Rules: effect allow, deny or hold (wait for a human); deny wins over\n")
	w("  # hold, hold over allow, and no match means deny.\n")
	w("  # rules:\n")
	w("  #   - name: no-push-to-main\n")
	w("  #     effect: deny\n")
	w("  #     tools: [github/push_files]\n")
	w("  #     when: args.branch == \"main\"\n")
	w("  #     reason: open a pull request instead\n\n")
	w("intent:\n")
	w("  ttl_seconds: 300\n")
	w("  require_csrg: true\n\n")
	w("# Policy tests, run by `armoriq test`.\n")
	w("# tests:\n#   - user: dev@example.com\n#     tool: github/push_files\n#     args: {branch: main}\n#     expect: deny\n")
	return []byte(b.String())
}

var plainYAML = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./@-]*$`)

// yamlString writes s plain when YAML reads it back as the same string,
// else double-quoted (Go's quoting is valid YAML for what we write).
func yamlString(s string) string {
	if plainYAML.MatchString(s) {
		switch strings.ToLower(s) {
		case "true", "false", "yes", "no", "on", "off", "null", "y", "n":
			return strconv.Quote(s)
		}
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return strconv.Quote(s)
		}
		return s
	}
	return strconv.Quote(s)
}

func envName(id string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_").Replace(id))
}

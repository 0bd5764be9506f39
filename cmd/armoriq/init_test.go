package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/armoriq/controlplane/cmd/armoriq/internal/probe"
	"github.com/armoriq/controlplane/schema"
)

// TestInitInteractive answers init's prompts as a user on a terminal would:
// defaults kept with an empty line, one invalid answer retried.
func TestInitInteractive(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "armoriq.yaml")
	answers := strings.Join([]string{
		"bot-7",   // agent id
		"",        // user id: keep the default
		"staging", // environment: refused
		"production",
		"not-a-server",                 // refused: no '='
		"local=http://127.0.0.1:1/mcp", // nothing listens there
		"",                             // end of the server list
	}, "\n") + "\n"
	var stdout, stderr bytes.Buffer
	e := &env{Stdin: strings.NewReader(answers), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }, Terminal: true}
	code := run(context.Background(), []string{"init", "--output", out, "--user-id", "ana", "--timeout", "2s"}, e)
	if code != exitOK {
		t.Fatalf("init with answers %q: exit %d, stderr:\n%s", answers, code, stderr.String())
	}
	for _, want := range []string{"Agent id [my-agent]: ", "User id [ana]: ", "must be sandbox or production", "want ID=URL"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("prompts: got\n%s\nwant them to contain %q", stdout.String(), want)
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"  agent_id: bot-7\n", "  user_id: ana\n", "environment: production\n", "  - id: local\n", "# local did not answer at init time: list its tools, e.g. allow: [local/TOOL_NAME]"} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("written file: got\n%s\nwant it to contain %q", data, want)
		}
	}
	if !strings.Contains(stderr.String(), `warning: server "local"`) {
		t.Errorf("stderr: got %q, want a warning for the unreachable server", stderr.String())
	}
	if _, ds := schema.Parse("armoriq.yaml", data); len(ds) > 0 {
		t.Errorf("the written file does not validate cleanly:\n%s\n%s", data, ds)
	}
}

// TestInitTemplateValidates renders the template with awkward values: it
// must always validate.
func TestInitTemplateValidates(t *testing.T) {
	for _, o := range []initOptions{
		{agentID: "yes", userID: "123", environment: "sandbox"},
		{agentID: "a: b", userID: "\"quoted\" #hash", environment: "production"},
	} {
		servers := []initServer{{ID: "s1", URL: "https://x.example.com/mcp?a=b#c", Tools: []probe.Tool{{Name: "get", ReadOnly: true}, {Name: "weird: name"}}}, {ID: "s2", URL: "http://y.example.com", Err: os.ErrDeadlineExceeded}}
		data := renderInit(o, servers)
		c, ds := schema.Parse("armoriq.yaml", data)
		if len(ds) > 0 {
			t.Errorf("options %+v: got diagnostics\n%s\nfor\n%s", o, ds, data)
			continue
		}
		if c.Identity.AgentID != o.agentID || c.Identity.UserID != o.userID {
			t.Errorf("options %+v: read back identity %+v", o, c.Identity)
		}
	}
}

// TestInitAllowsOnlyReadOnly renders servers whose tools are read-only or
// not: only read-only tools are allowed; the rest are commented out with
// their effects, and uncommenting them as the file says gives a valid
// config that allows them.
func TestInitAllowsOnlyReadOnly(t *testing.T) {
	mixed := []initServer{{ID: "gh", URL: "https://gh.example.com/mcp", Tools: []probe.Tool{
		{Name: "list_issues", ReadOnly: true, Annotated: true},
		{Name: "delete_repo", Destructive: true, OpenWorld: true, Annotated: true},
		{Name: "dump_env", Destructive: true, OpenWorld: true},
	}}}
	writesOnly := []initServer{{ID: "fs", URL: "https://fs.example.com/mcp", Tools: []probe.Tool{
		{Name: "write_file", OpenWorld: false, Annotated: true},
	}}}
	for _, tc := range []struct {
		name      string
		servers   []initServer
		allowed   []string
		commented []string
		uncomment func(string) string
	}{
		{"some read-only", mixed, []string{"gh/list_issues"},
			[]string{"    # - gh/delete_repo   # destructive, open world", "    # - gh/dump_env      # no annotations: destructive, open world (the MCP defaults)"},
			func(s string) string { return strings.ReplaceAll(s, "\n    # - ", "\n    - ") }},
		{"none read-only", writesOnly, nil,
			[]string{"  #   - fs/write_file   # writes, not destructive, closed world"},
			func(s string) string {
				s = strings.Replace(s, "  allow: []\n", "  allow:\n", 1)
				// The commented lines sit above allow:, so move them below.
				var keep, items []string
				for _, l := range strings.Split(s, "\n") {
					if strings.HasPrefix(l, "  #   - ") && strings.Contains(l, "/") {
						items = append(items, "    - "+strings.TrimPrefix(l, "  #   - "))
						continue
					}
					keep = append(keep, l)
					if l == "  allow:" {
						keep = append(keep, "<items>")
					}
				}
				return strings.Replace(strings.Join(keep, "\n"), "<items>", strings.Join(items, "\n"), 1)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := string(renderInit(initOptions{agentID: "a", userID: "u", environment: "sandbox"}, tc.servers))
			c, ds := schema.Parse("armoriq.yaml", []byte(data))
			if len(ds) > 0 {
				t.Fatalf("diagnostics\n%s\nfor\n%s", ds, data)
			}
			var got []string
			for _, r := range c.Policy.Allow {
				got = append(got, r.String())
			}
			if strings.Join(got, ",") != strings.Join(tc.allowed, ",") {
				t.Errorf("allowed %v, want %v; file:\n%s", got, tc.allowed, data)
			}
			for _, line := range tc.commented {
				if !strings.Contains(data, line+"\n") {
					t.Errorf("file lacks the line %q:\n%s", line, data)
				}
			}
			if !strings.HasPrefix(data, "# yaml-language-server: $schema=https://raw.githubusercontent.com/armoriq/controlplane/") {
				t.Errorf("file starts %q, want the yaml-language-server line", data[:80])
			}
			un := tc.uncomment(data)
			c, ds = schema.Parse("armoriq.yaml", []byte(un))
			if len(ds) > 0 {
				t.Fatalf("uncommented as the file says: diagnostics\n%s\nfor\n%s", ds, un)
			}
			if len(c.Policy.Allow) != len(tc.allowed)+len(tc.commented) {
				t.Errorf("uncommented: %d allowed, want %d:\n%s", len(c.Policy.Allow), len(tc.allowed)+len(tc.commented), un)
			}
		})
	}
}

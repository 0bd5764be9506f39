package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		servers := []initServer{{ID: "s1", URL: "https://x.example.com/mcp?a=b#c", Tools: []string{"get", "weird: name"}}, {ID: "s2", URL: "http://y.example.com", Err: os.ErrDeadlineExceeded}}
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

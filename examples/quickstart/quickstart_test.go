package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/runtime/client"
)

// bearer sends the API key as MCP clients do.
type bearer struct{ key string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return http.DefaultTransport.RoundTrip(r)
}

// TestQuickstart runs each quickstart program of this directory, as the
// README does, against a real `armoriq up` enforcing this directory's
// armoriq.yaml: the Go one (runtime/client), a plain MCP client with the
// agent key on /mcp, and the Node one (the official
// @armoriq/sdk 0.2.6; skipped, saying why, without Node or the package).
func TestQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs armoriq up")
	}
	gw, agentKey, adminKey := startUp(t)

	t.Run("go", func(t *testing.T) {
		var out strings.Builder
		err := run(context.Background(), &out, client.Options{
			Endpoint: gw, APIKey: agentKey, UserID: "quickstart", AgentID: "weather-agent",
			Getenv: func(string) string { return "" }, HomeDir: t.TempDir(),
		})
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		for _, want := range []string{
			"alice@customer.com: Weather in Boston: ",
			"bob@customer.com: blocked by rule suspended-users: bob@customer.com is suspended",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output: got\n%s\nwant it to contain %q", out.String(), want)
			}
		}
	})

	// A plain MCP client, with nothing but the agent key: the quickstart
	// leaves intent.require_csrg off, so it lists and calls tools.
	t.Run("mcp", func(t *testing.T) {
		ctx := context.Background()
		tr := &mcp.StreamableClientTransport{Endpoint: gw + "/mcp", HTTPClient: &http.Client{Transport: bearer{agentKey}}}
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "plain-client", Version: "1"}, nil).Connect(ctx, tr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		lt, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tl := range lt.Tools {
			names = append(names, tl.Name)
		}
		if got := strings.Join(names, ","); got != "get_forecast,get_weather" {
			t.Errorf("tools/list: got %s, want get_forecast,get_weather", got)
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_weather", Arguments: map[string]any{"city": "Boston"}})
		if err != nil || res.IsError || !strings.HasPrefix(res.Content[0].(*mcp.TextContent).Text, "Weather in Boston: ") {
			t.Fatalf("tools/call get_weather: %+v, %v", res, err)
		}
	})

	t.Run("node", func(t *testing.T) {
		node, err := exec.LookPath("node")
		if err != nil {
			t.Skip("node is not installed: the Node quickstart needs Node.js (.ci/run installs it)")
		}
		if _, err := os.Stat(filepath.Join("node_modules", "@armoriq", "sdk")); err != nil {
			t.Skip("@armoriq/sdk is not installed: run `npm install` in examples/quickstart (.ci/run does)")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, "quickstart.js")
		cmd.Env = append(os.Environ(), "ARMORIQ_API_KEY="+agentKey, "ARMORIQ_ENDPOINT="+gw)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("node quickstart.js: %v\n%s", err, out)
		}
		for _, want := range []string{
			"QUICKSTART alice@customer.com: Weather in Boston: ",
			"QUICKSTART bob@customer.com: refused (MCPInvocationException",
		} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("output: got\n%s\nwant it to contain %q", out, want)
			}
		}
		// 0.2.6 reports every refusal as "HTTP 403": the audit says it
		// was the rule, for bob, named only inside the params.
		req, _ := http.NewRequest("GET", gw+"/v1/audit?user=bob@customer.com&decision=blocked", nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list struct {
			Records []struct{ Rule, Tool string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			t.Fatal(err)
		}
		if len(list.Records) == 0 || list.Records[len(list.Records)-1].Rule != "suspended-users" {
			t.Errorf("bob's blocked records: got %+v, want the last decided by suspended-users", list.Records)
		}
	})
}

// startUp builds armoriq and runs `armoriq up` in a temporary directory on
// a copy of this directory's armoriq.yaml. It returns the gateway's URL
// and the agent and admin keys; the gateway is stopped at the end of t.
func startUp(t *testing.T) (gw, agentKey, adminKey string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "armoriq")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/armoriq")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/armoriq: %v\n%s", err, out)
	}
	cfg, err := os.ReadFile("armoriq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "armoriq.yaml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	up := exec.Command(bin, "up", "--addr", "127.0.0.1:0", "--ready-file", "url.txt")
	up.Dir, up.Stdout, up.Stderr = dir, &out, &out
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		up.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- up.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("armoriq up: %v\n%s", err, out.String())
			}
		case <-time.After(30 * time.Second):
			up.Process.Kill()
			t.Errorf("armoriq up did not stop within 30s of SIGINT\n%s", out.String())
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "url.txt"))
		if err == nil && bytes.HasSuffix(b, []byte("\n")) {
			gw = strings.TrimSpace(string(b))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("armoriq up did not get ready within a minute:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, ".armoriq", name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	return gw, read("agent.key"), read("admin.key")
}

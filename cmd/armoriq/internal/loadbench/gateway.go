package loadbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// benchAgent is the agent the bench's API key acts as.
const benchAgent = "bench-agent"

// gatewayConfig is the armoriq.yaml of the bench's gateway: the two
// upstreams, the stdio one pinned to stdioProtocol if set, and a policy
// that allows their echo tool.
func gatewayConfig(upstreamURL, stdioCommand, stdioProtocol string) string {
	pin := ""
	if stdioProtocol != "" {
		pin = "\n    protocol: " + strconv.Quote(stdioProtocol)
	}
	return fmt.Sprintf(`# armoriq bench: the gateway's config.
version: v1
identity:
  user_id: bench
  agent_id: %[3]s
mcp_servers:
  - id: %[1]s
    transport: http
    url: %[4]s
    tool_prefix: always
  - id: %[2]s
    transport: stdio
    command: %[6]s
    args: [demo-server, bench]
    tool_prefix: always%[7]s
policy:
  allow:
    - %[1]s/%[5]s
    - %[2]s/%[5]s
`, serverHTTP, serverStdio, benchAgent, upstreamURL, EchoTool, stdioCommand, pin)
}

// startGateway runs `armoriq gateway` on the bench's config, in a data
// directory of its own, and creates the agent key the calls use.
func (b *bench) startGateway(ctx context.Context, upstreamURL string) error {
	cfgPath := filepath.Join(b.dir, "armoriq.yaml")
	// The stdio server is the gateway's own executable ("armoriq"), but
	// when the gateway is another build: then it is this one's, so both
	// builds forward to the same server.
	stdioCommand := "armoriq"
	if b.cfg.GatewayExe != "" {
		stdioCommand = strconv.Quote(b.cfg.Exe)
	}
	if err := os.WriteFile(cfgPath, []byte(gatewayConfig(upstreamURL, stdioCommand, b.cfg.StdioProtocol)), 0o600); err != nil {
		return err
	}
	data := filepath.Join(b.dir, "data")
	ready := filepath.Join(b.dir, "gateway.ready")
	gw, err := b.startChild("gateway", nil, "gateway",
		"--config", cfgPath, "--data", data,
		"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--ready-file", ready,
		"--sqlite-sync", b.cfg.SQLiteSync, "--max-token-ttl", "24h", "--log-level", "warn")
	if err != nil {
		return err
	}
	b.gw = gw
	lines, err := gw.waitReady(ctx, ready, 60*time.Second)
	if err != nil {
		return err
	}
	if len(lines) < 2 {
		return fmt.Errorf("the gateway's ready file has no admin URL: %q", lines)
	}
	b.gwURL, b.adminURL = lines[0], lines[1]
	b.logf("gateway %s (pid %d), audit in SQLite with --sqlite-sync %s", b.gwURL, gw.pid(), b.cfg.SQLiteSync)

	adminKey, err := os.ReadFile(filepath.Join(data, "admin.key"))
	if err != nil {
		return fmt.Errorf("reading the gateway's admin key: %v", err)
	}
	body, _ := json.Marshal(map[string]string{"name": "armoriq-bench", "role": "agent", "agent": benchAgent})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.gwURL+"/v1/keys", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(adminKey)))
	resp, err := b.hc.Do(req)
	if err != nil {
		return fmt.Errorf("creating the agent key: %v", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	var k struct {
		Key string `json:"key"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(rb, &k) != nil || k.Key == "" {
		return fmt.Errorf("creating the agent key: status %d: %s", resp.StatusCode, truncate(rb, 300))
	}
	b.agentKey = k.Key
	return nil
}

// startStdio runs the bench's own stdio server and opens its session.
func (b *bench) startStdio(ctx context.Context) error {
	var in io.WriteCloser
	var out io.Reader
	c, err := b.startChild("stdio upstream", func(cmd *exec.Cmd) error {
		var err error
		if in, err = cmd.StdinPipe(); err != nil {
			return err
		}
		out, err = cmd.StdoutPipe()
		return err
	}, "demo-server", "bench")
	if err != nil {
		return err
	}
	b.upStdio, b.stdioIn = c, in
	ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if b.stdio, err = newStdioConn(ictx, in, out); err != nil {
		return fmt.Errorf("the stdio upstream: %v: %s", err, c.stderr.String())
	}
	b.logf("stdio upstream (pid %d)", c.pid())
	return nil
}

// newTransport is a client transport of its own for one target, with
// room for every worker's connection.
func newTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2048
	tr.MaxIdleConnsPerHost = 1024
	return tr
}

// httpCaller makes the callers of an MCP endpoint: each worker its own
// session (initialized once), all of them one connection pool.
func (b *bench) httpCaller(url, bearer, tool string) func(context.Context, int) (caller, error) {
	hc := &http.Client{Transport: newTransport(), Timeout: 60 * time.Second}
	return func(ctx context.Context, _ int) (caller, error) {
		return newMCPHTTP(ctx, hc, url, bearer, b.cfg.MCPVersion, tool)
	}
}

// invokeCaller makes the callers of the gateway's /invoke for a server:
// one intent token, issued at the first call, used by every worker.
func (b *bench) invokeCaller(server string) func(context.Context, int) (caller, error) {
	hc := &http.Client{Transport: newTransport(), Timeout: 60 * time.Second}
	var body []byte
	var hdr map[string]string
	return func(ctx context.Context, _ int) (caller, error) {
		if body == nil {
			var err error
			if body, hdr, err = issueToken(ctx, hc, b.gwURL, b.agentKey, benchAgent, server); err != nil {
				return nil, err
			}
		}
		return &invokeClient{hc: hc, url: b.gwURL + "/invoke", key: b.agentKey, body: body, hdr: hdr}, nil
	}
}

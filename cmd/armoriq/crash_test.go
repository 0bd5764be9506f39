package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/store/storetest"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The crash tests drive a real armoriq gateway process under load and
// break what it stands on: SIGKILL mid-load, PostgreSQL connections
// terminated, the schema dropped. The upstream counts what it executes;
// every execution must have a committed request record ("no audit, no
// action"), and the chain must verify after each restart.

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// armoriqBinary builds the armoriq binary once per test process.
func armoriqBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the armoriq binary; skipped with -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "armoriq-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "armoriq")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// countingUpstream is a real MCP server whose tool "pay" counts its
// executions.
func countingUpstream(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := mcp.NewServer(&mcp.Implementation{Name: "payments", Version: "1"}, nil)
	type in struct {
		Amount float64 `json:"amount"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "pay", Description: "pays"}, func(ctx context.Context, req *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
		n.Add(1)
		time.Sleep(2 * time.Millisecond) // a call in flight when the gateway dies
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprint("paid ", a.Amount)}}}, nil, nil
	})
	ts := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(ts.Close)
	return ts.URL + "/", &n
}

// gatewayProc is one running armoriq gateway process.
type gatewayProc struct {
	cmd  *exec.Cmd
	url  string
	logs *bytes.Buffer
}

func startGateway(t *testing.T, bin, dir string, args ...string) *gatewayProc {
	t.Helper()
	ready := filepath.Join(dir, fmt.Sprintf("ready-%d.txt", time.Now().UnixNano()))
	cmd := exec.Command(bin, append([]string{"gateway", "--addr", "127.0.0.1:0", "--ready-file", ready, "--data", filepath.Join(dir, "data")}, args...)...)
	logs := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gatewayProc{cmd: cmd, logs: logs}
	t.Cleanup(func() { g.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			g.url = strings.SplitN(strings.TrimSpace(string(b)), "\n", 2)[0]
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not start: %s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL to the gateway and its adapter processes.
func (g *gatewayProc) kill() {
	if g.cmd.Process != nil && g.cmd.ProcessState == nil {
		syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		g.cmd.Wait()
	}
}

// stop sends SIGTERM and waits.
func (g *gatewayProc) stop(t *testing.T) {
	t.Helper()
	g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		g.kill()
		t.Errorf("gateway did not stop on SIGTERM: %s", g.logs)
	}
}

func (g *gatewayProc) createAgentKey(t *testing.T, adminKey string) string {
	t.Helper()
	body := strings.NewReader(`{"name":"loader","role":"agent"}`)
	req, _ := http.NewRequest("POST", g.url+"/v1/keys", body)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Key string `json:"key"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Key == "" {
		t.Fatalf("creating an agent key: status %d: %v", resp.StatusCode, err)
	}
	return out.Key
}

// load calls pay through /mcp with workers concurrent clients until stop
// closes, and returns how many calls were acknowledged (a result came).
func load(url, key string, workers int, stop <-chan struct{}) *atomic.Int64 {
	var acked atomic.Int64
	for w := 0; w < workers; w++ {
		go func() {
			body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","arguments":{"amount":5}}}`)
			hc := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", url+"/mcp", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
				resp, err := hc.Do(req)
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					if strings.Contains(sc.Text(), `"paid 5"`) {
						acked.Add(1)
					}
				}
				resp.Body.Close()
			}
		}()
	}
	return &acked
}

const crashConfig = `version: v1
identity:
  api_key: $ARMORIQ_API_KEY
  user_id: loader
  agent_id: loader
environment: production
proxy:
  url: http://127.0.0.1:8080
mcp_servers:
  - id: payments
    url: %s
    tool_prefix: never
policy:
  allow: [payments/*]
intent:
  ttl_seconds: 300
  require_csrg: false
`

// TestCrashUnderLoadLeavesNoUnauditedCall kills the gateway with SIGKILL
// three times under load on the embedded SQLite store, and checks that the
// upstream never ran a call without a committed request record.
func TestCrashUnderLoadLeavesNoUnauditedCall(t *testing.T) {
	bin := armoriqBinary(t)
	upURL, execs := countingUpstream(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "armoriq.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(crashConfig, upURL)), 0o644)

	var agentKey string
	var acked int64
	for round := 0; round < 3; round++ {
		g := startGateway(t, bin, dir, "--config", cfg)
		if agentKey == "" {
			admin, err := os.ReadFile(filepath.Join(dir, "data", "admin.key"))
			if err != nil {
				t.Fatal(err)
			}
			agentKey = g.createAgentKey(t, strings.TrimSpace(string(admin)))
		}
		stop := make(chan struct{})
		a := load(g.url, agentKey, 8, stop)
		time.Sleep(700 * time.Millisecond)
		g.kill() // SIGKILL mid-load
		close(stop)
		acked += a.Load()
		time.Sleep(50 * time.Millisecond)
	}
	if acked == 0 {
		t.Fatal("no call was acknowledged: the load did not run")
	}
	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(dir, "data", "armoriq.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkAudited(t, st, execs.Load(), acked)
}

// checkAudited compares the upstream's executions with the committed
// request records, and verifies the chain.
func checkAudited(t *testing.T, st store.Store, executed, acked int64) {
	t.Helper()
	ctx := context.Background()
	var requests, missing int64
	err := st.ExportAudit(ctx, store.AuditFilter{Phase: store.PhaseRequest}, func(r store.AuditRecord) error {
		requests++
		if r.OutcomeMissing {
			missing++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := st.VerifyAudit(ctx)
	if err != nil || !rep.OK() {
		t.Errorf("audit verify after the crashes = %+v, %v", rep, err)
	}
	t.Logf("upstream executions %d, acknowledged calls %d, request records %d (%d without an outcome: cut off by a crash)", executed, acked, requests, missing)
	if executed > requests {
		t.Errorf("the upstream executed %d calls but only %d request records were committed: %d ran without an audit record", executed, requests, executed-requests)
	}
	if acked > requests {
		t.Errorf("%d calls were acknowledged but only %d request records exist", acked, requests)
	}
}

// TestPostgresOutageUnderLoad terminates the gateway's PostgreSQL
// connections under load, then drops its schema: no call runs without a
// committed record, and once the tables are gone nothing more runs.
func TestPostgresOutageUnderLoad(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	bin := armoriqBinary(t)
	upURL, execs := countingUpstream(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "armoriq.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(crashConfig, upURL)), 0o644)
	u, _ := url.Parse(dsn)
	app := "armoriq_crash_" + fmt.Sprint(time.Now().UnixNano())
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	schema := q.Get("search_path")

	g := startGateway(t, bin, dir, "--config", cfg, "--store", u.String())
	admin, err := os.ReadFile(filepath.Join(dir, "data", "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	agentKey := g.createAgentKey(t, strings.TrimSpace(string(admin)))
	ctx := context.Background()
	base := os.Getenv(storetest.PostgresEnv)
	pg, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(ctx)

	stop := make(chan struct{})
	a := load(g.url, agentKey, 8, stop)
	for i := 0; i < 3; i++ {
		time.Sleep(400 * time.Millisecond)
		if _, err := pg.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(400 * time.Millisecond)
	close(stop)
	time.Sleep(200 * time.Millisecond)
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	checkAudited(t, st, execs.Load(), a.Load())
	st.Close()

	// The schema dropped mid-load: every call is refused, none runs.
	stop2 := make(chan struct{})
	a2 := load(g.url, agentKey, 8, stop2)
	time.Sleep(300 * time.Millisecond)
	if _, err := pg.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Exec(ctx, "CREATE SCHEMA "+schema); err != nil { // for the cleanup's DROP
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // calls committed before the drop finish
	before, ackBefore := execs.Load(), a2.Load()
	time.Sleep(1 * time.Second)
	close(stop2)
	if after := execs.Load(); after != before {
		t.Errorf("with the audit tables gone the upstream still executed %d calls", after-before)
	}
	if ack := a2.Load(); ack != ackBefore {
		t.Errorf("with the audit tables gone %d calls were still acknowledged", ack-ackBefore)
	}
	if !strings.Contains(g.logs.String(), "store") {
		t.Logf("gateway log: %s", g.logs)
	}
}

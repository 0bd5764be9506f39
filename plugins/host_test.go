package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/plugins/mcpadapter"
)

// The test binary plays the other processes of these tests, chosen by
// ARMORIQ_TEST_ROLE: the built-in adapter the host re-executes (the
// transport is the last argument, as in "armoriq adapter http"), a stdio
// MCP server, and a gateway that the orphan test SIGKILLs.
func TestMain(m *testing.M) {
	switch os.Getenv("ARMORIQ_TEST_ROLE") {
	case "adapter":
		switch os.Args[len(os.Args)-1] {
		case "http":
			plugins.Serve(mcpadapter.NewHTTP())
		case "stdio":
			plugins.Serve(mcpadapter.NewStdio())
		default:
			fmt.Fprintf(os.Stderr, "unknown transport %q\n", os.Args[len(os.Args)-1])
			os.Exit(2)
		}
		os.Exit(0)
	case "adapter-v1":
		// An adapter built before contract version 2.
		if os.Args[len(os.Args)-1] == "stdio" {
			plugins.ServeV1(mcpadapter.NewStdio())
		} else {
			plugins.ServeV1(mcpadapter.NewHTTP())
		}
		os.Exit(0)
	case "adapter-asker":
		plugins.Serve(asker{})
		os.Exit(0)
	case "adapter-echo":
		// bench_test.go; ARMORIQ_TEST_CPUPROFILE profiles the adapter.
		if path := os.Getenv("ARMORIQ_TEST_CPUPROFILE"); path != "" {
			if f, err := os.Create(path); err == nil {
				_ = pprof.StartCPUProfile(f)
			}
		}
		plugins.Serve(echoAdapter{})
		pprof.StopCPUProfile()
		os.Exit(0)
	case "adapter-mux":
		plugins.Serve(muxAdapter{}) // mux_test.go
		os.Exit(0)
	case "adapter-mux-v3":
		plugins.ServeV3(muxAdapter{})
		os.Exit(0)
	case "adapter-mux-v4":
		plugins.ServeV4(muxAdapter{})
		os.Exit(0)
	case "adapter-echo-v4":
		plugins.ServeV4(echoAdapter{}) // bench_test.go
		os.Exit(0)
	case "unix-echo":
		if err := serveUnixEcho(); err != nil { // bench_test.go
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "mcp-stdio":
		if err := serveStdio(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "gateway":
		os.Exit(runGateway())
	}
	os.Exit(m.Run())
}

func testExe(t testing.TB) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// newHost returns a host that runs the test binary as its built-in adapters.
func newHost(t testing.TB, opts ...plugins.HostOption) *plugins.Host {
	t.Helper()
	h := plugins.NewHost(append([]plugins.HostOption{
		plugins.WithExecutable(testExe(t)),
		plugins.WithEnv("ARMORIQ_TEST_ROLE=adapter"),
		plugins.WithGetenv(func(k string) string {
			if k == "UPSTREAM_TOKEN" {
				return upstreamToken
			}
			return ""
		}),
		plugins.WithLog(os.Stderr, "error"),
		plugins.WithRestartBackoff(50*time.Millisecond, time.Second),
	}, opts...)...)
	t.Cleanup(func() { h.Close() })
	return h
}

func httpServer(id, url string) plugins.ServerConfig {
	return plugins.ServerConfig{
		ID: id, Transport: plugins.TransportHTTP, URL: url,
		Headers: map[string]string{"Authorization": "Bearer $UPSTREAM_TOKEN"},
	}
}

func stdioServer(id string) plugins.ServerConfig {
	return plugins.ServerConfig{
		ID: id, Transport: plugins.TransportStdio, Command: os.Args[0],
		Env: map[string]string{"ARMORIQ_TEST_ROLE": "mcp-stdio"},
	}
}

func startAdapter(t testing.TB, h *plugins.Host, cfg plugins.ServerConfig) plugins.Adapter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Sync(ctx, []plugins.ServerConfig{cfg}); err != nil {
		t.Fatalf("Sync(%s): %v", cfg.ID, err)
	}
	a, err := h.Get(cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// callText calls a tool and returns the text of its result.
func callText(ctx context.Context, a plugins.Adapter, name string, args any) (string, error) {
	b, _ := json.Marshal(args)
	raw, err := a.CallTool(ctx, name, b, nil)
	if err != nil {
		return "", err
	}
	return resultText(raw)
}

func resultText(raw json.RawMessage) (string, error) {
	var res mcp.CallToolResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return "", fmt.Errorf("decoding %s: %v", raw, err)
	}
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	if res.IsError {
		return "", fmt.Errorf("tool error: %s", strings.Join(parts, " "))
	}
	return strings.Join(parts, " "), nil
}

func mustCall(t testing.TB, a plugins.Adapter, name string, args any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := callText(ctx, a, name, args)
	if err != nil {
		t.Fatalf("CallTool(%s, %v): %v", name, args, err)
	}
	return got
}

// exercise checks every method of the contract against the test upstream.
func exercise(t *testing.T, a plugins.Adapter) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	raw, err := a.ListTools(ctx, "")
	if err != nil {
		t.Fatalf("ListTools: %v", err)
	}
	var tools mcp.ListToolsResult
	if err := json.Unmarshal(raw, &tools); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	for _, want := range []string{"add", "echo", "pid", "slow"} {
		if !slices.Contains(names, want) {
			t.Errorf("tools: got %v, want %s among them", names, want)
		}
	}

	if got := mustCall(t, a, "echo", map[string]any{"text": "hi there"}); got != "hi there" {
		t.Errorf("echo(hi there) = %q, want %q", got, "hi there")
	}
	if got := mustCall(t, a, "add", map[string]any{"a": 2, "b": 40}); got != "42" {
		t.Errorf("add(2, 40) = %q, want 42", got)
	}

	// A JSON-RPC error of the upstream comes back as an *RPCError.
	_, err = a.CallTool(ctx, "no_such_tool", nil, nil)
	var rpcErr *plugins.RPCError
	if !errors.As(err, &rpcErr) {
		t.Errorf("calling an unknown tool: got error %v, want an *RPCError", err)
	}

	raw, err = a.ListResources(ctx, "")
	if err != nil || !strings.Contains(string(raw), "test://greeting") {
		t.Errorf("ListResources = %s, %v; want test://greeting listed", raw, err)
	}
	raw, err = a.ReadResource(ctx, "test://greeting")
	if err != nil || !strings.Contains(string(raw), `"text":"hello"`) {
		t.Errorf("ReadResource(test://greeting) = %s, %v; want text hello", raw, err)
	}
	raw, err = a.ReadResource(ctx, "test://big")
	if err != nil || len(raw) < bigSize {
		t.Errorf("ReadResource(test://big) = %d bytes, %v; want more than %d bytes", len(raw), err, bigSize)
	}
	raw, err = a.ListPrompts(ctx, "")
	if err != nil || !strings.Contains(string(raw), `"greet"`) {
		t.Errorf("ListPrompts = %s, %v; want greet listed", raw, err)
	}
	raw, err = a.GetPrompt(ctx, "greet", map[string]string{"name": "Ada"})
	if err != nil || !strings.Contains(string(raw), "Hello, Ada") {
		t.Errorf("GetPrompt(greet, Ada) = %s, %v; want Hello, Ada", raw, err)
	}
	if err := a.Health(ctx); err != nil {
		t.Errorf("Health: %v", err)
	}

	// Progress notifications arrive in order, before the result.
	var progress []string
	args, _ := json.Marshal(map[string]any{"ms": 60, "steps": 3})
	raw, err = a.CallTool(ctx, "slow", args, func(p plugins.Progress) {
		progress = append(progress, fmt.Sprintf("%g/%g %s", p.Progress, p.Total, p.Message))
	})
	if err != nil {
		t.Fatalf("CallTool(slow): %v", err)
	}
	if got, want := strings.Join(progress, "; "), "1/3 step 1; 2/3 step 2; 3/3 step 3"; got != want {
		t.Errorf("progress of slow: got %q, want %q", got, want)
	}
}

func TestHTTPAdapter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		versions  []string
		stateless bool
		want      string
	}{
		{"2025-11-25 with sessions", []string{"2025-11-25"}, false, "2025-11-25"},
		{"2025-06-18 with sessions", []string{"2025-06-18"}, false, "2025-06-18"},
		{"2025-03-26 with sessions", []string{"2025-03-26"}, false, "2025-03-26"},
		{"2025-11-25 stateless", []string{"2025-11-25"}, true, "2025-11-25"},
		{"2026-07-28 stateless", []string{"2026-07-28"}, true, "2026-07-28"},
		{"all versions, stateless", nil, true, "2026-07-28"},
		// A go-sdk v1.8.0 server with sessions does not answer
		// server/discover, so the client falls back to initialize.
		{"all versions, with sessions", nil, false, "2025-11-25"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(&mcp.ServerOptions{SupportedProtocolVersions: tc.versions})
			url := u.serveHTTP(t, tc.stateless)
			a := startAdapter(t, newHost(t), httpServer("up", url))
			exercise(t, a)
			if got, _ := u.version.Load().(string); got != tc.want {
				t.Errorf("negotiated protocol: got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestHTTPAdapterUpstreamAuth(t *testing.T) {
	url := newUpstream(nil).serveHTTP(t, false)
	h := newHost(t)
	cfg := httpServer("up", url)
	cfg.Headers = map[string]string{"Authorization": "Bearer wrong"}
	err := h.Sync(context.Background(), []plugins.ServerConfig{cfg})
	if err == nil || !strings.Contains(err.Error(), `adapter "up": configure:`) {
		t.Fatalf("Sync with a wrong upstream token: got %v, want a configure error", err)
	}

	cfg.Headers = map[string]string{"Authorization": "Bearer $UNSET_VAR"}
	err = h.Sync(context.Background(), []plugins.ServerConfig{cfg})
	if err == nil || !strings.Contains(err.Error(), "$UNSET_VAR is not set") {
		t.Fatalf("Sync with an unset variable: got %v, want $UNSET_VAR is not set", err)
	}
}

func TestStdioAdapter(t *testing.T) {
	a := startAdapter(t, newHost(t), stdioServer("local"))
	exercise(t, a)

	// Arguments beyond gRPC's default 4 MiB reach the server.
	big := strings.Repeat("y", bigSize)
	if got := mustCall(t, a, "echo", map[string]any{"text": big}); got != big {
		t.Errorf("echo of %d bytes returned %d bytes", len(big), len(got))
	}
}

// TestStdioServerCrash: when the MCP server process dies, the adapter
// fails the call in flight and starts a new server for the next one.
func TestStdioServerCrash(t *testing.T) {
	h := newHost(t)
	a := startAdapter(t, h, stdioServer("local"))
	first, _ := strconv.Atoi(mustCall(t, a, "pid", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := callText(ctx, a, "exit", nil); err == nil {
		t.Fatal("calling exit: got no error")
	} else {
		t.Logf("the call that crashed the server failed with: %v", err)
	}
	waitGone(t, first)
	second, _ := strconv.Atoi(mustCall(t, a, "pid", nil))
	if second == first || !alive(second) {
		t.Errorf("server pid after the crash: %d (was %d), want a new live one", second, first)
	}
	if st := h.Status()[0]; st.Restarts != 0 {
		t.Errorf("the adapter itself restarted: %+v", st)
	}
}

// TestEverythingServer runs the Go SDK's conformance everything-server
// when it is installed.
func TestEverythingServer(t *testing.T) {
	path, err := lookPath("everything-server")
	if err != nil {
		t.Skip("everything-server (go-sdk conformance server) is not on PATH; skipping")
	}
	a := startAdapter(t, newHost(t), plugins.ServerConfig{ID: "everything", Transport: plugins.TransportStdio, Command: path})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	raw, err := a.ListTools(ctx, "")
	if err != nil {
		t.Fatalf("ListTools: %v", err)
	}
	t.Logf("everything-server tools: %.200s", raw)
}

func TestCrashedAdapterRestarts(t *testing.T) {
	url := newUpstream(nil).serveHTTP(t, false)
	h := newHost(t)
	a := startAdapter(t, h, httpServer("up", url))
	pid := h.Status()[0].PID

	// Kill the adapter in the middle of a call.
	errc := make(chan error, 1)
	go func() {
		_, err := callText(context.Background(), a, "slow", map[string]any{"ms": 5000})
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	if !errors.Is(err, plugins.ErrUnavailable) || !strings.Contains(err.Error(), `adapter "up" crashed during tools/call slow`) {
		t.Fatalf("in-flight call: got %v, want a crash error", err)
	}
	t.Logf("in-flight call failed with: %v", err)

	// The next call waits for the restart and succeeds.
	if got := mustCall(t, a, "echo", map[string]any{"text": "again"}); got != "again" {
		t.Errorf("echo after restart = %q, want again", got)
	}
	st := h.Status()[0]
	if st.State != plugins.StateUp || st.Restarts != 1 || st.PID == pid || !strings.Contains(st.LastError, "signal: killed") {
		t.Errorf("status after restart: %+v; want up, 1 restart, a new pid, last error 'signal: killed'", st)
	}
}

func TestChecksumMismatch(t *testing.T) {
	h := newHost(t)
	wrong := strings.Repeat("ab", 32)
	exe := testExe(t)
	err := h.Sync(context.Background(), []plugins.ServerConfig{{
		ID: "weather", Transport: plugins.TransportPlugin, Path: exe, SHA256: wrong,
	}})
	want := fmt.Sprintf(`adapter "weather": sha256 mismatch: config pins %s, file has %s`, wrong, sha256File(t, exe))
	if err == nil || err.Error() != want {
		t.Fatalf("Sync with a wrong sha256:\ngot  %v\nwant %s", err, want)
	}
	st := h.Status()[0]
	if st.State != plugins.StateFailed || st.PID != 0 {
		t.Errorf("status: %+v, want failed and no process", st)
	}
	a, _ := h.Get("weather")
	if _, err := a.ListTools(context.Background(), ""); !errors.Is(err, plugins.ErrUnavailable) || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Errorf("ListTools on a refused adapter: got %v, want unavailable with the mismatch", err)
	}
}

func TestCallTimeout(t *testing.T) {
	u := newUpstream(nil)
	url := u.serveHTTP(t, false)
	h := newHost(t, plugins.WithCallTimeout(300*time.Millisecond))
	a := startAdapter(t, h, httpServer("up", url))
	start := time.Now()
	_, err := callText(context.Background(), a, "slow", map[string]any{"ms": 5000})
	if !errors.Is(err, plugins.ErrTimeout) {
		t.Fatalf("slow call with a 300ms timeout: got %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timed-out call took %v", d)
	}
	t.Logf("timeout error: %v", err)
	// The upstream learns the call was abandoned (notifications/cancelled).
	deadline := time.Now().Add(5 * time.Second)
	for u.cancelled.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the upstream's slow call was not cancelled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The adapter is still fine.
	if got := mustCall(t, a, "echo", map[string]any{"text": "ok"}); got != "ok" {
		t.Errorf("echo after a timeout = %q", got)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	u := newUpstream(nil)
	url := u.serveHTTP(t, false)
	h := newHost(t, plugins.WithMaxConcurrent(2))
	a := startAdapter(t, h, httpServer("up", url))

	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = callText(context.Background(), a, "slow", map[string]any{"ms": 200})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if got := u.maxInFlight.Load(); got != 2 {
		t.Errorf("max calls in flight upstream: got %d, want 2", got)
	}

	// Waiting for a slot is bounded by the caller's context.
	for range 2 {
		go callText(context.Background(), a, "slow", map[string]any{"ms": 1000})
	}
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := callText(ctx, a, "echo", map[string]any{"text": "x"}); !errors.Is(err, plugins.ErrBusy) {
		t.Errorf("third call with both slots taken: got %v, want ErrBusy", err)
	}
}

func TestSync(t *testing.T) {
	url := newUpstream(nil).serveHTTP(t, false)
	h := newHost(t)
	ctx := context.Background()
	if err := h.Sync(ctx, []plugins.ServerConfig{httpServer("a", url), httpServer("b", url)}); err != nil {
		t.Fatal(err)
	}
	before := pids(h)

	changed := httpServer("b", url)
	changed.Timeout = 5 * time.Second
	if err := h.Sync(ctx, []plugins.ServerConfig{httpServer("a", url), changed, stdioServer("c")}); err != nil {
		t.Fatal(err)
	}
	after := pids(h)
	if after["a"] != before["a"] {
		t.Errorf("unchanged server a was restarted: pid %d → %d", before["a"], after["a"])
	}
	if after["b"] == before["b"] {
		t.Errorf("changed server b kept pid %d", before["b"])
	}
	waitGone(t, before["b"])
	if after["c"] == 0 {
		t.Errorf("new server c not started: %v", h.Status())
	}

	if err := h.Sync(ctx, []plugins.ServerConfig{httpServer("a", url)}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, after["b"], after["c"])
	if _, err := h.Get("c"); !errors.Is(err, plugins.ErrUnknownServer) {
		t.Errorf("Get(c) after removal: got %v, want ErrUnknownServer", err)
	}
}

func pids(h *plugins.Host) map[string]int {
	m := map[string]int{}
	for _, st := range h.Status() {
		m[st.ID] = st.PID
	}
	return m
}

func TestCloseLeavesNoProcess(t *testing.T) {
	h := newHost(t)
	a := startAdapter(t, h, stdioServer("local"))
	child, _ := strconv.Atoi(mustCall(t, a, "pid", nil))
	adapter := h.Status()[0].PID
	if !alive(child) || !alive(adapter) {
		t.Fatalf("adapter %d or its server %d is not running", adapter, child)
	}
	h.Close()
	waitGone(t, adapter, child)
}

// TestCustomAdapter builds examples/weather-mcp, pins its digest and calls
// it through the host.
func TestCustomAdapter(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/weather-mcp")
	}
	goTool, err := lookPath("go")
	if err != nil {
		t.Skip("no go command to build the example with")
	}
	bin := filepath.Join(t.TempDir(), "weather-mcp")
	build := exec.Command(goTool, "build", "-o", bin, "github.com/armoriq/controlplane/examples/weather-mcp")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build weather-mcp: %v\n%s", err, out)
	}
	h := newHost(t)
	a := startAdapter(t, h, plugins.ServerConfig{
		ID: "weather-mcp", Transport: plugins.TransportPlugin, Path: bin, SHA256: sha256File(t, bin),
	})
	if got, want := mustCall(t, a, "get_weather", map[string]any{"city": "Boston"}), "Weather in Boston: 2°C, sunny, humidity 87%"; got != want {
		t.Errorf("get_weather(Boston) = %q, want %q", got, want)
	}
}

// TestHTTPAdapterReconnects ends the upstream's sessions behind the
// adapter's back (as an upstream restart does): the adapter opens a new
// session and the calls go on.
func TestHTTPAdapterReconnects(t *testing.T) {
	u := newUpstream(nil)
	url := u.serveHTTP(t, false)
	a := startAdapter(t, newHost(t), httpServer("up", url))
	for i := range 3 {
		for ss := range u.server.Sessions() {
			_ = ss.Close()
		}
		if got := mustCall(t, a, "echo", map[string]any{"text": "after"}); got != "after" {
			t.Errorf("echo after the upstream dropped session %d = %q", i, got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := a.ListTools(ctx, ""); err != nil {
			t.Errorf("ListTools after the upstream dropped session %d: %v", i, err)
		}
		cancel()
	}
}

// TestUpstreamLate starts the gateway before its upstream: the adapter
// fails to start, is retried with backoff, and serves once the upstream
// is up.
func TestUpstreamLate(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h := newHost(t)
	err = h.Sync(context.Background(), []plugins.ServerConfig{httpServer("late", "http://"+addr)})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Sync before the upstream is up: got %v, want connection refused", err)
	}
	if st := h.Status()[0]; st.State != plugins.StateDown && st.State != plugins.StateStarting {
		t.Errorf("status: %+v, want down or starting", st)
	}

	u := newUpstream(nil)
	h2 := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return u.server }, nil)
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+upstreamToken {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h2.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	a, _ := h.Get("late")
	if got := mustCall(t, a, "echo", map[string]any{"text": "finally"}); got != "finally" {
		t.Errorf("echo = %q", got)
	}
	if st := h.Status()[0]; st.State != plugins.StateUp || st.Restarts < 1 {
		t.Errorf("status: %+v, want up after at least one restart", st)
	}
}

// TestSyncRetriesFailed: an adapter refused for its configuration is tried
// again at the next Sync, even with the same configuration.
func TestSyncRetriesFailed(t *testing.T) {
	token := ""
	url := newUpstream(nil).serveHTTP(t, false)
	h := newHost(t, plugins.WithGetenv(func(k string) string {
		if k == "UPSTREAM_TOKEN" {
			return token
		}
		return ""
	}))
	cfg := httpServer("up", url)
	if err := h.Sync(context.Background(), []plugins.ServerConfig{cfg}); err == nil {
		t.Fatal("Sync with $UPSTREAM_TOKEN unset: no error")
	}
	token = upstreamToken
	if err := h.Sync(context.Background(), []plugins.ServerConfig{cfg}); err != nil {
		t.Fatalf("Sync once $UPSTREAM_TOKEN is set: %v", err)
	}
}

// TestSyncDrains: changing a server's configuration lets its calls in
// flight finish on the old adapter before it is stopped.
func TestSyncDrains(t *testing.T) {
	url := newUpstream(nil).serveHTTP(t, false)
	h := newHost(t)
	a := startAdapter(t, h, httpServer("up", url))
	errc := make(chan error, 1)
	go func() {
		_, err := callText(context.Background(), a, "slow", map[string]any{"ms": 500})
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	changed := httpServer("up", url)
	changed.Timeout = time.Minute
	if err := h.Sync(context.Background(), []plugins.ServerConfig{changed}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Errorf("call in flight during the Sync: %v", err)
	}
}

// TestPagination: cursors pass through the adapter both ways.
func TestPagination(t *testing.T) {
	url := newUpstream(&mcp.ServerOptions{PageSize: 2}).serveHTTP(t, false)
	a := startAdapter(t, newHost(t), httpServer("up", url))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var names []string
	cursor := ""
	for pages := 1; ; pages++ {
		raw, err := a.ListTools(ctx, cursor)
		if err != nil {
			t.Fatalf("ListTools(%q): %v", cursor, err)
		}
		var page mcp.ListToolsResult
		if err := json.Unmarshal(raw, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Tools) > 2 {
			t.Errorf("page %d has %d tools, want at most 2", pages, len(page.Tools))
		}
		for _, tool := range page.Tools {
			names = append(names, tool.Name)
		}
		if page.NextCursor == "" {
			break
		}
		if pages > 10 {
			t.Fatal("more than 10 pages")
		}
		cursor = page.NextCursor
	}
	if got, want := strings.Join(names, ","), "add,ask,echo,elicit,logs,meta,pid,slow"; got != want {
		t.Errorf("tools over all pages: got %s, want %s", got, want)
	}
}

// TestAdapterProcs: WithAdapterProcs reaches the adapter's environment
// (Serve applies it to the runtime: TestSetProcs), and not the stdio
// server the adapter starts, whose Go runtime keeps its own default.
func TestAdapterProcs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/PID/environ")
	}
	h := newHost(t, plugins.WithAdapterProcs(1))
	a := startAdapter(t, h, stdioServer("procs"))
	server, _ := strconv.Atoi(mustCall(t, a, "pid", nil))
	environ := func(pid int) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		return "\x00" + string(b)
	}
	want := "\x00" + plugins.ProcsEnv + "=1\x00"
	if env := environ(h.Status()[0].PID); !strings.Contains(env, want) {
		t.Errorf("the adapter's environment lacks %s=1", plugins.ProcsEnv)
	}
	if env := environ(server); strings.Contains(env, "\x00"+plugins.ProcsEnv+"=") {
		t.Errorf("the stdio server inherited %s", plugins.ProcsEnv)
	}
}

// TestKilledAdapterLeavesNoHopDirectory: an adapter killed with SIGKILL
// cannot remove its hop's socket and directory; the host does, once the
// process is gone.
func TestKilledAdapterLeavesNoHopDirectory(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the hop needs unix sockets")
	}
	// A temporary directory of the test's own, for the adapter's and the
	// host's: others running beside it (the gateway's tests start adapters
	// too) make and remove hop directories in the shared one.
	tmp, err := os.MkdirTemp("", "aqhop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	t.Setenv("TMPDIR", tmp)
	hopDirs := func() map[string]bool {
		m, _ := filepath.Glob(filepath.Join(tmp, "armoriq-hop-*"))
		set := map[string]bool{}
		for _, d := range m {
			set[d] = true
		}
		return set
	}
	before := hopDirs()
	url := newUpstream(nil).serveHTTP(t, false)
	h := newHost(t)
	a := startAdapter(t, h, httpServer("killed", url))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A raw call opens the hop.
	if _, err := rawCall(ctx, a.(plugins.AdapterRaw), "echo", map[string]any{"text": "x"}, nil); err != nil {
		t.Fatal(err)
	}
	var mine []string
	for d := range hopDirs() {
		if !before[d] {
			mine = append(mine, d)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("new hop directories after the first raw call: %v, want one", mine)
	}
	pid := h.Status()[0].PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The host cleans up before it restarts the adapter.
	for h.Status()[0].Restarts < 1 {
		if ctx.Err() != nil {
			t.Fatalf("the adapter was not restarted: %+v", h.Status()[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(mine[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed adapter's hop directory %s is still there (%v)", mine[0], err)
	}
}

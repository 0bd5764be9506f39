// Package loadbench is the engine of "armoriq bench": it starts an MCP
// upstream (over Streamable HTTP, and over stdio), a gateway with its
// adapter processes as production runs them, a plain reverse proxy (the
// floor of one extra hop) and measures tools/call through each of them,
// and through any peer named on the command line, side by side in
// alternating rounds: latency, throughput, and the CPU time and memory of
// every process involved (from /proc, on Linux).
package loadbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Peer is an MCP endpoint the bench measures beside the gateway, already
// running: another gateway or proxy, set up by the user to front the
// bench's upstream.
type Peer struct {
	Name string
	URL  string
	// Stdio says the peer fronts a stdio server it runs itself (armoriq
	// demo-server bench), not the bench's HTTP upstream.
	Stdio bool
	// PIDs are the peer's processes: their CPU time, and their
	// descendants', is charged to the peer. None: its CPU is not known.
	PIDs []int
}

// Config is one bench run.
type Config struct {
	// Exe is the armoriq executable the children run (gateway, adapters,
	// upstreams, proxy).
	Exe string
	// GatewayExe, if set, is the armoriq executable the gateway and its
	// adapters run from (another build, to compare two); the upstreams,
	// the proxy and the stdio server stay Exe's.
	GatewayExe string
	Version    string
	// Concurrency lists the numbers of workers, each calling in a loop.
	Concurrency []int
	// Rounds of Round each, per target and concurrency, after a Warmup.
	Rounds        int
	Round, Warmup time.Duration
	// SQLiteSync is the gateway's --sqlite-sync: full or normal.
	SQLiteSync string
	// MCPVersion is the protocol version the MCP clients speak.
	MCPVersion string
	// StdioProtocol, if set, pins the gateway's stdio server to that MCP
	// protocol version (its protocol in armoriq.yaml): below 2026-07-28
	// its adapter opens the session with the initialize handshake. Empty:
	// no pin, 2026-07-28 first.
	StdioProtocol string
	Peers         []Peer
	// PeerTool is the name of the echo tool on the peers (default echo).
	PeerTool string
	// UpstreamAddr is where the HTTP upstream listens (default
	// 127.0.0.1:0); a fixed one lets a peer be configured to reach it.
	UpstreamAddr string
	// CPUProfileDir, if set, receives CPU profiles of the gateway and of
	// the adapter, taken during the first round of each gateway target at
	// each concurrency, and heap profiles taken at its end.
	CPUProfileDir string
	// ReadyFile, if set, is written once every process runs: one line per
	// process, its role and pid.
	ReadyFile string
	// Progress receives a line per step; ChildLog the children's
	// standard error. Either may be nil.
	Progress, ChildLog io.Writer
}

// Check reports the first problem of c, as a message for the user.
func (c *Config) Check() error {
	switch {
	case len(c.Concurrency) == 0:
		return errors.New("--concurrency lists no level")
	case c.Rounds < 1:
		return fmt.Errorf("--rounds must be at least 1, got %d", c.Rounds)
	case c.Round < 50*time.Millisecond:
		return fmt.Errorf("--round %s is too short (at least 50ms)", c.Round)
	case c.Warmup < 0:
		return fmt.Errorf("--warmup must not be negative")
	case c.SQLiteSync != "full" && c.SQLiteSync != "normal":
		return fmt.Errorf("--sqlite-sync must be full or normal, got %q", c.SQLiteSync)
	case c.MCPVersion != LegacyVersion && c.MCPVersion != StatelessVersion:
		return fmt.Errorf("--mcp-version must be %s or %s, got %q", LegacyVersion, StatelessVersion, c.MCPVersion)
	}
	for _, n := range c.Concurrency {
		if n < 1 || n > 1024 {
			return fmt.Errorf("--concurrency %d is out of range (1 to 1024)", n)
		}
	}
	seen := map[string]bool{}
	for _, p := range c.Peers {
		if err := checkName(p.Name); err != nil {
			return err
		}
		if seen[p.Name] {
			return fmt.Errorf("--peer %s is given twice", p.Name)
		}
		seen[p.Name] = true
		if !strings.HasPrefix(p.URL, "http://") && !strings.HasPrefix(p.URL, "https://") {
			return fmt.Errorf("--peer %s=%s: the URL must be http:// or https://", p.Name, p.URL)
		}
	}
	return nil
}

// reservedNames are the targets the bench itself measures.
var reservedNames = map[string]bool{targetDirect: true, targetProxy: true, targetMCP: true, targetInvoke: true}

// checkName checks a peer's name: a short word that is not one of the
// bench's own targets.
func checkName(name string) error {
	if name == "" || len(name) > 24 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
		return fmt.Errorf("peer name %q must be 1 to 24 letters, digits, '-', '_' or '.'", name)
	}
	if reservedNames[name] {
		return fmt.Errorf("peer name %q is one of the bench's own targets", name)
	}
	return nil
}

// The bench's own targets.
const (
	targetDirect = "direct"
	targetProxy  = "proxy"
	targetMCP    = "armoriq-mcp"
	targetInvoke = "armoriq-invoke"
)

// Process roles, the columns of CPU per call.
const (
	roleGateway  = "gateway"
	roleAdapter  = "adapter"
	roleUpstream = "upstream"
	roleProxy    = "proxy"
	rolePeer     = "peer"
	roleClient   = "client"
	// roleGatewayAdapter is the gateway and its adapter together, for
	// their resident set sampled at the same moments.
	roleGatewayAdapter = "gateway+adapter"
)

// The gateway's names for the two upstreams.
const (
	serverHTTP  = "bench-http"
	serverStdio = "bench-stdio"
)

// procRef is a process whose CPU time a target is charged.
type procRef struct {
	role  string
	pid   int
	start uint64 // its start time, so a reused pid is not mistaken for it
	tree  bool   // its descendants count too
}

// target is one way of reaching the echo tool.
type target struct {
	upstream string // http or stdio
	name     string
	procs    func() []procRef // read at each round: adapters restart
	// newCaller returns worker i's caller, its session set up.
	newCaller func(ctx context.Context, i int) (caller, error)
	gateway   bool
}

// bench is a run in progress: its processes and targets.
type bench struct {
	cfg      Config
	dir      string
	children []*child
	gw       *child
	gwURL    string
	adminURL string
	agentKey string
	upHTTP   *child
	upStdio  *child // the bench's own stdio server, for direct calls
	stdioIn  io.Closer
	stdio    *stdioConn
	hc       *http.Client // setup calls

	mu       sync.Mutex
	gwProcs  map[string]procRef // adapter-http, adapter-stdio, upstream-stdio
	peakAnon map[int]int64      // pid → highest RssAnon sampled
	targets  []*target
	progress io.Writer
}

// Run runs the bench and returns its report. Every process it started is
// stopped before it returns, also when ctx is cancelled (Ctrl-C).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Exe == "" {
		return nil, errors.New("no armoriq executable to run the children")
	}
	if err := ctx.Err(); err != nil {
		return nil, err // nothing started
	}
	if cfg.PeerTool == "" {
		cfg.PeerTool = EchoTool
	}
	if cfg.UpstreamAddr == "" {
		cfg.UpstreamAddr = "127.0.0.1:0"
	}
	dir, err := os.MkdirTemp("", "armoriq-bench-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b := &bench{cfg: cfg, dir: dir, hc: &http.Client{Timeout: 30 * time.Second}, progress: cfg.Progress}
	if b.progress == nil {
		b.progress = io.Discard
	}
	if err := os.Mkdir(b.pprofDir(), 0o700); err != nil {
		return nil, err
	}
	defer b.stopAll()
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	return b.measure(ctx)
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "bench: "+format+"\n", args...)
}

// childEnv is the environment of the children: the bench's, without the
// ARMORIQ_* variables that would change the gateway's settings (a store
// elsewhere, another address).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ARMORIQ_") {
			env = append(env, kv)
		}
	}
	return env
}

func (b *bench) startChild(role string, setup func(*exec.Cmd) error, args ...string) (*child, error) {
	env := childEnv()
	if role == roleGateway && b.cfg.CPUProfileDir != "" {
		env = append(env, adapterPprofEnv+"="+b.pprofDir())
	}
	exe := b.cfg.Exe
	if role == roleGateway && b.cfg.GatewayExe != "" {
		exe = b.cfg.GatewayExe
	}
	c, err := startChild(role, exe, args, env, b.cfg.ChildLog, setup)
	if err != nil {
		return nil, err
	}
	b.children = append(b.children, c)
	return c, nil
}

// start starts the upstreams, the proxy and the gateway, and waits until
// each answers.
func (b *bench) start(ctx context.Context) error {
	// The HTTP upstream.
	ready := filepath.Join(b.dir, "upstream.ready")
	up, err := b.startChild("HTTP upstream", nil, "demo-server", "bench", "--http", b.cfg.UpstreamAddr, "--ready-file", ready)
	if err != nil {
		return err
	}
	lines, err := up.waitReady(ctx, ready, 20*time.Second)
	if err != nil {
		return err
	}
	b.upHTTP = up
	upURL := lines[0]
	b.logf("HTTP upstream %s (pid %d)", upURL, up.pid())

	// The plain reverse proxy.
	ready = filepath.Join(b.dir, "proxy.ready")
	px, err := b.startChild("proxy", nil, "bench", "proxy", "--target", upURL, "--ready-file", ready)
	if err != nil {
		return err
	}
	if lines, err = px.waitReady(ctx, ready, 20*time.Second); err != nil {
		return err
	}
	proxyURL := lines[0]
	b.logf("reverse proxy %s (pid %d)", proxyURL, px.pid())

	// The gateway, as `armoriq gateway` runs in production: its own
	// process, adapters as processes of their own, auth, policy, audit in
	// SQLite.
	if err := b.startGateway(ctx, upURL); err != nil {
		return err
	}

	// The bench's own stdio server, for direct calls.
	if err := b.startStdio(ctx); err != nil {
		return err
	}

	upHTTP := procRef{role: roleUpstream, pid: up.pid()}
	b.add(&target{upstream: "http", name: targetDirect, procs: fixed(upHTTP), newCaller: b.httpCaller(upURL, "", EchoTool)})
	b.add(&target{upstream: "http", name: targetProxy, procs: fixed(procRef{role: roleProxy, pid: px.pid()}, upHTTP), newCaller: b.httpCaller(proxyURL, "", EchoTool)})
	b.add(&target{upstream: "http", name: targetMCP, gateway: true, procs: b.gatewayProcs("http", upHTTP), newCaller: b.httpCaller(b.gwURL+"/mcp", b.agentKey, serverHTTP+"_"+EchoTool)})
	b.add(&target{upstream: "http", name: targetInvoke, gateway: true, procs: b.gatewayProcs("http", upHTTP), newCaller: b.invokeCaller(serverHTTP)})
	for _, p := range b.cfg.Peers {
		if !p.Stdio {
			b.add(&target{upstream: "http", name: p.Name, procs: peerProcs(p, &upHTTP), newCaller: b.httpCaller(p.URL, "", b.cfg.PeerTool)})
		}
	}
	stdioUp := procRef{role: roleUpstream, pid: b.upStdio.pid()}
	b.add(&target{upstream: "stdio", name: targetDirect, procs: fixed(stdioUp), newCaller: func(context.Context, int) (caller, error) { return b.stdio, nil }})
	b.add(&target{upstream: "stdio", name: targetMCP, gateway: true, procs: b.gatewayProcs("stdio", procRef{}), newCaller: b.httpCaller(b.gwURL+"/mcp", b.agentKey, serverStdio+"_"+EchoTool)})
	b.add(&target{upstream: "stdio", name: targetInvoke, gateway: true, procs: b.gatewayProcs("stdio", procRef{}), newCaller: b.invokeCaller(serverStdio)})
	for _, p := range b.cfg.Peers {
		if p.Stdio {
			b.add(&target{upstream: "stdio", name: p.Name, procs: peerProcs(p, nil), newCaller: b.httpCaller(p.URL, "", b.cfg.PeerTool)})
		}
	}

	// Every target answers once before anything is measured (the gateway
	// lists its upstreams in the background after the bundle is active).
	for _, t := range b.targets {
		if err := b.firstCall(ctx, t); err != nil {
			return err
		}
	}
	b.discover()
	if b.cfg.ReadyFile != "" {
		if err := b.writeReadyFile(); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) add(t *target) { b.targets = append(b.targets, t) }

// adapterPprofEnv makes the gateway's built-in adapters serve the Go
// profiler on loopback ports and write their URLs, one file per adapter
// (adapter-PID.url), to the directory it names.
const adapterPprofEnv = "ARMORIQ_ADAPTER_PPROF_DIR"

// pprofDir is where the adapters write their profiler's URL.
func (b *bench) pprofDir() string { return filepath.Join(b.dir, "pprof") }

func fixed(refs ...procRef) func() []procRef {
	for i := range refs {
		if st, err := readStat(refs[i].pid); err == nil {
			refs[i].start = st.startTime
		}
	}
	return func() []procRef { return refs }
}

func peerProcs(p Peer, upstream *procRef) func() []procRef {
	var refs []procRef
	for _, pid := range p.PIDs {
		refs = append(refs, procRef{role: rolePeer, pid: pid, tree: true})
	}
	if upstream != nil {
		refs = append(refs, *upstream)
	}
	return fixed(refs...)
}

// gatewayProcs are the processes of a call through the gateway to the
// upstream of that kind: the gateway, the adapter, and the upstream (the
// HTTP one, or the stdio server the adapter runs).
func (b *bench) gatewayProcs(kind string, upstream procRef) func() []procRef {
	gw := procRef{role: roleGateway, pid: b.gw.pid()}
	if st, err := readStat(gw.pid); err == nil {
		gw.start = st.startTime
	}
	return func() []procRef {
		b.mu.Lock()
		defer b.mu.Unlock()
		refs := []procRef{gw}
		if a, ok := b.gwProcs["adapter-"+kind]; ok {
			refs = append(refs, a)
		}
		if kind == "stdio" {
			if u, ok := b.gwProcs["upstream-stdio"]; ok {
				refs = append(refs, u)
			}
		} else {
			refs = append(refs, upstream)
		}
		return refs
	}
}

// discover finds the gateway's adapter processes and the stdio server
// below the stdio adapter, by their command lines.
func (b *bench) discover() {
	if !procSupported() {
		return
	}
	found := map[string]procRef{}
	for pid, st := range descendants(b.gw.pid()) {
		args := readCmdline(pid)
		joined := strings.Join(args, " ")
		switch {
		case strings.Contains(joined, " adapter http"):
			found["adapter-http"] = procRef{role: roleAdapter, pid: pid, start: st.startTime}
		case strings.Contains(joined, " adapter stdio"):
			found["adapter-stdio"] = procRef{role: roleAdapter, pid: pid, start: st.startTime}
		case strings.Contains(joined, " demo-server bench"):
			found["upstream-stdio"] = procRef{role: roleUpstream, pid: pid, start: st.startTime}
		}
	}
	b.mu.Lock()
	b.gwProcs = found
	b.mu.Unlock()
}

// firstCall makes one call through t, retrying for a while: a gateway
// lists its upstreams in the background, and a peer may be warming up.
func (b *bench) firstCall(ctx context.Context, t *target) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := t.newCaller(ctx, 0)
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = c.call(cctx)
			cancel()
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (%s upstream) does not answer: %v", t.name, t.upstream, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeReadyFile writes the role and pid of every process, one a line.
func (b *bench) writeReadyFile() error {
	var lines []string
	for _, c := range b.children {
		lines = append(lines, fmt.Sprintf("%s %d", strings.ReplaceAll(c.role, " ", "-"), c.pid()))
	}
	b.mu.Lock()
	for name, p := range b.gwProcs {
		lines = append(lines, fmt.Sprintf("%s %d", name, p.pid))
	}
	b.mu.Unlock()
	return writeReady(b.cfg.ReadyFile, strings.Join(lines, "\n"))
}

// stopAll stops the children, the gateway first (it stops its adapters
// and their servers itself), and makes sure nothing it started outlives
// it.
func (b *bench) stopAll() {
	if b.gw != nil {
		b.gw.stop(15 * time.Second)
	}
	// Adapters and stdio servers are in process groups of their own; the
	// gateway stopped them, but a gateway killed before it could leaves
	// them: kill what is left, checking each is still the same process.
	b.mu.Lock()
	for _, p := range b.gwProcs {
		if procSupported() && alive(p.pid, p.start) {
			killGroup(p.pid)
		}
	}
	b.mu.Unlock()
	if b.stdioIn != nil {
		b.stdioIn.Close() // the stdio server's end of session
	}
	var wg sync.WaitGroup
	for _, c := range b.children {
		if c == b.gw {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(5 * time.Second)
		}()
	}
	wg.Wait()
}

// machine describes where the bench ran.
func machine() Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

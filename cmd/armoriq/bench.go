package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/cmd/armoriq/internal/loadbench"
	"github.com/armoriq/controlplane/schema"
)

type benchOptions struct {
	concurrency string
	rounds      int
	round       time.Duration
	warmup      time.Duration
	sqliteSync  string
	mcpVersion  string
	stdioProto  string
	peers       []string
	stdioPeers  []string
	peerPIDs    []string
	peerTool    string
	upstream    string
	cpuprofile  string
	gatewayExe  string
	jsonOut     bool
	verbose     bool
	readyFile   string
}

// benchCommand measures what forwarding through the gateway costs, beside
// calling the upstream directly, a plain reverse proxy and any peer.
func benchCommand() *command {
	var o benchOptions
	var flags *pflag.FlagSet
	return &command{
		Use:   "bench",
		Short: "Measure the gateway's forwarding cost beside direct calls, a plain proxy and peers",
		Long: `bench measures tools/call side by side, in alternating rounds, on this machine.
It starts everything itself, in a temporary directory:

  - an upstream MCP server (armoriq demo-server bench: one tool, echo) over
    Streamable HTTP, and the same server over stdio;
  - a gateway (armoriq gateway) with its adapter processes, as production
    runs them: API-key auth, a policy that allows echo, the audit log in
    SQLite with --sqlite-sync full (fsync each commit) unless told normal;
  - a plain Go reverse proxy to the HTTP upstream: the floor of one extra
    hop, with nothing checked or recorded;

and measures, for each upstream, the direct call, the proxy, the gateway's
/mcp (an MCP session per worker) and /invoke (the SDKs' call, an intent
token issued once and checked on every call), and every --peer: an MCP
endpoint you run yourself in front of the same upstream (another gateway
or proxy). At each --concurrency, every target runs --rounds rounds of
--round, in turn, after a --warmup, so all see the same machine load.

For each target: throughput and its share of direct's, p50 and p99 latency
and what they add over direct, failed calls, the CPU time per call of
every process involved (gateway, adapter, upstream, proxy or peer, and the
load generator itself: from /proc/<pid>/stat, Linux only), gateway +
adapter's (or a peer's) as a multiple of the proxy's in the same run
(CPU ×proxy, over the HTTP upstream), and the context
switches per call of their threads (/proc/<pid>/task/*/status; the table
shows gateway + adapter, the JSON every role), the gateway's synced
writes of its audit journal per call (syncs/call, from its /metrics:
the batches its group commit wrote), the highest
resident set of gateway + adapter (sampled VmRSS), and their physical
footprint: the anonymous memory of each plus the pages of the armoriq
executable (and other files) they map, counted once, where the VmRSS sum
counts them twice (exact as root, who can read page frame numbers). The
machine's load average is printed: figures from a loaded machine are
worth less. Before the rounds it measures the floor: what this machine
takes for the two things the gateway adds to a call that a proxy does
not, a record made durable (in the gateway's data directory, as its audit
journal does) and a round trip to another process over a unix socket, each
after a pause of a millisecond (at concurrency 1 both come after the
gateway and its adapter were idle, their threads asleep); with
the proxy's own +p50, the least the gateway can add here. It gives the CPU
time of each too (getrusage, on Unix; the round trip's in both
processes): with the proxy's own CPU per call, the least CPU per call the
gateway and its adapter can take together, as a multiple of the proxy's.

Exit status: 0, 1 when a call failed (the report says which), 2 for bad
flags. Ctrl-C stops every process the bench started.`,
		Example: `  armoriq bench
  armoriq bench --concurrency 16 --rounds 5 --sqlite-sync normal
  armoriq bench --json > bench.json
  armoriq bench --cpuprofile prof/      # go tool pprof prof/gateway-http-armoriq-mcp-c16.pprof
  armoriq bench --upstream-addr 127.0.0.1:9411 --peer mcp-proxy=http://127.0.0.1:9090/bench/mcp --peer-pid mcp-proxy=4242`,
		Flags: func(fs *pflag.FlagSet) {
			flags = fs
			fs.StringVar(&o.concurrency, "concurrency", "1,16,64", "concurrency levels: workers calling in a loop, comma-separated")
			fs.IntVar(&o.rounds, "rounds", 3, "rounds per target at each concurrency")
			fs.DurationVar(&o.round, "round", 2*time.Second, "length of one round of one target")
			fs.DurationVar(&o.warmup, "warmup", 0, "warm-up per target at each concurrency, not measured (default: one round, at most 1s)")
			fs.StringVar(&o.sqliteSync, "sqlite-sync", "full", "the gateway's audit durability: full (fsync each commit) or normal")
			fs.StringVar(&o.mcpVersion, "mcp-version", loadbench.LegacyVersion, "MCP protocol version of the clients: "+loadbench.LegacyVersion+" (a session per worker) or "+loadbench.StatelessVersion+" (stateless)")
			fs.StringVar(&o.stdioProto, "stdio-protocol", "", "pin the gateway's stdio server to this MCP protocol version (its protocol in armoriq.yaml), e.g. "+loadbench.LegacyVersion+": the adapter then opens its session with the initialize handshake; default none, "+loadbench.StatelessVersion+" first")
			fs.StringArrayVar(&o.peers, "peer", nil, "NAME=URL: an MCP endpoint fronting the bench's HTTP upstream, measured beside the gateway (repeatable; see --upstream-addr)")
			fs.StringArrayVar(&o.stdioPeers, "stdio-peer", nil, "NAME=URL: an MCP endpoint fronting its own stdio server (armoriq demo-server bench), measured beside the gateway's stdio path (repeatable)")
			fs.StringArrayVar(&o.peerPIDs, "peer-pid", nil, "NAME=PID[,PID...]: a peer's processes, to measure their CPU (with their children's)")
			fs.StringVar(&o.peerTool, "peer-tool", loadbench.EchoTool, "the name under which peers expose the echo tool")
			fs.StringVar(&o.upstream, "upstream-addr", "127.0.0.1:0", "address of the HTTP upstream (HOST:PORT), fixed so that a peer can be set up to reach it")
			fs.StringVar(&o.cpuprofile, "cpuprofile", "", "directory to write CPU profiles of the gateway and its adapter to, taken during their first round at each concurrency, and heap profiles taken at its end")
			fs.StringVar(&o.gatewayExe, "gateway-exe", "", "run the gateway (and its adapters) from this armoriq executable instead of this one: measure another build, e.g. before and after a change, with everything else the same")
			fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
			fs.BoolVar(&o.verbose, "verbose", false, "print progress, and the children's logs, on standard error")
			fs.StringVar(&o.readyFile, "ready-file", "", "write the role and pid of every process to this file once all run (for scripts and profilers)")
		},
		MaxArgs: 0,
		Run: func(ctx context.Context, e *env, args []string) error {
			if !flags.Changed("warmup") {
				o.warmup = min(o.round, time.Second)
			}
			cfg, err := o.config()
			if err != nil {
				return err
			}
			if o.verbose {
				cfg.Progress, cfg.ChildLog = e.Stderr, e.Stderr
			}
			rep, err := loadbench.Run(ctx, cfg)
			if err != nil {
				if ctx.Err() != nil {
					return errors.New("bench: interrupted; every process it started is stopped")
				}
				return fmt.Errorf("bench: %v", err)
			}
			if o.jsonOut {
				enc := json.NewEncoder(e.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else if err := rep.WriteTable(e.Stdout); err != nil {
				return err
			}
			if n := rep.Errors(); n > 0 {
				return &exitError{Code: exitFailure, Err: fmt.Errorf("bench: %d call(s) failed (errors column; first_error in --json)", n)}
			}
			return nil
		},
		Sub: []*command{benchProxyCommand(), benchEchoCommand()},
	}
}

// config checks the flags and turns them into the engine's config.
func (o *benchOptions) config() (loadbench.Config, error) {
	cfg := loadbench.Config{
		Version: buildVersion(), Rounds: o.rounds, Round: o.round, Warmup: o.warmup,
		SQLiteSync: o.sqliteSync, MCPVersion: o.mcpVersion, StdioProtocol: o.stdioProto, PeerTool: o.peerTool,
		UpstreamAddr: o.upstream, CPUProfileDir: o.cpuprofile, ReadyFile: o.readyFile,
	}
	conc, err := parseConcurrency(o.concurrency)
	if err != nil {
		return cfg, usageErrorf("--concurrency: %v", err)
	}
	cfg.Concurrency = conc
	if o.stdioProto != "" && !slices.Contains(schema.ProtocolVersions(), o.stdioProto) {
		return cfg, usageErrorf("--stdio-protocol %q: want one of %s", o.stdioProto, strings.Join(schema.ProtocolVersions(), ", "))
	}
	if o.round < 50*time.Millisecond {
		return cfg, usageErrorf("--round %s is too short (at least 50ms)", o.round)
	}
	if o.peerTool == "" {
		return cfg, usageErrorf("--peer-tool must not be empty")
	}
	for _, list := range []struct {
		flag  string
		specs []string
		stdio bool
	}{{"--peer", o.peers, false}, {"--stdio-peer", o.stdioPeers, true}} {
		for _, s := range list.specs {
			name, url, ok := strings.Cut(s, "=")
			if !ok || name == "" || url == "" {
				return cfg, usageErrorf("%s %q: want NAME=URL", list.flag, s)
			}
			cfg.Peers = append(cfg.Peers, loadbench.Peer{Name: name, URL: url, Stdio: list.stdio})
		}
	}
	for _, s := range o.peerPIDs {
		name, pids, ok := strings.Cut(s, "=")
		i := -1
		for j, p := range cfg.Peers {
			if p.Name == name {
				i = j
			}
		}
		if !ok || i < 0 {
			return cfg, usageErrorf("--peer-pid %q: want NAME=PID[,PID...] naming a --peer or --stdio-peer", s)
		}
		for _, f := range strings.Split(pids, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 0 {
				return cfg, usageErrorf("--peer-pid %q: %q is not a process id", s, f)
			}
			cfg.Peers[i].PIDs = append(cfg.Peers[i].PIDs, pid)
		}
	}
	if o.cpuprofile != "" {
		if err := os.MkdirAll(o.cpuprofile, 0o755); err != nil {
			return cfg, usageErrorf("--cpuprofile: %v", err)
		}
	}
	if err := cfg.Check(); err != nil {
		return cfg, usageErrorf("%v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return cfg, fmt.Errorf("finding the armoriq executable: %v", err)
	}
	cfg.Exe = exe
	if o.gatewayExe != "" {
		st, err := os.Stat(o.gatewayExe)
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return cfg, usageErrorf("--gateway-exe %q: not an executable file", o.gatewayExe)
		}
		if cfg.GatewayExe, err = filepath.Abs(o.gatewayExe); err != nil {
			return cfg, usageErrorf("--gateway-exe: %v", err)
		}
	}
	return cfg, nil
}

// parseConcurrency parses "1,16,64".
func parseConcurrency(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("%q is not a number of workers from 1 to 1024", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchProxyCommand is the bench's plain reverse proxy, run as a process
// of its own so that its CPU time is its own.
func benchProxyCommand() *command {
	var target, addr, ready string
	return &command{
		Use:     "proxy",
		Short:   "Serve the bench's plain reverse proxy (run by armoriq bench)",
		Hidden:  true,
		MaxArgs: 0,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&target, "target", "", "the URL to proxy to")
			fs.StringVar(&addr, "addr", "127.0.0.1:0", "address to listen on")
			fs.StringVar(&ready, "ready-file", "", "write the proxy's URL to this file once it listens")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			h, err := loadbench.ProxyHandler(target)
			if err != nil {
				return usageErrorf("--target: %v", err)
			}
			// The proxy's URL has the target's path: it forwards paths as
			// they come.
			u, _ := url.Parse(target)
			return loadbench.ServeHTTP(ctx, addr, u.Path, ready, h)
		},
	}
}

// benchEchoCommand is the other end of the bench's unix-socket round
// trips, in a process of its own (the floor, in the report).
func benchEchoCommand() *command {
	var socket string
	return &command{
		Use:     "echo",
		Short:   "Answer the bench's unix-socket round trips (run by armoriq bench)",
		Hidden:  true,
		MaxArgs: 0,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&socket, "socket", "", "the unix socket to connect to")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if socket == "" {
				return usageErrorf("--socket is required")
			}
			return loadbench.Echo(socket)
		},
	}
}

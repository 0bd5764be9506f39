package plugins

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/armoriq/controlplane/plugins/proto"
)

// The go-plugin handshake. A host and an adapter must agree on the cookie;
// the protocol version selects the contract: 1 is proto/adapter.proto, 2 is
// proto/v2/adapter.proto, 3 is version 2 plus proto/v3/adapter.proto's
// Raw.Call, 4 is version 3 plus Raw.Session, 5 is version 4 plus the hop
// (hop.go). Both sides declare every version they speak in
// pluginSets and go-plugin picks the highest they share, so a host runs
// adapters built against either, and an adapter built against both runs
// under an older host.
const (
	ProtocolVersion  = 5 // the newest contract version this build speaks
	MagicCookieKey   = "ARMORIQ_PLUGIN"
	MagicCookieValue = "7d3c1a8e-armoriq-adapter"
)

// MaxMessageSize bounds one message between host and adapter, in both
// directions: a tool's arguments or result, a resource's contents. gRPC's
// default of 4 MiB is too small for some resources.
const MaxMessageSize = 64 << 20

// flowWindow is the HTTP/2 flow-control window of the connection between
// host and adapter, and of each of its streams, on both sides. A fixed
// window turns off gRPC's bandwidth estimation, which otherwise sends a
// ping after nearly every message of a call and waits for its
// acknowledgement: two more frames and wake-ups per message on a socket
// whose latency is nothing to estimate. It is the largest window the
// estimation could reach, so large messages flow as before; both sides
// read every stream as its messages arrive.
const flowWindow = 16 << 20

// pluginName is the name the adapter is dispensed under.
const pluginName = "adapter"

func handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// pluginSets lists the contract versions an adapter serves: versions 3 to
// 5 only when impl implements AdapterRaw, with hop its version 5 hop.
func pluginSets(impl Adapter, hop *hopServer) map[int]plugin.PluginSet {
	sets := map[int]plugin.PluginSet{
		1: {pluginName: &AdapterPlugin{Impl: impl}},
		2: {pluginName: &AdapterPluginV2{Impl: impl}},
	}
	if _, raw := impl.(AdapterRaw); raw {
		sets[3] = plugin.PluginSet{pluginName: &AdapterPluginV3{Impl: impl}}
		sets[4] = plugin.PluginSet{pluginName: &AdapterPluginV4{Impl: impl}}
		sets[5] = plugin.PluginSet{pluginName: &AdapterPluginV5{Impl: impl, hop: hop}}
	}
	return sets
}

// hostPluginSets lists the contract versions the host speaks: all five. log
// is where the host's side of the glue logs.
func hostPluginSets(log hclog.Logger) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		1: {pluginName: &AdapterPlugin{}},
		2: {pluginName: &AdapterPluginV2{}},
		3: {pluginName: &AdapterPluginV3{}},
		4: {pluginName: &AdapterPluginV4{}},
		5: {pluginName: &AdapterPluginV5{log: log}},
	}
}

// AdapterPlugin is the go-plugin glue of contract version 1: on the adapter
// side it registers Impl as the gRPC service, on the host side it returns
// an Adapter that calls the service.
type AdapterPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Adapter // adapter side only
}

var _ plugin.GRPCPlugin = (*AdapterPlugin)(nil)

// GRPCServer registers the adapter's service.
func (p *AdapterPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterAdapterServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns the host's Adapter over conn.
func (p *AdapterPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &grpcClient{c: proto.NewAdapterClient(conn)}, nil
}

// Serve runs impl as an adapter process; an adapter's main calls it and
// nothing else. It speaks the go-plugin handshake on stdout, so the program
// must not write to stdout itself. Log with log/slog: Serve points the
// default logger at stderr in the format the host forwards to its own log.
//
// Serve does not return while the host is alive. The process exits when the
// host stops it, when the host process dies (the parent changes, or SIGTERM
// from the Linux parent-death signal the host sets), or on SIGTERM/SIGHUP.
// Before exiting it calls impl.Close if impl is an io.Closer, so an adapter
// can stop what it spawned.
//
// It logs at the level the host asks for in the environment
// (LogLevelEnv: debug, info, warn or error; info when unset), so that the
// gateway's --log-level reaches into its adapters.
func Serve(impl Adapter) {
	var hop *hopServer
	if raw, ok := impl.(AdapterRaw); ok {
		hop = newHopServer(raw)
	}
	sets := pluginSets(impl, hop)
	if hop == nil {
		serve(impl, sets)
		return
	}
	serve(impl, sets, hop.close)
}

// LogLevelEnv is the variable the host sets in every adapter's environment
// to the level it logs at.
const LogLevelEnv = "ARMORIQ_LOG_LEVEL"

// ProcsEnv is the variable the host sets in an adapter's environment to
// the number of CPUs the adapter's Go runtime may run on at once
// (GOMAXPROCS; WithAdapterProcs). It is a variable of its own, not
// GOMAXPROCS, so that a stdio server the adapter starts keeps its own.
const ProcsEnv = "ARMORIQ_ADAPTER_PROCS"

// setProcs applies ProcsEnv's value v, if any, to the Go runtime, and
// says what was wrong with a value it ignored.
func setProcs(v string) error {
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1<<12 {
		return fmt.Errorf("%s=%q: want a whole number of CPUs, at least 1; the runtime's default is kept", ProcsEnv, v)
	}
	runtime.GOMAXPROCS(n)
	return nil
}

// serve is Serve with the contract versions to offer, and what to close
// before the process exits.
func serve(impl Adapter, sets map[int]plugin.PluginSet, closers ...func()) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv(LogLevelEnv))); err != nil {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(newPluginLogHandler(os.Stderr, level)))
	if err := setProcs(os.Getenv(ProcsEnv)); err != nil {
		slog.Warn("adapter: ignoring "+ProcsEnv, "error", err)
	}
	cleanup := func() {
		for _, c := range closers {
			c()
		}
		if c, ok := impl.(io.Closer); ok {
			_ = c.Close()
		}
	}
	go exitWithParent(cleanup)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  handshake(),
		VersionedPlugins: sets,
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(MaxMessageSize),
				grpc.StaticStreamWindowSize(flowWindow), grpc.StaticConnWindowSize(flowWindow))...)
		},
	})
	// The host asked the plugin to shut down.
	cleanup()
}

// exitWithParent ends the adapter when the host goes away: on SIGTERM or
// SIGHUP, or when the parent process changes (the host died and the process
// was re-parented), which also covers systems without a parent-death signal.
func exitWithParent(cleanup func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGHUP)
	ppid := os.Getppid()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case s := <-sig:
			slog.Warn("adapter stopping on signal", "signal", s.String())
		case <-tick.C:
			if os.Getppid() == ppid {
				continue
			}
			slog.Warn("adapter stopping: its host process is gone")
		}
		cleanup()
		os.Exit(1)
	}
}

// newPluginLogHandler writes JSON lines with the keys go-plugin's host
// recognises (@level, @message, @timestamp), so adapter logs reach the
// host's log at their own level instead of as raw debug lines.
func newPluginLogHandler(w io.Writer, level slog.Leveler) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				a.Key = "@message"
			case slog.TimeKey:
				// go-plugin parses exactly this layout, else logs the line raw.
				return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			}
			return a
		},
	})
}

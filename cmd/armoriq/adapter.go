package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/plugins/mcpadapter"
)

// adapterPprofEnv names a directory: when the gateway's environment sets
// it, each built-in adapter serves the Go profiler on a loopback port of
// its own and writes that URL to DIR/adapter-PID.url (armoriq bench
// --cpuprofile uses it). Off by default.
const adapterPprofEnv = "ARMORIQ_ADAPTER_PPROF_DIR"

// adapterCommand serves a built-in adapter plugin. The gateway's plugin
// host runs it by re-executing armoriq; it is not meant to be run by hand
// (without the host's handshake it prints a notice and exits).
func adapterCommand() *command {
	var level string
	serve := func(newAdapter func() *mcpadapter.Adapter) func(context.Context, *env, []string) error {
		return func(_ context.Context, e *env, _ []string) error {
			if level != "" {
				if err := checkLogFlags("json", level); err != nil {
					return err
				}
				// plugins.Serve reads the level from the environment, where
				// the host puts its own.
				os.Setenv(plugins.LogLevelEnv, level)
			}
			if dir := e.Getenv(adapterPprofEnv); dir != "" {
				// Standard output belongs to go-plugin's handshake: a
				// problem goes to standard error, the adapter serves on.
				if err := serveAdapterPprof(dir); err != nil {
					fmt.Fprintf(e.Stderr, "armoriq adapter: %s: %v\n", adapterPprofEnv, err)
				}
			}
			plugins.Serve(newAdapter())
			return nil
		}
	}
	flags := func(fs *pflag.FlagSet) {
		fs.StringVar(&level, "log-level", "", "log level: debug, info, warn or error (default: the gateway's, from $"+plugins.LogLevelEnv+")")
	}
	return &command{
		Use:    "adapter",
		Short:  "Serve a built-in adapter plugin (run by the gateway)",
		Hidden: true,
		Sub: []*command{
			{Use: "http", Short: "Reach a Streamable HTTP MCP server", Flags: flags, Run: serve(mcpadapter.NewHTTP)},
			{Use: "stdio", Short: "Spawn an MCP server command and speak to it over stdio", Flags: flags, Run: serve(mcpadapter.NewStdio)},
		},
	}
}

// serveAdapterPprof serves /debug/pprof/ on a free loopback port, in the
// background, and writes its URL to dir/adapter-PID.url.
func serveAdapterPprof(dir string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	path := filepath.Join(dir, "adapter-"+strconv.Itoa(os.Getpid())+".url")
	if err := writeFileAtomic(path, func(f *os.File) error {
		_, err := fmt.Fprintf(f, "http://%s\n", ln.Addr())
		return err
	}); err != nil {
		srv.Close()
		return err
	}
	return nil
}

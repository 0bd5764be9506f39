package main

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/cmd/armoriq/internal/loadbench"
	"github.com/armoriq/controlplane/cmd/armoriq/internal/weather"
	"github.com/armoriq/controlplane/plugins/stdioserver"
)

// demoServerCommand serves the demo MCP servers shipped in the binary over
// stdio. The quickstart config names it as a stdio server
// (command: armoriq, args: [demo-server, weather]), so the gateway reaches
// it through the built-in stdio adapter like any other MCP server.
func demoServerCommand() *command {
	return &command{
		Use:   "demo-server",
		Short: "Serve a demo MCP server over stdio (used by the quickstart config)",
		Long: `demo-server serves an MCP server shipped inside armoriq on stdin and
stdout, for the quickstart: nothing to install, nothing from the network.

  weather   get_weather and get_forecast, deterministic data derived from
            the city's name
  bench     echo, the upstream of armoriq bench (also over HTTP: --http)`,
		Sub: []*command{{
			Use:     "weather",
			Short:   "The quickstart's weather-mcp: get_weather and get_forecast, offline",
			MaxArgs: 0,
			Run: func(ctx context.Context, e *env, args []string) error {
				return weather.NewServer(buildVersion()).Run(ctx, stdioserver.Transport())
			},
		}, demoBenchServerCommand()},
	}
}

// demoBenchServerCommand serves the upstream of armoriq bench: one tool,
// echo, over stdio or, with --http, over Streamable HTTP.
func demoBenchServerCommand() *command {
	var addr, ready string
	return &command{
		Use:   "bench",
		Short: "The upstream of armoriq bench: echo, over stdio or Streamable HTTP",
		Long: `bench serves one tool, echo, which answers its text: the upstream armoriq
bench measures against. Over stdio by default; with --http it serves
Streamable HTTP (stateless) on that address, at /, until interrupted.`,
		MaxArgs: 0,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&addr, "http", "", "serve Streamable HTTP on this address (HOST:PORT; port 0 picks a free one) instead of stdio")
			fs.StringVar(&ready, "ready-file", "", "with --http: write the server's URL to this file once it listens")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if addr == "" {
				if ready != "" {
					return usageErrorf("--ready-file needs --http")
				}
				err := loadbench.NewEchoServer(buildVersion()).Run(ctx, stdioserver.Transport())
				if ctx.Err() != nil {
					return nil // stopped (SIGTERM, Ctrl-C): not a failure
				}
				return err
			}
			if err := loadbench.ServeHTTP(ctx, addr, "/", ready, loadbench.EchoHandler(buildVersion())); err != nil {
				return usageErrorf("--http %s: %v", addr, err)
			}
			return nil
		},
	}
}

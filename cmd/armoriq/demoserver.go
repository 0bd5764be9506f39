package main

import (
	"context"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/cmd/armoriq/internal/weather"
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
            the city's name`,
		Sub: []*command{{
			Use:     "weather",
			Short:   "The quickstart's weather-mcp: get_weather and get_forecast, offline",
			MaxArgs: 0,
			Run: func(ctx context.Context, e *env, args []string) error {
				return weather.NewServer(buildVersion()).Run(ctx, &mcp.StdioTransport{})
			},
		}},
	}
}

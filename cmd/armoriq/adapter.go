package main

import (
	"context"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/plugins/mcpadapter"
)

// adapterCommand serves a built-in adapter plugin. The gateway's plugin
// host runs it by re-executing armoriq; it is not meant to be run by hand
// (without the host's handshake it prints a notice and exits).
func adapterCommand() *command {
	serve := func(newAdapter func() *mcpadapter.Adapter) func(context.Context, *env, []string) error {
		return func(context.Context, *env, []string) error {
			plugins.Serve(newAdapter())
			return nil
		}
	}
	return &command{
		Use:    "adapter",
		Short:  "Serve a built-in adapter plugin (run by the gateway)",
		Hidden: true,
		Sub: []*command{
			{Use: "http", Short: "Reach a Streamable HTTP MCP server", Run: serve(mcpadapter.NewHTTP)},
			{Use: "stdio", Short: "Spawn an MCP server command and speak to it over stdio", Run: serve(mcpadapter.NewStdio)},
		},
	}
}

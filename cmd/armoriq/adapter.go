package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/plugins/mcpadapter"
)

// adapterCommand serves a built-in adapter plugin. The gateway's plugin
// host runs it by re-executing armoriq; it is not meant to be run by hand
// (without the host's handshake it prints a notice and exits).
func adapterCommand() *command {
	var level string
	serve := func(newAdapter func() *mcpadapter.Adapter) func(context.Context, *env, []string) error {
		return func(context.Context, *env, []string) error {
			if level != "" {
				if err := checkLogFlags("json", level); err != nil {
					return err
				}
				// plugins.Serve reads the level from the environment, where
				// the host puts its own.
				os.Setenv(plugins.LogLevelEnv, level)
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

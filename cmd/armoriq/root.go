package main

// rootCommand is the command tree. Each command lives in a file of its own.
func rootCommand() *command {
	return &command{
		Use:   "armoriq",
		Short: "Config-as-code control plane for AI agents' tool calls",
		Long: `armoriq validates and compiles armoriq.yaml into signed policy bundles,
runs the gateway that enforces them, and reconciles policy from git.`,
		Sub: []*command{
			versionCommand(),
			upCommand(), demoCommand(), demoServerCommand(),
			adapterCommand(),
			gatewayCommand(),
			keysCommand(),
			loginCommand(), whoamiCommand(), logoutCommand(),
			approvalsCommand(),
			auditCommand(),
			validateCommand(), initCommand(), schemaCommand(),
			keygenCommand(),
			compileCommand(),
			bundleCommand(),
			reconcileCommand(), registerCommand(), checkCommand(),
			testCommand(),
			diffCommand(),
			benchCommand(),
		},
	}
}

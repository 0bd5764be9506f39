// Command armoriq is the config-as-code control plane for AI agents' tool calls:
// it validates and compiles armoriq.yaml, runs the gateway and reconciles policy from git.
package main

import "os"

func main() { os.Exit(Main()) }

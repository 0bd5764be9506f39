package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/schema"
)

func schemaCommand() *command {
	var url bool
	return &command{
		Use:   "schema [--url]",
		Short: "Print the JSON Schema of armoriq.yaml, for editors",
		Long: `schema prints a JSON Schema (draft 2020-12) of armoriq.yaml, generated from
the CUE definitions armoriq validate uses and corrected where CUE's encoder
falls short. Editors complete and check the file with it: the YAML language
server (VS Code's YAML extension, JetBrains IDEs, Neovim) reads the first
line armoriq init writes,

  # yaml-language-server: $schema=<URL>

where URL is the schema published with this release (--url prints it); or
save the output and point $schema at the file.

The schema checks what the CUE schema checks: keys, types, required keys
per transport and auth type. What armoriq validate checks in Go after it
(unique ids, references between sections, when expressions, URLs, $VAR
syntax, literal secrets) only armoriq validate reports.`,
		Example: `  armoriq schema > armoriq.schema.json
  armoriq schema --url`,
		MaxArgs: 0,
		Flags: func(fs *pflag.FlagSet) {
			fs.BoolVar(&url, "url", false, "print the URL of the published schema for this version instead")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if url {
				fmt.Fprintln(e.Stdout, schema.JSONSchemaURL(buildVersion()))
				return nil
			}
			data, err := schema.JSONSchema()
			if err != nil {
				return err
			}
			_, err = e.Stdout.Write(data)
			return err
		},
	}
}

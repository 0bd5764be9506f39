package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/compiler"
	"github.com/armoriq/controlplane/schema"
)

func diffCommand() *command {
	var (
		format, path, toolsFile string
		exitCode                bool
	)
	return &command{
		Use:   "diff BASE HEAD",
		Short: "Show who gains or loses access to which tools between two configs",
		Long: `diff compares the effective access of two configs. BASE and HEAD are each a
config file, a directory holding armoriq.yaml (or .yml, .hcl), or a git
revision of the repository in the current directory (a branch, tag, commit
or HEAD~1), read at --path (default: the first of armoriq.yaml, armoriq.yml,
armoriq.hcl that exists there). An existing file or directory wins over a
revision of the same name.

Access is decided for every subject named in either config (users, *@domain
entries, groups, agents, and "*" for anyone else) and every literal
server/tool named in either config, plus the tools in --tools (the JSON
{server: [tools]} that 'armoriq validate --online --save-tools FILE'
writes): tools matched only by globs are covered only that way. Where a
rule with a when condition applies and could change the outcome, the
access is "conditional": diff does not guess arguments.

Changes are reported as gained (deny to allow or hold), lost (allow or hold
to deny) and changed (allow to hold and back, to or from conditional).
Identity providers are access too: one added (+) or removed (-), or a
change (~) of its issuer, audience, user_claim, groups_claim,
required_scopes or allowed_algorithms, changes who can sign in as whom and
is reported first, compared with defaults filled in.
--format markdown writes a pull request comment (kept under 60,000
characters).

Exit status: 0 compared (whatever changed; with --exit-code, 1 when access
changed), 1 an invalid config, 2 usage error or unreadable input.`,
		Example: `  armoriq diff main HEAD
  armoriq diff HEAD~1 HEAD --path policy/armoriq.yaml --format markdown
  armoriq diff old/armoriq.yaml armoriq.yaml --tools tools.json --exit-code`,
		MinArgs: 2,
		MaxArgs: 2,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&format, "format", "text", "output format: text, markdown or json")
			fs.StringVar(&path, "path", "", "config file inside the repository, for git revisions")
			fs.StringVar(&toolsFile, "tools", "", "JSON file {server: [tools]} of tools to check besides those the configs name")
			fs.BoolVar(&exitCode, "exit-code", false, "exit with status 1 when effective access changed")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			switch format {
			case "text", "markdown", "json":
			default:
				return usageErrorf("--format must be text, markdown or json, got %q", format)
			}
			var extra map[string][]string
			if toolsFile != "" {
				data, err := os.ReadFile(toolsFile)
				if err != nil {
					return usageErrorf("--tools: %v", err)
				}
				if err := json.Unmarshal(data, &extra); err != nil {
					return usageErrorf("--tools %s: want a JSON object {server: [tools]}: %v", toolsFile, err)
				}
			}
			var (
				cfgs   [2]*schema.Config
				labels [2]string
			)
			for i, arg := range args {
				cfg, label, err := loadDiffSide(e, arg, path)
				if err != nil {
					return err
				}
				cfgs[i], labels[i] = cfg, label
			}
			d, err := compiler.DiffConfigs(cfgs[0], cfgs[1], extra)
			if err != nil {
				var ds schema.Diagnostics
				if errors.As(err, &ds) {
					printDiagnostics(e, ds)
					return silentExit(exitFailure)
				}
				return err
			}
			if err := d.Write(e.Stdout, format, labels[0], labels[1]); err != nil {
				return err
			}
			if exitCode && d.Changed() {
				return silentExit(exitFailure)
			}
			return nil
		},
	}
}

// loadDiffSide loads one side of a diff: a file, a directory or a git
// revision. It returns the config and the name the report gives it.
func loadDiffSide(e *env, arg, path string) (*schema.Config, string, error) {
	var (
		cfg   *schema.Config
		diags schema.Diagnostics
		label = arg
	)
	if st, err := os.Stat(arg); err == nil {
		file := arg
		if st.IsDir() {
			if file, err = schema.FindDefault(arg); err != nil {
				return nil, "", usageErrorf("%v", err)
			}
		}
		cfg, diags = schema.LoadFile(file)
		if diags.IsNotReadable() {
			printDiagnostics(e, diags)
			return nil, "", silentExit(exitUsage)
		}
	} else {
		data, file, commit, err := readRevision(arg, path)
		if err != nil {
			return nil, "", usageErrorf("%s is neither a file, a directory nor a git revision here: %v", arg, err)
		}
		cfg, diags = schema.Parse(arg+":"+filepath.ToSlash(file), data)
		if len(commit) > 12 {
			commit = commit[:12]
		}
		label = fmt.Sprintf("%s (%s)", arg, commit)
	}
	if cfg == nil || diags.HasErrors() {
		printDiagnostics(e, diags)
		return nil, "", silentExit(exitFailure)
	}
	return cfg, label, nil
}

// readRevision reads the config at rev in the repository of the current
// directory: path if given, else the first default name that exists.
func readRevision(rev, path string) (data []byte, file, commit string, err error) {
	names := schema.DefaultNames
	if path != "" {
		names = []string{path}
	}
	for _, name := range names {
		data, commit, _, err = compiler.ReadAtRevision(".", rev, name)
		if err == nil {
			return data, name, commit, nil
		}
	}
	return nil, "", "", err
}

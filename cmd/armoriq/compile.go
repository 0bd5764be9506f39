package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/armoriq/controlplane/compiler"
	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/schema"
	"github.com/spf13/pflag"
)

func compileCommand() *command {
	var (
		out, keyFile, revision string
		sequence               int64
	)
	return &command{
		Use:   "compile [PATH] --key FILE [-o bundle.tar.gz] [--revision REV] [--sequence N]",
		Short: "Compile armoriq.yaml into a signed policy bundle",
		Long: `compile validates PATH (default: armoriq.yaml, armoriq.yml or armoriq.hcl in
the current directory), compiles it and writes a bundle signed with the
Ed25519 key in --key.

The bundle's revision is the HEAD commit when PATH is committed and
unchanged in its git repository, with the commit time as its creation time;
otherwise it is the file's content hash (sha256:...) and compile says why.
With --revision, PATH is compiled as committed at REV (a branch, tag or
commit) rather than as it is on disk.

The bundle's sequence orders bundles for rollback protection (a gateway
refuses one lower than the bundle it runs): the commit time in git; outside
git (or with uncommitted changes) $SOURCE_DATE_EPOCH when set, else the
config file's modification time, in Unix seconds. --sequence N sets it.
The same input, key and sequence always give a byte-identical bundle.

Exit status: 0 compiled, 1 invalid config (errors printed as
file:line:col: path: message), 2 usage error or unreadable input.`,
		Example: `  armoriq keygen -o signing.key
  armoriq compile --key signing.key -o bundle.tar.gz
  armoriq compile policy/armoriq.yaml --key signing.key --revision v1.4.0`,
		MaxArgs: 1,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVarP(&out, "output", "o", "bundle.tar.gz", "bundle file to write")
			fs.StringVar(&keyFile, "key", "", "Ed25519 private key file (PEM) to sign with, from 'armoriq keygen'")
			fs.StringVar(&revision, "revision", "", "compile the file as committed at this git revision")
			fs.Int64Var(&sequence, "sequence", 0, "the bundle's rollback-protection sequence (a positive integer, by convention Unix seconds); default: the commit time, else $SOURCE_DATE_EPOCH, else the file's modification time")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if keyFile == "" {
				return usageErrorf("compile needs --key FILE, the signing key (create one with 'armoriq keygen -o FILE')")
			}
			if sequence < 0 {
				return usageErrorf("--sequence must be a positive integer, got %d", sequence)
			}
			path, err := configPath(args)
			if err != nil {
				return err
			}
			key, kid, err := bundle.LoadPrivateKey(keyFile)
			if err != nil {
				return usageErrorf("signing key: %v", err)
			}

			var (
				data []byte
				opts = compiler.Options{CompilerVersion: "armoriq " + buildVersion()}
				why  string // why the revision is a content hash
			)
			if revision != "" {
				data, opts.Revision, opts.CreatedAt, err = compiler.ReadAtRevision(filepath.Dir(path), revision, filepath.Base(path))
				if err != nil {
					return usageErrorf("%v", err)
				}
			} else {
				if data, err = os.ReadFile(path); err != nil {
					return usageErrorf("%v", err)
				}
				opts.Revision, opts.CreatedAt, err = compiler.GitRevision(path)
				if err != nil {
					why = strings.TrimPrefix(err.Error(), compiler.ErrUncommitted.Error()+": ")
					opts.Revision, opts.CreatedAt = "", time.Time{}
				}
			}
			seqFrom := "commit time"
			switch {
			case sequence > 0:
				opts.Sequence, seqFrom = sequence, "--sequence"
			case opts.CreatedAt.IsZero():
				if opts.Sequence, seqFrom, err = compiler.LocalSequence(e.Getenv, path); err != nil {
					return usageErrorf("bundle sequence: %v", err)
				}
			}

			cfg, diags := schema.Parse(path, data)
			printDiagnostics(e, diags)
			if cfg == nil || diags.HasErrors() {
				fmt.Fprintf(e.Stderr, "%s: invalid, not compiled (%s)\n", displayPath(path), plural(diags.Errors(), "error"))
				return silentExit(exitFailure)
			}
			b, err := compiler.Compile(cfg, opts)
			if err != nil {
				var ds schema.Diagnostics
				if errors.As(err, &ds) {
					printDiagnostics(e, ds)
					fmt.Fprintf(e.Stderr, "%s: not compiled (%s)\n", displayPath(path), plural(ds.Errors(), "error"))
					return silentExit(exitFailure)
				}
				return err
			}
			renameSource(b, path, sourceName(path))
			if err := writeFileAtomic(out, func(f *os.File) error { return bundle.Write(f, b, key, kid) }); err != nil {
				return err
			}

			fmt.Fprintf(e.Stdout, "compiled %s to %s\n", path, out)
			switch {
			case why != "":
				fmt.Fprintf(e.Stdout, "revision: %s (content hash: %s)\n", b.Manifest.Revision, why)
			default:
				fmt.Fprintf(e.Stdout, "revision: %s (git commit of %s)\n", b.Manifest.Revision, b.Manifest.CreatedAt.Format(time.RFC3339))
			}
			fmt.Fprintf(e.Stdout, "sequence: %d (%s)\n", b.Manifest.Sequence, seqFrom)
			fmt.Fprintf(e.Stdout, "key id: %s\n", kid)
			fmt.Fprintf(e.Stdout, "rules: %d, servers: %d\n", len(b.Policy.Rules), len(b.Servers))
			return nil
		},
	}
}

// configPath is the one config file a command works on: the argument, or
// the default file in the current directory.
func configPath(args []string) (string, error) {
	if len(args) == 1 {
		return args[0], nil
	}
	p, err := schema.FindDefault(".")
	if err != nil {
		return "", usageErrorf("%v", err)
	}
	return filepath.Clean(p), nil
}

// sourceName is the name a config file gets inside a bundle: its path from
// the root of its git repository, so that the same commit compiles to the
// same bundle from any working directory; outside git, the path as given.
func sourceName(path string) string {
	if name, err := compiler.RepoPath(path); err == nil {
		return name
	}
	return filepath.ToSlash(displayPath(path))
}

// renameSource records the config file under name in the bundle's manifest
// and rule positions.
func renameSource(b *bundle.Bundle, path, name string) {
	from := filepath.ToSlash(path)
	for i := range b.Manifest.Sources {
		if b.Manifest.Sources[i].Path == from {
			b.Manifest.Sources[i].Path = name
		}
	}
	for i := range b.Policy.Rules {
		r := &b.Policy.Rules[i]
		if r.Pos.File == from {
			r.Pos.File = name
		}
		if r.WhenPos.File == from {
			r.WhenPos.File = name
		}
	}
}

// printDiagnostics writes each diagnostic on its own line, as
// file:line:col: path: message, the form 'armoriq validate' prints.
func printDiagnostics(e *env, ds schema.Diagnostics) {
	for _, d := range ds {
		d.Pos.File = displayPath(d.Pos.File)
		fmt.Fprintln(e.Stderr, d.String())
	}
}

// writeFileAtomic writes path through a temporary file in the same
// directory, so a failed write never leaves half a bundle behind.
func writeFileAtomic(path string, write func(*os.File) error) error {
	return writeFileAtomicMode(path, 0o644, write)
}

// writeFileAtomicMode is writeFileAtomic with the file's mode. The
// temporary file is 0600 while it is written, so a secret is never
// readable by others, even half-written.
func writeFileAtomicMode(path string, mode os.FileMode, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := write(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

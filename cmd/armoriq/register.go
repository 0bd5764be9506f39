package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/compiler"
	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/reconciler"
	"github.com/armoriq/controlplane/schema"
)

func registerCommand() *command {
	var (
		g        gatewayFlags
		keyFile  string
		dryRun   bool
		sequence int64
	)
	return &command{
		Use:   "register [PATH] --key FILE [--gateway URL] [--dry-run] [--sequence N]",
		Short: "Validate, compile, sign and push armoriq.yaml to a gateway in one step",
		Long: `register is for teams without a reconciler: it validates PATH (default:
armoriq.yaml, armoriq.yml or armoriq.hcl here), compiles it, signs the bundle
with --key, shows what changes against the bundle the gateway runs, and
pushes it (PUT /v1/bundle). With --dry-run it stops after showing the
changes.

The bundle's revision is the HEAD commit when PATH is committed and
unchanged, else the file's content hash. Its sequence (rollback protection:
the gateway refuses a bundle older than the one it runs) is the commit time,
else $SOURCE_DATE_EPOCH, else the file's modification time, or --sequence. The
changes are listed rule by rule when the gateway's revision is a commit of
PATH's repository (or nothing is active); otherwise only the revision and
rule count are compared, and register says so.

Exit status: 0 pushed (or unchanged), 1 invalid config or the gateway
refused the bundle, 2 usage error, 3 the gateway could not be reached.`,
		Example: `  armoriq register --key signing.key --gateway http://127.0.0.1:8080 --api-key-file data/admin.key
  armoriq register policy/armoriq.yaml --key signing.key --dry-run`,
		MaxArgs: 1,
		Flags: func(fs *pflag.FlagSet) {
			g.register(fs)
			fs.StringVar(&keyFile, "key", "", "Ed25519 private key file (PEM) to sign with, from 'armoriq keygen'")
			fs.BoolVar(&dryRun, "dry-run", false, "show what would change; push nothing")
			fs.Int64Var(&sequence, "sequence", 0, "the bundle's rollback-protection sequence (a positive integer, by convention Unix seconds); default: the commit time, else $SOURCE_DATE_EPOCH, else the file's modification time")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if keyFile == "" {
				return usageErrorf("register needs --key FILE, the signing key (create one with 'armoriq keygen -o FILE')")
			}
			if sequence < 0 {
				return usageErrorf("--sequence must be a positive integer, got %d", sequence)
			}
			path, err := configPath(args)
			if err != nil {
				return err
			}
			client, err := g.client(e)
			if err != nil {
				return err
			}
			key, kid, err := bundle.LoadPrivateKey(keyFile)
			if err != nil {
				return usageErrorf("signing key: %v", err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return usageErrorf("%v", err)
			}
			rev, at, err := compiler.GitRevision(path)
			if err != nil {
				rev, at = "", time.Time{}
			}
			if sequence == 0 && at.IsZero() {
				if sequence, _, err = compiler.LocalSequence(e.Getenv, path); err != nil {
					return usageErrorf("bundle sequence: %v", err)
				}
			}
			b := &reconciler.Builder{Key: key, KeyID: kid, CompilerVersion: "armoriq " + buildVersion(), Sequence: sequence}
			art, newBundle, o := b.BuildBundle(displayPath(path), data, rev, at)
			for _, d := range o.Diagnostics {
				fmt.Fprintln(e.Stderr, d.String())
			}
			if o.Condition != reconciler.Ready {
				if len(o.Diagnostics) == 0 {
					fmt.Fprintln(e.Stderr, o.Message)
				}
				return silentExit(exitFailure)
			}
			gw := &reconciler.Gateway{URL: client.base, APIKey: client.key}
			st, err := gw.Status(ctx)
			if err != nil {
				return gatewayExit(err)
			}
			fmt.Fprintf(e.Stdout, "gateway %s runs %s\n", client.base, orNone(st.Revision))
			fmt.Fprintf(e.Stdout, "new bundle %s (%d rules, %d servers)\n", art.Revision, len(newBundle.Policy.Rules), len(newBundle.Servers))
			printRegisterChanges(ctx, e, gw, path, st.Revision, newBundle, data)
			if dryRun {
				fmt.Fprintln(e.Stdout, "dry run: nothing pushed")
				return nil
			}
			res, err := gw.Push(ctx, art.Data)
			if err != nil {
				return gatewayExit(err)
			}
			if res.Changed {
				fmt.Fprintf(e.Stdout, "pushed: the gateway now runs %s\n", res.Revision)
			} else {
				fmt.Fprintf(e.Stdout, "unchanged: the gateway already runs %s\n", res.Revision)
			}
			return nil
		},
	}
}

var commitHash = regexp.MustCompile(`^[0-9a-f]{40}$`)

// printRegisterChanges prints the change in effective access from the
// bundle the gateway runs to the new one, with the engine of 'armoriq
// diff'. That needs the active config: it is rebuilt when the active
// revision is a commit of PATH's repository (or nothing is active);
// otherwise only revisions and rule counts can be compared, and it says so.
func printRegisterChanges(ctx context.Context, e *env, gw *reconciler.Gateway, path, active string, nb *bundle.Bundle, data []byte) {
	if active == nb.Manifest.Revision {
		fmt.Fprintln(e.Stdout, "no change: the gateway runs this revision")
		return
	}
	head, _ := schema.Parse(filepath.Base(path), data)
	old := &schema.Config{Version: "v1"}
	if active != "" {
		old = nil
		if commitHash.MatchString(active) {
			if od, _, _, err := compiler.ReadAtRevision(filepath.Dir(path), active, filepath.Base(path)); err == nil {
				if c, ds := schema.Parse(shortRev(active)+":"+filepath.Base(path), od); c != nil && !ds.HasErrors() {
					old = c
				}
			}
		}
	}
	if old == nil || head == nil {
		// Not a commit we can rebuild: compare the bundles themselves.
		raw, err := gw.Bundle(ctx)
		var ab *bundle.Bundle
		if err == nil {
			ab, _, err = bundle.Read(bytes.NewReader(raw))
		}
		if err != nil {
			fmt.Fprintf(e.Stdout, "changes: cannot fetch the active bundle %s to compare (%v); the new bundle has %d rules\n", active, err, len(nb.Policy.Rules))
			return
		}
		changes := reconciler.DiffBundles(ab, nb)
		fmt.Fprintf(e.Stdout, "changes from %s (rules, servers, groups and settings; the active revision is not a commit of this repository):\n", shortRev(active))
		for _, c := range changes {
			fmt.Fprintln(e.Stdout, "  "+c.String())
		}
		if len(changes) == 0 {
			fmt.Fprintln(e.Stdout, "  none")
		}
		return
	}
	d, err := compiler.DiffConfigs(old, head, nil)
	if err != nil {
		fmt.Fprintf(e.Stdout, "changes: cannot diff: %v\n", err)
		return
	}
	from := shortRev(active)
	if active == "" {
		from = "nothing"
	}
	_ = d.Write(e.Stdout, "text", from, displayPath(path))
}

// gatewayExit maps a gateway failure to register's exit codes.
func gatewayExit(err error) error {
	var ae *reconciler.APIError
	if errors.As(err, &ae) && !ae.Transient() {
		return &exitError{Code: exitFailure, Err: err}
	}
	return &exitError{Code: exitUnreachable, Err: err}
}

func orNone(s string) string {
	if s == "" {
		return "nothing (no bundle active)"
	}
	return s
}

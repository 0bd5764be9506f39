package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/spf13/pflag"
)

func bundleCommand() *command {
	return &command{
		Use:   "bundle",
		Short: "Verify and inspect signed policy bundles",
		Sub:   []*command{bundleVerifyCommand(), bundleInspectCommand()},
	}
}

func bundleVerifyCommand() *command {
	var pubkeys []string
	return &command{
		Use:   "verify FILE --pubkey KEY.pub...",
		Short: "Check a bundle's signature against pinned public keys",
		Long: `verify checks FILE exactly as a gateway does before running it: it must be
signed, by one of the given public keys, and hold exactly the files it
signed. It exits 0 when the bundle verifies and 1, with the reason
(unsigned, unknown key, bad signature, file added, file removed, file
changed, unsupported format, malformed), when it does not.`,
		Example: `  armoriq bundle verify bundle.tar.gz --pubkey signing.key.pub`,
		MinArgs: 1, MaxArgs: 1,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringArrayVar(&pubkeys, "pubkey", nil, "public key file (PEM) to trust; repeat for several")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if len(pubkeys) == 0 {
				return usageErrorf("bundle verify needs at least one --pubkey FILE: a bundle is only trusted against pinned keys")
			}
			keys := map[string]ed25519.PublicKey{}
			for _, p := range pubkeys {
				pub, kid, err := bundle.LoadPublicKey(p)
				if err != nil {
					return usageErrorf("%v", err)
				}
				keys[kid] = pub
			}
			data, err := readBundleFile(args[0])
			if err != nil {
				return err
			}
			b, sig, err := bundle.VerifyWithSignature(data, keys)
			if err != nil {
				return fmt.Errorf("%s: bundle rejected: %v", args[0], err)
			}
			fmt.Fprintf(e.Stdout, "verified: revision %s signed by %s\n", b.Manifest.Revision, sig.KeyID)
			return nil
		},
	}
}

// readBundleFile reads a bundle file; an unreadable file is a usage error.
func readBundleFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, bundle.MaxSize+1))
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	return data, nil
}

func bundleInspectCommand() *command {
	var asJSON bool
	return &command{
		Use:   "inspect FILE",
		Short: "Show a bundle's manifest, rules and servers",
		Long: `inspect prints what a bundle holds without verifying its signature: use
'armoriq bundle verify' to know whether it can be trusted.`,
		Example: `  armoriq bundle inspect bundle.tar.gz
  armoriq bundle inspect bundle.tar.gz --json | jq .policy.rules`,
		MinArgs: 1, MaxArgs: 1,
		Flags: func(fs *pflag.FlagSet) {
			fs.BoolVar(&asJSON, "json", false, "print JSON: manifest, signature, policy and servers")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			data, err := readBundleFile(args[0])
			if err != nil {
				return err
			}
			b, sig, err := bundle.Read(bytes.NewReader(data))
			if err != nil {
				return fmt.Errorf("%s: %v", args[0], err)
			}
			if asJSON {
				return printBundleJSON(e.Stdout, b, sig)
			}
			printBundle(e.Stdout, b, sig)
			return nil
		},
	}
}

func printBundleJSON(w io.Writer, b *bundle.Bundle, sig *bundle.Signature) error {
	out := struct {
		Manifest  bundle.Manifest   `json:"manifest"`
		Signature *bundle.Signature `json:"signature"`
		Policy    bundle.Policy     `json:"policy"`
		Servers   []bundle.Server   `json:"servers"`
	}{b.Manifest, sig, b.Policy, b.Servers}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func printBundle(w io.Writer, b *bundle.Bundle, sig *bundle.Signature) {
	m := b.Manifest
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "revision:\t%s\n", m.Revision)
	created := "-"
	if !m.CreatedAt.IsZero() {
		created = m.CreatedAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(tw, "created:\t%s\n", created)
	fmt.Fprintf(tw, "sequence:\t%d\n", m.Sequence)
	fmt.Fprintf(tw, "format:\t%d\n", m.FormatVersion)
	if m.Compiler != "" {
		fmt.Fprintf(tw, "compiler:\t%s\n", m.Compiler)
	}
	for _, s := range m.Sources {
		fmt.Fprintf(tw, "source:\t%s sha256:%s\n", s.Path, s.SHA256)
	}
	if sig == nil {
		fmt.Fprintf(tw, "signature:\tnone (unsigned: gateways refuse it)\n")
	} else {
		fmt.Fprintf(tw, "signature:\t%s by key %s (not verified here: use armoriq bundle verify)\n", sig.Algorithm, sig.KeyID)
	}
	if b.Policy.DefaultTTLSeconds != 0 {
		fmt.Fprintf(tw, "intent ttl:\t%ds\n", b.Policy.DefaultTTLSeconds)
	}
	if b.Policy.RequireCSRG {
		fmt.Fprintf(tw, "require csrg:\ttrue\n")
	}
	tw.Flush()

	if len(b.Policy.Groups) > 0 {
		fmt.Fprintf(w, "\ngroups:\n")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, g := range b.Policy.Groups {
			fmt.Fprintf(tw, "  %s\t%s\n", g.Name, strings.Join(g.Members, ", "))
		}
		tw.Flush()
	}

	fmt.Fprintf(w, "\nrules (%d):\n", len(b.Policy.Rules))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  ID\tEFFECT\tTOOLS\tWHO\tWHEN\tAT\n")
	for _, r := range b.Policy.Rules {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Effect, strings.Join(r.Tools, ","), who(r), orDash(r.When), posString(r.Pos))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nservers (%d):\n", len(b.Servers))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  ID\tTRANSPORT\tTARGET\tAUTH\tTOOL PREFIX\n")
	for _, s := range b.Servers {
		target := s.URL
		switch s.Transport {
		case "stdio":
			target = strings.TrimSpace(s.Command + " " + strings.Join(s.Args, " "))
		case "plugin":
			target = s.Path
		}
		auth := "-"
		if s.Auth != nil {
			auth = s.Auth.Type + " " + s.Auth.ValueRef
		}
		transport := s.Transport
		if s.Protocol != "" {
			transport += " (protocol " + s.Protocol + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.ID, transport, target, auth, s.ToolPrefix)
	}
	tw.Flush()
}

func who(r bundle.Rule) string {
	var parts []string
	if len(r.Users) > 0 {
		parts = append(parts, "users="+strings.Join(r.Users, ","))
	}
	if len(r.Groups) > 0 {
		parts = append(parts, "groups="+strings.Join(r.Groups, ","))
	}
	if len(r.Agents) > 0 {
		parts = append(parts, "agents="+strings.Join(r.Agents, ","))
	}
	if len(parts) == 0 {
		parts = append(parts, "anyone")
	}
	if len(r.Approvers) > 0 {
		parts = append(parts, "approvers="+strings.Join(r.Approvers, ","))
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func posString(p bundle.Pos) string {
	if p.File == "" && p.Line == 0 {
		return "-"
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/spf13/pflag"
)

func keygenCommand() *command {
	var out string
	var force, apiKey bool
	return &command{
		Use:   "keygen -o FILE",
		Short: "Create an Ed25519 key pair for signing policy bundles",
		Long: `keygen writes a new Ed25519 signing key to FILE (PKCS #8 PEM, mode 0600)
and its public half to FILE.pub (PKIX PEM). Give FILE to 'armoriq compile
--key' or the reconciler; pin FILE.pub in every gateway. It prints the key
id bundles signed with the key carry.

With --api-key it writes a new gateway API key instead (mode 0600), for
'armoriq gateway --admin-key-file': keep it in a secret store, as the
Kubernetes manifests in deploy/ do. It prints the key's id, never the key.`,
		Example: `  armoriq keygen -o signing.key
  armoriq keygen --api-key -o admin.key`,
		MaxArgs: 0,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVarP(&out, "output", "o", "", "private key file to write; the public key goes to FILE.pub")
			fs.BoolVar(&force, "force", false, "replace FILE and FILE.pub if they exist")
			fs.BoolVar(&apiKey, "api-key", false, "write a gateway API key (for --admin-key-file) instead of a signing key pair")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if out == "" {
				return usageErrorf("keygen needs -o FILE, the private key file to write")
			}
			if apiKey {
				return writeAPIKey(e, out, force)
			}
			if force {
				for _, p := range []string{out, out + ".pub"} {
					if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
						return err
					}
				}
			}
			if err := bundle.GenerateKey(out); err != nil {
				if !force {
					if _, serr := os.Lstat(out); serr == nil {
						return fmt.Errorf("%s already exists: refusing to overwrite a key (use --force to replace it)", out)
					}
					if _, serr := os.Lstat(out + ".pub"); serr == nil {
						return fmt.Errorf("%s.pub already exists: refusing to overwrite a key (use --force to replace it)", out)
					}
				}
				return err
			}
			_, kid, err := bundle.LoadPublicKey(out + ".pub")
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "key id: %s\n", kid)
			fmt.Fprintf(e.Stdout, "private key: %s (keep it secret: it signs policy)\n", out)
			fmt.Fprintf(e.Stdout, "public key: %s.pub (pin it in each gateway)\n", out)
			return nil
		},
	}
}

// writeAPIKey writes a new API key to path, mode 0600, refusing to replace
// an existing file unless force.
func writeAPIKey(e *env, path string, force bool) error {
	full, id, _ := store.GenerateAPIKey()
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists: refusing to overwrite a key (use --force to replace it)", path)
	}
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, full); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "api key id: %s\n", id)
	fmt.Fprintf(e.Stdout, "api key: %s (keep it secret; give it to armoriq gateway --admin-key-file)\n", path)
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/spf13/pflag"
)

func keygenCommand() *command {
	var out string
	var force bool
	return &command{
		Use:   "keygen -o FILE",
		Short: "Create an Ed25519 key pair for signing policy bundles",
		Long: `keygen writes a new Ed25519 signing key to FILE (PKCS #8 PEM, mode 0600)
and its public half to FILE.pub (PKIX PEM). Give FILE to 'armoriq compile
--key' or the reconciler; pin FILE.pub in every gateway. It prints the key
id bundles signed with the key carry.`,
		Example: `  armoriq keygen -o signing.key`,
		MaxArgs: 0,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVarP(&out, "output", "o", "", "private key file to write; the public key goes to FILE.pub")
			fs.BoolVar(&force, "force", false, "replace FILE and FILE.pub if they exist")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if out == "" {
				return usageErrorf("keygen needs -o FILE, the private key file to write")
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

package bundle_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/armoriq/controlplane/compiler/bundle"
)

func Example() {
	seed := sha256.Sum256([]byte("example"))
	key := ed25519.NewKeyFromSeed(seed[:])
	pub := key.Public().(ed25519.PublicKey)

	// The compiler signs...
	var buf bytes.Buffer
	b := &bundle.Bundle{Manifest: bundle.Manifest{Revision: "abc123"}}
	if err := bundle.Write(&buf, b, key, ""); err != nil {
		fmt.Println(err)
		return
	}

	// ...and a gateway verifies against the keys it pins.
	pinned := map[string]ed25519.PublicKey{bundle.KeyID(pub): pub}
	got, err := bundle.Verify(buf.Bytes(), pinned)
	fmt.Println(got.Manifest.Revision, err)

	_, err = bundle.Verify(buf.Bytes(), map[string]ed25519.PublicKey{})
	fmt.Println(errors.Is(err, &bundle.VerifyError{Reason: bundle.UnknownKey}))
	// Output:
	// abc123 <nil>
	// true
}

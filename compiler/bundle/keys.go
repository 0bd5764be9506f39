package bundle

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
)

// KeyID is the id a public key signs under unless one is given: the first
// 16 hex digits of the SHA-256 of the raw 32-byte key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// LoadPrivateKey reads an Ed25519 private key from a PEM "PRIVATE KEY"
// (PKCS #8) file and returns it with its KeyID. Like ssh, it refuses a key
// file that group or others may read or write: a signing key that leaked to
// another account can sign any policy, so a warning is not enough.
func LoadPrivateKey(path string) (ed25519.PrivateKey, string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("private key %s is accessible by group or others (mode %04o): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	der, err := pemBlock(path, data, "PRIVATE KEY")
	if err != nil {
		return nil, "", err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, "", fmt.Errorf("%s: a %T, not an Ed25519 key", path, k)
	}
	return priv, KeyID(priv.Public().(ed25519.PublicKey)), nil
}

// LoadPublicKey reads an Ed25519 public key from a PEM "PUBLIC KEY" (PKIX)
// file and returns it with its KeyID.
func LoadPublicKey(path string) (ed25519.PublicKey, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	der, err := pemBlock(path, data, "PUBLIC KEY")
	if err != nil {
		return nil, "", err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, "", fmt.Errorf("%s: a %T, not an Ed25519 key", path, k)
	}
	return pub, KeyID(pub), nil
}

func pemBlock(path string, data []byte, typ string) ([]byte, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM block: want a %q PEM file", path, typ)
	}
	if b.Type != typ {
		hint := ""
		if typ == "PUBLIC KEY" && b.Type == "PRIVATE KEY" {
			hint = " (pass the .pub file, never the private key)"
		}
		return nil, fmt.Errorf("%s: PEM block is %q, want %q%s", path, b.Type, typ, hint)
	}
	return b.Bytes, nil
}

// GenerateKey creates a new Ed25519 signing key: privPath (PKCS #8 PEM,
// mode 0600) and privPath+".pub" (PKIX PEM, mode 0644). It refuses to
// overwrite either file.
func GenerateKey(privPath string) error {
	pubPath := privPath + ".pub"
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists: refusing to overwrite a key", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		os.Remove(privPath)
		return err
	}
	return nil
}

// writeNew creates path exclusively with mode perm (exactly, whatever the
// umask) and writes data to it.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		f.Close()
		os.Remove(path)
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

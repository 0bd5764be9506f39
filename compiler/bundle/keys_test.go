package bundle

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestGenerateAndLoadKey(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "signing.key")
	if err := GenerateKey(priv); err != nil {
		t.Fatalf("GenerateKey(%s): %v", priv, err)
	}
	if runtime.GOOS != "windows" {
		for p, want := range map[string]os.FileMode{priv: 0o600, priv + ".pub": 0o644} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s mode = %04o, want %04o", filepath.Base(p), fi.Mode().Perm(), want)
			}
		}
	}
	key, kid, err := LoadPrivateKey(priv)
	if err != nil {
		t.Fatalf("LoadPrivateKey: %v", err)
	}
	pub, pubKid, err := LoadPublicKey(priv + ".pub")
	if err != nil {
		t.Fatalf("LoadPublicKey: %v", err)
	}
	if kid != pubKid || len(kid) != 16 || !pub.Equal(key.Public()) {
		t.Errorf("private key id %q, public key id %q: want the same 16 hex digits and matching keys", kid, pubKid)
	}

	if err := GenerateKey(priv); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("GenerateKey over an existing key = %v, want an 'already exists' error", err)
	}
	if k2, _, _ := LoadPrivateKey(priv); !k2.Equal(key) {
		t.Errorf("a refused GenerateKey changed the existing key")
	}
}

func TestGenerateKeyRefusesExistingPub(t *testing.T) {
	priv := filepath.Join(t.TempDir(), "k")
	os.WriteFile(priv+".pub", []byte("keep me"), 0o644)
	if err := GenerateKey(priv); err == nil {
		t.Fatalf("GenerateKey with an existing k.pub succeeded")
	}
	if _, err := os.Stat(priv); err == nil {
		t.Errorf("GenerateKey left a private key behind after refusing")
	}
}

func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "signing.key")
	if err := GenerateKey(priv); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("not pem"), 0o600)

	if _, _, err := LoadPublicKey(priv); err == nil || !strings.Contains(err.Error(), ".pub") {
		t.Errorf("LoadPublicKey(private key file) = %v, want an error pointing at the .pub file", err)
	}
	if _, _, err := LoadPrivateKey(priv + ".pub"); err == nil {
		t.Errorf("LoadPrivateKey(public key file) succeeded")
	}
	if _, _, err := LoadPrivateKey(garbage); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Errorf("LoadPrivateKey(garbage) = %v, want 'no PEM block'", err)
	}
	if _, _, err := LoadPrivateKey(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("LoadPrivateKey(missing file) succeeded")
	}
	if runtime.GOOS != "windows" {
		os.Chmod(priv, 0o644)
		if _, _, err := LoadPrivateKey(priv); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("LoadPrivateKey(mode 0644) = %v, want a refusal suggesting chmod 600", err)
		}
	}
}

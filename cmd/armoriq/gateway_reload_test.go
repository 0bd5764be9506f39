package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// signedBundle makes a bundle with no servers signed by a new key, whose
// public half is keyPath.pub.
func signedBundle(t *testing.T, keyPath, rev string, seq int64) []byte {
	t.Helper()
	if err := bundle.GenerateKey(keyPath); err != nil {
		t.Fatal(err)
	}
	priv, kid, err := bundle.LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle.Bundle{
		Manifest: bundle.Manifest{FormatVersion: bundle.FormatVersion, Revision: rev, Sequence: seq, Compiler: "test", CreatedAt: time.Unix(seq, 0).UTC()},
		Policy:   bundle.Policy{Rules: []bundle.Rule{{ID: "all", Effect: bundle.Allow, Tools: []string{"*/*"}}}},
	}
	var buf bytes.Buffer
	if err := bundle.Write(&buf, b, priv, kid); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func putBundle(t *testing.T, url, key string, data []byte) int {
	t.Helper()
	req, _ := http.NewRequest("PUT", url+"/v1/bundle", bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestGatewaySIGHUP re-reads the settings file on SIGHUP: a newly trusted
// bundle-signing key is accepted, a changed store setting is named as
// needing a restart, and a broken file changes nothing.
func TestGatewaySIGHUP(t *testing.T) {
	bin := armoriqBinary(t)
	dir := t.TempDir()
	bundleA := signedBundle(t, filepath.Join(dir, "a.key"), "ra", 1)
	bundleB := signedBundle(t, filepath.Join(dir, "b.key"), "rb", 2)
	a, b := filepath.Join(dir, "a.key.pub"), filepath.Join(dir, "b.key.pub")
	settings := filepath.Join(dir, "gateway.yaml")
	write := func(s string) {
		if err := os.WriteFile(settings, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("trust-key: [%s]\nmax-token-ttl: 10m\n", a))
	g := startGateway(t, bin, dir, "--settings", settings)
	adminKey, err := os.ReadFile(filepath.Join(dir, "data", "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(adminKey))
	if code := putBundle(t, g.url, key, bundleB); code == 200 {
		t.Fatalf("a bundle signed by an untrusted key was accepted")
	}

	hup := func(wantLog string) {
		t.Helper()
		g.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(g.logs.String(), wantLog) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the logs after SIGHUP:\n%s", wantLog, g.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// A broken file: nothing changes, the gateway keeps running.
	write("trust-key: [\n")
	hup("SIGHUP: settings not applied")
	if code := putBundle(t, g.url, key, bundleB); code == 200 {
		t.Fatalf("a broken settings file changed the trusted keys")
	}

	write(fmt.Sprintf("trust-key: [%s, %s]\nmax-token-ttl: 5m\nsqlite-sync: normal\n", a, b))
	hup("SIGHUP: settings reloaded")
	if !strings.Contains(g.logs.String(), `msg="SIGHUP: this setting changed but takes effect only at restart" setting=sqlite-sync`) {
		t.Errorf("the changed sqlite-sync was not named as needing a restart:\n%s", g.logs)
	}
	if code := putBundle(t, g.url, key, bundleB); code != 200 {
		t.Fatalf("PUT a bundle signed by the newly trusted key: %d, want 200\n%s", code, g.logs)
	}
	if code := putBundle(t, g.url, key, bundleA); code == 200 {
		t.Fatalf("an older bundle was accepted after the reload")
	}
	g.stop(t)
}

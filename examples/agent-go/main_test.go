package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/armoriq/controlplane/compiler"
	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/client"
	"github.com/armoriq/controlplane/runtime/gateway"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/schema"
)

// TestAgentAgainstQuickstart runs the example agent against a real gateway
// enforcing examples/quickstart/armoriq.yaml.
func TestAgentAgainstQuickstart(t *testing.T) {
	ctx := context.Background()
	cfg, diags := schema.LoadFile("../quickstart/armoriq.yaml")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	b, err := compiler.Compile(cfg, compiler.Options{Revision: compiler.ContentRevision(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	var buf bytes.Buffer
	if err := bundle.Write(&buf, b, priv, ""); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "armoriq.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	up := gateway.NewHTTPUpstream(func(string) string { return "" })
	defer up.Close()
	srv, err := gateway.NewServer(ctx, gateway.Config{
		Store: st, Upstream: up, BundlePoll: -1,
		TrustedKeys: map[string]ed25519.PublicKey{bundle.KeyID(pub): pub},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := srv.Activate(ctx, buf.Bytes(), false); err != nil {
		t.Fatal(err)
	}
	full, id, hash := store.GenerateAPIKey()
	if err := st.CreateAPIKey(ctx, store.APIKey{ID: id, Name: "demo", Role: store.RoleAgent, Agent: "support-agent", SecretHash: hash, Last4: store.APIKeyLast4(full)}); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	var out strings.Builder
	err = run(ctx, &out, client.Options{
		Endpoint: hs.URL, APIKey: full, UserID: "ana@example.com", AgentID: "support-agent",
		Getenv: func(string) string { return "" }, HomeDir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"plan with github/delete_repository: blocked: ",
		"github/get_issue: allow (",
		"linear/create_issue (priority 1): hold (urgent tickets are triaged by the on-call lead)",
		"github/get_issue with other parameters: refused, not the signed plan: ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

package compiler

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/schema"
	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/compile/*.txtar")

var goldenOpts = Options{
	CreatedAt:       time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
	CompilerVersion: "armoriq test",
}

func testKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("armoriq compiler test key"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// bundleFiles writes b signed with the test key and returns its files by name.
func bundleFiles(t *testing.T, b *bundle.Bundle) (map[string][]byte, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := bundle.Write(&buf, b, testKey(), ""); err != nil {
		t.Fatalf("bundle.Write: %v", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[h.Name] = data
	}
	return files, buf.Bytes()
}

func parse(t *testing.T, name string, data []byte) *schema.Config {
	t.Helper()
	cfg, diags := schema.Parse(name, data)
	if diags.HasErrors() {
		t.Fatalf("schema.Parse(%s) failed; a compile fixture must be a valid config:\n%v", name, diags)
	}
	return cfg
}

// TestGolden compiles the armoriq.yaml of each testdata/compile/*.txtar and
// compares the bundle's manifest.json, policy.json and servers.json, or the
// compile errors, with the sections of the same names.
func TestGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "compile", "*.txtar"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden files in testdata/compile (%v)", err)
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var input []byte
			want := map[string][]byte{}
			for _, f := range ar.Files {
				if f.Name == "armoriq.yaml" {
					input = f.Data
				} else {
					want[f.Name] = f.Data
				}
			}
			if input == nil {
				t.Fatalf("%s has no armoriq.yaml section", path)
			}
			got := map[string][]byte{}
			b, err := Compile(parse(t, "armoriq.yaml", input), goldenOpts)
			if err != nil {
				var ds schema.Diagnostics
				if !errors.As(err, &ds) {
					t.Fatalf("Compile error is %T, want schema.Diagnostics: %v", err, err)
				}
				got["errors"] = []byte(ds.Error() + "\n")
			} else {
				files, _ := bundleFiles(t, b)
				for _, name := range []string{bundle.ManifestFile, bundle.PolicyFile, bundle.ServersFile} {
					got[name] = files[name]
				}
			}
			if *update {
				out := &txtar.Archive{Comment: ar.Comment, Files: []txtar.File{{Name: "armoriq.yaml", Data: input}}}
				for _, name := range []string{"errors", bundle.ManifestFile, bundle.PolicyFile, bundle.ServersFile} {
					if data, ok := got[name]; ok {
						out.Files = append(out.Files, txtar.File{Name: name, Data: data})
					}
				}
				if err := os.WriteFile(path, txtar.Format(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(stringMap(want), stringMap(got)); diff != "" {
				t.Errorf("compiling the armoriq.yaml of %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

func stringMap(m map[string][]byte) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

const sampleYAML = `version: v1
mcp_servers:
  - id: github
    url: https://api.example.com/mcp
    auth:
      type: bearer
      token: ${GITHUB_TOKEN}
policy:
  allow: [github/*]
  deny: [github.delete_repo]
`

func TestDeterministic(t *testing.T) {
	var outs [][]byte
	for range 2 {
		b, err := Compile(parse(t, "armoriq.yaml", []byte(sampleYAML)), goldenOpts)
		if err != nil {
			t.Fatal(err)
		}
		_, data := bundleFiles(t, b)
		outs = append(outs, data)
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Errorf("compiling and writing the sample config twice gave different bytes")
	}
}

func TestRevisionAndSequence(t *testing.T) {
	cfg := parse(t, "armoriq.yaml", []byte(sampleYAML))
	commitTime := time.Date(2026, 11, 22, 11, 0, 0, 0, time.FixedZone("X", 2*3600))
	b, err := Compile(cfg, Options{Revision: "abc123", CreatedAt: commitTime})
	if err != nil {
		t.Fatal(err)
	}
	m := b.Manifest
	if m.Revision != "abc123" || m.Sequence != commitTime.Unix() || !m.CreatedAt.Equal(commitTime) || m.CreatedAt.Location() != time.UTC {
		t.Errorf("Compile(revision abc123, commit time %v) manifest = %+v, want that revision, the time in UTC and Sequence %d", commitTime, m, commitTime.Unix())
	}

	b, err = Compile(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(sampleYAML))
	if want := "sha256:" + hexString(sum[:]); b.Manifest.Revision != want || b.Manifest.Sequence != 0 {
		t.Errorf("Compile(no revision) revision %q sequence %d, want %q and 0", b.Manifest.Revision, b.Manifest.Sequence, want)
	}
	if len(b.Manifest.Sources) != 1 || b.Manifest.Sources[0].Path != "armoriq.yaml" || b.Manifest.Sources[0].SHA256 != hexString(sum[:]) {
		t.Errorf("manifest sources = %+v, want armoriq.yaml with its digest", b.Manifest.Sources)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// TestSecrets covers the secret rules on hand-built configs, so they hold
// whatever the loader lets through.
func TestSecrets(t *testing.T) {
	pos := schema.Pos{File: "armoriq.yaml", Line: 3, Col: 5}
	tests := []struct {
		name    string
		server  schema.Server
		wantErr string // "" for no error
		wantRef string // Auth.ValueRef when no error
	}{
		{"bearer $VAR", schema.Server{ID: "a", URL: "https://x", Auth: &schema.Auth{Type: "bearer", Token: "$TOK"}}, "", "$TOK"},
		{"bearer ${VAR} is normalised", schema.Server{ID: "a", URL: "https://x", Auth: &schema.Auth{Type: "bearer", Token: "${TOK}"}}, "", "$TOK"},
		{"bearer literal", schema.Server{ID: "a", URL: "https://x", Auth: &schema.Auth{Type: "bearer", Token: "ghp_abc"}}, "armoriq.yaml:3:5: mcp_servers[0].auth.token: literal secret: use a $VAR reference", ""},
		{"api_key literal", schema.Server{ID: "a", URL: "https://x", Auth: &schema.Auth{Type: "api_key", APIKey: "sk-123"}}, "mcp_servers[0].auth.api_key: literal secret", ""},
		{"api_key with text around the reference", schema.Server{ID: "a", URL: "https://x", Auth: &schema.Auth{Type: "api_key", APIKey: "Bearer $K"}}, "auth.api_key: literal secret", ""},
		{"env token literal", schema.Server{ID: "a", Transport: "stdio", Command: "x", Env: map[string]string{"GITHUB_TOKEN": "ghp_abc"}}, "mcp_servers[0].env.GITHUB_TOKEN: literal secret", ""},
		{"env password literal", schema.Server{ID: "a", Transport: "stdio", Command: "x", Env: map[string]string{"DB_Password": "hunter2"}}, "env.DB_Password: literal secret", ""},
		{"env secret by reference", schema.Server{ID: "a", Transport: "stdio", Command: "x", Env: map[string]string{"API_KEY": "${API_KEY}"}}, "", ""},
		{"env non-secret literal", schema.Server{ID: "a", Transport: "stdio", Command: "x", Env: map[string]string{"LOG_LEVEL": "debug"}}, "", ""},
		{"password in URL", schema.Server{ID: "a", URL: "https://u:p@x/mcp"}, "mcp_servers[0].url: literal secret", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.server
			s.Pos = pos
			b, err := Compile(&schema.Config{Version: "v1", Servers: []schema.Server{s}}, Options{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Compile(server %+v) error = %v, want %q", s, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Compile(server %+v) = %v, want no error", s, err)
			}
			if a := b.Servers[0].Auth; a != nil && a.ValueRef != tt.wantRef {
				t.Errorf("Compile(server %+v) ValueRef = %q, want %q", s, a.ValueRef, tt.wantRef)
			}
		})
	}
}

func TestRuleChecks(t *testing.T) {
	rule := func(name string, line int) schema.Rule {
		return schema.Rule{Name: name, Effect: "allow", Tools: []schema.Ref{{Server: "a", Tool: "*"}}, Pos: schema.Pos{File: "f.yaml", Line: line, Col: 5}}
	}
	cfg := &schema.Config{Version: "v1", Policy: schema.Policy{Rules: []schema.Rule{
		rule("dup", 10), rule("dup", 20), rule("policy.allow[0]", 30),
		{Effect: "maybe", Groups: []string{"nobody"}, Pos: schema.Pos{File: "f.yaml", Line: 40, Col: 5}},
	}}}
	_, err := Compile(cfg, Options{})
	want := `f.yaml:20:5: policy.rules[1].name: duplicate rule name "dup" (also policy.rules[0]): rule names identify decisions in the audit log
f.yaml:30:5: policy.rules[2].name: rule name "policy.allow[0]" looks like the path of a rule: pick another name
f.yaml:40:5: policy.rules[3].effect: unknown effect "maybe": want allow, deny or hold
f.yaml:40:5: policy.rules[3].groups: unknown group "nobody"
f.yaml:40:5: policy.rules[3].tools: a rule needs at least one tool pattern`
	if err == nil || err.Error() != want {
		t.Errorf("Compile(bad rules) error:\n%v\nwant:\n%s", err, want)
	}
}

// TestExamples compiles every config in examples/: each must compile, and
// compile to the same bundle twice.
func TestExamples(t *testing.T) {
	var paths []string
	filepath.WalkDir(filepath.Join("..", "examples"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && (d.Name() == "github-workflow" || d.Name() == "node_modules") {
			return filepath.SkipDir // CI workflows and npm packages, not configs
		}
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".hcl")) {
			paths = append(paths, p)
		}
		return nil
	})
	if len(paths) == 0 {
		t.Skip("no examples")
	}
	for _, p := range paths {
		cfg, diags := schema.LoadFile(p)
		if diags.HasErrors() {
			t.Errorf("schema.LoadFile(%s): %v", p, diags)
			continue
		}
		b1, err := Compile(cfg, goldenOpts)
		if err != nil {
			t.Errorf("Compile(%s): %v", p, err)
			continue
		}
		b2, _ := Compile(cfg, goldenOpts)
		_, d1 := bundleFiles(t, b1)
		_, d2 := bundleFiles(t, b2)
		if !bytes.Equal(d1, d2) {
			t.Errorf("compiling %s twice gave different bundles", p)
		}
	}
}

// TestIdentityProvidersDeterministic: the same providers written in
// another order, their lists too, compile to the same bundle bytes; a
// Config built in code without defaults gets them filled in.
func TestIdentityProvidersDeterministic(t *testing.T) {
	const a = `version: v1
identity_providers:
  - {name: b, issuer: "https://b.example.com", audience: "api://x", required_scopes: [s2, s1]}
  - {name: a, issuer: "https://a.example.com", audience: "api://x", allowed_algorithms: [RS256, ES256]}
`
	const b = `version: v1
identity_providers:
  - {name: a, issuer: "https://a.example.com", audience: "api://x", allowed_algorithms: [ES256, RS256]}
  - {name: b, issuer: "https://b.example.com", audience: "api://x", required_scopes: [s1, s2]}
`
	var outs [][]byte
	for _, src := range []string{a, b} {
		cfg := parse(t, "armoriq.yaml", []byte(src))
		cfg.Sources = nil // the revision would differ with the bytes
		bd, err := Compile(cfg, Options{Revision: "r", CreatedAt: goldenOpts.CreatedAt})
		if err != nil {
			t.Fatal(err)
		}
		_, data := bundleFiles(t, bd)
		outs = append(outs, data)
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Errorf("the same providers in another order compiled to different bundles")
	}

	cfg := &schema.Config{Version: "v1", IdentityProviders: []schema.IdentityProvider{{Name: "x", Issuer: "https://x.example.com", Audience: "api://x"}}}
	bd, err := Compile(cfg, goldenOpts)
	if err != nil {
		t.Fatal(err)
	}
	want := []bundle.IdentityProvider{{Name: "x", Issuer: "https://x.example.com", Audience: "api://x", UserClaim: "email", AllowedAlgorithms: []string{"ES256", "EdDSA", "PS256", "RS256"}}}
	if d := cmp.Diff(want, bd.Policy.IdentityProviders); d != "" {
		t.Errorf("defaults of a provider built in code (-want +got):\n%s", d)
	}
}

// TestAlgorithmsAgree: the schema accepts exactly the algorithms a bundle
// may carry.
func TestAlgorithmsAgree(t *testing.T) {
	if d := cmp.Diff(schema.Algorithms, bundle.Algorithms); d != "" {
		t.Errorf("schema.Algorithms and bundle.Algorithms differ (-schema +bundle):\n%s", d)
	}
}

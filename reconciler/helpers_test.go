package reconciler

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/armoriq/controlplane/compiler/bundle"
)

// testRepo is a real git repository in a temp dir that tests commit to.
type testRepo struct {
	t    *testing.T
	dir  string
	repo *git.Repository
	when time.Time
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &testRepo{t: t, dir: dir, repo: repo, when: time.Now().Add(-time.Hour).Truncate(time.Second)}
}

// commit writes files (path → content) and commits them; it returns the hash.
func (r *testRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	wt, err := r.repo.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	for p, c := range files {
		full := filepath.Join(r.dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			r.t.Fatal(err)
		}
		if _, err := wt.Add(p); err != nil {
			r.t.Fatal(err)
		}
	}
	r.when = r.when.Add(time.Second)
	sig := &object.Signature{Name: "Test", Email: "test@example.com", When: r.when}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig, AllowEmptyCommits: true})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
}

func testKey(t *testing.T) (ed25519.PrivateKey, string, map[string]ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	kid := bundle.KeyID(pub)
	return priv, kid, map[string]ed25519.PublicKey{kid: pub}
}

// fakeBuild stands in for the compiler in unit tests of the loop: a config
// containing "invalid" on some line is Stalled with a diagnostic at that
// line; anything else becomes a signed bundle with one allow rule per line.
func fakeBuild(key ed25519.PrivateKey, kid string) BuildFunc {
	return func(filename string, data []byte, revision string, createdAt time.Time) (*Artifact, Outcome) {
		var rules []bundle.Rule
		for i, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "invalid") {
				return nil, Outcome{Condition: Stalled, Reason: ReasonInvalidConfig, Message: "1 error",
					Diagnostics: []Diagnostic{{Severity: "error", File: filename, Line: i + 1, Col: strings.Index(line, "invalid") + 1, Summary: "invalid value"}}}
			}
			if line = strings.TrimSpace(line); line != "" {
				rules = append(rules, bundle.Rule{ID: line, Effect: bundle.Allow, Tools: []string{line}})
			}
		}
		sum := sha256.Sum256(data)
		b := &bundle.Bundle{
			Manifest: bundle.Manifest{FormatVersion: bundle.FormatVersion, Revision: revision, CreatedAt: createdAt,
				Compiler: "test", Sequence: createdAt.Unix(), Sources: []bundle.Source{{Path: filename, SHA256: hex.EncodeToString(sum[:])}}},
			Policy: bundle.Policy{Rules: rules},
		}
		var buf bytes.Buffer
		if err := bundle.Write(&buf, b, key, kid); err != nil {
			return nil, Outcome{Condition: Stalled, Reason: ReasonCompileFailed, Message: err.Error()}
		}
		return &Artifact{Revision: revision, Sequence: b.Manifest.Sequence, Rules: len(rules), Data: buf.Bytes()}, Outcome{}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

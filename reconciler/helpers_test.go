package reconciler

import (
	"context"
	"crypto/ed25519"
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

// policy returns a valid armoriq.yaml allowing the given tool patterns on
// three servers.
func policy(allow ...string) string {
	return "version: v1\nmcp_servers:\n  - id: github\n    url: https://api.example.com/mcp\n" +
		"  - id: slack\n    url: https://slack.example.com/mcp\n" +
		"policy:\n  allow: [" + strings.Join(allow, ", ") + "]\n"
}

// badPolicy has an unknown key at line 5, column 5.
const badPolicy = "version: v1\nmcp_servers:\n  - id: github\n    url: https://api.example.com/mcp\n    bogus: 1\npolicy:\n  allow: [github/*]\n"

func realBuild(key ed25519.PrivateKey, kid string) BuildFunc {
	return (&Builder{Key: key, KeyID: kid, CompilerVersion: "test"}).Build
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

package compiler

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// testRepo is a real git repository in a temp dir.
type testRepo struct {
	t    *testing.T
	dir  string
	repo *git.Repository
}

func newTestRepo(t *testing.T) *testRepo {
	dir := t.TempDir()
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return &testRepo{t: t, dir: dir, repo: repo}
}

func (r *testRepo) write(path, data string) {
	p := filepath.Join(r.dir, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *testRepo) commit(when time.Time, files map[string]string) plumbing.Hash {
	wt, err := r.repo.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	for p, data := range files {
		r.write(p, data)
		if _, err := wt.Add(p); err != nil {
			r.t.Fatal(err)
		}
	}
	sig := &object.Signature{Name: "t", Email: "t@example.com", When: when}
	h, err := wt.Commit("commit", &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		r.t.Fatal(err)
	}
	return h
}

func TestGitRevision(t *testing.T) {
	r := newTestRepo(t)
	when := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	h := r.commit(when, map[string]string{"policy/armoriq.yaml": "version: v1\n", "README": "x"})
	cfg := filepath.Join(r.dir, "policy", "armoriq.yaml")

	commit, ct, err := GitRevision(cfg)
	if err != nil || commit != h.String() || !ct.Equal(when) {
		t.Fatalf("GitRevision(committed file) = %s, %v, %v; want %s, %v", commit, ct, err, h, when)
	}
	if commit, _, err := GitRevision(filepath.Join(r.dir, "policy")); err != nil || commit != h.String() {
		t.Errorf("GitRevision(clean directory) = %s, %v; want %s", commit, err, h)
	}

	// Another file's changes do not matter.
	r.write("README", "changed")
	r.write("scratch.txt", "untracked")
	if _, _, err := GitRevision(cfg); err != nil {
		t.Errorf("GitRevision(clean file, other files dirty) = %v, want no error", err)
	}

	r.write("policy/armoriq.yaml", "version: v1\n# edited\n")
	_, _, err = GitRevision(cfg)
	if !errors.Is(err, ErrUncommitted) || !strings.Contains(err.Error(), "uncommitted changes") {
		t.Errorf("GitRevision(modified file) = %v, want ErrUncommitted saying 'uncommitted changes'", err)
	}
	if _, _, err := GitRevision(filepath.Join(r.dir, "policy")); !errors.Is(err, ErrUncommitted) {
		t.Errorf("GitRevision(directory holding a modified file) = %v, want ErrUncommitted", err)
	}

	r.write("policy/new.yaml", "version: v1\n")
	if _, _, err := GitRevision(filepath.Join(r.dir, "policy", "new.yaml")); !errors.Is(err, ErrUncommitted) || !strings.Contains(err.Error(), "not committed") {
		t.Errorf("GitRevision(untracked file) = %v, want ErrUncommitted saying 'not committed'", err)
	}
}

func TestGitRevisionOutsideRepo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "armoriq.yaml")
	os.WriteFile(p, []byte("version: v1\n"), 0o644)
	if _, _, err := GitRevision(p); !errors.Is(err, ErrUncommitted) || !strings.Contains(err.Error(), "not in a git repository") {
		t.Errorf("GitRevision(file outside git) = %v, want ErrUncommitted saying 'not in a git repository'", err)
	}
	if _, _, err := GitRevision(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Errorf("GitRevision(missing file) succeeded")
	}
}

func TestGitRevisionNoCommit(t *testing.T) {
	r := newTestRepo(t)
	r.write("armoriq.yaml", "version: v1\n")
	if _, _, err := GitRevision(filepath.Join(r.dir, "armoriq.yaml")); !errors.Is(err, ErrUncommitted) {
		t.Errorf("GitRevision(repository without commits) = %v, want ErrUncommitted", err)
	}
}

func TestReadAtRevision(t *testing.T) {
	r := newTestRepo(t)
	t1 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(24 * time.Hour)
	h1 := r.commit(t1, map[string]string{"conf/armoriq.yaml": "one\n"})
	if _, err := r.repo.CreateTag("v1", h1, &git.CreateTagOptions{Tagger: &object.Signature{Name: "t", When: t1}, Message: "v1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.repo.CreateTag("light", h1, nil); err != nil {
		t.Fatal(err)
	}
	h2 := r.commit(t2, map[string]string{"conf/armoriq.yaml": "two\n"})
	r.write("conf/armoriq.yaml", "uncommitted\n")
	head, _ := r.repo.Head()
	branch := head.Name().Short()

	tests := []struct {
		dir, rev, path string
		want           string
		wantHash       plumbing.Hash
		wantTime       time.Time
	}{
		{r.dir, "HEAD", "conf/armoriq.yaml", "two\n", h2, t2},
		{r.dir, branch, "conf/armoriq.yaml", "two\n", h2, t2},
		{r.dir, "HEAD~1", "conf/armoriq.yaml", "one\n", h1, t1},
		{r.dir, "v1", "conf/armoriq.yaml", "one\n", h1, t1},
		{r.dir, "light", "conf/armoriq.yaml", "one\n", h1, t1},
		{r.dir, h1.String(), "conf/armoriq.yaml", "one\n", h1, t1},
		{r.dir, h1.String()[:7], "conf/armoriq.yaml", "one\n", h1, t1},
		{filepath.Join(r.dir, "conf"), "HEAD", "armoriq.yaml", "two\n", h2, t2},
		{filepath.Join(r.dir, "conf"), "HEAD", filepath.Join(r.dir, "conf", "armoriq.yaml"), "two\n", h2, t2},
	}
	for _, tt := range tests {
		data, commit, ct, err := ReadAtRevision(tt.dir, tt.rev, tt.path)
		if err != nil || string(data) != tt.want || commit != tt.wantHash.String() || !ct.Equal(tt.wantTime) {
			t.Errorf("ReadAtRevision(%s, %s, %s) = %q, %s, %v, %v; want %q, %s, %v", filepath.Base(tt.dir), tt.rev, filepath.Base(tt.path), data, commit, ct, err, tt.want, tt.wantHash, tt.wantTime)
		}
	}

	for _, tt := range []struct{ rev, path, wantErr string }{
		{"nope", "conf/armoriq.yaml", `unknown revision "nope"`},
		{"HEAD", "conf/missing.yaml", "conf/missing.yaml does not exist at HEAD"},
		{"HEAD", "../outside.yaml", "outside the git repository"},
	} {
		if _, _, _, err := ReadAtRevision(r.dir, tt.rev, tt.path); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ReadAtRevision(%s, %s) error = %v, want %q", tt.rev, tt.path, err, tt.wantErr)
		}
	}
	if _, _, _, err := ReadAtRevision(t.TempDir(), "HEAD", "x"); err == nil {
		t.Errorf("ReadAtRevision(not a repository) succeeded")
	}
}

func TestRepoPath(t *testing.T) {
	r := newTestRepo(t)
	r.write("a/b/armoriq.yaml", "x")
	for _, tt := range []struct{ path, want string }{
		{filepath.Join(r.dir, "a", "b", "armoriq.yaml"), "a/b/armoriq.yaml"},
		{filepath.Join(r.dir, "a"), "a"},
		{filepath.Join(r.dir, "a", "b", "new.yaml"), "a/b/new.yaml"},
	} {
		if got, err := RepoPath(tt.path); err != nil || got != tt.want {
			t.Errorf("RepoPath(%s) = %q, %v; want %q", strings.TrimPrefix(tt.path, r.dir), got, err, tt.want)
		}
	}
	if _, err := RepoPath(t.TempDir()); err == nil {
		t.Errorf("RepoPath(directory outside git) succeeded")
	}
}

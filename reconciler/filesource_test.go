package reconciler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestSourceFollowsHEADBranch: without a branch, a source follows the
// branch its HEAD names: a local repository's checked-out branch, a
// remote's default branch.
func TestSourceFollowsHEADBranch(t *testing.T) {
	repo := newTestRepo(t)
	repo.commit("on main", map[string]string{"armoriq.yaml": "main\n"})
	// Check out a branch "prod" with a commit of its own.
	prod := plumbing.NewBranchReferenceName("prod")
	head, _ := repo.repo.Head()
	if err := repo.repo.Storer.SetReference(plumbing.NewHashReference(prod, head.Hash())); err != nil {
		t.Fatal(err)
	}
	if err := repo.repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, prod)); err != nil {
		t.Fatal(err)
	}
	cProd := repo.commit("on prod", map[string]string{"armoriq.yaml": "prod\n"})

	src, err := NewSource(SourceOptions{URL: repo.dir})
	if err != nil {
		t.Fatal(err)
	}
	got, err := src.Head(ctxT(t))
	if err != nil || got != cProd || src.Options().Branch != "prod" {
		t.Fatalf("local: Head = %s, %v, branch %q; want %s on prod", got, err, src.Options().Branch, cProd)
	}
	if s := src.String(); !strings.HasSuffix(s, "@prod") {
		t.Errorf("String() = %q, want it to name the branch", s)
	}

	// Over HTTPS the remote advertises its HEAD (git http-backend).
	url, _ := serveHTTP(t, repo, "tok")
	remote, err := NewSource(SourceOptions{URL: url, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if b := remote.Options().Branch; b != "" {
		t.Errorf("a remote's branch before the first Head: got %q, want it unresolved", b)
	}
	got, err = remote.Head(ctxT(t))
	if err != nil || got != cProd || remote.Options().Branch != "prod" {
		t.Fatalf("remote: Head = %s, %v, branch %q; want %s on prod", got, err, remote.Options().Branch, cProd)
	}
	c, err := remote.Fetch(ctxT(t), got)
	if err != nil || string(c.Config) != "prod\n" {
		t.Fatalf("remote: Fetch = %+v, %v", c, err)
	}

	// An explicit branch wins.
	src, _ = NewSource(SourceOptions{URL: repo.dir, Branch: "main"})
	if b, err := src.ResolveBranch(ctxT(t)); err != nil || b != "main" {
		t.Errorf("explicit branch: got %q, %v", b, err)
	}
}

func TestSourceDetachedHEAD(t *testing.T) {
	repo := newTestRepo(t)
	c1 := repo.commit("first", map[string]string{"armoriq.yaml": "one\n"})
	if err := repo.repo.Storer.SetReference(plumbing.NewHashReference(plumbing.HEAD, plumbing.NewHash(c1))); err != nil {
		t.Fatal(err)
	}
	src, _ := NewSource(SourceOptions{URL: repo.dir})
	if _, err := src.Head(ctxT(t)); err == nil || !strings.Contains(err.Error(), "HEAD is detached") {
		t.Errorf("detached HEAD: got %v, want an error asking for the branch", err)
	}
}

func TestHeadOf(t *testing.T) {
	h1, h2 := plumbing.NewHash("1111111111111111111111111111111111111111"), plumbing.NewHash("2222222222222222222222222222222222222222")
	br := func(name string, h plumbing.Hash) *plumbing.Reference {
		return plumbing.NewHashReference(plumbing.NewBranchReferenceName(name), h)
	}
	tests := []struct {
		name string
		refs []*plumbing.Reference
		want string // the branch, "" for none
	}{
		{"symbolic HEAD", []*plumbing.Reference{plumbing.NewSymbolicReference(plumbing.HEAD, "refs/heads/trunk"), br("trunk", h1)}, "trunk"},
		{"HEAD as a hash, one branch there", []*plumbing.Reference{plumbing.NewHashReference(plumbing.HEAD, h1), br("release", h1), br("dev", h2)}, "release"},
		{"HEAD as a hash, main among several", []*plumbing.Reference{plumbing.NewHashReference(plumbing.HEAD, h1), br("a", h1), br("main", h1)}, "main"},
		{"HEAD as a hash, master among several", []*plumbing.Reference{plumbing.NewHashReference(plumbing.HEAD, h1), br("a", h1), br("master", h1)}, "master"},
		{"HEAD as a hash, ambiguous", []*plumbing.Reference{plumbing.NewHashReference(plumbing.HEAD, h1), br("a", h1), br("b", h1)}, ""},
		{"no HEAD", []*plumbing.Reference{br("main", h1)}, ""},
	}
	for _, tc := range tests {
		got := ""
		if h := headOf(tc.refs); h != nil {
			got = h.Target().Short()
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFileSource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "armoriq.yaml")
	src, err := NewFileSource(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Head(ctxT(t)); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Head of a missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r1, err := src.Head(ctxT(t))
	if err != nil || !strings.HasPrefix(r1, "sha256:") {
		t.Fatalf("Head = %q, %v", r1, err)
	}
	if again, _ := src.Head(ctxT(t)); again != r1 {
		t.Errorf("Head of an unchanged file changed: %s, %s", r1, again)
	}
	c, err := src.Fetch(ctxT(t), r1)
	if err != nil || string(c.Config) != "one\n" || c.Hash != r1 || c.Time.IsZero() {
		t.Fatalf("Fetch = %+v, %v", c, err)
	}
	if _, err := c.VerifySignature("any"); err == nil {
		t.Error("a file has no signature to verify: VerifySignature must fail closed")
	}
	if err := os.WriteFile(path, []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The file changed between Head and Fetch: Fetch refuses the old revision.
	if _, err := src.Fetch(ctxT(t), r1); err == nil || !strings.Contains(err.Error(), "changed while it was read") {
		t.Errorf("Fetch of a stale revision: %v", err)
	}
	if r2, _ := src.Head(ctxT(t)); r2 == r1 {
		t.Error("Head did not change with the file")
	}
	if o := src.Options(); o.Path != "armoriq.yaml" || src.String() != path {
		t.Errorf("Options().Path = %q, String() = %q", o.Path, src.String())
	}
}

func TestTrackedFile(t *testing.T) {
	repo := newTestRepo(t)
	repo.commit("first", map[string]string{"policy/armoriq.yaml": "one\n"})
	if err := os.WriteFile(filepath.Join(repo.dir, "untracked.yaml"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, rel, ok := TrackedFile(filepath.Join(repo.dir, "policy", "armoriq.yaml"))
	if want, _ := filepath.EvalSymlinks(repo.dir); !ok || root != want || rel != "policy/armoriq.yaml" {
		t.Errorf("tracked file: got %q, %q, %v", root, rel, ok)
	}
	if _, _, ok := TrackedFile(filepath.Join(repo.dir, "untracked.yaml")); ok {
		t.Error("an untracked file counts as tracked")
	}
	outside := filepath.Join(t.TempDir(), "armoriq.yaml")
	os.WriteFile(outside, []byte("x"), 0o644)
	if _, _, ok := TrackedFile(outside); ok {
		t.Error("a file outside any repository counts as tracked")
	}
}

package reconciler

import (
	"strings"
	"testing"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

func TestSourceHeadAndFetch(t *testing.T) {
	repo := newTestRepo(t)
	c1 := repo.commit("first", map[string]string{"armoriq.yaml": "one\n", "other.txt": "x"})
	// A local repository is read in place, as a path or a file:// URL.
	for _, u := range []string{repo.dir, "file://" + repo.dir} {
		src, err := NewSource(SourceOptions{URL: u})
		if err != nil {
			t.Fatal(err)
		}
		head, err := src.Head(ctxT(t))
		if err != nil || head != c1 {
			t.Fatalf("%s: Head = %q, %v; want %s", u, head, err, c1)
		}
		c, err := src.Fetch(ctxT(t), head)
		if err != nil || string(c.Config) != "one\n" || c.ConfigErr != nil {
			t.Fatalf("%s: Fetch = %+v, %v; want the config of the first commit", u, c, err)
		}
	}
}

func TestSourceFollowsForcePush(t *testing.T) {
	repo := newTestRepo(t)
	c1 := repo.commit("first", map[string]string{"armoriq.yaml": "one\n"})
	c2 := repo.commit("second", map[string]string{"armoriq.yaml": "two\n"})
	url, _ := serveHTTP(t, repo, "tok")
	src, err := NewSource(SourceOptions{URL: url, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(ctxT(t), c2); err != nil {
		t.Fatal(err)
	}
	// Rewrite history: main goes back to c1 and gets a new commit.
	if err := repo.repo.Storer.SetReference(plumbing.NewHashReference("refs/heads/main", plumbing.NewHash(c1))); err != nil {
		t.Fatal(err)
	}
	wt, _ := repo.repo.Worktree()
	if err := wt.Reset(&git.ResetOptions{Commit: plumbing.NewHash(c1), Mode: git.HardReset}); err != nil {
		t.Fatal(err)
	}
	c3 := repo.commit("rewritten", map[string]string{"armoriq.yaml": "three\n"})
	head, err := src.Head(ctxT(t))
	if err != nil || head != c3 {
		t.Fatalf("Head after force push = %q, %v; want %s", head, err, c3)
	}
	c, err := src.Fetch(ctxT(t), head)
	if err != nil || string(c.Config) != "three\n" {
		t.Fatalf("Fetch after force push = %+v, %v; want the rewritten config", c, err)
	}
}

func TestSourceMissingFileAndBranch(t *testing.T) {
	repo := newTestRepo(t)
	c1 := repo.commit("first", map[string]string{"README": "x"})
	src, _ := NewSource(SourceOptions{URL: repo.dir})
	c, err := src.Fetch(ctxT(t), c1)
	if err != nil || c.ConfigErr == nil || !strings.Contains(c.ConfigErr.Error(), "armoriq.yaml: no such file") {
		t.Errorf("Fetch of a commit without the config: %+v, %v; want ConfigErr naming armoriq.yaml", c, err)
	}
	src, _ = NewSource(SourceOptions{URL: repo.dir, Branch: "prod"})
	if _, err := src.Head(ctxT(t)); err == nil || !strings.Contains(err.Error(), `no branch "prod"`) {
		t.Errorf("Head of a missing branch: %v", err)
	}
	src, _ = NewSource(SourceOptions{URL: t.TempDir() + "/nothing"})
	if _, err := src.Head(ctxT(t)); err == nil {
		t.Error("Head of a missing repository succeeded")
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://x-access-token:ghs_abc@github.com/o/r.git": "https://github.com/o/r.git",
		"https://github.com/o/r":                            "https://github.com/o/r",
		"git@github.com:o/r.git":                            "git@github.com:o/r.git",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnsignedCommitRefused(t *testing.T) {
	repo := newTestRepo(t)
	c1 := repo.commit("first", map[string]string{"armoriq.yaml": "one\n"})
	src, _ := NewSource(SourceOptions{URL: repo.dir})
	c, err := src.Fetch(ctxT(t), c1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.VerifySignature("not a key ring"); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("VerifySignature of an unsigned commit: %v, want not signed", err)
	}
}

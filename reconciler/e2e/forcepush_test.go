package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/armoriq/controlplane/reconciler"
)

// commitAt commits config with the given commit time.
func (r *repo) commitAt(config string, when time.Time) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, "armoriq.yaml"), []byte(config), 0o644); err != nil {
		r.t.Fatal(err)
	}
	wt, _ := r.r.Worktree()
	if _, err := wt.Add("armoriq.yaml"); err != nil {
		r.t.Fatal(err)
	}
	sig := &object.Signature{Name: "e2e", Email: "e2e@example.com", When: when}
	h, err := wt.Commit("change", &git.CommitOptions{Author: sig, Committer: sig, AllowEmptyCommits: true})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
}

// resetBranch moves main to rev, as a force-push does.
func (r *repo) resetBranch(rev string) {
	r.t.Helper()
	wt, _ := r.r.Worktree()
	if err := wt.Reset(&git.ResetOptions{Commit: plumbing.NewHash(rev), Mode: git.HardReset}); err != nil {
		r.t.Fatal(err)
	}
}

// TestForcePushBack is what docs/reconciler.md says of a force-push that
// moves the branch back to an older commit: the gateways keep the newer
// policy (bundles are ordered by commit time and an older one is refused),
// the targets are Stalled StaleBundle and the pass exits 1. Rolling back
// is a new commit (git revert), which applies everywhere.
func TestForcePushBack(t *testing.T) {
	f := newFixture(t, time.Hour)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	c1 := f.repo.commitAt(policy("github/*"), t0)
	c2 := f.repo.commitAt(policy("github/*, slack/post"), t0.Add(time.Minute))
	if res := f.rec.Pass(ctx); res.ExitCode() != 0 {
		t.Fatalf("first pass: exit %d, %+v", res.ExitCode(), res.Targets)
	}
	f.waitAll(t, c2, 10*time.Second)

	// The branch is force-pushed back to c1.
	f.repo.resetBranch(c1)
	res := f.rec.Pass(ctx)
	for i, o := range res.Targets {
		if o.Condition != reconciler.Stalled || o.Reason != reconciler.ReasonStaleBundle {
			t.Errorf("gateway %d after the force-push: %+v, want Stalled/StaleBundle", i+1, o)
		}
	}
	if res.ExitCode() != reconciler.ExitInvalid {
		t.Errorf("pass after the force-push: exit %d, want %d", res.ExitCode(), reconciler.ExitInvalid)
	}
	for i, g := range f.gws {
		if rev := g.revision(t, f.targets[i]); rev != c2 {
			t.Errorf("gateway %d runs %.12s after the force-push back, want still %.12s", i+1, rev, c2)
		}
	}

	// Rolling back: a new commit with c1's content.
	c3 := f.repo.commitAt(policy("github/*"), t0.Add(2*time.Minute))
	if res := f.rec.Pass(ctx); res.ExitCode() != 0 {
		t.Fatalf("pass after the revert commit: exit %d, %+v", res.ExitCode(), res.Targets)
	}
	f.waitAll(t, c3, 10*time.Second)
}

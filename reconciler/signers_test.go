package reconciler

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

func pgpEntity(t *testing.T, name string) (*openpgp.Entity, string) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return e, buf.String()
}

// signedCommit commits config signed by key (nil: unsigned).
func (r *testRepo) signedCommit(config string, key *openpgp.Entity) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, "armoriq.yaml"), []byte(config), 0o644); err != nil {
		r.t.Fatal(err)
	}
	wt, _ := r.repo.Worktree()
	wt.Add("armoriq.yaml")
	r.when = r.when.Add(time.Second)
	sig := &object.Signature{Name: "Test", Email: "test@example.com", When: r.when}
	h, err := wt.Commit("signed", &git.CommitOptions{Author: sig, Committer: sig, SignKey: key, AllowEmptyCommits: true})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
}

func TestTrustedSigners(t *testing.T) {
	alice, aliceRing := pgpEntity(t, "alice")
	mallory, _ := pgpEntity(t, "mallory")
	f := newLoopFixture(t, 1, func(o *Options) { o.TrustedSigners = aliceRing })

	good := f.repo.signedCommit(policy("github/*"), alice)
	if res := f.rec.Pass(ctxT(t)); res.ExitCode() != 0 {
		t.Fatalf("commit signed by a trusted key: %+v", res)
	}
	if rev, _ := f.gws[0].state(); rev != good {
		t.Fatalf("gateway runs %q, want the signed commit %s", rev, good)
	}
	for name, key := range map[string]*openpgp.Entity{"unsigned": nil, "signed by an untrusted key": mallory} {
		c := f.repo.signedCommit(policy("slack/*"), key)
		res := f.rec.Pass(ctxT(t))
		if res.Source.Condition != Stalled || res.Source.Reason != ReasonUntrustedCommit {
			t.Errorf("%s commit %s: source %+v, want Stalled/UntrustedCommit", name, short(c), res.Source)
		}
		if rev, _ := f.gws[0].state(); rev != good {
			t.Errorf("%s commit: gateway runs %q, want still %s", name, rev, good)
		}
	}
}

package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/reconciler"
	"github.com/armoriq/controlplane/runtime/gateway"
	"github.com/armoriq/controlplane/runtime/store"
)

// liveGateway is a real gateway whose process can be "restarted" on an
// empty store at the same URL.
type liveGateway struct {
	t       testing.TB
	http    *httptest.Server
	handler atomic.Pointer[http.Handler]
	keys    map[string]ed25519.PublicKey
	srv     *gateway.Server
	st      store.Store
	apiKey  string
	starts  int
}

func startGateway(t testing.TB, keys map[string]ed25519.PublicKey) *liveGateway {
	g := &liveGateway{t: t, keys: keys}
	g.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*g.handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(func() { g.http.Close(); g.stop() })
	g.start()
	return g
}

// start boots a gateway on a new, empty SQLite store.
func (g *liveGateway) start() {
	t := g.t
	g.starts++
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), fmt.Sprintf("gw%d.db", g.starts)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.NewServer(ctx, gateway.Config{Store: st, TrustedKeys: g.keys, Logger: slog.New(slog.DiscardHandler), BundlePoll: -1})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := srv.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g.srv, g.st, g.apiKey = srv, st, key
	h := srv.Handler()
	g.handler.Store(&h)
}

func (g *liveGateway) stop() {
	if g.srv != nil {
		g.srv.Close()
		g.st.Close()
		g.srv = nil
	}
}

// restart replaces the gateway with a fresh one on an empty store, as a
// replica rescheduled without its volume would be. Its admin key changes.
func (g *liveGateway) restart(target *reconciler.Gateway) {
	old := g.srv
	oldStore := g.st
	g.start()
	target.APIKey = g.apiKey
	old.Close()
	oldStore.Close()
}

func (g *liveGateway) revision(t testing.TB, target *reconciler.Gateway) string {
	st, err := target.Status(context.Background())
	if err != nil {
		t.Fatalf("gateway status: %v", err)
	}
	return st.Revision
}

type repo struct {
	t    testing.TB
	dir  string
	r    *git.Repository
	last time.Time
}

func newRepo(t testing.TB) *repo {
	dir := t.TempDir()
	r, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"}})
	if err != nil {
		t.Fatal(err)
	}
	return &repo{t: t, dir: dir, r: r}
}

func (r *repo) commit(config string) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, "armoriq.yaml"), []byte(config), 0o644); err != nil {
		r.t.Fatal(err)
	}
	wt, _ := r.r.Worktree()
	if _, err := wt.Add("armoriq.yaml"); err != nil {
		r.t.Fatal(err)
	}
	// Commit times order bundles (rollback protection): never go back.
	when := time.Now().Truncate(time.Second)
	if when.Before(r.last) {
		when = r.last
	}
	r.last = when
	sig := &object.Signature{Name: "e2e", Email: "e2e@example.com", When: when}
	h, err := wt.Commit("change", &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
}

func policy(allow string) string {
	return "version: v1\nmcp_servers:\n  - id: github\n    url: https://api.example.com/mcp\n  - id: slack\n    url: https://slack.example.com/mcp\npolicy:\n  allow: [" + allow + "]\n"
}

const invalid = "version: v1\nmcp_servers:\n  - id: github\n    url: https://api.example.com/mcp\n    bogus: 1\npolicy:\n  allow: [github/*]\n"

type fixture struct {
	repo    *repo
	gws     []*liveGateway
	targets []*reconciler.Gateway
	rec     *reconciler.Reconciler
	hook    *httptest.Server
	secret  []byte
	cancel  context.CancelFunc
	done    chan struct{}
}

func newFixture(t testing.TB, interval time.Duration) *fixture {
	return newFixtureOver(t, interval, false)
}

// newFixtureOver is newFixture with, when overHTTP, the repository served
// over git's smart HTTP protocol (git http-backend) rather than read in
// place, so a pass includes a real ls-remote and fetch.
func newFixtureOver(t testing.TB, interval time.Duration, overHTTP bool) *fixture {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	kid := bundle.KeyID(pub)
	keys := map[string]ed25519.PublicKey{kid: pub}
	f := &fixture{repo: newRepo(t), secret: []byte("e2e-secret")}
	for i := 0; i < 2; i++ {
		g := startGateway(t, keys)
		f.gws = append(f.gws, g)
		f.targets = append(f.targets, &reconciler.Gateway{Name: fmt.Sprintf("gw%d", i+1), URL: g.http.URL, APIKey: g.apiKey})
	}
	url := f.repo.dir
	if overHTTP {
		url = serveHTTP(t, f.repo.dir)
	}
	src, err := reconciler.NewSource(reconciler.SourceOptions{URL: url, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	f.rec, err = reconciler.New(reconciler.Options{
		Source: src, Targets: f.targets, Interval: interval,
		Build:       (&reconciler.Builder{Key: priv, KeyID: kid, CompilerVersion: "e2e"}).Build,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.hook = httptest.NewServer(&reconciler.Webhook{Secret: f.secret, Branch: "main", Trigger: f.rec.Trigger})
	t.Cleanup(f.hook.Close)
	return f
}

func (f *fixture) run(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan struct{})
	go func() { f.rec.Run(ctx); close(f.done) }()
	t.Cleanup(func() { f.cancel(); <-f.done })
}

func (f *fixture) push(t testing.TB, sig string) int {
	t.Helper()
	body := []byte(`{"ref":"refs/heads/main"}`)
	if sig == "" {
		sig = reconciler.Sign(f.secret, body)
	}
	req, _ := http.NewRequest(http.MethodPost, f.hook.URL+"/hook", bytes.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitAll waits until every gateway runs rev and returns how long it took.
func (f *fixture) waitAll(t testing.TB, rev string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok := true
		for i, g := range f.gws {
			if g.revision(t, f.targets[i]) != rev {
				ok = false
				break
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("gateways not at %.12s within %s; status %+v", rev, within, f.rec.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEndToEnd(t *testing.T) {
	f := newFixture(t, time.Hour) // webhook only: the first pass runs at start
	c1 := f.repo.commit(policy("github/*"))
	f.run(t)
	f.waitAll(t, c1, 10*time.Second)

	// A bad signature is refused and triggers nothing.
	c2 := f.repo.commit(policy("github/*, slack/post"))
	for _, sig := range []string{"sha256=" + fmt.Sprintf("%064x", 0), "sha256=zz", "sha1=abc", reconciler.Sign([]byte("wrong"), []byte(`{"ref":"refs/heads/main"}`))} {
		if code := f.push(t, sig); code != http.StatusUnauthorized {
			t.Fatalf("hook with signature %q: %d, want 401", sig, code)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if rev := f.gws[0].revision(t, f.targets[0]); rev != c1 {
		t.Fatalf("after refused hooks the gateway runs %s, want still %s", rev, c1)
	}
	// A good one triggers a pass at once.
	if code := f.push(t, ""); code != http.StatusAccepted {
		t.Fatalf("hook with a good signature: %d, want 202", code)
	}
	f.waitAll(t, c2, 10*time.Second)

	// An invalid commit stalls with its position and is never pushed.
	c3 := f.repo.commit(invalid)
	f.push(t, "")
	deadline := time.Now().Add(10 * time.Second)
	for f.rec.Status().LastAttemptedRevision != c3 {
		if time.Now().After(deadline) {
			t.Fatalf("invalid commit not attempted: %+v", f.rec.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := f.rec.Status()
	if st.Condition != reconciler.Stalled || st.Reason != reconciler.ReasonInvalidConfig || len(st.Diagnostics) == 0 ||
		st.Diagnostics[0].Line != 5 || st.Diagnostics[0].Col != 5 || st.LastAppliedRevision != c2 {
		t.Fatalf("status after an invalid commit: %+v; want Stalled/InvalidConfig at armoriq.yaml:5:5, last applied %s", st, c2[:12])
	}
	for i, g := range f.gws {
		if rev := g.revision(t, f.targets[i]); rev != c2 {
			t.Errorf("gateway %d runs %s after the invalid commit, want the last good %s", i+1, rev, c2[:12])
		}
	}

	// Drift: gateway 2 restarts on an empty store; the next pass repairs it
	// with the last good bundle even though the head is invalid.
	f.gws[1].restart(f.targets[1])
	if rev := f.gws[1].revision(t, f.targets[1]); rev != "" {
		t.Fatalf("restarted gateway runs %q, want nothing", rev)
	}
	f.rec.Trigger()
	f.waitAll(t, c2, 10*time.Second)

	// Fixing the config applies it everywhere.
	c4 := f.repo.commit(policy("slack/*"))
	f.push(t, "")
	f.waitAll(t, c4, 10*time.Second)
	// The gateways run c4; the pass that pushed it may still be recording.
	deadline = time.Now().Add(10 * time.Second)
	for st = f.rec.Status(); st.Targets[0].LastAppliedRevision != c4 || st.Targets[1].LastAppliedRevision != c4; st = f.rec.Status() {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st.Condition != reconciler.Ready || st.Targets[1].LastAppliedRevision != c4 || len(st.History) != 4 {
		t.Errorf("final status %+v: want Ready, gw2 at %s, 4 commits in history", st, c4[:12])
	}
}

// BenchmarkCommitToEnforcement measures the time from a commit to its
// enforcement on both gateways (their status reports the new revision),
// with the webhook (source read in place, or over smart HTTP) and with
// polling every second. One op is one commit. Figures in docs/reconciler.md:
//
//	go test -run '^$' -bench CommitToEnforcement -benchtime 10x ./reconciler/e2e
func BenchmarkCommitToEnforcement(b *testing.B) {
	for _, mode := range []string{"webhook", "webhook-http-source", "poll-1s"} {
		b.Run(mode, func(b *testing.B) {
			interval := time.Hour
			if mode == "poll-1s" {
				interval = time.Second
			}
			f := newFixtureOver(b, interval, strings.Contains(mode, "http"))
			first := f.repo.commit(policy("github/*"))
			f.run(b)
			f.waitAll(b, first, 30*time.Second)
			var worst time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				c := f.repo.commit(policy(fmt.Sprintf("github/tool%d", i)))
				if strings.HasPrefix(mode, "webhook") {
					f.push(b, "")
				}
				f.waitAll(b, c, 30*time.Second)
				worst = max(worst, time.Since(start))
			}
			b.ReportMetric(float64(worst.Milliseconds()), "max-ms")
		})
	}
}

// registrar adapts reconciler.Registrar to the gateway's Registrar
// interface, the way cmd/armoriq can wire it: the gateway serves
// POST /iap/sdk/register without importing the compiler.
type registrar struct{ r *reconciler.Registrar }

func (a registrar) Register(ctx context.Context, filename string, body []byte) (gateway.RegisterResult, error) {
	res, err := a.r.RegisterFile(ctx, filename, body)
	if err != nil {
		return gateway.RegisterResult{}, err
	}
	out := gateway.RegisterResult{Bundle: res.Bundle, Changes: res.Changes}
	for _, d := range res.Diagnostics {
		out.Diagnostics = append(out.Diagnostics, d.String())
	}
	return out, nil
}

// TestRegisterThroughGateway serves the SDK's register call from a real
// gateway with the Registrar: same content is unchanged, a change lists
// what changed, an invalid config is a 400 with positions.
func TestRegisterThroughGateway(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	kid := bundle.KeyID(pub)
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := &reconciler.Registrar{Key: priv, KeyID: kid, CompilerVersion: "e2e",
		Active: func(ctx context.Context) (*bundle.Bundle, error) {
			sb, err := st.ActiveBundle(ctx)
			if err != nil {
				return nil, nil // none active yet
			}
			b, _, err := bundle.Read(bytes.NewReader(sb.Data))
			return b, err
		}}
	srv, err := gateway.NewServer(ctx, gateway.Config{Store: st, TrustedKeys: map[string]ed25519.PublicKey{kid: pub},
		Registrar: registrar{reg}, Logger: slog.New(slog.DiscardHandler), BundlePoll: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	key, _, _ := srv.Bootstrap(ctx)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	post := func(body string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, hs.URL+"/iap/sdk/register", bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := post(policy("github/*"))
	if code != 200 || out["changed"] != true {
		t.Fatalf("first register: %d %v", code, out)
	}
	code, out = post(policy("github/*"))
	if code != 200 || out["changed"] != false || out["changes"] != nil {
		t.Errorf("same content: %d %v; want 200 unchanged with no changes", code, out)
	}
	code, out = post(policy("github/*, slack/post"))
	changes, _ := out["changes"].([]any)
	if code != 200 || out["changed"] != true || len(changes) != 1 {
		t.Errorf("changed content: %d %v; want 200 with one change", code, out)
	}
	code, out = post(invalid)
	if diags, _ := out["diagnostics"].([]any); code != 400 || len(diags) != 1 || diags[0] != `armoriq.yaml:5:5: mcp_servers[0].bogus: unknown key "bogus"` {
		t.Errorf("invalid: %d %v; want 400 with the position", code, out)
	}
}

// serveHTTP serves the repository in dir over git's smart HTTP protocol.
func serveHTTP(t testing.TB, dir string) string {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("needs git for git http-backend")
	}
	out, err := exec.Command(gitBin, "--exec-path").Output()
	if err != nil {
		t.Skip("git --exec-path: ", err)
	}
	h := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(dir), "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(dir)
}

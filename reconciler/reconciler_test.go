package reconciler

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type loopFixture struct {
	repo *testRepo
	gws  []*standinGateway
	rec  *Reconciler
}

func newLoopFixture(t *testing.T, n int, mod func(*Options)) *loopFixture {
	t.Helper()
	key, kid, keys := testKey(t)
	f := &loopFixture{repo: newTestRepo(t)}
	src, err := NewSource(SourceOptions{URL: f.repo.dir, Branch: "main", Path: "armoriq.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Source: src, Build: realBuild(key, kid), BackoffBase: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
	for i := 0; i < n; i++ {
		g := newStandinGateway(t, keys)
		f.gws = append(f.gws, g)
		opts.Targets = append(opts.Targets, &Gateway{URL: g.URL, APIKey: "ak_test_x_y"})
	}
	if mod != nil {
		mod(&opts)
	}
	if f.rec, err = New(opts); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPassAppliesHeadToEveryTarget(t *testing.T) {
	f := newLoopFixture(t, 2, nil)
	c1 := f.repo.commit("first", map[string]string{"armoriq.yaml": policy("github/*")})
	res := f.rec.Pass(ctxT(t))
	if res.Head != c1 || res.ExitCode() != ExitReady {
		t.Fatalf("pass after first commit: head %s exit %d %+v; want head %s exit 0", res.Head, res.ExitCode(), res, c1)
	}
	for i, g := range f.gws {
		if rev, _ := g.state(); rev != c1 {
			t.Errorf("gateway %d runs %q, want %s", i, rev, c1)
		}
	}
	// A second pass with nothing new pushes nothing.
	_, before := f.gws[0].state()
	res = f.rec.Pass(ctxT(t))
	if _, after := f.gws[0].state(); after != before || res.Targets[0].Reason != ReasonUpToDate {
		t.Errorf("idle pass: pushes %d → %d, reason %s; want no push, UpToDate", before, after, res.Targets[0].Reason)
	}
	c2 := f.repo.commit("second", map[string]string{"armoriq.yaml": policy("github/*", "slack/post")})
	res = f.rec.Pass(ctxT(t))
	st := f.rec.Status()
	if rev, _ := f.gws[1].state(); rev != c2 || res.ExitCode() != 0 {
		t.Fatalf("after second commit gateway runs %q (exit %d), want %s", rev, res.ExitCode(), c2)
	}
	if st.LastAppliedRevision != c2 || st.Targets[0].LastAppliedRevision != c2 || len(st.Targets[0].History) != 2 {
		t.Errorf("status %+v: want last applied %s and 2 attempts in target history", st, c2)
	}
}

func TestInvalidCommitStallsAndNeverPushes(t *testing.T) {
	f := newLoopFixture(t, 1, nil)
	good := f.repo.commit("good", map[string]string{"armoriq.yaml": policy("github/*")})
	f.rec.Pass(ctxT(t))
	_, pushes := f.gws[0].state()
	bad := f.repo.commit("bad", map[string]string{"armoriq.yaml": badPolicy})
	res := f.rec.Pass(ctxT(t))
	if res.Source.Condition != Stalled || res.ExitCode() != ExitInvalid {
		t.Fatalf("pass on invalid commit: source %+v exit %d; want Stalled, exit 1", res.Source, res.ExitCode())
	}
	if len(res.Source.Diagnostics) != 1 || res.Source.Diagnostics[0].Line != 5 || res.Source.Diagnostics[0].Col != 5 {
		t.Errorf("diagnostics %+v, want one at line 5 col 5", res.Source.Diagnostics)
	}
	rev, after := f.gws[0].state()
	if rev != good || after != pushes {
		t.Errorf("gateway runs %s after %d pushes (was %d); want %s with no new push", rev, after, pushes, good)
	}
	st := f.rec.Status()
	if st.LastAttemptedRevision != bad || st.LastAppliedRevision != good || st.Condition != Stalled {
		t.Errorf("status attempted %s applied %s condition %s; want %s, %s, Stalled", st.LastAttemptedRevision, st.LastAppliedRevision, st.Condition, bad, good)
	}
}

func TestDriftRepaired(t *testing.T) {
	f := newLoopFixture(t, 2, nil)
	c := f.repo.commit("first", map[string]string{"armoriq.yaml": policy("github/*")})
	f.rec.Pass(ctxT(t))
	f.gws[1].reset()
	res := f.rec.Pass(ctxT(t))
	if rev, _ := f.gws[1].state(); rev != c || res.Targets[1].Reason != ReasonApplied {
		t.Fatalf("after restart with an empty store the gateway runs %q (%+v); want %s re-applied", rev, res.Targets[1], c)
	}
	if res.Targets[0].Reason != ReasonUpToDate {
		t.Errorf("the other gateway: %+v, want UpToDate", res.Targets[0])
	}
}

func TestTransientFailureRetriedWithBackoff(t *testing.T) {
	f := newLoopFixture(t, 1, func(o *Options) { o.Retries = 3 })
	c := f.repo.commit("first", map[string]string{"armoriq.yaml": policy("github/*")})
	f.gws[0].fail(2) // status and the first retry's status answer 503
	res := f.rec.Pass(ctxT(t))
	if rev, _ := f.gws[0].state(); rev != c || res.ExitCode() != 0 {
		t.Fatalf("after two 503s the gateway runs %q, exit %d; want %s, 0", rev, res.ExitCode(), c)
	}
	// A push answered 503 is pushed again within the pass.
	c15 := f.repo.commit("one and a half", map[string]string{"armoriq.yaml": policy("github/*", "slack/*")})
	f.gws[0].failPuts(1)
	res = f.rec.Pass(ctxT(t))
	if rev, _ := f.gws[0].state(); rev != c15 || res.ExitCode() != 0 {
		t.Fatalf("after a 503 on the push the gateway runs %q, exit %d; want %s, 0", rev, res.ExitCode(), c15)
	}
	f.gws[0].fail(100)
	f.repo.commit("second", map[string]string{"armoriq.yaml": policy("slack/*")})
	res = f.rec.Pass(ctxT(t))
	if res.Targets[0].Condition != Waiting || res.ExitCode() != ExitUnreachable {
		t.Fatalf("gateway always 503: %+v exit %d; want Waiting, exit 3", res.Targets[0], res.ExitCode())
	}
	if st := f.rec.Status().Targets[0]; st.Attempts < 3 || st.NextRetry == nil {
		t.Errorf("target status %+v: want attempts counted and a next retry", st)
	}
}

func TestUnreachableGatewayIsWaiting(t *testing.T) {
	f := newLoopFixture(t, 0, func(o *Options) {
		o.Targets = []*Gateway{{URL: "http://127.0.0.1:1"}}
		o.Retries = -1
	})
	f.repo.commit("first", map[string]string{"armoriq.yaml": policy("github/*")})
	res := f.rec.Pass(ctxT(t))
	if res.Targets[0].Condition != Waiting || res.Targets[0].Reason != ReasonUnreachable || res.ExitCode() != 3 {
		t.Fatalf("unreachable gateway: %+v exit %d; want Waiting/Unreachable, exit 3", res.Targets[0], res.ExitCode())
	}
}

func TestGatewayRefusalsStall(t *testing.T) {
	// A gateway that pins another key refuses with 422.
	f := newLoopFixture(t, 1, nil)
	_, _, otherKeys := testKey(t)
	f.gws[0].keys = otherKeys
	f.repo.commit("first", map[string]string{"armoriq.yaml": policy("github/*")})
	res := f.rec.Pass(ctxT(t))
	if o := res.Targets[0]; o.Condition != Stalled || o.Reason != ReasonVerificationFailed {
		t.Errorf("gateway with other keys: %+v, want Stalled/VerificationFailed", o)
	}

	// A gateway running a newer bundle refuses with 409 stale_bundle.
	f = newLoopFixture(t, 1, nil)
	f.repo.commit("first", map[string]string{"armoriq.yaml": policy("github/*")})
	f.gws[0].mu.Lock()
	f.gws[0].revision, f.gws[0].sequence = "newer", time.Now().Add(time.Hour).Unix()
	f.gws[0].mu.Unlock()
	res = f.rec.Pass(ctxT(t))
	if o := res.Targets[0]; o.Condition != Stalled || o.Reason != ReasonStaleBundle || res.ExitCode() != ExitInvalid {
		t.Errorf("gateway running a newer bundle: %+v exit %d, want Stalled/StaleBundle exit 1", o, res.ExitCode())
	}
}

func TestSuspendReportsWithoutApplying(t *testing.T) {
	f := newLoopFixture(t, 1, func(o *Options) { o.Suspend = true })
	f.repo.commit("first", map[string]string{"armoriq.yaml": policy("github/*")})
	res := f.rec.Pass(ctxT(t))
	if rev, pushes := f.gws[0].state(); rev != "" || pushes != 0 || res.Targets[0].Reason != ReasonSuspended {
		t.Fatalf("suspended: gateway runs %q after %d pushes (%+v); want nothing pushed, Suspended", rev, pushes, res.Targets[0])
	}
	f.rec.SetSuspended(false)
	f.rec.Pass(ctxT(t))
	if rev, _ := f.gws[0].state(); rev == "" {
		t.Fatal("resumed: nothing applied")
	}
}

type recordingReporter struct{ got []string }

func (r *recordingReporter) ReportCommit(_ context.Context, rev string, o Outcome) error {
	r.got = append(r.got, short(rev)+" "+string(o.Condition))
	return nil
}

func TestReporterToldOncePerOutcome(t *testing.T) {
	rep := &recordingReporter{}
	f := newLoopFixture(t, 1, func(o *Options) { o.Reporter = rep })
	c1 := f.repo.commit("first", map[string]string{"armoriq.yaml": policy("github/*")})
	f.rec.Pass(ctxT(t))
	f.rec.Pass(ctxT(t))
	c2 := f.repo.commit("bad", map[string]string{"armoriq.yaml": badPolicy})
	f.rec.Pass(ctxT(t))
	want := []string{short(c1) + " Ready", short(c2) + " Stalled"}
	if strings.Join(rep.got, ",") != strings.Join(want, ",") {
		t.Errorf("reported %q, want %q", rep.got, want)
	}
}

func TestRunPollsAndWebhookTriggers(t *testing.T) {
	f := newLoopFixture(t, 1, func(o *Options) { o.Interval = time.Hour })
	f.repo.commit("first", map[string]string{"armoriq.yaml": policy("github/*")})
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan struct{})
	go func() { f.rec.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { rev, _ := f.gws[0].state(); return rev != "" })

	secret := []byte("s3cret")
	hook := httptest.NewServer(&Webhook{Secret: secret, Branch: "main", Trigger: f.rec.Trigger})
	defer hook.Close()
	c2 := f.repo.commit("second", map[string]string{"armoriq.yaml": policy("slack/*")})
	body := []byte(`{"ref":"refs/heads/main","after":"` + c2 + `"}`)
	// A bad signature is refused and triggers nothing.
	if code := postHook(t, hook.URL, body, "sha256=00", "push"); code != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d, want 401", code)
	}
	time.Sleep(50 * time.Millisecond)
	if rev, _ := f.gws[0].state(); rev == c2 {
		t.Fatal("a hook with a bad signature triggered a pass")
	}
	if code := postHook(t, hook.URL, body, Sign(secret, body), "push"); code != http.StatusAccepted {
		t.Fatalf("good signature: %d, want 202", code)
	}
	waitFor(t, func() bool { rev, _ := f.gws[0].state(); return rev == c2 })
}

func postHook(t *testing.T, url string, body []byte, sig, event string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/hook", bytes.NewReader(body))
	if sig != "" {
		req.Header.Set("X-Hub-Signature-256", sig)
	}
	req.Header.Set("X-GitHub-Event", event)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

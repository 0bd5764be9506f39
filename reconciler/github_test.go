package reconciler

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/reconciler/githubtest"
)

// newFakeGitHub starts a githubtest fake, closed at cleanup.
func newFakeGitHub(t *testing.T) *githubtest.Server {
	f := githubtest.NewServer()
	t.Cleanup(f.Close)
	return f
}

func newChecks(t *testing.T, f *githubtest.Server, stdout io.Writer) *Checks {
	t.Helper()
	c, err := NewGitHubClient(context.Background(), GitHubAuth{Token: "ghp_test", APIURL: f.URL}, "o", "r")
	if err != nil {
		t.Fatal(err)
	}
	return &Checks{Client: c, Owner: "o", Repo: "r", Stdout: stdout}
}

func diagnostics(n int) []Diagnostic {
	var ds []Diagnostic
	for i := 0; i < n; i++ {
		ds = append(ds, Diagnostic{Severity: "error", File: "armoriq.yaml", Line: i + 1, Col: 3, Path: fmt.Sprintf("mcp_servers[%d]", i), Summary: "bad"})
	}
	return ds
}

func TestPublishBatchesAnnotations(t *testing.T) {
	f := newFakeGitHub(t)
	c := newChecks(t, f, io.Discard)
	d := c.Publish(context.Background(), "abc123", CheckReport{Title: "120 errors", Summary: "s", Failed: true, Diagnostics: diagnostics(120)})
	if d.How != "check-run" || len(d.Problems) > 0 || d.Commands != 0 {
		t.Fatalf("Publish = %+v; want check-run", d)
	}
	reqs := f.Take()
	var got []string
	total := 0
	for _, r := range reqs {
		out, _ := r.Body["output"].(map[string]any)
		anns, _ := out["annotations"].([]any)
		got = append(got, fmt.Sprintf("%s %s %d", r.Method, r.Path, len(anns)))
		total += len(anns)
		if r.Auth != "Bearer ghp_test" {
			t.Errorf("%s %s authorization %q, want Bearer ghp_test", r.Method, r.Path, r.Auth)
		}
	}
	want := []string{"POST /repos/o/r/check-runs 50", "PATCH /repos/o/r/check-runs/42 50", "PATCH /repos/o/r/check-runs/42 20"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") || total != 120 {
		t.Fatalf("requests %q, want %q", got, want)
	}
	first := reqs[0].Body
	if first["head_sha"] != "abc123" || first["conclusion"] != "failure" || first["status"] != "completed" || first["name"] != "armoriq" {
		t.Errorf("create body %v: want head_sha abc123, completed, failure", first)
	}
	a := first["output"].(map[string]any)["annotations"].([]any)[1].(map[string]any)
	if a["path"] != "armoriq.yaml" || a["start_line"] != float64(2) || a["start_column"] != float64(3) || a["annotation_level"] != "failure" {
		t.Errorf("second annotation %v: want armoriq.yaml:2:3 failure", a)
	}
}

func TestPublishFallsBackToStatus(t *testing.T) {
	f := newFakeGitHub(t)
	f.Perms.Checks = false
	var out strings.Builder
	c := newChecks(t, f, &out)
	d := c.Publish(context.Background(), "abc123", CheckReport{Title: "1 error", Failed: true, Diagnostics: diagnostics(1)})
	if d.How != "status" || d.Commands != 1 || len(d.Problems) != 1 || !strings.Contains(d.Problems[0], "403 Resource not accessible by integration") {
		t.Fatalf("Publish with checks refused = %+v; want status, one workflow command and the 403 as a problem", d)
	}
	reqs := f.Take()
	last := reqs[len(reqs)-1]
	if last.Path != "/repos/o/r/statuses/abc123" || last.Body["state"] != "failure" || last.Body["context"] != "armoriq" {
		t.Errorf("fallback request %+v: want a failure status on abc123", last)
	}
	if want := "::error file=armoriq.yaml,line=1,col=3,title=armoriq%3A mcp_servers[0]::bad\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
}

func TestUpsertCommentEditsInPlace(t *testing.T) {
	f := newFakeGitHub(t)
	c := newChecks(t, f, io.Discard)
	// Three unrelated comments first, so ours lands on page 2.
	for i := 0; i < 3; i++ {
		f.Comments = append(f.Comments, map[string]any{"id": float64(i + 1), "body": "lgtm"})
	}
	created, err := c.UpsertComment(context.Background(), 7, "diff one")
	if err != nil || !created {
		t.Fatalf("first run: created %v, %v; want a new comment", created, err)
	}
	f.Take()
	created, err = c.UpsertComment(context.Background(), 7, "diff two")
	if err != nil || created {
		t.Fatalf("second run: created %v, %v; want an edit", created, err)
	}
	var got []string
	for _, r := range f.Take() {
		got = append(got, r.Method+" "+r.Path+"?"+r.Query)
	}
	want := []string{
		"GET /repos/o/r/issues/7/comments?per_page=100",
		"GET /repos/o/r/issues/7/comments?page=2&per_page=100",
		"PATCH /repos/o/r/issues/comments/103?",
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("second run requests %q, want %q", got, want)
	}
	if len(f.Comments) != 4 || f.Comments[3]["body"] != CommentMarker+"\ndiff two" {
		t.Errorf("comments %v: want 4 with the last one edited", f.Comments)
	}
}

func TestCommitStatusReporter(t *testing.T) {
	f := newFakeGitHub(t)
	c := newChecks(t, f, io.Discard)
	r := &CommitStatusReporter{Client: c.Client, Owner: "o", Repo: "r"}
	o := Outcome{Condition: Stalled, Reason: ReasonInvalidConfig, Diagnostics: diagnostics(2)}
	if err := r.ReportCommit(context.Background(), "deadbeef", o); err != nil {
		t.Fatal(err)
	}
	req := f.Take()[0]
	if req.Path != "/repos/o/r/statuses/deadbeef" || req.Body["state"] != "failure" || req.Body["context"] != StatusContext ||
		req.Body["description"] != "InvalidConfig: armoriq.yaml:1:3 bad (+1 more)" {
		t.Errorf("status request %+v", req)
	}
}

func TestAppAuthMintsInstallationToken(t *testing.T) {
	f := newFakeGitHub(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	c, err := NewGitHubClient(context.Background(), GitHubAuth{AppID: 12, AppKeyPEM: pemKey, APIURL: f.URL}, "o", "r")
	if err != nil {
		t.Fatal(err)
	}
	r := &CommitStatusReporter{Client: c, Owner: "o", Repo: "r"}
	for i := 0; i < 2; i++ {
		if err := r.ReportCommit(context.Background(), "abc", Outcome{Condition: Ready, Reason: ReasonApplied}); err != nil {
			t.Fatal(err)
		}
	}
	reqs := f.Take()
	var got []string
	for _, q := range reqs {
		got = append(got, q.Method+" "+q.Path)
	}
	want := "GET /repos/o/r/installation; POST /app/installations/99/access_tokens; POST /repos/o/r/statuses/abc; POST /repos/o/r/statuses/abc"
	if strings.Join(got, "; ") != want {
		t.Fatalf("requests %q, want %q", got, want)
	}
	if !strings.HasPrefix(reqs[0].Auth, "Bearer ey") || reqs[2].Auth != "token ghs_inst1" || reqs[3].Auth != "token ghs_inst1" {
		t.Errorf("auth headers %q, %q, %q: want the JWT, then the cached installation token", reqs[0].Auth, reqs[2].Auth, reqs[3].Auth)
	}
}

func TestReadGitHubEvent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "event.json")
	os.WriteFile(p, []byte(`{"number":7,"pull_request":{"number":7,"head":{"sha":"head1"},"base":{"sha":"base1"}}}`), 0o644)
	env := map[string]string{"GITHUB_REPOSITORY": "o/r", "GITHUB_SHA": "merge1", "GITHUB_EVENT_PATH": p, "GITHUB_API_URL": "http://x"}
	ev, err := ReadGitHubEvent(func(k string) string { return env[k] })
	if err != nil || ev.PR != 7 || ev.SHA != "head1" || ev.BaseSHA != "base1" || ev.Owner != "o" || ev.Repo != "r" {
		t.Fatalf("ReadGitHubEvent = %+v, %v", ev, err)
	}
}

func TestWorkflowCommandEscapes(t *testing.T) {
	got := WorkflowCommand(Diagnostic{Severity: "warning", File: "a,b:c.yaml", Line: 2, Summary: "50% done\nnext"})
	if want := "::warning file=a%2Cb%3Ac.yaml,line=2::50%25 done%0Anext"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestAppJWT(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tok, err := AppJWT(42, key, now)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT %q: want three parts", tok)
	}
	enc := base64.RawURLEncoding
	header, _ := enc.DecodeString(parts[0])
	claims, _ := enc.DecodeString(parts[1])
	sig, _ := enc.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	if string(header) != `{"alg":"RS256","typ":"JWT"}` {
		t.Errorf("header %s", header)
	}
	var c struct {
		Iat, Exp int64
		Iss      string
	}
	json.Unmarshal(claims, &c)
	if c.Iss != "42" || c.Iat != now.Unix()-60 || c.Exp != now.Unix()+540 {
		t.Errorf("claims %s: want iss 42, iat a minute back, exp in nine minutes", claims)
	}
}

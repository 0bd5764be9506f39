package reconciler

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const checkPolicy = `version: v1
mcp_servers:
  - id: slack
    url: https://slack.example.com/mcp
policy:
  rules:
    - effect: allow
      tools: [%s]
      users: [alice@example.com]
tests:
  - name: alice-reads
    user: alice@example.com
    tool: slack/read
    expect: allow
`

func TestCheckPublishesToPullRequest(t *testing.T) {
	repo := newTestRepo(t)
	base := repo.commit("base", map[string]string{"armoriq.yaml": strings.Replace(checkPolicy, "%s", "slack/read", 1)})
	path := filepath.Join(repo.dir, "armoriq.yaml")
	f := newFakeGitHub(t)
	checks := newChecks(t, f, io.Discard)
	ev := &GitHubEvent{Owner: "o", Repo: "r", SHA: "head1", PR: 7, BaseSHA: base}

	// First push: alice may also post. Valid, tests pass, one access change.
	os.WriteFile(path, []byte(strings.Replace(checkPolicy, "%s", "slack/read, slack/post", 1)), 0o644)
	res := Check(path, base)
	if res.Failed() || res.Tests != 1 || res.Access == nil || len(res.Access.Changes) != 1 {
		t.Fatalf("Check: %+v, diagnostics %v", res, res.Diagnostics)
	}
	d := PublishCheck(context.Background(), checks, ev, res, repo.dir)
	if d.How != "check-run" || d.Comment != "created" || len(d.Problems) > 0 {
		t.Fatalf("first PublishCheck = %+v; want a check run and a new comment", d)
	}
	reqs := f.Take()
	if reqs[0].Body["conclusion"] != "success" || reqs[0].Body["head_sha"] != "head1" {
		t.Errorf("check run %v: want success on head1", reqs[0].Body)
	}
	if body := f.Comments[0]["body"].(string); !strings.HasPrefix(body, CommentMarker) || !strings.Contains(body, "slack/post") {
		t.Errorf("comment %q: want the marker and the gained tool", body)
	}

	// Second push: the test now fails; the same comment is edited.
	os.WriteFile(path, []byte(strings.Replace(checkPolicy, "%s", "slack/post", 1)), 0o644)
	res = Check(path, base)
	if !res.Failed() || res.Failures != 1 {
		t.Fatalf("Check with a failing test: %+v", res)
	}
	d = PublishCheck(context.Background(), checks, ev, res, repo.dir)
	if d.How != "check-run" || d.Comment != "updated" || len(d.Problems) > 0 {
		t.Fatalf("second PublishCheck = %+v; want a check run and an edited comment", d)
	}
	reqs = f.Take()
	run := reqs[0].Body
	ann := run["output"].(map[string]any)["annotations"].([]any)[0].(map[string]any)
	if run["conclusion"] != "failure" || ann["path"] != "armoriq.yaml" || ann["start_line"] != float64(11) {
		t.Errorf("check run %v, annotation %v: want failure at armoriq.yaml:11", run["conclusion"], ann)
	}
	if len(f.Comments) != 1 || !strings.Contains(f.Comments[0]["body"].(string), "0/1 tests passed") {
		t.Errorf("comments %v: want the one comment, edited", f.Comments)
	}
}

func TestCheckWithoutBaseOrInvalid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "armoriq.yaml")
	os.WriteFile(path, []byte(badPolicy), 0o644)
	res := Check(path, "")
	if !res.Failed() || res.Access != nil || !strings.HasSuffix(res.Title(), ": 1 error") {
		t.Errorf("invalid config: title %q, %+v", res.Title(), res)
	}
	res = Check(path, "main")
	if res.DiffText("text") != "no diff: the config is invalid\n" {
		t.Errorf("diff of an invalid config: %q", res.DiffText("text"))
	}
}

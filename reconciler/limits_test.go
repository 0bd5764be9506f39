package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/armoriq/controlplane/reconciler/githubtest"
	"github.com/armoriq/controlplane/schema"
)

func TestFitMarkdown(t *testing.T) {
	long := strings.Repeat("| `alice` | `slack/post` | deny | allow |\n", 3000)
	tests := []struct {
		name, in string
		limit    int
	}{
		{"short text is unchanged", "**valid**\n", 100},
		{"many lines", long, 65536},
		{"one long line", strings.Repeat("é", 70000), 65536},
		{"open code fence", "```\n" + long + "```\n", 1000},
		{"tiny limit", long, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fitMarkdown(tt.in, tt.limit, "the job summary")
			if len(got) > tt.limit {
				t.Fatalf("fitMarkdown gave %d bytes, want at most %d", len(got), tt.limit)
			}
			if !utf8.ValidString(got) {
				t.Errorf("fitMarkdown cut a character in two")
			}
			if len(tt.in) <= tt.limit {
				if got != tt.in {
					t.Errorf("fitMarkdown changed a text that fits: %q", got)
				}
				return
			}
			if tt.limit > 300 && !strings.Contains(got, "left out. The full report is in the job summary") {
				t.Errorf("fitMarkdown(%d bytes) ends %q, want a note saying where the rest is", len(tt.in), got[max(0, len(got)-300):])
			}
			if tt.limit > 300 && strings.Count(got, "```")%2 != 0 {
				t.Errorf("fitMarkdown left a code fence open")
			}
		})
	}
}

func TestFitPlain(t *testing.T) {
	msg := strings.Repeat("x", MaxAnnotationMessage+5000)
	got := fitPlain(msg, MaxAnnotationMessage, "")
	if len(got) > MaxAnnotationMessage || !strings.Contains(got, "bytes cut") || !strings.Contains(got, "armoriq check") {
		t.Errorf("fitPlain: %d bytes ending %q; want at most %d with a note", len(got), got[len(got)-120:], MaxAnnotationMessage)
	}
}

func FuzzFitMarkdown(f *testing.F) {
	f.Add("```\nab\ncd\n", 12)
	f.Add(strings.Repeat("héllo\n", 100), 200)
	f.Fuzz(func(t *testing.T, s string, limit int) {
		limit = limit%100000 + 1
		if limit < 1 {
			limit = -limit + 1
		}
		got := fitMarkdown(s, limit, "there")
		if len(got) > limit && len(s) > limit {
			t.Fatalf("fitMarkdown(%d bytes, %d) = %d bytes", len(s), limit, len(got))
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("fitMarkdown made invalid UTF-8 of valid input")
		}
	})
}

func FuzzWorkflowCommand(f *testing.F) {
	f.Add("armoriq.yaml", "mcp_servers[0].id", "bad: value, 100%", "line\r\nbreak")
	f.Fuzz(func(t *testing.T, file, path, summary, detail string) {
		got := WorkflowCommand(Diagnostic{Severity: "error", File: file, Line: 1, Col: 2, Path: path, Summary: summary, Detail: detail})
		if strings.ContainsAny(got, "\r\n") {
			t.Fatalf("WorkflowCommand gave more than one line: %q", got)
		}
		props, _, ok := strings.Cut(strings.TrimPrefix(got, "::error "), "::")
		if !ok {
			t.Fatalf("WorkflowCommand %q has no message separator", got)
		}
		// Every property value is escaped: a ':' or ',' in one would end it.
		for _, p := range strings.Split(props, ",") {
			if !strings.Contains(p, "=") {
				t.Fatalf("WorkflowCommand %q: property %q has no '=' (an unescaped ',')", got, p)
			}
		}
	})
}

func TestRepoPath(t *testing.T) {
	root := t.TempDir()
	t.Chdir(root)
	os.Mkdir(filepath.Join(root, "sub"), 0o755)
	tests := []struct {
		name, root, file, want string
		ok                     bool
	}{
		{"dot slash", root, "./armoriq.yaml", "armoriq.yaml", true},
		{"absolute inside", root, filepath.Join(root, "sub", "a_test.yaml"), "sub/a_test.yaml", true},
		{"unclean", root, "sub/../armoriq.yaml", "armoriq.yaml", true},
		{"root from the working directory", "", "armoriq.yaml", "armoriq.yaml", true},
		{"outside the root", filepath.Join(root, "sub"), "armoriq.yaml", "", false},
		{"dot dot", root, "../elsewhere.yaml", "", false},
		{"empty", root, "", "", false},
		{"the root itself", root, ".", "", false},
	}
	for _, tt := range tests {
		got, ok := RepoPath(tt.root, tt.file)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: RepoPath(%q, %q) = %q, %v; want %q, %v", tt.name, tt.root, tt.file, got, ok, tt.want, tt.ok)
		}
	}
}

// TestPublishCheckPermissions publishes a failing check with a PR under each
// combination of write permissions GitHub may give a token: the fake
// answers 403 with GitHub's body where a permission is missing. Whatever
// is refused, the problems still reach the runner (annotations or workflow
// commands) and Publish reports, never fails.
func TestPublishCheckPermissions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "armoriq.yaml")
	os.WriteFile(path, []byte(strings.Replace(strings.Replace(checkPolicy, "%s", "slack/read", 1), "tool: slack/read", "tool: slack/post", 1)), 0o644)
	res := Check(path, "")
	if res.Failures != 1 {
		t.Fatalf("Check: %d failures, want 1 (%v)", res.Failures, res.Diagnostics)
	}
	tests := []struct {
		name     string
		perms    githubtest.Permissions
		how      string
		comment  string
		commands int
		problems []string
	}{
		{"all granted", githubtest.Full, "check-run", "created", 0, nil},
		{"check runs refused", githubtest.Permissions{Statuses: true, PullRequests: true}, "status", "created", 1,
			[]string{"creating check run: GitHub answered 403 Resource not accessible by integration"}},
		{"statuses refused", githubtest.Permissions{Checks: true, PullRequests: true}, "check-run", "created", 0, nil},
		{"comments refused", githubtest.Permissions{Checks: true, Statuses: true}, "check-run", "", 0,
			[]string{"commenting on pull request #7: GitHub answered 403 Resource not accessible by integration"}},
		{"all refused (a fork)", githubtest.Permissions{}, "", "", 1, []string{
			"creating check run: GitHub answered 403",
			"creating commit status: GitHub answered 403",
			"commenting on pull request #7: GitHub answered 403",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeGitHub(t)
			f.Perms = tt.perms
			var out strings.Builder
			d := PublishCheck(context.Background(), newChecks(t, f, &out), &GitHubEvent{Owner: "o", Repo: "r", SHA: "h", PR: 7}, res, dir)
			if d.How != tt.how || d.Comment != tt.comment || d.Commands != tt.commands || len(d.Problems) != len(tt.problems) {
				t.Fatalf("PublishCheck = %+v; want how %q, comment %q, %d commands, problems %q", d, tt.how, tt.comment, tt.commands, tt.problems)
			}
			for i, p := range tt.problems {
				if !strings.HasPrefix(d.Problems[i], p) {
					t.Errorf("problem %d = %q, want it to start %q", i, d.Problems[i], p)
				}
			}
			if tt.commands > 0 && !strings.HasPrefix(out.String(), "::error file=armoriq.yaml,line=11,col=5,title=armoriq%3A tests[0]::test alice-reads") {
				t.Errorf("stdout %q: want the failed test as a workflow command", out.String())
			}
			if tt.commands == 0 && out.Len() > 0 {
				t.Errorf("stdout %q: want nothing when the check run carries the annotations", out.String())
			}
			for _, r := range f.Take() {
				if r.Status == 422 {
					t.Errorf("%s %s was refused as invalid: %v", r.Method, r.Path, r.Body)
				}
			}
		})
	}
}

// TestPublishCheckCutsToGitHubLimits publishes a report over every limit
// GitHub puts on its texts; the fake refuses (422) anything over one.
func TestPublishCheckCutsToGitHubLimits(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	res := &CheckResult{Path: "./armoriq.yaml"}
	for i := range 60 {
		res.Diagnostics = append(res.Diagnostics, schema.Diagnostic{
			Severity: schema.SeverityError,
			Pos:      schema.Pos{File: "./armoriq.yaml", Line: i + 1, Col: 1},
			Path:     "policy.rules[0]." + strings.Repeat("very_long_key.", 30),
			Summary:  strings.Repeat("é", 4000),
			Detail:   strings.Repeat("detail ", 12000),
		})
	}
	res.Diagnostics = append(res.Diagnostics, schema.Diagnostic{Severity: schema.SeverityError, Summary: "no position"})
	f := newFakeGitHub(t)
	d := PublishCheck(context.Background(), newChecks(t, f, nil), &GitHubEvent{Owner: "o", Repo: "r", SHA: "h", PR: 7, RunURL: "https://github.com/o/r/actions/runs/1"}, res, dir)
	if d.How != "check-run" || d.Comment != "created" || len(d.Problems) > 0 {
		t.Fatalf("PublishCheck = %+v; want everything accepted", d)
	}
	anns := 0
	for _, r := range f.Take() {
		if r.Status >= 300 {
			t.Errorf("%s %s answered %d", r.Method, r.Path, r.Status)
		}
		out, ok := r.Body["output"].(map[string]any)
		if !ok {
			continue
		}
		summary := out["summary"].(string)
		if !strings.Contains(summary, "[this workflow run](https://github.com/o/r/actions/runs/1)") {
			t.Errorf("check run summary ends %q: want a note pointing at the run", summary[len(summary)-300:])
		}
		for _, a := range out["annotations"].([]any) {
			m := a.(map[string]any)
			anns++
			if m["path"] != "armoriq.yaml" {
				t.Errorf("annotation path %q, want armoriq.yaml", m["path"])
			}
		}
	}
	if anns != 61 {
		t.Errorf("%d annotations, want 61 (the one without a position on the config)", anns)
	}
	body := f.Comments[0]["body"].(string)
	if len(body) > MaxCommentBody || !strings.Contains(body, "Cut to fit GitHub's limit") {
		t.Errorf("comment of %d bytes ending %q: want at most %d with a note", len(body), body[len(body)-200:], MaxCommentBody)
	}
}

func FuzzRepoPath(f *testing.F) {
	for _, s := range []string{"./armoriq.yaml", "../x", "/abs/a.yaml", "a/../../b", "sub//x.yaml", ""} {
		f.Add(s)
	}
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, file string) {
		got, ok := RepoPath(root, file)
		if !ok {
			return
		}
		if got == "" || strings.HasPrefix(got, "/") || strings.HasPrefix(got, "./") || got == ".." || strings.HasPrefix(got, "../") || strings.Contains("/"+got+"/", "/../") || strings.Contains(got, "//") {
			t.Fatalf("RepoPath(%q) = %q: not a clean repository-relative path", file, got)
		}
	})
}

// FuzzWebhookPush sends arbitrary signed bodies as push events: the
// webhook never fails with a 5xx, and triggers a pass only for a push to
// the watched branch of the watched repository.
func FuzzWebhookPush(f *testing.F) {
	f.Add([]byte(`{"ref":"refs/heads/main","repository":{"full_name":"acme/policy"}}`))
	f.Add([]byte(`{"ref":"refs/heads/main","repository":{"full_name":"acme/other"}}`))
	f.Add([]byte(`{"ref":"refs/heads/main"}`))
	f.Add([]byte(`{"ref":"refs/heads/main","repository":null}`))
	f.Add([]byte(`[]`))
	secret := []byte("s")
	f.Fuzz(func(t *testing.T, body []byte) {
		triggered := false
		h := &Webhook{Secret: secret, Branch: "main", Repository: "acme/policy", Trigger: func() { triggered = true }}
		req := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", Sign(secret, body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("status %d for %q", w.Code, body)
		}
		if triggered {
			var p struct {
				Ref        string
				Repository struct {
					FullName string `json:"full_name"`
				}
			}
			if json.Unmarshal(body, &p) != nil || p.Ref != "refs/heads/main" || !strings.EqualFold(p.Repository.FullName, "acme/policy") {
				t.Fatalf("triggered by %q", body)
			}
		}
	})
}

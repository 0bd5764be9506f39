package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-github/v62/github"
)

// GitHubEvent is what a workflow run says about itself, read from the
// GITHUB_* variables and the event payload file.
type GitHubEvent struct {
	Owner, Repo string
	SHA         string // the commit to report on: the PR's head, else GITHUB_SHA
	PR          int    // 0 outside pull requests
	BaseSHA     string // the PR's base commit
	APIURL      string
}

// ReadGitHubEvent reads the event context with getenv.
func ReadGitHubEvent(getenv func(string) string) (*GitHubEvent, error) {
	ev := &GitHubEvent{SHA: getenv("GITHUB_SHA"), APIURL: getenv("GITHUB_API_URL")}
	repo := getenv("GITHUB_REPOSITORY")
	if repo == "" {
		return nil, errors.New("GITHUB_REPOSITORY is not set: not running in a GitHub workflow?")
	}
	var err error
	if ev.Owner, ev.Repo, err = SplitRepo(repo); err != nil {
		return nil, err
	}
	if p := getenv("GITHUB_EVENT_PATH"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("GITHUB_EVENT_PATH: %v", err)
		}
		var payload struct {
			Number      int `json:"number"`
			PullRequest *struct {
				Number int `json:"number"`
				Head   struct {
					SHA string `json:"sha"`
				} `json:"head"`
				Base struct {
					SHA string `json:"sha"`
				} `json:"base"`
			} `json:"pull_request"`
		}
		if err := json.Unmarshal(data, &payload); err != nil {
			return nil, fmt.Errorf("GITHUB_EVENT_PATH %s: %v", p, err)
		}
		if pr := payload.PullRequest; pr != nil {
			ev.PR, ev.BaseSHA = pr.Number, pr.Base.SHA
			if pr.Head.SHA != "" {
				ev.SHA = pr.Head.SHA
			}
		}
	}
	if ev.SHA == "" {
		return nil, errors.New("GITHUB_SHA is not set")
	}
	return ev, nil
}

// CheckReport is what "armoriq check" found, ready to publish.
type CheckReport struct {
	Name    string // the check run's name; default "armoriq"
	Title   string
	Summary string // markdown
	Text    string // markdown, optional
	Failed  bool
	// Diagnostics become annotations at file:line:col.
	Diagnostics []Diagnostic
}

// MaxAnnotations is how many annotations GitHub accepts per check run
// request; more go in further updates of the same run.
const MaxAnnotations = 50

// Checks publishes check results and the PR comment to one repository.
type Checks struct {
	Client      *github.Client
	Owner, Repo string
	// Stdout receives workflow commands (::error file=…) when check runs are
	// refused and the fallback is used.
	Stdout io.Writer
}

// Publish reports rep on sha: a check run with annotations in batches of
// MaxAnnotations, or, when the token may not create check runs (403), a
// commit status plus ::error lines on Stdout. It returns "check-run" or
// "status" to say which.
func (c *Checks) Publish(ctx context.Context, sha string, rep CheckReport) (string, error) {
	name := rep.Name
	if name == "" {
		name = "armoriq"
	}
	conclusion := "success"
	if rep.Failed {
		conclusion = "failure"
	}
	anns := annotations(rep.Diagnostics)
	first := anns[:min(len(anns), MaxAnnotations)]
	now := github.Timestamp{Time: time.Now()}
	run, resp, err := c.Client.Checks.CreateCheckRun(ctx, c.Owner, c.Repo, github.CreateCheckRunOptions{
		Name:        name,
		HeadSHA:     sha,
		Status:      github.String("completed"),
		Conclusion:  &conclusion,
		CompletedAt: &now,
		Output:      c.output(rep, first),
	})
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound) {
			return "status", c.fallback(ctx, sha, name, rep)
		}
		return "", fmt.Errorf("creating check run: %v", err)
	}
	for i := MaxAnnotations; i < len(anns); i += MaxAnnotations {
		batch := anns[i:min(len(anns), i+MaxAnnotations)]
		if _, _, err := c.Client.Checks.UpdateCheckRun(ctx, c.Owner, c.Repo, run.GetID(), github.UpdateCheckRunOptions{
			Name:   name,
			Output: c.output(rep, batch),
		}); err != nil {
			return "check-run", fmt.Errorf("adding annotations %d-%d to check run %d: %v", i+1, i+len(batch), run.GetID(), err)
		}
	}
	return "check-run", nil
}

func (c *Checks) output(rep CheckReport, anns []*github.CheckRunAnnotation) *github.CheckRunOutput {
	out := &github.CheckRunOutput{Title: github.String(rep.Title), Summary: github.String(truncate(rep.Summary, 65535)), Annotations: anns}
	if rep.Text != "" {
		out.Text = github.String(truncate(rep.Text, 65535))
	}
	return out
}

// fallback reports with a commit status and workflow commands, which a
// plain GITHUB_TOKEN without checks: write can still do.
func (c *Checks) fallback(ctx context.Context, sha, name string, rep CheckReport) error {
	if c.Stdout != nil {
		for _, d := range rep.Diagnostics {
			fmt.Fprintln(c.Stdout, WorkflowCommand(d))
		}
	}
	state := "success"
	if rep.Failed {
		state = "failure"
	}
	_, _, err := c.Client.Repositories.CreateStatus(ctx, c.Owner, c.Repo, sha, &github.RepoStatus{
		State: &state, Context: github.String(name), Description: github.String(truncate(rep.Title, 140)),
	})
	if err != nil {
		return fmt.Errorf("creating commit status: %v", err)
	}
	return nil
}

// WorkflowCommand formats d as a GitHub Actions workflow command
// (::error file=F,line=L,col=C::message) so the runner annotates the file.
func WorkflowCommand(d Diagnostic) string {
	level := "error"
	if d.Severity == "warning" {
		level = "warning"
	}
	var props []string
	if d.File != "" {
		props = append(props, "file="+escapeProp(d.File))
	}
	if d.Line > 0 {
		props = append(props, fmt.Sprintf("line=%d", d.Line))
	}
	if d.Col > 0 {
		props = append(props, fmt.Sprintf("col=%d", d.Col))
	}
	msg := d.Summary
	if d.Path != "" {
		msg = d.Path + ": " + msg
	}
	if d.Detail != "" {
		msg += "\n" + d.Detail
	}
	cmd := "::" + level
	if len(props) > 0 {
		cmd += " " + strings.Join(props, ",")
	}
	return cmd + "::" + escapeData(msg)
}

func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func escapeProp(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

func annotations(ds []Diagnostic) []*github.CheckRunAnnotation {
	out := make([]*github.CheckRunAnnotation, 0, len(ds))
	for _, d := range ds {
		level := "failure"
		if d.Severity == "warning" {
			level = "warning"
		}
		line := max(d.Line, 1) // GitHub requires a line
		a := &github.CheckRunAnnotation{
			Path:            github.String(d.File),
			StartLine:       github.Int(line),
			EndLine:         github.Int(line),
			AnnotationLevel: github.String(level),
			Message:         github.String(truncate(strings.TrimSpace(d.Summary+"\n"+d.Detail), 64*1024)),
		}
		if d.Path != "" {
			a.Title = github.String(d.Path)
		}
		if d.Col > 0 { // columns only on single-line annotations
			a.StartColumn, a.EndColumn = github.Int(d.Col), github.Int(d.Col)
		}
		out = append(out, a)
	}
	return out
}

// CommentMarker is the hidden line that identifies armoriq's PR comment, so
// later pushes edit it instead of adding a new one.
const CommentMarker = "<!-- armoriq:diff -->"

// UpsertComment puts body (with the marker prepended) in the pull request's
// armoriq comment: it edits the one an earlier run left, looking through
// every page of comments, or creates it. It reports whether it created one.
func (c *Checks) UpsertComment(ctx context.Context, pr int, body string) (bool, error) {
	body = CommentMarker + "\n" + body
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}}
	for {
		comments, resp, err := c.Client.Issues.ListComments(ctx, c.Owner, c.Repo, pr, opts)
		if err != nil {
			return false, fmt.Errorf("listing comments of #%d: %w", pr, err)
		}
		for _, cm := range comments {
			if strings.Contains(cm.GetBody(), CommentMarker) {
				if cm.GetBody() == body {
					return false, nil
				}
				_, _, err := c.Client.Issues.EditComment(ctx, c.Owner, c.Repo, cm.GetID(), &github.IssueComment{Body: &body})
				if err != nil {
					return false, fmt.Errorf("editing comment %d: %w", cm.GetID(), err)
				}
				return false, nil
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	if _, _, err := c.Client.Issues.CreateComment(ctx, c.Owner, c.Repo, pr, &github.IssueComment{Body: &body}); err != nil {
		return false, fmt.Errorf("commenting on #%d: %w", pr, err)
	}
	return true, nil
}

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
	RunURL      string // the workflow run's page, when the runner says
}

// ReadGitHubEvent reads the event context with getenv.
func ReadGitHubEvent(getenv func(string) string) (*GitHubEvent, error) {
	ev := &GitHubEvent{SHA: getenv("GITHUB_SHA"), APIURL: getenv("GITHUB_API_URL")}
	repo := getenv("GITHUB_REPOSITORY")
	if repo == "" {
		return nil, errors.New("GITHUB_REPOSITORY is not set: not running in a GitHub workflow?")
	}
	if server, id := getenv("GITHUB_SERVER_URL"), getenv("GITHUB_RUN_ID"); server != "" && id != "" {
		ev.RunURL = strings.TrimRight(server, "/") + "/" + repo + "/actions/runs/" + id
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
	// Diagnostics become annotations at file:line:col. Their File must be
	// a clean repository-relative path (see RepoPath); one without a file
	// is annotated on DefaultFile, or, without one, left to the summary.
	Diagnostics []Diagnostic
	DefaultFile string
	// Where says where the whole report can be read (e.g. "the job summary
	// of this workflow run"), for the notes on texts cut to GitHub's limits.
	Where string
}

// MaxAnnotations is how many annotations GitHub accepts per check run
// request; more go in further updates of the same run.
const MaxAnnotations = 50

// MaxStepAnnotations is how many error (and, separately, warning)
// annotations the Actions runner shows from one step's workflow commands.
const MaxStepAnnotations = 10

// Checks publishes check results and the PR comment to one repository.
type Checks struct {
	Client      *github.Client
	Owner, Repo string
	// Stdout receives workflow commands (::error file=…) for the problems
	// no check run carries, when check runs are refused.
	Stdout io.Writer
}

// Delivery says what of a report reached GitHub. Reporting is best effort:
// what GitHub refused or failed is listed in Problems and never changes
// the verdict, which is the check's own.
type Delivery struct {
	How      string   // "check-run", "status", or "" when GitHub took neither
	Comment  string   // "created", "updated" (or left as it was), or "" for none
	Commands int      // diagnostics printed as workflow commands instead of check run annotations
	Problems []string // one line per refused or failed request
}

func (d *Delivery) problem(what string, err error) {
	d.Problems = append(d.Problems, describeGitHubError(what, err))
}

// describeGitHubError says what GitHub answered, in one line, with the
// likely cause of a refusal.
func describeGitHubError(what string, err error) string {
	var ge *github.ErrorResponse
	if !errors.As(err, &ge) || ge.Response == nil {
		return fmt.Sprintf("%s: %v", what, err)
	}
	msg := fmt.Sprintf("%s: GitHub answered %d %s", what, ge.Response.StatusCode, ge.Message)
	for _, e := range ge.Errors {
		if e.Message != "" {
			msg += "; " + e.Message
		}
	}
	switch ge.Response.StatusCode {
	case http.StatusForbidden, http.StatusNotFound:
		msg += " (the token may not write this: a pull request from a fork gets a read-only token; else grant the workflow's permissions)"
	}
	return msg
}

// Publish reports rep on sha: a check run with annotations in batches of
// MaxAnnotations; when GitHub refuses the check run (a token without
// checks: write, a fork's read-only token), a commit status; and every
// problem no check run carries as a workflow command on Stdout, which the
// runner annotates without any permission.
func (c *Checks) Publish(ctx context.Context, sha string, rep CheckReport) Delivery {
	var d Delivery
	name := rep.Name
	if name == "" {
		name = "armoriq"
	}
	conclusion := "success"
	if rep.Failed {
		conclusion = "failure"
	}
	anns, annotated := annotations(rep)
	first := min(len(anns), MaxAnnotations)
	now := github.Timestamp{Time: time.Now()}
	run, _, err := c.Client.Checks.CreateCheckRun(ctx, c.Owner, c.Repo, github.CreateCheckRunOptions{
		Name:        name,
		HeadSHA:     sha,
		Status:      github.String("completed"),
		Conclusion:  &conclusion,
		CompletedAt: &now,
		Output:      c.output(rep, anns[:first]),
	})
	if err != nil {
		d.problem("creating check run", err)
		d.Commands = c.commands(rep.Diagnostics)
		d.How = c.status(ctx, sha, name, rep, &d)
		return d
	}
	d.How = "check-run"
	for i := MaxAnnotations; i < len(anns); i += MaxAnnotations {
		batch := anns[i:min(len(anns), i+MaxAnnotations)]
		if _, _, err := c.Client.Checks.UpdateCheckRun(ctx, c.Owner, c.Repo, run.GetID(), github.UpdateCheckRunOptions{
			Name:   name,
			Output: c.output(rep, batch),
		}); err != nil {
			d.problem(fmt.Sprintf("adding annotations %d-%d to check run %d", i+1, len(anns), run.GetID()), err)
			var rest []Diagnostic
			for _, j := range annotated[i:] {
				rest = append(rest, rep.Diagnostics[j])
			}
			d.Commands = c.commands(rest)
			break
		}
	}
	return d
}

func (c *Checks) output(rep CheckReport, anns []*github.CheckRunAnnotation) *github.CheckRunOutput {
	summary := rep.Summary
	if summary == "" {
		summary = rep.Title // GitHub requires one
	}
	out := &github.CheckRunOutput{
		Title:       github.String(cutBytes(rep.Title, 1024, "…")),
		Summary:     github.String(fitMarkdown(summary, MaxCheckRunText, rep.Where)),
		Annotations: anns,
	}
	if rep.Text != "" {
		out.Text = github.String(fitMarkdown(rep.Text, MaxCheckRunText, rep.Where))
	}
	return out
}

// status reports rep as a commit status, which a token without checks:
// write may still be allowed; it returns "status", or "" when refused.
func (c *Checks) status(ctx context.Context, sha, name string, rep CheckReport, d *Delivery) string {
	state := "success"
	if rep.Failed {
		state = "failure"
	}
	_, _, err := c.Client.Repositories.CreateStatus(ctx, c.Owner, c.Repo, sha, &github.RepoStatus{
		State: &state, Context: github.String(name), Description: github.String(truncate(rep.Title, MaxStatusDescription)),
	})
	if err != nil {
		d.problem("creating commit status", err)
		return ""
	}
	return "status"
}

// commands prints ds as workflow commands on Stdout and returns how many.
// The runner shows only MaxStepAnnotations of each level per step, so
// past that a notice says where the rest are.
func (c *Checks) commands(ds []Diagnostic) int {
	if c.Stdout == nil || len(ds) == 0 {
		return 0
	}
	errs, warns := 0, 0
	for _, d := range ds {
		fmt.Fprintln(c.Stdout, WorkflowCommand(d))
		if d.Severity == "warning" {
			warns++
		} else {
			errs++
		}
	}
	if errs > MaxStepAnnotations || warns > MaxStepAnnotations {
		fmt.Fprintf(c.Stdout, "::notice title=armoriq::%s\n", escapeData(fmt.Sprintf(
			"%s: GitHub shows %d of each level per step as annotations; all of them are in the log above and in the job summary.",
			plural(len(ds), "problem"), MaxStepAnnotations)))
	}
	return len(ds)
}

// WorkflowCommand formats d as a GitHub Actions workflow command
// (::error file=F,line=L,col=C,title=T::message) so the runner annotates
// the file. Data and properties are escaped as the runner requires.
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
	if d.Path != "" {
		props = append(props, "title="+escapeProp(cutBytes("armoriq: "+d.Path, MaxAnnotationTitle, "…")))
	}
	msg := d.Summary
	if d.Detail != "" {
		msg += "\n" + d.Detail
	}
	if len("armoriq: "+d.Path) > MaxAnnotationTitle {
		msg = "at " + d.Path + ":\n" + msg // the title holds only its start
	}
	cmd := "::" + level
	if len(props) > 0 {
		cmd += " " + strings.Join(props, ",")
	}
	return cmd + "::" + escapeData(fitPlain(msg, MaxAnnotationMessage, ""))
}

// EscapeData escapes s for the message of a workflow command.
func EscapeData(s string) string { return escapeData(s) }

func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func escapeProp(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// annotations turns rep's diagnostics into check run annotations, each
// text cut to GitHub's limit, and says which diagnostic each came from.
func annotations(rep CheckReport) ([]*github.CheckRunAnnotation, []int) {
	out := make([]*github.CheckRunAnnotation, 0, len(rep.Diagnostics))
	var from []int
	for i, d := range rep.Diagnostics {
		file, line := d.File, d.Line
		if file == "" {
			file, line = rep.DefaultFile, 1
		}
		if file == "" {
			continue // no file to attach it to: it stays in the summary
		}
		level := "failure"
		if d.Severity == "warning" {
			level = "warning"
		}
		line = max(line, 1) // GitHub requires a line
		msg := strings.TrimSpace(d.Summary + "\n" + d.Detail)
		if len(d.Path) > MaxAnnotationTitle {
			msg = "at " + d.Path + ":\n" + msg // the title holds only its start
		}
		a := &github.CheckRunAnnotation{
			Path:            github.String(file),
			StartLine:       github.Int(line),
			EndLine:         github.Int(line),
			AnnotationLevel: github.String(level),
			Message:         github.String(fitPlain(msg, MaxAnnotationMessage, rep.Where)),
		}
		if d.Path != "" {
			a.Title = github.String(cutBytes(d.Path, MaxAnnotationTitle, "…"))
		}
		if d.Col > 0 && d.Line > 0 { // columns only on single-line annotations
			a.StartColumn, a.EndColumn = github.Int(d.Col), github.Int(d.Col)
		}
		out = append(out, a)
		from = append(from, i)
	}
	return out, from
}

// CommentMarker is the hidden line that identifies armoriq's PR comment, so
// later pushes edit it instead of adding a new one.
const CommentMarker = "<!-- armoriq:diff -->"

// UpsertComment puts body (with the marker prepended) in the pull request's
// armoriq comment: it edits the one an earlier run left, looking through
// every page of comments, or creates it. It reports whether it created one.
func (c *Checks) UpsertComment(ctx context.Context, pr int, body string) (bool, error) {
	body = CommentMarker + "\n" + body
	if len(body) > MaxCommentBody {
		return false, fmt.Errorf("comment of %d bytes is over GitHub's limit of %d characters", len(body), MaxCommentBody)
	}
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

package reconciler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/armoriq/controlplane/compiler"
	"github.com/armoriq/controlplane/schema"
)

// CheckResult is what "armoriq check" found for one config file: the
// validate, compile and policy-test diagnostics (failed tests are errors at
// the test's position) and the change in effective access against a base
// revision.
type CheckResult struct {
	Path        string
	Diagnostics schema.Diagnostics
	Tests       int // policy tests run
	Failures    int // of which failed
	// Base is the revision diffed against ("" for none); Access is the diff,
	// nil when there is none, and BaseNote then says why.
	Base     string
	Access   *compiler.AccessDiff
	BaseNote string
}

// Check validates, compiles and tests the config at path, and diffs its
// effective access against the same file at base (a git revision of the
// repository holding path; "" for no diff). It runs the same code as
// "armoriq validate", "test" and "diff".
func Check(path, base string) *CheckResult {
	res := &CheckResult{Path: path, Base: base}
	cfg, diags := schema.LoadFile(path)
	res.Diagnostics = diags
	if cfg == nil || diags.HasErrors() {
		return res
	}
	if _, err := compiler.Compile(cfg, compiler.Options{}); err != nil {
		res.Diagnostics = append(res.Diagnostics, asDiagnostics(err)...)
		res.Diagnostics.Sort()
		return res
	}
	res.runTests(cfg)
	res.diff(cfg)
	res.Diagnostics.Sort()
	return res
}

// Failed reports whether the check fails: any error, a failed test included.
func (r *CheckResult) Failed() bool { return r.Diagnostics.HasErrors() }

func (r *CheckResult) runTests(cfg *schema.Config) {
	cases, ds := compiler.LoadTests(r.Path, cfg)
	r.Diagnostics = append(r.Diagnostics, ds...)
	if len(cases) == 0 {
		return
	}
	eng, err := compiler.Engine(cfg)
	if err != nil {
		r.Diagnostics = append(r.Diagnostics, asDiagnostics(err)...)
		return
	}
	for _, t := range compiler.RunTests(eng, cases) {
		r.Tests++
		if t.Passed() {
			continue
		}
		r.Failures++
		rule := t.Got.RuleID
		if rule == "" {
			rule = "no rule (default deny)"
		}
		r.Diagnostics = append(r.Diagnostics, schema.Diagnostic{
			Severity: schema.SeverityError, Pos: t.Test.Pos, Path: t.Path,
			Summary: fmt.Sprintf("test %s: %s calling %s: got %s, want %s (decided by %s)", t.ID, t.Test.User, t.Test.Tool.String(), t.Got.Effect, t.Test.Expect, rule),
			Detail:  t.Got.Reason,
		})
	}
}

func (r *CheckResult) diff(head *schema.Config) {
	if r.Base == "" {
		return
	}
	name := filepath.Base(r.Path)
	data, commit, _, err := compiler.ReadAtRevision(filepath.Dir(r.Path), r.Base, name)
	old := &schema.Config{Version: "v1"} // a file new at head: everything is gained
	switch {
	case err != nil && strings.Contains(err.Error(), "does not exist at"):
	case err != nil:
		r.BaseNote = fmt.Sprintf("no diff: %v", err)
		return
	default:
		var ds schema.Diagnostics
		old, ds = schema.Parse(short(r.Base)+":"+name, data)
		if old == nil || ds.HasErrors() {
			r.BaseNote = fmt.Sprintf("no diff: %s is invalid at %s", name, short(commit))
			return
		}
	}
	d, err := compiler.DiffConfigs(old, head, nil)
	if err != nil {
		r.BaseNote = fmt.Sprintf("no diff: %v", err)
		return
	}
	r.Access = d
}

func asDiagnostics(err error) schema.Diagnostics {
	var ds schema.Diagnostics
	if errors.As(err, &ds) {
		return ds
	}
	return schema.Diagnostics{{Severity: schema.SeverityError, Summary: err.Error()}}
}

// Title is the one-line summary: validity, tests passed, access changes.
func (r *CheckResult) Title() string {
	var parts []string
	if n := r.Diagnostics.Errors(); n > 0 {
		parts = append(parts, plural(n, "error"))
	} else {
		parts = append(parts, "valid")
	}
	if n := r.Diagnostics.Warnings(); n > 0 {
		parts = append(parts, plural(n, "warning"))
	}
	if r.Tests > 0 {
		parts = append(parts, fmt.Sprintf("%d/%d tests passed", r.Tests-r.Failures, r.Tests))
	}
	if r.Access != nil {
		parts = append(parts, plural(len(r.Access.Changes)+len(r.Access.Identity), "access change"))
	}
	return r.Path + ": " + strings.Join(parts, ", ")
}

// DiffText is the access diff in format text or markdown, or why there is none.
func (r *CheckResult) DiffText(format string) string {
	if why := r.noDiff(); why != "" {
		return why
	}
	var b strings.Builder
	if err := r.Access.Write(&b, format, short(r.Base), r.Path); err != nil {
		return "no diff: " + err.Error() + "\n"
	}
	return b.String()
}

func (r *CheckResult) noDiff() string {
	switch {
	case r.BaseNote != "":
		return r.BaseNote + "\n"
	case r.Access == nil:
		return "no diff: the config is invalid\n"
	}
	return ""
}

// Markdown is the PR comment and check run summary: the title, the access
// diff and the first 20 problems (all of them are annotated). It is not
// cut to any limit: PublishCheck does that.
func (r *CheckResult) Markdown() string { return r.markdown(20, compiler.MaxMarkdown) }

// FullMarkdown is the whole report, for the job summary: every problem and
// every row of the access diff.
func (r *CheckResult) FullMarkdown() string { return r.markdown(-1, MaxStepSummary) }

func (r *CheckResult) markdown(maxProblems, maxDiff int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**\n\n", strings.ReplaceAll(r.Title(), "*", `\*`))
	if r.Base != "" {
		if why := r.noDiff(); why != "" {
			b.WriteString(why)
		} else {
			b.WriteString(r.Access.Markdown(short(r.Base), r.Path, maxDiff))
		}
	}
	if n := len(r.Diagnostics); n > 0 {
		fmt.Fprintf(&b, "\n%s, annotated on the files:\n\n", plural(n, "problem"))
		for i, d := range r.Diagnostics {
			if i == maxProblems {
				fmt.Fprintf(&b, "- … and %d more, in the annotations and the job summary\n", n-maxProblems)
				break
			}
			fmt.Fprintf(&b, "- `%s`\n", strings.ReplaceAll(d.String(), "`", "'"))
		}
	}
	return b.String()
}

// Where says where the whole report of a workflow run can be read, for
// the notes on texts cut to GitHub's limits.
func (ev *GitHubEvent) Where() string {
	if ev.RunURL != "" {
		return fmt.Sprintf("the job summary of [this workflow run](%s)", ev.RunURL)
	}
	return "the job summary of this workflow run"
}

// StepSummary is the report for $GITHUB_STEP_SUMMARY: the whole report cut
// to the runner's 1 MiB.
func (r *CheckResult) StepSummary() string {
	return fitMarkdown(r.FullMarkdown(), MaxStepSummary, "")
}

// PublishCheck reports r to GitHub for the workflow run ev: the check run
// (or its fallbacks) on ev.SHA and, in a pull request, the armoriq comment.
// root is the repository's root (GITHUB_WORKSPACE), against which
// annotation paths are made repository-relative. Reporting is best effort:
// what GitHub refused is in the Delivery's Problems, never an error.
func PublishCheck(ctx context.Context, checks *Checks, ev *GitHubEvent, r *CheckResult, root string) Delivery {
	ds := repoDiagnostics(r, root)
	config, _ := RepoPath(root, r.Path)
	where := ev.Where()
	d := checks.Publish(ctx, ev.SHA, CheckReport{
		Title: r.Title(), Summary: r.Markdown(), Failed: r.Failed(),
		Diagnostics: ds, DefaultFile: config, Where: where,
	})
	if ev.PR == 0 {
		return d
	}
	body := fitMarkdown(r.Markdown(), MaxCommentBody-len(CommentMarker)-1, where)
	created, err := checks.UpsertComment(ctx, ev.PR, body)
	switch {
	case err != nil:
		d.problem(fmt.Sprintf("commenting on pull request #%d", ev.PR), err)
	case created:
		d.Comment = "created"
	default:
		d.Comment = "updated"
	}
	return d
}

// PublishCommands reports r through workflow commands on stdout only, for
// a run that cannot use GitHub's API (no token): the runner annotates them
// without any permission. It returns how many it printed.
func PublishCommands(stdout io.Writer, r *CheckResult, root string) int {
	return (&Checks{Stdout: stdout}).commands(repoDiagnostics(r, root))
}

// repoDiagnostics are r's diagnostics with repository-relative files.
func repoDiagnostics(r *CheckResult, root string) []Diagnostic {
	ds := FromSchema(r.Diagnostics)
	for i := range ds {
		ds[i].File, _ = RepoPath(root, ds[i].File)
	}
	return ds
}

// PrintCheck writes the findings for a terminal: diagnostics on stderr
// (or, with workflow, as ::error commands on stdout, their files relative to
// the repository's root), then the title and the diff on stdout.
func PrintCheck(stdout, stderr io.Writer, r *CheckResult, workflow bool, root string) {
	for _, d := range r.Diagnostics {
		if workflow {
			wd := FromSchema(schema.Diagnostics{d})[0]
			wd.File, _ = RepoPath(root, wd.File)
			fmt.Fprintln(stdout, WorkflowCommand(wd))
		} else {
			fmt.Fprintln(stderr, d.String())
		}
	}
	fmt.Fprintln(stdout, r.Title())
	if r.Base != "" {
		fmt.Fprint(stdout, r.DiffText("text"))
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

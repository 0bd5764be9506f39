package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/compiler"
	"github.com/armoriq/controlplane/reconciler"
	"github.com/armoriq/controlplane/schema"
)

func checkCommand() *command {
	var (
		base, format string
		gh           bool
		appID        int64
		appKey       string
	)
	return &command{
		Use:   "check [PATH] [--base REV] [--github]",
		Short: "Validate, test and diff armoriq.yaml for a pull request",
		Long: `check runs, on PATH (default: armoriq.yaml, armoriq.yml or armoriq.hcl here):
validate (schema and rules), the policy tests (tests[] and *_test.yaml), and
the diff against the same file at --base (a branch, tag or commit; in a pull
request, the PR's base commit).

With --github it reports to GitHub from a workflow run: a check run named
"armoriq" on the PR's head commit with every problem annotated at
file:line:col (in batches of 50, the API's limit), or, when the token may
not create check runs, a commit status plus ::error lines; and, in a pull
request, one comment holding the diff, edited in place on later pushes. It
reads GITHUB_REPOSITORY, GITHUB_SHA, GITHUB_EVENT_PATH and GITHUB_API_URL,
and authenticates with GITHUB_TOKEN or a GitHub App (--github-app-id and
--github-app-key).

--format github prints ::error workflow commands instead of plain lines.

Exit status: 0 valid and every test passed, 1 invalid or a test failed (or
reporting to GitHub failed), 2 usage error or unreadable file.`,
		Example: `  armoriq check --base origin/main
  armoriq check --github    # in a pull_request workflow`,
		MaxArgs: 1,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&base, "base", "", "git revision to diff against (default: the PR's base with --github)")
			fs.BoolVar(&gh, "github", false, "report as a GitHub check run and PR comment")
			fs.StringVar(&format, "format", "text", "output format: text or github (workflow commands)")
			fs.Int64Var(&appID, "github-app-id", 0, "authenticate as this GitHub App instead of GITHUB_TOKEN")
			fs.StringVar(&appKey, "github-app-key", "", "the GitHub App's private key (PEM)")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if format != "text" && format != "github" {
				return usageErrorf("--format must be text or github, got %q", format)
			}
			path, err := configPath(args)
			if err != nil {
				return err
			}
			var ev *reconciler.GitHubEvent
			if gh {
				if ev, err = reconciler.ReadGitHubEvent(e.Getenv); err != nil {
					return usageErrorf("--github: %v", err)
				}
				if base == "" {
					base = ev.BaseSHA
				}
			}
			res := runCheck(path, base)
			if _, err := os.Stat(path); err != nil {
				fmt.Fprintln(e.Stderr, res.diags[0].String())
				return silentExit(exitUsage)
			}
			res.print(e, format == "github" && !gh)
			if gh {
				if err := publishCheck(ctx, e, ev, res, appID, appKey); err != nil {
					return err
				}
			}
			if res.failed() {
				return silentExit(exitFailure)
			}
			return nil
		},
	}
}

// checkResult is what check found.
type checkResult struct {
	path     string
	diags    schema.Diagnostics // validate, compile and failed tests
	tests    int
	failures int
	base     string // the revision diffed against; "" when none
	baseNote string // why there is no diff
	access   *compiler.AccessDiff
	rules    int
}

func (r *checkResult) failed() bool { return r.diags.HasErrors() }

func runCheck(path, base string) *checkResult {
	res := &checkResult{path: path, base: base}
	cfg, diags := schema.LoadFile(path)
	res.diags = diags
	if cfg == nil || diags.HasErrors() {
		return res
	}
	b, err := compiler.Compile(cfg, compiler.Options{})
	if err != nil {
		res.diags = append(res.diags, asDiagnostics(err)...)
		return res
	}
	res.rules = len(b.Policy.Rules)
	res.runTests(path, cfg)
	res.diff(path, cfg)
	res.diags.Sort()
	return res
}

func (r *checkResult) runTests(path string, cfg *schema.Config) {
	cases, ds := compiler.LoadTests(path, cfg)
	r.diags = append(r.diags, ds...)
	if len(cases) == 0 {
		return
	}
	eng, err := compiler.Engine(cfg)
	if err != nil {
		r.diags = append(r.diags, asDiagnostics(err)...)
		return
	}
	for _, t := range compiler.RunTests(eng, cases) {
		r.tests++
		if t.Passed() {
			continue
		}
		r.failures++
		rule := t.Got.RuleID
		if rule == "" {
			rule = "no rule (default deny)"
		}
		r.diags = append(r.diags, schema.Diagnostic{
			Severity: schema.SeverityError, Pos: t.Test.Pos, Path: t.Path,
			Summary: fmt.Sprintf("test %s: %s calling %s: got %s, want %s (decided by %s)", t.ID, t.Test.User, t.Test.Tool.String(), t.Got.Effect, t.Test.Expect, rule),
			Detail:  t.Got.Reason,
		})
	}
}

// diff computes the change in effective access from the config at base
// to the one on disk, with the same engine as 'armoriq diff'.
func (r *checkResult) diff(path string, head *schema.Config) {
	if r.base == "" {
		return
	}
	data, commit, _, err := compiler.ReadAtRevision(filepath.Dir(path), r.base, filepath.Base(path))
	old := &schema.Config{Version: "v1"} // a new file: everything is gained
	switch {
	case err != nil && strings.Contains(err.Error(), "does not exist at"):
	case err != nil:
		r.baseNote = fmt.Sprintf("no diff: %v", err)
		return
	default:
		var ds schema.Diagnostics
		old, ds = schema.Parse(r.base+":"+filepath.Base(path), data)
		if old == nil || ds.HasErrors() {
			r.baseNote = fmt.Sprintf("no diff: %s is invalid at %s", filepath.Base(path), shortRev(commit))
			return
		}
	}
	d, err := compiler.DiffConfigs(old, head, nil)
	if err != nil {
		r.baseNote = fmt.Sprintf("no diff: %v", err)
		return
	}
	r.access = d
}

func asDiagnostics(err error) schema.Diagnostics {
	if ds, ok := err.(schema.Diagnostics); ok {
		return ds
	}
	return schema.Diagnostics{{Severity: schema.SeverityError, Summary: err.Error()}}
}

// print writes the findings: diagnostics on stderr (or as workflow
// commands on stdout), the summary and the diff on stdout.
func (r *checkResult) print(e *env, workflow bool) {
	for _, d := range r.diags {
		if workflow {
			fmt.Fprintln(e.Stdout, reconciler.WorkflowCommand(toStatusDiag(d)))
		} else {
			fmt.Fprintln(e.Stderr, d.String())
		}
	}
	fmt.Fprintln(e.Stdout, r.title())
	if r.base != "" {
		fmt.Fprint(e.Stdout, r.diffText("text"))
	}
}

func (r *checkResult) title() string {
	var parts []string
	if n := r.diags.Errors(); n > 0 {
		parts = append(parts, plural(n, "error"))
	} else {
		parts = append(parts, "valid")
	}
	if n := r.diags.Warnings(); n > 0 {
		parts = append(parts, plural(n, "warning"))
	}
	if r.tests > 0 {
		parts = append(parts, fmt.Sprintf("%d/%d tests passed", r.tests-r.failures, r.tests))
	}
	if r.access != nil {
		parts = append(parts, plural(len(r.access.Changes), "access change"))
	}
	return r.path + ": " + strings.Join(parts, ", ")
}

// diffText is the access diff in format text or markdown.
func (r *checkResult) diffText(format string) string {
	switch {
	case r.baseNote != "":
		return r.baseNote + "\n"
	case r.access == nil:
		return "no diff: the config is invalid\n"
	}
	var b strings.Builder
	if err := r.access.Write(&b, format, shortRev(r.base), r.path); err != nil {
		return "no diff: " + err.Error() + "\n"
	}
	return b.String()
}

func (r *checkResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**\n\n", strings.ReplaceAll(r.title(), "*", "\\*"))
	if r.base != "" {
		b.WriteString(r.diffText("markdown"))
	}
	if n := len(r.diags); n > 0 {
		fmt.Fprintf(&b, "\n%d problem(s), annotated on the files:\n\n", n)
		for i, d := range r.diags {
			if i == 20 {
				fmt.Fprintf(&b, "- … and %d more\n", n-20)
				break
			}
			fmt.Fprintf(&b, "- `%s`\n", strings.ReplaceAll(d.String(), "`", "'"))
		}
	}
	return b.String()
}

func toStatusDiag(d schema.Diagnostic) reconciler.Diagnostic {
	return reconciler.FromSchema(schema.Diagnostics{d})[0]
}

func publishCheck(ctx context.Context, e *env, ev *reconciler.GitHubEvent, r *checkResult, appID int64, appKey string) error {
	auth := reconciler.GitHubAuth{Token: e.Getenv("GITHUB_TOKEN"), APIURL: ev.APIURL, AppID: appID}
	if appID != 0 {
		pem, err := os.ReadFile(appKey)
		if err != nil {
			return usageErrorf("--github-app-key: %v", err)
		}
		auth.AppKeyPEM = pem
	}
	client, err := reconciler.NewGitHubClient(ctx, auth, ev.Owner, ev.Repo)
	if err != nil {
		return usageErrorf("--github: %v (set GITHUB_TOKEN, or --github-app-id and --github-app-key)", err)
	}
	var ds []reconciler.Diagnostic
	for _, d := range r.diags {
		sd := toStatusDiag(d)
		sd.File = filepath.ToSlash(displayPath(sd.File))
		ds = append(ds, sd)
	}
	checks := &reconciler.Checks{Client: client, Owner: ev.Owner, Repo: ev.Repo, Stdout: e.Stdout}
	how, err := checks.Publish(ctx, ev.SHA, reconciler.CheckReport{
		Title: r.title(), Summary: r.markdown(), Failed: r.failed(), Diagnostics: ds,
	})
	if err != nil {
		return fmt.Errorf("reporting to GitHub: %v", err)
	}
	fmt.Fprintf(e.Stderr, "reported to GitHub as a %s on %s\n", how, shortRev(ev.SHA))
	if ev.PR != 0 {
		created, err := checks.UpsertComment(ctx, ev.PR, r.markdown())
		if err != nil {
			return fmt.Errorf("commenting on the pull request: %v", err)
		}
		verb := "updated"
		if created {
			verb = "created"
		}
		fmt.Fprintf(e.Stderr, "%s the armoriq comment on #%d\n", verb, ev.PR)
	}
	return nil
}

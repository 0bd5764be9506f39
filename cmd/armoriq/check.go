package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/reconciler"
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

With --github it reports to GitHub from a workflow run: the whole report in
the job summary ($GITHUB_STEP_SUMMARY); a check run named "armoriq" on the
PR's head commit with every problem annotated at file:line:col (in batches
of 50, the API's limit); in a pull request, one comment holding the diff,
edited in place on later pushes. Reporting is best effort: when the token
may not create check runs (a pull request from a fork gets a read-only
token), it tries a commit status and prints every problem as a workflow
command (::error file=...), which the runner annotates without any
permission; what GitHub refused is a warning, never the verdict. Texts are
cut to GitHub's limits with a note saying where the whole report is. It
reads GITHUB_REPOSITORY, GITHUB_SHA, GITHUB_EVENT_PATH, GITHUB_API_URL,
GITHUB_WORKSPACE (annotation paths are relative to it), GITHUB_SERVER_URL
and GITHUB_RUN_ID, and authenticates with GITHUB_TOKEN or a GitHub App
(--github-app-id and --github-app-key).

--format github prints ::error workflow commands instead of plain lines.

Exit status: 0 valid and every test passed, 1 invalid or a test failed
(whatever GitHub accepted), 2 usage error or unreadable file.`,
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
			res := reconciler.Check(path, base)
			if res.Diagnostics.IsNotReadable() {
				fmt.Fprintln(e.Stderr, res.Diagnostics[0].String())
				return silentExit(exitUsage)
			}
			reconciler.PrintCheck(e.Stdout, e.Stderr, res, format == "github" && !gh, e.Getenv("GITHUB_WORKSPACE"))
			if gh {
				if p := e.Getenv("GITHUB_STEP_SUMMARY"); p != "" {
					if err := appendStepSummary(p, res.StepSummary()); err != nil {
						fmt.Fprintf(e.Stderr, "warning: job summary: %v\n", err)
					}
				}
				if err := publishCheck(ctx, e, ev, res, appID, appKey); err != nil {
					return err
				}
			}
			if res.Failed() {
				return silentExit(exitFailure)
			}
			return nil
		},
	}
}

func publishCheck(ctx context.Context, e *env, ev *reconciler.GitHubEvent, r *reconciler.CheckResult, appID int64, appKey string) error {
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
		// Best effort here too: without a token the problems still reach
		// the runner as workflow commands, and the verdict stands.
		p := fmt.Sprintf("no GitHub API access: %v (set GITHUB_TOKEN, or --github-app-id and --github-app-key)", err)
		fmt.Fprintf(e.Stderr, "warning: %s\n", p)
		fmt.Fprintf(e.Stdout, "::warning title=armoriq could not report to GitHub::%s\n", reconciler.EscapeData(p))
		if n := reconciler.PublishCommands(e.Stdout, r, e.Getenv("GITHUB_WORKSPACE")); n > 0 {
			fmt.Fprintf(e.Stderr, "printed %d problems as workflow commands for the runner to annotate\n", n)
		}
		return nil
	}
	checks := &reconciler.Checks{Client: client, Owner: ev.Owner, Repo: ev.Repo, Stdout: e.Stdout}
	d := reconciler.PublishCheck(ctx, checks, ev, r, e.Getenv("GITHUB_WORKSPACE"))
	switch d.How {
	case "":
		fmt.Fprintf(e.Stderr, "GitHub took neither a check run nor a commit status on %s\n", shortRev(ev.SHA))
	default:
		fmt.Fprintf(e.Stderr, "reported to GitHub as a %s on %s\n", d.How, shortRev(ev.SHA))
	}
	if d.Commands > 0 {
		fmt.Fprintf(e.Stderr, "printed %d problems as workflow commands for the runner to annotate\n", d.Commands)
	}
	if d.Comment != "" {
		fmt.Fprintf(e.Stderr, "%s the armoriq comment on #%d\n", d.Comment, ev.PR)
	}
	for _, p := range d.Problems {
		// Best effort: a warning in the log and on the run, not the verdict.
		fmt.Fprintf(e.Stderr, "warning: %s\n", p)
		fmt.Fprintf(e.Stdout, "::warning title=armoriq could not report to GitHub::%s\n", reconciler.EscapeData(p))
	}
	return nil
}

// appendStepSummary adds text to the workflow's job summary; a failure only
// costs the summary.
func appendStepSummary(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// annotationFile is p as GitHub attaches annotations to it: a clean path
// relative to the repository root (root, default the working directory),
// so "./armoriq.yaml" is "armoriq.yaml". A path outside the root is shown
// as displayPath shows it.
func annotationFile(root, p string) string {
	if rel, ok := reconciler.RepoPath(root, p); ok {
		return rel
	}
	return displayPath(p)
}

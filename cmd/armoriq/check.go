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

With --github it reports to GitHub from a workflow run: a check run named
"armoriq" on the PR's head commit with every problem annotated at
file:line:col (in batches of 50, the API's limit), or, when the token may
not create check runs, a commit status plus ::error lines; in a pull
request, one comment holding the diff, edited in place on later pushes; and
the same report in the job summary ($GITHUB_STEP_SUMMARY). It
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
			res := reconciler.Check(path, base)
			if res.Diagnostics.IsNotReadable() {
				fmt.Fprintln(e.Stderr, res.Diagnostics[0].String())
				return silentExit(exitUsage)
			}
			reconciler.PrintCheck(e.Stdout, e.Stderr, res, format == "github" && !gh)
			if gh {
				if p := e.Getenv("GITHUB_STEP_SUMMARY"); p != "" {
					appendStepSummary(p, res.Markdown())
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
		return usageErrorf("--github: %v (set GITHUB_TOKEN, or --github-app-id and --github-app-key)", err)
	}
	checks := &reconciler.Checks{Client: client, Owner: ev.Owner, Repo: ev.Repo, Stdout: e.Stdout}
	how, created, err := reconciler.PublishCheck(ctx, checks, ev, r, displayPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stderr, "reported to GitHub as a %s on %s\n", how, shortRev(ev.SHA))
	if ev.PR != 0 {
		verb := "updated"
		if created {
			verb = "created"
		}
		fmt.Fprintf(e.Stderr, "%s the armoriq comment on #%d\n", verb, ev.PR)
	}
	return nil
}

// appendStepSummary adds text to the workflow's job summary; a failure only costs
// the summary.
func appendStepSummary(path, text string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	f.WriteString(text + "\n")
}

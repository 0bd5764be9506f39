package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/compiler"
	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/schema"
)

func testCommand() *command {
	var (
		format, run, at string
		verbose         bool
	)
	return &command{
		Use:   "test [PATH]",
		Short: "Run the policy test cases of armoriq.yaml",
		Long: `test compiles PATH (default: armoriq.yaml, armoriq.yml or armoriq.hcl in the
current directory) and decides each of its tests[] cases, plus those of the
*_test.yaml, *_test.yml and *_test.hcl files beside it (files holding only a
tests: list), with the same engine the gateway runs. Each case is
{name, user, groups, agent, tool: server/tool, args, expect: allow|deny|hold}.
Conditions over time see the current time, or --time.

Each failing case is printed with its file:line:col, the expected and the
actual decision and the rule that decided; then "ok N cases" or
"FAIL: F of N cases failed".

Exit status: 0 all cases pass, 1 a case failed or the config is invalid,
2 usage error or unreadable file.`,
		Example: `  armoriq test
  armoriq test policy/armoriq.yaml --run 'admins|tests\[3\]'
  armoriq test --format github
  armoriq test --time 2026-11-21T10:00:00Z --run weekend`,
		MaxArgs: 1,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&format, "format", "text", "output format: text, json or github (workflow annotations)")
			fs.StringVar(&run, "run", "", "run only the cases whose name (or tests[i] path) matches this regular expression")
			fs.BoolVarP(&verbose, "verbose", "v", false, "with --format text, also print each passing case")
			fs.StringVar(&at, "time", "", "decide as of this RFC 3339 time (for conditions over time.*); default now")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			switch format {
			case "text", "json", "github":
			default:
				return usageErrorf("--format must be text, json or github, got %q", format)
			}
			var re *regexp.Regexp
			if run != "" {
				var err error
				if re, err = regexp.Compile(run); err != nil {
					return usageErrorf("--run: %v", err)
				}
			}
			var when time.Time
			if at != "" {
				var err error
				if when, err = time.Parse(time.RFC3339, at); err != nil {
					return usageErrorf("--time: want an RFC 3339 time like 2026-01-02T15:04:05Z: %v", err)
				}
			}
			path, err := testConfigPath(args)
			if err != nil {
				return err
			}
			// Problems in the config or the test files: annotations in
			// GitHub, file:line:col lines otherwise.
			printDiags := func(ds schema.Diagnostics) {
				if format != "github" {
					printDiagnostics(e, ds)
					return
				}
				for _, d := range ds {
					fmt.Fprintln(e.Stdout, githubAnnotation(d, e.Getenv("GITHUB_WORKSPACE")))
				}
			}
			cfg, diags := schema.LoadFile(path)
			if diags.IsNotReadable() {
				printDiagnostics(e, diags)
				return silentExit(exitUsage)
			}
			if cfg == nil || diags.HasErrors() {
				printDiags(diags)
				return silentExit(exitFailure)
			}
			eng, err := compiler.Engine(cfg)
			if err != nil {
				var ds schema.Diagnostics
				if errors.As(err, &ds) {
					printDiags(ds)
					return silentExit(exitFailure)
				}
				return err
			}
			cases, tdiags := compiler.LoadTests(path, cfg)
			if tdiags.HasErrors() {
				printDiags(tdiags)
				return silentExit(exitFailure)
			}
			// Warnings (a case naming an undeclared server) do not fail
			// the run; JSON output keeps stdout for the results.
			if w := warnings(append(diags, tdiags...)); len(w) > 0 {
				if format == "json" {
					printDiagnostics(e, w)
				} else {
					printDiags(w)
				}
			}
			cases = compiler.FilterTests(cases, re)
			results := compiler.RunTestsAt(eng, cases, when)
			failed := 0
			for _, r := range results {
				if !r.Passed() {
					failed++
				}
			}
			if err := printTestResults(e.Stdout, format, results, failed, verbose, e.Getenv("GITHUB_WORKSPACE")); err != nil {
				return err
			}
			if failed > 0 {
				return silentExit(exitFailure)
			}
			return nil
		},
	}
}

// warnings keeps the warnings of ds.
func warnings(ds schema.Diagnostics) schema.Diagnostics {
	var w schema.Diagnostics
	for _, d := range ds {
		if d.Severity == schema.SeverityWarning {
			w = append(w, d)
		}
	}
	return w
}

// testConfigPath is the config file to test: the argument (a file, or a
// directory holding the default file) or the default file here.
func testConfigPath(args []string) (string, error) {
	if len(args) == 1 {
		if p, err := schema.FindDefault(args[0]); err == nil {
			return filepath.Clean(p), nil
		}
	}
	return configPath(args)
}

func printTestResults(w io.Writer, format string, results []compiler.TestResult, failed int, verbose bool, root string) error {
	switch format {
	case "json":
		type jresult struct {
			Name    string `json:"name"`
			Path    string `json:"path"`
			File    string `json:"file"`
			Line    int    `json:"line,omitempty"`
			Col     int    `json:"col,omitempty"`
			User    string `json:"user"`
			Tool    string `json:"tool"`
			Expect  string `json:"expect"`
			Got     string `json:"got"`
			Rule    string `json:"rule,omitempty"`
			RulePos string `json:"rule_pos,omitempty"`
			Reason  string `json:"reason"`
			// WhenError: the deciding rule's condition could not be
			// evaluated, so it denied (fail closed).
			WhenError string `json:"when_error,omitempty"`
			Pass      bool   `json:"pass"`
		}
		out := struct {
			OK      bool      `json:"ok"`
			Cases   int       `json:"cases"`
			Failed  int       `json:"failed"`
			Results []jresult `json:"results"`
		}{OK: failed == 0, Cases: len(results), Failed: failed, Results: []jresult{}}
		for _, r := range results {
			jr := jresult{
				Name: r.ID, Path: r.Path, File: displayPath(r.Test.Pos.File), Line: r.Test.Pos.Line, Col: r.Test.Pos.Col,
				User: r.Test.User, Tool: r.Test.Tool.String(), Expect: r.Test.Expect, Got: string(r.Got.Effect),
				Rule: r.Got.RuleID, Reason: r.Got.Reason, WhenError: r.Got.WhenError, Pass: r.Passed(),
			}
			if r.Got.RuleID != "" {
				jr.RulePos = rulePos(r.Got)
			}
			out.Results = append(out.Results, jr)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "github":
		for _, r := range results {
			if r.Passed() {
				continue
			}
			props := []string{"file=" + ghProp(annotationFile(root, r.Test.Pos.File))}
			if r.Test.Pos.Line > 0 {
				props = append(props, fmt.Sprintf("line=%d", r.Test.Pos.Line), fmt.Sprintf("col=%d", r.Test.Pos.Col))
			}
			props = append(props, "title="+ghProp("armoriq test: "+r.ID))
			fmt.Fprintf(w, "::error %s::%s\n", strings.Join(props, ","), ghData(failureText(r)))
		}
	default:
		for _, r := range results {
			switch {
			case !r.Passed():
				fmt.Fprintf(w, "FAIL %s: %s\n", casePos(r), failureText(r))
			case verbose:
				fmt.Fprintf(w, "PASS %s: %s\n", casePos(r), passText(r))
			}
		}
	}
	if failed > 0 {
		fmt.Fprintf(w, "FAIL: %d of %s failed\n", failed, plural(len(results), "case"))
	} else {
		fmt.Fprintf(w, "ok %s\n", plural(len(results), "case"))
	}
	return nil
}

func casePos(r compiler.TestResult) string {
	p := r.Test.Pos
	p.File = displayPath(p.File)
	return p.String()
}

func rulePos(d policy.Decision) string {
	p := d.Pos
	p.File = displayPath(p.File)
	return policy.FormatPos(p)
}

// passText says what decided a passing case.
func passText(r compiler.TestResult) string {
	by := "no rule matched"
	if r.Got.RuleID != "" {
		by = "rule " + r.Got.RuleID + " (" + rulePos(r.Got) + ")"
	}
	return fmt.Sprintf("%s: %s for %s: %s by %s", r.ID, r.Test.Tool.String(), orAnonymous(r.Test.User), r.Got.Effect, by) + whenFailure(r.Got)
}

// whenFailure says why a deny or hold rule denied when its condition
// could not be evaluated, or "".
func whenFailure(d policy.Decision) string {
	if d.WhenError == "" {
		return ""
	}
	return ": when condition failed: " + d.WhenError + " (fail closed)"
}

func orAnonymous(user string) string {
	if user == "" {
		return "anonymous"
	}
	return user
}

// failureText says what a failed case expected and what decided instead.
func failureText(r compiler.TestResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s for %s: expected %s, got %s", r.ID, r.Test.Tool.String(), orAnonymous(r.Test.User), r.Test.Expect, r.Got.Effect)
	if string(r.Got.Effect) == r.Test.Expect && r.Test.Approvers != nil {
		got := "any admin"
		if len(r.Got.Approvers) > 0 {
			got = strings.Join(r.Got.Approvers, ", ")
		}
		fmt.Fprintf(&b, " approvable by [%s], expected approvers [%s]", got, strings.Join(r.Test.Approvers, ", "))
	}
	if r.Got.RuleID != "" {
		fmt.Fprintf(&b, " by rule %s (%s)", r.Got.RuleID, rulePos(r.Got))
	} else {
		b.WriteString(" (no rule matched)")
	}
	// A rule's own reason, or why no rule matched; not the default
	// "denied by rule ..." that repeats the rule.
	if r.Got.WhenError != "" {
		b.WriteString(whenFailure(r.Got))
	} else if r.Got.Reason != "" && !strings.Contains(r.Got.Reason, "rule "+r.Got.RuleID+" (") {
		fmt.Fprintf(&b, ": %s", r.Got.Reason)
	}
	return b.String()
}

package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/armoriq/controlplane/reconciler/githubtest"
	"github.com/rogpeppe/go-internal/testscript"
)

// fakeGitHubKey finds a script's *fakeGitHubSlot among its testscript values
// (set up in TestScript's Setup), so parallel scripts never share a fake.
type fakeGitHubKey struct{}

type fakeGitHubSlot struct{ f *githubtest.Server }

// cmdFakeGitHub starts a fake GitHub REST API (repository o/r, pull request
// 7) and puts its URL in an environment variable: fakegithub VAR [deny=W,...],
// where each W (checks, statuses, comments) is a write the token may not do,
// answered 403 as GitHub does. Its requests are read with githubrequests.
func cmdFakeGitHub(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: fakegithub VAR [deny=checks,statuses,comments]")
	}
	f := githubtest.NewServer()
	if len(args) == 2 {
		list, ok := strings.CutPrefix(args[1], "deny=")
		if !ok {
			ts.Fatalf("fakegithub: %q: want deny=checks,statuses,comments", args[1])
		}
		for _, w := range strings.Split(list, ",") {
			switch w {
			case "checks":
				f.Perms.Checks = false
			case "statuses":
				f.Perms.Statuses = false
			case "comments":
				f.Perms.PullRequests = false
			default:
				ts.Fatalf("fakegithub: unknown permission %q: want checks, statuses or comments", w)
			}
		}
	}
	ts.Defer(f.Close)
	ts.Setenv(args[0], f.URL)
	ts.Value(fakeGitHubKey{}).(*fakeGitHubSlot).f = f
}

// cmdGitHubRequests writes the requests the script's fake received since
// the last call, one line each, to FILE: githubrequests FILE.
func cmdGitHubRequests(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: githubrequests FILE")
	}
	f := ts.Value(fakeGitHubKey{}).(*fakeGitHubSlot).f
	if f == nil {
		ts.Fatalf("githubrequests: start a fake with fakegithub first")
	}
	var b strings.Builder
	for _, r := range f.Take() {
		fmt.Fprintf(&b, "%s %s %d", r.Method, r.Path, r.Status)
		if out, ok := r.Body["output"].(map[string]any); ok {
			anns, _ := out["annotations"].([]any)
			fmt.Fprintf(&b, " annotations=%d", len(anns))
			for _, a := range anns {
				m := a.(map[string]any)
				fmt.Fprintf(&b, " [%v:%v:%v %v", m["path"], m["start_line"], m["start_column"], m["annotation_level"])
				if t, ok := m["title"].(string); ok {
					fmt.Fprintf(&b, " title=%d", utf8.RuneCountInString(t))
				}
				b.WriteByte(']')
			}
			fmt.Fprintf(&b, " summary=%d", utf8.RuneCountInString(fmt.Sprint(out["summary"])))
			if strings.Contains(fmt.Sprint(out["summary"]), cutNote) {
				b.WriteString(" (cut)")
			}
		}
		for _, k := range sortedKeys(r.Body) {
			switch k {
			case "conclusion", "state", "context":
				fmt.Fprintf(&b, " %s=%v", k, r.Body[k])
			case "body":
				first, _, _ := strings.Cut(fmt.Sprint(r.Body[k]), "\n")
				fmt.Fprintf(&b, " body=%q length=%d", first, utf8.RuneCountInString(fmt.Sprint(r.Body[k])))
				if strings.Contains(fmt.Sprint(r.Body[k]), cutNote) {
					b.WriteString(" (cut)")
				}
			}
		}
		b.WriteByte('\n')
	}
	if err := os.WriteFile(ts.MkAbs(args[0]), []byte(b.String()), 0o644); err != nil {
		ts.Fatalf("%v", err)
	}
}

// cutNote starts the note on a text cut to one of GitHub's limits.
const cutNote = "Cut to fit GitHub's limit"

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

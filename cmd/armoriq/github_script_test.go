package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/armoriq/controlplane/reconciler"
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

// cmdGitHook posts a GitHub push event for refs/heads/main of repository
// REPO (owner/name), signed with SECRET, to URL/hook, and checks the
// answer's status: githook URL SECRET REPO STATUS. The answer's body goes
// to stdout.
func cmdGitHook(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: githook URL SECRET REPO STATUS")
	}
	owner, name, _ := strings.Cut(args[2], "/")
	body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","repository":{"name":%q,"full_name":%q,"owner":{"login":%q}},"sender":{"login":"octocat"}}`, name, args[2], owner))
	req, err := http.NewRequest(http.MethodPost, strings.TrimRight(args[0], "/")+"/hook", bytes.NewReader(body))
	ts.Check(err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", reconciler.Sign([]byte(args[1]), body))
	resp, err := http.DefaultClient.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	ts.Stdout().Write(out)
	if got := fmt.Sprint(resp.StatusCode); got != args[3] {
		ts.Fatalf("githook %s: status %s, want %s (%s)", args[2], got, args[3], bytes.TrimSpace(out))
	}
}

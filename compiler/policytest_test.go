package compiler

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"

	"github.com/armoriq/controlplane/schema"
)

// extract writes the files of a txtar archive into a new temp directory.
func extract(t *testing.T, archive string) string {
	t.Helper()
	ar, err := txtar.ParseFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range ar.Files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRunTests(t *testing.T) {
	dir := extract(t, filepath.Join("testdata", "policytest", "basic.txtar"))
	path := filepath.Join(dir, "armoriq.yaml")
	cfg, ds := schema.LoadFile(path)
	if ds.HasErrors() {
		t.Fatal(ds)
	}
	e, err := Engine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cases, ds := LoadTests(path, cfg)
	if ds.HasErrors() {
		t.Fatalf("LoadTests: %v", ds)
	}
	type want struct {
		id, file   string
		line, col  int
		pass       bool
		rule       string
		reasonPart string
	}
	wants := []want{
		{"engineers list issues", "armoriq.yaml", 19, 5, true, "eng-github", ""},
		{"wrong expectation", "armoriq.yaml", 23, 5, false, "policy.deny[0]", ""},
		{"tests[2]", "armoriq.yaml", 27, 5, true, "", "no rule allows github/list_issues for outsider@else.org"},
		{"push to a branch", "more_test.yaml", 2, 5, true, "eng-github", ""},
		{"push without a branch", "more_test.yaml", 7, 5, false, "no-main", "fail closed"},
	}
	results := RunTests(e, cases)
	if len(results) != len(wants) {
		t.Fatalf("RunTests: %d results, want %d", len(results), len(wants))
	}
	for i, r := range results {
		w := wants[i]
		p := r.Test.Pos
		if r.ID != w.id || filepath.Base(p.File) != w.file || p.Line != w.line || p.Col != w.col || r.Passed() != w.pass ||
			r.Got.RuleID != w.rule || !strings.Contains(r.Got.Reason, w.reasonPart) {
			t.Errorf("result %d: %s at %s, passed %v, rule %q (%s); want %s at %s:%d:%d, passed %v, rule %q (reason with %q)",
				i, r.ID, p, r.Passed(), r.Got.RuleID, r.Got.Reason, w.id, w.file, w.line, w.col, w.pass, w.rule, w.reasonPart)
		}
	}
	if got := FilterTests(cases, regexp.MustCompile(`^tests\[2\]$|branch`)); len(got) != 3 {
		t.Errorf("FilterTests by name and path kept %d cases, want 3", len(got))
	}
}

func TestLoadTestsErrors(t *testing.T) {
	dir := t.TempDir()
	cfgData := "version: v1\nmcp_servers:\n  - id: github\n    url: https://example.com/mcp\npolicy:\n  allow: [github/*]\n"
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("armoriq.yaml", cfgData)
	write("bad_test.yaml", "tests:\n  - user: a@b.c\n    tool: gitlab/x\n    expect: allow\n  - user: a@b.c\n    tool: github/x\n    expect: maybe\n")
	write("policy_test.yaml", "policy:\n  allow: [github/*]\ntests: []\n")
	cfg, ds := schema.LoadFile(filepath.Join(dir, "armoriq.yaml"))
	if ds.HasErrors() {
		t.Fatal(ds)
	}
	_, ds = LoadTests(filepath.Join(dir, "armoriq.yaml"), cfg)
	var msgs []string
	for _, d := range ds {
		msgs = append(msgs, d.String())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		`bad_test.yaml:3:11: warning: tests[0].tool: server "gitlab" in "gitlab/x" is not declared under mcp_servers (did you mean "github"?): the gateway denies every call to it`,
		`bad_test.yaml:7:`,
		`policy_test.yaml:1:1: a test file holds only tests`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("LoadTests diagnostics:\n%s\nwant one containing %q", all, want)
		}
	}
}

func TestEngineErrorsArePositioned(t *testing.T) {
	cfg, ds := schema.Parse("armoriq.yaml", []byte("version: v1\nmcp_servers:\n  - id: s\n    url: https://example.com/mcp\npolicy:\n  rules:\n    - effect: allow\n      tools: [s/t]\n      when: args.x ==\n"))
	if cfg == nil {
		t.Fatal(ds)
	}
	_, err := Engine(cfg)
	if ds.HasErrors() {
		err = ds // the schema already rejects it: fine too
	}
	if err == nil || !strings.Contains(err.Error(), "armoriq.yaml:") {
		t.Errorf("Engine with an invalid when: error %v, want a positioned diagnostic", err)
	}
}

// TestExamplePolicyTests runs the policy tests of every example config: they must
// all pass.
func TestExamplePolicyTests(t *testing.T) {
	var paths []string
	for _, pat := range []string{"*.yaml", "*/*.yaml", "*/*.hcl"} {
		m, _ := filepath.Glob(filepath.Join("..", "examples", pat))
		paths = append(paths, m...)
	}
	if len(paths) == 0 {
		t.Skip("no examples")
	}
	total := 0
	defer func() {
		if total == 0 {
			t.Errorf("no example policy test ran (examples: %v)", paths)
		}
	}()
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.yaml") || strings.HasSuffix(path, "_test.hcl") {
			continue
		}
		cfg, ds := schema.LoadFile(path)
		if ds.HasErrors() {
			continue // not a config this test is about; validate's tests cover it
		}
		e, err := Engine(cfg)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		cases, ds := LoadTests(path, cfg)
		if ds.HasErrors() {
			t.Errorf("%s: %v", path, ds)
		}
		total += len(cases)
		for _, r := range RunTests(e, cases) {
			if !r.Passed() {
				t.Errorf("%s: %s at %s: expected %s, got %s (%s)", path, r.ID, r.Test.Pos, r.Test.Expect, r.Got.Effect, r.Got.Reason)
			}
		}
	}
}

// TestEmailsAndFailClosed compiles a config whose users, group members and
// test users are written with spaces and capitals, and whose hold rule's
// condition cannot be evaluated for a formatted amount: every case must
// pass, and the bundle must hold the emails as the engine compares them.
func TestEmailsAndFailClosed(t *testing.T) {
	const src = `version: v1
mcp_servers:
  - id: pay
    url: https://example.com/mcp
groups:
  contractors: [" *@Contractor.Example ", "Eve@Example.com"]
policy:
  allow: [pay/*]
  rules:
    - name: no-mallory
      effect: deny
      tools: [pay/*]
      users: ["Mallory@Example.com "]
    - name: no-contractors
      effect: deny
      tools: [pay/refund]
      groups: [contractors]
    - name: big-payments
      effect: hold
      tools: [pay/send]
      when: args.amount > 1000
tests:
  - {name: trailing space, user: "mallory@example.com ", tool: pay/send, args: {amount: 1}, expect: deny}
  - {name: upper case, user: MALLORY@example.com, tool: pay/send, args: {amount: 1}, expect: deny}
  - {name: group domain, user: " Bob@CONTRACTOR.example", tool: pay/refund, expect: deny}
  - {name: group member, user: "EVE@example.com", tool: pay/refund, expect: deny}
  - {name: formatted amount, user: ann@example.com, tool: pay/send, args: {amount: "5,000"}, expect: deny}
  - {name: spaced amount, user: ann@example.com, tool: pay/send, args: {amount: " 5000 "}, expect: deny}
  - {name: missing amount, user: ann@example.com, tool: pay/send, expect: deny}
  - {name: numeric string, user: ann@example.com, tool: pay/send, args: {amount: "5000"}, expect: hold}
  - {name: small, user: ann@example.com, tool: pay/send, args: {amount: 5}, expect: allow}
`
	cfg := parse(t, "armoriq.yaml", []byte(src))
	b, err := Compile(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range b.Policy.Rules {
		if r.ID == "no-mallory" && (len(r.Users) != 1 || r.Users[0] != "mallory@example.com") {
			t.Errorf("bundle rule no-mallory users = %q, want [mallory@example.com]", r.Users)
		}
	}
	if got := b.Policy.Groups[0].Members; strings.Join(got, ",") != "*@contractor.example,eve@example.com" {
		t.Errorf("bundle group members = %q, want [*@contractor.example eve@example.com]", got)
	}
	e, err := Engine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cases, ds := LoadTests("armoriq.yaml", cfg)
	if ds.HasErrors() {
		t.Fatal(ds)
	}
	for _, r := range RunTests(e, cases) {
		if !r.Passed() {
			t.Errorf("%s: got %s by %q (%s), want %s", r.ID, r.Got.Effect, r.Got.RuleID, r.Got.Reason, r.Test.Expect)
		}
		if strings.HasSuffix(r.ID, "amount") && !strings.Contains(r.Got.Reason, "rule big-payments (armoriq.yaml:18:7): when condition failed: armoriq.yaml:21:1") {
			t.Errorf("%s: got reason %q, want it to name the rule, its position and where the condition failed", r.ID, r.Got.Reason)
		}
	}
}

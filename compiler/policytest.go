package compiler

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/armoriq/controlplane/runtime/policy"
	"github.com/armoriq/controlplane/schema"
)

// Engine compiles cfg down to a decision engine: Compile, then
// policy.Compile. Its error is a schema.Diagnostics with every problem
// positioned in the user's files.
func Engine(cfg *schema.Config) (*policy.Engine, error) {
	b, err := Compile(cfg, Options{})
	if err != nil {
		return nil, err
	}
	e, err := policy.Compile(&b.Policy)
	if err != nil {
		var list policy.ErrorList
		if !errors.As(err, &list) {
			return nil, err
		}
		var ds schema.Diagnostics
		for _, ce := range list {
			ds = append(ds, schema.Diagnostic{
				Severity: schema.SeverityError,
				Pos:      schema.Pos{File: ce.Pos.File, Line: ce.Pos.Line, Col: ce.Pos.Col},
				Path:     ce.RuleID,
				Summary:  ce.Msg,
			})
		}
		ds.Sort()
		return nil, ds
	}
	return e, nil
}

// TestCase is one policy test with the name it is reported under.
type TestCase struct {
	// ID is the case's name, or its path ("tests[2]") when it has none.
	ID   string
	Path string // "tests[2]"
	Test schema.Test
	// Undeclared is set when the case's server is not declared under
	// mcp_servers: the gateway denies every call to such a server, and so
	// does RunTests.
	Undeclared bool
}

// TestResult is the outcome of one case.
type TestResult struct {
	TestCase
	Got policy.Decision
}

// Passed reports whether the decision was the one the case expects.
// With approvers, the held call's approvers must be exactly those.
func (r TestResult) Passed() bool {
	if string(r.Got.Effect) != r.Test.Expect {
		return false
	}
	if r.Test.Approvers == nil {
		return true
	}
	want := map[string]bool{}
	for _, a := range r.Test.Approvers {
		want[strings.ToLower(strings.TrimSpace(a))] = true
	}
	got := map[string]bool{}
	for _, a := range r.Got.Approvers {
		got[a] = true
	}
	return maps.Equal(got, want)
}

// TestFilePatterns are the files beside a config that hold more tests:
// files with only a tests: list (or test blocks in HCL).
var TestFilePatterns = []string{"*_test.yaml", "*_test.yml", "*_test.hcl"}

// LoadTests returns the tests of cfg followed by those of the test files
// beside configPath (see TestFilePatterns), in file name order. A test file
// may hold nothing but tests. A test naming a server the config does not
// declare is allowed, with a warning (as in the config itself): it asserts
// that the gateway denies the call, as it denies every call to an
// undeclared server.
func LoadTests(configPath string, cfg *schema.Config) ([]TestCase, schema.Diagnostics) {
	servers := map[string]bool{}
	var declared []string
	for _, s := range cfg.Servers {
		servers[s.ID] = true
		declared = append(declared, s.ID)
	}
	cases := testCases(cfg.Tests, servers)
	var files []string
	for _, pat := range TestFilePatterns {
		m, _ := filepath.Glob(filepath.Join(filepath.Dir(configPath), pat))
		files = append(files, m...)
	}
	sort.Strings(files)
	var diags schema.Diagnostics
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			diags = append(diags, schema.Diagnostic{Severity: schema.SeverityError, Pos: schema.Pos{File: f}, Summary: "cannot read file: " + err.Error()})
			continue
		}
		tc, ds := parseTestFile(f, data, servers, declared)
		cases = append(cases, tc...)
		diags = append(diags, ds...)
	}
	diags.Sort()
	return cases, diags
}

func testCases(tests []schema.Test, servers map[string]bool) []TestCase {
	var cases []TestCase
	for i, t := range tests {
		path := fmt.Sprintf("tests[%d]", i)
		id := t.Name
		if id == "" {
			id = path
		}
		cases = append(cases, TestCase{ID: id, Path: path, Test: t, Undeclared: !servers[t.Tool.Server]})
	}
	return cases
}

// parseTestFile loads a tests-only file with the config loader, keeping
// the diagnostics about its tests and dropping those that only say it is
// not a whole config. Servers are checked against the main config's.
func parseTestFile(path string, data []byte, servers map[string]bool, declared []string) ([]TestCase, schema.Diagnostics) {
	cfg, ds := schema.Parse(path, data)
	var diags schema.Diagnostics
	for _, d := range ds {
		switch {
		case d.Path == "" && strings.HasPrefix(d.Summary, "missing required key"):
			continue // version and friends: not expected in a test file
		case strings.HasPrefix(d.Path, "tests[") && strings.Contains(d.Summary, "is not declared under mcp_servers"):
			continue // checked below against the main config
		case d.Path != "" && !strings.HasPrefix(d.Path, "tests"):
			d.Summary = "a test file holds only tests: " + d.Summary
		}
		diags = append(diags, d)
	}
	if cfg == nil {
		return nil, diags
	}
	if len(cfg.Servers) > 0 || len(cfg.Policy.Rules) > 0 || len(cfg.Policy.Allow) > 0 || len(cfg.Policy.Deny) > 0 || len(cfg.Groups) > 0 {
		diags = append(diags, schema.Diagnostic{Severity: schema.SeverityError, Pos: schema.Pos{File: path, Line: 1, Col: 1},
			Summary: "a test file holds only tests: servers, groups and policy belong in the config"})
	}
	cases := testCases(cfg.Tests, servers)
	for _, c := range cases {
		if c.Undeclared {
			diags = append(diags, schema.Diagnostic{Severity: schema.SeverityWarning, Pos: c.Test.Tool.Pos, Path: c.Path + ".tool",
				Summary: schema.UndeclaredServerWarning(c.Test.Tool.Server, c.Test.Tool.Raw, declared)})
		}
	}
	return cases, diags
}

// FilterTests keeps the cases whose ID or path matches re (nil keeps all).
func FilterTests(cases []TestCase, re *regexp.Regexp) []TestCase {
	if re == nil {
		return cases
	}
	var out []TestCase
	for _, c := range cases {
		if re.MatchString(c.ID) || re.MatchString(c.Path) {
			out = append(out, c)
		}
	}
	return out
}

// RunTests decides each case with e, the way the gateway decides a call,
// at the current time.
func RunTests(e *policy.Engine, cases []TestCase) []TestResult {
	return RunTestsAt(e, cases, time.Time{})
}

// RunTestsAt is RunTests with the time that conditions over time see
// (the zero Time means now).
func RunTestsAt(e *policy.Engine, cases []TestCase, at time.Time) []TestResult {
	results := make([]TestResult, len(cases))
	for i, c := range cases {
		t := c.Test
		if c.Undeclared {
			// As the gateway decides: no rule is consulted.
			results[i] = TestResult{TestCase: c, Got: policy.Decision{Effect: policy.Deny,
				Reason: "server " + strconv.Quote(t.Tool.Server) + " is not declared under mcp_servers: the gateway denies every call to it"}}
			continue
		}
		results[i] = TestResult{TestCase: c, Got: e.Decide(&policy.Request{
			User:   t.User,
			Groups: t.Groups,
			Agent:  t.Agent,
			Server: t.Tool.Server,
			Tool:   t.Tool.Tool,
			Args:   t.Args,
			Time:   at,
		})}
	}
	return results
}

package schema

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestExamples validates every config under examples/: each one must load
// without errors or warnings.
func TestExamples(t *testing.T) {
	files := exampleFiles(t)
	if len(files) == 0 {
		t.Fatal("no example configs found")
	}
	for _, f := range files {
		c, ds := LoadFile(f)
		if len(ds) > 0 || c == nil {
			t.Errorf("LoadFile(%s): got diagnostics\n%s\nwant none", f, ds)
		}
	}
}

var configRE = regexp.MustCompile(`(?m)^version\s*[:=]`)

func exampleFiles(t testing.TB) []string {
	var files []string
	err := filepath.WalkDir("../examples", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch filepath.Ext(p) {
		case ".yaml", ".yml", ".hcl":
			// Other files live in examples/ too (CI workflows): a config
			// is one with a top-level version key.
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if configRE.Match(data) {
				files = append(files, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestHCLMatchesYAML loads the complete example in both forms: the typed Configs
// must be equal apart from positions and sources.
func TestHCLMatchesYAML(t *testing.T) {
	y, yd := LoadFile("../examples/complete/armoriq.yaml")
	h, hd := LoadFile("../examples/complete/armoriq.hcl")
	if len(yd)+len(hd) > 0 {
		t.Fatalf("diagnostics: yaml\n%s\nhcl\n%s", yd, hd)
	}
	opts := []cmp.Option{
		cmpopts.IgnoreFields(Config{}, "Sources"),
		cmpopts.IgnoreFields(Server{}, "Pos"), cmpopts.IgnoreFields(Group{}, "Pos"),
		cmpopts.IgnoreFields(Ref{}, "Pos"), cmpopts.IgnoreFields(Rule{}, "Pos", "WhenPos"),
		cmpopts.IgnoreFields(Test{}, "Pos"), cmpopts.IgnoreFields(Gateway{}, "Pos"),
		cmpopts.IgnoreFields(IdentityProvider{}, "Pos"),
	}
	if diff := cmp.Diff(y, h, opts...); diff != "" {
		t.Errorf("HCL config differs from YAML (-yaml +hcl):\n%s", diff)
	}
}

// TestDecoded checks defaults, positions and order of the typed Config.
func TestDecoded(t *testing.T) {
	c, ds := LoadFile("../examples/complete/armoriq.yaml")
	if ds.HasErrors() {
		t.Fatal(ds)
	}
	if got := c.Servers[1].Transport; got != TransportHTTP {
		t.Errorf("linear transport: got %q, want default %q", got, TransportHTTP)
	}
	if got := c.Servers[0].ToolPrefix; got != PrefixAlways {
		t.Errorf("github tool_prefix: got %q, want %q", got, PrefixAlways)
	}
	if got := c.Servers[1].ToolPrefix; got != PrefixConditional {
		t.Errorf("linear tool_prefix: got %q, want default %q", got, PrefixConditional)
	}
	var names []string
	for _, g := range c.Groups {
		names = append(names, g.Name)
	}
	if want := []string{"engineering", "support", "admins"}; !cmp.Equal(names, want) {
		t.Errorf("groups order: got %v, want file order %v", names, want)
	}
	if got, want := c.Servers[2].Pos, (Pos{File: "../examples/complete/armoriq.yaml", Line: 34, Col: 5}); got != want {
		t.Errorf("files server Pos: got %v, want %v", got, want)
	}
	r := c.Policy.Rules[1]
	if got, want := r.WhenPos, (Pos{File: r.Pos.File, Line: 68, Col: 13}); got != want {
		t.Errorf("rule when position: got %v, want %v", got, want)
	}
	if got, want := r.WhenFilePos(68, 20), (Pos{File: r.Pos.File, Line: 68, Col: 20}); got != want {
		t.Errorf("WhenFilePos on the first line: got %v, want %v unchanged", got, want)
	}
	block, ds := Parse("b.yaml", []byte("version: v1\nmcp_servers: [{id: a, url: \"https://a.example.com\"}]\npolicy:\n  rules:\n    - effect: deny\n      tools: [a/*]\n      when: |\n        args.x == 1 &&\n          args.y\n"))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	br := block.Policy.Rules[0]
	if br.WhenPos != (Pos{File: "b.yaml", Line: 8, Col: 9}) || br.WhenFilePos(9, 3) != (Pos{File: "b.yaml", Line: 9, Col: 11}) {
		t.Errorf("block scalar when: WhenPos %v, WhenFilePos(9, 3) %v; want b.yaml:8:9 and b.yaml:9:11", br.WhenPos, br.WhenFilePos(9, 3))
	}
	if got := c.Tests[1].Tool.String(); got != "github/push_files" {
		t.Errorf("tests[1].tool: got %q, want normalized github/push_files", got)
	}
	if len(c.Sources) != 1 || len(c.Sources[0].SHA256) != 64 || len(c.Sources[0].Data) == 0 {
		t.Errorf("Sources: got %+v, want one source with a sha256 and data", c.Sources)
	}
	if c.Tests[3].Args["priority"] != int64(1) {
		t.Errorf("tests[3].args.priority: got %#v, want int64(1)", c.Tests[3].Args["priority"])
	}
}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in           string
		server, tool string
		ok           bool
	}{
		{"github/create_issue", "github", "create_issue", true},
		{"github.create_issue", "github", "create_issue", true},
		{"github.repos.get", "github", "repos.get", true},
		{"git*/get_?", "git*", "get_?", true},
		{"*.*", "*", "*", true},
		{"nodot", "", "", false},
		{"/tool", "", "", false},
		{"server/", "", "", false},
		{"a b/tool", "", "", false},
		{"srv/a/b", "", "", false},
	} {
		s, tl, ok := ParseRef(tc.in)
		if s != tc.server || tl != tc.tool || ok != tc.ok {
			t.Errorf("ParseRef(%q): got (%q, %q, %v), want (%q, %q, %v)", tc.in, s, tl, ok, tc.server, tc.tool, tc.ok)
		}
	}
}

// TestParseProblems feeds small files with one kind of problem each and
// checks the diagnostic: position, path and a part of the message.
func TestParseProblems(t *testing.T) {
	const head = "version: v1\nmcp_servers:\n  - id: gh\n    url: https://gh.example.com/mcp\n"
	for _, tc := range []struct {
		name, file, src string
		want            []string // "line:col: path: fragment", in order
	}{
		{"unknown top-level key", "a.yaml", head + "polcy: {}\n", []string{"5:1: polcy: unknown key \"polcy\" (did you mean \"policy\"?)"}},
		{"wrong environment", "a.yaml", head + "environment: staging\n", []string{`5:14: environment: must be "sandbox" or "production", got "staging"`}},
		{"missing version", "a.yaml", "mcp_servers: []\n", []string{`1:1: missing required key "version"`}},
		{"bad server id", "a.yaml", "version: v1\nmcp_servers:\n  - id: a.b\n    url: https://x.example.com\n", []string{`3:9: mcp_servers[0].id: invalid value "a.b": a server id may contain only letters`}},
		{"duplicate id", "a.yaml", head + "  - id: gh\n    url: https://other.example.com\n", []string{`5:9: mcp_servers[1].id: duplicate server id "gh" (first declared at line 3)`}},
		{"bad url", "a.yaml", "version: v1\nmcp_servers:\n  - id: gh\n    url: htp:/x\n", []string{`4:10: mcp_servers[0].url: invalid URL "htp:/x": want an http:// or https:// URL`}},
		{"url without host", "a.yaml", "version: v1\nmcp_servers:\n  - id: gh\n    url: https:///mcp\n", []string{`4:10: mcp_servers[0].url: invalid URL "https:///mcp": missing host`}},
		{"stdio needs command", "a.yaml", "version: v1\nmcp_servers:\n  - id: fs\n    transport: stdio\n", []string{`3:5: mcp_servers[0]: missing required key "command" (transport stdio)`}},
		{"plugin sha256", "a.yaml", "version: v1\nmcp_servers:\n  - id: p\n    transport: plugin\n    path: ./p\n    sha256: abc\n", []string{`6:13: mcp_servers[0].sha256: invalid value "abc": must be a SHA-256 digest`}},
		{"bearer needs token", "a.yaml", "version: v1\nmcp_servers:\n  - id: gh\n    url: https://x.example.com\n    auth: {type: bearer}\n", []string{`5:11: mcp_servers[0].auth: missing required key "token" (auth type bearer)`}},
		{"auth type", "a.yaml", "version: v1\nmcp_servers:\n  - id: gh\n    url: https://x.example.com\n    auth: {type: oauth, token: $T}\n", []string{`5:18: mcp_servers[0].auth.type: must be "bearer" or "api_key", got "oauth"`}},
		{"literal secret", "a.yaml", "version: v1\nidentity: {api_key: ak_live_abc}\n", []string{`2:21: warning: identity.api_key: literal secret`}},
		{"unknown server in allow", "a.yaml", head + "policy: {allow: [ghb/x]}\n", []string{`5:18: policy.allow[0]: unknown server "ghb" in "ghb/x" (did you mean "gh"?)`}},
		{"glob matching nothing", "a.yaml", head + "policy: {deny: [\"x*.y\"]}\n", []string{`5:17: policy.deny[0]: server pattern "x*" matches no declared server`}},
		{"bad ref", "a.yaml", head + "policy: {allow: [justatool]}\n", []string{`5:18: policy.allow[0]: invalid tool reference "justatool"`}},
		{"unknown group", "a.yaml", head + "policy:\n  rules:\n    - effect: allow\n      tools: [gh/*]\n      groups: [eng]\n", []string{`9:16: policy.rules[0].groups[0]: unknown group "eng"`}},
		{"bad when syntax", "a.yaml", head + "policy:\n  rules:\n    - effect: deny\n      tools: [gh/*]\n      when: args.x ==\n", []string{`9:22: policy.rules[0].when: invalid condition`}},
		{"unknown when variable", "a.yaml", head + "policy:\n  rules:\n    - effect: deny\n      tools: [gh/*]\n      when: \"args.x == 1 && env.y\"\n", []string{`9:29: policy.rules[0].when: unknown variable "env"`}},
		{"empty tools", "a.yaml", head + "policy:\n  rules:\n    - effect: deny\n      tools: []\n", []string{`8:14: policy.rules[0].tools: must not be empty`}},
		{"test with a glob", "a.yaml", head + "tests:\n  - user: a@b.c\n    tool: gh/*\n    expect: deny\n", []string{`7:11: tests[0].tool: a test names one tool`}},
		{"bad var ref", "a.yaml", head + "gateways:\n  - url: https://g.example.com\n    api_key: ${1X}\n", []string{`7:14: gateways[0].api_key: invalid reference "${1X}"`}},
		{"group not a list", "a.yaml", "version: v1\ngroups:\n  ops: [a@example.com]\n  eng: dev@example.com\n", []string{`4:8: groups.eng: must be a list, got "dev@example.com"`}},
		{"env value not a string", "a.yaml", "version: v1\nmcp_servers:\n  - id: fs\n    transport: stdio\n    command: x\n    env: {A: a, DEBUG: 1}\n", []string{`6:24: mcp_servers[0].env.DEBUG: must be a string, got 1`}},
		{"bad group member", "a.yaml", "version: v1\ngroups:\n  ops: [alice]\n", []string{`3:9: groups.ops[0]: invalid member "alice": want an email address or *@domain`}},
		{"when in a block scalar", "a.yaml", head + "policy:\n  rules:\n    - effect: deny\n      tools: [gh/*]\n      when: |\n        args.x == 1 &&\n          nope.y\n", []string{`11:11: policy.rules[0].when: unknown variable "nope"`}},
		{"two documents", "a.yaml", head + "---\nversion: v1\n", []string{`5:1: a config file holds one YAML document`}},
		{"hcl sniffed without extension", "armoriq", "version = \"v1\"\nenvironment = \"x\"\n", []string{`armoriq:2:15: environment: must be "sandbox" or "production", got "x"`}},
		{"hcl when as a string", "a.hcl", "version = \"v1\"\nmcp_server \"gh\" {\n  url = \"https://x.example.com\"\n}\npolicy {\n  rule {\n    effect = \"deny\"\n    tools = [\"gh/*\"]\n    when = \"args.x > foo\"\n  }\n}\n", []string{`9:22: policy.rules[0].when: unknown variable "foo"`}},
		{"bad rule user", "a.yaml", head + "policy:\n  rules:\n    - effect: allow\n      tools: [gh/*]\n      users: [ana@example.com, bob]\n", []string{`9:32: policy.rules[0].users[1]: invalid user "bob": want an email address or *@domain`}},
		{"hcl attribute and blocks", "a.hcl", "version = \"v1\"\ngroup \"a\" {\n  members = [\"x@y.z\"]\n}\ngroups = { b = [\"u@v.w\"] }\n", []string{`5:1: groups: groups is given twice (first at line 2)`}},
		{"hcl groups attribute", "a.hcl", "version = \"v1\"\ngroups = { b = [\"u@v.w\", \"nope\"] }\n", []string{`2:26: groups.b[1]: invalid member "nope"`}},
		{"url from references", "a.yaml", "version: v1\nmcp_servers:\n  - id: a\n    url: ${BASE}/mcp\n  - id: b\n    url: https://${HOST}:8080/mcp\n  - id: c\n    url: ftp://${HOST}\n", []string{`8:10: mcp_servers[2].url: invalid URL "ftp://${HOST}"`}},
		{"huge number", "a.yaml", "version: v1\nintent: {ttl_seconds: 99999999999999999999999}\n", []string{`2:23: intent.ttl_seconds: must be an integer, got 1e+23`}},
		{"float for an int", "a.yaml", "version: v1\nproxy: {timeout: 1.5}\n", []string{`2:18: proxy.timeout: must be an integer, got 1.5`}},
		{"keys that are not identifiers", "a.yaml", "version: v1\n\"weird key\": 1\nmcp_servers:\n  - id: a\n    url: https://a.example.com\n    tool-prefix: always\n", []string{`2:1: ["weird key"]: unknown key "weird key"`, `6:5: mcp_servers[0].tool-prefix: unknown key "tool-prefix" (did you mean "tool_prefix"?)`}},
		{"hcl rule outside policy", "a.hcl", "version = \"v1\"\nrule {\n  effect = \"deny\"\n}\n", []string{`2:1: rule: a rule block belongs inside policy { ... }`}},
		{"hcl server inside policy", "a.hcl", "version = \"v1\"\npolicy {\n  mcp_server \"x\" {}\n}\n", []string{`3:3: policy.mcp_server: a mcp_server block belongs at the top level`}},
		{"hcl when as a heredoc", "a.hcl", "version = \"v1\"\nmcp_server \"gh\" {\n  url = \"https://x.example.com\"\n}\npolicy {\n  rule {\n    effect = \"deny\"\n    tools = [\"gh/*\"]\n    when = <<-EOT\n      args.x > 1 &&\n        foo.y\n    EOT\n  }\n}\n", []string{`11:9: policy.rules[0].when: unknown variable "foo"`}},
		{"yaml syntax", "a.yaml", "version: v1\nmcp_servers: [\n", []string{`invalid YAML`}},
		{"duplicate yaml key", "a.yaml", "version: v1\nversion: v1\n", []string{`2:1: duplicate key "version" (first at line 1)`}},
		{"hcl syntax", "a.hcl", "version = \n", []string{`a.hcl:1:`}},
		{"hcl unknown block", "a.hcl", "version = \"v1\"\nserver \"x\" {}\n", []string{`2:1: server: unknown key "server"`}},
		{"hcl when", "a.hcl", "version = \"v1\"\nmcp_server \"gh\" {\n  url = \"https://x.example.com\"\n}\npolicy {\n  rule {\n    effect = \"deny\"\n    tools = [\"gh/*\"]\n    when = args.x > foo\n  }\n}\n", []string{`9:21: policy.rules[0].when: unknown variable "foo"`}},
		{"hcl interpolation", "a.hcl", "version = \"v1\"\nidentity {\n  api_key = \"${KEY}\"\n}\n", []string{`3:16: identity.api_key: Variables not allowed`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ds := Parse(tc.file, []byte(tc.src))
			if len(ds) != len(tc.want) {
				t.Fatalf("input:\n%s\ngot %d diagnostics:\n%s\nwant %d: %q", tc.src, len(ds), ds, len(tc.want), tc.want)
			}
			for i, d := range ds {
				if !strings.Contains(d.String(), tc.want[i]) {
					t.Errorf("input:\n%s\ndiagnostic %d: got %q, want it to contain %q", tc.src, i, d.String(), tc.want[i])
				}
			}
		})
	}
}

func TestFindDefault(t *testing.T) {
	dir := t.TempDir()
	if _, err := FindDefault(dir); err == nil {
		t.Error("FindDefault(empty dir): got no error")
	}
	os.WriteFile(filepath.Join(dir, "armoriq.hcl"), []byte("version = \"v1\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "armoriq.yaml"), []byte("version: v1\n"), 0o644)
	got, err := FindDefault(dir)
	if err != nil || filepath.Base(got) != "armoriq.yaml" {
		t.Errorf("FindDefault: got %q, %v; want armoriq.yaml first", got, err)
	}
}

func TestLoadFileUnreadable(t *testing.T) {
	c, ds := LoadFile(filepath.Join(t.TempDir(), "missing.yaml"))
	if c != nil || len(ds) != 1 || ds[0].Pos.Line != 0 || !ds.IsNotReadable() {
		t.Errorf("LoadFile(missing): got %v, %v; want nil and one lineless diagnostic", c, ds)
	}
}

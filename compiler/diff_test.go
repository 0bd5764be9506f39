package compiler

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"

	"github.com/armoriq/controlplane/schema"
)

// TestDiffGolden diffs base.yaml and head.yaml of each
// testdata/diff/*.txtar (with tools.json as extra tools, if present) and
// compares the report in each format with the archive's text, markdown and
// json files. go test -update rewrites them.
func TestDiffGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "diff", "*.txtar"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			files := map[string][]byte{}
			for _, f := range ar.Files {
				files[f.Name] = f.Data
			}
			load := func(name string) *schema.Config {
				cfg, ds := schema.Parse(name, files[name])
				if cfg == nil || ds.HasErrors() {
					t.Fatalf("%s: %v", name, ds)
				}
				return cfg
			}
			var extra map[string][]string
			if data, ok := files["tools.json"]; ok {
				if err := json.Unmarshal(data, &extra); err != nil {
					t.Fatalf("tools.json: %v", err)
				}
			}
			d, err := DiffConfigs(load("base.yaml"), load("head.yaml"), extra)
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range ar.Files {
				switch f.Name {
				case "text", "markdown", "json":
				default:
					continue
				}
				var buf bytes.Buffer
				if err := d.Write(&buf, f.Name, "base.yaml", "head.yaml"); err != nil {
					t.Fatal(err)
				}
				if *update {
					ar.Files[i].Data = buf.Bytes()
					continue
				}
				if got := buf.String(); got != string(f.Data) {
					t.Errorf("%s report:\n%s\nwant:\n%s", f.Name, got, f.Data)
				}
			}
			if *update {
				if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestMarkdownTruncated(t *testing.T) {
	d := &AccessDiff{}
	for i := 0; i < 2000; i++ {
		d.Changes = append(d.Changes, Change{Kind: ChangeGained, Subject: Subject{Kind: SubjectUser, Name: strings.Repeat("u", 20) + "@example.com"}, Tool: "github/tool", From: AccessDeny, To: AccessAllow, ToRule: "policy.rules[1]"})
	}
	md := d.markdown("main", "HEAD", MaxMarkdown)
	if len(md) > MaxMarkdown {
		t.Errorf("markdown of 2000 rows is %d characters, want at most %d", len(md), MaxMarkdown)
	}
	rows := strings.Count(md, "\n| `")
	if !strings.Contains(md, "more rows not shown") || rows == 0 || rows == 2000 {
		t.Errorf("markdown of 2000 rows kept %d rows and says %q; want some rows and a note", rows, md[len(md)-200:])
	}
	// The note counts exactly the dropped rows.
	want := strings.Count(md, "\n| `")
	if !strings.Contains(md, "_"+itoa(2000-want)+" more rows not shown") {
		t.Errorf("note does not count %d dropped rows: %q", 2000-want, md[len(md)-300:])
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestChangeKind(t *testing.T) {
	cond := conditionalAccess("deny", "allow")
	tests := []struct {
		from, to Access
		want     string
	}{
		{AccessDeny, AccessAllow, ChangeGained},
		{AccessDeny, AccessHold, ChangeGained},
		{AccessAllow, AccessDeny, ChangeLost},
		{AccessHold, AccessDeny, ChangeLost},
		{AccessAllow, AccessHold, ChangeChanged},
		{AccessAllow, cond, ChangeChanged},
		{cond, AccessDeny, ChangeChanged},
	}
	for _, tt := range tests {
		if got := changeKind(tt.from, tt.to); got != tt.want {
			t.Errorf("changeKind(%s, %s) = %s, want %s", tt.from, tt.to, got, tt.want)
		}
	}
}

// TestExampleFormatsAgree: the YAML and HCL forms of each example grant the
// same access.
func TestExampleFormatsAgree(t *testing.T) {
	hcls, _ := filepath.Glob(filepath.Join("..", "examples", "*", "armoriq.hcl"))
	for _, h := range hcls {
		y := strings.TrimSuffix(h, ".hcl") + ".yaml"
		if _, err := os.Stat(y); err != nil {
			continue
		}
		var cfgs []*schema.Config
		for _, p := range []string{y, h} {
			cfg, ds := schema.LoadFile(p)
			if cfg == nil || ds.HasErrors() {
				t.Fatalf("%s: %v", p, ds)
			}
			cfgs = append(cfgs, cfg)
		}
		d, err := DiffConfigs(cfgs[0], cfgs[1], nil)
		if err != nil {
			t.Fatal(err)
		}
		if d.Changed() || len(d.Tools) == 0 {
			var buf bytes.Buffer
			d.Write(&buf, "text", y, h)
			t.Errorf("%s and %s differ (%d tools compared):\n%s", y, h, len(d.Tools), buf.String())
		}
	}
}

// TestAccessOfFailClosed: a conditional hold shows that it denies when its
// condition cannot be evaluated, over an allow and over another hold.
func TestAccessOfFailClosed(t *testing.T) {
	cfg, ds := schema.Parse("armoriq.yaml", []byte(`version: v1
mcp_servers:
  - id: pay
    url: https://example.com/mcp
policy:
  allow: [pay/send]
  rules:
    - name: review-refunds
      effect: hold
      tools: [pay/refund]
    - name: big-refunds
      effect: hold
      tools: [pay/refund]
      when: args.amount > 1000
    - name: big-payments
      effect: hold
      tools: [pay/send]
      when: args.amount > 1000
    - name: no-weekend
      effect: deny
      tools: [pay/send]
      when: time.weekday == "sunday"
`))
	if ds.HasErrors() {
		t.Fatal(ds)
	}
	e, err := Engine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tool       string
		want, rule string
	}{
		{"send", "deny if when, else allow", "no-weekend if when, else policy.allow[0]"},
		{"refund", "hold if when (deny if it fails), else hold", "big-refunds if when, else review-refunds"},
	}
	for _, tt := range tests {
		a, rule := AccessOf(e, Subject{Kind: SubjectAnyone}, "pay", tt.tool)
		if string(a) != tt.want || rule != tt.rule {
			t.Errorf("AccessOf(pay/%s) = %q (%s), want %q (%s)", tt.tool, a, rule, tt.want, tt.rule)
		}
	}
}

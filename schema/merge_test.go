package schema

import (
	"strings"
	"testing"
)

// TestYAMLMergeKeys checks YAML 1.1 merge semantics: a key written in the
// map overrides a merged one, wherever the << stands; of several merged
// maps the first to give a key wins; only a key written twice is an error.
func TestYAMLMergeKeys(t *testing.T) {
	const src = `version: v1
mcp_servers:
  - &srv
    id: a
    url: https://a.example.com/mcp
    description: shared
  - <<: *srv
    id: b
  - id: c
    <<: *srv
  - <<: [{id: d, description: first}, *srv]
`
	cfg, ds := Parse("a.yaml", []byte(src))
	if ds.HasErrors() {
		t.Fatalf("Parse: %v", ds)
	}
	type server struct {
		id, url, desc string
		line          int
	}
	var got []server
	for _, s := range cfg.Servers {
		got = append(got, server{s.ID, s.URL, s.Description, s.Pos.Line})
	}
	want := []server{
		{"a", "https://a.example.com/mcp", "shared", 3},
		{"b", "https://a.example.com/mcp", "shared", 7},
		{"c", "https://a.example.com/mcp", "shared", 9},
		{"d", "https://a.example.com/mcp", "first", 11},
	}
	if len(got) != len(want) {
		t.Fatalf("servers %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("server %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestYAMLMergeKeyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"duplicate explicit key beside a merge", "version: v1\nmcp_servers:\n  - &srv\n    id: a\n    url: https://a.example.com\n  - <<: *srv\n    id: b\n    id: c\n",
			[]string{`8:5: duplicate key "id" (first at line 7)`}},
		{"no override: the merged id is a duplicate, at the merge", "version: v1\nmcp_servers:\n  - &srv\n    id: a\n    url: https://a.example.com\n  - <<: *srv\n",
			[]string{`6:9: mcp_servers[1].id: duplicate server id "a" (first declared at line 4)`}},
		{"a merged invalid value: at the anchor and at the merge", "version: v1\nmcp_servers:\n  - &srv\n    id: a\n    url: ftp://a.example.com\n  - <<: *srv\n    id: b\n",
			[]string{`5:10: mcp_servers[0].url`, `6:9: mcp_servers[1].url`}},
		{"a merged condition is checked in the anchored text", "version: v1\nmcp_servers:\n  - id: a\n    url: https://a.example.com\npolicy:\n  rules:\n    - &r\n      effect: deny\n      tools: [a/*]\n      when: args.x > foo\n    - <<: *r\n      effect: allow\n",
			[]string{`10:22: policy.rules[0].when: unknown variable "foo"`, `10:22: policy.rules[1].when: unknown variable "foo"`}},
		{"merge of a scalar", "version: v1\nmcp_servers:\n  - <<: 3\n    id: b\n", []string{`3:5: mcp_servers[0]: missing required key "url"`, `3:9: a merge key (<<) needs a map or a list of maps, found int`}},
		{"merge of a list holding a scalar", "version: v1\nmcp_servers:\n  - <<: [{url: https://x.example.com}, 3]\n    id: b\n", []string{`3:40: a merge key (<<) needs a map or a list of maps, found int`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ds := Parse("a.yaml", []byte(tc.src))
			if len(ds) != len(tc.want) {
				t.Fatalf("input:\n%s\ngot %d diagnostics:\n%s\nwant %d: %q", tc.src, len(ds), ds, len(tc.want), tc.want)
			}
			for i, d := range ds {
				if !strings.Contains(d.String(), tc.want[i]) {
					t.Errorf("diagnostic %d: got %q, want it to contain %q", i, d.String(), tc.want[i])
				}
			}
		})
	}
}

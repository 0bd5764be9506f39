package schema

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

var genLarge = flag.String("gen-large", "", "write the large benchmark config (1,000 servers, 10,000 rules) to this file and exit")

// largeConfig generates a valid config with the given numbers of servers
// and rules, in the shape real files have: servers with auth, groups, rules
// with tool patterns, groups and when conditions, and tests.
func largeConfig(servers, rules int) []byte {
	var b strings.Builder
	b.WriteString("version: v1\nidentity: {api_key: $ARMORIQ_API_KEY, user_id: u, agent_id: a}\nenvironment: production\n")
	b.WriteString("proxy: {url: \"https://gw.example.com\", timeout: 30, max_retries: 3}\nmcp_servers:\n")
	for i := 0; i < servers; i++ {
		fmt.Fprintf(&b, "  - id: srv-%d\n    url: https://mcp%d.example.com/mcp\n    description: server %d\n    auth: {type: bearer, token: $TOKEN_%d}\n", i, i, i, i)
	}
	b.WriteString("groups:\n")
	for g := 0; g < 20; g++ {
		fmt.Fprintf(&b, "  team-%d: [\"*@team%d.example.com\", lead%d@example.com]\n", g, g, g)
	}
	b.WriteString("policy:\n  allow: [\"srv-1*/get_*\", srv-2.list_items]\n  deny: [\"*/delete_*\"]\n  rules:\n")
	effects := []string{"allow", "deny", "hold"}
	for i := 0; i < rules; i++ {
		fmt.Fprintf(&b, "    - name: rule-%d\n      effect: %s\n      tools: [srv-%d/tool_%d, \"srv-%d/read_*\"]\n      groups: [team-%d]\n",
			i, effects[i%3], i%servers, i%7, (i*7)%servers, i%20)
		if i%2 == 0 {
			fmt.Fprintf(&b, "      when: args.amount > %d && user != \"bot@example.com\"\n      reason: rule %d\n", i%1000, i)
		}
	}
	b.WriteString("tests:\n")
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "  - user: u%d@team%d.example.com\n    tool: srv-%d/tool_%d\n    args: {amount: %d}\n    expect: %s\n", i, i%20, i%servers, i%7, i, effects[i%3])
	}
	return []byte(b.String())
}

// TestGenerateLarge writes the benchmark config when -gen-large is set
// (used by .ci/bench-validate); otherwise it checks the generator's
// output is valid.
func TestGenerateLarge(t *testing.T) {
	if *genLarge != "" {
		if err := os.WriteFile(*genLarge, largeConfig(1000, 10000), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, ds := Parse("large.yaml", largeConfig(20, 100)); len(ds) > 0 {
		t.Fatalf("generated config: got diagnostics\n%s", ds)
	}
}

// BenchmarkParseLarge loads a config of 1,000 servers and 10,000 rules:
// decode, schema, semantic checks. It reports the file size and the heap
// in use after the run.
func BenchmarkParseLarge(b *testing.B) {
	data := largeConfig(1000, 10000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		c, ds := Parse("large.yaml", data)
		if c == nil || len(ds) > 0 {
			b.Fatalf("got diagnostics: %s", ds[:min(len(ds), 5)])
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
	b.ReportMetric(float64(len(data))/(1<<20), "file-MB")
}

// BenchmarkParseQuickstart loads the complete example: the latency of a
// typical file in CI or at each reconcile.
func BenchmarkParseQuickstart(b *testing.B) {
	data, err := os.ReadFile("../examples/complete/armoriq.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ds := Parse("armoriq.yaml", data); len(ds) > 0 {
			b.Fatal(ds)
		}
	}
}

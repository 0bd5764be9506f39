package policy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func mustTokenPolicy(t testing.TB, js string) *TokenPolicy {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		t.Fatal(err)
	}
	p, err := ParseTokenPolicy(v)
	if err != nil {
		t.Fatalf("ParseTokenPolicy(%s): %v", js, err)
	}
	return p
}

func TestParseTokenPolicy(t *testing.T) {
	tests := []struct {
		name, in string
		allow    []string
		deny     []string
		allowed  []string
	}{
		{"null: the defaults", `null`, []string{"*"}, []string{}, nil},
		{"empty object: the defaults", `{}`, []string{"*"}, []string{}, nil},
		{"null values: the defaults", `{"allow": null, "deny": null, "allowed_tools": null}`, []string{"*"}, []string{}, nil},
		{"dot form normalised", `{"allow": ["weather-mcp.get_*", "files/read.file"], "deny": ["files.delete_*"]}`, []string{"weather-mcp/get_*", "files/read.file"}, []string{"files/delete_*"}, nil},
		{"dotted tool name after a slash", `{"allow": ["files/a.b.c"]}`, []string{"files/a.b.c"}, []string{}, nil},
		{"empty allow kept", `{"allow": []}`, []string{}, []string{}, nil},
		{"allowed_tools with bare names", `{"allowed_tools": ["get_weather", "calc/add", "files.read"]}`, []string{"*"}, []string{}, []string{"get_weather", "calc/add", "files.read"}},
		{"question marks", `{"deny": ["s?/t??"]}`, []string{"*"}, []string{"s?/t??"}, nil},
		{"server star", `{"allow": ["*/ping", "*.pong"]}`, []string{"*/ping", "*/pong"}, []string{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustTokenPolicy(t, tt.in)
			if !reflect.DeepEqual(p.Allow, tt.allow) || !reflect.DeepEqual(p.Deny, tt.deny) || !reflect.DeepEqual(p.AllowedTools, tt.allowed) {
				t.Errorf("ParseTokenPolicy(%s) = allow %q deny %q allowed_tools %q, want %q %q %q", tt.in, p.Allow, p.Deny, p.AllowedTools, tt.allow, tt.deny, tt.allowed)
			}
			// The signed form reads back to the same policy.
			again, err := ParseTokenPolicy(roundTrip(t, p.Signed()))
			if err != nil || !reflect.DeepEqual(again.Allow, p.Allow) || !reflect.DeepEqual(again.Deny, p.Deny) || !reflect.DeepEqual(again.AllowedTools, p.AllowedTools) {
				t.Errorf("ParseTokenPolicy(Signed()) = %+v, %v; want %+v", again, err, p)
			}
		})
	}
}

// roundTrip sends v through JSON, as a token does.
func roundTrip(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseTokenPolicyErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"not an object", `["*"]`, `policy must be an object`},
		{"a string", `"*"`, `policy must be an object`},
		{"unknown key", `{"allow": ["*"], "permit": ["*"]}`, `policy: unknown key "permit"`},
		{"allow not a list", `{"allow": "*"}`, `policy.allow must be a list of strings, got a string`},
		{"deny object", `{"deny": {"a": 1}}`, `policy.deny must be a list of strings, got an object`},
		{"non-string glob", `{"allow": ["a/b", 3]}`, `policy.allow[1] must be a string, got a number`},
		{"null glob", `{"deny": [null]}`, `policy.deny[0] must be a string, got null`},
		{"empty glob", `{"allow": [""]}`, `policy.allow[0]: empty pattern`},
		{"bare name in allow", `{"allow": ["get_weather"]}`, `policy.allow[0]: pattern "get_weather" is not "*", server/tool or server.tool`},
		{"empty server", `{"allow": ["/tool"]}`, `policy.allow[0]: pattern "/tool" is not server/tool`},
		{"empty tool", `{"deny": ["srv/"]}`, `policy.deny[0]: pattern "srv/" is not server/tool`},
		{"dot before slash", `{"allow": ["a.b/c"]}`, `policy.allow[0]: pattern "a.b/c": a server id holds no`},
		{"two slashes", `{"allow": ["a/b/c"]}`, `policy.allow[0]: pattern "a/b/c": a tool name holds no '/'`},
		{"character class", `{"deny": ["s/get_[ab]"]}`, `policy.deny[0]: pattern "s/get_[ab]": only '*' and '?' are wildcards`},
		{"escape", `{"deny": ["s/get\\*"]}`, `only '*' and '?' are wildcards`},
		{"space", `{"allow": ["s/ t"]}`, `holds white space`},
		{"control character", `{"allowed_tools": ["s/t\u0000"]}`, `policy.allowed_tools[0]: pattern "s/t\x00" holds white space or a control character`},
		{"too long", `{"allow": ["s/` + strings.Repeat("x", 300) + `"]}`, `more than 256`},
		{"allowed_tools not a list", `{"allowed_tools": true}`, `policy.allowed_tools must be a list of strings, got a bool`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(tt.in), &v); err != nil {
				t.Fatal(err)
			}
			p, err := ParseTokenPolicy(v)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseTokenPolicy(%s) = %+v, %v; want an error containing %q", tt.in, p, err, tt.want)
			}
		})
	}
	many := make([]any, maxTokenPatterns+1)
	for i := range many {
		many[i] = "s/t"
	}
	if _, err := ParseTokenPolicy(map[string]any{"deny": many}); err == nil || !strings.Contains(err.Error(), "more than 256") {
		t.Errorf("ParseTokenPolicy with %d deny patterns: %v, want an error", len(many), err)
	}
}

func TestTokenPolicyAllows(t *testing.T) {
	tests := []struct {
		name, policy, server, tool string
		want                       bool
		reason                     string // substring when refused
	}{
		{"default allows all", `null`, "weather-mcp", "get_forecast", true, ""},
		{"allow glob", `{"allow": ["weather-mcp/get_*"]}`, "weather-mcp", "get_forecast", true, ""},
		{"allow glob, other tool", `{"allow": ["weather-mcp/get_*"]}`, "weather-mcp", "set_alert", false, `weather-mcp/set_alert is not allowed by the token's policy (allow ["weather-mcp/get_*"])`},
		{"allow glob, other server", `{"allow": ["weather-mcp/get_*"]}`, "other", "get_forecast", false, "not allowed"},
		{"dot form", `{"allow": ["weather-mcp.get_*"]}`, "weather-mcp", "get_forecast", true, ""},
		{"deny wins over allow", `{"allow": ["*"], "deny": ["data-mcp/delete_*"]}`, "data-mcp", "delete_rows", false, `data-mcp/delete_rows is denied by the token's policy (deny "data-mcp/delete_*")`},
		{"deny other tool", `{"deny": ["data-mcp/delete_*"]}`, "data-mcp", "fetch_rows", true, ""},
		{"deny star", `{"deny": ["*"]}`, "a", "b", false, `denied by the token's policy (deny "*")`},
		{"empty allow allows nothing", `{"allow": []}`, "a", "b", false, `(allow [] (nothing))`},
		{"allowed_tools by name", `{"allowed_tools": ["get_forecast"]}`, "weather-mcp", "get_forecast", true, ""},
		{"allowed_tools by name, other", `{"allowed_tools": ["get_forecast"]}`, "weather-mcp", "get_alerts", false, `weather-mcp/get_alerts is not in the token's allowed_tools ["get_forecast"]`},
		{"allowed_tools by server/tool", `{"allowed_tools": ["weather-mcp/get_*"]}`, "weather-mcp", "get_alerts", true, ""},
		{"allowed_tools by server.tool", `{"allowed_tools": ["weather-mcp.get_alerts"]}`, "weather-mcp", "get_alerts", true, ""},
		{"allowed_tools dotted tool name", `{"allowed_tools": ["read.file"]}`, "files", "read.file", true, ""},
		{"allowed_tools after allow", `{"allow": ["a/*"], "allowed_tools": ["*"]}`, "b", "x", false, "not allowed"},
		{"empty allowed_tools allows nothing", `{"allowed_tools": []}`, "a", "b", false, "allowed_tools [] (nothing)"},
		{"question mark", `{"allow": ["db/q?"]}`, "db", "q1", true, ""},
		{"question mark is one character", `{"allow": ["db/q?"]}`, "db", "q12", false, "not allowed"},
		{"case matters", `{"allow": ["Weather/*"]}`, "weather", "x", false, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustTokenPolicy(t, tt.policy)
			ok, reason := p.Allows(tt.server, tt.tool)
			if ok != tt.want || !strings.Contains(reason, tt.reason) || ok && reason != "" {
				t.Errorf("%s: Allows(%s, %s) = %v, %q; want %v, %q", tt.policy, tt.server, tt.tool, ok, reason, tt.want, tt.reason)
			}
		})
	}
}

// FuzzTokenPolicy parses arbitrary JSON as a token policy: no panic; what
// parses, reads back from its signed form to the same lists and decides
// every call the same; a refusal always says why.
func FuzzTokenPolicy(f *testing.F) {
	f.Add(`{"allow": ["weather-mcp/get_*"], "deny": ["x.y"]}`, "weather-mcp", "get_forecast")
	f.Add(`{"allowed_tools": ["read.file", "*/p?ng"]}`, "files", "read.file")
	f.Add(`null`, "a", "b")
	f.Add(`{"allow": [], "deny": ["*"]}`, "", "")
	f.Add(`{"allow": ["a/b/c", 1]}`, "a", "b/c")
	f.Fuzz(func(t *testing.T, js, server, tool string) {
		var v any
		if json.Unmarshal([]byte(js), &v) != nil {
			return
		}
		p, err := ParseTokenPolicy(v)
		if err != nil {
			if p != nil {
				t.Fatalf("ParseTokenPolicy(%s) returned a policy with error %v", js, err)
			}
			return
		}
		again, err := ParseTokenPolicy(roundTrip(t, p.Signed()))
		if err != nil {
			t.Fatalf("ParseTokenPolicy(Signed() of %s): %v", js, err)
		}
		if !reflect.DeepEqual(again.Allow, p.Allow) || !reflect.DeepEqual(again.Deny, p.Deny) || !reflect.DeepEqual(again.AllowedTools, p.AllowedTools) {
			t.Fatalf("%s: signed form reads back as %+v, want %+v", js, again, p)
		}
		ok, reason := p.Allows(server, tool)
		ok2, _ := again.Allows(server, tool)
		if ok != ok2 {
			t.Fatalf("%s: Allows(%q, %q) = %v, after a round trip %v", js, server, tool, ok, ok2)
		}
		if ok == (reason != "") {
			t.Fatalf("%s: Allows(%q, %q) = %v with reason %q", js, server, tool, ok, reason)
		}
		for _, g := range p.deny {
			if g.match(server, tool) && ok {
				t.Fatalf("%s: Allows(%q, %q) despite deny %q", js, server, tool, g.raw)
			}
		}
	})
}

// BenchmarkTokenPolicy is what the gateway adds to a call: reading the
// policy signed into the token (as decoded JSON) and checking the call.
func BenchmarkTokenPolicy(b *testing.B) {
	for _, tc := range []struct{ name, js string }{
		{"default", `{"allow": ["*"], "deny": []}`},
		{"globs", `{"allow": ["weather-mcp/get_*", "data-mcp/fetch_*", "analytics-mcp/*"], "deny": ["data-mcp/delete_*", "*/admin_*"], "allowed_tools": ["get_forecast", "fetch_rows", "analytics-mcp/run"]}`},
	} {
		var v any
		if err := json.Unmarshal([]byte(tc.js), &v); err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				p, err := ParseTokenPolicy(v)
				if err != nil {
					b.Fatal(err)
				}
				if ok, _ := p.Allows("data-mcp", "fetch_rows"); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}

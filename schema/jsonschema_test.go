package schema

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/rogpeppe/go-internal/txtar"
	"gopkg.in/yaml.v3"
)

const jsonSchemaFile = "armoriq.schema.json"

// TestJSONSchemaFile keeps the committed schema/armoriq.schema.json, which
// editors fetch (JSONSchemaURL), equal to JSONSchema's output. Run with
// -update after changing armoriq.cue.
func TestJSONSchemaFile(t *testing.T) {
	got, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(jsonSchemaFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(jsonSchemaFile)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("schema/%s is not what JSONSchema generates: run go test ./schema -update", jsonSchemaFile)
	}
}

// TestJSONSchemaDraft7Readable checks that the schema uses no keyword a
// draft-07 reader ignores (the YAML language server reads 2020-12 only in
// part), so editors judge files as the schema says.
func TestJSONSchemaDraft7Readable(t *testing.T) {
	data, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	for _, kw := range []string{"prefixItems", "$dynamicRef", "$dynamicAnchor", "unevaluatedProperties", "unevaluatedItems", "dependentRequired", "dependentSchemas", "minContains", "maxContains"} {
		if bytes.Contains(data, []byte(`"`+kw+`"`)) {
			t.Errorf("the JSON Schema uses %s, which draft-07 readers ignore", kw)
		}
	}
}

// TestGeneratedJSONSchemaFallsShort pins why the corrections exist: CUE's
// own export rejects the quickstart example and valid stdio and plugin
// servers, which the corrected schema accepts.
func TestGeneratedJSONSchemaFallsShort(t *testing.T) {
	raw, err := generatedJSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(raw)
	var s jsonschema.Schema
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	rawRS, err := s.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	fixed := compiledJSONSchema(t)
	quickstart, err := os.ReadFile("../examples/quickstart/armoriq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, src string }{
		{"the quickstart example", string(quickstart)},
		{"a stdio server", "version: v1\nmcp_servers:\n  - {id: a, transport: stdio, command: npx}\n"},
		{"a plugin server", "version: v1\nmcp_servers:\n  - {id: a, transport: plugin, path: ./p, sha256: " + strings.Repeat("ab", 32) + "}\n"},
	} {
		inst, err := asJSON([]byte(tc.src))
		if err != nil {
			t.Fatal(err)
		}
		if err := rawRS.Validate(inst); err == nil {
			t.Errorf("%s: CUE's export now accepts it: are the corrections still needed?", tc.name)
		}
		if err := fixed.Validate(inst); err != nil {
			t.Errorf("%s: the corrected schema rejects it: %v", tc.name, err)
		}
	}
}

// compiledJSONSchema resolves the committed schema with an independent
// validator (google/jsonschema-go, draft 2020-12).
func compiledJSONSchema(t *testing.T) *jsonschema.Resolved {
	t.Helper()
	data, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	var s jsonschema.Schema
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		t.Fatalf("resolving the JSON Schema: %v", err)
	}
	return rs
}

// asJSON decodes YAML as a YAML library would hand it to a JSON Schema
// validator (the YAML language server does the same).
func asJSON(data []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(b, &out)
}

// TestJSONSchemaFixes pins each correction of the generated schema: valid
// stdio and plugin servers, test args and auth are judged as armoriq
// validate judges them.
func TestJSONSchemaFixes(t *testing.T) {
	rs := compiledJSONSchema(t)
	const head = "version: v1\nmcp_servers:\n"
	for _, tc := range []struct {
		name, src string
		valid     bool
	}{
		{"http server", head + "  - id: a\n    url: https://a.example.com/mcp\n", true},
		{"http server without url", head + "  - id: a\n", false},
		{"explicit http without url", head + "  - id: a\n    transport: http\n", false},
		{"stdio server", head + "  - id: a\n    transport: stdio\n    command: npx\n    args: [weather]\n", true},
		{"stdio server without command", head + "  - id: a\n    transport: stdio\n", false},
		{"plugin server", head + "  - id: a\n    transport: plugin\n    path: ./adapter\n    sha256: " + strings.Repeat("ab", 32) + "\n", true},
		{"plugin server without sha256", head + "  - id: a\n    transport: plugin\n    path: ./adapter\n", false},
		{"bearer auth", head + "  - id: a\n    url: https://a.example.com\n    auth: {type: bearer, token: $TOKEN}\n", true},
		{"bearer auth without token", head + "  - id: a\n    url: https://a.example.com\n    auth: {type: bearer}\n", false},
		{"api_key auth", head + "  - id: a\n    url: https://a.example.com\n    auth: {type: api_key, api_key: $KEY, header_name: X-Key}\n", true},
		{"auth none", head + "  - id: a\n    url: https://a.example.com\n    auth: none\n", true},
		{"auth with an unknown key", head + "  - id: a\n    url: https://a.example.com\n    auth: {type: bearer, token: x, tokn: y}\n", false},
		{"test with args", "version: v1\ntests:\n  - user: a@example.com\n    tool: a/read\n    args: {path: /etc, n: 3}\n    expect: deny\n", true},
		{"no version", "mcp_servers: []\n", false},
		{"rule", "version: v1\npolicy:\n  rules:\n    - {effect: deny, tools: [a/b, a/c]}\n", true},
		{"rule with no tools", "version: v1\npolicy:\n  rules:\n    - {effect: deny, tools: []}\n", false},
		{"rule with a number for a tool", "version: v1\npolicy:\n  rules:\n    - {effect: deny, tools: [3]}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst, err := asJSON([]byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			jsErr := rs.Validate(inst)
			root, _ := parseYAML("a.yaml", []byte(tc.src))
			cueOK := !checkSchema(root).HasErrors()
			if (jsErr == nil) != tc.valid || cueOK != tc.valid {
				t.Errorf("input:\n%s\nJSON Schema: %v; armoriq's schema valid: %v; want valid %v", tc.src, jsErr, cueOK, tc.valid)
			}
		})
	}
}

// schemaExceptions lists configs on which the JSON Schema and armoriq's
// schema step may disagree, with the reason. (None so far.)
var schemaExceptions = map[string]string{}

// TestJSONSchemaAgreesWithValidate validates every config in examples/ and
// in the repository's testdata (golden diagnostics files, and the
// armoriq.yaml files of the CLI scripts and compiler cases) with the JSON
// Schema and an independent validator, and checks that the verdict is the
// one armoriq validate's schema step gives. Checks only Go makes (unique
// ids, references, when, URLs, $VAR syntax, secrets) are not schema-level
// and are not compared; files that are not YAML maps are skipped.
func TestJSONSchemaAgreesWithValidate(t *testing.T) {
	rs := compiledJSONSchema(t)
	type config struct {
		name string
		data []byte
	}
	var configs []config
	add := func(name string, data []byte) {
		if strings.HasSuffix(name, "_test.yaml") || strings.Contains(name, "github-workflow") {
			return // policy test files and workflows have their own formats
		}
		configs = append(configs, config{name, data})
	}
	for _, pattern := range []string{"../examples/*.yaml", "../examples/*/*.yaml", "testdata/diag/*.yaml", "../cmd/armoriq/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			add(f, data)
		}
	}
	for _, pattern := range []string{"../cmd/armoriq/testdata/script/*.txtar", "../compiler/testdata/*/*.txtar"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			ar, err := txtar.ParseFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, af := range ar.Files {
				if strings.HasSuffix(af.Name, ".yaml") || strings.HasSuffix(af.Name, ".yml") {
					add(f+":"+af.Name, af.Data)
				}
			}
		}
	}
	if len(configs) < 50 {
		t.Fatalf("found %d configs, expected the examples and testdata", len(configs))
	}
	compared, valid := 0, 0
	for _, c := range configs {
		root, ds := parseYAML(c.name, c.data)
		if root == nil || ds.HasErrors() {
			continue // not a YAML map: no schema-level verdict
		}
		inst, err := asJSON(c.data)
		if err != nil {
			t.Errorf("%s: armoriq reads it but YAML decoding for the JSON Schema fails: %v", c.name, err)
			continue
		}
		compared++
		schemaDiags := checkSchema(root)
		jsErr := rs.Validate(inst)
		if (jsErr == nil) == !schemaDiags.HasErrors() {
			if jsErr == nil {
				valid++
			}
			continue
		}
		if why, ok := schemaExceptions[c.name]; ok {
			t.Logf("%s: verdicts differ, as documented: %s", c.name, why)
			continue
		}
		t.Errorf("%s: JSON Schema says %v; armoriq validate's schema step says %v", c.name, errOrValid(jsErr), diagsOrValid(schemaDiags))
	}
	t.Logf("%d configs compared (%d valid, %d invalid) of %d found", compared, valid, compared-valid, len(configs))
	if valid == 0 || valid == compared {
		t.Errorf("%d valid of %d: want both valid and invalid configs compared", valid, compared)
	}
}

func errOrValid(err error) string {
	if err == nil {
		return "valid"
	}
	return err.Error()
}

func diagsOrValid(ds Diagnostics) string {
	if !ds.HasErrors() {
		return "valid"
	}
	return ds.Error()
}

// TestJSONSchemaIdentityProviders judges identity_providers with the JSON
// Schema as armoriq validate's schema step does: a valid provider is
// accepted, alg none, HMAC, plain http off loopback, a missing or empty
// audience and the rest are rejected by both. What only Go checks
// (duplicates, an empty algorithm list) passes the JSON Schema and fails
// Parse.
func TestJSONSchemaIdentityProviders(t *testing.T) {
	rs := compiledJSONSchema(t)
	const head = "version: v1\nidentity_providers:\n"
	const okta = "  - name: okta\n    issuer: https://example.okta.com/oauth2/default\n    audience: api://armoriq\n"
	for _, tc := range []struct {
		name, src   string
		schemaValid bool // the JSON Schema and armoriq's schema step
		goValid     bool // Parse, with the Go checks
	}{
		{"minimal provider", head + okta, true, true},
		{"full provider", head + okta + "    user_claim: preferred_username\n    groups_claim: groups\n    required_scopes: [mcp:tools, openid]\n    allowed_algorithms: [RS256, PS384, ES512, EdDSA]\n", true, true},
		{"two providers", head + okta + "  - name: kc\n    issuer: http://localhost:8080/realms/acme\n    audience: https://gw.example.com/mcp\n", true, true},
		{"http on ::1", head + "  - name: a\n    issuer: http://[::1]:4444\n    audience: api://a\n", true, true},
		{"alg none", head + okta + "    allowed_algorithms: [none]\n", false, false},
		{"alg HS256", head + okta + "    allowed_algorithms: [RS256, HS256]\n", false, false},
		{"alg in lower case", head + okta + "    allowed_algorithms: [rs256]\n", false, false},
		{"http issuer off loopback", head + "  - name: a\n    issuer: http://idp.example.com\n    audience: api://a\n", false, false},
		{"issuer with a query", head + "  - name: a\n    issuer: https://idp.example.com/?x=1\n    audience: api://a\n", false, false},
		{"issuer with a fragment", head + "  - name: a\n    issuer: \"https://idp.example.com/#x\"\n    audience: api://a\n", false, false},
		{"issuer as a $VAR", head + "  - name: a\n    issuer: $ISSUER\n    audience: api://a\n", false, false},
		{"missing audience", head + "  - name: a\n    issuer: https://idp.example.com\n", false, false},
		{"empty audience", head + "  - name: a\n    issuer: https://idp.example.com\n    audience: \"\"\n", false, false},
		{"audience with a space", head + "  - name: a\n    issuer: https://idp.example.com\n    audience: api://a b\n", false, false},
		{"audience not a URI (a warning)", head + "  - name: a\n    issuer: https://idp.example.com\n    audience: 0b6f6a1e-0000-4000-8000-000000000000\n", true, true},
		{"missing name", head + "  - issuer: https://idp.example.com\n    audience: api://a\n", false, false},
		{"name with a space", head + "  - name: a b\n    issuer: https://idp.example.com\n    audience: api://a\n", false, false},
		{"scope with a space", head + okta + "    required_scopes: [\"a b\"]\n", false, false},
		{"unknown key", head + okta + "    jwks_uri: https://example.okta.com/keys\n", false, false},
		{"duplicate name", head + okta + "  - name: okta\n    issuer: https://other.example.com\n    audience: api://a\n", true, false},
		{"duplicate issuer", head + okta + "  - name: other\n    issuer: https://example.okta.com/oauth2/default\n    audience: api://a\n", true, false},
		{"duplicate scope", head + okta + "    required_scopes: [a, a]\n", true, false},
		{"no algorithm", head + okta + "    allowed_algorithms: []\n", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst, err := asJSON([]byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			jsErr := rs.Validate(inst)
			root, _ := parseYAML("a.yaml", []byte(tc.src))
			schemaDiags := checkSchema(root)
			_, ds := Parse("a.yaml", []byte(tc.src))
			if (jsErr == nil) != tc.schemaValid || !schemaDiags.HasErrors() != tc.schemaValid || !ds.HasErrors() != tc.goValid {
				t.Errorf("input:\n%s\nJSON Schema: %v\nschema step: %v\nParse: %v\nwant schema-valid %v, valid %v",
					tc.src, errOrValid(jsErr), diagsOrValid(schemaDiags), diagsOrValid(ds), tc.schemaValid, tc.goValid)
			}
		})
	}
}

package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/encoding/jsonschema"
)

// JSONSchemaURL is where the JSON Schema of armoriq.yaml is published: the
// file schema/armoriq.schema.json of the repository at ref (a release tag,
// or "main"), which TestJSONSchemaFile keeps equal to JSONSchema's output.
func JSONSchemaURL(ref string) string {
	if !releaseTag.MatchString(ref) {
		ref = "main"
	}
	return "https://raw.githubusercontent.com/armoriq/controlplane/" + ref + "/schema/armoriq.schema.json"
}

var releaseTag = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

// JSONSchema returns a JSON Schema (draft 2020-12) of armoriq.yaml, for
// editors: the YAML language server (VS Code, JetBrains and others)
// completes and checks the file with it. It is generated from the CUE
// definitions by CUE's JSON Schema encoder, then corrected where the
// encoder falls short (see jsonSchemaFixes). It checks what the schema
// checks; what Go checks after it (unique ids, references between
// sections, `when` expressions, URLs, $VAR syntax, literal secrets) only
// "armoriq validate" reports.
func JSONSchema() ([]byte, error) {
	s, err := generatedJSONSchema()
	if err != nil {
		return nil, err
	}
	if err := jsonSchemaFixes(s); err != nil {
		return nil, fmt.Errorf("correcting the generated JSON Schema (has armoriq.cue changed?): %v", err)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// generatedJSONSchema is CUE's own JSON Schema of #Config, uncorrected.
func generatedJSONSchema() (map[string]any, error) {
	ctx := cuecontext.New()
	v := ctx.CompileBytes(cueSource, cue.Filename("armoriq.cue"))
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("compiling the schema: %v", err)
	}
	expr, err := jsonschema.Generate(v.LookupPath(cue.ParsePath("#Config")), &jsonschema.GenerateConfig{Version: jsonschema.VersionDraft2020_12})
	if err != nil {
		return nil, fmt.Errorf("generating JSON Schema: %v", err)
	}
	gen := ctx.BuildExpr(expr)
	if err := gen.Err(); err != nil {
		return nil, fmt.Errorf("generating JSON Schema: %v", err)
	}
	raw, err := gen.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("generating JSON Schema: %v", err)
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	return s, nil
}

// jsonSchemaFixes corrects what CUE's encoder (experimental in CUE v0.17)
// gets wrong for armoriq.cue, each a fix a test pins:
//
//   - #Server's url is required only with transport http: the encoder
//     drops the `if transport == ...` comprehensions and, as transport
//     defaults to "http", requires url always, rejecting every stdio and
//     plugin server. Replaced by if/then per transport.
//   - #Auth is encoded as `true` (anything): its conditional fields are
//     dropped. Written out: type, the per-type required key.
//   - #Test's args, an open struct ({...}), is encoded as `const: {}`,
//     rejecting any argument. Any object.
//   - #Rule's tools ([_, ...string] & [...string]) is encoded with
//     prefixItems, a 2020-12 keyword the YAML language server does not
//     fully read yet. Written as a non-empty list of strings, which every
//     draft since 4 reads the same.
//
// It also adds the $id, a title and descriptions for completion.
func jsonSchemaFixes(s map[string]any) error {
	defs, ok := s["$defs"].(map[string]any)
	if !ok {
		return fmt.Errorf("no $defs")
	}
	def := func(name string) (map[string]any, map[string]any, error) {
		d, ok := defs[name].(map[string]any)
		if !ok {
			return nil, nil, fmt.Errorf("no $defs.%s", name)
		}
		props, ok := d["properties"].(map[string]any)
		if !ok {
			return nil, nil, fmt.Errorf("$defs.%s has no properties", name)
		}
		return d, props, nil
	}

	server, sprops, err := def("Server")
	if err != nil {
		return err
	}
	if req := fmt.Sprint(server["required"]); req != "[id url]" {
		return fmt.Errorf("$defs.Server.required is %s, expected the encoder's [id url]", req)
	}
	server["required"] = []any{"id"}
	server["allOf"] = []any{
		ifThen("transport", nil, "http", []any{"url"}),
		ifThen("transport", "stdio", nil, []any{"command"}),
		ifThen("transport", "plugin", nil, []any{"path", "sha256"}),
	}
	sprops["url"] = map[string]any{"type": "string", "description": "The MCP server's URL (transport http, the default; required then)."}
	sprops["command"] = map[string]any{"type": "string", "description": "The command that starts the server (transport stdio; required then)."}
	sprops["path"] = map[string]any{"type": "string", "description": "The adapter plugin's binary (transport plugin; required then, with sha256)."}
	describeProp(sprops, "id", "The server's id: letters, digits, _ and -. Tools are named id/tool.")
	describeProp(sprops, "transport", "How the gateway reaches the server: http (default, with url), stdio (with command) or plugin (with path and sha256).")
	describeProp(sprops, "sha256", "The plugin binary's SHA-256, in hex (transport plugin).")
	describeProp(sprops, "protocol", "The newest MCP protocol version the gateway's adapter offers the server (transport http or stdio). Without it: 2026-07-28 first, then the initialize handshake. Below 2026-07-28: the initialize handshake at that version, for clients of both eras.")

	if a, ok := defs["Auth"]; !ok || a != true {
		return fmt.Errorf("$defs.Auth is %v, expected the encoder's true", a)
	}
	defs["Auth"] = map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"description":          "The credential the gateway sends to the MCP server.",
		"properties": map[string]any{
			"type":        map[string]any{"enum": []any{"bearer", "api_key"}},
			"token":       map[string]any{"type": "string", "description": "With type bearer: the token, usually a $VAR reference."},
			"api_key":     map[string]any{"type": "string", "description": "With type api_key: the key, usually a $VAR reference."},
			"header_name": map[string]any{"type": "string", "description": "The header that carries the key."},
		},
		"required": []any{"type"},
		"allOf": []any{
			ifThen("type", "bearer", nil, []any{"token"}),
			ifThen("type", "api_key", nil, []any{"api_key"}),
		},
	}

	_, tprops, err := def("Test")
	if err != nil {
		return err
	}
	if args, _ := json.Marshal(tprops["args"]); string(args) != `{"const":{}}` {
		return fmt.Errorf("$defs.Test.properties.args is %s, expected the encoder's {\"const\":{}}", args)
	}
	tprops["args"] = map[string]any{"type": "object", "description": "The call's arguments, as the tool takes them."}

	_, rprops, err := def("Rule")
	if err != nil {
		return err
	}
	if tools, _ := json.Marshal(rprops["tools"]); !bytes.Contains(tools, []byte(`"prefixItems"`)) {
		return fmt.Errorf("$defs.Rule.properties.tools is %s, expected the encoder's prefixItems", tools)
	}
	rprops["tools"] = map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "minItems": 1,
		"description": "The tools the rule applies to, as server/tool; * and ? match many."}

	props, ok := s["properties"].(map[string]any)
	if !ok {
		return fmt.Errorf("no properties")
	}
	s["$id"] = JSONSchemaURL("")
	s["title"] = "armoriq.yaml"
	s["description"] = "The armoriq control plane's config: MCP servers, who may call which tool, and policy tests. Checked in full by `armoriq validate`."
	describeProp(props, "version", "The config format's version: v1.")
	describeProp(props, "identity", "The ArmorIQ SDK's identity block.")
	describeProp(props, "environment", "sandbox or production.")
	describeProp(props, "mcp_servers", "The MCP servers the gateway forwards tool calls to.")
	describeProp(props, "groups", "Named groups of users (emails, *@domain).")
	describeProp(props, "policy", "Who may call which tool: allow/deny lists and rules.")
	describeProp(props, "intent", "Intent token settings.")
	describeProp(props, "tests", "Policy tests run by `armoriq test` and `armoriq check`.")
	describeProp(props, "gateways", "Gateways the reconciler pushes bundles to.")
	describeProp(props, "identity_providers", "OAuth 2.0 / OpenID Connect issuers whose JWT access tokens the gateway accepts: the end user is the token's user claim.")
	return nil
}

// ifThen is {"if": {properties: {key: {const: value}}}, "then": {required}}.
// With absent set, it also applies when key is absent (its default).
func ifThen(key string, value, absent any, required []any) map[string]any {
	cond := map[string]any{"properties": map[string]any{key: map[string]any{"const": value}}, "required": []any{key}}
	if value == nil {
		// Absent, or equal to the default.
		cond = map[string]any{"anyOf": []any{
			map[string]any{"not": map[string]any{"required": []any{key}}},
			map[string]any{"properties": map[string]any{key: map[string]any{"const": absent}}, "required": []any{key}},
		}}
	}
	return map[string]any{"if": cond, "then": map[string]any{"required": required}}
}

func describeProp(props map[string]any, key, text string) {
	if p, ok := props[key].(map[string]any); ok {
		p["description"] = text
	}
}

package gateway

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// A tool's x-mcp-header parameters (SEP-2243): a 2026-07-28 client sends
// the value of each as an Mcp-Param-<Name> header too, and the SDK's
// server refuses a tools/call whose headers do not match its arguments.
// The fast path checks them as the SDK does (go-sdk v1.8.0,
// mcp/streamable_headers.go: extractParamHeaderAnnotations and
// validateParamHeaders), so that such a tool's calls take the fast path
// too; a call the check refuses goes to the SDK, which answers with its
// exact error. TestMCPToolCallPaths holds the two to the same answers.

// paramHeader is a (possibly nested) argument carried in a header.
type paramHeader struct {
	path   []string // property names, from the arguments object down
	header string   // the header's name after "Mcp-Param-"
}

// paramHeaders returns the x-mcp-header parameters of a tool's input
// schema, and whether it read the schema as the SDK does. It reads only
// what the SDK's decoding reads (properties, their type and x-mcp-header,
// at any depth); a schema in which one of these is not of the type the
// SDK decodes it into, where the SDK would find no parameters at all, is
// reported as not read (ok false): its tool stays on the SDK's path.
func paramHeaders(schema any) (hs []paramHeader, ok bool) {
	b, err := json.Marshal(schema)
	if err != nil {
		return nil, false
	}
	var m map[string]any // exact keys, as the SDK's decoder matches them
	if json.Unmarshal(b, &m) != nil {
		return nil, false
	}
	return collectParamHeaders(m, nil, nil)
}

func collectParamHeaders(node map[string]any, prefix []string, out []paramHeader) ([]paramHeader, bool) {
	if t, ok := node["type"]; ok && t != nil {
		if _, ok := t.(string); !ok {
			return nil, false
		}
	}
	props, ok := node["properties"]
	if !ok || props == nil {
		return out, true
	}
	pm, ok := props.(map[string]any)
	if !ok {
		return nil, false
	}
	for name, p := range pm {
		if p == nil {
			continue
		}
		sub, ok := p.(map[string]any)
		if !ok {
			return nil, false
		}
		path := append(append([]string(nil), prefix...), name)
		if h, _ := sub["x-mcp-header"].(string); h != "" {
			out = append(out, paramHeader{path: path, header: h})
		}
		if out, ok = collectParamHeaders(sub, path, out); !ok {
			return nil, false
		}
	}
	return out, true
}

// paramHeadersMatch reports whether the Mcp-Param-* headers of h agree
// with the arguments of a tools/call as the SDK requires of a 2026-07-28
// request: each parameter present (and not null) in the arguments has its
// header, with the same value; an absent one has none.
func paramHeadersMatch(h http.Header, args bodyJSON, hs []paramHeader) bool {
	if len(hs) == 0 {
		return true
	}
	var obj map[string]bodyJSON
	if len(args) > 0 {
		if json.Unmarshal(args, &obj) != nil {
			// The SDK checks nothing when the arguments are not an
			// object (the call is then refused as invalid arguments).
			return true
		}
	}
	for _, p := range hs {
		v := h.Get("Mcp-Param-" + p.header)
		arg, found := lookupArg(obj, p.path)
		if !found || string(arg) == "null" {
			if v != "" {
				return false
			}
			continue
		}
		if v == "" {
			return false
		}
		s, ok := decodeParamHeader(v)
		if !ok {
			return false
		}
		val, ok := headerPrimitive(arg)
		if !ok || !primitiveMatches(s, val) {
			return false
		}
	}
	return true
}

// lookupArg finds the value at path in the arguments object.
func lookupArg(args map[string]bodyJSON, path []string) (bodyJSON, bool) {
	cur, ok := args[path[0]]
	if !ok {
		return nil, false
	}
	for _, part := range path[1:] {
		var obj map[string]bodyJSON
		if json.Unmarshal(cur, &obj) != nil {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// headerPrimitive decodes an argument a header may carry: a string, a
// boolean, or an integer within ±(2^53-1).
func headerPrimitive(raw bodyJSON) (any, bool) {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil, false
	}
	switch t := v.(type) {
	case string, bool:
		return t, true
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) || t != math.Trunc(t) || t < -(1<<53-1) || t > 1<<53-1 {
			return nil, false
		}
		return int64(t), true
	}
	return nil, false
}

// primitiveMatches compares a header's decoded value with the argument's.
func primitiveMatches(h string, v any) bool {
	switch t := v.(type) {
	case int64:
		f, err := strconv.ParseFloat(h, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || f < -(1<<53-1) || f > 1<<53-1 {
			return false
		}
		return int64(f) == t
	case bool:
		return h == strconv.FormatBool(t)
	case string:
		return h == t
	}
	return false
}

// decodeParamHeader undoes the =?base64?…?= wrapping of a header value.
func decodeParamHeader(v string) (string, bool) {
	if enc, ok := strings.CutPrefix(v, "=?base64?"); ok {
		if enc, ok = strings.CutSuffix(enc, "?="); ok {
			b, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				return "", false
			}
			return string(b), true
		}
	}
	return v, true
}

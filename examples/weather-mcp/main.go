// Command weather-mcp is a custom armoriq adapter: a standalone program that
// serves the adapter contract (package plugins) itself, with one tool,
// get_weather, that answers offline. It is the smallest complete adapter,
// to copy when writing your own. See README.md.
//
// Build it, pin its digest in armoriq.yaml, and the gateway runs it:
//
//	go build -o weather-mcp ./examples/weather-mcp
//	sha256sum weather-mcp
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/armoriq/controlplane/plugins"
)

func main() { plugins.Serve(&weather{}) }

// weather implements plugins.Adapter. There is no upstream server: the
// adapter answers MCP requests itself, as MCP JSON.
type weather struct {
	id string
}

var _ plugins.Adapter = (*weather)(nil)

// JSON-RPC error codes used below (MCP uses JSON-RPC's).
const (
	codeInvalidParams    = -32602
	codeResourceNotFound = -32002
)

func (w *weather) Configure(_ context.Context, cfg plugins.ServerConfig) error {
	w.id = cfg.ID
	return nil
}

var tools = json.RawMessage(`{"tools":[{
  "name": "get_weather",
  "description": "Current weather for a city (a deterministic offline answer derived from its name).",
  "inputSchema": {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name, e.g. Boston"}},
    "required": ["city"]
  }
}]}`)

func (w *weather) ListTools(context.Context, string) (json.RawMessage, error) { return tools, nil }

// Report is get_weather's structured result.
type Report struct {
	City        string `json:"city"`
	TempC       int    `json:"temp_c"`
	Conditions  string `json:"conditions"`
	HumidityPct int    `json:"humidity_pct"`
}

var conditions = []string{"sunny", "partly cloudy", "cloudy", "light rain", "rain", "windy", "fog", "snow"}

// forecast derives a stable report from the city's name: the same city
// always gets the same weather, whatever the case or surrounding spaces.
func forecast(city string) Report {
	city = strings.TrimSpace(city)
	h := fnv.New64a()
	h.Write([]byte(strings.ToLower(city)))
	n := h.Sum64()
	return Report{
		City:        city,
		TempC:       int(n%45) - 10, // -10..34
		Conditions:  conditions[(n/45)%uint64(len(conditions))],
		HumidityPct: 20 + int((n/360)%76), // 20..95
	}
}

func (w *weather) CallTool(_ context.Context, name string, args json.RawMessage, _ func(plugins.Progress)) (json.RawMessage, error) {
	if name != "get_weather" {
		return nil, &plugins.RPCError{Code: codeInvalidParams, Message: fmt.Sprintf("unknown tool %q", name)}
	}
	var in struct {
		City string `json:"city"`
	}
	if len(args) > 0 {
		if err := json.Unmarshal(args, &in); err != nil {
			return nil, &plugins.RPCError{Code: codeInvalidParams, Message: "arguments: " + err.Error()}
		}
	}
	if strings.TrimSpace(in.City) == "" {
		// A tool error is a result the model can read, not a protocol error.
		return toolResult(true, "get_weather needs a city", nil)
	}
	r := forecast(in.City)
	return toolResult(false, fmt.Sprintf("Weather in %s: %d°C, %s, humidity %d%%", r.City, r.TempC, r.Conditions, r.HumidityPct), r)
}

// toolResult builds an MCP CallToolResult.
func toolResult(isError bool, text string, structured any) (json.RawMessage, error) {
	type content struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	return json.Marshal(struct {
		Content           []content `json:"content"`
		StructuredContent any       `json:"structuredContent,omitempty"`
		IsError           bool      `json:"isError,omitempty"`
	}{[]content{{"text", text}}, structured, isError})
}

func (w *weather) ListResources(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"resources":[]}`), nil
}

func (w *weather) ReadResource(_ context.Context, uri string) (json.RawMessage, error) {
	return nil, &plugins.RPCError{Code: codeResourceNotFound, Message: "resource not found: " + uri}
}

func (w *weather) ListPrompts(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"prompts":[]}`), nil
}

func (w *weather) GetPrompt(_ context.Context, name string, _ map[string]string) (json.RawMessage, error) {
	return nil, &plugins.RPCError{Code: codeInvalidParams, Message: fmt.Sprintf("unknown prompt %q", name)}
}

func (w *weather) Health(context.Context) error { return nil }

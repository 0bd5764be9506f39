// Package weather is the demo MCP server shipped inside the armoriq binary
// ("armoriq demo-server weather"): the quickstart's weather-mcp, with the
// tools get_weather and get_forecast. It needs no network: every answer is
// derived from the city's name, so the same question always gets the same
// answer, on any machine, offline.
//
// It is a real MCP server (the official Go SDK's), reached by the gateway
// through the built-in stdio adapter like any other stdio server.
package weather

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MaxDays is the longest forecast get_forecast gives.
const MaxDays = 16

// Report is get_weather's structured result.
type Report struct {
	City        string `json:"city"`
	TempC       int    `json:"temp_c"`
	Conditions  string `json:"conditions"`
	HumidityPct int    `json:"humidity_pct"`
}

// Day is one day of a forecast.
type Day struct {
	Day        int    `json:"day"` // 1 is tomorrow
	HighC      int    `json:"high_c"`
	LowC       int    `json:"low_c"`
	Conditions string `json:"conditions"`
}

// Forecast is get_forecast's structured result.
type Forecast struct {
	City string `json:"city"`
	Days []Day  `json:"days"`
}

var conditions = []string{"sunny", "partly cloudy", "cloudy", "light rain", "rain", "windy", "fog", "snow"}

// seed hashes the city's name, ignoring case and surrounding spaces, with
// salt so that different days differ.
func seed(city string, salt int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d", strings.ToLower(strings.TrimSpace(city)), salt)
	return h.Sum64()
}

// Current is the weather in city now.
func Current(city string) Report {
	n := seed(city, 0)
	return Report{
		City:        strings.TrimSpace(city),
		TempC:       int(n%45) - 10, // -10..34
		Conditions:  conditions[(n/45)%uint64(len(conditions))],
		HumidityPct: 20 + int((n/360)%76), // 20..95
	}
}

// ForecastFor is the forecast for city over days days (1..MaxDays).
func ForecastFor(city string, days int) Forecast {
	f := Forecast{City: strings.TrimSpace(city)}
	for d := 1; d <= days; d++ {
		n := seed(city, d)
		low := int(n%40) - 12
		f.Days = append(f.Days, Day{
			Day: d, LowC: low, HighC: low + 3 + int((n/40)%10),
			Conditions: conditions[(n/400)%uint64(len(conditions))],
		})
	}
	return f
}

// NewServer returns the weather MCP server.
func NewServer(version string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "weather-mcp", Title: "Weather (armoriq demo)", Version: version}, nil)
	s.AddTool(&mcp.Tool{
		Name:        "get_weather",
		Description: "Current weather for a city (deterministic demo data, offline).",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string","description":"City name, e.g. Boston"}},"required":["city"]}`),
	}, getWeather)
	s.AddTool(&mcp.Tool{
		Name:        "get_forecast",
		Description: fmt.Sprintf("Daily forecast for a city, 1 to %d days (deterministic demo data, offline).", MaxDays),
		InputSchema: json.RawMessage(fmt.Sprintf(`{"type":"object","properties":{"city":{"type":"string","description":"City name, e.g. Boston"},"days":{"type":"integer","minimum":1,"maximum":%d,"description":"Number of days, default 3"}},"required":["city"]}`, MaxDays)),
	}, getForecast)
	return s
}

// args decodes a call's arguments; a tool error (readable by the model)
// when they do not fit.
type args struct {
	City string `json:"city"`
	Days *int   `json:"days"`
}

func decodeArgs(req *mcp.CallToolRequest) (args, *mcp.CallToolResult) {
	var a args
	if raw := req.Params.Arguments; len(raw) > 0 {
		if err := json.Unmarshal(raw, &a); err != nil {
			return a, toolError("arguments: %v", err)
		}
	}
	a.City = strings.TrimSpace(a.City)
	switch {
	case a.City == "":
		return a, toolError("%s needs a city", req.Params.Name)
	case utf8.RuneCountInString(a.City) > 100:
		return a, toolError("city is longer than 100 characters")
	}
	return a, nil
}

func getWeather(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, bad := decodeArgs(req)
	if bad != nil {
		return bad, nil
	}
	r := Current(a.City)
	return &mcp.CallToolResult{
		Content:           []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("Weather in %s: %d°C, %s, humidity %d%%", r.City, r.TempC, r.Conditions, r.HumidityPct)}},
		StructuredContent: r,
	}, nil
}

func getForecast(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, bad := decodeArgs(req)
	if bad != nil {
		return bad, nil
	}
	days := 3
	if a.Days != nil {
		days = *a.Days
	}
	if days < 1 || days > MaxDays {
		return toolError("days must be between 1 and %d, got %d", MaxDays, days), nil
	}
	f := ForecastFor(a.City, days)
	var b strings.Builder
	fmt.Fprintf(&b, "Forecast for %s:", f.City)
	for _, d := range f.Days {
		fmt.Fprintf(&b, "\nday %d: %s, %d..%d°C", d.Day, d.Conditions, d.LowC, d.HighC)
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: b.String()}}, StructuredContent: f}, nil
}

func toolError(format string, a ...any) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, a...)}}}
}

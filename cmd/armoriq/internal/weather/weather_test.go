package weather

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func connect(t *testing.T) *mcp.ClientSession {
	t.Helper()
	ctx := context.Background()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := NewServer("test").Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func TestTools(t *testing.T) {
	cs := connect(t)
	ctx := context.Background()
	lt, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range lt.Tools {
		names = append(names, tl.Name)
	}
	if got, want := strings.Join(names, ","), "get_forecast,get_weather"; got != want {
		t.Errorf("tools: got %s, want %s", got, want)
	}

	tests := []struct {
		name, tool string
		args       map[string]any
		wantErr    bool
		wantText   string
	}{
		{"weather", "get_weather", map[string]any{"city": "Boston"}, false, "Weather in Boston: "},
		{"weather ignores case and spaces", "get_weather", map[string]any{"city": "  boston "}, false, "Weather in boston: "},
		{"forecast default 3 days", "get_forecast", map[string]any{"city": "Paris"}, false, "day 3: "},
		{"forecast 14 days", "get_forecast", map[string]any{"city": "Paris", "days": 14}, false, "day 14: "},
		{"no city", "get_weather", map[string]any{}, true, "get_weather needs a city"},
		{"too many days", "get_forecast", map[string]any{"city": "Paris", "days": 17}, true, "days must be between 1 and 16, got 17"},
		{"zero days", "get_forecast", map[string]any{"city": "Paris", "days": 0}, true, "days must be between 1 and 16, got 0"},
		{"city not a string", "get_weather", map[string]any{"city": 7}, true, "arguments: "},
		{"long city", "get_weather", map[string]any{"city": strings.Repeat("x", 101)}, true, "longer than 100"},
	}
	for _, tc := range tests {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		text := res.Content[0].(*mcp.TextContent).Text
		if res.IsError != tc.wantErr || !strings.Contains(text, tc.wantText) {
			t.Errorf("%s: got isError=%v %q, want isError=%v containing %q", tc.name, res.IsError, text, tc.wantErr, tc.wantText)
		}
	}
}

// TestDeterministic: the same city gets the same answer, whatever its case.
func TestDeterministic(t *testing.T) {
	a, b := Current("Boston"), Current(" BOSTON")
	if a.TempC != b.TempC || a.Conditions != b.Conditions || a.HumidityPct != b.HumidityPct {
		t.Errorf("Boston and BOSTON differ: %+v, %+v", a, b)
	}
	f1, _ := json.Marshal(ForecastFor("Oslo", 5).Days)
	f2, _ := json.Marshal(ForecastFor("oslo", 5).Days)
	if string(f1) != string(f2) {
		t.Errorf("forecasts differ: %s, %s", f1, f2)
	}
	for _, d := range ForecastFor("Oslo", MaxDays).Days {
		if d.HighC <= d.LowC {
			t.Errorf("day %d: high %d not above low %d", d.Day, d.HighC, d.LowC)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/armoriq/controlplane/plugins"
)

func TestGetWeather(t *testing.T) {
	w := &weather{}
	ctx := context.Background()
	for _, tc := range []struct {
		args string
		want string
	}{
		{`{"city":"Boston"}`, "Weather in Boston: 2°C, sunny, humidity 87%"},
		{`{"city":"  boston "}`, "Weather in boston: 2°C, sunny, humidity 87%"},
		{`{"city":"Paris"}`, "Weather in Paris: 12°C, cloudy, humidity 38%"},
	} {
		raw, err := w.CallTool(ctx, "get_weather", json.RawMessage(tc.args), nil)
		if err != nil {
			t.Fatalf("get_weather(%s): %v", tc.args, err)
		}
		var res struct {
			Content []struct{ Text string }
			IsError bool
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatal(err)
		}
		if res.IsError || len(res.Content) != 1 || res.Content[0].Text != tc.want {
			t.Errorf("get_weather(%s) = %s, want text %q", tc.args, raw, tc.want)
		}
	}

	raw, err := w.CallTool(ctx, "get_weather", json.RawMessage(`{}`), nil)
	if err != nil || !json.Valid(raw) || string(raw) != `{"content":[{"type":"text","text":"get_weather needs a city"}],"isError":true}` {
		t.Errorf("get_weather({}) = %s, %v; want a tool error", raw, err)
	}
	var rpcErr *plugins.RPCError
	if _, err := w.CallTool(ctx, "get_forecast", nil, nil); !errors.As(err, &rpcErr) || rpcErr.Code != codeInvalidParams {
		t.Errorf("unknown tool: got %v, want an invalid-params RPCError", err)
	}
	if raw, _ := w.ListTools(ctx, ""); !json.Valid(raw) {
		t.Errorf("ListTools returns invalid JSON: %s", raw)
	}
}

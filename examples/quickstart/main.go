// Command quickstart is the seeds' quickstart on armoriq's Go SDK
// (runtime/client): one agent key, a plan, an intent token, and a tool call
// for each of two end users, against the gateway of armoriq up:
//
//	go run ./cmd/armoriq up                                              # terminal 1
//	ARMORIQ_API_KEY=$(cat .armoriq/agent.key) go run ./examples/quickstart   # terminal 2
//
// ARMORIQ_ENDPOINT names another gateway (default http://127.0.0.1:8080).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/armoriq/controlplane/runtime/client"
	"github.com/armoriq/controlplane/runtime/intent"
)

func main() {
	endpoint := os.Getenv("ARMORIQ_ENDPOINT")
	if endpoint == "" {
		endpoint = "http://127.0.0.1:8080"
	}
	// The key comes from ARMORIQ_API_KEY.
	if err := run(context.Background(), os.Stdout, client.Options{Endpoint: endpoint, UserID: "quickstart", AgentID: "weather-agent"}); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// run plays the quickstart and returns an error when the gateway does not
// answer as examples/quickstart/armoriq.yaml says it should.
func run(ctx context.Context, w io.Writer, opts client.Options) error {
	c, err := client.New(opts)
	if err != nil {
		return err
	}
	if err := c.Health(ctx); err != nil {
		return fmt.Errorf("gateway %s: %w (is armoriq up running?)", c.ProxyEndpoint(), err)
	}

	// 1. Capture the plan: what the agent is about to do, with its arguments.
	args := map[string]any{"city": "Boston"}
	plan, err := c.CapturePlan("What is the weather in Boston?", []intent.Step{
		{Action: "get_weather", MCP: "weather-mcp", Params: args},
	})
	if err != nil {
		return err
	}
	// 2. Get an intent token: the gateway signs this plan and nothing else.
	token, err := c.GetIntentToken(ctx, plan)
	if err != nil {
		return fmt.Errorf("intent token: %w", err)
	}
	fmt.Fprintf(w, "token %s for plan %s…\n", token.TokenID, token.PlanHash[:16])

	// 3. Call the tool for alice@customer.com: the policy allows her.
	res, err := c.Invoke(ctx, "weather-mcp", "get_weather", token, args, client.UserEmail("alice@customer.com"))
	if err != nil {
		return fmt.Errorf("get_weather for alice: %w", err)
	}
	// The result is the MCP server's CallToolResult.
	var out struct {
		Content []struct{ Text string } `json:"content"`
	}
	if err := json.Unmarshal(res.Result, &out); err != nil || len(out.Content) == 0 {
		return fmt.Errorf("get_weather for alice: unexpected result %s", res.Result)
	}
	fmt.Fprintf(w, "alice@customer.com: %s\n", out.Content[0].Text)

	// 4. The same call for bob@customer.com: a rule denies him.
	_, err = c.Invoke(ctx, "weather-mcp", "get_weather", token, args, client.UserEmail("bob@customer.com"))
	var ce *client.Error
	if !errors.As(err, &ce) || !errors.Is(err, client.ErrPolicyBlocked) {
		return fmt.Errorf("get_weather for bob: want blocked by policy, got %v", err)
	}
	fmt.Fprintf(w, "bob@customer.com: blocked by rule %v: %s\n", ce.Metadata["rule"], ce.Reason)
	return nil
}

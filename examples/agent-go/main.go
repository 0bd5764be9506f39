// Command agent-go is a small agent written with armoriq's Go SDK
// (runtime/client). Against a gateway running examples/quickstart it shows
// what the gateway decides: a plan with a forbidden tool refused at issue
// time, an allowed call, a call held for a human, and a call whose
// parameters differ from the signed plan.
//
//	go run ./cmd/armoriq gateway --config examples/quickstart/armoriq.yaml &
//	ARMORIQ_API_KEY=$(go run ./cmd/armoriq keys create --name demo --role agent --agent support-agent \
//	    --api-key-file .armoriq-data/admin.key) go run ./examples/agent-go
package main

import (
	"context"
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
	if err := run(context.Background(), os.Stdout, client.Options{
		Endpoint: endpoint, UserID: "ana@example.com", AgentID: "support-agent",
	}); err != nil {
		fmt.Fprintln(os.Stderr, "agent-go:", err)
		os.Exit(1)
	}
}

// run plays the scenario; the key comes from opts or ARMORIQ_API_KEY.
func run(ctx context.Context, w io.Writer, opts client.Options) error {
	c, err := client.New(opts)
	if err != nil {
		return err
	}
	if err := c.Health(ctx); err != nil {
		return fmt.Errorf("gateway health: %w", err)
	}

	// 1. A plan that deletes a repository: github/delete_* is denied.
	bad, err := c.CapturePlan("clean up", []intent.Step{
		{Action: "get_issue", MCP: "github", Params: map[string]any{"owner": "acme", "repo": "app", "issue_number": 7}},
		{Action: "delete_repository", MCP: "github", Params: map[string]any{"owner": "acme", "repo": "app"}},
	})
	if err != nil {
		return err
	}
	_, err = c.GetIntentToken(ctx, bad)
	fmt.Fprintf(w, "plan with github/delete_repository: %s\n", outcome(nil, err))

	// 2. A plan the policy accepts: read an issue, file an urgent ticket.
	plan, err := c.CapturePlan("triage a refund", []intent.Step{
		{Action: "get_issue", MCP: "github", Params: map[string]any{"owner": "acme", "repo": "app", "issue_number": 7}},
		{Action: "create_issue", MCP: "linear", Params: map[string]any{"title": "refund for #7", "priority": 1}},
	})
	if err != nil {
		return err
	}
	tok, err := c.GetIntentToken(ctx, plan)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintf(w, "token %s for plan %s (%d steps)\n", tok.TokenID, tok.PlanHash[:12], len(tok.StepProofs))

	d, err := c.Enforce(ctx, "github", "get_issue", tok, map[string]any{"owner": "acme", "repo": "app", "issue_number": 7})
	fmt.Fprintf(w, "github/get_issue: %s\n", outcome(d, err))
	d, err = c.Enforce(ctx, "linear", "create_issue", tok, map[string]any{"title": "refund for #7", "priority": 1})
	fmt.Fprintf(w, "linear/create_issue (priority 1): %s\n", outcome(d, err))
	_, err = c.Invoke(ctx, "github", "get_issue", tok, map[string]any{"owner": "acme", "repo": "secrets", "issue_number": 1})
	fmt.Fprintf(w, "github/get_issue with other parameters: %s\n", outcome(nil, err))
	return nil
}

// outcome says what the gateway decided, in one line.
func outcome(d *client.Decision, err error) string {
	var ce *client.Error
	switch {
	case err == nil && d != nil:
		return fmt.Sprintf("%s (%s)", d.Action, d.Reason)
	case err == nil:
		return "allowed"
	case errors.Is(err, client.ErrPolicyBlocked):
		return "blocked: " + err.Error()
	case errors.Is(err, client.ErrIntentMismatch):
		return "refused, not the signed plan: " + err.Error()
	case errors.As(err, &ce):
		return string(ce.Kind) + ": " + err.Error()
	default:
		return "error: " + err.Error()
	}
}

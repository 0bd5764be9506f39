package client_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/armoriq/controlplane/runtime/client"
	"github.com/armoriq/controlplane/runtime/intent"
)

// The whole flow: a plan, a token bound to it, a call, and the errors a
// caller tells apart.
func Example() {
	ctx := context.Background()
	// The key, user and agent come from ARMORIQ_API_KEY, USER_ID and AGENT_ID.
	c, err := client.New(client.Options{Endpoint: "https://gateway.example"})
	if err != nil {
		fmt.Println(err) // configuration: API key is required: ...
		return
	}
	params := map[string]any{"query": "status:500", "limit": 200}
	plan, err := c.CapturePlan("triage the incident", []intent.Step{
		{Action: "search_logs", MCP: "logs", Params: params},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	tok, err := c.GetIntentToken(ctx, plan, client.Validity(2*time.Minute), client.UserEmail("ana@example.com"))
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := c.Invoke(ctx, "logs", "search_logs", tok, params, client.UserEmail("ana@example.com"))
	var e *client.Error
	switch {
	case errors.Is(err, client.ErrPolicyHold) && errors.As(err, &e):
		fmt.Println("held for approval:", e.Reason, e.DelegationContext)
	case errors.Is(err, client.ErrPolicyBlocked):
		fmt.Println("blocked:", err)
	case errors.Is(err, client.ErrIntentMismatch):
		fmt.Println("not the planned call:", err)
	case errors.Is(err, client.ErrTokenExpired):
		fmt.Println("token expired: get a new one")
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println(string(res.Result))
	}
}

// Package client is the Go SDK of an armoriq gateway: it captures a plan,
// gets an intent token bound to it and invokes tools through the gateway's
// ArmorIQ-compatible HTTP API (docs/intent.md, armoriq-compat.md), with the
// official SDKs' flow, wire format and errors.
//
//	c, err := client.New(client.Options{Endpoint: "https://gw.example"})
//	plan, err := c.CapturePlan("triage", []intent.Step{{Action: "search_logs", MCP: "logs", Params: params}})
//	tok, err := c.GetIntentToken(ctx, plan)
//	res, err := c.Invoke(ctx, "logs", "search_logs", tok, params)
//
// Errors are *Error values whose Kind matches one of the sentinels (ErrPolicyBlocked,
// ErrIntentMismatch, ...) with errors.Is.
package client

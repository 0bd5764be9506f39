package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

func keysCommand() *command {
	return &command{
		Use:   "keys",
		Short: "Create, list and revoke the gateway's API keys",
		Long: `Manage a running gateway's API keys through its admin API.

A key's role is fixed when it is created: admin (everything), agent (tokens,
invoke, MCP) or viewer (status and audit). A revoked key is refused on its
next request, and calls in flight with it are cancelled.`,
		Sub: []*command{keysCreateCommand(), keysListCommand(), keysRevokeCommand()},
	}
}

type keyInfo struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Role        string     `json:"role"`
	Agent       string     `json:"agent,omitempty"`
	AssertUsers bool       `json:"assert_users,omitempty"`
	Last4       string     `json:"last4"`
	CreatedAt   time.Time  `json:"created_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Key         string     `json:"key,omitempty"`
}

func keysCreateCommand() *command {
	var g gatewayFlags
	var name, role, agent string
	var asJSON, assertUsers bool
	return &command{
		Use:     "create --name NAME --role admin|agent|viewer [--agent AGENT] [--assert-users]",
		Short:   "Create an API key (shown once)",
		Example: "  armoriq keys create --name ci-agent --role agent --api-key-file .armoriq-data/admin.key",
		Flags: func(fs *pflag.FlagSet) {
			g.register(fs)
			fs.StringVar(&name, "name", "", "a name for the key (who or what uses it)")
			fs.StringVar(&role, "role", "agent", "role: admin, agent or viewer")
			fs.StringVar(&agent, "agent", "", "the agent identity policy rules' agents: match for calls with this key (default: the key's name); callers cannot choose it")
			fs.BoolVar(&assertUsers, "assert-users", false, "let calls with this agent key name their end user in the X-Armoriq-User header (a service acting for its users); without it the header is refused")
			fs.BoolVar(&asJSON, "json", false, "print the answer as JSON")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if name == "" {
				return usageErrorf("--name is required")
			}
			if role != "admin" && role != "agent" && role != "viewer" {
				return usageErrorf("--role must be admin, agent or viewer, got %q", role)
			}
			if assertUsers && role != "agent" {
				return usageErrorf("--assert-users is for agent keys, not %s keys", role)
			}
			c, err := g.client(e)
			if err != nil {
				return err
			}
			var k keyInfo
			body := map[string]any{"name": name, "role": role, "agent": agent, "assert_users": assertUsers}
			if err := c.do(ctx, "POST", "/v1/keys", body, &k); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(e.Stdout).Encode(k)
			}
			fmt.Fprintln(e.Stdout, k.Key)
			fmt.Fprintf(e.Stderr, "created %s key %s (%s); the key above is shown only once\n", k.Role, k.ID, k.Name)
			return nil
		},
	}
}

func keysListCommand() *command {
	var g gatewayFlags
	var asJSON bool
	return &command{
		Use:   "list",
		Short: "List API keys",
		Flags: func(fs *pflag.FlagSet) {
			g.register(fs)
			fs.BoolVar(&asJSON, "json", false, "print JSON")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			c, err := g.client(e)
			if err != nil {
				return err
			}
			var out struct {
				Keys []keyInfo `json:"keys"`
			}
			if err := c.do(ctx, "GET", "/v1/keys", nil, &out); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(e.Stdout).Encode(out)
			}
			tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tAGENT\tASSERTS USERS\tKEY\tCREATED\tREVOKED")
			for _, k := range out.Keys {
				rev := "-"
				if k.RevokedAt != nil {
					rev = k.RevokedAt.Format(time.RFC3339)
				}
				agent := k.Agent
				if agent == "" {
					agent = k.Name
				}
				asserts := "no"
				if k.AssertUsers {
					asserts = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t…%s\t%s\t%s\n", k.ID, k.Name, k.Role, agent, asserts, k.Last4, k.CreatedAt.Format(time.RFC3339), rev)
			}
			return tw.Flush()
		},
	}
}

func keysRevokeCommand() *command {
	var g gatewayFlags
	return &command{
		Use:     "revoke ID",
		Short:   "Revoke an API key at once (idempotent)",
		MinArgs: 1, MaxArgs: 1,
		Flags: g.register,
		Run: func(ctx context.Context, e *env, args []string) error {
			c, err := g.client(e)
			if err != nil {
				return err
			}
			var out struct {
				ID        string    `json:"id"`
				RevokedAt time.Time `json:"revoked_at"`
			}
			if err := c.do(ctx, "DELETE", "/v1/keys/"+url.PathEscape(args[0]), nil, &out); err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "revoked %s at %s\n", out.ID, out.RevokedAt.Format(time.RFC3339))
			return nil
		},
	}
}

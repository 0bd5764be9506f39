package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

func approvalsCommand() *command {
	return &command{
		Use:   "approvals",
		Short: "List, show, approve and deny approvals of held calls",
		Long: `A call the policy holds waits for a person: it becomes an approval bound
to exactly that call (token, plan step, server, tool, arguments). Who may
decide: the approvers the holding rule names, else any admin; never the
caller. An approved call runs once when retried; approvals expire.`,
		Sub: []*command{approvalsListCommand(), approvalsShowCommand(), approvalsDecideCommand(true), approvalsDecideCommand(false)},
	}
}

type approvalInfo struct {
	ID         string          `json:"id"`
	State      string          `json:"state"`
	CreatedAt  time.Time       `json:"created_at"`
	ExpiresAt  time.Time       `json:"expires_at"`
	TokenID    string          `json:"token_id"`
	Step       int64           `json:"step"`
	Server     string          `json:"server"`
	Tool       string          `json:"tool"`
	ArgsHash   string          `json:"args_hash"`
	Arguments  json.RawMessage `json:"arguments"`
	User       string          `json:"user"`
	Agent      string          `json:"agent"`
	Rule       string          `json:"rule"`
	Reason     string          `json:"reason"`
	Approvers  []string        `json:"approvers"`
	Requester  string          `json:"requester"`
	DecidedBy  string          `json:"decided_by"`
	DecidedAt  time.Time       `json:"decided_at"`
	Comment    string          `json:"comment"`
	ExecutedAt time.Time       `json:"executed_at"`
}

func approvalsListCommand() *command {
	var g gatewayFlags
	var state string
	var asJSON bool
	return &command{
		Use:   "list",
		Short: "List approvals, pending first",
		Flags: func(fs *pflag.FlagSet) {
			g.register(fs)
			fs.StringVar(&state, "state", "", "only this state: pending, approved, denied, expired or executed")
			fs.BoolVar(&asJSON, "json", false, "print JSON")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			switch state {
			case "", "pending", "approved", "denied", "expired", "executed":
			default:
				return usageErrorf("--state must be pending, approved, denied, expired or executed, got %q", state)
			}
			c, err := g.client(e)
			if err != nil {
				return err
			}
			var out struct {
				Approvals []approvalInfo `json:"approvals"`
			}
			if err := c.do(ctx, "GET", "/v1/approvals?state="+url.QueryEscape(state), nil, &out); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(e.Stdout).Encode(out)
			}
			if len(out.Approvals) == 0 {
				fmt.Fprintln(e.Stdout, "no approvals")
				return nil
			}
			tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tCALL\tUSER\tRULE\tREQUESTED\tDECIDED BY")
			for _, a := range out.Approvals {
				fmt.Fprintf(tw, "%s\t%s\t%s/%s\t%s\t%s\t%s\t%s\n", a.ID, a.State, a.Server, a.Tool, a.User, a.Rule, a.CreatedAt.Format(time.RFC3339), orDash(a.DecidedBy))
			}
			return tw.Flush()
		},
	}
}

func approvalsShowCommand() *command {
	var g gatewayFlags
	var asJSON bool
	return &command{
		Use:     "show ID",
		Short:   "Show one approval: the held call, why, who may decide, the decision",
		MinArgs: 1, MaxArgs: 1,
		Flags: func(fs *pflag.FlagSet) {
			g.register(fs)
			fs.BoolVar(&asJSON, "json", false, "print JSON")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			c, err := g.client(e)
			if err != nil {
				return err
			}
			var a approvalInfo
			if err := c.do(ctx, "GET", "/v1/approvals/"+url.PathEscape(args[0]), nil, &a); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(e.Stdout).Encode(a)
			}
			printApproval(e, a)
			return nil
		},
	}
}

func printApproval(e *env, a approvalInfo) {
	approvers := "any admin"
	if len(a.Approvers) > 0 {
		approvers = strings.Join(a.Approvers, ", ")
	}
	fmt.Fprintf(e.Stdout, "approval  %s (%s)\ncall      %s/%s step %d of token %s\nuser      %s\nagent     %s (key %s)\narguments %s\nrule      %s: %s\napprovers %s\nrequested %s, expires %s\n",
		a.ID, a.State, a.Server, a.Tool, a.Step, a.TokenID, a.User, orDash(a.Agent), a.Requester, string(a.Arguments),
		a.Rule, a.Reason, approvers, a.CreatedAt.Format(time.RFC3339), a.ExpiresAt.Format(time.RFC3339))
	if a.DecidedBy != "" {
		fmt.Fprintf(e.Stdout, "decided   %s by %s at %s", a.State, a.DecidedBy, a.DecidedAt.Format(time.RFC3339))
		if a.Comment != "" {
			fmt.Fprintf(e.Stdout, ": %s", a.Comment)
		}
		fmt.Fprintln(e.Stdout)
	}
	if !a.ExecutedAt.IsZero() {
		fmt.Fprintf(e.Stdout, "executed  %s\n", a.ExecutedAt.Format(time.RFC3339))
	}
}

func approvalsDecideCommand(approve bool) *command {
	var g gatewayFlags
	var comment string
	verb, short := "deny", "Deny a pending approval (the call is refused when retried)"
	if approve {
		verb, short = "approve", "Approve a pending approval (exactly that call may then run once)"
	}
	return &command{
		Use:     verb + " ID [--comment TEXT]",
		Short:   short,
		MinArgs: 1, MaxArgs: 1,
		Flags: func(fs *pflag.FlagSet) {
			g.register(fs)
			fs.StringVar(&comment, "comment", "", "why (recorded in the audit log)")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			c, err := g.client(e)
			if err != nil {
				return err
			}
			var a approvalInfo
			if err := c.do(ctx, "POST", "/v1/approvals/"+url.PathEscape(args[0])+"/"+verb, map[string]string{"comment": comment}, &a); err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "%s %s: %s/%s for %s\n", a.ID, a.State, a.Server, a.Tool, a.User)
			return nil
		},
	}
}

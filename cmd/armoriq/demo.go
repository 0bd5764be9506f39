package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/runtime/client"
	"github.com/armoriq/controlplane/runtime/intent"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/schema"
)

// The quickstart's people and server (examples/quickstart/armoriq.yaml).
const (
	demoServer = "weather-mcp"
	demoAlice  = "alice@customer.com"
	demoBob    = "bob@customer.com"
	demoCity   = "Boston"
)

type demoOptions struct {
	gateway                string
	agentKeyFile, adminKey string
	data, config           string
}

func demoCommand() *command {
	var o demoOptions
	return &command{
		Use:   "demo",
		Short: "Run the quickstart against a running armoriq up, step by step",
		Long: `demo plays the quickstart against the gateway of 'armoriq up', with the Go
SDK (runtime/client), and prints each step with what the gateway answered:

  1. a plan is captured (get_weather, then a two-week get_forecast);
  2. an intent token is issued for it, to the agent's one API key;
  3. weather-mcp/get_weather for alice@customer.com is allowed: the tool's
     real result;
  4. the same call for bob@customer.com is blocked by a rule (named, with its
     line);
  5. a call with parameters the plan did not sign is refused;
  6. an expired token is refused by the gateway;
  7. the two-week forecast is held for a person by a rule with a when;
  8. the audit records of these calls;
  9. the audit log's hash chain, verified.

It exits 0 only when every step behaved as expected, 1 otherwise.

The agent key comes from --api-key-file (default DATA/agent.key) or
ARMORIQ_API_KEY; the audit is read with DATA/admin.key. The key files of
DATA are used only for a gateway on this machine (a loopback address).`,
		Example: `  armoriq up &      # or in another terminal
  armoriq demo`,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&o.gateway, "gateway", "", "gateway URL (default $ARMORIQ_GATEWAY or http://127.0.0.1:8080)")
			fs.StringVar(&o.data, "data", upDefaultData, "the data directory of armoriq up: its agent.key and admin.key")
			fs.StringVar(&o.agentKeyFile, "api-key-file", "", "agent key file (default: $ARMORIQ_API_KEY, else DATA/agent.key)")
			fs.StringVar(&o.adminKey, "admin-key-file", "", "admin or viewer key file, to read the audit (default DATA/admin.key)")
			fs.StringVar(&o.config, "config", "armoriq.yaml", "the config up enforces, to show the lines of the rules that decide")
		},
		MaxArgs: 0,
		Run: func(ctx context.Context, e *env, args []string) error {
			return runDemo(ctx, e, &o)
		},
	}
}

// demoRun holds what the steps share.
type demoRun struct {
	w      io.Writer
	c      *client.Client
	cfg    *schema.Config // nil when the config cannot be read: rule lines are left out
	config string
	failed int
	step   int
}

func runDemo(ctx context.Context, e *env, o *demoOptions) error {
	base := firstNonEmpty(o.gateway, e.Getenv("ARMORIQ_GATEWAY"), "http://127.0.0.1:8080")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return usageErrorf("--gateway %q must be an http:// or https:// URL", base)
	}
	base = strings.TrimRight(base, "/")
	// The key files of a local up are never sent to another machine.
	local := loopbackURL(base)
	agentKey, keySource, err := demoAgentKey(e, o, local)
	if err != nil {
		return err
	}
	if o.adminKey == "" && !local {
		return usageErrorf("--gateway %s is not on this machine: give the key to read its audit with --admin-key-file (the keys in %s are only used for a local gateway)", base, o.data)
	}
	adminPath := firstNonEmpty(o.adminKey, filepath.Join(o.data, "admin.key"))
	adminKey, err := readKeyFile(adminPath)
	if err != nil {
		return usageErrorf("the audit is read with an admin or viewer key: %v (--admin-key-file)", err)
	}
	admin := &adminClient{base: base, key: adminKey, http: &http.Client{Timeout: time.Minute}}

	opts := client.Options{
		Endpoint: base, APIKey: agentKey, UserID: "quickstart", AgentID: "weather-agent",
		Getenv: func(string) string { return "" },
	}
	c, err := client.New(opts)
	if err != nil {
		return usageErrorf("%v", err)
	}
	d := &demoRun{w: e.Stdout, c: c, config: o.config}
	if cfg, diags := schema.LoadFile(o.config); !diags.HasErrors() {
		d.cfg = cfg
	}

	fmt.Fprintf(d.w, "armoriq demo against %s (agent key from %s)\n\n", base, keySource)
	if err := c.Health(ctx); err != nil {
		return &exitError{Code: exitFailure, Err: fmt.Errorf("the gateway at %s does not answer: %v (is armoriq up running?)", base, err)}
	}
	if err := demoReady(ctx, admin); err != nil {
		return &exitError{Code: exitFailure, Err: err}
	}
	var before struct {
		Records int64 `json:"records"`
	}
	if err := admin.do(ctx, "GET", "/v1/audit/verify", nil, &before); err != nil {
		return &exitError{Code: exitFailure, Err: fmt.Errorf("reading the audit log with %s: %v", adminPath, err)}
	}

	// 1. The plan: what the agent means to do, before it does it.
	weatherArgs := map[string]any{"city": demoCity}
	forecastArgs := map[string]any{"city": demoCity, "days": 14}
	plan, err := c.CapturePlan("Weather and a two-week forecast for "+demoCity, []intent.Step{
		{Action: "get_weather", MCP: demoServer, Params: weatherArgs, Description: "current weather"},
		{Action: "get_forecast", MCP: demoServer, Params: forecastArgs, Description: "two-week forecast"},
	})
	d.check("plan captured", err == nil, func() string {
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("2 steps (%s/get_weather, %s/get_forecast), plan hash %s…", demoServer, demoServer, plan.Hash[:16])
	})
	if err != nil {
		return silentExit(exitFailure)
	}

	// 2. The token: the gateway signs the plan. As in the seeds'
	// quickstart, one service key serves every end user; each call names
	// the user it is made for (the SDKs' userEmail).
	tok, err := c.GetIntentToken(ctx, plan, client.Validity(5*time.Minute))
	d.check("intent token issued for the plan", err == nil, func() string {
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%s, valid until %s, one Merkle proof per step", tok.TokenID, tok.ExpiresAt.Format("15:04:05"))
	})
	if err != nil {
		return silentExit(exitFailure)
	}

	// 3. An allowed call: forwarded to the real MCP server.
	res, err := c.Invoke(ctx, demoServer, "get_weather", tok, weatherArgs, client.UserEmail(demoAlice))
	d.check(demoServer+"/get_weather for "+demoAlice+": allowed", err == nil && res != nil && !res.IsError, func() string {
		if err != nil {
			return "expected the call to go through, got: " + err.Error()
		}
		return "the tool answered: " + toolText(res.Result)
	})

	// 4. The same call for a user a rule denies.
	_, err = c.Invoke(ctx, demoServer, "get_weather", tok, weatherArgs, client.UserEmail(demoBob))
	var ce *client.Error
	d.check(demoServer+"/get_weather for "+demoBob+": blocked", errors.Is(err, client.ErrPolicyBlocked), func() string {
		if errors.As(err, &ce) && ce.Kind == client.KindPolicyBlocked {
			return fmt.Sprintf("%q%s", ce.Reason, d.ruleAt(metaRule(ce.Metadata)))
		}
		return outcomeOf(err, "a block")
	})

	// 5. Parameters the plan did not sign.
	_, err = c.Invoke(ctx, demoServer, "get_weather", tok, map[string]any{"city": "Paris"}, client.UserEmail(demoAlice))
	d.check("the same call with city=Paris (the plan signed Boston): refused", errors.Is(err, client.ErrIntentMismatch), func() string {
		return outcomeOf(err, "an intent mismatch")
	})

	// 6. An expired token: refused by the gateway's clock. This client's
	// clock runs a minute late, so its own expiry check (which would
	// refuse first) lets the call reach the gateway.
	short, err := c.GetIntentToken(ctx, plan, client.Validity(time.Second))
	if err == nil {
		time.Sleep(1500 * time.Millisecond)
		late := opts
		late.Now = func() time.Time { return time.Now().Add(-time.Minute) }
		lc, _ := client.New(late)
		_, err = lc.Invoke(ctx, demoServer, "get_weather", short, weatherArgs, client.UserEmail(demoAlice))
	}
	d.check("a token issued for 1s, used 1.5s later: refused by the gateway", errors.Is(err, client.ErrTokenExpired), func() string {
		return outcomeOf(err, "token expired")
	})

	// 7. A held call: a rule with a when holds two-week forecasts.
	_, err = c.Invoke(ctx, demoServer, "get_forecast", tok, forecastArgs, client.UserEmail(demoAlice))
	d.check(demoServer+"/get_forecast days=14 for "+demoAlice+": held for a person", errors.Is(err, client.ErrPolicyHold), func() string {
		if errors.As(err, &ce) && ce.Kind == client.KindPolicyHold {
			out := fmt.Sprintf("%q%s", ce.Reason, d.ruleAt(metaRule(ce.Metadata)))
			if id, _ := ce.Metadata["approval_id"].(string); id != "" {
				out += fmt.Sprintf("\napproval %s is pending: %s approvals approve %s, then the same call runs once", id, commandPrefix(), id)
			}
			return out
		}
		return outcomeOf(err, "a hold")
	})

	// 8. The audit: one record per decision, hash-chained.
	d.showAudit(ctx, admin, before.Records)

	fmt.Fprintln(d.w)
	if d.failed > 0 {
		fmt.Fprintf(d.w, "demo: %d of %d steps did not behave as expected\n", d.failed, d.step)
		return silentExit(exitFailure)
	}
	fmt.Fprintf(d.w, "demo: all %d steps behaved as expected. Edit %s (say, remove bob from suspended-users), save, and run the demo again.\n", d.step, d.config)
	return nil
}

// check prints one step: ok or FAILED, then what happened.
func (d *demoRun) check(title string, ok bool, detail func() string) {
	d.step++
	mark := "ok "
	if !ok {
		mark = "FAILED"
		d.failed++
	}
	fmt.Fprintf(d.w, "%d. %-6s %s\n", d.step, mark, title)
	for _, line := range strings.Split(detail(), "\n") {
		fmt.Fprintf(d.w, "          %s\n", line)
	}
}

func (d *demoRun) showAudit(ctx context.Context, admin *adminClient, after int64) {
	var list struct {
		Records []store.AuditRecord `json:"records"`
	}
	err := admin.do(ctx, "GET", "/v1/audit?after="+strconv.FormatInt(after, 10), nil, &list)
	var b strings.Builder
	if err == nil {
		printAudit(&b, list.Records)
	}
	// Allowed, blocked, mismatched, expired and held: each decided call
	// leaves a record.
	d.check(fmt.Sprintf("audit: %d records for these calls", len(list.Records)), err == nil && len(list.Records) >= 4, func() string {
		if err != nil {
			return err.Error()
		}
		return strings.TrimRight(b.String(), "\n")
	})
	var v struct {
		OK       bool   `json:"ok"`
		Records  int64  `json:"records"`
		HeadHash []byte `json:"head_hash"`
		Problem  string `json:"problem"`
	}
	err = admin.do(ctx, "GET", "/v1/audit/verify", nil, &v)
	d.check("audit verify: the hash chain is intact", err == nil && v.OK, func() string {
		switch {
		case err != nil:
			return err.Error()
		case !v.OK:
			return "BROKEN: " + v.Problem
		}
		return fmt.Sprintf("%d records, head %x…", v.Records, v.HeadHash[:8])
	})
}

// ruleAt formats the rule id with its place in the config: " (rule
// suspended-users, armoriq.yaml:42)".
func (d *demoRun) ruleAt(id string) string {
	if id == "" {
		return ""
	}
	if d.cfg != nil {
		if pos, ok := configRulePos(d.cfg, id); ok {
			return fmt.Sprintf(" (rule %s, %s:%d)", id, d.config, pos.Line)
		}
	}
	return " (rule " + id + ")"
}

// configRulePos is the position of the rule a decision names: "policy.allow[0]",
// "policy.rules[2]" or a rule's name.
func configRulePos(cfg *schema.Config, id string) (schema.Pos, bool) {
	for _, l := range []struct {
		prefix string
		refs   []schema.Ref
	}{{"policy.allow[", cfg.Policy.Allow}, {"policy.deny[", cfg.Policy.Deny}} {
		if rest, ok := strings.CutPrefix(id, l.prefix); ok {
			if i, err := strconv.Atoi(strings.TrimSuffix(rest, "]")); err == nil && i >= 0 && i < len(l.refs) {
				return l.refs[i].Pos, true
			}
		}
	}
	for k, r := range cfg.Policy.Rules {
		if r.Name == id || fmt.Sprintf("policy.rules[%d]", k) == id {
			return r.Pos, true
		}
	}
	return schema.Pos{}, false
}

func metaRule(m map[string]any) string {
	s, _ := m["rule"].(string)
	return s
}

// outcomeOf says what happened instead of what was expected.
func outcomeOf(err error, want string) string {
	if err == nil {
		return "expected " + want + ", but the call went through"
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		if ce.Reason != "" {
			return fmt.Sprintf("%s: %s (%q)", ce.Kind, ce.Message, ce.Reason)
		}
		return fmt.Sprintf("%s: %s", ce.Kind, ce.Message)
	}
	return err.Error()
}

// toolText is the text content of an MCP CallToolResult.
func toolText(raw json.RawMessage) string {
	var r struct {
		Content []struct {
			Type, Text string
		} `json:"content"`
	}
	if json.Unmarshal(raw, &r) != nil || len(r.Content) == 0 {
		return string(raw)
	}
	var parts []string
	for _, c := range r.Content {
		if c.Type == "text" {
			parts = append(parts, c.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// demoAgentKey is the agent key the demo calls with, and where it came from.
func demoAgentKey(e *env, o *demoOptions, local bool) (key, source string, err error) {
	if o.agentKeyFile != "" {
		k, err := readKeyFile(o.agentKeyFile)
		if err != nil {
			return "", "", usageErrorf("--api-key-file: %v", err)
		}
		return k, o.agentKeyFile, nil
	}
	if k := e.Getenv("ARMORIQ_API_KEY"); k != "" {
		return k, "$ARMORIQ_API_KEY", nil
	}
	if !local {
		return "", "", usageErrorf("no agent key for a gateway on another machine: set ARMORIQ_API_KEY or give --api-key-file (the keys in %s are only used for a local gateway)", o.data)
	}
	path := filepath.Join(o.data, "agent.key")
	k, err := readKeyFile(path)
	if err != nil {
		return "", "", usageErrorf("no agent key: %v (run armoriq up in this directory first, or set ARMORIQ_API_KEY)", err)
	}
	return k, path, nil
}

// demoReady asks the gateway's /readyz whether it can serve the demo: a
// config enforced, the upstream servers up.
func demoReady(ctx context.Context, c *adminClient) error {
	var rd struct {
		Ready    bool     `json:"ready"`
		NotReady []string `json:"not_ready"`
		Degraded []string `json:"degraded"`
	}
	resp, err := c.send(ctx, "GET", "/readyz", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rd); err != nil {
		return fmt.Errorf("GET %s/readyz: %s", c.base, resp.Status)
	}
	if why := append(rd.NotReady, rd.Degraded...); !rd.Ready || len(why) > 0 {
		return fmt.Errorf("the gateway at %s is not ready for the demo: %s (see what armoriq up printed)", c.base, strings.Join(why, "; "))
	}
	return nil
}

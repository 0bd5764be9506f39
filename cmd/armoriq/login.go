package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

func loginCommand() *command {
	var gw, client string
	var noBrowser bool
	return &command{
		Use:   "login --gateway URL",
		Short: "Sign in to a gateway from this machine and save an API key",
		Long: `Sign in with the device flow: the gateway gives a short code, someone
signed in to its console (an admin, or you with a viewer key) approves it
under Device logins and picks the role, and this command saves the new
API key to ~/.armoriq/credentials.json (mode 0600), where every armoriq
command and the SDKs find it after --api-key and ARMORIQ_API_KEY.

It opens the approval page with xdg-open when there is a display, and
prints its address otherwise.`,
		Example: `  armoriq login --gateway https://gw.example.com
  armoriq login approve BCDF-GHJK --role viewer --email alice@example.com   # as an admin`,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&gw, "gateway", "", "gateway URL (default $ARMORIQ_GATEWAY)")
			fs.BoolVar(&noBrowser, "no-browser", false, "print the approval page's address; do not open a browser")
			fs.StringVar(&client, "client", "", "how this device is shown to the approver (default: armoriq CLI on HOSTNAME)")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if gw == "" {
				gw = e.Getenv("ARMORIQ_GATEWAY")
			}
			if gw == "" {
				return usageErrorf("--gateway URL is required")
			}
			if !strings.HasPrefix(gw, "http://") && !strings.HasPrefix(gw, "https://") {
				return usageErrorf("--gateway %q must be an http:// or https:// URL", gw)
			}
			if client == "" {
				host, _ := os.Hostname()
				client = "armoriq CLI on " + host
			}
			return login(ctx, e, strings.TrimRight(gw, "/"), client, noBrowser)
		},
		Sub: []*command{loginApproveCommand(), loginPendingCommand()},
	}
}

type deviceStart struct {
	DeviceCode              string `json:"deviceCode"`
	UserCode                string `json:"userCode"`
	VerificationURI         string `json:"verificationUri"`
	VerificationURIComplete string `json:"verificationUriComplete"`
	ExpiresIn               int    `json:"expiresIn"`
	Interval                int    `json:"interval"`
}

type deviceGrant struct {
	APIKey string `json:"apiKey"`
	KeyID  string `json:"keyId"`
	Role   string `json:"role"`
	Email  string `json:"email"`
	UserID string `json:"userId"`
	OrgID  string `json:"orgId"`
	Error  string `json:"error"`
	Desc   string `json:"error_description"`
}

func postJSON(ctx context.Context, hc *http.Client, u string, body any, out any) (int, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach the gateway: %v", unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.StatusCode, fmt.Errorf("the gateway answered %d with %q", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return resp.StatusCode, nil
}

func login(ctx context.Context, e *env, gw, client string, noBrowser bool) error {
	hc := &http.Client{Timeout: 30 * time.Second}
	var st deviceStart
	status, err := postJSON(ctx, hc, gw+"/auth/device/code", map[string]string{"client": client}, &st)
	if err != nil {
		return err
	}
	if status != http.StatusOK || st.DeviceCode == "" {
		return fmt.Errorf("the gateway refused to start a login (status %d)", status)
	}
	fmt.Fprintf(e.Stdout, "Your code: %s\n", st.UserCode)
	opened := !noBrowser && openBrowser(e, st.VerificationURIComplete)
	if opened {
		fmt.Fprintf(e.Stdout, "Opened %s: approve the code there (or have an admin approve it).\n", st.VerificationURIComplete)
	} else {
		fmt.Fprintf(e.Stdout, "Open %s and approve the code there (or have an admin approve it).\n", st.VerificationURIComplete)
	}
	interval := time.Duration(max(st.Interval, 1)) * time.Second
	deadline := time.Now().Add(time.Duration(st.ExpiresIn) * time.Second)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
		var g deviceGrant
		status, err := postJSON(ctx, hc, gw+"/auth/device/token", map[string]string{"deviceCode": st.DeviceCode}, &g)
		if err != nil {
			if time.Now().After(deadline) {
				return err
			}
			continue // a passing network fault: poll again
		}
		switch {
		case status == http.StatusOK && g.APIKey != "":
			path, err := writeCredentials(e, credentials{
				APIKey: g.APIKey, Email: g.Email, UserID: g.UserID, OrgID: g.OrgID, Gateway: gw, KeyID: g.KeyID, Role: g.Role,
			})
			if err != nil {
				return fmt.Errorf("the login was approved but the key could not be saved: %v", err)
			}
			who := g.Email
			if who == "" {
				who = "key " + g.KeyID
			}
			fmt.Fprintf(e.Stdout, "Logged in to %s as %s (role %s). The key is in %s.\n", gw, who, g.Role, path)
			return nil
		case g.Error == "authorization_pending":
		case g.Error == "slow_down":
			interval += 5 * time.Second
		case g.Error == "access_denied":
			return &exitError{Code: exitFailure, Err: errors.New("the login was denied: " + g.Desc)}
		case g.Error == "expired_token":
			return &exitError{Code: exitFailure, Err: errors.New("the code expired before it was approved: run armoriq login again")}
		default:
			return fmt.Errorf("the gateway answered %d: %s %s", status, g.Error, g.Desc)
		}
	}
}

// openBrowser opens u with xdg-open when there is a display; it reports
// whether it tried.
func openBrowser(e *env, u string) bool {
	if e.Getenv("DISPLAY") == "" && e.Getenv("WAYLAND_DISPLAY") == "" {
		return false
	}
	path, err := exec.LookPath("xdg-open")
	if err != nil {
		return false
	}
	cmd := exec.Command(path, u)
	if err := cmd.Start(); err != nil {
		return false
	}
	go cmd.Wait()
	return true
}

func loginApproveCommand() *command {
	var g gatewayFlags
	var role, email string
	var deny bool
	return &command{
		Use:     "approve CODE --role admin|agent|viewer [--email EMAIL]",
		Short:   "Approve (or --deny) another device's login code",
		MinArgs: 1, MaxArgs: 1,
		Flags: func(fs *pflag.FlagSet) {
			g.register(fs)
			fs.StringVar(&role, "role", "viewer", "role of the key the device receives (never above yours)")
			fs.StringVar(&email, "email", "", "the person the key is for (admins only; others approve for themselves)")
			fs.BoolVar(&deny, "deny", false, "deny the login instead")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if !deny && role != "admin" && role != "agent" && role != "viewer" {
				return usageErrorf("--role must be admin, agent or viewer, got %q", role)
			}
			c, err := g.client(e)
			if err != nil {
				return err
			}
			verb := "approve"
			if deny {
				verb = "deny"
			}
			var out struct {
				UserCode string `json:"user_code"`
				State    string `json:"state"`
				Role     string `json:"role"`
				Email    string `json:"email"`
			}
			if err := c.do(ctx, "POST", "/v1/devices/"+url.PathEscape(args[0])+"/"+verb, map[string]string{"role": role, "email": email}, &out); err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "device login %s %s", out.UserCode, out.State)
			if out.State == "approved" {
				fmt.Fprintf(e.Stdout, " as %s %s", out.Role, out.Email)
			}
			fmt.Fprintln(e.Stdout)
			return nil
		},
	}
}

func loginPendingCommand() *command {
	var g gatewayFlags
	return &command{
		Use:   "pending",
		Short: "List the device logins of the last day, waiting ones first",
		Flags: g.register,
		Run: func(ctx context.Context, e *env, args []string) error {
			c, err := g.client(e)
			if err != nil {
				return err
			}
			var out struct {
				Devices []struct {
					UserCode  string    `json:"user_code"`
					State     string    `json:"state"`
					Client    string    `json:"client"`
					CreatedAt time.Time `json:"created_at"`
					By        string    `json:"by"`
				} `json:"devices"`
			}
			if err := c.do(ctx, "GET", "/v1/devices", nil, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CODE\tSTATE\tDEVICE\tSTARTED\tDECIDED BY")
			for _, d := range out.Devices {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.UserCode, d.State, d.Client, d.CreatedAt.Format(time.RFC3339), orDash(d.By))
			}
			return tw.Flush()
		},
	}
}

func whoamiCommand() *command {
	var check bool
	return &command{
		Use:   "whoami",
		Short: "Print the identity of the saved credentials (--check asks the gateway)",
		Flags: func(fs *pflag.FlagSet) {
			fs.BoolVar(&check, "check", false, "ask the gateway whether the key is still valid and what it may do")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			c, path, ok, err := readCredentials(e)
			if err != nil {
				return err
			}
			if !ok {
				return &exitError{Code: exitFailure, Err: fmt.Errorf("not logged in: no %s (run armoriq login --gateway URL)", path)}
			}
			last4 := c.APIKey
			if len(last4) > 4 {
				last4 = last4[len(last4)-4:]
			}
			fmt.Fprintf(e.Stdout, "email:   %s\nuser id: %s\nkey:     %s …%s\nrole:    %s\ngateway: %s\nsaved:   %s\nfile:    %s\n",
				orDash(c.Email), orDash(c.UserID), orDash(c.KeyID), last4, orDash(c.Role), orDash(c.Gateway), orDash(c.SavedAt), path)
			if !check {
				return nil
			}
			if c.Gateway == "" {
				return usageErrorf("the credentials name no gateway to check with")
			}
			ac := &adminClient{base: c.Gateway, key: c.APIKey, http: &http.Client{Timeout: 30 * time.Second}}
			var who struct {
				KeyID string   `json:"key_id"`
				Name  string   `json:"name"`
				Role  string   `json:"role"`
				May   []string `json:"may"`
			}
			if err := ac.do(ctx, "GET", "/v1/whoami", nil, &who); err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
					return &exitError{Code: exitFailure, Err: fmt.Errorf("the key is no longer valid at %s: %s (run armoriq login again)", c.Gateway, ae.Message)}
				}
				return err
			}
			fmt.Fprintf(e.Stdout, "valid:   yes, key %s (%s), role %s\nmay:     %s\n", who.KeyID, who.Name, who.Role, strings.Join(who.May, "; "))
			return nil
		},
	}
}

func logoutCommand() *command {
	var revoke bool
	return &command{
		Use:   "logout",
		Short: "Remove the saved credentials (--revoke also revokes the key)",
		Flags: func(fs *pflag.FlagSet) {
			fs.BoolVar(&revoke, "revoke", false, "revoke the key at its gateway first")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			c, path, ok, err := readCredentials(e)
			if err != nil && !revoke {
				// An unreadable file is still removed.
				ok = true
			} else if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintf(e.Stdout, "not logged in (no %s)\n", path)
				return nil
			}
			if revoke {
				if c.Gateway == "" || c.KeyID == "" {
					return usageErrorf("the credentials name no gateway or key id to revoke; revoke the key in the console, or run logout without --revoke")
				}
				ac := &adminClient{base: c.Gateway, key: c.APIKey, http: &http.Client{Timeout: 30 * time.Second}}
				if err := ac.do(ctx, "DELETE", "/v1/keys/self", nil, nil); err != nil {
					return fmt.Errorf("revoking key %s: %v (the credentials file was kept)", c.KeyID, err)
				}
				fmt.Fprintf(e.Stdout, "revoked key %s at %s\n", c.KeyID, c.Gateway)
			}
			if err := os.Remove(path); err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "removed %s\n", path)
			return nil
		},
	}
}

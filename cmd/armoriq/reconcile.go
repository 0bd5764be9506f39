package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/reconciler"
	"github.com/armoriq/controlplane/schema"
)

// exitUnreachable is reconcile --once's status when the source or a target
// could not be reached (a transient failure: run it again).
const exitUnreachable = reconciler.ExitUnreachable

type reconcileOptions struct {
	source, branch, path       string
	gateways                   []string
	apiKey, apiKeyFile         string
	keyFile                    string
	interval                   time.Duration
	once, suspend              bool
	webhookAddr, webhookSecret string
	statusAddr                 string
	gitToken, sshKey, cacheDir string
	sshKnownHosts              string
	trustedSigners             string
	githubRepo                 string
	githubAppID                int64
	githubAppKey               string
	logFormat, logLevel        string
	readyFile                  string
	backoffMax                 time.Duration
}

func reconcileCommand() *command {
	var o reconcileOptions
	return &command{
		Use:   "reconcile --source URL|PATH --key FILE [--gateway URL...]",
		Short: "Keep gateways running the policy a git branch describes",
		Long: `reconcile watches a git branch and, for each new commit, validates and
compiles the config, signs the bundle with --key and pushes it to every
gateway (--gateway, repeatable, or the config's gateways[]), then reads back
what each gateway runs. An invalid commit is never pushed: the gateways keep
their last good bundle and the status says why, with positions. A gateway
found running anything else (restarted on an empty store, say) gets the
desired bundle again.

The source is a local repository path, an https:// URL (--git-token, or
ARMORIQ_GIT_TOKEN / GITHUB_TOKEN) or an SSH URL (--ssh-key). The branch head
is polled every --interval with a cheap ls-remote; a GitHub push webhook on
--webhook-addr (POST /hook, HMAC-checked with --webhook-secret or
ARMORIQ_WEBHOOK_SECRET) starts a pass at once; a push for another repository
than the source's (or --github-repo's) is refused with 403. --status-addr serves
GET /status as JSON; 'armoriq reconcile status' prints it.

With --once it does one pass and exits: 0 every gateway runs the head
commit, 1 the commit is invalid or a gateway refused it, 3 the source or a
gateway could not be reached, 2 usage error.`,
		Example: `  armoriq reconcile --source . --key signing.key --gateway http://127.0.0.1:8080 --once
  armoriq reconcile --source https://github.com/acme/policy --key /etc/armoriq/signing.key \
      --gateway https://gw1:8443 --gateway https://gw2:8443 \
      --webhook-addr :9000 --status-addr :9001 --github-repo acme/policy`,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&o.source, "source", "", "git repository: a local path, an https:// URL or an SSH URL")
			fs.StringVar(&o.branch, "branch", "", "branch to follow (default: the source's HEAD branch: a local repository's checked-out branch, a remote's default branch)")
			fs.StringVar(&o.path, "path", "armoriq.yaml", "config file within the repository")
			fs.StringArrayVar(&o.gateways, "gateway", nil, "gateway URL to push to; repeat for several (default: the config's gateways[])")
			fs.StringVar(&o.apiKey, "api-key", "", "admin API key for --gateway targets (default $ARMORIQ_API_KEY)")
			fs.StringVar(&o.apiKeyFile, "api-key-file", "", "file holding the admin API key, e.g. DATA/admin.key")
			fs.StringVar(&o.keyFile, "key", "", "Ed25519 private key (PEM) to sign bundles with, from 'armoriq keygen'")
			fs.DurationVar(&o.interval, "interval", 30*time.Second, "how often to poll the branch head")
			fs.BoolVar(&o.once, "once", false, "do one pass and exit with its result")
			fs.BoolVar(&o.suspend, "suspend", false, "do not apply anything; still poll and report")
			fs.StringVar(&o.webhookAddr, "webhook-addr", "", "serve the GitHub push webhook (POST /hook) on this address, e.g. :9000")
			fs.StringVar(&o.webhookSecret, "webhook-secret", "", "webhook HMAC secret (default $ARMORIQ_WEBHOOK_SECRET)")
			fs.StringVar(&o.statusAddr, "status-addr", "", "serve GET /status on this address (may equal --webhook-addr)")
			fs.StringVar(&o.gitToken, "git-token", "", "token for an https source (default $ARMORIQ_GIT_TOKEN, then $GITHUB_TOKEN)")
			fs.StringVar(&o.sshKey, "ssh-key", "", "private key file for an SSH source")
			fs.StringVar(&o.sshKnownHosts, "ssh-known-hosts", "", "known_hosts file for an SSH source (default: ~/.ssh/known_hosts)")
			fs.StringVar(&o.cacheDir, "cache-dir", "", "keep fetched objects in this directory (default: in memory)")
			fs.StringVar(&o.trustedSigners, "trusted-signers", "", "armored PGP public keys: apply only commits signed by one of them")
			fs.StringVar(&o.githubRepo, "github-repo", "", "report each commit as a commit status (armoriq/reconcile) on this owner/name")
			fs.Int64Var(&o.githubAppID, "github-app-id", 0, "authenticate to GitHub as this App (default: $GITHUB_TOKEN)")
			fs.StringVar(&o.githubAppKey, "github-app-key", "", "the GitHub App's private key (PEM)")
			fs.DurationVar(&o.backoffMax, "max-backoff", 5*time.Minute, "longest wait between retries of a failing gateway")
			fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
			fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
			fs.StringVar(&o.readyFile, "ready-file", "", "once listening, write the status (else webhook) server's URL to this file")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			return runReconcile(ctx, e, &o)
		},
		Sub: []*command{reconcileStatusCommand()},
	}
}

func runReconcile(ctx context.Context, e *env, o *reconcileOptions) error {
	switch {
	case o.source == "":
		return usageErrorf("reconcile needs --source, the git repository to follow")
	case o.keyFile == "":
		return usageErrorf("reconcile needs --key FILE, the bundle signing key (create one with 'armoriq keygen -o FILE')")
	case o.interval < 100*time.Millisecond:
		return usageErrorf("--interval %s is too short", o.interval)
	}
	if err := checkLogFlags(o.logFormat, o.logLevel); err != nil {
		return err
	}
	if o.webhookSecret == "" {
		o.webhookSecret = e.Getenv("ARMORIQ_WEBHOOK_SECRET")
	}
	if o.webhookAddr != "" && o.webhookSecret == "" && !o.once {
		return usageErrorf("--webhook-addr needs a secret: --webhook-secret or ARMORIQ_WEBHOOK_SECRET")
	}
	log := newLogger(e.Stderr, o.logFormat, o.logLevel)
	key, kid, err := bundle.LoadPrivateKey(o.keyFile)
	if err != nil {
		return usageErrorf("signing key: %v", err)
	}
	token := firstNonEmpty(o.gitToken, e.Getenv("ARMORIQ_GIT_TOKEN"), e.Getenv("GITHUB_TOKEN"))
	src, err := reconciler.NewSource(reconciler.SourceOptions{
		URL: o.source, Branch: o.branch, Path: o.path, Token: token, SSHKeyFile: o.sshKey, SSHKnownHosts: o.sshKnownHosts, CacheDir: o.cacheDir,
	})
	if err != nil {
		return usageErrorf("%v", err)
	}
	if o.webhookAddr != "" && !o.once {
		// The webhook matches pushes against the branch: know it now.
		if _, err := src.ResolveBranch(ctx); err != nil {
			return &exitError{Code: exitUnreachable, Err: fmt.Errorf("%v (or give --branch)", err)}
		}
	}
	targets, err := reconcileTargets(ctx, e, o, src)
	if err != nil {
		return err
	}
	opts := reconciler.Options{
		Source:     src,
		Targets:    targets,
		Build:      (&reconciler.Builder{Key: key, KeyID: kid, CompilerVersion: "armoriq " + buildVersion()}).Build,
		Interval:   o.interval,
		Suspend:    o.suspend,
		BackoffMax: o.backoffMax,
		Logger:     log,
	}
	if o.trustedSigners != "" {
		ring, err := os.ReadFile(o.trustedSigners)
		if err != nil {
			return usageErrorf("--trusted-signers: %v", err)
		}
		opts.TrustedSigners = string(ring)
	}
	if o.githubRepo != "" {
		rep, err := githubReporter(ctx, e, o)
		if err != nil {
			return err
		}
		opts.Reporter = rep
	}
	rec, err := reconciler.New(opts)
	if err != nil {
		return usageErrorf("%v", err)
	}
	report := func() reconciler.Status { return reconciler.Status{Sources: []reconciler.SourceStatus{rec.Status()}} }

	if o.once {
		res := rec.Pass(ctx)
		printStatus(e.Stdout, report())
		if code := res.ExitCode(); code != 0 {
			return silentExit(code)
		}
		return nil
	}

	servers, urls, err := reconcileServers(o, rec, report, log)
	if err != nil {
		return err
	}
	for _, s := range servers {
		defer s.Close()
	}
	if o.readyFile != "" {
		u := firstNonEmpty(urls[o.statusAddr], urls[o.webhookAddr])
		if err := os.WriteFile(o.readyFile, []byte(u+"\n"), 0o644); err != nil {
			return fmt.Errorf("--ready-file: %v", err)
		}
	}
	log.Info("reconciling", "source", src.String(), "path", o.path, "targets", len(targets), "interval", o.interval, "suspended", o.suspend)
	err = rec.Run(ctx)
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdown)
	}
	return err
}

// reconcileTargets are the --gateway URLs, or else the gateways[] of the
// config at the branch head (their api_key $VAR references resolved here).
func reconcileTargets(ctx context.Context, e *env, o *reconcileOptions, src *reconciler.Source) ([]*reconciler.Gateway, error) {
	apiKey := o.apiKey
	if apiKey == "" && o.apiKeyFile != "" {
		b, err := os.ReadFile(o.apiKeyFile)
		if err != nil {
			return nil, usageErrorf("--api-key-file: %v", err)
		}
		apiKey = strings.TrimSpace(string(b))
	}
	apiKey = firstNonEmpty(apiKey, e.Getenv("ARMORIQ_API_KEY"))
	var out []*reconciler.Gateway
	for _, u := range o.gateways {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, usageErrorf("--gateway %q must be an http:// or https:// URL", u)
		}
		out = append(out, &reconciler.Gateway{URL: u, APIKey: apiKey})
	}
	if len(out) > 0 {
		return out, nil
	}
	head, err := src.Head(ctx)
	if err != nil {
		return nil, &exitError{Code: exitUnreachable, Err: fmt.Errorf("no --gateway given and the config's gateways[] cannot be read: %v", err)}
	}
	c, err := src.Fetch(ctx, head)
	if err != nil {
		return nil, &exitError{Code: exitUnreachable, Err: err}
	}
	if c.ConfigErr != nil {
		return nil, usageErrorf("no --gateway given and %v", c.ConfigErr)
	}
	cfg, diags := schema.Parse(o.path, c.Config)
	if cfg == nil || diags.HasErrors() {
		printDiagnostics(e, diags)
		return nil, &exitError{Code: exitFailure, Err: errors.New("no --gateway given and the config at the head commit is invalid")}
	}
	for i, g := range cfg.Gateways {
		k := expandVars(g.APIKey, e.Getenv)
		if k == "" {
			k = apiKey
		}
		u := expandVars(g.URL, e.Getenv)
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, usageErrorf("%s: gateways[%d].url %q is not an http:// or https:// URL (after $VAR expansion)", o.path, i, g.URL)
		}
		out = append(out, &reconciler.Gateway{Name: g.Name, URL: u, APIKey: k})
	}
	if len(out) == 0 {
		return nil, usageErrorf("no target: give --gateway URL or list gateways[] in %s", o.path)
	}
	return out, nil
}

func githubReporter(ctx context.Context, e *env, o *reconcileOptions) (reconciler.CommitReporter, error) {
	owner, name, err := reconciler.SplitRepo(o.githubRepo)
	if err != nil {
		return nil, usageErrorf("--github-repo: %v", err)
	}
	auth := reconciler.GitHubAuth{Token: e.Getenv("GITHUB_TOKEN"), APIURL: e.Getenv("GITHUB_API_URL"), AppID: o.githubAppID}
	if o.githubAppID != 0 {
		if auth.AppKeyPEM, err = os.ReadFile(o.githubAppKey); err != nil {
			return nil, usageErrorf("--github-app-key: %v", err)
		}
	}
	c, err := reconciler.NewGitHubClient(ctx, auth, owner, name)
	if err != nil {
		return nil, usageErrorf("--github-repo: %v (set GITHUB_TOKEN or --github-app-id and --github-app-key)", err)
	}
	return &reconciler.CommitStatusReporter{Client: c, Owner: owner, Repo: name}, nil
}

// reconcileServers starts the webhook and status listeners, one server when
// both use the same address, and returns each address's base URL.
func reconcileServers(o *reconcileOptions, rec *reconciler.Reconciler, report func() reconciler.Status, log *slog.Logger) ([]*http.Server, map[string]string, error) {
	muxes := map[string]*http.ServeMux{}
	mux := func(addr string) *http.ServeMux {
		if muxes[addr] == nil {
			muxes[addr] = http.NewServeMux()
		}
		return muxes[addr]
	}
	if o.webhookAddr != "" {
		// Pushes are checked against the repository the source URL names,
		// else the one statuses are reported to.
		repo, ok := reconciler.GitHubRepository(o.source)
		if !ok {
			repo = o.githubRepo
		}
		if repo == "" {
			log.Warn("webhook: the source names no GitHub repository (and no --github-repo is set): pushes are not checked against one")
		}
		mux(o.webhookAddr).Handle("POST /hook", &reconciler.Webhook{
			Secret: []byte(o.webhookSecret), Branch: rec.Branch(), Repository: repo, Trigger: rec.Trigger, Logger: log,
		})
	}
	if o.statusAddr != "" {
		mux(o.statusAddr).Handle("GET /status", reconciler.StatusHandler(report))
	}
	var servers []*http.Server
	urls := map[string]string{}
	for addr, m := range muxes {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, s := range servers {
				s.Close()
			}
			return nil, nil, usageErrorf("listen %s: %v", addr, err)
		}
		s := &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
		servers = append(servers, s)
		urls[addr] = "http://" + ln.Addr().String()
		log.Info("listening", "url", urls[addr])
		go func() {
			if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("serving", "addr", addr, "err", err)
			}
		}()
	}
	return servers, urls, nil
}

func reconcileStatusCommand() *command {
	var (
		addr   string
		asJSON bool
		wait   time.Duration
	)
	return &command{
		Use:   "status --addr URL",
		Short: "Print a running reconciler's status",
		Long: `status reads GET /status from a reconciler started with --status-addr and
prints one line per source and per target: condition, reason, the last
attempted and applied revisions and the message. Diagnostics of a stalled
commit follow as file:line:col lines.

With --wait it polls until every source and target is Ready (a rollout
gate for scripts), or the time is up.

Exit status: 0 every source and target Ready, 1 something is Waiting or
Stalled, 2 usage error, 3 the reconciler could not be reached.`,
		Example: `  armoriq reconcile status --addr http://127.0.0.1:9001
  armoriq reconcile status --addr http://127.0.0.1:9001 --wait 2m`,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&addr, "addr", "http://127.0.0.1:9001", "the reconciler's --status-addr, as a URL")
			fs.BoolVar(&asJSON, "json", false, "print the JSON as served")
			fs.DurationVar(&wait, "wait", 0, "poll until everything is Ready, for at most this long")
		},
		Run: func(ctx context.Context, e *env, args []string) error {
			if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
				addr = "http://" + addr
			}
			deadline := time.Now().Add(wait)
			var (
				st   reconciler.Status
				data []byte
				err  error
			)
			for {
				st, data, err = fetchStatus(ctx, addr)
				if err != nil || allReady(st) || time.Now().After(deadline) {
					break
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
			if err != nil {
				return err
			}
			if asJSON {
				_, err = e.Stdout.Write(data)
			} else {
				printStatus(e.Stdout, st)
			}
			if err != nil {
				return err
			}
			if !allReady(st) {
				return silentExit(exitFailure)
			}
			return nil
		},
	}
}

func fetchStatus(ctx context.Context, addr string) (reconciler.Status, []byte, error) {
	var st reconciler.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(addr, "/")+"/status", nil)
	if err != nil {
		return st, nil, usageErrorf("--addr: %v", err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return st, nil, &exitError{Code: exitUnreachable, Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return st, nil, &exitError{Code: exitUnreachable, Err: fmt.Errorf("GET %s/status: %s", addr, resp.Status)}
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, nil, fmt.Errorf("GET %s/status: %v", addr, err)
	}
	return st, data, nil
}

func allReady(st reconciler.Status) bool {
	for _, s := range st.Sources {
		if s.Condition != reconciler.Ready {
			return false
		}
		for _, t := range s.Targets {
			if t.Condition != reconciler.Ready {
				return false
			}
		}
	}
	return true
}

// printStatus writes the status as a table, then each diagnostic.
func printStatus(w io.Writer, st reconciler.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tCONDITION\tREASON\tATTEMPTED\tAPPLIED\tMESSAGE")
	for _, s := range st.Sources {
		name := s.URL + "@" + s.Branch + ":" + s.Path
		cond := string(s.Condition)
		if s.Suspended {
			cond += " (suspended)"
		}
		fmt.Fprintf(tw, "source\t%s\t%s\t%s\t%s\t%s\t%s\n", name, cond, s.Reason, shortRev(s.LastAttemptedRevision), shortRev(s.LastAppliedRevision), oneLine(s.Message))
		for _, t := range s.Targets {
			fmt.Fprintf(tw, "target\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Condition, t.Reason, shortRev(t.LastAttemptedRevision), shortRev(t.LastAppliedRevision), oneLine(t.Message))
		}
	}
	tw.Flush()
	for _, s := range st.Sources {
		for _, d := range s.Diagnostics {
			pos := schema.Pos{File: d.File, Line: d.Line, Col: d.Col}
			msg := d.Summary
			if d.Path != "" {
				msg = d.Path + ": " + msg
			}
			fmt.Fprintf(w, "%s: %s: %s\n", pos, d.Severity, msg)
		}
	}
}

func shortRev(r string) string {
	switch {
	case r == "":
		return "-"
	case strings.HasPrefix(r, "sha256:") && len(r) > 19:
		return r[:19]
	case len(r) > 12:
		return r[:12]
	}
	return r
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

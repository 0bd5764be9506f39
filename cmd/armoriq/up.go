package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/reconciler"
	"github.com/armoriq/controlplane/runtime/gateway"
	"github.com/armoriq/controlplane/runtime/store"
)

// quickstartConfig is examples/quickstart/armoriq.yaml (a test keeps the two
// equal): what `armoriq up` writes in a directory with no config.
//
//go:embed quickstart.yaml
var quickstartConfig []byte

// upDefaultData is up's data directory; admin commands look for its
// admin.key when no key is given.
const upDefaultData = ".armoriq"

type upOptions struct {
	gw       gatewayOptions
	config   string
	interval time.Duration
}

func upCommand() *command {
	var o upOptions
	return &command{
		Use:   "up",
		Short: "Run a gateway for this directory's armoriq.yaml: the quickstart",
		Long: `up runs everything on one machine, in one process tree: a gateway on --addr
with its state (SQLite, signing keys, API keys) in --data, the MCP servers of
armoriq.yaml through their adapters, and a reconciler that enforces every
change of armoriq.yaml within a second or two. In a directory with no
armoriq.yaml it writes the quickstart config: weather-mcp, an MCP server
shipped inside armoriq (offline), with a per-user policy.

When armoriq.yaml is committed in a git repository, up follows the commits
of the checked-out branch (the reconciler's git source); otherwise it
follows the file itself, and each save is a new revision.

On first start it creates the admin key (DATA/admin.key) and an agent key
for SDKs and MCP clients (DATA/agent.key), both mode 0600. A second up in
the same directory reuses the same data and keys. Ctrl-C stops everything:
in-flight calls finish, the adapters and their servers exit.`,
		Example: `  armoriq up
  armoriq up --addr 127.0.0.1:9090 --config policy/armoriq.yaml
  armoriq demo            # in another terminal: the quickstart, step by step`,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&o.gw.addr, "addr", "127.0.0.1:8080", "address to listen on (HOST:PORT; port 0 picks a free one)")
			fs.StringVar(&o.gw.data, "data", upDefaultData, "data directory: SQLite store, keys")
			fs.StringVar(&o.config, "config", "armoriq.yaml", "the config to enforce; written from the quickstart when missing")
			fs.DurationVar(&o.interval, "watch-interval", 500*time.Millisecond, "how often to look for a change of the config")
			fs.StringVar(&o.gw.logFormat, "log-format", "text", "log format: text or json")
			fs.StringVar(&o.gw.logLevel, "log-level", "warn", "log level: debug, info, warn or error (adapters' and upstream servers' too)")
			fs.StringVar(&o.gw.readyFile, "ready-file", "", "write the gateway's URL to this file once it serves and the config has been read (enforced, or its problems printed)")
		},
		MaxArgs: 0,
		Run: func(ctx context.Context, e *env, args []string) error {
			if err := checkLogFlags(o.gw.logFormat, o.gw.logLevel); err != nil {
				return err
			}
			if o.interval < 50*time.Millisecond {
				return usageErrorf("--watch-interval %s is too short (at least 50ms)", o.interval)
			}
			o.gw.maxTTL, o.gw.callTimeout, o.gw.shutdown = time.Hour, 30*time.Second, 10*time.Second
			o.gw.adapterTimeout, o.gw.adapterConc, o.gw.adapterProcs, o.gw.sqliteSync = 60*time.Second, 64, 1, "full"
			o.gw.gcPercent = defaultGCPercent
			o.gw.local = true
			return runUp(ctx, e, &o)
		},
	}
}

func runUp(ctx context.Context, e *env, o *upOptions) error {
	wrote, err := ensureConfig(o.config)
	if err != nil {
		return err
	}
	g, err := openGateway(ctx, e, &o.gw)
	if err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			return usageErrorf("%v (is another armoriq up or gateway running? --addr 127.0.0.1:0 picks a free port)", err)
		}
		return err
	}
	defer g.close()

	adminPath := filepath.Join(o.gw.data, "admin.key")
	adminKey, err := readKeyFile(adminPath)
	if err != nil {
		return fmt.Errorf("%v: the store in %s already has an admin key, but not this file; remove %s to start afresh", err, o.gw.data, o.gw.data)
	}
	agentPath := filepath.Join(o.gw.data, "agent.key")
	if err := ensureAgentKey(ctx, g.store, agentPath); err != nil {
		return err
	}

	src, follows, err := upSource(o.config)
	if err != nil {
		return err
	}
	key, kid, err := bundle.LoadPrivateKey(o.gw.localKeyPath())
	if err != nil {
		return fmt.Errorf("local signing key: %v", err)
	}
	rep := &upReporter{w: e.Stdout, upstreams: g.upstream.Status}
	rec, err := reconciler.New(reconciler.Options{
		Source:      src,
		Targets:     []*reconciler.Gateway{{Name: "gateway", URL: g.url, APIKey: adminKey}},
		Build:       (&reconciler.Builder{Key: key, KeyID: kid, CompilerVersion: "armoriq " + buildVersion()}).Build,
		Interval:    o.interval,
		BackoffBase: 200 * time.Millisecond,
		BackoffMax:  5 * time.Second,
		Reporter:    rep,
		Logger:      g.log,
	})
	if err != nil {
		return err
	}
	rec.Pass(ctx) // the config is enforced (or its problems printed) before the banner
	printUpBanner(e.Stdout, upBanner{
		url: g.url, config: o.config, wrote: wrote, follows: follows, data: o.gw.data,
		adminKey: adminPath, agentKey: agentPath, prefix: commandPrefix(),
	})
	g.writeReadyFile(o.gw.readyFile)

	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = rec.Run(rctx)
	}()
	err = g.wait(ctx, &o.gw, nil)
	stop()
	wg.Wait()
	fmt.Fprintln(e.Stdout, "armoriq up: stopping (in-flight calls finish, adapters and their servers exit)")
	return err
}

// ensureConfig writes the quickstart config at path when there is no file
// there, and reports whether it did.
func ensureConfig(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return false, nil
	case !errors.Is(err, os.ErrNotExist):
		return false, usageErrorf("--config: %v", err)
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, usageErrorf("--config: %v", err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return false, usageErrorf("writing the quickstart config: %v", err)
	}
	if _, err := f.Write(quickstartConfig); err != nil {
		f.Close()
		return false, fmt.Errorf("writing %s: %v", path, err)
	}
	return true, f.Close()
}

// readKeyFile reads an API key file.
func readKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	k := strings.TrimSpace(string(b))
	if _, _, err := store.ParseAPIKey(k); err != nil {
		return "", fmt.Errorf("%s does not hold an API key: %v", path, err)
	}
	return k, nil
}

// ensureAgentKey makes sure path holds a live agent key of this gateway,
// creating one when the file is missing or its key is unknown or revoked.
func ensureAgentKey(ctx context.Context, st store.Store, path string) error {
	if k, err := readKeyFile(path); err == nil {
		id, _, _ := store.ParseAPIKey(k)
		if ak, err := st.GetAPIKey(ctx, id); err == nil && !ak.Revoked() && ak.Role == store.RoleAgent {
			return nil
		}
	}
	full, id, hash := store.GenerateAPIKey()
	err := st.CreateAPIKey(ctx, store.APIKey{ID: id, Name: "quickstart-agent", Role: store.RoleAgent, SecretHash: hash, Last4: store.APIKeyLast4(full)})
	if err != nil {
		return fmt.Errorf("creating the agent key: %v", err)
	}
	if err := writeSecretFile(path, full+"\n"); err != nil {
		return fmt.Errorf("writing %s: %v", path, err)
	}
	return nil
}

// writeSecretFile replaces path with content, readable by its owner only
// from the first byte on.
func writeSecretFile(path, content string) error {
	return writeFileAtomicMode(path, 0o600, func(f *os.File) error {
		_, err := f.WriteString(content)
		return err
	})
}

// upSource is the reconciler's source for the config at path: the git
// repository when the file is committed in one, else the file itself. It
// also says, for the banner, what is followed.
func upSource(path string) (*reconciler.Source, string, error) {
	if root, rel, ok := reconciler.TrackedFile(path); ok {
		src, err := reconciler.NewSource(reconciler.SourceOptions{URL: root, Path: rel})
		if err != nil {
			return nil, "", err
		}
		branch, err := src.ResolveBranch(context.Background())
		if err != nil {
			return nil, "", err
		}
		return src, fmt.Sprintf("the commits of branch %s in %s (commit an edit to enforce it)", branch, root), nil
	}
	src, err := reconciler.NewFileSource(path)
	if err != nil {
		return nil, "", err
	}
	return src, "the file: each save is enforced within a second or two", nil
}

// commandPrefix is how the user runs armoriq: "go run ./cmd/armoriq" when
// this binary was built by go run, else "armoriq".
func commandPrefix() string {
	exe, err := os.Executable()
	if err == nil && strings.Contains(filepath.ToSlash(exe), "/go-build") {
		return "go run ./cmd/armoriq"
	}
	return "armoriq"
}

type upBanner struct {
	url, config, follows, data, adminKey, agentKey, prefix string
	wrote                                                  bool
}

func printUpBanner(w io.Writer, b upBanner) {
	cfg := b.config + ": follows " + b.follows
	if b.wrote {
		cfg = b.config + ": written (there was none): the quickstart's weather-mcp with a per-user policy;\n             up follows " + b.follows
	}
	next := [][2]string{
		{b.prefix + " demo", "the quickstart, step by step: real calls, refusals, audit"},
		{"export ARMORIQ_API_KEY=$(cat " + b.agentKey + ")", "the agent key, for the SDKs (examples/quickstart)"},
		{b.prefix + " audit list", "what the gateway decided, hash-chained"},
	}
	width := 0
	for _, n := range next {
		width = max(width, len(n[0]))
	}
	var cmds strings.Builder
	for _, n := range next {
		fmt.Fprintf(&cmds, "  %-*s  # %s\n", width, n[0], n[1])
	}
	fmt.Fprintf(w, `
armoriq is up: %[1]s  (Ctrl-C stops everything)

  config     %[2]s
  data       %[3]s/  (SQLite store, signing keys; another up here reuses it)
  admin key  %[4]s  (armoriq keys, audit, ... use it by default)
  agent key  %[5]s  (for the SDKs and MCP clients)
  SDK API    %[1]s  (BACKEND_ENDPOINT, PROXY_ENDPOINT, IAP_ENDPOINT)
  MCP        %[1]s/mcp  (Authorization: Bearer <agent key>)

Next, in another terminal:
%[6]s
`, b.url, cfg, b.data, b.adminKey, b.agentKey, cmds.String())
}

// upReporter prints, for each change of the config, whether it is
// enforced, with the problems of an invalid one, and the upstream servers
// whose state changed.
type upReporter struct {
	w         io.Writer
	upstreams func() []gateway.UpstreamStatus
	mu        sync.Mutex
	shown     map[string]string // upstream id → the line last printed
}

func (r *upReporter) ReportCommit(_ context.Context, revision string, o reconciler.Outcome) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rev := shortRev(revision)
	switch o.Condition {
	case reconciler.Ready:
		fmt.Fprintf(r.w, "config %s: enforced\n", rev)
	case reconciler.Stalled:
		fmt.Fprintf(r.w, "config %s: NOT enforced (%s): the gateway keeps the last good config\n", rev, o.Message)
		for _, d := range o.Diagnostics {
			fmt.Fprintf(r.w, "  %s\n", d)
		}
	default:
		fmt.Fprintf(r.w, "config %s: not enforced yet (%s): %s; retrying\n", rev, o.Reason, o.Message)
	}
	if r.shown == nil {
		r.shown = map[string]string{}
	}
	for _, st := range r.upstreams() {
		var b strings.Builder
		printUpstreams(&b, []gateway.UpstreamStatus{st})
		if line := b.String(); r.shown[st.ID] != line {
			r.shown[st.ID] = line
			io.WriteString(r.w, line)
		}
	}
	return nil
}

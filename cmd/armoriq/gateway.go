package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/plugins/rawconn"
	"github.com/armoriq/controlplane/reconciler"
	"github.com/armoriq/controlplane/runtime/gateway"
	"github.com/armoriq/controlplane/runtime/httpfront"
	"github.com/armoriq/controlplane/runtime/store"
	"github.com/armoriq/controlplane/runtime/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// gatewayOptions are the flags of `armoriq gateway`; each has an ARMORIQ_*
// environment variable that applies when the flag is not given.
type gatewayOptions struct {
	addr        string
	data        string
	storeDSN    string
	trustKeys   []string
	config      string
	localKey    string
	register    bool
	maxTTL      time.Duration
	callTimeout time.Duration
	logFormat   string
	logLevel    string
	shutdown    time.Duration
	readyFile   string
	sqliteSync  string
	settings    string
	adminAddr   string
	adminKey    string
	// adapterTimeout and adapterConc bound each upstream server's adapter:
	// the time one call may take, and the calls in flight.
	adapterTimeout time.Duration
	adapterConc    int
	adapterProcs   int
	gcPercent      int
	httpFront      string
	// The HTTP server's limits (gateway.Limits).
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	maxHeader         byteSize
	maxBody           byteSize
	maxBundleBody     byteSize
	maxBatch          int
	maxPerKey         int

	// Tracing.
	trace         string
	traceEndpoint string
	traceEndUser  bool

	// The audit stream (--audit-sink).
	auditSink     string
	auditFileMax  byteSize
	auditFileKeep int

	// flags are the parsed flags and cli the names given on the command
	// line, for re-reading the settings file on SIGHUP.
	flags *pflag.FlagSet
	cli   map[string]bool
	// The human side: approvals of held calls, device logins, the console.
	approvalTTL     time.Duration
	approvalsHook   string
	approvalsSecret string
	publicURL       string
	// local trusts the local signing key without --config or --register
	// (armoriq up).
	local bool
}

func gatewayCommand() *command {
	var o gatewayOptions
	var flags *pflag.FlagSet
	return &command{
		Use:   "gateway",
		Short: "Run the gateway that agents call",
		Long: `Run the armoriq gateway: the ArmorIQ SDK API (/iap/sdk/token, /invoke,
/iap/sdk/register), an MCP endpoint for MCP clients (/mcp, Streamable HTTP,
Authorization: Bearer <api key>), the admin API (/v1/...), policy
enforcement, and a hash-chained audit log. Every upstream MCP server is
reached through an adapter process (this binary, or a pinned custom one).

State lives in an embedded SQLite database in --data, or in PostgreSQL with
--store postgres://... (for several replicas). On first start the gateway
creates an admin API key and writes it to DATA/admin.key (mode 0600).

Bundles are accepted only when signed by a --trust-key. With --config the
gateway compiles that armoriq.yaml at start, signs it with a local key
(DATA/local-signing.key, created on first use and trusted) and activates it
(armoriq up does the same for the current directory, and follows its edits). --register also lets the
SDK's POST /iap/sdk/register activate configs signed with that local key.

Every flag not given on the command line can be set by an environment
variable: ARMORIQ_ and the flag's name in upper case, - as _ (ARMORIQ_ADDR,
ARMORIQ_DATA, ARMORIQ_STORE, ARMORIQ_MAX_TOKEN_TTL, ...), except --trust-key:
ARMORIQ_TRUST_KEYS, comma-separated files. Flags win. --settings FILE reads
the rest from a YAML map of flag names to values (lists for --trust-key);
SIGHUP re-reads it and applies trust-key, max-token-ttl, call-timeout,
shutdown-timeout and admin-key-file.

Operations (docs/operations.md): /healthz and /readyz probes; --admin-addr
serves /metrics and pprof apart; --trace sends OpenTelemetry traces;
--audit-sink streams every committed audit record to stdout, a file or OTLP.`,
		Example: `  armoriq gateway --config examples/quickstart/armoriq.yaml
  armoriq gateway --addr :8080 --data /var/lib/armoriq --trust-key ci-signing.key.pub
  armoriq gateway --store postgres://armoriq@db/armoriq --trust-key ci-signing.key.pub`,
		Flags: func(fs *pflag.FlagSet) {
			flags = fs
			o.define(fs)
		},
		MaxArgs: 0,
		Run: func(ctx context.Context, e *env, args []string) error {
			o.flags, o.cli = flags, map[string]bool{}
			flags.Visit(func(f *pflag.Flag) { o.cli[f.Name] = true })
			if err := flagsFromEnv(flags, e.Getenv); err != nil {
				return err
			}
			if o.settings != "" {
				if err := flagsFromFile(flags, o.settings, e.Getenv); err != nil {
					return err
				}
			}
			if err := o.check(); err != nil {
				return err
			}
			return runGateway(ctx, e, &o)
		},
	}
}

// define defines the gateway's flags on fs, bound to o.
func (o *gatewayOptions) define(fs *pflag.FlagSet) {
	fs.StringVar(&o.settings, "settings", "", "YAML file of settings: flag names to values (flags and ARMORIQ_* variables win)")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on (HOST:PORT)")
	fs.StringVar(&o.data, "data", ".armoriq-data", "data directory: SQLite store, admin.key, local signing key")
	fs.StringVar(&o.storeDSN, "store", "", "database: postgres://... for PostgreSQL, or sqlite:PATH[?synchronous=full|normal&audit_journal=on|off] (default: SQLite in --data, its audit records journaled in armoriq.db-auditjournal)")
	fs.StringSliceVar(&o.trustKeys, "trust-key", nil, "bundle-signing public key file to trust (repeatable)")
	fs.StringVar(&o.config, "config", "", "armoriq.yaml to compile, sign with the local key and activate at start")
	fs.StringVar(&o.localKey, "local-key", "", "local signing key for --config and --register (default DATA/local-signing.key)")
	fs.BoolVar(&o.register, "register", false, "serve POST /iap/sdk/register, signing registered configs with the local key")
	fs.DurationVar(&o.maxTTL, "max-token-ttl", time.Hour, "longest validity an intent token may be issued with")
	fs.DurationVar(&o.callTimeout, "call-timeout", 30*time.Second, "time limit of one forwarded tool call")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error (adapters' and upstream servers' too)")
	fs.DurationVar(&o.shutdown, "shutdown-timeout", 30*time.Second, "how long to let in-flight calls finish on SIGTERM")
	fs.DurationVar(&o.adapterTimeout, "adapter-timeout", 60*time.Second, "time limit of one call inside an upstream server's adapter")
	fs.IntVar(&o.adapterConc, "adapter-concurrency", 64, "calls in flight per upstream server's adapter")
	fs.IntVar(&o.gcPercent, "gc-percent", defaultGCPercent, "how far the gateway's heap grows over what is live before a garbage collection, in percent (GOGC; the GOGC environment variable, when set, wins). 200 takes about a tenth less CPU per call than Go's 100, for a few MiB more memory (docs/mcp.md)")
	fs.StringVar(&o.httpFront, "http-front", "lean", "who reads the gateway's HTTP/1.1 requests: lean (its own reader for plain requests, without net/http's goroutine per request; anything unusual goes to net/http) or std (net/http for all). docs/mcp.md, \"Performance\"")
	fs.IntVar(&o.adapterProcs, "adapter-procs", 1, "CPUs each adapter process's Go runtime runs on at once (GOMAXPROCS); 0: every CPU. One forwards thousands of calls a second with less CPU per call (docs/plugins.md)")
	fs.StringVar(&o.sqliteSync, "sqlite-sync", "full", "SQLite commit durability: full (fsync each audit batch and commit: survives power loss) or normal (survives a gateway crash, not a power loss; faster)")
	fs.StringVar(&o.trace, "trace", "", "send OpenTelemetry traces: otlp-grpc, otlp-http or off (default: OTEL_TRACES_EXPORTER=otlp with OTEL_EXPORTER_OTLP_PROTOCOL, else off)")
	fs.StringVar(&o.traceEndpoint, "trace-endpoint", "", "OTLP traces endpoint URL (default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT)")
	fs.BoolVar(&o.traceEndUser, "trace-end-user", false, "record the end user on spans (enduser.id)")
	fs.StringVar(&o.auditSink, "audit-sink", "", "also stream every committed audit record, in order and at least once, to stdout, file:PATH (JSON lines, rotated by size), otlp (OTLP/HTTP logs to OTEL_EXPORTER_OTLP_ENDPOINT) or otlp:URL")
	o.auditFileMax = 100 << 20
	fs.Var(&o.auditFileMax, "audit-file-max-size", "size past which a file:PATH audit sink is rotated (bytes, or with KiB/MiB)")
	fs.IntVar(&o.auditFileKeep, "audit-file-keep", 5, "rotated files a file:PATH audit sink keeps (PATH.1 newest)")
	fs.StringVar(&o.adminAddr, "admin-addr", "", "serve /metrics and /debug/pprof/ without authentication on this separate address (HOST:PORT; off by default)")
	fs.StringVar(&o.adminKey, "admin-key-file", "", "file holding an admin API key (armoriq keygen --api-key) that the gateway makes sure exists, instead of creating DATA/admin.key")
	fs.DurationVar(&o.readHeaderTimeout, "read-header-timeout", gateway.DefaultReadHeaderTimeout, "time a client has to send a request's headers (idle and slow clients are cut off)")
	fs.DurationVar(&o.readTimeout, "read-timeout", gateway.DefaultReadTimeout, "time a client has to send a whole request, body included")
	fs.DurationVar(&o.writeTimeout, "write-timeout", 0, "time from a request's headers to the end of its answer (default --call-timeout + 30s; must exceed --call-timeout)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", gateway.DefaultIdleTimeout, "how long a keep-alive connection may wait for its next request")
	o.maxHeader, o.maxBody, o.maxBundleBody = gateway.DefaultMaxHeaderBytes, gateway.DefaultMaxBody, gateway.DefaultMaxBundleBody
	fs.Var(&o.maxHeader, "max-header", "largest request header block (bytes, or with KiB/MiB)")
	fs.Var(&o.maxBody, "max-body", "largest request body, refused with 413 before it is decoded (bytes, or with KiB/MiB)")
	fs.Var(&o.maxBundleBody, "max-bundle-body", "largest body of PUT /v1/bundle and POST /iap/sdk/register (bytes, or with KiB/MiB)")
	fs.IntVar(&o.maxBatch, "max-batch", gateway.DefaultMaxBatch, "most requests in one JSON-RPC batch on /mcp")
	fs.IntVar(&o.maxPerKey, "max-concurrent-per-key", gateway.DefaultMaxConcurrentPerKey, "most requests one API key may have running at once (one more gets 429)")
	fs.DurationVar(&o.approvalTTL, "approval-ttl", time.Hour, "how long an approval of a held call stays open")
	fs.StringVar(&o.approvalsHook, "approvals-webhook", "", "URL to POST approval events to (JSON with a Slack-compatible text)")
	fs.StringVar(&o.approvalsSecret, "approvals-webhook-secret", "", "HMAC-SHA256 key signing webhook bodies (X-Armoriq-Signature); prefer ARMORIQ_APPROVALS_WEBHOOK_SECRET")
	fs.StringVar(&o.publicURL, "public-url", "", "the gateway's URL as people reach it, for console links in logins and notices (default: from each request)")
	fs.StringVar(&o.readyFile, "ready-file", "", "write the gateway's URL to this file once it serves, and the --admin-addr URL on a second line (for scripts and supervisors)")
}

// envNames are the environment variables of flags whose name does not
// follow the ARMORIQ_<FLAG_NAME> rule.
var envNames = map[string]string{"trust-key": "ARMORIQ_TRUST_KEYS"}

// flagsFromEnv sets every flag the command line left unset from its
// environment variable, ARMORIQ_ and the flag's name in upper case with _
// for - (--max-token-ttl: ARMORIQ_MAX_TOKEN_TTL), parsed as the flag would be.
func flagsFromEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		name := flagEnvName(f.Name)
		if v := getenv(name); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = usageErrorf("%s=%q: %v", name, v, serr)
			}
		}
	})
	return err
}

// flagsFromFile sets the flags neither the command line nor the environment
// set from a YAML settings file whose keys are flag names:
//
//	addr: 0.0.0.0:8080
//	trust-key: [ci.pub, release.pub]
//	max-token-ttl: 15m
//
// Unknown keys are errors naming their line.
func flagsFromFile(fs *pflag.FlagSet, path string, getenv func(string) string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usageErrorf("--settings: %v", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return usageErrorf("%s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return usageErrorf("%s:%d:%d: settings must be a map of flag names to values", path, m.Line, m.Column)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		f := fs.Lookup(k.Value)
		if f == nil || k.Value == "help" || k.Value == "settings" {
			return usageErrorf("%s:%d:%d: unknown setting %q (settings are the gateway's flag names)", path, k.Line, k.Column, k.Value)
		}
		if f.Changed || getenv(flagEnvName(f.Name)) != "" {
			continue // the command line and the environment win
		}
		var vals []string
		switch v.Kind {
		case yaml.ScalarNode:
			vals = []string{v.Value}
		case yaml.SequenceNode:
			for _, e := range v.Content {
				vals = append(vals, e.Value)
			}
		default:
			return usageErrorf("%s:%d:%d: %s must be a value or a list", path, v.Line, v.Column, k.Value)
		}
		if err := fs.Set(f.Name, strings.Join(vals, ",")); err != nil {
			return usageErrorf("%s:%d:%d: %s: %v", path, v.Line, v.Column, k.Value, err)
		}
	}
	return nil
}

func flagEnvName(flag string) string {
	if n, ok := envNames[flag]; ok {
		return n
	}
	return "ARMORIQ_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// check validates the options once flags and environment are applied.
func (o *gatewayOptions) check() error {
	if err := checkLogFlags(o.logFormat, o.logLevel); err != nil {
		return err
	}
	if o.approvalTTL <= 0 {
		return usageErrorf("--approval-ttl must be positive")
	}
	for name, u := range map[string]string{"--approvals-webhook": o.approvalsHook, "--public-url": o.publicURL} {
		if u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return usageErrorf("%s %q must be an http:// or https:// URL", name, u)
		}
	}
	if err := telemetry.CheckTraceExporter(o.trace); err != nil {
		return usageErrorf("%v", err)
	}
	if o.auditSink != "" {
		if err := telemetry.CheckSink(o.auditSink); err != nil {
			return usageErrorf("--audit-sink: %v", err)
		}
		if o.auditFileKeep < 1 || o.auditFileMax < 1024 {
			return usageErrorf("--audit-file-keep must be at least 1 and --audit-file-max-size at least 1KiB")
		}
	}
	if o.maxTTL <= 0 || o.callTimeout <= 0 {
		return usageErrorf("--max-token-ttl and --call-timeout must be positive")
	}
	if o.adapterTimeout <= 0 || o.adapterConc <= 0 {
		return usageErrorf("--adapter-timeout and --adapter-concurrency must be positive")
	}
	if o.httpFront != "lean" && o.httpFront != "std" {
		return usageErrorf("--http-front must be lean or std, got %q", o.httpFront)
	}
	if o.gcPercent < 10 || o.gcPercent > 1000 {
		return usageErrorf("--gc-percent must be from 10 to 1000, got %d (GOGC=off in the environment turns collection off)", o.gcPercent)
	}
	if o.adapterProcs < 0 || o.adapterProcs > 1<<12 {
		return usageErrorf("--adapter-procs must be 0 (every CPU) or a number of CPUs, got %d", o.adapterProcs)
	}
	if o.readHeaderTimeout <= 0 || o.readTimeout <= 0 || o.idleTimeout <= 0 || o.writeTimeout < 0 {
		return usageErrorf("--read-header-timeout, --read-timeout and --idle-timeout must be positive, --write-timeout positive or 0 (the default)")
	}
	if o.writeTimeout > 0 && o.writeTimeout <= o.callTimeout {
		return usageErrorf("--write-timeout %s must exceed --call-timeout %s: an answer is written after the call", o.writeTimeout, o.callTimeout)
	}
	if o.maxHeader <= 0 || o.maxBody <= 0 || o.maxBundleBody <= 0 || o.maxBatch <= 0 || o.maxPerKey <= 0 {
		return usageErrorf("--max-header, --max-body, --max-bundle-body, --max-batch and --max-concurrent-per-key must be positive")
	}
	if o.sqliteSync != "full" && o.sqliteSync != "normal" {
		return usageErrorf("--sqlite-sync must be full or normal, got %q", o.sqliteSync)
	}
	return nil
}

// logLevels are the values of --log-level.
var logLevels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

// checkLogFlags checks --log-format and --log-level.
func checkLogFlags(format, level string) error {
	if format != "text" && format != "json" {
		return usageErrorf("--log-format must be text or json, got %q", format)
	}
	if _, ok := logLevels[level]; !ok {
		return usageErrorf("--log-level must be debug, info, warn or error, got %q", level)
	}
	return nil
}

// newLogger returns the logger of a long-running command: text or JSON on
// w, at level (debug, info, warn, error; "" is info).
func newLogger(w io.Writer, format, level string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: logLevels[level]}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runGateway(ctx context.Context, e *env, o *gatewayOptions) error {
	g, err := openGateway(ctx, e, o)
	if err != nil {
		return err
	}
	defer g.close()
	banner := e.Stdout
	if o.auditSink == "stdout" {
		banner = e.Stderr // standard output carries only audit records
	}
	printUpstreams(banner, g.upstream.Status())
	fmt.Fprintf(banner, "armoriq gateway listening on %s\n", g.url)
	g.writeReadyFile(o.readyFile)
	// SIGHUP re-reads the settings file (gateway_reload.go).
	return g.wait(ctx, o, func() { reloadGateway(ctx, e, o, g.srv, g.local, g.log) })
}

// gatewayRun is an open gateway: its store, adapters and server, serving
// on its listener. `armoriq gateway` and `armoriq up` share it.
type gatewayRun struct {
	log      *slog.Logger
	store    store.Store
	upstream gateway.Upstream
	srv      *gateway.Server
	reg      *registrar                   // the local signing key's, with --config, --register or local
	local    map[string]ed25519.PublicKey // that key, trusted besides the --trust-keys; a reload keeps it
	hs       httpServer                   // the gateway's: an *http.Server or an *httpfront.Server over one
	url      string                       // http://HOST:PORT
	admin    *http.Server                 // --admin-addr, if set
	adminURL string
	errc     chan error
	// stopStream stops the --audit-sink stream, if any.
	stopStream func()
	tracing    *telemetry.Tracing
}

// defaultGCPercent is the gateway's GOGC unless told otherwise. Its heap is
// small (tens of MiB) and most of what it allocates lives for one call, so
// collections are frequent and their cost is per call: at 200 instead of
// Go's 100, armoriq bench measured 8 to 11% less gateway CPU per call at
// 16 and 64 callers, for 4 to 7 MiB more memory (docs/performance-history.md, sixth round).
const defaultGCPercent = 200

// setGCPercent sets the gateway's GOGC to percent, unless the GOGC
// environment variable says otherwise (the runtime applied it already).
func setGCPercent(percent int) {
	if os.Getenv("GOGC") == "" && percent > 0 {
		debug.SetGCPercent(percent)
	}
}

// openGateway opens the store, starts the adapter host and the server,
// creates the admin key on first start (DATA/admin.key), activates
// --config, and serves on --addr (and --admin-addr). With o.local the local
// signing key is trusted even without --config or --register (armoriq up
// pushes bundles signed with it). The caller must close the result.
func openGateway(ctx context.Context, e *env, o *gatewayOptions) (_ *gatewayRun, err error) {
	log := newLogger(e.Stderr, o.logFormat, o.logLevel)
	setGCPercent(o.gcPercent)
	g := &gatewayRun{log: log, local: make(map[string]ed25519.PublicKey), errc: make(chan error, 2)}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	if err := os.MkdirAll(o.data, 0o700); err != nil {
		return nil, usageErrorf("cannot create data directory %s: %v", o.data, err)
	}
	trusted, err := loadTrustKeys(o.trustKeys)
	if err != nil {
		return nil, err
	}
	if o.config != "" || o.register || o.local {
		// The server is created below; the registrar reads its active
		// bundle through g.
		r, err := newRegistrar(o.localKeyPath(), func() *bundle.Bundle { return g.srv.ActiveBundle() })
		if err != nil {
			return nil, err
		}
		g.reg = r
		id, pub := r.publicKey()
		trusted[id], g.local[id] = pub, pub
	}
	if len(trusted) == 0 {
		log.Warn("no trusted bundle-signing key: every bundle will be refused and every call denied; pass --trust-key or --config")
	}

	dbPath := filepath.Join(o.data, "armoriq.db")
	dsn := o.storeDSN
	if dsn == "" {
		dsn = "sqlite:" + dbPath + "?synchronous=" + o.sqliteSync
	}
	if g.store, err = store.Open(ctx, dsn); err != nil {
		return nil, fmt.Errorf("opening the store: %v", err)
	}
	if err := store.CanAppendAudit(g.store); err != nil {
		// Every call would be refused (no audit record, no call): say so
		// now rather than serve.
		g.store.Close()
		return nil, fmt.Errorf("opening the store: %v; is another gateway running on this database? Several gateways need PostgreSQL (--store postgres://...)", err)
	}
	if o.storeDSN == "" {
		// The database holds the token-signing keys: owner only.
		for _, suffix := range []string{"", "-wal", "-shm", "-auditjournal"} {
			_ = os.Chmod(dbPath+suffix, 0o600)
		}
	}

	// Every upstream server is reached through an adapter process: this
	// binary re-executed as "armoriq adapter http|stdio", or a pinned
	// custom adapter. Closing the upstream stops them all.
	hostOpts := []plugins.HostOption{
		plugins.WithGetenv(e.Getenv),
		plugins.WithCallTimeout(o.adapterTimeout),
		plugins.WithMaxConcurrent(o.adapterConc),
		plugins.WithAdapterProcs(o.adapterProcs),
		plugins.WithLog(e.Stderr, o.logLevel),
	}
	if dir := e.Getenv(adapterPprofEnv); dir != "" {
		// Profiling the adapters (armoriq bench --cpuprofile): adapters
		// do not inherit the gateway's environment, this one is passed.
		hostOpts = append(hostOpts, plugins.WithEnv(adapterPprofEnv+"="+dir))
		log.Warn("adapters serve the Go profiler on loopback ports", "urls_in", dir)
	}
	g.upstream = gateway.NewAdapterUpstream(plugins.NewHost(hostOpts...))
	tcfg, err := telemetry.TracingFromEnv(telemetry.TracingConfig{Exporter: o.trace, Endpoint: o.traceEndpoint, ServiceVersion: buildVersion()}, e.Getenv)
	if err != nil {
		return nil, usageErrorf("tracing: %v", err)
	}
	if g.tracing, err = telemetry.NewTracing(ctx, tcfg); err != nil {
		return nil, usageErrorf("tracing: %v", err)
	}
	if g.tracing.On() {
		log.Info("tracing on", "exporter", tcfg.Exporter)
	}
	cfg := gateway.Config{
		Tracing: g.tracing, TraceEndUser: o.traceEndUser,
		Metrics: telemetry.NewMetrics(),
		Store:   g.store, TrustedKeys: trusted, Upstream: g.upstream, Logger: log,
		MaxTokenTTL: o.maxTTL, CallTimeout: o.callTimeout,
		Limits: gateway.Limits{
			ReadHeaderTimeout: o.readHeaderTimeout, ReadTimeout: o.readTimeout,
			WriteTimeout: o.writeTimeout, IdleTimeout: o.idleTimeout,
			MaxHeaderBytes: int(o.maxHeader), MaxBody: int64(o.maxBody), MaxBundleBody: int64(o.maxBundleBody),
			MaxBatch: o.maxBatch, MaxConcurrentPerKey: o.maxPerKey,
		},
		Human: gateway.HumanConfig{
			ApprovalTTL: o.approvalTTL, ApprovalsWebhook: o.approvalsHook, WebhookSecret: o.approvalsSecret, PublicURL: o.publicURL,
		},
	}
	if o.register {
		cfg.Registrar = g.reg
	}
	if g.srv, err = gateway.NewServer(ctx, cfg); err != nil {
		return nil, err
	}
	if o.auditSink != "" {
		stop, err := startAuditStream(ctx, e, o, g.store, cfg.Metrics, log)
		if err != nil {
			return nil, err
		}
		g.stopStream = stop
	}

	if o.adminKey != "" {
		data, err := os.ReadFile(o.adminKey)
		if err != nil {
			return nil, usageErrorf("--admin-key-file: %v", err)
		}
		created, err := g.srv.EnsureAdminKey(ctx, strings.TrimSpace(string(data)))
		if err != nil {
			return nil, usageErrorf("--admin-key-file %s: %v", o.adminKey, err)
		}
		if created {
			log.Info("created the admin API key of the key file", "file", o.adminKey)
		}
	} else if key, created, err := g.srv.Bootstrap(ctx); err != nil {
		return nil, fmt.Errorf("creating the admin key: %v", err)
	} else if created {
		path := filepath.Join(o.data, "admin.key")
		if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %v", path, err)
		}
		log.Info("created the admin API key", "file", path)
	}
	if o.config != "" {
		data, err := os.ReadFile(o.config)
		if err != nil {
			return nil, usageErrorf("--config: %v", err)
		}
		res, err := g.reg.Register(ctx, o.config, data)
		if err != nil {
			return nil, err
		}
		if res.Bundle == nil {
			for _, d := range res.Diagnostics {
				fmt.Fprintln(e.Stderr, d)
			}
			return nil, &exitError{Code: exitFailure, Err: fmt.Errorf("%s is invalid: not starting", o.config)}
		}
		act, err := g.srv.Activate(ctx, res.Bundle, false)
		if err != nil {
			return nil, fmt.Errorf("activating %s: %v", o.config, err)
		}
		log.Info("config activated", "file", o.config, "revision", act.Revision)
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, usageErrorf("cannot listen on %s: %v", o.addr, err)
	}
	hs := g.srv.NewHTTPServer()
	g.hs = hs
	if o.httpFront == "lean" {
		front := httpfront.New(hs)
		g.hs = front
		registerFrontMetrics(cfg.Metrics, front)
	}
	g.url = "http://" + ln.Addr().String()
	log.Info("gateway listening", "addr", ln.Addr().String(), "store", storeKind(dsn), "http", o.httpFront)
	go func() { g.errc <- g.hs.Serve(rawconn.Listen(ln)) }()
	if o.adminAddr != "" {
		aln, err := net.Listen("tcp", o.adminAddr)
		if err != nil {
			return nil, usageErrorf("cannot listen on --admin-addr %s: %v", o.adminAddr, err)
		}
		// The gateway's connection limits, but no write timeout:
		// /debug/pprof/profile and trace answer after their duration.
		g.admin = &http.Server{Handler: adminHandler(g.srv), ReadHeaderTimeout: o.readHeaderTimeout, ReadTimeout: o.readTimeout,
			IdleTimeout: o.idleTimeout, MaxHeaderBytes: int(o.maxHeader), ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() {
			if err := g.admin.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.errc <- fmt.Errorf("admin listener: %v", err)
			}
		}()
		log.Info("admin listener: metrics and pprof", "addr", aln.Addr().String())
		g.adminURL = "http://" + aln.Addr().String()
	}
	return g, nil
}

func (o *gatewayOptions) localKeyPath() string {
	if o.localKey != "" {
		return o.localKey
	}
	return filepath.Join(o.data, "local-signing.key")
}

// writeReadyFile writes the gateway's URL to path, if set, once it serves,
// and the --admin-addr URL on a second line.
func (g *gatewayRun) writeReadyFile(path string) {
	if path == "" {
		return
	}
	if err := writeFileAtomic(path, func(f *os.File) error {
		_, err := fmt.Fprintf(f, "%s\n", g.url)
		if err == nil && g.adminURL != "" {
			_, err = fmt.Fprintln(f, g.adminURL)
		}
		return err
	}); err != nil {
		g.log.Warn("cannot write the ready file", "file", path, "error", err)
	}
}

// wait serves until ctx is done, calling onHUP (if not nil) on each
// SIGHUP, then lets in-flight calls finish within --shutdown-timeout.
func (g *gatewayRun) wait(ctx context.Context, o *gatewayOptions, onHUP func()) error {
	hup := make(chan os.Signal, 1)
	if onHUP != nil {
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
wait:
	for {
		select {
		case err := <-g.errc:
			return fmt.Errorf("serving: %v", err)
		case <-ctx.Done():
			break wait
		case <-hup:
			onHUP()
		}
	}
	g.log.Info("shutting down: finishing in-flight calls", "timeout", o.shutdown)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdown)
	defer cancel()
	if err := g.hs.Shutdown(sctx); err != nil {
		g.log.Warn("shutdown timed out; closing remaining connections", "error", err)
		g.hs.Close()
	}
	return nil
}

// registerFrontMetrics exports what the lean front served and what it
// handed to net/http: a rise in handoffs says clients send what the front
// leaves to net/http (chunked bodies, Expect, HTTP/1.0).
func registerFrontMetrics(m *telemetry.Metrics, front *httpfront.Server) {
	m.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "armoriq_http_lean_requests_total",
		Help: "HTTP/1.1 requests the gateway's lean front served itself (--http-front lean).",
	}, func() float64 { return float64(front.Stats().Lean) }))
	m.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "armoriq_http_handed_off_connections_total",
		Help: "Connections the lean front handed to Go's net/http server, for a request it does not serve (chunked body, Expect, Upgrade, HTTP/1.0, HEAD, a large header block, a malformed request).",
	}, func() float64 { return float64(front.Stats().HandedOff) }))
}

// httpServer serves the gateway's listener.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// close stops what openGateway started, in order: the listeners, the
// server, the adapter processes (waiting for them to exit), the store.
func (g *gatewayRun) close() {
	if g.hs != nil {
		g.hs.Close()
	}
	if g.admin != nil {
		g.admin.Close()
	}
	if g.stopStream != nil {
		g.stopStream()
	}
	if g.srv != nil {
		g.srv.Close()
	}
	if g.tracing != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := g.tracing.Shutdown(sctx); err != nil {
			g.log.Warn("exporting the last spans failed", "error", err)
		}
		cancel()
	}
	if g.upstream != nil {
		if err := g.upstream.Close(); err != nil {
			g.log.Error("stopping the adapters", "error", err)
		}
	}
	if g.store != nil {
		if err := g.store.Close(); err != nil {
			g.log.Error("closing the store", "error", err)
		}
		g.log.Info("gateway stopped")
	}
}

// printUpstreams prints one line per upstream server: up, or down and why.
func printUpstreams(w io.Writer, sts []gateway.UpstreamStatus) {
	for _, st := range sts {
		why := st.LastError
		if why == "" {
			why = "no error recorded yet"
		}
		switch st.State {
		case "up":
			fmt.Fprintf(w, "upstream %s (%s): up\n", st.ID, st.Transport)
		case "failed":
			fmt.Fprintf(w, "upstream %s (%s): FAILED, not retried until its config changes: %s\n", st.ID, st.Transport, why)
		default:
			fmt.Fprintf(w, "upstream %s (%s): %s, restarting with backoff (restarts: %d): %s\n", st.ID, st.Transport, strings.ToUpper(st.State), st.Restarts, why)
		}
	}
}

// adminHandler serves the operator's endpoints of --admin-addr: the
// metrics and the runtime profiles. It has no authentication: bind it to
// an address only operators and the metrics scraper reach.
func adminHandler(srv *gateway.Server) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", srv.MetricsHandler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// byteSize is a flag of a size in bytes: a number, optionally followed by
// KiB, MiB or GiB (or KB, MB, GB, also powers of 1024).
type byteSize int64

func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range []struct {
		unit string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.unit)
		}
	}
	return fmt.Sprint(n)
}

func (b *byteSize) Set(s string) error {
	num := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		unit string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(strings.ToUpper(num), strings.ToUpper(u.unit)) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.unit)]), u.size
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return fmt.Errorf("want a size in bytes such as 1048576, 64KiB or 1MiB")
	}
	*b = byteSize(n * mult)
	return nil
}

func (b *byteSize) Type() string { return "size" }

func storeKind(dsn string) string {
	if strings.HasPrefix(dsn, "postgres") {
		return "postgres"
	}
	return "sqlite"
}

// registrar serves --config and the SDK's register call with the reconciler's
// Registrar, signing with the gateway's local key: the runtime itself never
// imports the compiler.
type registrar struct {
	r *reconciler.Registrar
}

func newRegistrar(keyPath string, active func() *bundle.Bundle) (*registrar, error) {
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		if err := bundle.GenerateKey(keyPath); err != nil {
			return nil, fmt.Errorf("creating the local signing key %s: %v", keyPath, err)
		}
	}
	key, id, err := bundle.LoadPrivateKey(keyPath)
	if err != nil {
		return nil, usageErrorf("local signing key %s: %v", keyPath, err)
	}
	return &registrar{r: &reconciler.Registrar{
		Key: key, KeyID: id, CompilerVersion: buildVersion(),
		Active: func(context.Context) (*bundle.Bundle, error) { return active(), nil },
	}}, nil
}

func (g *registrar) publicKey() (string, ed25519.PublicKey) {
	return g.r.KeyID, g.r.Key.Public().(ed25519.PublicKey)
}

// Register implements gateway.Registrar.
func (g *registrar) Register(ctx context.Context, filename string, body []byte) (gateway.RegisterResult, error) {
	res, err := g.r.RegisterFile(ctx, filename, body)
	if err != nil {
		return gateway.RegisterResult{}, err
	}
	out := gateway.RegisterResult{Changes: res.Changes}
	if res.Valid {
		out.Bundle = res.Bundle
	}
	for _, d := range res.Diagnostics {
		out.Diagnostics = append(out.Diagnostics, d.String())
	}
	return out, nil
}

package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc"
)

// Host runs one adapter process per upstream server for the gateway: it
// starts them, restarts them when they crash, bounds every call with a
// timeout and a concurrency limit, and kills them all on Close.
//
// Built-in adapters run by re-executing the gateway's own binary
// ("armoriq adapter http"); custom adapters run from their pinned path.
type Host struct {
	opts hostOptions

	mu        sync.Mutex
	instances map[string]*instance
	closed    bool
}

// HostOption configures a Host.
type HostOption func(*hostOptions)

type hostOptions struct {
	exe          string
	exeArgs      []string
	env          []string
	getenv       func(string) string
	callTimeout  time.Duration
	maxConc      int
	startTimeout time.Duration
	minBackoff   time.Duration
	maxBackoff   time.Duration
	stopGrace    time.Duration
	logOutput    io.Writer
	logLevel     hclog.Level
}

// WithExecutable sets the program run for the built-in adapters: path, then
// args, then the transport name ("http" or "stdio"). The default is the
// running executable with args "adapter", that is "armoriq adapter http".
func WithExecutable(path string, args ...string) HostOption {
	return func(o *hostOptions) { o.exe, o.exeArgs = path, args }
}

// WithEnv adds KEY=value pairs to every adapter's environment. Adapters do
// not inherit the gateway's environment, which may hold its own secrets:
// they get PATH, HOME, USER, LANG, LC_ALL, TMPDIR, TZ, the proxy variables
// and SSL_CERT_FILE/DIR, and these.
func WithEnv(kv ...string) HostOption {
	return func(o *hostOptions) { o.env = append(o.env, kv...) }
}

// WithGetenv sets how $VAR references in ServerConfig.Headers and Env are
// resolved (default os.Getenv).
func WithGetenv(getenv func(string) string) HostOption {
	return func(o *hostOptions) { o.getenv = getenv }
}

// WithCallTimeout sets the default time a call may take (default 60s).
func WithCallTimeout(d time.Duration) HostOption {
	return func(o *hostOptions) { o.callTimeout = d }
}

// WithAdapterProcs sets how many CPUs each adapter's Go runtime may run
// on at once (ProcsEnv, read by Serve): 0 leaves the runtime's default,
// every CPU of the machine. An adapter forwards calls and needs little CPU
// per call; with fewer runtime processors than CPUs, the hand-offs between
// the goroutines of one call do not wake idle threads to spin for work.
func WithAdapterProcs(n int) HostOption {
	return func(o *hostOptions) {
		if n > 0 {
			o.env = append(o.env, fmt.Sprintf("%s=%d", ProcsEnv, n))
		}
	}
}

// WithMaxConcurrent sets the default number of calls in flight per adapter
// (default 16).
func WithMaxConcurrent(n int) HostOption {
	return func(o *hostOptions) { o.maxConc = n }
}

// WithStartTimeout bounds an adapter's start: the handshake and Configure
// (default 30s).
func WithStartTimeout(d time.Duration) HostOption {
	return func(o *hostOptions) { o.startTimeout = d }
}

// WithRestartBackoff sets the delay before restarting a crashed adapter:
// min, doubled after each failed start up to max (default 100ms, 30s).
func WithRestartBackoff(min, max time.Duration) HostOption {
	return func(o *hostOptions) { o.minBackoff, o.maxBackoff = min, max }
}

// WithStopGrace bounds how long stopping an adapter (Sync removing or
// changing its server, or Close) waits for its calls in flight to finish
// before the process is stopped (default 10s).
func WithStopGrace(d time.Duration) HostOption {
	return func(o *hostOptions) { o.stopGrace = d }
}

// WithLog sends the host's and the adapters' logs to w at level ("debug",
// "info", "warn", "error"). The default is os.Stderr at "warn".
func WithLog(w io.Writer, level string) HostOption {
	return func(o *hostOptions) { o.logOutput, o.logLevel = w, hclog.LevelFromString(level) }
}

// NewHost returns a Host running no adapter yet.
func NewHost(opts ...HostOption) *Host {
	o := hostOptions{
		exeArgs:      []string{"adapter"},
		getenv:       os.Getenv,
		callTimeout:  60 * time.Second,
		maxConc:      16,
		startTimeout: 30 * time.Second,
		minBackoff:   100 * time.Millisecond,
		maxBackoff:   30 * time.Second,
		stopGrace:    10 * time.Second,
		logOutput:    os.Stderr,
		logLevel:     hclog.Warn,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logLevel == hclog.NoLevel {
		o.logLevel = hclog.Warn
	}
	h := &Host{opts: o, instances: map[string]*instance{}}
	if removed := sweepHopLeftovers(); len(removed) > 0 {
		h.logger().Info("removed the hop directories of adapters killed with their host", "dirs", removed)
	}
	return h
}

// Sync makes the running adapters match servers, as when a bundle is
// activated: it starts new servers, stops removed ones and restarts changed
// ones, leaving unchanged ones running. It waits for each started adapter's
// first start and returns their errors joined. An adapter that failed to
// start is retried in the background, unless its configuration is wrong (a
// sha256 mismatch, an unset variable): that one is retried at the next Sync.
func (h *Host) Sync(ctx context.Context, servers []ServerConfig) error {
	want := make(map[string]ServerConfig, len(servers))
	for _, s := range servers {
		if s.ID == "" {
			return errors.New("plugins: server with an empty id")
		}
		if _, dup := want[s.ID]; dup {
			return fmt.Errorf("plugins: server %q configured twice", s.ID)
		}
		want[s.ID] = s
	}

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return errors.New("plugins: host is closed")
	}
	var stopping, starting []*instance
	for id, in := range h.instances {
		if cfg, ok := want[id]; !ok || !reflect.DeepEqual(cfg, in.cfg) || in.status().State == StateFailed {
			stopping = append(stopping, in)
			delete(h.instances, id)
		}
	}
	for _, s := range servers {
		if _, ok := h.instances[s.ID]; ok {
			continue
		}
		in := newInstance(h, s)
		h.instances[s.ID] = in
		starting = append(starting, in)
	}
	h.mu.Unlock()

	// New adapters start while the old ones drain their calls in flight.
	for _, in := range starting {
		go in.run()
	}
	stopAll(stopping)
	var errs []error
	for _, in := range starting {
		select {
		case err := <-in.firstStart:
			if err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("adapter %q: still starting: %w", in.cfg.ID, ctx.Err()))
		}
	}
	return errors.Join(errs...)
}

// Get returns the adapter of server id. Its calls go to whichever process
// currently serves id, so it stays usable across restarts and Syncs. Its
// Configure method returns an error: the host configures its adapters.
func (h *Host) Get(id string) (Adapter, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.instances[id]; !ok {
		return nil, fmt.Errorf("adapter %q: %w", id, ErrUnknownServer)
	}
	return &hostAdapter{h: h, id: id}, nil
}

func (h *Host) instance(id string) (*instance, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	in, ok := h.instances[id]
	if !ok {
		return nil, fmt.Errorf("adapter %q: %w", id, ErrUnknownServer)
	}
	return in, nil
}

// State is an adapter's condition.
type State string

// The states of an adapter.
const (
	StateStarting State = "starting" // its process is being started
	StateUp       State = "up"       // it serves calls
	StateDown     State = "down"     // it crashed or failed to start; a restart is pending
	StateFailed   State = "failed"   // its configuration is wrong; it will not be restarted
)

// Status describes one adapter, for the gateway's status and metrics.
type Status struct {
	ID        string
	Transport string
	State     State
	PID       int       // of the adapter process while it runs
	Contract  int       // the contract version it speaks while it runs (1 to 5)
	Restarts  int       // restarts after a crash or a failed start
	LastError string    // why it last went down, empty if it never did
	Since     time.Time // when State last changed
	// RawCalls and SDKCalls count the tools/calls of this server by the
	// path they took in its adapter (RawResult.Path): forwarded as bytes,
	// or through the adapter's MCP client (contract 2 and older count
	// there).
	RawCalls, SDKCalls int64
}

// Status returns every adapter's status, ordered by server id.
func (h *Host) Status() []Status {
	h.mu.Lock()
	ins := make([]*instance, 0, len(h.instances))
	for _, in := range h.instances {
		ins = append(ins, in)
	}
	h.mu.Unlock()
	out := make([]Status, 0, len(ins))
	for _, in := range ins {
		out = append(out, in.status())
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Close stops every adapter, letting calls in flight finish within the
// stop grace, and waits until their processes are gone. The host cannot be
// used afterwards.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	ins := make([]*instance, 0, len(h.instances))
	for id, in := range h.instances {
		ins = append(ins, in)
		delete(h.instances, id)
	}
	h.mu.Unlock()
	stopAll(ins)
	return nil
}

func stopAll(ins []*instance) {
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.stop()
		}()
	}
	wg.Wait()
}

func (h *Host) logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "armoriq.plugins",
		Output: h.opts.logOutput,
		Level:  h.opts.logLevel,
	})
}

// adapterEnvVars are the variables of the gateway's environment that
// adapters inherit: what programs need to run, find files and reach the
// network through a proxy.
var adapterEnvVars = []string{
	"PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"SSL_CERT_FILE", "SSL_CERT_DIR",
}

// adapterEnv is the environment of an adapter process: a few variables
// programs need, and the host's extras. The gateway's own secrets stay out.
func (h *Host) adapterEnv() []string {
	var env []string
	for _, k := range adapterEnvVars {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, LogLevelEnv+"="+strings.ToLower(h.opts.logLevel.String()))
	return append(env, h.opts.env...)
}

// configError is a start failure that retrying cannot fix.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// launch starts one adapter process and configures it.
func (h *Host) launch(ctx context.Context, cfg ServerConfig) (*proc, error) {
	resolved, err := resolve(cfg, h.opts.getenv)
	if err != nil {
		return nil, &configError{fmt.Errorf("adapter %q: %w", cfg.ID, err)}
	}
	if cfg.Transport == TransportStdio && cfg.Command == SelfCommand {
		// The gateway's own binary, wherever it is installed (or built by
		// go run): the demo servers it ships ("armoriq demo-server").
		if resolved.Command, err = h.self(); err != nil {
			return nil, fmt.Errorf("adapter %q: %w", cfg.ID, err)
		}
	}
	if err := checkProtocol(cfg); err != nil {
		return nil, err
	}
	var (
		path string
		args []string
	)
	switch cfg.Transport {
	case TransportHTTP, TransportStdio:
		if path, err = h.self(); err != nil {
			return nil, fmt.Errorf("adapter %q: %w", cfg.ID, err)
		}
		args = append(append(args, h.opts.exeArgs...), cfg.Transport)
	case TransportPlugin:
		if err := checkPinned(cfg); err != nil {
			return nil, err
		}
		path = cfg.Path
	default:
		return nil, &configError{fmt.Errorf("adapter %q: unknown transport %q", cfg.ID, cfg.Transport)}
	}

	var r *procRunner
	stderr := &stderrTail{}
	fail := func(err error) error {
		// What the adapter printed that was not a log line (a panic, a
		// custom adapter's own messages) explains the failure: log it.
		for _, line := range stderr.lines() {
			h.logger().Named(cfg.ID).Warn("adapter stderr", "line", line)
		}
		return err
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		Stderr:           stderr,
		HandshakeConfig:  handshake(),
		VersionedPlugins: hostPluginSets(h.logger().Named(cfg.ID)),
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
			grpc.WithStaticStreamWindowSize(flowWindow), grpc.WithStaticConnWindowSize(flowWindow)},
		StartTimeout: h.opts.startTimeout,
		Logger:       h.logger().Named(cfg.ID),
		// go-plugin passes a command carrying only its own variables; the
		// runner runs ours with them.
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
			cmd := exec.Command(path, args...)
			cmd.Env = append(h.adapterEnv(), spec.Env...)
			var err error
			r, err = newProcRunner(cmd)
			return r, err
		},
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, fail(fmt.Errorf("adapter %q: starting %s: %w", cfg.ID, path, err))
	}
	if v := client.NegotiatedVersion(); v < 1 || v > ProtocolVersion {
		client.Kill()
		return nil, &configError{fmt.Errorf("adapter %q: speaks contract version %d, this host speaks 1 to %d", cfg.ID, v, ProtocolVersion)}
	}
	raw, err := rpc.Dispense(pluginName)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("adapter %q: %w", cfg.ID, err)
	}
	a := raw.(Adapter)
	ctx, cancel := context.WithTimeout(ctx, h.opts.startTimeout)
	defer cancel()
	if err := a.Configure(ctx, resolved); err != nil {
		client.Kill()
		return nil, fail(fmt.Errorf("adapter %q: configure: %w", cfg.ID, err))
	}
	return &proc{client: client, adapter: a, runner: r, version: client.NegotiatedVersion()}, nil
}

// SelfCommand is the stdio command that names the host's own binary: a
// server configured with command "armoriq" runs the armoriq executable the
// gateway itself runs from, not whatever "armoriq" PATH finds.
const SelfCommand = "armoriq"

// self is the program of the built-in adapters: WithExecutable's, else the
// running executable.
func (h *Host) self() (string, error) {
	if h.opts.exe != "" {
		return h.opts.exe, nil
	}
	path, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the armoriq executable: %w", err)
	}
	return path, nil
}

// checkProtocol refuses a protocol pin that would not hold: a version the
// built-in adapters do not speak, or a pin on a custom adapter, which may
// have been built before ServerConfig.Protocol and would then ignore it
// and run unpinned.
func checkProtocol(cfg ServerConfig) error {
	switch {
	case cfg.Protocol == "":
		return nil
	case cfg.Transport == TransportPlugin:
		return &configError{fmt.Errorf("adapter %q: protocol %q: only the built-in http and stdio adapters honour a protocol pin, not a custom adapter", cfg.ID, cfg.Protocol)}
	case !KnownProtocol(cfg.Protocol):
		return &configError{fmt.Errorf("adapter %q: protocol %q is not an MCP protocol version the adapters speak (%s)", cfg.ID, cfg.Protocol, strings.Join(protocolVersions[:], ", "))}
	}
	return nil
}

// checkPinned refuses a custom adapter whose file does not have the pinned
// digest, using go-plugin's SecureConfig check.
func checkPinned(cfg ServerConfig) error {
	sum, err := parseSHA256(cfg.SHA256)
	if err != nil {
		return &configError{fmt.Errorf("adapter %q: %w", cfg.ID, err)}
	}
	if cfg.Path == "" {
		return &configError{fmt.Errorf("adapter %q: transport plugin needs a path", cfg.ID)}
	}
	secure := &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	ok, err := secure.Check(cfg.Path)
	switch {
	case err != nil:
		return fmt.Errorf("adapter %q: checking %s: %w", cfg.ID, cfg.Path, err)
	case !ok:
		return &configError{fmt.Errorf("adapter %q: sha256 mismatch: config pins %s, file has %s", cfg.ID, hex.EncodeToString(sum), fileSHA256(cfg.Path))}
	}
	return nil
}

func parseSHA256(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	if s == "" {
		return nil, errors.New("transport plugin needs a pinned sha256")
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("sha256 %q is not 64 hex digits", s)
	}
	return b, nil
}

func fileSHA256(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unreadable (" + err.Error() + ")"
	}
	defer f.Close()
	hash := sha256.New()
	if _, err := io.Copy(hash, f); err != nil {
		return "unreadable (" + err.Error() + ")"
	}
	return hex.EncodeToString(hash.Sum(nil))
}

// resolve returns cfg with $VAR and ${VAR} references in Headers and Env
// values replaced. An unset variable is an error, not an empty credential.
func resolve(cfg ServerConfig, getenv func(string) string) (ServerConfig, error) {
	var missing []string
	expand := func(m map[string]string) map[string]string {
		if m == nil {
			return nil
		}
		out := make(map[string]string, len(m))
		for k, v := range m {
			out[k] = os.Expand(v, func(name string) string {
				val := getenv(name)
				if val == "" {
					missing = append(missing, name)
				}
				return val
			})
		}
		return out
	}
	cfg.Headers = expand(cfg.Headers)
	cfg.Env = expand(cfg.Env)
	if len(missing) > 0 {
		return cfg, fmt.Errorf("$%s is not set", strings.Join(missing, ", $"))
	}
	return cfg, nil
}

// stderrTail keeps the last lines an adapter process wrote on stderr that
// are not JSON log lines (those reach the host's log at their own level).
type stderrTail struct {
	mu   sync.Mutex
	buf  []byte
	last []string
}

func (t *stderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(t.buf[:i]))
		t.buf = t.buf[i+1:]
		if line == "" || (strings.HasPrefix(line, "{") && json.Valid([]byte(line))) {
			continue
		}
		if len(line) > 1000 {
			line = line[:1000] + "…"
		}
		t.last = append(t.last, line)
		if len(t.last) > 20 {
			t.last = t.last[1:]
		}
	}
	if len(t.buf) > 64<<10 {
		t.buf = t.buf[:0]
	}
	return len(p), nil
}

func (t *stderrTail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.last...)
}

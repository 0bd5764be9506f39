package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"
)

// stableAfter is how long an adapter must run before a crash restarts it
// with the shortest backoff again.
const stableAfter = time.Minute

// proc is one running adapter process.
type proc struct {
	client  *plugin.Client
	adapter Adapter // an AdapterV2 when version is 2
	runner  *procRunner
	version int // the contract version negotiated with the process

	// upstreamVersion is the protocol version of the adapter's upstream
	// session, as its last raw call reported it (contract 3): the next
	// call's _meta is built for it. legacyVersion is the same for legacy
	// calls (RawCall.Legacy), which an adapter may serve on a session of
	// their own era.
	upstreamVersion, legacyVersion atomic.Pointer[string]
}

// instance supervises the adapter of one server: it (re)starts processes
// and hands the current one to calls.
type instance struct {
	h          *Host
	cfg        ServerConfig
	timeout    time.Duration
	slots      chan struct{} // the concurrency limit
	firstStart chan error    // the first start's outcome, read by Sync
	quit       chan struct{} // closed to stop the instance
	done       chan struct{} // closed when the supervisor has stopped

	mu       sync.Mutex
	state    State
	cur      *proc
	ready    chan struct{} // closed when cur is set or the state is final
	restarts int
	lastErr  error
	since    time.Time

	rawCalls, sdkCalls atomic.Int64 // tools/calls by the path they took in the adapter
}

func newInstance(h *Host, cfg ServerConfig) *instance {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = h.opts.callTimeout
	}
	n := cfg.MaxConcurrent
	if n <= 0 {
		n = h.opts.maxConc
	}
	return &instance{
		h:          h,
		cfg:        cfg,
		timeout:    timeout,
		slots:      make(chan struct{}, n),
		firstStart: make(chan error, 1),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		state:      StateStarting,
		ready:      make(chan struct{}),
		since:      time.Now(),
	}
}

// run starts the adapter and restarts it whenever it exits, until stopped.
func (in *instance) run() {
	defer close(in.done)
	// A stop cancels a start in progress (its Configure call).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-in.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := in.h.opts.minBackoff
	first := true
	for {
		p, err := in.h.launch(ctx, in.cfg)
		// The state first, then the first start's outcome: Sync returns
		// with the adapter's state already saying it.
		var cerr *configError
		switch {
		case err == nil:
			in.setState(StateUp, p, nil)
		case errors.As(err, &cerr):
			in.setState(StateFailed, nil, err)
		default:
			in.setState(StateDown, nil, err)
		}
		if first {
			in.firstStart <- err
			first = false
		}
		if err != nil {
			if cerr != nil {
				in.h.logger().Named(in.cfg.ID).Error("adapter cannot start; not retried until its configuration changes", "error", err)
				<-in.quit
				return
			}
			in.logDown(err, backoff)
		} else {
			started := time.Now()
			select {
			case <-in.quit:
				in.drain()
				in.setState(StateDown, nil, nil)
				p.client.Kill()
				removeLeftovers(p)
				return
			case <-p.runner.exited:
				in.exited(p)
				p.client.Kill()           // releases go-plugin's resources
				killGroup(p.runner.pid()) // and whatever the adapter left in its group
				removeLeftovers(p)        // and on disk, if it was killed
			}
			if time.Since(started) > stableAfter {
				backoff = in.h.opts.minBackoff
			}
			in.logDown(fmt.Errorf("adapter %q exited: %v", in.cfg.ID, p.runner.exitErr()), backoff)
		}
		select {
		case <-in.quit:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, in.h.opts.maxBackoff)
		in.mu.Lock()
		in.restarts++
		in.state = StateStarting
		in.since = time.Now()
		in.mu.Unlock()
	}
}

// removeLeftovers removes, once p's process is gone, what it could not
// remove itself if it was killed: its hop's socket and directory.
func removeLeftovers(p *proc) {
	if c, ok := p.adapter.(interface{ removeLeftovers() }); ok {
		c.removeLeftovers()
	}
}

// logDown says that the adapter is down, why, and when it is restarted:
// restarts back off (doubling up to the host's maximum), so a server that
// cannot start logs one line per attempt, ever less often.
func (in *instance) logDown(err error, backoff time.Duration) {
	in.mu.Lock()
	n := in.restarts + 1
	in.mu.Unlock()
	in.h.logger().Named(in.cfg.ID).Warn("adapter down; restarting", "error", err, "restart", n, "in", backoff.String())
}

// drain waits for the calls in flight to finish, for at most the host's
// stop grace, so that a Sync or a Close does not cut them short.
func (in *instance) drain() {
	deadline := time.Now().Add(in.h.opts.stopGrace)
	for len(in.slots) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// setState records a state change. p is the process now serving, if any.
func (in *instance) setState(s State, p *proc, err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.setStateLocked(s, p, err)
}

func (in *instance) setStateLocked(s State, p *proc, err error) {
	in.state, in.since = s, time.Now()
	if err != nil {
		in.lastErr = err
	}
	switch {
	case p != nil || s == StateFailed:
		in.cur = p
		select {
		case <-in.ready:
		default:
			close(in.ready)
		}
	case in.cur != nil:
		in.cur = nil
		in.ready = make(chan struct{})
	}
}

// exited records that p's process is gone. Both the supervisor and a call
// that saw the crash may call it first.
func (in *instance) exited(p *proc) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cur == p {
		in.setStateLocked(StateDown, nil, fmt.Errorf("adapter %q exited: %v", in.cfg.ID, p.runner.exitErr()))
	}
}

func (in *instance) stop() {
	close(in.quit)
	<-in.done
}

func (in *instance) status() Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	st := Status{
		ID:        in.cfg.ID,
		Transport: in.cfg.Transport,
		State:     in.state,
		Restarts:  in.restarts,
		Since:     in.since,
		RawCalls:  in.rawCalls.Load(),
		SDKCalls:  in.sdkCalls.Load(),
	}
	if in.cur != nil {
		st.PID = in.cur.runner.pid()
		st.Contract = in.cur.version
	}
	if in.lastErr != nil {
		st.LastError = in.lastErr.Error()
	}
	return st
}

// current waits until a process serves the adapter, bounded by ctx.
func (in *instance) current(ctx context.Context) (*proc, error) {
	for {
		in.mu.Lock()
		p, ready, state, lastErr := in.cur, in.ready, in.state, in.lastErr
		in.mu.Unlock()
		if p != nil {
			select {
			case <-p.runner.exited:
				in.exited(p)
				continue
			default:
				return p, nil
			}
		}
		if state == StateFailed {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, lastErr)
		}
		select {
		case <-ready:
		case <-in.quit:
			return nil, fmt.Errorf("adapter %q: %w: stopped", in.cfg.ID, ErrUnavailable)
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("adapter %q is %s: %w: %v", in.cfg.ID, state, ErrUnavailable, lastErr)
			}
			return nil, fmt.Errorf("adapter %q is %s: %w", in.cfg.ID, state, ErrUnavailable)
		}
	}
}

// call runs f against the current process within the adapter's slot and
// timeout, and turns failures into errors that say what happened.
func (in *instance) call(ctx context.Context, op string, f func(context.Context, Adapter) error) error {
	select {
	case in.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("adapter %q: %s: all %d call slots busy: %w (%v)", in.cfg.ID, op, cap(in.slots), ErrBusy, ctx.Err())
	}
	defer func() { <-in.slots }()

	tctx, cancel := context.WithTimeout(ctx, in.timeout)
	defer cancel()
	p, err := in.current(tctx)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("adapter %q: %s: %w", in.cfg.ID, op, ctx.Err())
		}
		return err
	}
	err = f(tctx, p.adapter)
	if err == nil {
		return nil
	}
	var rpcErr *RPCError
	switch {
	case errors.As(err, &rpcErr):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("adapter %q: %s: %w", in.cfg.ID, op, ctx.Err())
	case tctx.Err() != nil, errors.Is(err, context.DeadlineExceeded):
		// The adapter may see the propagated deadline pass before we do:
		// the caller's, if it was the earlier one.
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			return fmt.Errorf("adapter %q: %s: %w", in.cfg.ID, op, context.DeadlineExceeded)
		}
		return fmt.Errorf("adapter %q: %s: no answer within %v: %w", in.cfg.ID, op, in.timeout, ErrTimeout)
	}
	var cerr *connError
	if errors.As(err, &cerr) || errors.Is(err, context.Canceled) {
		// The connection to the adapter broke (gRPC reports a closed
		// connection as canceled): did the process die?
		select {
		case <-p.runner.exited:
			select {
			case <-in.quit:
				return fmt.Errorf("adapter %q was stopped during %s (its server was removed or changed, or the gateway is stopping): %w", in.cfg.ID, op, ErrUnavailable)
			default:
			}
			in.exited(p)
			return fmt.Errorf("adapter %q crashed during %s (%v); restarting it: %w", in.cfg.ID, op, p.runner.exitErr(), ErrUnavailable)
		case <-time.After(time.Second):
			return fmt.Errorf("adapter %q: %s: connection lost: %v: %w", in.cfg.ID, op, err, ErrUnavailable)
		}
	}
	return fmt.Errorf("adapter %q: %s: %w", in.cfg.ID, op, err)
}

// hostAdapter is the Adapter Host.Get returns.
type hostAdapter struct {
	h  *Host
	id string
}

var _ AdapterRaw = (*hostAdapter)(nil)

func (a *hostAdapter) do(ctx context.Context, op string, f func(context.Context, Adapter) error) error {
	in, err := a.h.instance(a.id)
	if err != nil {
		return err
	}
	return in.call(ctx, op, f)
}

func (a *hostAdapter) Configure(context.Context, ServerConfig) error {
	return fmt.Errorf("adapter %q: configured by the host; change it with Host.Sync", a.id)
}

func (a *hostAdapter) ListTools(ctx context.Context, cursor string) (res json.RawMessage, err error) {
	err = a.do(ctx, "tools/list", func(ctx context.Context, ad Adapter) (err error) {
		res, err = ad.ListTools(ctx, cursor)
		return err
	})
	return res, err
}

func (a *hostAdapter) CallTool(ctx context.Context, name string, args json.RawMessage, progress func(Progress)) (res json.RawMessage, err error) {
	err = a.do(ctx, "tools/call "+name, func(ctx context.Context, ad Adapter) (err error) {
		res, err = ad.CallTool(ctx, name, args, progress)
		return err
	})
	return res, err
}

// CallToolV2 implements AdapterV2. With an adapter process that speaks
// only contract version 1 the call goes without its extras, and only
// progress events arrive.
func (a *hostAdapter) CallToolV2(ctx context.Context, call *ToolCall, ev *CallEvents) (res json.RawMessage, err error) {
	err = a.do(ctx, "tools/call "+call.Name, func(ctx context.Context, ad Adapter) (err error) {
		if v2, ok := ad.(AdapterV2); ok {
			res, err = v2.CallToolV2(ctx, call, ev)
			return err
		}
		var progress func(Progress)
		if ev != nil {
			progress = ev.Progress
		}
		res, err = ad.CallTool(ctx, call.Name, call.Arguments, progress)
		return err
	})
	return res, err
}

// UpstreamProtocol returns the protocol version of the upstream session of
// the process serving the adapter, as its last raw call reported it, and
// whether that process forwards raw calls (contract 3). A caller builds a
// RawCall's _meta for that version; "" means not known yet.
func (a *hostAdapter) UpstreamProtocol() (version string, raw bool) {
	return a.UpstreamProtocolFor(false)
}

// UpstreamProtocolFor is UpstreamProtocol for a legacy call
// (RawCall.Legacy) or another: the version the last call of that kind was
// served at, which an adapter keeping a session of each era reports apart.
func (a *hostAdapter) UpstreamProtocolFor(legacy bool) (version string, raw bool) {
	in, err := a.h.instance(a.id)
	if err != nil {
		return "", false
	}
	in.mu.Lock()
	p := in.cur
	in.mu.Unlock()
	if p == nil {
		// Not up: the call will wait for a process. CallRaw serves it
		// whatever contract that one speaks.
		return "", true
	}
	slot := &p.upstreamVersion
	if legacy {
		slot = &p.legacyVersion
	}
	if v := slot.Load(); v != nil {
		version = *v
	}
	return version, p.version >= 3
}

// CallRaw implements AdapterRaw. With an adapter process that speaks
// contract version 2 or older, the params are decoded and the call goes
// through CallToolV2 (Path "sdk").
func (a *hostAdapter) CallRaw(ctx context.Context, call *RawCall, ev *CallEvents) (*RawResult, error) {
	in, err := a.h.instance(a.id)
	if err != nil {
		return nil, err
	}
	var res *RawResult
	err = in.call(ctx, "tools/call "+call.Name, func(ctx context.Context, ad Adapter) (err error) {
		if r, ok := ad.(AdapterRaw); ok {
			res, err = r.CallRaw(ctx, call, ev)
			if res != nil && res.ProtocolVersion != "" {
				in.noteUpstreamVersion(ad, res.ProtocolVersion, call.Legacy)
			}
			return err
		}
		tc, err := ToolCallOf(call)
		if err != nil {
			return err
		}
		res = &RawResult{Path: PathSDK}
		if v2, ok := ad.(AdapterV2); ok {
			res.Result, err = v2.CallToolV2(ctx, tc, ev)
			return err
		}
		var progress func(Progress)
		if ev != nil {
			progress = ev.Progress
		}
		res.Result, err = ad.CallTool(ctx, tc.Name, tc.Arguments, progress)
		return err
	})
	if res != nil && res.Path == PathRaw {
		in.rawCalls.Add(1)
	} else {
		in.sdkCalls.Add(1)
	}
	var rpcErr *RPCError
	if err != nil && !errors.As(err, &rpcErr) {
		return nil, err
	}
	return res, err
}

// noteUpstreamVersion records the upstream protocol version the process
// serving ad reported for a call, legacy or not.
func (in *instance) noteUpstreamVersion(ad Adapter, v string, legacy bool) {
	in.mu.Lock()
	p := in.cur
	in.mu.Unlock()
	if p == nil || p.adapter != ad {
		return
	}
	slot := &p.upstreamVersion
	if legacy {
		slot = &p.legacyVersion
	}
	if old := slot.Load(); old == nil || *old != v {
		slot.Store(&v)
	}
}

// GetPromptV2 implements AdapterV2 (without the extras under contract 1).
func (a *hostAdapter) GetPromptV2(ctx context.Context, name string, args map[string]string, x *RequestExtra) (res json.RawMessage, err error) {
	err = a.do(ctx, "prompts/get", func(ctx context.Context, ad Adapter) (err error) {
		if v2, ok := ad.(AdapterV2); ok {
			res, err = v2.GetPromptV2(ctx, name, args, x)
			return err
		}
		res, err = ad.GetPrompt(ctx, name, args)
		return err
	})
	return res, err
}

// ReadResourceV2 implements AdapterV2 (without the extras under contract 1).
func (a *hostAdapter) ReadResourceV2(ctx context.Context, uri string, x *RequestExtra) (res json.RawMessage, err error) {
	err = a.do(ctx, "resources/read", func(ctx context.Context, ad Adapter) (err error) {
		if v2, ok := ad.(AdapterV2); ok {
			res, err = v2.ReadResourceV2(ctx, uri, x)
			return err
		}
		res, err = ad.ReadResource(ctx, uri)
		return err
	})
	return res, err
}

func (a *hostAdapter) ListResources(ctx context.Context, cursor string) (res json.RawMessage, err error) {
	err = a.do(ctx, "resources/list", func(ctx context.Context, ad Adapter) (err error) {
		res, err = ad.ListResources(ctx, cursor)
		return err
	})
	return res, err
}

func (a *hostAdapter) ReadResource(ctx context.Context, uri string) (res json.RawMessage, err error) {
	err = a.do(ctx, "resources/read", func(ctx context.Context, ad Adapter) (err error) {
		res, err = ad.ReadResource(ctx, uri)
		return err
	})
	return res, err
}

func (a *hostAdapter) ListPrompts(ctx context.Context, cursor string) (res json.RawMessage, err error) {
	err = a.do(ctx, "prompts/list", func(ctx context.Context, ad Adapter) (err error) {
		res, err = ad.ListPrompts(ctx, cursor)
		return err
	})
	return res, err
}

func (a *hostAdapter) GetPrompt(ctx context.Context, name string, args map[string]string) (res json.RawMessage, err error) {
	err = a.do(ctx, "prompts/get", func(ctx context.Context, ad Adapter) (err error) {
		res, err = ad.GetPrompt(ctx, name, args)
		return err
	})
	return res, err
}

func (a *hostAdapter) Health(ctx context.Context) error {
	return a.do(ctx, "health", func(ctx context.Context, ad Adapter) error {
		return ad.Health(ctx)
	})
}

package plugins_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/armoriq/controlplane/plugins"
)

// muxAdapter is the adapter of the raw session and hop tests
// (ARMORIQ_TEST_ROLE adapter-mux, or adapter-mux-v4 or -v3 for one built
// before contract 5 or 4). Its
// tools, by the raw call's name:
//
//   - events {tag, n}: n progress events and n log messages, each naming
//     tag, a millisecond apart, then the result tag;
//   - wait {tag}: a progress event "started", then nothing until the call's
//     context ends, which it records (see cancelled);
//   - cancelled: the tags of the wait calls whose context ended, and why;
//   - deadline: the milliseconds the call's context has left, or "none";
//   - size {n}: the length and sha256 of the params it got, in a result of
//     at least n bytes;
//   - ask {tag}: asks the host (a server request) and answers with the
//     reply.
type muxAdapter struct{ echoAdapter }

var muxCancelled struct {
	sync.Mutex
	tags []string
}

func textResult(s string, pad int) json.RawMessage {
	b, _ := json.Marshal(s)
	out := []byte(`{"content":[{"type":"text","text":` + string(b) + `}]`)
	if pad > 0 {
		out = append(out, `,"pad":"`...)
		out = append(out, bytes.Repeat([]byte("x"), pad)...)
		out = append(out, '"')
	}
	return append(out, '}')
}

func (muxAdapter) CallRaw(ctx context.Context, call *plugins.RawCall, ev *plugins.CallEvents) (*plugins.RawResult, error) {
	var p struct {
		Arguments struct {
			Tag string `json:"tag"`
			N   int    `json:"n"`
		} `json:"arguments"`
	}
	if err := json.Unmarshal(call.Params, &p); err != nil {
		return nil, err
	}
	args := p.Arguments
	res := func(s string, pad int) (*plugins.RawResult, error) {
		return &plugins.RawResult{Result: textResult(s, pad), Path: plugins.PathRaw}, nil
	}
	switch call.Name {
	case "events":
		for i := 1; i <= args.N; i++ {
			if ev.Progress != nil {
				ev.Progress(plugins.Progress{Progress: float64(i), Total: float64(args.N), Message: args.Tag})
			}
			if ev.Log != nil {
				ev.Log(plugins.LogMessage{Level: "info", Data: json.RawMessage(fmt.Sprintf(`"%s %d"`, args.Tag, i))})
			}
			time.Sleep(time.Millisecond)
		}
		return res(args.Tag, 0)
	case "wait":
		if ev.Progress != nil {
			ev.Progress(plugins.Progress{Progress: 0, Message: "started"})
		}
		<-ctx.Done()
		muxCancelled.Lock()
		muxCancelled.tags = append(muxCancelled.tags, args.Tag+":"+ctx.Err().Error())
		muxCancelled.Unlock()
		return nil, ctx.Err()
	case "cancelled":
		muxCancelled.Lock()
		tags := slices.Clone(muxCancelled.tags)
		muxCancelled.Unlock()
		slices.Sort(tags)
		return res(strings.Join(tags, ","), 0)
	case "deadline":
		d, ok := ctx.Deadline()
		if !ok {
			return res("none", 0)
		}
		return res(fmt.Sprint(time.Until(d).Milliseconds()), 0)
	case "size":
		return res(fmt.Sprintf("%d %x", len(call.Params), sha256.Sum256(call.Params)), args.N)
	case "ask":
		reply, err := ev.Request(ctx, "elicitation/create", json.RawMessage(`{"message":"`+args.Tag+`?"}`))
		if err != nil {
			return nil, err
		}
		return res(string(reply), 0)
	}
	return nil, &plugins.RPCError{Code: -32602, Message: "unknown tool " + call.Name}
}

// muxHost starts the mux adapter (role adapter-mux or adapter-mux-v3) and
// returns it with the contract it negotiated.
func muxHost(t *testing.T, role string, opts ...plugins.HostOption) (*plugins.Host, rawHost, int) {
	t.Helper()
	h := newHost(t, append([]plugins.HostOption{plugins.WithEnv("ARMORIQ_TEST_ROLE=" + role), plugins.WithMaxConcurrent(64)}, opts...)...)
	a := startAdapter(t, h, plugins.ServerConfig{ID: "mux", Transport: plugins.TransportHTTP, URL: "http://127.0.0.1:1/unused"}).(rawHost)
	return h, a, contract(h, "mux")
}

// rawCall calls tool with args as the gateway does.
func rawCall(ctx context.Context, a plugins.AdapterRaw, tool string, args any, ev *plugins.CallEvents) (*plugins.RawResult, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	params, err := plugins.AppendToolCallParams(nil, tool, b, nil, nil, "")
	if err != nil {
		return nil, err
	}
	return a.CallRaw(ctx, &plugins.RawCall{Method: "tools/call", Name: tool, Params: params, ProgressToken: "p"}, ev)
}

// concurrentCalls runs many calls at once on one adapter, each with events
// of its own, server requests, and large params and results among them:
// every call gets its own events, in order, and its own result.
func concurrentCalls(t *testing.T, a plugins.AdapterRaw) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := fmt.Sprintf("c%d", i)
			switch i % 4 {
			case 0, 1: // events
				n := 3 + i%5
				var progress, logs []string
				res, err := rawCall(ctx, a, "events", map[string]any{"tag": tag, "n": n}, &plugins.CallEvents{
					Progress: func(p plugins.Progress) {
						progress = append(progress, fmt.Sprintf("%s %v/%v", p.Message, p.Progress, p.Total))
					},
					Log: func(m plugins.LogMessage) { logs = append(logs, string(m.Data)) },
				})
				if got, err := resultTextOf(res, err); got != tag || err != nil {
					t.Errorf("%s: events answered %q, %v", tag, got, err)
					return
				}
				var wantP, wantL []string
				for j := 1; j <= n; j++ {
					wantP = append(wantP, fmt.Sprintf("%s %d/%d", tag, j, n))
					wantL = append(wantL, fmt.Sprintf(`"%s %d"`, tag, j))
				}
				if !slices.Equal(progress, wantP) || !slices.Equal(logs, wantL) {
					t.Errorf("%s: got progress %q and logs %q; want %q and %q", tag, progress, logs, wantP, wantL)
				}
			case 2: // a server request, answered for this call
				res, err := rawCall(ctx, a, "ask", map[string]any{"tag": tag}, &plugins.CallEvents{
					Request: func(_ context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
						if want := `{"message":"` + tag + `?"}`; string(params) != want {
							return nil, fmt.Errorf("asked %s, want %s", params, want)
						}
						return json.Marshal(map[string]string{"action": "accept", "for": tag})
					},
				})
				want := `{"action":"accept","for":"` + tag + `"}`
				if got, err := resultTextOf(res, err); got != want || err != nil {
					t.Errorf("%s: ask answered %q, %v; want %q", tag, got, err, want)
				}
			case 3: // params and result larger than a frame
				text := strings.Repeat(tag, 300<<10/len(tag)) // ~300 KiB of params
				b, _ := json.Marshal(map[string]any{"tag": text, "n": 700 << 10})
				params, _ := plugins.AppendToolCallParams(nil, "size", b, nil, nil, "")
				res, err := a.CallRaw(ctx, &plugins.RawCall{Method: "tools/call", Name: "size", Params: params}, nil)
				want := fmt.Sprintf("%d %x", len(params), sha256.Sum256(params))
				if got, err := resultTextOf(res, err); got != want || err != nil {
					t.Errorf("%s: size answered %q, %v; want %q", tag, got, err, want)
				} else if len(res.Result) < 700<<10 {
					t.Errorf("%s: size's result has %d bytes, want at least %d", tag, len(res.Result), 700<<10)
				}
			}
		}()
	}
	wg.Wait()
}

// muxContracts are the adapters of the tests that run under contract 5
// (the hop) and 4 (Raw.Session) alike: roles and the contract each
// negotiates.
var muxContracts = []struct {
	role     string
	contract int
}{
	{"adapter-mux", 5},
	{"adapter-mux-v4", 4},
}

// TestHopConcurrentCalls: under contract 5 many calls share the adapter's
// hop connection, under 4 the adapter connection's raw session.
func TestHopConcurrentCalls(t *testing.T) {
	for _, mc := range muxContracts {
		t.Run(mc.role, func(t *testing.T) {
			_, a, v := muxHost(t, mc.role)
			if v != mc.contract {
				t.Fatalf("the mux adapter %s negotiated contract %d, want %d", mc.role, v, mc.contract)
			}
			concurrentCalls(t, a)
		})
	}
}

// TestSessionFallbackToCall: an adapter built before contract 4 (no
// Raw.Session) negotiates 3, and its raw calls go on Raw.Call, one stream
// each, with the same results and events.
func TestSessionFallbackToCall(t *testing.T) {
	_, a, v := muxHost(t, "adapter-mux-v3")
	if v != 3 {
		t.Fatalf("an adapter without Raw.Session negotiated contract %d, want 3", v)
	}
	if _, raw := a.UpstreamProtocol(); !raw {
		t.Error("a contract 3 adapter reported as not taking raw calls")
	}
	concurrentCalls(t, a)
}

// startWaits starts a wait call for each tag and returns when the adapter
// has started them all, with the channel their errors arrive on.
func startWaits(t *testing.T, a plugins.AdapterRaw, ctxs map[string]context.Context) chan error {
	t.Helper()
	errs := make(chan error, len(ctxs))
	started := make(chan struct{}, len(ctxs))
	for tag, ctx := range ctxs {
		go func() {
			_, err := rawCall(ctx, a, "wait", map[string]any{"tag": tag}, &plugins.CallEvents{
				Progress: func(p plugins.Progress) {
					if p.Message == "started" {
						started <- struct{}{}
					}
				},
			})
			errs <- fmt.Errorf("%s: %w", tag, err)
		}()
	}
	for range ctxs {
		select {
		case <-started:
		case err := <-errs:
			t.Fatalf("a wait call ended before it started: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("the wait calls did not start")
		}
	}
	return errs
}

// TestHopCancelOneCall: cancelling a call, or its deadline passing, ends
// that call alone, here and in the adapter (contracts 5 and 4).
func TestHopCancelOneCall(t *testing.T) {
	for _, mc := range muxContracts {
		t.Run(mc.role, func(t *testing.T) { cancelOneCall(t, mc.role) })
	}
}

func cancelOneCall(t *testing.T, role string) {
	_, a, _ := muxHost(t, role)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The call's deadline reaches the adapter.
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	res, err := rawCall(dctx, a, "deadline", nil, nil)
	dcancel()
	if got, err := resultTextOf(res, err); err != nil || got == "none" {
		t.Errorf("deadline answered %q, %v; want the milliseconds left", got, err)
	} else if ms := mustAtoi(t, got); ms <= 0 || ms > 20000 {
		t.Errorf("the adapter saw %d ms left of a 20 s deadline", ms)
	}

	aCtx, aCancel := context.WithCancel(ctx)
	bCtx, bCancel := context.WithCancel(ctx)
	defer bCancel()
	cCtx, cCancel := context.WithTimeout(ctx, 300*time.Millisecond) // ends by its deadline
	defer cCancel()
	errs := startWaits(t, a, map[string]context.Context{"a": aCtx, "b": bCtx, "c": cCtx})

	aCancel()
	for range 2 { // a and c end, b goes on
		err := <-errs
		switch {
		case strings.HasPrefix(err.Error(), "a: "):
			if !errors.Is(err, context.Canceled) {
				t.Errorf("the cancelled call: %v, want context.Canceled", err)
			}
		case strings.HasPrefix(err.Error(), "c: "):
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("the call past its deadline: %v, want context.DeadlineExceeded", err)
			}
		default:
			t.Errorf("a call that was not cancelled ended: %v", err)
		}
	}
	// Meanwhile the others go on: new calls work beside b.
	res, err = rawCall(ctx, a, "events", map[string]any{"tag": "beside", "n": 2}, nil)
	if got, err := resultTextOf(res, err); got != "beside" || err != nil {
		t.Errorf("a call beside the cancelled ones: %q, %v", got, err)
	}
	// The adapter cancelled a's context and c's (its deadline), not b's.
	want := "a:context canceled,c:context deadline exceeded"
	waitFor(t, func() bool {
		got, err := resultTextOf(rawCall(ctx, a, "cancelled", nil, nil))
		return err == nil && (got == want || got == "a:context canceled,c:context canceled")
	}, "the adapter to see a and c end")
	select {
	case err := <-errs:
		t.Fatalf("b ended: %v", err)
	default:
	}
	bCancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("b, cancelled last: %v", err)
	}
}

func mustAtoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// waitFor polls cond until it holds, for at most 20 seconds.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHopAdapterDies: when the adapter process dies, every call in flight
// on its hop (contract 5) or session (4) fails at once, and the next call
// goes to the restarted process on a connection of its own.
func TestHopAdapterDies(t *testing.T) {
	for _, mc := range muxContracts {
		t.Run(mc.role, func(t *testing.T) { adapterDies(t, mc.role, mc.contract) })
	}
}

func adapterDies(t *testing.T, role string, contract int) {
	h, a, _ := muxHost(t, role)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctxs := map[string]context.Context{}
	for i := range 5 {
		ctxs[fmt.Sprint("w", i)] = ctx
	}
	errs := startWaits(t, a, ctxs)
	pid := h.Status()[0].PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range ctxs {
		err := <-errs
		if !errors.Is(err, plugins.ErrUnavailable) || !strings.Contains(err.Error(), "crashed") {
			t.Errorf("a call in flight when the adapter died: %v, want it to say the adapter crashed (ErrUnavailable)", err)
		}
	}
	res, err := rawCall(ctx, a, "events", map[string]any{"tag": "after", "n": 1}, nil)
	if got, err := resultTextOf(res, err); got != "after" || err != nil {
		t.Errorf("the call after the crash: %q, %v", got, err)
	}
	if st := h.Status()[0]; st.PID == pid || st.Contract != contract {
		t.Errorf("after the crash: pid %d (was %d), contract %d; want a new process speaking %d", st.PID, pid, st.Contract, contract)
	}
}

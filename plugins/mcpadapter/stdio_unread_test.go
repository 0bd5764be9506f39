package mcpadapter

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/armoriq/controlplane/plugins"
)

// newUnreadableAdapter runs the test binary as a stdio server that answers
// a request naming "unreadable" with an error with a null id (see
// serveUnreadable); open lets its gate tool answer.
func newUnreadableAdapter(t *testing.T, grace time.Duration) (a *Adapter, c *stdioConn, open func(gate string)) {
	t.Helper()
	gates := t.TempDir()
	a = newStdioTestAdapterEnv(t, 0, map[string]string{"ARMORIQ_TEST_ROLE": "stdio-server-unreadable", "ARMORIQ_TEST_GATES": gates})
	a.mu.Lock()
	c = a.conn
	a.mu.Unlock()
	if c == nil {
		t.Fatal("the adapter has no stdio connection")
	}
	c.setGrace(grace)
	open = func(gate string) {
		if err := os.WriteFile(filepath.Join(gates, gate), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { // a call still at a gate ends
		for _, g := range []string{"b", "c", "late"} {
			open(g)
		}
	})
	return a, c, open
}

// waitUntil waits until cond holds; it fails t if that takes longer than
// any answer could (a stall, not a speed check).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("stalled waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type outcome struct {
	res *plugins.RawResult
	err error
}

func goRaw(ctx context.Context, a *Adapter, tool, args string) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		res, err := sendRaw(ctx, a, tool, args, nil)
		ch <- outcome{res, err}
	}()
	return ch
}

// wantParseError checks that err is the server's own error, as it wrote
// it, on the raw path.
func wantParseError(t *testing.T, what string, o outcome) {
	t.Helper()
	var rpcErr *plugins.RPCError
	if !errors.As(o.err, &rpcErr) || rpcErr.Code != -32700 || rpcErr.Message != "Parse error" {
		t.Fatalf("%s: %v, want the server's error -32700 Parse error", what, o.err)
	}
	if o.res == nil || o.res.Path != plugins.PathRaw {
		t.Errorf("%s: result %+v, want the raw path", what, o.res)
	}
}

// wantUnknown checks that err is the adapter's error for a call the server
// may not have read, and does not quote what the server wrote (its data
// quotes another call's request).
func wantUnknown(t *testing.T, what string, o outcome) {
	t.Helper()
	var rpcErr *plugins.RPCError
	switch {
	case o.err == nil:
		t.Fatalf("%s: answered %s, want it failed", what, o.res.Result)
	case errors.Is(o.err, context.DeadlineExceeded), errors.As(o.err, &rpcErr):
		t.Fatalf("%s: %v, want the adapter's error for a request the server may not have read", what, o.err)
	case !strings.Contains(o.err.Error(), "could not read") || !strings.Contains(o.err.Error(), "null id"):
		t.Fatalf("%s: %v, want it to say the server could not read a request", what, o.err)
	case strings.Contains(o.err.Error(), "secret"):
		t.Fatalf("%s: %v quotes another call's arguments", what, o.err)
	}
}

// TestStdioNullIDOneInFlight: an error with a null id while one request is
// in flight is that request's answer, raw or the SDK's, at once (the grace
// period is an hour, and the call's deadline a minute: only the error can
// end the call).
func TestStdioNullIDOneInFlight(t *testing.T) {
	a, _, _ := newUnreadableAdapter(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	res, err := sendRaw(ctx, a, "unreadable", `{"text":"x"}`, nil)
	wantParseError(t, "raw call the server could not read", outcome{res, err})
	if got, _ := textOf(t)(sendRaw(ctx, a, "echo", `{"text":"next"}`, nil)); got != "next" {
		t.Errorf("echo after the error: %q", got)
	}

	_, err = a.CallToolV2(ctx, &plugins.ToolCall{Name: "unreadable", Arguments: json.RawMessage(`{}`)}, nil)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "Parse error") {
		t.Errorf("SDK call the server could not read: %v, want the server's Parse error", err)
	}
	if got, _ := textOf(t)(sendRaw(ctx, a, "echo", `{"text":"again"}`, nil)); got != "again" {
		t.Errorf("echo after the SDK call's error: %q", got)
	}
}

// TestStdioNullIDFoundByElimination: with a raw call and an SDK call in
// flight, a third call's error with a null id could be any of theirs. It
// goes to none until the server has answered the other two by their ids;
// then it is the third's, as the server wrote it.
func TestStdioNullIDFoundByElimination(t *testing.T) {
	a, c, open := newUnreadableAdapter(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	b := goRaw(ctx, a, "gate", `{"text":"b"}`)
	waitUntil(t, "the raw call b is in flight", func() bool { return c.rawInFlight() == 1 })
	sdkDone := make(chan error, 1)
	go func() {
		res, err := a.CallToolV2(ctx, &plugins.ToolCall{Name: "gate", Arguments: json.RawMessage(`{"text":"c"}`)}, nil)
		if err == nil && !strings.Contains(string(res), `"c"`) {
			err = errors.New("SDK call c answered " + string(res))
		}
		sdkDone <- err
	}()
	waitUntil(t, "the SDK call c is in flight", func() bool { return c.sdk.live() == 1 })

	u := goRaw(ctx, a, "unreadable", `{"text":"secret"}`)
	waitUntil(t, "the error with a null id has 3 suspects", func() bool { return c.unreadSuspects() == 3 })

	open("b")
	if got, _ := resultText(t, (<-b).res, nil); got != "b" {
		t.Errorf("raw call b: %q", got)
	}
	waitUntil(t, "2 suspects are left", func() bool { return c.unreadSuspects() == 2 })
	select {
	case o := <-u:
		t.Fatalf("the call the server could not read ended while the SDK call was a suspect too: %v", o.err)
	default:
	}

	open("c")
	if err := <-sdkDone; err != nil {
		t.Errorf("SDK call c: %v", err)
	}
	o := <-u
	wantParseError(t, "raw call the server could not read", o)
	var rpcErr *plugins.RPCError
	if errors.As(o.err, &rpcErr) && !strings.Contains(string(rpcErr.Data), "secret") {
		t.Errorf("its error's data %s: want the server's, quoting its request", rpcErr.Data)
	}
	if n := c.unreadSuspects(); n != -1 {
		t.Errorf("%d suspects left after the error was given", n)
	}
}

// TestStdioNullIDUnknown: when the other calls in flight are not answered
// within the grace period, the server could not read one of them and
// which is not known: all fail with the adapter's error, which quotes
// nothing the server wrote; the connection serves on, and a late answer
// goes nowhere.
func TestStdioNullIDUnknown(t *testing.T) {
	a, c, open := newUnreadableAdapter(t, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	b := goRaw(ctx, a, "gate", `{"text":"b"}`)
	waitUntil(t, "the raw call b is in flight", func() bool { return c.rawInFlight() == 1 })
	u := goRaw(ctx, a, "unreadable", `{"text":"secret"}`)
	wantUnknown(t, "the call the server could not read", <-u)
	wantUnknown(t, "the call at the gate", <-b)

	open("b") // its answer comes now, for no one
	if got, _ := textOf(t)(sendRaw(ctx, a, "echo", `{"text":"next"}`, nil)); got != "next" {
		t.Errorf("echo after the unknown error: %q", got)
	}
}

// TestStdioNullIDSeveral: two errors with a null id, and the one other
// call in flight answered: the two left are the two the server could not
// read, and each fails with the adapter's error (which error is whose is
// not known).
func TestStdioNullIDSeveral(t *testing.T) {
	a, c, open := newUnreadableAdapter(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	b := goRaw(ctx, a, "gate", `{"text":"b"}`)
	waitUntil(t, "the raw call b is in flight", func() bool { return c.rawInFlight() == 1 })
	u1 := goRaw(ctx, a, "unreadable", `{"text":"secret 1"}`)
	waitUntil(t, "the first error has 2 suspects", func() bool { return c.unreadSuspects() == 2 })
	u2 := goRaw(ctx, a, "unreadable", `{"text":"secret 2"}`)
	waitUntil(t, "the errors have 3 suspects", func() bool { return c.unreadSuspects() == 3 })

	open("b")
	if got, _ := resultText(t, (<-b).res, nil); got != "b" {
		t.Errorf("raw call b: %q", got)
	}
	wantUnknown(t, "the first call the server could not read", <-u1)
	wantUnknown(t, "the second call the server could not read", <-u2)
}

// TestStdioNullIDAfterGivingUp: a call gives up before the server says it
// could not read it; the one other call in flight must not take the error
// for its answer (its data quotes the first call's arguments). It goes to
// the call that gave up once the other is answered.
func TestStdioNullIDAfterGivingUp(t *testing.T) {
	a, c, open := newUnreadableAdapter(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	b := goRaw(ctx, a, "gate", `{"text":"b"}`)
	waitUntil(t, "the raw call b is in flight", func() bool { return c.rawInFlight() == 1 })
	uctx, ucancel := context.WithCancel(ctx)
	u := goRaw(uctx, a, "unreadable-late", `{"text":"secret"}`)
	waitUntil(t, "the second raw call is in flight", func() bool { return c.rawInFlight() == 2 })
	ucancel()
	if o := <-u; !errors.Is(o.err, context.Canceled) {
		t.Fatalf("the call that gave up: %v", o.err)
	}

	open("late")
	waitUntil(t, "the error with a null id has 2 suspects", func() bool { return c.unreadSuspects() == 2 })
	open("b")
	o := <-b
	if got, _ := resultText(t, o.res, o.err); got != "b" {
		t.Errorf("raw call b: %q", got)
	}
	waitUntil(t, "the error is settled", func() bool { return c.unreadSuspects() == -1 })
}

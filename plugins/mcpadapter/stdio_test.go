package mcpadapter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
	"github.com/armoriq/controlplane/plugins/stdioserver"
)

// The test binary plays the stdio MCP server of these tests when
// ARMORIQ_TEST_ROLE is stdio-server.
func TestMain(m *testing.M) {
	var serve func() error
	switch os.Getenv("ARMORIQ_TEST_ROLE") {
	case "stdio-server":
		serve = func() error { return serveStdioTestServer(stdioserver.Transport()) }
	case "stdio-server-unreadable":
		serve = serveUnreadable
	case "stdio-era":
		serve = func() error { return pinServer(nil).Run(context.Background(), stdioserver.Transport()) } // pin_test.go
	default:
		os.Exit(m.Run())
	}
	if err := serve(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func textResult(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

// serveStdioTestServer serves, on t, tools that answer, fail, report
// progress, log, wait, write a line that is not JSON, or exit.
func serveStdioTestServer(t mcp.Transport) error {
	s := mcp.NewServer(&mcp.Implementation{Name: "stdio-test", Version: "1"}, nil)
	type textIn struct {
		Text string `json:"text"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(ctx context.Context, req *mcp.CallToolRequest, in textIn) (*mcp.CallToolResult, any, error) {
		return textResult(in.Text), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "fail"}, func(ctx context.Context, req *mcp.CallToolRequest, in textIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "failed: " + in.Text}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "slow"}, func(ctx context.Context, req *mcp.CallToolRequest, in textIn) (*mcp.CallToolResult, any, error) {
		time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		return textResult(in.Text), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "progress"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		for i := range 3 {
			if tok := req.Params.GetProgressToken(); tok != nil {
				_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: float64(i + 1), Total: 3})
			}
		}
		return textResult("done"), nil, nil
	})
	type optionalText struct {
		Text string `json:"text,omitempty"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "logs"}, func(ctx context.Context, req *mcp.CallToolRequest, in optionalText) (*mcp.CallToolResult, any, error) {
		for i := range 3 {
			_ = req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: "test", Data: fmt.Sprintf("message %d", i+1)})
		}
		if in.Text != "" {
			return textResult("logged " + in.Text), nil, nil
		}
		return textResult("logged"), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "hang"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		<-ctx.Done()
		return nil, nil, ctx.Err()
	})
	mcp.AddTool(s, &mcp.Tool{Name: "garbage"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		fmt.Fprintln(os.Stdout, "this line is not JSON")
		fmt.Fprintln(os.Stdout, `{"neither":"is this JSON-RPC"}`)
		return textResult("after garbage"), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "big"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		return textResult(strings.Repeat("x", 200<<10)), nil, nil
	})
	// gate answers its text once the file of that name exists in
	// ARMORIQ_TEST_GATES: the test decides when.
	mcp.AddTool(s, &mcp.Tool{Name: "gate"}, func(ctx context.Context, req *mcp.CallToolRequest, in textIn) (*mcp.CallToolResult, any, error) {
		name := filepath.Join(os.Getenv("ARMORIQ_TEST_GATES"), in.Text)
		for {
			if _, err := os.Stat(name); err == nil {
				return textResult(in.Text), nil, nil
			}
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
	})
	return s.Run(context.Background(), t)
}

// serveUnreadable serves the tools of serveStdioTestServer, except that
// it answers a request naming "unreadable" as a server answers a request
// it could not read: an error with a null id, whose data quotes the line;
// one naming "unreadable-late" gets it once the gate file "late" exists.
func serveUnreadable() error {
	var in io.Reader = os.Stdin
	if t, ok := stdioserver.Transport().(*mcp.IOTransport); ok {
		in = t.Reader
	}
	out := &lineWriter{w: os.Stdout}
	pr, pw := io.Pipe()
	go func() {
		br := bufio.NewReader(in)
		for {
			line, err := br.ReadBytes('\n')
			data, _ := json.Marshal(string(bytes.TrimSpace(line)))
			unreadable := []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error","data":` + string(data) + "}}\n")
			if bytes.Contains(line, []byte(`"unreadable"`)) {
				out.Write(unreadable)
			} else if bytes.Contains(line, []byte(`"unreadable-late"`)) {
				go func() {
					for {
						if _, err := os.Stat(filepath.Join(os.Getenv("ARMORIQ_TEST_GATES"), "late")); err == nil {
							out.Write(unreadable)
							return
						}
						time.Sleep(2 * time.Millisecond)
					}
				}()
			} else if len(line) > 0 {
				if _, err := pw.Write(line); err != nil {
					return
				}
			}
			if err != nil {
				pw.Close()
				return
			}
		}
	}()
	return serveStdioTestServer(&mcp.IOTransport{Reader: pr, Writer: out})
}

// lineWriter writes each line whole, whoever writes it.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (w *lineWriter) Close() error { return nil }

// newStdioTestAdapter runs the test binary as a stdio server under a
// configured adapter; limit bounds a message (0: the default).
func newStdioTestAdapter(t *testing.T, limit int) *Adapter {
	t.Helper()
	return newStdioTestAdapterEnv(t, limit, map[string]string{"ARMORIQ_TEST_ROLE": "stdio-server"})
}

// newStdioTestAdapterEnv is newStdioTestAdapter with the child's
// environment.
func newStdioTestAdapterEnv(t *testing.T, limit int, env map[string]string) *Adapter {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := NewStdio()
	a.maxAnswer = limit
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Configure(ctx, plugins.ServerConfig{ID: "local", Transport: plugins.TransportStdio, Command: exe, Env: env}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// sendRaw builds a raw tools/call as the gateway does and sends it.
func sendRaw(ctx context.Context, a *Adapter, tool, args string, ev *plugins.CallEvents) (*plugins.RawResult, error) {
	var pv string
	if cs := a.currentSession(); cs != nil {
		pv = protocolVersion(cs)
	}
	meta := plugins.UpstreamMeta(nil, pv)
	rc := &plugins.RawCall{Method: "tools/call", Name: tool, ProtocolVersion: pv}
	if ev != nil && ev.Progress != nil {
		if meta == nil {
			meta = map[string]any{}
		}
		rc.ProgressToken = "armoriq-g" + tool
		meta["progressToken"] = rc.ProgressToken
	}
	params, err := plugins.AppendToolCallParams(nil, tool, json.RawMessage(args), meta, nil, "")
	if err != nil {
		return nil, err
	}
	rc.Params = params
	return a.CallRaw(ctx, rc, ev)
}

// textOf returns a func that returns the text of a result's first
// content and its isError, failing t on an error.
func textOf(t *testing.T) func(res *plugins.RawResult, err error) (string, bool) {
	return func(res *plugins.RawResult, err error) (string, bool) {
		t.Helper()
		return resultText(t, res, err)
	}
}

func resultText(t *testing.T, res *plugins.RawResult, err error) (string, bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("call failed: %v", err)
	}
	if res.Path != plugins.PathRaw {
		t.Errorf("call went path %q, want raw", res.Path)
	}
	var r struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal(res.Result, &r); err != nil || len(r.Content) == 0 {
		t.Fatalf("result %s: %v", res.Result, err)
	}
	return r.Content[0].Text, r.IsError
}

// TestStdioRaw: a raw call over stdio answers as the SDK path does:
// results, tool errors, JSON-RPC errors, progress and log messages in
// order before the result; lines that are not JSON-RPC are ignored, and
// an answer over the limit fails its call only.
func TestStdioRaw(t *testing.T) {
	a := newStdioTestAdapter(t, 64<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if got, isErr := textOf(t)(sendRaw(ctx, a, "echo", `{"text":"hi"}`, nil)); got != "hi" || isErr {
		t.Errorf("echo: %q, isError %v", got, isErr)
	}
	// Arguments with line breaks still go as one line.
	if got, _ := textOf(t)(sendRaw(ctx, a, "echo", "{\n  \"text\": \"a\\nb\"\n}", nil)); got != "a\nb" {
		t.Errorf("echo of pretty-printed arguments: %q", got)
	}
	if got, isErr := textOf(t)(sendRaw(ctx, a, "fail", `{"text":"x"}`, nil)); got != "failed: x" || !isErr {
		t.Errorf("fail: %q, isError %v", got, isErr)
	}
	res, err := sendRaw(ctx, a, "no-such-tool", `{}`, nil)
	var rpcErr *plugins.RPCError
	if !errors.As(err, &rpcErr) || res == nil || res.Path != plugins.PathRaw {
		t.Errorf("unknown tool: %v, %+v; want the server's JSON-RPC error on the raw path", err, res)
	}

	var events []string
	ev := &plugins.CallEvents{Progress: func(p plugins.Progress) { events = append(events, fmt.Sprintf("%v/%v", p.Progress, p.Total)) }}
	if got, _ := textOf(t)(sendRaw(ctx, a, "progress", `{}`, ev)); got != "done" {
		t.Errorf("progress: %q", got)
	}
	if got := strings.Join(events, " "); got != "1/3 2/3 3/3" {
		t.Errorf("progress relayed: %q", got)
	}
	events = nil
	ev = &plugins.CallEvents{Log: func(m plugins.LogMessage) { events = append(events, string(m.Data)) }}
	if got, _ := textOf(t)(sendRaw(ctx, a, "logs", `{}`, ev)); got != "logged" {
		t.Errorf("logs: %q", got)
	}
	if got := strings.Join(events, "; "); got != `"message 1"; "message 2"; "message 3"` {
		t.Errorf("logs relayed: %q", got)
	}

	if got, _ := textOf(t)(sendRaw(ctx, a, "garbage", `{}`, nil)); got != "after garbage" {
		t.Errorf("garbage: %q", got)
	}
	if _, err := sendRaw(ctx, a, "big", `{}`, nil); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("an answer over the limit: %v, want it refused", err)
	}
	if got, _ := textOf(t)(sendRaw(ctx, a, "echo", `{"text":"still here"}`, nil)); got != "still here" {
		t.Errorf("echo after the large answer: %q", got)
	}
	if _, err := a.ListTools(ctx, ""); err != nil {
		t.Errorf("tools/list on the SDK path: %v", err)
	}
}

// TestStdioRawConcurrent: 16 workers × 20 raw calls on one child, with
// the SDK's own requests (tools/list, ping) interleaved: every answer
// reaches its own call.
func TestStdioRawConcurrent(t *testing.T) {
	a := newStdioTestAdapter(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 16*20+100)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				want := fmt.Sprintf("w%d-c%d", w, i)
				res, err := sendRaw(ctx, a, "echo", `{"text":"`+want+`"}`, nil)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", want, err)
					continue
				}
				if !strings.Contains(string(res.Result), `"`+want+`"`) || res.Path != plugins.PathRaw {
					errs <- fmt.Errorf("%s answered %s on path %s", want, res.Result, res.Path)
				}
			}
		}()
	}
	stop := make(chan struct{})
	var sdkCalls int
	sdkDone := make(chan struct{})
	go func() {
		defer close(sdkDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := a.ListTools(ctx, ""); err != nil {
				errs <- fmt.Errorf("tools/list: %w", err)
			}
			if err := a.Health(ctx); err != nil {
				errs <- fmt.Errorf("ping: %w", err)
			}
			sdkCalls++
		}
	}()
	wg.Wait()
	close(stop)
	<-sdkDone
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if sdkCalls == 0 {
		t.Error("no SDK request ran beside the raw calls")
	}
}

// TestStdioRawChildDies: when the child is killed with raw calls in
// flight, each fails at once with an error that says so, and the next
// call runs on a new child.
func TestStdioRawChildDies(t *testing.T) {
	a := newStdioTestAdapter(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got, _ := textOf(t)(sendRaw(ctx, a, "echo", `{"text":"up"}`, nil)); got != "up" {
		t.Fatalf("echo: %q", got)
	}
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := sendRaw(ctx, a, "hang", `{}`, nil)
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		inFlight := 0
		if a.conn != nil {
			inFlight = a.conn.rawInFlight()
		}
		a.mu.Unlock()
		if inFlight == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d raw calls in flight, want %d", inFlight, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the child read them
	a.mu.Lock()
	pid := a.child.Process.Pid
	a.mu.Unlock()
	killed := time.Now()
	killGroup(pid)
	for range n {
		select {
		case err := <-errs:
			if err == nil || !strings.Contains(err.Error(), "exited") && !strings.Contains(err.Error(), "closed its stdout") {
				t.Errorf("a call in flight when the child died: %v, want it failed saying the server exited", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a call in flight did not fail within 5s of the child's death")
		}
	}
	if d := time.Since(killed); d > 2*time.Second {
		t.Errorf("calls failed %v after the child died", d)
	}
	if got, _ := textOf(t)(sendRaw(ctx, a, "echo", `{"text":"again"}`, nil)); got != "again" {
		t.Errorf("echo on a new child: %q", got)
	}
}

// TestStdioRawCancelled: a raw call whose context ends returns at once;
// the connection keeps serving others.
func TestStdioRawCancelled(t *testing.T) {
	a := newStdioTestAdapter(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cctx, ccancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer ccancel()
	if _, err := sendRaw(cctx, a, "hang", `{}`, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang with a 100ms deadline: %v", err)
	}
	if got, _ := textOf(t)(sendRaw(ctx, a, "echo", `{"text":"next"}`, nil)); got != "next" {
		t.Errorf("echo after a cancelled call: %q", got)
	}
}

// FuzzStdioRoute: whatever line a stdio server writes, the router does
// not panic, and a response with a raw call's id reaches that call.
func FuzzStdioRoute(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":"armoriq-r1","result":{"content":[]}}`,
		`{"jsonrpc":"2.0","id":"armoriq-r1","error":{"code":-32602,"message":"no"}}`,
		`{"jsonrpc":"2.0","id":"armoriq-r1","error":{"code":"x"}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":1}}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}`,
		`{"jsonrpc":"2.0","id":3,"result":{}}`,
		`{"jsonrpc":"2.0","id":4,"method":"ping"}`,
		`[{"jsonrpc":"2.0","id":"armoriq-r1","result":{}},{"jsonrpc":"2.0","id":5,"result":{}}]`,
		`not json`, `[`, `{}`, `null`, `[[[]]]`, `{"id":"armoriq-r`,
		`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`,
		`[{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}},{"jsonrpc":"2.0","error":{"code":-32600,"message":"y"}}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c := newStdioConn("fuzz", "fuzz-server", 1<<20)
		done := make(chan struct{})
		go func() { // the SDK's side
			for {
				select {
				case <-c.incoming:
				case <-done:
					return
				}
			}
		}()
		rc := &stdioCall{id: "armoriq-r1", token: "tok", wantsLog: true, signal: make(chan struct{}, 1)}
		c.raw[rc.id] = rc
		c.tokens[rc.token] = rc
		c.route(line)
		close(done)

		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal(line, &m) == nil && m.Method == "" && string(m.ID) == `"armoriq-r1"` && m.Result != nil {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if !rc.done {
				t.Errorf("the response %s did not reach its call", line)
			}
		}
	})
}

// TestFindID: the id of a message too large to decode, from either end.
func TestFindID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"jsonrpc":"2.0","id":"armoriq-r7","result":{"x":"`, `"armoriq-r7"`},
		{`xxxx"},"jsonrpc":"2.0","id":12}`, `12`},
		{`{"id" : 5 ,`, `5`},
		{`{"result":"no id here`, ``},
		{`"id"`, ``},
		{`"id":`, ``},
		{`"id":"unterminated`, ``},
	} {
		got, ok := findID([]byte(tc.in))
		if string(got) != tc.want || ok != (tc.want != "") {
			t.Errorf("findID(%s) = %s, %v; want %s", tc.in, got, ok, tc.want)
		}
	}
}

// stressCalls is how many raw calls TestStdioRawStress makes in each
// phase: ARMORIQ_STRESS_CALLS, or a number that keeps the test short.
func stressCalls(t *testing.T) int {
	if s := os.Getenv("ARMORIQ_STRESS_CALLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("ARMORIQ_STRESS_CALLS=%q: want a positive number", s)
		}
		return n
	}
	if testing.Short() {
		return 300
	}
	return 3000
}

// TestStdioRawStress makes many raw calls on one child, sequential and
// concurrent, with the SDK's own traffic (tools/list, ping, SDK calls that
// log) between them and calls cancelled at random points: every call not
// cancelled gets its own answer. A call that waits for its answer past
// its (generous) deadline is a lost line or a waiter never woken.
func TestStdioRawStress(t *testing.T) {
	a := newStdioTestAdapter(t, 0)
	n := stressCalls(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const stall = 20 * time.Second // far beyond any answer; not a speed check

	call := func(i int, tool string, ev *plugins.CallEvents) error {
		want := fmt.Sprintf("c%d", i)
		cctx, ccancel := context.WithTimeout(ctx, stall)
		defer ccancel()
		res, err := sendRaw(cctx, a, tool, `{"text":"`+want+`"}`, ev)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s call %s stalled: no answer within %s", tool, want, stall)
		}
		if err != nil {
			return fmt.Errorf("%s call %s: %w", tool, want, err)
		}
		if r := string(res.Result); !strings.Contains(r, `"`+want+`"`) && !strings.Contains(r, ` `+want+`"`) {
			return fmt.Errorf("%s call %s answered %s", tool, want, r)
		}
		return nil
	}

	// Sequential, as armoriq bench calls at concurrency 1.
	for i := range n {
		if err := call(i, "echo", nil); err != nil {
			t.Fatal(err)
		}
	}

	// Concurrent, with SDK traffic and cancellations.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	stop := make(chan struct{})
	var sdkWG sync.WaitGroup
	sdkWG.Add(2)
	go func() { // the SDK's requests
		defer sdkWG.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			cctx, ccancel := context.WithTimeout(ctx, stall)
			if _, err := a.ListTools(cctx, ""); err != nil {
				report(fmt.Errorf("tools/list: %w", err))
			}
			if err := a.Health(cctx); err != nil {
				report(fmt.Errorf("ping: %w", err))
			}
			if _, err := a.CallToolV2(cctx, &plugins.ToolCall{Name: "logs", Arguments: json.RawMessage(`{}`)}, &plugins.CallEvents{Log: func(plugins.LogMessage) {}}); err != nil {
				report(fmt.Errorf("SDK tools/call logs: %w", err))
			}
			ccancel()
		}
	}()
	go func() { // raw calls cancelled at random points
		defer sdkWG.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cctx, ccancel := context.WithTimeout(ctx, time.Duration(i%500)*time.Microsecond)
			_, _ = sendRaw(cctx, a, []string{"echo", "slow", "logs"}[i%3], `{"text":"x"}`, &plugins.CallEvents{Log: func(plugins.LogMessage) {}})
			ccancel()
		}
	}()
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				tool := "echo"
				var ev *plugins.CallEvents
				switch i % 4 {
				case 1:
					tool = "slow"
				case 2:
					tool = "logs"
					ev = &plugins.CallEvents{Log: func(plugins.LogMessage) {}}
				}
				if err := call(i, tool, ev); err != nil {
					report(err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sdkWG.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

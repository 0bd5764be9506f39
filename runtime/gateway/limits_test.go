package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/armoriq/controlplane/runtime/client"
	"github.com/armoriq/controlplane/runtime/intent"
)

func withLimits(l Limits) gatewayOpt {
	return func(c *Config) { c.Limits = l }
}

// serveReal serves g's handler with the http.Server the gateway builds
// (its timeouts and header limit) on a listener that accepts at most
// maxConns connections at once, as a process at its file-descriptor limit
// would; maxConns 0 means no cap. It returns the address.
func serveReal(t *testing.T, g *testGateway, maxConns int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if maxConns > 0 {
		ln = &capListener{Listener: ln, slots: make(chan struct{}, maxConns)}
	}
	hs := g.srv.NewHTTPServer()
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// capListener accepts a connection only while fewer than cap(slots) are
// open.
type capListener struct {
	net.Listener
	slots chan struct{}
}

func (l *capListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &capConn{Conn: c, release: func() { <-l.slots }}, nil
}

type capConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *capConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// closedWithin reports how long the server took to close conn (reading
// and discarding whatever it answers), failing after max.
func closedWithin(t *testing.T, conn net.Conn, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	conn.SetReadDeadline(start.Add(max))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v", max)
	}
	return time.Since(start)
}

func TestIdleAndSlowConnectionsAreCut(t *testing.T) {
	const (
		readHeader = 300 * time.Millisecond
		read       = 600 * time.Millisecond
		idle       = 300 * time.Millisecond
	)
	g := newTestGateway(t, nil, withLimits(Limits{ReadHeaderTimeout: readHeader, ReadTimeout: read, IdleTimeout: idle}))
	addr := serveReal(t, g, 0)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("connection that sends nothing", func(t *testing.T) {
		c := dial()
		if d := closedWithin(t, c, 5*time.Second); d < readHeader/2 {
			t.Errorf("closed after %v, before the read-header timeout %v", d, readHeader)
		}
	})
	t.Run("headers a byte at a time", func(t *testing.T) {
		c := dial()
		go func() {
			for _, b := range []byte("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		closedWithin(t, c, 5*time.Second)
	})
	t.Run("body a byte at a time", func(t *testing.T) {
		c := dial()
		fmt.Fprintf(c, "POST /invoke HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", g.agentKey)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}()
		if d := closedWithin(t, c, 5*time.Second); d < read/2 {
			t.Errorf("closed after %v, before the read timeout %v", d, read)
		}
	})
	t.Run("idle keep-alive after a request", func(t *testing.T) {
		c := dial()
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /health: status %d", resp.StatusCode)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Errorf("idle keep-alive connection: read = %v, want EOF (closed by the idle timeout)", err)
		}
	})
}

// TestIdleConnectionsDoNotShutOutClients fills every connection the
// listener can hold with idle and slow clients; a real client must still
// be served once the timeouts cut them.
func TestIdleConnectionsDoNotShutOutClients(t *testing.T) {
	const maxConns = 8
	g := newTestGateway(t, nil, withLimits(Limits{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 600 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}))
	addr := serveReal(t, g, maxConns)
	var hogs []net.Conn
	for i := 0; i < maxConns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 1 { // a slowloris: headers started, never finished
			fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: x\r\n")
		}
		hogs = append(hogs, c)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatalf("a real client behind %d idle and slow connections: %v", maxConns, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /health: status %d", resp.StatusCode)
	}
	for i, c := range hogs {
		closedWithin(t, c, 5*time.Second)
		_ = i
	}
}

func TestLargeBodiesRefused(t *testing.T) {
	g := newTestGateway(t, nil, withLimits(Limits{MaxBody: 4 << 10, MaxBundleBody: 1 << 20}))
	g.pushBundle("rev1", 100, testPolicy()) // a bundle over MaxBody: its own limit
	big := []byte(`{"mcp":"tools","action":"echo","params":{"text":"` + strings.Repeat("a", 8<<10) + `"}}`)

	post := func(path, key string, body io.Reader, length int64) (*http.Response, string) {
		req, _ := http.NewRequest("POST", g.http.URL+path, body)
		req.ContentLength = length
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	tests := []struct {
		name   string
		path   string
		key    string
		length int64 // -1: chunked, no declared length
	}{
		// A declared length over the limit is refused before anything,
		// the API key included.
		{"invoke, declared length, no key", "/invoke", "", int64(len(big))},
		{"mcp, declared length, no key", "/mcp", "", int64(len(big))},
		{"token, declared length", "/iap/sdk/token", "agent", int64(len(big))},
		// Without a declared length the limit cuts the read.
		{"invoke, chunked", "/invoke", "agent", -1},
		{"mcp, chunked", "/mcp", "agent", -1},
		{"keys, chunked", "/v1/keys", "admin", -1},
	}
	for _, tt := range tests {
		key := map[string]string{"agent": g.agentKey, "admin": g.adminKey}[tt.key]
		var body io.Reader = bytes.NewReader(big)
		if tt.length < 0 {
			body = io.MultiReader(bytes.NewReader(big)) // hides the length
		}
		resp, msg := post(tt.path, key, body, tt.length)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "exceeds the limit of 4096 bytes") {
			t.Errorf("%s: status %d, body %s; want 413 naming the limit", tt.name, resp.StatusCode, msg)
		}
	}
	// Under the limit, the same routes work.
	resp, msg := post("/v1/keys", g.adminKey, strings.NewReader(`{"name":"small","role":"agent"}`), -1)
	if resp.StatusCode != 201 {
		t.Errorf("small body: status %d: %s", resp.StatusCode, msg)
	}
}

func TestBatchCap(t *testing.T) {
	g := newTestGateway(t, nil, withLimits(Limits{MaxBatch: 3}))
	g.pushBundle("rev1", 100, testPolicy())
	post := func(body string, hdr map[string]string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", g.http.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+g.agentKey)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	// A legacy session, whose protocol still has batches.
	resp, msg := post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil)
	sid := resp.Header.Get(headerSessionID)
	if resp.StatusCode != 200 || sid == "" {
		t.Fatalf("initialize: status %d, session %q: %s", resp.StatusCode, sid, msg)
	}
	hdr := map[string]string{headerSessionID: sid, headerProtocol: "2025-03-26"}
	batch := func(n int) string {
		var b strings.Builder
		b.WriteString("[")
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%d,"method":"ping","params":{"note":"a, [b]"}}`, i+10)
		}
		b.WriteString("]")
		return b.String()
	}
	resp, msg = post(batch(3), hdr)
	if resp.StatusCode != 200 || strings.Contains(msg, "--max-batch") {
		t.Errorf("batch of 3 (the limit): status %d: %s", resp.StatusCode, msg)
	}
	resp, msg = post(batch(4), hdr)
	var ans struct {
		ID    any `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(msg), &ans); err != nil || resp.StatusCode != 400 || ans.Error.Code != -32600 || !strings.Contains(ans.Error.Message, "batch of 4 requests exceeds the limit of 3") {
		t.Errorf("batch of 4: status %d, body %s (%v); want 400 and one JSON-RPC error -32600", resp.StatusCode, msg, err)
	}
}

func TestBatchSize(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{`{"jsonrpc":"2.0"}`, 0},
		{`[]`, 0},
		{` [ ] `, 0},
		{`[{}]`, 1},
		{`[1,2,3]`, 3},
		{"\n[{\"a\":[1,2]},{\"s\":\"x,]\\\"\"}]", 2},
		{`[{"a":1},`, 2}, // malformed: counted, left to the decoder
		{``, 0},
	}
	for _, tt := range tests {
		if got := batchSize([]byte(tt.in)); got != tt.want {
			t.Errorf("batchSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestConcurrentCallsPerKey(t *testing.T) {
	g := newTestGateway(t, nil, withLimits(Limits{MaxConcurrentPerKey: 2}))
	g.pushBundle("rev1", 100, testPolicy())
	tok := g.issue("alice@example.com", step("tools", "slow", nil), step("tools", "echo", map[string]any{"text": "hi"}))
	slowBody, slowHdr := invokeRequestFor(tok, "tools", "slow", nil)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "POST", g.http.URL+"/invoke", bytes.NewReader(slowBody))
			for k, v := range slowHdr {
				req.Header.Set(k, v)
			}
			req.Header.Set("X-API-Key", g.agentKey)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	running := func() int { return g.srv.inflight.running("") }
	waitFor := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); running() != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("requests running = %d, want %d", running(), want)
			}
		}
	}
	waitFor(2)

	// A third request of the key, on /invoke or /mcp, is refused.
	resp, out := g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	msg, _ := out["message"].(string)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(msg, "--max-concurrent-per-key") || out["success"] != false {
		t.Errorf("third call: status %d, Retry-After %q, body %v; want 429 naming the limit", resp.StatusCode, resp.Header.Get("Retry-After"), out)
	}
	mresp, mbody := g.send("POST", "/mcp", g.agentKey, []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), map[string]string{"Accept": "application/json, text/event-stream", "Content-Type": "application/json"})
	if mresp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("/mcp while the key is at its limit: status %d: %s", mresp.StatusCode, mbody)
	}
	// The Go SDK sees the refusal as an error, never as a result.
	gc, err := client.New(client.Options{APIKey: g.agentKey, UserID: "alice@example.com", AgentID: "agent-1", Endpoint: g.http.URL, Getenv: func(string) string { return "" }, HomeDir: t.TempDir(), Now: g.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := gc.CapturePlan("echo", []intent.Step{{Action: "echo", MCP: "tools", Params: map[string]any{"text": "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := gc.GetIntentToken(context.Background(), plan, client.Validity(time.Minute)); err == nil || !strings.Contains(err.Error(), "--max-concurrent-per-key") {
		t.Errorf("Go SDK at the key's limit: token %v, err %v; want an error naming the limit", tok, err)
	}
	// Another key is not affected.
	other := g.createKey("other", "agent")
	g.do("GET", "/v1/bundle/status", g.adminKey, nil, 200, nil)
	if mresp, mbody := g.send("POST", "/mcp", other, []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), map[string]string{"Accept": "application/json, text/event-stream", "Content-Type": "application/json", headerProtocol: firstStatelessVersion}); mresp.StatusCode == http.StatusTooManyRequests {
		t.Errorf("another key: status %d: %s", mresp.StatusCode, mbody)
	}

	cancel()
	wg.Wait()
	waitFor(0)
	resp, out = g.sdkInvoke(g.agentKey, tok, "tools", "echo", map[string]any{"text": "hi"}, nil)
	if resp.StatusCode != 200 {
		t.Errorf("after the slow calls ended: status %d: %v", resp.StatusCode, out)
	}
}

// TestLongAnswersExtendTheWriteDeadline streams an answer for longer than
// the write timeout: with extendWrites (as the audit export does) it
// arrives whole, without it the server cuts it.
func TestLongAnswersExtendTheWriteDeadline(t *testing.T) {
	// Eight chunks 400 ms apart outlast the write timeout by far, while one
	// gap between two extensions is a fifth of it: a loaded machine (CI
	// shares it) must delay a goroutine by 1.6 s to fail the test.
	const writeTimeout = 2 * time.Second
	g := newTestGateway(t, nil, withLimits(Limits{WriteTimeout: writeTimeout}))
	stream := func(extend bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			keep := g.srv.extendWrites(w)
			for i := 0; i < 8; i++ {
				if extend {
					keep()
				}
				fmt.Fprintf(w, "chunk %d\n", i)
				http.NewResponseController(w).Flush()
				time.Sleep(writeTimeout / 5)
			}
			fmt.Fprintln(w, "end")
		})
	}
	for _, extend := range []bool{true, false} {
		hs := g.srv.NewHTTPServer()
		hs.Handler = stream(extend)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go hs.Serve(ln)
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		var body []byte
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		hs.Close()
		whole := strings.HasSuffix(string(body), "end\n")
		if whole != extend {
			t.Errorf("extend=%v: the answer arrived whole: %v (%q)", extend, whole, body)
		}
	}
}

// FuzzBatchSize checks the batch counter against encoding/json on every
// valid JSON body: the number of elements of an array, 0 for anything else.
func FuzzBatchSize(f *testing.F) {
	for _, s := range []string{`[]`, `[1,2]`, ` [{"a":"],["}, [1,[2,3]], "x\"y,"] `, `{"a":[1,2]}`, `"[1,2]"`, `[[],[]]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := batchSize([]byte(s)) // never panics, valid or not
		if !json.Valid([]byte(s)) {
			return
		}
		var arr []json.RawMessage
		want := 0
		if json.Unmarshal([]byte(s), &arr) == nil {
			want = len(arr)
		}
		if got != want {
			t.Errorf("batchSize(%q) = %d, want %d", s, got, want)
		}
	})
}

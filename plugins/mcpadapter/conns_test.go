package mcpadapter

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/armoriq/controlplane/plugins/rawconn"
)

// TestConnTransportPicked: a plain-http upstream gets the raw path's own
// connections; https, or a proxy from the environment, net/http's.
func TestConnTransportPicked(t *testing.T) {
	defer func(f func(*http.Request) (*url.URL, error)) { proxyFor = f }(proxyFor)
	proxyFor = func(*http.Request) (*url.URL, error) { return nil, nil }
	for _, tc := range []struct {
		url  string
		own  bool
		note string
	}{
		{"http://127.0.0.1:8080/mcp", true, "plain http"},
		{"http://localhost/mcp", true, "plain http, default port"},
		{"https://mcp.example.com/mcp", false, "https: TLS is net/http's"},
		{"::bad", false, "unparsable"},
	} {
		_, own := newRawTransport(tc.url).(*connTransport)
		if own != tc.own {
			t.Errorf("%s (%s): own transport %v, want %v", tc.url, tc.note, own, tc.own)
		}
	}
	proxyFor = func(*http.Request) (*url.URL, error) { return url.Parse("http://proxy.example.com:3128") }
	if _, own := newRawTransport("http://mcp.example.com/mcp").(*connTransport); own {
		t.Error("with HTTP_PROXY set: own transport, want net/http's (it speaks to proxies)")
	}
}

// TestBuildRequest: the request as written, and the headers refused (a
// line break in a value would let a tool's name add headers of its
// choosing to the upstream request).
func TestBuildRequest(t *testing.T) {
	req, _ := http.NewRequest("POST", "http://127.0.0.1:9/mcp?x=1", strings.NewReader(`{"a":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "close") // hop-by-hop: not passed
	b, err := buildRequest(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"POST /mcp?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n", "User-Agent: armoriq-adapter\r\n", "Content-Type: application/json\r\n", "Content-Length: 7\r\n\r\n{\"a\":1}"} {
		if !strings.Contains(got, want) {
			t.Errorf("request %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "Connection") {
		t.Errorf("request %q passes a hop-by-hop header", got)
	}
	parsed, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("the request does not parse: %v", err)
	}
	if body, _ := io.ReadAll(parsed.Body); string(body) != `{"a":1}` || parsed.Header.Get("Content-Type") != "application/json" {
		t.Errorf("parsed body %q, content type %q", body, parsed.Header.Get("Content-Type"))
	}

	for _, tc := range []struct{ name, key, value string }{
		{"CRLF in a value", "Mcp-Name", "echo\r\nX-Injected: 1"},
		{"LF in a value", "Mcp-Name", "echo\nX-Injected: 1"},
		{"NUL in a value", "X-Cred", "a\x00b"},
		{"DEL in a value", "X-Cred", "a\x7fb"},
		{"space in a name", "X Cred", "v"},
		{"colon in a name", "X:Cred", "v"},
		{"empty name", "", "v"},
	} {
		req, _ := http.NewRequest("POST", "http://127.0.0.1:9/", strings.NewReader("{}"))
		req.Header[tc.key] = []string{tc.value}
		if _, err := buildRequest(nil, req); err == nil {
			t.Errorf("%s: header %q: %q built, want it refused", tc.name, tc.key, tc.value)
		}
	}
}

// countingServer is an httptest server that counts the connections
// opened to it.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func post(t *testing.T, c *http.Client, url, body string) (*http.Response, string, error) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// TestConnTransportReuse: a connection read to its end serves the next
// request; one closed unread, or one the upstream asked to close, does
// not; one the upstream closed while idle is noticed before use, and the
// request goes on a new one.
func TestConnTransportReuse(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch string(body) {
		case "close":
			w.Header().Set("Connection", "close")
		case "chunked":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				_, _ = io.WriteString(w, "data: "+strings.Repeat("x", i)+"\n\n")
				w.(http.Flusher).Flush()
			}
			return
		}
		_, _ = w.Write(body)
	}))
	tr := newRawTransport(srv.URL).(*connTransport)
	defer tr.close()
	c := &http.Client{Transport: tr}
	for i := range 5 {
		if _, got, err := post(t, c, srv.URL, "echo"); err != nil || got != "echo" {
			t.Fatalf("call %d: %q, %v", i, got, err)
		}
	}
	if _, got, err := post(t, c, srv.URL, "chunked"); err != nil || got != "data: \n\ndata: x\n\ndata: xx\n\n" {
		t.Fatalf("chunked answer: %q, %v", got, err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("6 sequential requests read to their end opened %d connections, want 1", n)
	}

	// Closed before its end: the connection is not reused.
	resp, err := c.Post(srv.URL, "application/json", strings.NewReader("chunked"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, _, err := post(t, c, srv.URL, "echo"); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("after a body closed unread: %d connections, want 2", n)
	}

	// Connection: close from the upstream.
	if _, _, err := post(t, c, srv.URL, "close"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := post(t, c, srv.URL, "echo"); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("after Connection: close: %d connections, want 3", n)
	}

	// The upstream closes the idle connection: once the close has reached
	// this side, the next request goes on a new connection and succeeds.
	srv.CloseClientConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr.mu.Lock()
		idle := append([]*upConn(nil), tr.idle...)
		tr.mu.Unlock()
		if len(idle) == 1 && !peekConn(idle[0].c) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the upstream's close never reached the idle connection")
		}
		time.Sleep(time.Millisecond)
	}
	if _, got, err := post(t, c, srv.URL, "echo"); err != nil || got != "echo" {
		t.Fatalf("after the upstream closed the idle connection: %q, %v; want the request served on a new one", got, err)
	}
}

// pipeTransport is a connTransport whose connections are pipes to an
// upstream that reads one request and answers with answer, then closes.
func pipeTransport(answer func(server net.Conn)) *connTransport {
	tr := &connTransport{addr: "pipe", maxIdle: 4}
	tr.dial = func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			if req, err := http.ReadRequest(bufio.NewReader(server)); err == nil {
				_, _ = io.Copy(io.Discard, req.Body)
			}
			answer(server)
		}()
		return client, nil
	}
	return tr
}

// TestConnTransportHeaderBound: an upstream that sends headers without
// end gets the request failed once it has sent a MiB of them, as
// net/http's transport bounds them, and its connection closed.
func TestConnTransportHeaderBound(t *testing.T) {
	tr := pipeTransport(func(server net.Conn) {
		if _, err := io.WriteString(server, "HTTP/1.1 200 OK\r\n"); err != nil {
			return
		}
		line := []byte("X-Filler: " + strings.Repeat("x", 1000) + "\r\n")
		for range 4 << 10 { // 4 MiB of headers, unless the client stops reading
			if _, err := server.Write(line); err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://pipe/", strings.NewReader("{}"))
	if _, err := tr.RoundTrip(req); !errors.Is(err, errHeaderTooLarge) {
		t.Fatalf("endless headers: %v, want %v", err, errHeaderTooLarge)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.idle) != 0 {
		t.Error("the connection went back to the pool")
	}
}

// TestConnTransportIdleTimeout: connections left idle are closed after
// the idle timeout, as net/http's transport closes its own.
func TestConnTransportIdleTimeout(t *testing.T) {
	srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	tr := newRawTransport(srv.URL).(*connTransport)
	tr.idleTimeout = 20 * time.Millisecond
	defer tr.close()
	c := &http.Client{Transport: tr}
	// Three requests at once leave three idle connections.
	start := make(chan struct{})
	errc := make(chan error, 3)
	for range 3 {
		go func() {
			<-start
			_, _, err := post(t, c, srv.URL, "x")
			errc <- err
		}()
	}
	close(start)
	for range 3 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr.mu.Lock()
		n, sweeping := len(tr.idle), tr.sweeping != nil
		tr.mu.Unlock()
		if n == 0 && !sweeping {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still idle long after the idle timeout", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// And the pool serves again afterwards.
	if _, got, err := post(t, c, srv.URL, "x"); err != nil || got != "ok" {
		t.Fatalf("after the sweep: %q, %v", got, err)
	}
}

// TestConnTransportCancel: a request whose context ends while the
// upstream has not answered returns the context's error at once, and its
// connection is not reused.
func TestConnTransportCancel(t *testing.T) {
	release := make(chan struct{})
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall" {
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer close(release)
	tr := newRawTransport(srv.URL).(*connTransport)
	defer tr.close()
	c := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/stall", strings.NewReader("x"))
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	for conns.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v, want context.Canceled", err)
	}
	if _, got, err := post(t, c, srv.URL, "x"); err != nil || got != "ok" {
		t.Fatalf("next request: %q, %v", got, err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the cancelled request's is not reused)", n)
	}
}

// FuzzConnTransportAnswer: whatever an upstream writes back, RoundTrip
// answers an error or a response whose body reads to an end, and a
// connection goes back to the pool only after a whole, well-formed answer.
func FuzzConnTransportAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		tr := pipeTransport(func(server net.Conn) { _, _ = server.Write(answer) })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://pipe/", strings.NewReader("{}"))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return
		}
		_, rerr := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		tr.mu.Lock()
		pooled := len(tr.idle)
		tr.mu.Unlock()
		if pooled > 0 && rerr != nil {
			t.Errorf("a connection went back to the pool after a body that failed: %v", rerr)
		}
		tr.close()
	})
}

// TestHTTPTransportDialsRaw: net/http's transport, which the adapter uses
// for https upstreams and through proxies, reads and writes its
// connections with raw system calls, TLS on top (where rawconn is
// enabled: on Linux, outside the race detector).
func TestHTTPTransportDialsRaw(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	tr := newHTTPTransport()
	tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
	defer tr.CloseIdleConnections()
	var under net.Conn
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if tc, ok := info.Conn.(*tls.Conn); ok {
			under = tc.NetConn()
		}
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
	if under == nil {
		t.Fatal("the request went over no TLS connection")
	}
	_, raw := under.(interface{ ReadNow([]byte) (int, error) })
	if want := rawconn.Enabled(); raw != want {
		t.Errorf("the TLS connection's socket is raw: %v, want %v (%T)", raw, want, under)
	}
}

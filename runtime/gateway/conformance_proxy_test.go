package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConformanceProxyFullDuplex runs the conformance harness's proxy
// (testdata/conformance/proxy, built and run as a process) between a raw
// TCP client and a raw TCP backend, and has the backend start an event
// stream while the client has not yet sent the last byte of its request
// body. The proxy must pass the stream's start through at once, then the
// rest of the body, then the rest of the stream.
//
// A proxy that leaves its server in the default (half-duplex) mode holds
// the response back here: the server drains what is left of the request
// body before writing a response, and waits for the transport, which is
// itself reading that body. When the body was complete, the same draining
// raced with the transport's last read of it, and the proxy cut event
// streams short (golang/go#40747): the flake of .ci/conformance's
// http-header-validation scenario, about one run in twenty through either
// adapter. That race cannot be forced from outside net/http; this is its
// deterministic form.
func TestConformanceProxyFullDuplex(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	dir := t.TempDir()
	proxyBin := filepath.Join(dir, "proxy")
	if out, err := exec.Command("go", "build", "-o", proxyBin, "./testdata/conformance/proxy").CombinedOutput(); err != nil {
		t.Fatalf("go build ./testdata/conformance/proxy: %v\n%s", err, out)
	}

	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("test-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.Command(proxyBin, "-target", "http://"+backend.Addr().String(), "-key-file", keyFile, "-addr-file", addrFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("proxy stderr:\n%s", stderr.String())
		}
	}()
	var proxyAddr string
	for range 500 {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			proxyAddr = string(b)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if proxyAddr == "" {
		t.Fatal("the proxy never wrote its address")
	}

	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	first, second := "event: message\ndata: first\n\n", "event: message\ndata: second\n\n"
	// The backend: it reads the request and all of the body but its last
	// byte, starts the stream, then reads the last byte and ends the stream.
	backendErr := make(chan error, 1)
	go func() {
		backendErr <- func() error {
			c, err := backend.Accept()
			if err != nil {
				return err
			}
			defer c.Close()
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil {
				return fmt.Errorf("backend: reading the request: %w", err)
			}
			if got := req.Header.Get("Authorization"); got != "Bearer test-key" {
				return fmt.Errorf("backend: Authorization %q, want %q", got, "Bearer test-key")
			}
			head := make([]byte, len(body)-1)
			if _, err := io.ReadFull(req.Body, head); err != nil {
				return fmt.Errorf("backend: reading the body's start: %w", err)
			}
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(first), first); err != nil {
				return err
			}
			rest, err := io.ReadAll(req.Body)
			if err != nil {
				return fmt.Errorf("backend: reading the body's end: %w", err)
			}
			if got := string(head) + string(rest); got != body {
				return fmt.Errorf("backend: body %q, want %q", got, body)
			}
			_, err = fmt.Fprintf(c, "%x\r\n%s\r\n0\r\n\r\n", len(second), second)
			return err
		}()
	}()

	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Only a proxy that holds the response back ever meets this deadline.
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "POST /mcp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n%s",
		proxyAddr, len(body), body[:len(body)-1]); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response's head before the request body's last byte: %v (the proxy holds a response back until the request body is in: is it in full-duplex mode?)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200", resp.StatusCode)
	}
	got := make([]byte, len(first))
	if _, err := io.ReadFull(resp.Body, got); err != nil {
		t.Fatalf("reading the first event before the request body's last byte: %v", err)
	}
	if string(got) != first {
		t.Fatalf("first event: got %q, want %q", got, first)
	}
	if _, err := io.WriteString(c, body[len(body)-1:]); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the rest of the stream: %v (got %q)", err, rest)
	}
	if string(rest) != second {
		t.Errorf("rest of the stream: got %q, want %q", rest, second)
	}
	if err := <-backendErr; err != nil {
		t.Error(err)
	}
}

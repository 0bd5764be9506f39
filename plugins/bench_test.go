package plugins_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/armoriq/controlplane/plugins"
)

type bearer struct{ base http.RoundTripper }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+upstreamToken)
	return b.base.RoundTrip(r)
}

// BenchmarkCallTool compares one echo call through the host and the http
// adapter with the same call from a go-sdk client straight to the upstream:
// the difference is the cost of the adapter hop.
func BenchmarkCallTool(b *testing.B) {
	url := newUpstream(nil).serveHTTP(b, false)
	ctx := context.Background()
	args := json.RawMessage(`{"text":"hello"}`)

	b.Run("direct", func(b *testing.B) {
		c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{
			Endpoint: url, HTTPClient: &http.Client{Transport: bearer{http.DefaultTransport}}, DisableStandaloneSSE: true,
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer cs.Close()
		b.ReportAllocs()
		for b.Loop() {
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: args})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(res); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("host/http", func(b *testing.B) {
		a := startAdapter(b, newHost(b), httpServer("up", url))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.CallTool(ctx, "echo", args, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAdapterRoundTrip measures the hop between the host and an
// adapter process on its own: a tool call as the gateway makes it through
// the real go-plugin gRPC connection (a unix socket) to an adapter that
// answers at once, with no upstream behind it. It is the floor of what the
// adapter hop adds to every forwarded call. "raw" is a raw call (CallRaw,
// what the gateway sends for tools/call) on contract 5's hop, "raw-1MiB"
// one whose result is 1 MiB, "grpc" and "grpc-1MiB" the same on contract
// 4's Raw.Session (an adapter built before contract 5), "v2" the same call
// through contract 2's CallToolV2; "floor" is a bare request/response of
// the same bytes over a unix socket to another process, the least a hop
// between two processes can cost. "parallel" runs 4×GOMAXPROCS callers at
// once (the floor: one connection each).
func BenchmarkAdapterRoundTrip(b *testing.B) {
	h := newHost(b, plugins.WithEnv("ARMORIQ_TEST_ROLE=adapter-echo", "ARMORIQ_TEST_CPUPROFILE="+os.Getenv("ARMORIQ_TEST_CPUPROFILE")))
	a, ok := startAdapter(b, h, plugins.ServerConfig{ID: "echo", Transport: plugins.TransportHTTP, URL: "http://127.0.0.1:1/unused"}).(plugins.AdapterRaw)
	if !ok {
		b.Fatal("the host's adapter does not implement AdapterRaw")
	}
	ctx := context.Background()
	args := json.RawMessage(`{"text":"hello"}`)
	params, err := plugins.AppendToolCallParams(nil, "echo", args, nil, nil, "")
	if err != nil {
		b.Fatal(err)
	}
	// The same adapter built before contract 5: raw calls on Raw.Session.
	h4 := newHost(b, plugins.WithEnv("ARMORIQ_TEST_ROLE=adapter-echo-v4"))
	a4 := startAdapter(b, h4, plugins.ServerConfig{ID: "echo", Transport: plugins.TransportHTTP, URL: "http://127.0.0.1:1/unused"}).(plugins.AdapterRaw)
	if v := contract(h, "echo"); v != 5 {
		b.Fatalf("the echo adapter negotiated contract %d, want 5", v)
	}
	if v := contract(h4, "echo"); v != 4 {
		b.Fatalf("the contract 4 echo adapter negotiated contract %d, want 4", v)
	}
	raw := func(a plugins.AdapterRaw, name string, want int) func() error {
		return func() error {
			res, err := a.CallRaw(ctx, &plugins.RawCall{Method: "tools/call", Name: name, Params: params}, &plugins.CallEvents{})
			if err == nil && len(res.Result) != want {
				err = fmt.Errorf("raw call answered %d bytes, want %d", len(res.Result), want)
			}
			return err
		}
	}
	calls := []struct {
		name string
		call func() error
		h    *plugins.Host
	}{
		{"raw", raw(a, "echo", len(echoResult)), h},
		{"raw-1MiB", raw(a, "big", len(bigResult)), h},
		{"grpc", raw(a4, "echo", len(echoResult)), h4},
		{"grpc-1MiB", raw(a4, "big", len(bigResult)), h4},
		{"v2", func() error {
			_, err := a.CallToolV2(ctx, &plugins.ToolCall{Name: "echo", Arguments: args}, &plugins.CallEvents{})
			return err
		}, h},
		{"floor", nil, nil},
	}
	for _, c := range calls {
		call, peer := c.call, 0
		if c.h != nil {
			peer = c.h.Status()[0].PID
		}
		if call == nil {
			dial, pid := unixEchoServer(b)
			peer = pid
			conns := make(chan *unixEchoConn, 64)
			call = func() error {
				var uc *unixEchoConn
				select {
				case uc = <-conns:
				default:
					var err error
					if uc, err = dial(); err != nil {
						return err
					}
				}
				err := uc.roundTrip(params, len(echoResult))
				conns <- uc
				return err
			}
		}
		b.Run(c.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU(peer)
			for b.Loop() {
				if err := call(); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(4)
			cpu := startCPU(peer)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := call(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			cpu.report(b)
		})
	}
}

// cpuMeter measures the CPU time a benchmark takes in this process (the
// host) and in the other one (the adapter, or the floor's server): less
// moved than wall time by the load of a shared machine.
type cpuMeter struct {
	peer         int
	self0, peer0 time.Duration
}

func startCPU(peer int) *cpuMeter {
	m := &cpuMeter{peer: peer}
	m.self0, _ = procCPU(0)
	m.peer0, _ = procCPU(peer)
	return m
}

// report adds host-cpu-µs/op and adapter-cpu-µs/op to the benchmark's
// figures, where /proc tells them.
func (m *cpuMeter) report(b *testing.B) {
	self, ok1 := procCPU(0)
	peer, ok2 := procCPU(m.peer)
	if !ok1 || !ok2 || b.N == 0 {
		return
	}
	b.ReportMetric(float64((self-m.self0).Microseconds())/float64(b.N), "host-cpu-µs/op")
	b.ReportMetric(float64((peer-m.peer0).Microseconds())/float64(b.N), "adapter-cpu-µs/op")
}

// procCPU is the CPU time, user and system, that process pid (0: this one)
// has used, from /proc (in clock ticks of 10 ms).
func procCPU(pid int) (time.Duration, bool) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	// The fields after the command name (in parentheses): state is the
	// first, utime the 12th, stime the 13th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}

// unixEchoServer runs the test binary as a process that answers every
// length-prefixed request on a unix socket with as many bytes as the
// request asks for (serveUnixEcho), and returns how to connect to it.
func unixEchoServer(b *testing.B) (dial func() (*unixEchoConn, error), pid int) {
	sock := filepath.Join(b.TempDir(), "echo.sock")
	cmd := exec.Command(testExe(b), "-test.run=^$")
	cmd.Env = append(os.Environ(), "ARMORIQ_TEST_ROLE=unix-echo", "ARMORIQ_TEST_SOCKET="+sock)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		b.Fatalf("the unix echo server did not start: %v", err)
	}
	return func() (*unixEchoConn, error) {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return nil, err
		}
		return &unixEchoConn{c: c, buf: make([]byte, 64<<10)}, nil
	}, cmd.Process.Pid
}

// unixEchoConn is one connection to the unix echo server.
type unixEchoConn struct {
	c   net.Conn
	buf []byte
}

// roundTrip sends req, framed as [4-byte length of req][4-byte size of the
// answer wanted][req], and reads the answer.
func (u *unixEchoConn) roundTrip(req []byte, answer int) error {
	b := binary.BigEndian.AppendUint32(u.buf[:0], uint32(len(req)))
	b = binary.BigEndian.AppendUint32(b, uint32(answer))
	b = append(b, req...)
	if _, err := u.c.Write(b); err != nil {
		return err
	}
	_, err := io.ReadFull(u.c, u.buf[:answer])
	return err
}

// serveUnixEcho is the unix echo server's process (ARMORIQ_TEST_ROLE
// unix-echo): it listens on ARMORIQ_TEST_SOCKET, says so on stdout, and
// answers each connection's requests in turn.
func serveUnixEcho() error {
	l, err := net.Listen("unix", os.Getenv("ARMORIQ_TEST_SOCKET"))
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			var hdr [8]byte
			buf := make([]byte, 64<<10)
			for {
				if _, err := io.ReadFull(r, hdr[:]); err != nil {
					return
				}
				n, answer := binary.BigEndian.Uint32(hdr[:4]), binary.BigEndian.Uint32(hdr[4:])
				if _, err := io.ReadFull(r, buf[:n]); err != nil {
					return
				}
				if _, err := c.Write(buf[:answer]); err != nil {
					return
				}
			}
		}()
	}
}

// echoAdapter answers every tool call at once with a small fixed result:
// the adapter of BenchmarkAdapterRoundTrip, which measures the hop alone.
type echoAdapter struct{}

var echoResult = json.RawMessage(`{"content":[{"type":"text","text":"hello"}]}`)

func (echoAdapter) Configure(context.Context, plugins.ServerConfig) error { return nil }
func (echoAdapter) ListTools(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}`), nil
}
func (echoAdapter) CallTool(context.Context, string, json.RawMessage, func(plugins.Progress)) (json.RawMessage, error) {
	return echoResult, nil
}
func (echoAdapter) ListResources(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"resources":[]}`), nil
}
func (echoAdapter) ReadResource(context.Context, string) (json.RawMessage, error) {
	return nil, &plugins.RPCError{Code: -32002, Message: "not found"}
}
func (echoAdapter) ListPrompts(context.Context, string) (json.RawMessage, error) {
	return json.RawMessage(`{"prompts":[]}`), nil
}
func (echoAdapter) GetPrompt(context.Context, string, map[string]string) (json.RawMessage, error) {
	return nil, &plugins.RPCError{Code: -32602, Message: "no prompts"}
}
func (echoAdapter) Health(context.Context) error { return nil }
func (echoAdapter) CallToolV2(context.Context, *plugins.ToolCall, *plugins.CallEvents) (json.RawMessage, error) {
	return echoResult, nil
}
func (echoAdapter) CallRaw(_ context.Context, call *plugins.RawCall, _ *plugins.CallEvents) (*plugins.RawResult, error) {
	if call.Name == "big" {
		return &plugins.RawResult{Result: bigResult, Path: plugins.PathRaw}, nil
	}
	return &plugins.RawResult{Result: echoResult, Path: plugins.PathRaw}, nil
}

// bigResult is the echo adapter's answer to a raw call of "big": 1 MiB.
var bigResult = textResult("big", 1<<20-len(textResult("big", 1)))

func (e echoAdapter) GetPromptV2(ctx context.Context, name string, args map[string]string, _ *plugins.RequestExtra) (json.RawMessage, error) {
	return e.GetPrompt(ctx, name, args)
}
func (e echoAdapter) ReadResourceV2(ctx context.Context, uri string, _ *plugins.RequestExtra) (json.RawMessage, error) {
	return e.ReadResource(ctx, uri)
}

package plugins

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	protov3 "github.com/armoriq/controlplane/plugins/proto/v3"
)

// hopPair starts a hop server for impl in this process and returns a host
// mux connected to it, and the server.
func hopPair(t *testing.T, impl AdapterRaw) (*hopMux, *hopServer) {
	t.Helper()
	s := newHopServer(impl)
	t.Cleanup(s.close)
	addr, err := s.open()
	if err != nil {
		t.Fatal(err)
	}
	token, err := base64.StdEncoding.DecodeString(addr.Token)
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	var mu sync.Mutex
	log := func(msg string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, msg)
	}
	return &hopMux{addr: addr, token: token, warn: log, logErr: log}, s
}

// closeConns closes the server's connections from the host, as a broken
// socket would, and leaves it listening.
func (s *hopServer) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// TestHopDirectory: the hop listens in a directory only the adapter's user
// can enter, and removes it when the adapter stops.
func TestHopDirectory(t *testing.T) {
	s := newHopServer(&waiter{})
	addr, err := s.open()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(addr.Address)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("the hop's directory %s has mode %v, want 0700", dir, perm)
	}
	s.close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the hop's directory after close: %v, want it gone", err)
	}
}

// TestHopPublicDirectory: the host refuses to dial a hop whose socket is in
// a directory others can enter, before it sends the token (hopMux.call then
// sends its calls on the session).
func TestHopPublicDirectory(t *testing.T) {
	m, _ := hopPair(t, &waiter{})
	dir := filepath.Dir(m.addr.Address)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := dialHop(context.Background(), m.addr, m.token); err == nil || !strings.Contains(err.Error(), "only its owner") {
		t.Errorf("dialing a hop in a directory of mode 0755: %v, want a refusal", err)
	}
}

// TestHopRefusesStrangers: a connection that does not present the token,
// or sends anything but a hello first, is closed without a call running.
func TestHopRefusesStrangers(t *testing.T) {
	w := &waiter{started: make(chan string, 1), ended: make(chan string, 1)}
	m, _ := hopPair(t, w)
	wrong := bytes.Repeat([]byte{'x'}, hopTokenSize)
	call := appendHeader(nil, hopCall, 1, 0)
	for _, tc := range []struct {
		name  string
		first []byte
	}{
		{"wrong token", append(appendHeader(nil, hopHello, 0, 1+hopTokenSize), append([]byte{hopVersion}, wrong...)...)},
		{"short token", append(appendHeader(nil, hopHello, 0, 2), hopVersion, m.token[0])},
		{"other version", append(appendHeader(nil, hopHello, 0, 1+hopTokenSize), append([]byte{hopVersion + 1}, m.token...)...)},
		{"a call before the hello", call},
		{"a hello announcing a megabyte", appendHeader(nil, hopHello, 0, 1<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("unix", m.addr.Address)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = c.Write(tc.first)
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if n, err := c.Read(make([]byte, 64)); err != io.EOF {
				t.Errorf("after %s: read %d bytes, %v; want the connection closed", tc.name, n, err)
			}
		})
	}
	select {
	case p := <-w.started:
		t.Errorf("a call ran on a refused connection: %q", p)
	default:
	}
}

// dialRaw connects to the hop and says hello as the host does.
func dialRaw(t *testing.T, m *hopMux) net.Conn {
	t.Helper()
	hc, err := dialHop(context.Background(), m.addr, m.token)
	if err != nil {
		t.Fatal(err)
	}
	return hc.conn
}

// TestHopMalformedFrames: after the hello, a frame the hop does not allow
// closes the connection (fail closed), and the hop serves the next one.
func TestHopMalformedFrames(t *testing.T) {
	var logged syncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	w := &waiter{started: make(chan string, 1), ended: make(chan string, 1)}
	m, _ := hopPair(t, w)
	frame := func(kind byte, id uint64, payload []byte) []byte {
		return append(appendHeader(nil, kind, id, len(payload)), payload...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"unknown kind", frame(42, 1, nil)},
		{"a second hello", frame(hopHello, 0, []byte{hopVersion})},
		{"a result from the host", frame(hopResult, 1, []byte{0, 0, 0})},
		{"a frame larger than the limit", appendHeader(nil, hopCall, 1, hopMaxFrame+1)},
		{"a truncated call", frame(hopCall, 1, []byte{0, 1, 2})},
		{"a string running past the payload", frame(hopCall, 1, append(make([]byte, 9), 0x7f))},
		{"a piece announcing more than the maximum", frame(hopPiece, 1, binary.AppendUvarint(nil, MaxMessageSize+1))},
		{"pieces then a cancel", append(frame(hopPiece, 1, append(binary.AppendUvarint(nil, 10), 'a')), frame(hopCancel, 1, nil)...)},
		{"pieces longer than announced", frame(hopPiece, 1, append(binary.AppendUvarint(nil, 1), 'a', 'b'))},
		{"a piece's length field not in its shortest form", frame(hopPiece, 1, []byte{0x8a, 0x00, 'a'})},
		{"a cancel with a payload", frame(hopCancel, 1, []byte{1})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, m)
			defer c.Close()
			_, _ = c.Write(tc.in)
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if n, err := c.Read(make([]byte, 64)); err != io.EOF {
				t.Errorf("after %s: read %d bytes, %v; want the connection closed", tc.name, n, err)
			}
			waitUntil(t, func() bool { return strings.Contains(logged.String(), "hop protocol error") }, "the adapter to log the protocol error")
			if got := logged.String(); !strings.Contains(got, "closing the hop connection of the host") {
				t.Errorf("after %s the adapter logged %q, want it to say it closes the connection and why", tc.name, got)
			}
			logged.Reset()
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if res, err := m.call(ctx, &RawCall{Name: "echo"}, nil); err != nil || string(res.Result) != `"echo"` {
		t.Errorf("a call after the malformed connections: %v, %v", res, err)
	}
}

// syncBuffer is a bytes.Buffer for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *syncBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Reset()
}

// waitUntil polls cond for at most 20 seconds.
func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// fakeHop listens where an adapter's hop would, in a directory of its own,
// for a test that plays the adapter's side by hand (the hello takes any
// token): it returns the listener and a hopMux that dials it, logging to
// log. The directory is not named armoriq-hop-*, which
// TestKilledAdapterLeavesNoHopDirectory looks for.
func fakeHop(t *testing.T, log func(msg string, args ...any)) (net.Listener, *hopMux) {
	t.Helper()
	dir, err := os.MkdirTemp("", "armoriq-fakehop-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "hop.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	token := bytes.Repeat([]byte{7}, hopTokenSize)
	return l, &hopMux{addr: &hopAddress{Network: "unix", Address: sock}, token: token, warn: log, logErr: log}
}

// TestHopMalformedFromAdapter: a frame from the adapter that the hop does
// not allow fails the calls in flight with a connection error that says
// what was wrong, and the host logs it.
func TestHopMalformedFromAdapter(t *testing.T) {
	var logged syncBuffer
	log := func(msg string, args ...any) { fmt.Fprintln(&logged, append([]any{msg}, args...)...) }
	l, m := fakeHop(t, log)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		// The hello, then the call: answered with a result for call 1
		// whose path runs past the payload.
		_, _ = io.ReadFull(c, make([]byte, hopHeaderSize+1+hopTokenSize))
		_, _ = c.Write(append(appendHeader(nil, hopHello, 0, 1), hopVersion))
		var hdr [hopHeaderSize]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		_, _ = io.ReadFull(c, make([]byte, binary.BigEndian.Uint32(hdr[:4])))
		_, _ = c.Write(append(appendHeader(nil, hopResult, 1, 2), 0, 9))
		_, _ = c.Read(make([]byte, 1))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := m.call(ctx, &RawCall{Name: "echo"}, nil)
	var cerr *connError
	if !errors.As(err, &cerr) || !strings.Contains(err.Error(), "hop protocol error: truncated path") {
		t.Errorf("a call answered with a malformed result: %v, want a connError saying the path was truncated", err)
	}
	if got := logged.String(); !strings.Contains(got, "closing the hop to the adapter") || !strings.Contains(got, "truncated path") {
		t.Errorf("the host logged %q, want the protocol error", got)
	}
}

// TestHopBreaks: a hop connection that breaks fails every call in flight
// on it, saying it is not retried; the adapter cancels them; the next call
// dials a new connection.
func TestHopBreaks(t *testing.T) {
	w := &waiter{started: make(chan string, 8), ended: make(chan string, 8)}
	m, s := hopPair(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make(chan error, 3)
	for _, tag := range []string{"1", "2", "3"} {
		go func() {
			_, err := m.call(ctx, &RawCall{Name: "wait", Params: []byte(tag)}, nil)
			errs <- err
		}()
		<-w.started
	}
	first := m.cur
	s.closeConns()
	for range 3 {
		err := <-errs
		var cerr *connError
		if !errors.As(err, &cerr) || !strings.Contains(err.Error(), "not retried") {
			t.Errorf("a call in flight on the broken hop: %v, want a connError that says it is not retried", err)
		}
	}
	for range 3 {
		select {
		case <-w.ended:
		case <-ctx.Done():
			t.Fatal("the adapter did not cancel the calls of the broken connection")
		}
	}
	if res, err := m.call(ctx, &RawCall{Name: "echo"}, nil); err != nil || string(res.Result) != `"echo"` {
		t.Fatalf("echo after the break: %v, %v", res, err)
	}
	if m.cur == first {
		t.Error("the call after the break went on the broken connection")
	}
}

// TestHopPieces: params and results larger than a frame arrive whole,
// alone and beside other calls, and a body over MaxMessageSize is refused
// before anything is sent.
func TestHopPieces(t *testing.T) {
	w := &waiter{started: make(chan string, 1), ended: make(chan string, 1)}
	m, _ := hopPair(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	big := make([]byte, 3*hopPieceSize+12345)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	call := func() {
		t.Helper()
		res, err := m.call(ctx, &RawCall{Name: "params", Params: big}, nil)
		if err != nil || !bytes.Equal(res.Result, big) {
			t.Fatalf("a call with %d bytes of params answered %v; want them back", len(big), err)
		}
	}
	call()
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = m.call(wctx, &RawCall{Name: "wait"}, nil)
	}()
	<-w.started
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call()
		}()
	}
	wg.Wait()
	wcancel()
	<-done
	<-w.ended

	huge := make([]byte, MaxMessageSize+1)
	if _, err := m.call(ctx, &RawCall{Name: "params", Params: huge}, nil); !errors.Is(err, errTooLarge) {
		t.Errorf("a call with %d bytes of params: %v, want errTooLarge", len(huge), err)
	}
	call() // the connection is intact
}

// TestHopFallback: an adapter of contract 5 that cannot offer the hop (its
// Open fails: no unix sockets) gets its raw calls on Raw.Session.
func TestHopFallback(t *testing.T) {
	w := &waiter{started: make(chan string, 1), ended: make(chan string, 1)}
	sock := filepath.Join(t.TempDir(), "grpc.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	protov3.RegisterRawServer(srv, &grpcServerV3{impl: w})
	hop := newHopServer(w)
	hop.once.Do(func() { hop.openErr = errors.New("the test offers no hop") })
	srv.RegisterService(&hopServiceDesc, hop)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := (&AdapterPluginV5{}).GRPCClient(context.Background(), nil, conn)
	if err != nil {
		t.Fatal(err)
	}
	a := c.(*grpcClientV3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 2 {
		if res, err := a.CallRaw(ctx, &RawCall{Name: "echo"}, nil); err != nil || string(res.Result) != `"echo"` {
			t.Fatalf("echo: %v, %v", res, err)
		}
	}
	if !a.hop.disabled.Load() || a.mux.cur == nil {
		t.Errorf("the calls did not go on Raw.Session (hop disabled %v, session %v)", a.hop.disabled.Load(), a.mux.cur != nil)
	}
}

// TestHopOlderHost: an adapter that offers contract 5, run by a host that
// speaks 1 to 4 (one built before the hop), negotiates 4 and serves its raw
// calls on Raw.Session.
func TestHopOlderHost(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "ARMORIQ_TEST_ROLE=adapter-mux")
	sets := hostPluginSets(nil)
	delete(sets, 5)
	hs := handshake()
	hs.ProtocolVersion = 4
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  hs,
		VersionedPlugins: sets,
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatal(err)
	}
	if v := client.NegotiatedVersion(); v != 4 {
		t.Fatalf("an adapter offering 1 to 5 under a host speaking 1 to 4 negotiated %d, want 4", v)
	}
	raw, err := rpc.Dispense(pluginName)
	if err != nil {
		t.Fatal(err)
	}
	a := raw.(*grpcClientV3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := a.CallRaw(ctx, &RawCall{Method: "tools/call", Name: "deadline", Params: []byte(`{"name":"deadline","arguments":{}}`)}, nil)
	if err != nil || res.Path != PathRaw {
		t.Fatalf("a raw call: %v, %v", res, err)
	}
	if a.hop != nil || a.mux.cur == nil {
		t.Errorf("the raw call did not go on Raw.Session (hop %v, session %v)", a.hop != nil, a.mux.cur != nil)
	}
}

// FuzzHopReader feeds arbitrary bytes to the hop's frame reader and the
// decoders of every frame kind: they return frames or errors, never
// panic, and never allocate much more than the input announces and sends.
func FuzzHopReader(f *testing.F) {
	frame := func(kind byte, id uint64, payload []byte) []byte {
		return append(appendHeader(nil, kind, id, len(payload)), payload...)
	}
	call := appendHeader(nil, hopCall, 1, 0)
	call = append(call, hopFlagLog)
	call = appendU64(call, 1e9)
	for _, s := range []string{"tools/call", "echo", "2025-11-25", "p", "", ""} {
		call = appendStr(call, s)
	}
	call = append(call, `{"name":"echo"}`...)
	setLength(call, 0)
	f.Add(call)
	res := appendHeader(nil, hopResult, 1, 0)
	res = append(res, 0)
	res = appendStr(res, PathRaw)
	res = appendStr(res, "2025-11-25")
	res = append(res, `{"content":[]}`...)
	setLength(res, 0)
	f.Add(res)
	f.Add(append(frame(hopPiece, 2, append(binary.AppendUvarint(nil, 4), 'a', 'b')), frame(hopResult, 2, []byte{0, 0, 0, 'c', 'd'})...))
	f.Add(frame(hopProgress, 1, make([]byte, 20)))
	f.Add(frame(hopLog, 1, []byte{4, 'i', 'n', 'f', 'o', 0, '"', 'x', '"'}))
	f.Add(frame(hopRequest, 1, append(make([]byte, 8), 1, 'm')))
	f.Add(frame(hopFailure, 1, []byte{2, 'b', 'a', 'd'}))
	f.Add(frame(hopAnswer, 1, append(make([]byte, 8), hopFlagError, 0, 0, 0, 0, 0, 0, 0, 1, 0)))
	f.Add(frame(hopCancel, 3, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newHopReader(bytes.NewReader(data))
		for range 64 {
			fr, err := r.next()
			if err != nil {
				return
			}
			if len(fr.payload) > len(data) {
				t.Fatalf("a payload of %d bytes from %d bytes of input", len(fr.payload), len(data))
			}
			switch fr.kind {
			case hopCall:
				_, _, _, _ = decodeCall(fr)
			case hopAnswer:
				_, _ = decodeAnswer(fr)
			default:
				_, _, _, _ = decodeAdapterFrame(fr)
			}
		}
	})
}

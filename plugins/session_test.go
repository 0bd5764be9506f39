package plugins

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	protov3 "github.com/armoriq/controlplane/plugins/proto/v3"
)

// waiter is an AdapterRaw whose call "wait" waits for its context to end
// (saying so on started and ended), whose call "params" answers with its
// params, and whose other calls answer at once with their name.
type waiter struct {
	AdapterRaw // not called
	started    chan string
	ended      chan string
}

func (w *waiter) CallRaw(ctx context.Context, call *RawCall, _ *CallEvents) (*RawResult, error) {
	switch call.Name {
	case "wait":
	case "params":
		return &RawResult{Result: call.Params, Path: PathRaw}, nil
	default:
		return &RawResult{Result: []byte(`"` + call.Name + `"`), Path: PathRaw}, nil
	}
	w.started <- string(call.Params)
	<-ctx.Done()
	w.ended <- string(call.Params)
	return nil, ctx.Err()
}

// rawServer serves raw on a unix socket and returns the host's AdapterRaw
// of contract 4 connected to it.
func rawServer(t *testing.T, raw protov3.RawServer) AdapterRaw {
	sock := filepath.Join(t.TempDir(), "raw.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	protov3.RegisterRawServer(srv, raw)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := (&AdapterPluginV4{}).GRPCClient(context.Background(), nil, conn)
	if err != nil {
		t.Fatal(err)
	}
	return c.(AdapterRaw)
}

// countingRaw serves Raw as the glue does, counting the pieces of params
// its sessions receive and of results they send.
type countingRaw struct {
	*grpcServerV3
	in, out atomic.Int32
}

func (r *countingRaw) Session(stream protov3.Raw_SessionServer) error {
	return r.grpcServerV3.Session(countChunks{stream, r})
}

type countChunks struct {
	protov3.Raw_SessionServer
	r *countingRaw
}

func (s countChunks) Recv() (*protov3.RawFrame, error) {
	f, err := s.Raw_SessionServer.Recv()
	if _, ok := f.GetFrame().(*protov3.RawFrame_Chunk); ok {
		s.r.in.Add(1)
	}
	return f, err
}

func (s countChunks) Send(f *protov3.RawFrame) error {
	if _, ok := f.GetFrame().(*protov3.RawFrame_Chunk); ok {
		s.r.out.Add(1)
	}
	return s.Raw_SessionServer.Send(f)
}

// TestSessionPieces: params and a result larger than rawChunkSize go whole
// when their call is alone on the session, and in pieces, joined again,
// while another call is in flight.
func TestSessionPieces(t *testing.T) {
	w := &waiter{started: make(chan string, 1), ended: make(chan string, 1)}
	raw := &countingRaw{grpcServerV3: &grpcServerV3{impl: w}}
	a := rawServer(t, raw)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	big := make([]byte, 3*rawChunkSize+12345)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	call := func() {
		t.Helper()
		res, err := a.CallRaw(ctx, &RawCall{Name: "params", Params: big}, nil)
		if err != nil || !bytes.Equal(res.Result, big) {
			t.Fatalf("a call with %d bytes of params answered %v; want them back", len(big), err)
		}
	}
	call()
	if in, out := raw.in.Load(), raw.out.Load(); in != 0 || out != 0 {
		t.Errorf("a call alone on the session sent %d pieces of params and got %d of its result, want both whole", in, out)
	}

	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = a.CallRaw(wctx, &RawCall{Name: "wait"}, nil)
	}()
	<-w.started
	call()
	if in, out := raw.in.Load(), raw.out.Load(); in != 3 || out != 3 {
		t.Errorf("beside another call: %d pieces of params before the call, %d of the result before it; want 3 and 3", in, out)
	}
	wcancel()
	<-done
	<-w.ended
}

// breakingRaw serves Raw as the glue does, but the session whose host
// sends a call named "break" ends with an error, as a broken stream would.
type breakingRaw struct {
	*grpcServerV3
	sessions atomic.Int32
}

func (b *breakingRaw) Session(stream protov3.Raw_SessionServer) error {
	b.sessions.Add(1)
	return b.grpcServerV3.Session(breakOnCall{stream})
}

type breakOnCall struct{ protov3.Raw_SessionServer }

func (s breakOnCall) Recv() (*protov3.RawFrame, error) {
	f, err := s.Raw_SessionServer.Recv()
	if err == nil && f.GetCall().GetName() == "break" {
		return nil, status.Error(codes.Internal, "the test breaks the session")
	}
	return f, err
}

// TestSessionBreaks: a session that breaks while its connection lives fails
// every call in flight on it (the adapter cancels them), and the next call
// opens a new session on the same connection.
func TestSessionBreaks(t *testing.T) {
	w := &waiter{started: make(chan string, 8), ended: make(chan string, 8)}
	raw := &breakingRaw{grpcServerV3: &grpcServerV3{impl: w}}
	a := rawServer(t, raw)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if res, err := a.CallRaw(ctx, &RawCall{Name: "echo"}, nil); err != nil || string(res.Result) != `"echo"` {
		t.Fatalf("echo: %v, %v", res, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, tag := range []string{"1", "2", "3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.CallRaw(ctx, &RawCall{Name: "wait", Params: []byte(tag)}, nil)
			errs <- err
		}()
		<-w.started
	}
	if _, err := a.CallRaw(ctx, &RawCall{Name: "break"}, nil); err == nil {
		t.Error("the call that broke the session succeeded")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		var cerr *connError
		if !errors.As(err, &cerr) || !strings.Contains(err.Error(), "the test breaks the session") || !strings.Contains(err.Error(), "not retried") {
			t.Errorf("a call in flight on the broken session: %v, want a connError that says why and that it is not retried", err)
		}
	}
	for range 3 {
		select {
		case <-w.ended:
		case <-ctx.Done():
			t.Fatal("the adapter did not cancel the calls of the broken session")
		}
	}
	if res, err := a.CallRaw(ctx, &RawCall{Name: "echo"}, nil); err != nil || string(res.Result) != `"echo"` {
		t.Fatalf("echo after the break: %v, %v", res, err)
	}
	if n := raw.sessions.Load(); n != 2 {
		t.Errorf("the host opened %d sessions, want 2 (one before the break, one after)", n)
	}
}

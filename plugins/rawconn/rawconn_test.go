package rawconn_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/armoriq/controlplane/plugins/rawconn"
)

func TestMain(m *testing.M) {
	rawconn.ForceRaw() // this package's own tests run raw under -race too
	os.Exit(m.Run())
}

// pair returns a wrapped connection and its peer, over network ("tcp" or
// "unix").
func pair(t *testing.T, network string) (net.Conn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l = rawconn.Listen(l)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	peer, err := net.Dial(network, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := <-accepted
	if c == nil {
		t.FailNow()
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}

// rawConn is what a wrapped connection has beside net.Conn.
type rawConn interface {
	net.Conn
	ReadNow(p []byte) (int, error)
}

func isRaw(c net.Conn) bool {
	_, ok := c.(rawConn)
	return ok
}

func TestWrapOnlySockets(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if isRaw(rawconn.Wrap(a)) {
		t.Error("a net.Pipe end was wrapped: it has no file descriptor")
	}
	c, _ := pair(t, "tcp")
	if got, want := isRaw(c), rawconn.Enabled(); got != want {
		t.Errorf("an accepted TCP connection wrapped: %v, want %v on %s", got, want, runtime.GOOS)
	}
}

// TestReadWrite sends bytes both ways through wrapped connections, larger
// than a socket's buffer so that writes wait for the reader and reads for
// the writer.
func TestReadWrite(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			c, peer := pair(t, network)
			msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				if n, err := c.Write(msg); n != len(msg) || err != nil {
					t.Errorf("Write = %d, %v; want %d, nil", n, err, len(msg))
				}
			}()
			got := make([]byte, len(msg))
			go func() {
				defer wg.Done()
				if _, err := io.ReadFull(peer, got); err != nil {
					t.Error(err)
				}
			}()
			wg.Wait()
			if !bytes.Equal(got, msg) {
				t.Fatal("the peer read other bytes than were written")
			}
			go func() {
				peer.Write(msg)
				peer.Close()
			}()
			all, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(all, msg) {
				t.Fatalf("ReadAll = %d bytes, %v; want the %d bytes written, then EOF", len(all), err, len(msg))
			}
			if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
				t.Errorf("a read after EOF = %d, %v; want 0, EOF", n, err)
			}
		})
	}
}

// TestWriteBuffers writes pieces, some empty, past the socket's buffer, so
// that writev stops part-way through a piece and goes on from there.
func TestWriteBuffers(t *testing.T) {
	c, peer := pair(t, "unix")
	bw, ok := c.(interface {
		WriteBuffers(...[]byte) (int64, error)
	})
	if !ok {
		t.Skip("no raw connections here")
	}
	var pieces [][]byte
	var want []byte
	for i, n := range []int{3, 0, 1 << 20, 7, 0, 300000, 1} {
		p := bytes.Repeat([]byte{byte('a' + i)}, n)
		pieces = append(pieces, p)
		want = append(want, p...)
	}
	done := make(chan []byte)
	go func() {
		got := make([]byte, len(want))
		io.ReadFull(peer, got)
		done <- got
	}()
	n, err := bw.WriteBuffers(pieces...)
	if n != int64(len(want)) || err != nil {
		t.Fatalf("WriteBuffers = %d, %v; want %d, nil", n, err, len(want))
	}
	if got := <-done; !bytes.Equal(got, want) {
		t.Fatal("the peer read other bytes than were written")
	}
	if n, err := bw.WriteBuffers(nil, []byte{}); n != 0 || err != nil {
		t.Errorf("WriteBuffers of nothing = %d, %v", n, err)
	}
}

func TestReadDeadline(t *testing.T) {
	c, peer := pair(t, "tcp")
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 4))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a read past its deadline: %v; want a timeout (os.ErrDeadlineExceeded)", err)
	}
	// The connection still works once the deadline is lifted.
	c.SetReadDeadline(time.Time{})
	peer.Write([]byte("late"))
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "late" {
		t.Fatalf("after the deadline: %q, %v", b, err)
	}
}

func TestWriteDeadline(t *testing.T) {
	c, _ := pair(t, "unix") // the peer never reads
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := c.Write(make([]byte, 8<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write the peer never reads: %d, %v; want os.ErrDeadlineExceeded", n, err)
	}
	if n < 0 || n >= 8<<20 {
		t.Errorf("wrote %d bytes before the deadline; want what the socket's buffer took", n)
	}
}

func TestCloseWakesRead(t *testing.T) {
	c, _ := pair(t, "tcp")
	errc := make(chan error)
	go func() {
		_, err := c.Read(make([]byte, 4))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond) // let the read wait (it returns either way)
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("a read when the connection was closed: %v; want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake a waiting read")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a write after Close: %v; want net.ErrClosed", err)
	}
}

func TestPeerReset(t *testing.T) {
	c, peer := pair(t, "tcp")
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close() // RST
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write(make([]byte, 1024))
		time.Sleep(time.Millisecond)
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writes to a reset connection: %v; want the system call's error", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Errorf("error %v (%T): want a *net.OpError of op write", err, err)
	}
}

func TestReadNowAndPeek(t *testing.T) {
	c, peer := pair(t, "unix")
	rc, ok := c.(rawConn)
	if !ok {
		t.Skip("no raw connections here")
	}
	if p := rawconn.Peek(rc); p != rawconn.PeekEmpty {
		t.Errorf("Peek of a quiet, open connection = %v, want PeekEmpty", p)
	}
	if n, err := rc.ReadNow(make([]byte, 4)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadNow with nothing sent = %d, %v; want 0, os.ErrDeadlineExceeded", n, err)
	}
	peer.Write([]byte("ab"))
	deadline := time.Now().Add(10 * time.Second)
	for rawconn.Peek(rc) == rawconn.PeekEmpty && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p := rawconn.Peek(rc); p != rawconn.PeekData {
		t.Errorf("Peek of a connection holding unread bytes = %v, want PeekData", p)
	}
	b := make([]byte, 4)
	if n, err := rc.ReadNow(b); n != 2 || err != nil || string(b[:2]) != "ab" {
		t.Errorf("ReadNow = %d %q, %v; want 2 \"ab\"", n, b[:n], err)
	}
	peer.Close()
	for rawconn.Peek(rc) == rawconn.PeekEmpty && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p := rawconn.Peek(rc); p != rawconn.PeekClosed {
		t.Errorf("Peek of a connection its peer closed = %v, want PeekClosed", p)
	}
	if n, err := rc.ReadNow(b); n != 0 || err != io.EOF {
		t.Errorf("ReadNow after the peer closed = %d, %v; want 0, EOF", n, err)
	}
}

func TestCloseWrite(t *testing.T) {
	c, peer := pair(t, "tcp")
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := peer.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("the peer read %d, %v after CloseWrite; want EOF", n, err)
	}
}

func TestFilePipe(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w := rawconn.WrapFile(pr), rawconn.WrapFile(pw)
	defer r.Close()
	if rawconn.Enabled() {
		if _, ok := r.(*os.File); ok {
			t.Fatal("the read end of os.Pipe was not wrapped")
		}
	}
	msg := bytes.Repeat([]byte("line of json\n"), 100000) // past a pipe's buffer
	go func() {
		if n, err := w.Write(msg); n != len(msg) || err != nil {
			t.Errorf("Write = %d, %v", n, err)
		}
		w.Close()
	}()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes, %v; want the %d written, then EOF", len(got), err, len(msg))
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("a write after Close: %v; want os.ErrClosed", err)
	}
}

func TestFileCloseWakesRead(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	r := rawconn.WrapFile(pr)
	errc := make(chan error)
	go func() {
		_, err := r.Read(make([]byte, 8))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	r.Close()
	select {
	case err := <-errc:
		var pe *os.PathError
		if !errors.Is(err, os.ErrClosed) || !errors.As(err, &pe) || pe.Op != "read" {
			t.Errorf("a read when the pipe was closed: %v; want a read *os.PathError of os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake a waiting read")
	}
}

func TestWrapFileBlocking(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	pr.Fd() // puts the descriptor in blocking mode
	if _, ok := rawconn.WrapFile(pr).(*os.File); !ok {
		t.Error("a pipe end in blocking mode was wrapped: a raw read would block its thread")
	}
}

// TestWrapBlockingSocket: a socket in blocking mode is not wrapped.
func TestWrapBlockingSocket(t *testing.T) {
	if !rawconn.Enabled() {
		t.Skip("no raw connections here")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, _ := c.(*net.TCPConn).SyscallConn()
	raw.Control(func(fd uintptr) { syscall.SetNonblock(int(fd), false) })
	if isRaw(rawconn.Wrap(c)) {
		t.Error("a socket in blocking mode was wrapped: a raw read would block its thread")
	}
}

// TestPollsAllocateNothing: what runs before every call (the hop's read
// of whatever came meanwhile, the pool's check of an idle connection)
// allocates nothing when there is nothing to read.
func TestPollsAllocateNothing(t *testing.T) {
	c, _ := pair(t, "tcp")
	rc, ok := c.(rawConn)
	if !ok {
		t.Skip("no raw connections here")
	}
	b := make([]byte, 16)
	if n := testing.AllocsPerRun(100, func() { rawconn.Peek(rc) }); n != 0 {
		t.Errorf("Peek allocated %v times a call", n)
	}
	if n := testing.AllocsPerRun(100, func() { rc.ReadNow(b) }); n != 0 {
		t.Errorf("ReadNow with nothing to read allocated %v times a call", n)
	}
}

// TestPeek: what Peek says of a socket in each state, and that it consumes
// nothing.
func TestPeek(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no MSG_PEEK here")
	}
	pair := func(t *testing.T) (client, server net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		client, err = net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close(); server.Close() })
		return client, server
	}
	settle := func() { time.Sleep(20 * time.Millisecond) }
	for _, tc := range []struct {
		name  string
		setup func(client, server net.Conn)
		want  rawconn.Peeked
	}{
		{"open, nothing sent", func(client, server net.Conn) {}, rawconn.PeekEmpty},
		{"bytes sent", func(client, server net.Conn) { client.Write([]byte("x")) }, rawconn.PeekData},
		{"peer ended its side", func(client, server net.Conn) { client.(*net.TCPConn).CloseWrite() }, rawconn.PeekClosed},
		{"peer closed", func(client, server net.Conn) { client.Close() }, rawconn.PeekClosed},
		{"peer reset", func(client, server net.Conn) { client.(*net.TCPConn).SetLinger(0); client.Close() }, rawconn.PeekClosed},
		{"closed here", func(client, server net.Conn) { server.Close() }, rawconn.PeekClosed},
	} {
		for _, wrap := range []bool{false, true} {
			client, server := pair(t)
			if wrap {
				server = rawconn.Wrap(server)
			}
			tc.setup(client, server)
			settle()
			if got := rawconn.Peek(server); got != tc.want {
				t.Errorf("%s (wrapped %v): Peek = %v, want %v", tc.name, wrap, got, tc.want)
			}
			if tc.want == rawconn.PeekData {
				var b [1]byte
				if n, err := server.Read(b[:]); n != 1 || b[0] != 'x' || err != nil {
					t.Errorf("%s: the byte peeked was consumed: read %d %q %v", tc.name, n, b[:n], err)
				}
			}
		}
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := rawconn.Peek(a); got != rawconn.PeekUnknown {
		t.Errorf("net.Pipe: Peek = %v, want PeekUnknown", got)
	}
}

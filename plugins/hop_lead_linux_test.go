package plugins

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// TestHopCancelMidFrame: a call whose context ends while it reads, in the
// middle of a frame, returns at once, without the rest of the frame; the
// next call on the same connection reads the rest (dropped: the first call
// has gone) and then its own result, byte for byte. The adapter is a
// socket of the test's, which sends the first call's result (in pieces)
// up to a point, and the rest only once the second call is made.
func TestHopCancelMidFrame(t *testing.T) {
	first := resultBytes(1, bytes.Repeat([]byte("first "), 30000), 100000) // 180000 bytes in two pieces
	second := bytes.Repeat([]byte(`"second" `), 5000)
	for _, tc := range []struct {
		name string
		cut  int
	}{
		{"in a piece's header", 5},
		{"in a piece's total", hopHeaderSize + 1},
		{"in a piece's data", hopHeaderSize + 3 + 1000},
		{"between pieces", hopHeaderSize + 3 + 100000},
		{"in the result's header", len(first) - 20},
		{"in the result's fields", len(first) - 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cancelMidFrame(t, first, tc.cut, second)
		})
	}
}

func cancelMidFrame(t *testing.T, first []byte, cut int, second []byte) {
	l, m := fakeHop(t, t.Logf)
	sent := make(chan error, 1)    // the first part of the first call's result is with the host
	second1 := make(chan error, 1) // the second call came, and its result went
	go func() {
		c, err := l.Accept()
		if err != nil {
			sent <- err
			return
		}
		defer c.Close()
		readFrame := func() (byte, uint64, error) {
			var hdr [hopHeaderSize]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return 0, 0, err
			}
			_, err := io.ReadFull(c, make([]byte, binary.BigEndian.Uint32(hdr[:4])))
			return hdr[4], binary.BigEndian.Uint64(hdr[5:]), err
		}
		_, _ = io.ReadFull(c, make([]byte, hopHeaderSize+1+hopTokenSize))
		_, _ = c.Write(append(appendHeader(nil, hopHello, 0, 1), hopVersion))
		if _, _, err := readFrame(); err != nil {
			sent <- err
			return
		}
		if _, err := c.Write(first[:cut]); err != nil {
			sent <- err
			return
		}
		sent <- waitRead(c)
		for { // the first call's cancel, then the second call
			kind, id, err := readFrame()
			if err != nil {
				second1 <- err
				return
			}
			if kind == hopCall && id == 2 {
				break
			}
		}
		_, err = c.Write(append(first[cut:], resultBytes(2, second, 20000)...))
		second1 <- err
		_, _ = c.Read(make([]byte, 1))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cctx, ccancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := m.call(cctx, &RawCall{Name: "first"}, nil)
		errc <- err
	}()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	ccancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled call: %v, want context.Canceled", err)
	}
	hc := m.cur
	<-hc.tok // the reader's state, seen with the token
	partial := hc.r.nhdr > 0 || len(hc.r.pending) > 0
	hc.tok <- struct{}{}
	if !partial {
		t.Fatalf("the cancelled call left no frame half read (the test sent %d bytes of %d)", cut, len(first))
	}
	res, err := m.call(ctx, &RawCall{Name: "second"}, nil)
	if err != nil || !bytes.Equal(res.Result, second) {
		t.Fatalf("the call after the cancelled one: %d bytes, %v; want its %d bytes", len(res.Result), err, len(second))
	}
	if err := <-second1; err != nil {
		t.Fatal(err)
	}
	if m.cur != hc || isBroken(hc) {
		t.Error("the second call went on another connection")
	}
}

// waitRead waits until the peer of c has read everything c sent (the
// socket's send queue is empty: Linux's SIOCOUTQ).
func waitRead(c net.Conn) error {
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return err
	}
	for {
		var n int32
		var errno syscall.Errno
		if err := raw.Control(func(fd uintptr) {
			_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
		}); err != nil {
			return err
		}
		if errno != 0 {
			return errno
		}
		if n == 0 {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
}
